/* Private to the quant*.c files: block layouts and the per-ISA kernels that
 * quant.c puts in its tables.
 *
 * Blocks are declared with byte arrays only, so they have alignment 1: rows
 * in a GGUF file sit at 18-, 22-, 210-byte... strides, and a struct with a
 * uint16_t member would make every access through such a pointer undefined.
 * Multi-byte fields are read with memcpy (the helpers below), which compiles
 * to a plain unaligned load. Like GGUF, the layouts are little-endian. */
#ifndef PINFER_QUANT_INTERNAL_H
#define PINFER_QUANT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quant.h"

#define QK 32     /* elements per block of the 32-element formats */
#define QK_K 256  /* elements per super-block of the K formats */
#define K_SCALE_BYTES 12

/* y = d * (q - 8), q a nibble; elements 0..15 in the low nibbles of qs,
 * 16..31 in the high ones. */
struct pf_block_q4_0 {
	uint8_t d[2];
	uint8_t qs[QK / 2];
};

/* y = d * q + m */
struct pf_block_q4_1 {
	uint8_t d[2];
	uint8_t m[2];
	uint8_t qs[QK / 2];
};

/* y = d * (q - 16); bit 4 of element j's q is bit j of qh. */
struct pf_block_q5_0 {
	uint8_t d[2];
	uint8_t qh[4];
	uint8_t qs[QK / 2];
};

/* y = d * q + m */
struct pf_block_q5_1 {
	uint8_t d[2];
	uint8_t m[2];
	uint8_t qh[4];
	uint8_t qs[QK / 2];
};

/* y = d * q */
struct pf_block_q8_0 {
	uint8_t d[2];
	int8_t qs[QK];
};

/* Q8_0 plus s = d * sum(qs), which lets the Q4_1/Q5_1 kernels apply the
 * weights' offset m without summing x themselves. */
struct pf_block_q8_1 {
	uint8_t d[2];
	uint8_t s[2];
	int8_t qs[QK];
};

/* Eight sub-blocks of 32: y = d * sc[j] * q - dmin * m[j], with 6-bit sc and
 * m packed in scales (see pf_k4_scales). Each 32 bytes of qs hold 64
 * elements: the low nibbles are the first 32, the high nibbles the next. */
struct pf_block_q4_k {
	uint8_t d[2];
	uint8_t dmin[2];
	uint8_t scales[K_SCALE_BYTES];
	uint8_t qs[QK_K / 2];
};

/* Q4_K with a fifth bit: for the 64 elements of qs chunk c, element l of
 * the low-nibble half takes bit 2c of qh[l], of the high half bit 2c+1. */
struct pf_block_q5_k {
	uint8_t d[2];
	uint8_t dmin[2];
	uint8_t scales[K_SCALE_BYTES];
	uint8_t qh[QK_K / 8];
	uint8_t qs[QK_K / 2];
};

/* Sixteen sub-blocks of 16: y = d * scales[j] * (q - 32), q 6 bits. Each
 * half of 128 elements uses 64 bytes of ql and 32 of qh: for l < 32,
 * elements l, l+32, l+64, l+96 take the low nibble of ql[l], of ql[l+32],
 * the high nibble of ql[l], of ql[l+32], and bits 0-1, 2-3, 4-5, 6-7 of
 * qh[l] on top. */
struct pf_block_q6_k {
	uint8_t ql[QK_K / 2];
	uint8_t qh[QK_K / 4];
	int8_t scales[QK_K / 16];
	uint8_t d[2];
};

/* Activations for the K formats: y = d * q, float d, and bsums[j] the sum of
 * qs[16j..16j+16), so kernels get sub-block sums of x for free. */
struct pf_block_q8_k {
	uint8_t d[4];
	int8_t qs[QK_K];
	uint8_t bsums[QK_K / 16][2];
};

/* Q8_S, the in-memory activation format of Q4_0 and Q5_0: y = d * q with a
 * float d, q in -127..127 as for Q8_0, laid out for the dot kernels rather
 * than as an array of self-contained blocks. A block is four 16-byte chunks:
 *   0: d, four copies (float)
 *   1: s[0..4), s[l] = 8 * (q[4l..4l+4) summed + q[16+4l..16+4l+4) summed)
 *   2: q[0..16)
 *   3: q[16..32)
 * In a row, blocks go in pairs whose chunks interleave (block 2p's chunk k
 * at 32k within the pair, block 2p+1's at 32k + 16), so one 32-byte load
 * gets the same chunk of both blocks; an odd last block stands alone. s is
 * the term by which Q4_0's unsigned levels overstate the dot, 8 * sum(x)
 * (Q5_0's is 2 * s), split so that lane l of a 4-byte-group dot (vpmaddwd
 * after vpmaddubsw, sdot) has its share; kernels only rely on the sum of
 * the four. The reference code reads d and q only. */
#define Q8_S_CHUNK 16

/* Offset of chunk k of block b in a row of nb blocks. */
static inline size_t pf_q8_s_chunk(int nb, int b, int k)
{
	size_t pair = (size_t)(b / 2) * 8 * Q8_S_CHUNK;
	if ((b | 1) < nb)
		return pair + (size_t)(2 * k + (b & 1)) * Q8_S_CHUNK;
	return pair + (size_t)k * Q8_S_CHUNK;
}

_Static_assert(sizeof(struct pf_block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(struct pf_block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(struct pf_block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(struct pf_block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(struct pf_block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(struct pf_block_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(struct pf_block_q4_k) == 144, "q4_k layout");
_Static_assert(sizeof(struct pf_block_q5_k) == 176, "q5_k layout");
_Static_assert(sizeof(struct pf_block_q6_k) == 210, "q6_k layout");
_Static_assert(sizeof(struct pf_block_q8_k) == 292, "q8_k layout");

static inline uint16_t pf_rd_u16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint32_t pf_rd_u32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline float pf_rd_f16(const uint8_t *p)
{
	return pf_fp16_to_fp32(pf_rd_u16(p));
}

static inline float pf_rd_f32(const uint8_t *p)
{
	float v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline void pf_wr_f16(uint8_t *p, float f)
{
	uint16_t h = pf_fp32_to_fp16(f);
	memcpy(p, &h, sizeof(h));
}

/* Unpacks Q4_K/Q5_K's twelve scale bytes into sc[0..8) and m[0..8) with word
 * operations: bytes 0-3 hold sc[0..4) in their low 6 bits, bytes 4-7 m[0..4);
 * bytes 8-11 hold the low 4 bits of sc[4..8) and m[4..8) as nibbles, whose top
 * 2 bits are the spare high bits of bytes 0-3 and 4-7. */
static inline void pf_k4_scales(const uint8_t *scales, uint8_t sc[8], uint8_t m[8])
{
	uint32_t u0 = pf_rd_u32(scales), u1 = pf_rd_u32(scales + 4), u2 = pf_rd_u32(scales + 8);
	uint32_t w[4] = {
		u0 & 0x3f3f3f3f,
		(u2 & 0x0f0f0f0f) | ((u0 >> 6) & 0x03030303) << 4,
		u1 & 0x3f3f3f3f,
		((u2 >> 4) & 0x0f0f0f0f) | ((u1 >> 6) & 0x03030303) << 4,
	};
	memcpy(sc, &w[0], 8);
	memcpy(m, &w[2], 8);
}

/* Unrolls the next loop fully. For short loops over a local array of
 * vectors: -O2 leaves them rolled, and the array then lives on the stack. */
#define PF_PRAGMA(x) _Pragma(#x)
#define PF_UNROLL(n) PF_PRAGMA(GCC unroll n)

/* A vec_dot_rows kernel's body: k rows (2..PF_DOT_ROWS_MAX) to
 * rows(n, s, w, x, K) with K a constant, so that its loops over the rows
 * unroll and each row's accumulators stay in registers; one row to the
 * single-row kernel one(n, s, w[0], x). */
#define PF_DOT_ROWS_SWITCH(rows, one, n, k, s, w, x) \
	do { \
		switch (k) { \
		case 8: rows(n, s, w, x, 8); break; \
		case 7: rows(n, s, w, x, 7); break; \
		case 6: rows(n, s, w, x, 6); break; \
		case 5: rows(n, s, w, x, 5); break; \
		case 4: rows(n, s, w, x, 4); break; \
		case 3: rows(n, s, w, x, 3); break; \
		case 2: rows(n, s, w, x, 2); break; \
		default: one(n, s, w[0], x); break; \
		} \
	} while (0)
_Static_assert(PF_DOT_ROWS_MAX == 8, "PF_DOT_ROWS_SWITCH has a case for each row count");

/* Scalar reference: dequantizers, quantizers, dots (quant_ref.c for the
 * float and 32-element formats, quant_ref_k.c for the K formats). */
#define PF_REF_DECLS(t) \
	void pf_##t##_to_float(const void *src, float *dst, int64_t n); \
	void pf_##t##_from_float(const float *src, void *dst, int64_t n)
PF_REF_DECLS(f32);
PF_REF_DECLS(f16);
PF_REF_DECLS(bf16);
PF_REF_DECLS(q4_0);
PF_REF_DECLS(q4_1);
PF_REF_DECLS(q5_0);
PF_REF_DECLS(q5_1);
PF_REF_DECLS(q8_0);
PF_REF_DECLS(q8_1);
PF_REF_DECLS(q4_k);
PF_REF_DECLS(q5_k);
PF_REF_DECLS(q6_k);
PF_REF_DECLS(q8_k);
PF_REF_DECLS(q8_s);
#undef PF_REF_DECLS

/* One dot kernel per weight type and ISA: pf_<type>_dot_<isa>. */
#define PF_DOT_DECLS(isa) \
	void pf_f32_dot_##isa(int n, float *s, const void *w, const void *x); \
	void pf_f16_dot_##isa(int n, float *s, const void *w, const void *x); \
	void pf_bf16_dot_##isa(int n, float *s, const void *w, const void *x); \
	void pf_q4_0_dot_##isa(int n, float *s, const void *w, const void *x); \
	void pf_q4_1_dot_##isa(int n, float *s, const void *w, const void *x); \
	void pf_q5_0_dot_##isa(int n, float *s, const void *w, const void *x); \
	void pf_q5_1_dot_##isa(int n, float *s, const void *w, const void *x); \
	void pf_q8_0_dot_##isa(int n, float *s, const void *w, const void *x); \
	void pf_q4_k_dot_##isa(int n, float *s, const void *w, const void *x); \
	void pf_q5_k_dot_##isa(int n, float *s, const void *w, const void *x); \
	void pf_q6_k_dot_##isa(int n, float *s, const void *w, const void *x)
PF_DOT_DECLS(ref);
#if defined(__x86_64__)
PF_DOT_DECLS(avx2);
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
PF_DOT_DECLS(neon);
#endif
#undef PF_DOT_DECLS

/* Multi-token dot kernels (pf_vec_dot_multi_fn), for the types that have
 * one: pf_<type>_dot_multi_<isa>. The scalar ones loop over the reference. */
#define PF_DOT_MULTI_DECLS(isa) \
	void pf_q4_0_dot_multi_##isa(int n, float *s, size_t s_stride, const void *w, \
				     const void *x, size_t x_stride, int n_x); \
	void pf_q4_k_dot_multi_##isa(int n, float *s, size_t s_stride, const void *w, \
				     const void *x, size_t x_stride, int n_x); \
	void pf_q6_k_dot_multi_##isa(int n, float *s, size_t s_stride, const void *w, \
				     const void *x, size_t x_stride, int n_x)
PF_DOT_MULTI_DECLS(ref);
#if defined(__x86_64__)
PF_DOT_MULTI_DECLS(avx2);
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
PF_DOT_MULTI_DECLS(neon);
#endif
#undef PF_DOT_MULTI_DECLS

/* Multi-row dot kernels (pf_vec_dot_rows_fn): Q4_0's, the format of the
 * sparse FFN's gate and up rows in the models it runs fastest. */
void pf_q4_0_dot_rows_ref(int n, int k, float *s, const uint8_t *const *w, const void *x);
#if defined(__x86_64__)
void pf_q4_0_dot_rows_avx2(int n, int k, float *s, const uint8_t *const *w, const void *x);
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
void pf_q4_0_dot_rows_neon(int n, int k, float *s, const uint8_t *const *w, const void *x);
#endif

/* axpy kernels (pf_axpy_fn), one per weight type and ISA:
 * pf_<type>_axpy_<isa>. The references (quant_ref.c, quant_ref_k.c)
 * dequantize with to_float and add; the SIMD ones (quant_x86.c,
 * dequant_neon.c) unpack each block in registers and fuse the scaling into
 * one FMA per vector, so they round differently (by a few ulps of the terms
 * added). */
#define PF_AXPY_DECLS(isa) \
	void pf_f32_axpy_##isa(int n, float a, const void *w, float *y); \
	void pf_f16_axpy_##isa(int n, float a, const void *w, float *y); \
	void pf_bf16_axpy_##isa(int n, float a, const void *w, float *y); \
	void pf_q4_0_axpy_##isa(int n, float a, const void *w, float *y); \
	void pf_q4_1_axpy_##isa(int n, float a, const void *w, float *y); \
	void pf_q5_0_axpy_##isa(int n, float a, const void *w, float *y); \
	void pf_q5_1_axpy_##isa(int n, float a, const void *w, float *y); \
	void pf_q8_0_axpy_##isa(int n, float a, const void *w, float *y); \
	void pf_q4_k_axpy_##isa(int n, float a, const void *w, float *y); \
	void pf_q5_k_axpy_##isa(int n, float a, const void *w, float *y); \
	void pf_q6_k_axpy_##isa(int n, float a, const void *w, float *y)
PF_AXPY_DECLS(ref);
#if defined(__x86_64__)
PF_AXPY_DECLS(avx2);
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
PF_AXPY_DECLS(neon);
#endif
#undef PF_AXPY_DECLS

/* Multi-row axpy kernels (pf_axpy_multi_fn) of the neuron-major down
 * formats; the references call the reference axpy once per row. */
#define PF_AXPY_MULTI_DECLS(isa) \
	void pf_q4_0_axpy_multi_##isa(int n, int k, const float *a, const uint8_t *const *w, float *y); \
	void pf_q8_0_axpy_multi_##isa(int n, int k, const float *a, const uint8_t *const *w, float *y)
PF_AXPY_MULTI_DECLS(ref);
#if defined(__x86_64__)
PF_AXPY_MULTI_DECLS(avx2);
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
PF_AXPY_MULTI_DECLS(neon);
#endif
#undef PF_AXPY_MULTI_DECLS

/* The reference axpy of every weight type: y += a * v, v the row as the
 * reference dequantizer gives it, PF_AXPY_REF_STEP elements (whole blocks
 * of block elements, block_bytes each) at a time through a buffer on the
 * stack. */
#define PF_AXPY_REF_STEP 256
static inline void pf_axpy_by_blocks(pf_to_float_fn to_float, int block, size_t block_bytes,
	int n, float a, const void *w, float *y)
{
	float v[PF_AXPY_REF_STEP];
	const uint8_t *p = w;
	for (int i = 0; i < n; i += PF_AXPY_REF_STEP) {
		int len = n - i < PF_AXPY_REF_STEP ? n - i : PF_AXPY_REF_STEP;
		to_float(p + (size_t)(i / block) * block_bytes, v, len);
		for (int j = 0; j < len; j++)
			y[i + j] += a * v[j];
	}
}

/* SIMD quantizers of Q8_S, Q8_0 and F16 (actquant_<isa>.c): the
 * reference's bytes. */
#if defined(__x86_64__)
void pf_q8_s_from_float_avx2(const float *src, void *dst, int64_t n);
void pf_q8_0_from_float_avx2(const float *src, void *dst, int64_t n);
void pf_f16_from_float_avx2(const float *src, void *dst, int64_t n);
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
void pf_q8_s_from_float_neon(const float *src, void *dst, int64_t n);
void pf_q8_0_from_float_neon(const float *src, void *dst, int64_t n);
void pf_f16_from_float_neon(const float *src, void *dst, int64_t n);
#endif

/* SIMD dequantizers, pf_<type>_to_float_<isa> (dequant_<isa>.c). F32 has
 * none: its reference is already a memcpy. */
#define PF_DEQUANT_DECLS(isa) \
	void pf_f16_to_float_##isa(const void *src, float *dst, int64_t n); \
	void pf_bf16_to_float_##isa(const void *src, float *dst, int64_t n); \
	void pf_q4_0_to_float_##isa(const void *src, float *dst, int64_t n); \
	void pf_q4_1_to_float_##isa(const void *src, float *dst, int64_t n); \
	void pf_q5_0_to_float_##isa(const void *src, float *dst, int64_t n); \
	void pf_q5_1_to_float_##isa(const void *src, float *dst, int64_t n); \
	void pf_q8_0_to_float_##isa(const void *src, float *dst, int64_t n); \
	void pf_q4_k_to_float_##isa(const void *src, float *dst, int64_t n); \
	void pf_q5_k_to_float_##isa(const void *src, float *dst, int64_t n); \
	void pf_q6_k_to_float_##isa(const void *src, float *dst, int64_t n)
#if defined(__x86_64__)
PF_DEQUANT_DECLS(avx2);
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
PF_DEQUANT_DECLS(neon);
#endif
#undef PF_DEQUANT_DECLS

#endif
