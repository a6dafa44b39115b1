/* AVX2 dequantizers for x86-64, chosen at run time with the dot kernels
 * (quant.c); prefill runs them over tiles of weight rows for sgemm.
 *
 * They give the reference's floats bit for bit: every element is d * q,
 * d * q + m or ds * q - dm, with the scalar factors formed as the
 * reference forms them and each operation a separate multiply, add or
 * subtract, as in the reference (one FMA would round once where it rounds
 * twice). That also relies on the compiler not fusing them itself, which
 * GCC does not do under -std=c11. The only difference: F16C quiets a
 * signaling-NaN half, which the reference passes through as it is.
 *
 * Levels are widened to int32 straight from memory (vpmovzxbd), 8 elements
 * at a time, and assembled in int32 lanes, where shifts and masks need no
 * care about bits crossing between bytes. */
#if defined(__x86_64__)

#include <immintrin.h>

#include "quant_internal.h"

#define TARGET __attribute__((target("avx2,fma,f16c")))

TARGET static inline float ld_f16(const uint8_t *p)
{
	return _cvtsh_ss(pf_rd_u16(p));
}

TARGET static inline __m128i load128(const void *p)
{
	return _mm_loadu_si128((const __m128i *)p);
}

/* Bytes p[0..8) as int32 lanes. */
TARGET static inline __m256i u8x8(const uint8_t *p)
{
	return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

TARGET static inline __m256 scale(__m256i q, __m256 d)
{
	return _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
}

/* ---- float formats ---- */

TARGET void pf_f16_to_float_avx2(const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i, _mm256_cvtph_ps(load128(p + 2 * i)));
	for (; i < n; i++)
		dst[i] = ld_f16(p + 2 * i);
}

/* bf16 is the top half of a float: widen and shift. */
TARGET void pf_bf16_to_float_avx2(const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256i v = _mm256_cvtepu16_epi32(load128(p + 2 * i));
		_mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
	}
	for (; i < n; i++)
		dst[i] = pf_bf16_to_fp32(pf_rd_u16(p + 2 * i));
}

/* ---- 32-element formats ---- */

TARGET void pf_q8_0_to_float_avx2(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q8_0 *b = src;
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		__m256 d = _mm256_set1_ps(ld_f16(b->d));
		for (int k = 0; k < QK; k += 8) {
			__m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + k)));
			_mm256_storeu_ps(dst + k, scale(q, d));
		}
	}
}

/* Levels of elements 0-7, 8-15 (low nibbles of qs[0..16)) and 16-23, 24-31
 * (high nibbles). */
TARGET static inline void nibbles(const uint8_t *qs, __m256i q[4])
{
	const __m256i m4 = _mm256_set1_epi32(0x0f);
	__m256i x0 = u8x8(qs), x1 = u8x8(qs + 8);
	q[0] = _mm256_and_si256(x0, m4);
	q[1] = _mm256_and_si256(x1, m4);
	q[2] = _mm256_srli_epi32(x0, 4);
	q[3] = _mm256_srli_epi32(x1, 4);
}

/* Adds the fifth bits: element j's is bit j of qh. */
TARGET static inline void fifth_bits(const uint8_t *qh, __m256i q[4])
{
	const __m256i one = _mm256_set1_epi32(1), lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	__m256i h = _mm256_set1_epi32((int)pf_rd_u32(qh));
	PF_UNROLL(4)
	for (int g = 0; g < 4; g++) {
		__m256i bit = _mm256_and_si256(_mm256_srlv_epi32(h, _mm256_add_epi32(lane, _mm256_set1_epi32(8 * g))), one);
		q[g] = _mm256_or_si256(q[g], _mm256_slli_epi32(bit, 4));
	}
}

/* y = d * (q - zero) */
TARGET static inline void store_sym(float *dst, __m256i q[4], float d, int zero)
{
	__m256 vd = _mm256_set1_ps(d);
	__m256i z = _mm256_set1_epi32(zero);
	PF_UNROLL(4)
	for (int g = 0; g < 4; g++)
		_mm256_storeu_ps(dst + 8 * g, scale(_mm256_sub_epi32(q[g], z), vd));
}

/* y = d * q + m */
TARGET static inline void store_offset(float *dst, __m256i q[4], float d, float m)
{
	__m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
	PF_UNROLL(4)
	for (int g = 0; g < 4; g++)
		_mm256_storeu_ps(dst + 8 * g, _mm256_add_ps(scale(q[g], vd), vm));
}

TARGET void pf_q4_0_to_float_avx2(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q4_0 *b = src;
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		__m256i q[4];
		nibbles(b->qs, q);
		store_sym(dst, q, ld_f16(b->d), 8);
	}
}

TARGET void pf_q4_1_to_float_avx2(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q4_1 *b = src;
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		__m256i q[4];
		nibbles(b->qs, q);
		store_offset(dst, q, ld_f16(b->d), ld_f16(b->m));
	}
}

TARGET void pf_q5_0_to_float_avx2(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q5_0 *b = src;
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		__m256i q[4];
		nibbles(b->qs, q);
		fifth_bits(b->qh, q);
		store_sym(dst, q, ld_f16(b->d), 16);
	}
}

TARGET void pf_q5_1_to_float_avx2(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q5_1 *b = src;
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		__m256i q[4];
		nibbles(b->qs, q);
		fifth_bits(b->qh, q);
		store_offset(dst, q, ld_f16(b->d), ld_f16(b->m));
	}
}

/* ---- K formats ---- */

/* Q4_K/Q5_K's per-sub-block factors, as the reference computes them:
 * ds[j] = d * sc[j], dm[j] = dmin * m[j]. */
TARGET static inline void k4_factors(const uint8_t *d, const uint8_t *dmin, const uint8_t *scales,
	float ds[8], float dm[8])
{
	uint8_t sc[8], m[8];
	pf_k4_scales(scales, sc, m);
	float fd = ld_f16(d), fmin = ld_f16(dmin);
	for (int j = 0; j < 8; j++) {
		ds[j] = fd * sc[j];
		dm[j] = fmin * m[j];
	}
}

/* y = ds * q - dm */
TARGET static inline void store_k(float *dst, __m256i q, const float *ds, const float *dm)
{
	_mm256_storeu_ps(dst, _mm256_sub_ps(scale(q, _mm256_set1_ps(*ds)), _mm256_set1_ps(*dm)));
}

TARGET void pf_q4_k_to_float_avx2(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q4_k *b = src;
	const __m256i m4 = _mm256_set1_epi32(0x0f);
	for (int64_t i = 0; i < n / QK_K; i++, b++, dst += QK_K) {
		float ds[8], dm[8];
		k4_factors(b->d, b->dmin, b->scales, ds, dm);
		for (int c = 0; c < 4; c++) {
			const uint8_t *q = b->qs + 32 * c;
			float *o = dst + 64 * c;
			for (int l = 0; l < 32; l += 8) {
				__m256i x = u8x8(q + l);
				store_k(o + l, _mm256_and_si256(x, m4), &ds[2 * c], &dm[2 * c]);
				store_k(o + 32 + l, _mm256_srli_epi32(x, 4), &ds[2 * c + 1], &dm[2 * c + 1]);
			}
		}
	}
}

/* Chunk c's fifth bits are bits 2c (low half) and 2c+1 (high half) of the
 * qh bytes, moved to bit 4 here. */
TARGET void pf_q5_k_to_float_avx2(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q5_k *b = src;
	const __m256i m4 = _mm256_set1_epi32(0x0f), b0 = _mm256_set1_epi32(1), b1 = _mm256_set1_epi32(2);
	for (int64_t i = 0; i < n / QK_K; i++, b++, dst += QK_K) {
		float ds[8], dm[8];
		k4_factors(b->d, b->dmin, b->scales, ds, dm);
		for (int c = 0; c < 4; c++) {
			const uint8_t *q = b->qs + 32 * c;
			float *o = dst + 64 * c;
			__m128i shift = _mm_cvtsi32_si128(2 * c);
			for (int l = 0; l < 32; l += 8) {
				__m256i x = u8x8(q + l), h = _mm256_srl_epi32(u8x8(b->qh + l), shift);
				__m256i lo = _mm256_or_si256(_mm256_and_si256(x, m4),
					_mm256_slli_epi32(_mm256_and_si256(h, b0), 4));
				__m256i hi = _mm256_or_si256(_mm256_srli_epi32(x, 4),
					_mm256_slli_epi32(_mm256_and_si256(h, b1), 3));
				store_k(o + l, lo, &ds[2 * c], &dm[2 * c]);
				store_k(o + 32 + l, hi, &ds[2 * c + 1], &dm[2 * c + 1]);
			}
		}
	}
}

/* Each half of 128 elements: for l < 32, elements l, l+32, l+64, l+96 from
 * the low nibbles of ql[l], ql[l+32], the high ones, and qh[l]'s bit pairs;
 * 8 consecutive l share a 16-element sub-block and so a scale. */
TARGET void pf_q6_k_to_float_avx2(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q6_k *b = src;
	const __m256i m4 = _mm256_set1_epi32(0x0f), m30 = _mm256_set1_epi32(0x30);
	const __m256i m32 = _mm256_set1_epi32(32);
	for (int64_t i = 0; i < n / QK_K; i++, b++, dst += QK_K) {
		float d = ld_f16(b->d), ds[16];
		for (int j = 0; j < 16; j++)
			ds[j] = d * b->scales[j];
		for (int h = 0; h < 2; h++) {
			const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
			const float *s = ds + 8 * h;
			float *o = dst + 128 * h;
			for (int l = 0; l < 32; l += 8) {
				__m256i a = u8x8(ql + l), c = u8x8(ql + 32 + l), hh = u8x8(qh + l);
				__m256i q[4] = {
					_mm256_or_si256(_mm256_and_si256(a, m4), _mm256_and_si256(_mm256_slli_epi32(hh, 4), m30)),
					_mm256_or_si256(_mm256_and_si256(c, m4), _mm256_and_si256(_mm256_slli_epi32(hh, 2), m30)),
					_mm256_or_si256(_mm256_srli_epi32(a, 4), _mm256_and_si256(hh, m30)),
					_mm256_or_si256(_mm256_srli_epi32(c, 4), _mm256_and_si256(_mm256_srli_epi32(hh, 2), m30)),
				};
				PF_UNROLL(4)
				for (int g = 0; g < 4; g++)
					_mm256_storeu_ps(o + 32 * g + l, scale(_mm256_sub_epi32(q[g], m32),
						_mm256_set1_ps(s[2 * g + l / 16])));
			}
		}
	}
}

#else
/* Keeps the translation unit non-empty on other architectures. */
typedef int pf_dequant_x86_unused;
#endif
