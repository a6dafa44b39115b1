/* The table of weight formats and the choice of kernels for this CPU.
 *
 * Activations go to Q8_S for Q4_0 and Q5_0 (its float scale, precomputed
 * 8 * sum(q) and paired blocks let their kernels keep levels unsigned and do
 * two blocks per step: 1.4-1.8x the speed with Q8_0 activations on Zen 2),
 * Q8_0 for Q8_0 weights (its kernel already streams at the read bandwidth
 * of a core), Q8_1 for the formats with an offset (its
 * precomputed d * sum(q) pays for the offset term) and Q8_K for the K
 * formats; float weights take float activations. Q8_1, Q8_K and Q8_S are
 * listed for their converters only and have no dot kernel.
 *
 * Q4_0, Q4_K and Q6_K also have multi-token kernels for prefill, which
 * unpack each weight block once for PF_DOT_MULTI_MAX tokens: on Zen 2 (2
 * threads, 4096x4096) Q4_0 goes from 121 to 170 GFLOP/s, Q4_K from 80 to
 * 145, Q6_K from 112 to 145. Q4_0 also multiplies a few rows with one
 * token at once, for the sparse FFN's gathered gate and up rows.
 *
 * Every weight type has an axpy kernel (y += a * row) for the sparse FFN,
 * whose scalar reference dequantizes a block with to_float and adds; Q4_0
 * and Q8_0, the formats of neuron-major down rows, also add several rows
 * per pass over y. */
#include <stddef.h>

#include "quant_internal.h"

/* Nothing dequantizes activations in bulk, so their fast dequantizer is
 * the reference. Q8_S and Q8_0, which decode converts matrix products'
 * inputs to, have SIMD quantizers (actquant_<isa>.c); the others use the
 * reference's. */
#define ACTIVATION_WITH(t, from, quantize) \
	[PF_##t] = { PF_##t, PF_##t, pf_##from##_to_float, pf_##from##_to_float, \
		quantize, NULL, NULL, NULL, NULL, NULL, NULL, NULL }
#define ACTIVATION(t, from) ACTIVATION_WITH(t, from, pf_##from##_from_float)
#define Q8_S_FROM_ref pf_q8_s_from_float
#define Q8_S_FROM_avx2 pf_q8_s_from_float_avx2
#define Q8_S_FROM_neon pf_q8_s_from_float_neon
#define Q8_0_FROM_ref pf_q8_0_from_float
#define Q8_0_FROM_avx2 pf_q8_0_from_float_avx2
#define Q8_0_FROM_neon pf_q8_0_from_float_neon
#define F16_FROM_ref pf_f16_from_float
#define F16_FROM_avx2 pf_f16_from_float_avx2
#define F16_FROM_neon pf_f16_from_float_neon

/* Weight types: the fast dequantizer, vec_dot and axpy are filled in per
 * ISA below; the scalar table's fast ones are the references. */
#define DEQUANT_ref(name) pf_##name##_to_float
#define DEQUANT_avx2(name) pf_##name##_to_float_avx2
#define DEQUANT_neon(name) pf_##name##_to_float_neon
#define DEQUANT(isa, name) DEQUANT_##isa(name)

/* Weight types, with their multi-token dot and multi-row axpy kernels
 * where they have them. */
#define WEIGHT_FULL(t, vt, name, isa, fast, quantize, dot_multi, axpy_multi, dot_rows) \
	[PF_##t] = { PF_##t, PF_##vt, pf_##name##_to_float, fast, quantize, \
		pf_##name##_dot_##isa, pf_##name##_dot_ref, dot_multi, \
		pf_##name##_axpy_##isa, pf_##name##_axpy_ref, axpy_multi, dot_rows }
#define WEIGHT_WITH(t, vt, name, isa, fast, dot_multi, axpy_multi) \
	WEIGHT_FULL(t, vt, name, isa, fast, pf_##name##_from_float, dot_multi, axpy_multi, NULL)
#define WEIGHT(t, vt, name, isa, fast) WEIGHT_WITH(t, vt, name, isa, fast, NULL, NULL)
#define WEIGHT_MULTI(t, vt, name, isa, fast) \
	WEIGHT_WITH(t, vt, name, isa, fast, pf_##name##_dot_multi_##isa, NULL)

#define TABLE(isa) { \
	WEIGHT(F32, F32, f32, isa, pf_f32_to_float), \
	WEIGHT_FULL(F16, F32, f16, isa, DEQUANT(isa, f16), F16_FROM_##isa, NULL, NULL, NULL), \
	WEIGHT(BF16, F32, bf16, isa, DEQUANT(isa, bf16)), \
	WEIGHT_FULL(Q4_0, Q8_S, q4_0, isa, DEQUANT(isa, q4_0), pf_q4_0_from_float, \
		    pf_q4_0_dot_multi_##isa, pf_q4_0_axpy_multi_##isa, pf_q4_0_dot_rows_##isa), \
	WEIGHT(Q4_1, Q8_1, q4_1, isa, DEQUANT(isa, q4_1)), \
	WEIGHT(Q5_0, Q8_S, q5_0, isa, DEQUANT(isa, q5_0)), \
	WEIGHT(Q5_1, Q8_1, q5_1, isa, DEQUANT(isa, q5_1)), \
	WEIGHT_FULL(Q8_0, Q8_0, q8_0, isa, DEQUANT(isa, q8_0), Q8_0_FROM_##isa, NULL, \
		    pf_q8_0_axpy_multi_##isa, NULL), \
	WEIGHT_MULTI(Q4_K, Q8_K, q4_k, isa, DEQUANT(isa, q4_k)), \
	WEIGHT(Q5_K, Q8_K, q5_k, isa, DEQUANT(isa, q5_k)), \
	WEIGHT_MULTI(Q6_K, Q8_K, q6_k, isa, DEQUANT(isa, q6_k)), \
	ACTIVATION(Q8_1, q8_1), \
	ACTIVATION(Q8_K, q8_k), \
	ACTIVATION_WITH(Q8_S, q8_s, Q8_S_FROM_##isa), \
}

#if defined(__aarch64__) && defined(__ARM_NEON)
static const struct pf_quant_ops ops_neon[PF_DTYPE_COUNT] = TABLE(neon);

static const struct pf_quant_ops *ops_table(void)
{
	return ops_neon;
}

const char *pf_quant_isa(void)
{
	return "neon";
}
#else
static const struct pf_quant_ops ops_ref[PF_DTYPE_COUNT] = TABLE(ref);

#if defined(__x86_64__)
#include <cpuid.h>
#include <stdatomic.h>

static const struct pf_quant_ops ops_avx2[PF_DTYPE_COUNT] = TABLE(avx2);

/* The AVX2 kernels also use FMA and F16C, which every AVX2 CPU has, but a
 * hypervisor may mask them, so all three are checked. Not every compiler's
 * __builtin_cpu_supports knows "f16c", hence cpuid for that one. */
static int have_avx2(void)
{
	/* cpuid traps to the hypervisor in a VM, and pf_quant_ops is called
	 * per matmul, so the answer is kept: 0 not asked yet, 1 no, 2 yes. */
	static _Atomic int known;
	int v = atomic_load_explicit(&known, memory_order_relaxed);
	if (!v) {
		unsigned a, b, c, d;
		v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
			__get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) ? 2 : 1;
		atomic_store_explicit(&known, v, memory_order_relaxed);
	}
	return v == 2;
}

static const struct pf_quant_ops *ops_table(void)
{
	return have_avx2() ? ops_avx2 : ops_ref;
}

const char *pf_quant_isa(void)
{
	return have_avx2() ? "avx2" : "scalar";
}
#else
static const struct pf_quant_ops *ops_table(void)
{
	return ops_ref;
}

const char *pf_quant_isa(void)
{
	return "scalar";
}
#endif
#endif

const struct pf_quant_ops *pf_quant_ops(enum pf_dtype t)
{
	if ((unsigned)t >= PF_DTYPE_COUNT || !ops_table()[t].to_float)
		return NULL;
	return &ops_table()[t];
}
