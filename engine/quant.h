/* Weight formats and their kernels.
 *
 * Each weight type has a scalar reference dequantizer (to_float), a fast
 * one (to_float_fast) for prefill, which dequantizes tiles of weight rows
 * for sgemm, and a dot kernel (vec_dot) that multiplies one row of weights
 * with an activation vector already converted to the type's vec_dot_type
 * (by that type's from_float), and for some types a multi-token dot
 * (vec_dot_multi) that prefill uses to multiply each weight row with a few
 * tokens in one pass. axpy adds a scaled weight row to a float vector,
 * y += a * w, unpacking the blocks in registers (the sparse FFN's down
 * projection, one call per neuron that fired; axpy_multi adds a few rows
 * in one pass, where the type has it). The fast kernels are the
 * best for this CPU (AVX2+FMA+F16C on x86-64 chosen at run time, NEON on
 * aarch64, scalar otherwise); vec_dot_ref and axpy_ref are the portable
 * scalar versions they are tested against. to_float_fast returns
 * to_float's floats bit for bit, except that an F16 signaling NaN may come
 * back quieted; for F32 both are a memcpy. axpy_ref adds to_float's values
 * times a; axpy rounds differently (it scales levels by a * d and fuses
 * the multiply and add), by a few ulps of |y| + |a| * (largest |w| in the
 * element's block).
 *
 * Q8_1, Q8_K and Q8_S are activation-only formats: they have converters
 * (their to_float_fast is the reference) but vec_dot, vec_dot_ref, axpy
 * and axpy_ref are NULL. Block layouts are byte-identical to GGUF's,
 * except Q8_S's: it is internal (pf_dtype_info's flag), a row layout of
 * the engine's own that exists only in memory (see quant_internal.h).
 * Activations are converted a whole row at a time, so only whole rows of
 * them may be passed around. */
#ifndef PINFER_QUANT_H
#define PINFER_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

typedef void (*pf_to_float_fn)(const void *src, float *dst, int64_t n);
typedef void (*pf_from_float_fn)(const float *src, void *dst, int64_t n);
/* *s = dot(w[0..n), x[0..n)), n a multiple of the block size. */
typedef void (*pf_vec_dot_fn)(int n, float *s, const void *w, const void *x);
/* One weight row against n_x activation rows (1 <= n_x <= PF_DOT_MULTI_MAX):
 * s[t * s_stride] = dot(w, x_t), x_t at x + t * x_stride bytes. The weights
 * are unpacked once for all of them; the results are vec_dot's bit for bit
 * (the same sums in the same order). For prefill. */
typedef void (*pf_vec_dot_multi_fn)(int n, float *s, size_t s_stride, const void *w,
				    const void *x, size_t x_stride, int n_x);
/* k weight rows against one activation x (1 <= k <= PF_DOT_ROWS_MAX):
 * s[r] = dot(w[r], x), vec_dot's floats bit for bit. The rows' blocks are
 * taken in step: k streams of weights in flight and x loaded once, for the
 * sparse FFN's rows gathered from scattered neurons (on Zen 2 decode runs
 * 6% faster with the gate and up rows four at a time, 1.5% more with
 * eight). */
typedef void (*pf_vec_dot_rows_fn)(int n, int k, float *s, const uint8_t *const *w, const void *x);
/* y[0..n) += a * w[0..n) for one weight row w, n a multiple of the block
 * size: the sparse FFN's down projection adds the rows (neurons) that fired,
 * scaled by their activation, from a transposed down matrix. */
typedef void (*pf_axpy_fn)(int n, float a, const void *w, float *y);
/* y[0..n) += a[0] * w[0] + ... + a[k-1] * w[k-1], 1 <= k <= PF_AXPY_MULTI_MAX
 * rows, y read and written once per block instead of once per row: with y
 * in L1 the single-row kernel spends as much on loading and storing y as on
 * unpacking the weights. The sums are k axpy calls' within rounding (bit
 * for bit where a kernel adds each row as axpy does; AVX2 Q4_0 adds the
 * rows' offsets once per block). */
typedef void (*pf_axpy_multi_fn)(int n, int k, const float *a, const uint8_t *const *w, float *y);
#define PF_AXPY_MULTI_MAX 8
/* 4: with two accumulators per token (as vec_dot has) that fills the
 * AVX2 registers; 6 and 8 tokens ran slower on Zen 2. */
#define PF_DOT_MULTI_MAX 4
#define PF_DOT_ROWS_MAX 8

struct pf_quant_ops {
	enum pf_dtype type;
	enum pf_dtype vec_dot_type;   /* format vec_dot expects x in */
	pf_to_float_fn to_float;      /* scalar reference dequantizer */
	pf_to_float_fn to_float_fast; /* fastest dequantizer for this CPU, same output */
	pf_from_float_fn from_float;  /* quantizer; NULL when the type cannot be produced */
	pf_vec_dot_fn vec_dot;        /* fastest kernel for this CPU; NULL for activation formats */
	pf_vec_dot_fn vec_dot_ref;    /* scalar reference; NULL for activation formats */
	pf_vec_dot_multi_fn vec_dot_multi; /* vec_dot for several tokens; NULL where none */
	pf_axpy_fn axpy;              /* fastest for this CPU; NULL for activation formats */
	pf_axpy_fn axpy_ref;          /* scalar reference; NULL for activation formats */
	pf_axpy_multi_fn axpy_multi;  /* NULL where the type has none: call axpy per row */
	pf_vec_dot_rows_fn vec_dot_rows; /* NULL where the type has none: call vec_dot per row */
};

/* NULL when the type has no kernels in this build. */
const struct pf_quant_ops *pf_quant_ops(enum pf_dtype t);

/* Name of the instruction set the fast kernels use ("avx2", "neon",
 * "scalar"), for benchmarks and `pinfer-model info`. */
const char *pf_quant_isa(void);

/* Half-precision conversions used across the engine. */
float pf_fp16_to_fp32(uint16_t h);
uint16_t pf_fp32_to_fp16(float f);
float pf_bf16_to_fp32(uint16_t h);
uint16_t pf_fp32_to_bf16(float f);

#endif
