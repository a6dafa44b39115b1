/* AVX2 quantizers of the activation formats decode uses: Q8_S for Q4_0
 * and Q5_0 weights (quant_internal.h), Q8_0 for Q8_0 weights (the
 * predictor's); and F16, which an F16 KV cache stores every new key and
 * value in. Decode converts each matrix product's input on one thread
 * while the others wait, and the scalar quantizers call fmaxf and lrintf
 * per element: these give their bytes bit for bit (the same float
 * operations, round to nearest even, a NaN ignored by the maximum, and a
 * NaN product -127 as lrintf's LONG_MIN clamps to). */
#if defined(__x86_64__)

#include <immintrin.h>

#include "quant_internal.h"

#define TARGET __attribute__((target("avx2,fma,f16c")))

/* The 32 values at src into v, and the largest magnitude among them (a
 * NaN in the first operand of vmaxps leaves the second: fmaxf's choice). */
TARGET static inline float block_max(const float *src, __m256 v[4])
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	__m256 m = _mm256_setzero_ps();
	for (int k = 0; k < 4; k++) {
		v[k] = _mm256_loadu_ps(src + 8 * k);
		m = _mm256_max_ps(_mm256_andnot_ps(sign, v[k]), m);
	}
	__m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
	m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
	return _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
}

/* round(v * (1 / d)) clamped to -127..127 (0 for d = 0) */
TARGET static inline void block_levels(const __m256 v[4], float d, __m256i q[4])
{
	const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
	__m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
	for (int k = 0; k < 4; k++)
		q[k] = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v[k], id)), lo), hi);
}

/* Levels of q[0..4) as 32 bytes in element order. */
TARGET static inline __m256i block_bytes(const __m256i q[4])
{
	__m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
	return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

TARGET void pf_q8_s_from_float_avx2(const float *src, void *dst, int64_t n)
{
	uint8_t *p = dst;
	int nb = (int)(n / QK);
	for (int b = 0; b < nb; b++, src += QK) {
		__m256 v[4];
		float d = block_max(src, v) / 127.0f;
		__m256i q[4];
		block_levels(v, d, q);
		/* s[l] = 8 * (q[4l..4l+4) + q[16+4l..16+4l+4)) summed */
		__m256i a = _mm256_add_epi32(q[0], q[2]), c = _mm256_add_epi32(q[1], q[3]);
		__m256i h = _mm256_hadd_epi32(a, c);
		h = _mm256_hadd_epi32(h, h);
		__m128i s = _mm_unpacklo_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
		__m256i bytes = block_bytes(q);
		_mm_storeu_ps((float *)(void *)(p + pf_q8_s_chunk(nb, b, 0)), _mm_set1_ps(d));
		_mm_storeu_si128((__m128i *)(void *)(p + pf_q8_s_chunk(nb, b, 1)), _mm_slli_epi32(s, 3));
		_mm_storeu_si128((__m128i *)(void *)(p + pf_q8_s_chunk(nb, b, 2)), _mm256_castsi256_si128(bytes));
		_mm_storeu_si128((__m128i *)(void *)(p + pf_q8_s_chunk(nb, b, 3)), _mm256_extracti128_si256(bytes, 1));
	}
}

/* Q8_0 quantizes against its scale rounded to fp16, as the reference does. */
TARGET void pf_q8_0_from_float_avx2(const float *src, void *dst, int64_t n)
{
	struct pf_block_q8_0 *b = dst;
	for (int64_t i = 0; i < n / QK; i++, b++, src += QK) {
		__m256 v[4];
		__m128i h = _mm_cvtps_ph(_mm_set_ss(block_max(src, v) / 127.0f), _MM_FROUND_TO_NEAREST_INT);
		__m256i q[4];
		block_levels(v, _mm_cvtss_f32(_mm_cvtph_ps(h)), q);
		_mm256_storeu_si256((__m256i *)(void *)b->qs, block_bytes(q));
		uint16_t bits = (uint16_t)_mm_extract_epi16(h, 0);
		memcpy(b->d, &bits, sizeof(bits));
	}
}

/* F16C rounds to nearest even as the reference does, takes values past
 * 65504 to infinity and keeps a NaN quiet with its payload's top bits. */
TARGET void pf_f16_from_float_avx2(const float *src, void *dst, int64_t n)
{
	uint8_t *p = dst;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(void *)(p + 2 * i),
				 _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
	for (; i < n; i++) {
		uint16_t h = (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(src[i]), _MM_FROUND_TO_NEAREST_INT), 0);
		memcpy(p + 2 * i, &h, sizeof(h));
	}
}

#endif
