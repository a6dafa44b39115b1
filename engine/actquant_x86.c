/* The AVX2 quantizer of Q8_S, the activation format of Q4_0 and Q5_0
 * weights (quant_internal.h). Decode converts each matrix product's input
 * on one thread while the others wait, and the scalar quantizer calls
 * fmaxf and lrintf per element: this one gives its bytes bit for bit (the
 * same float operations, round to nearest even, a NaN ignored by the
 * maximum, and a NaN product -127 as lrintf's LONG_MIN clamps to). */
#if defined(__x86_64__)

#include <immintrin.h>

#include "quant_internal.h"

#define TARGET __attribute__((target("avx2,fma,f16c")))

TARGET void pf_q8_s_from_float_avx2(const float *src, void *dst, int64_t n)
{
	uint8_t *p = dst;
	int nb = (int)(n / QK);
	const __m256 sign = _mm256_set1_ps(-0.0f);
	const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
	for (int b = 0; b < nb; b++, src += QK) {
		__m256 v[4], m = _mm256_setzero_ps();
		for (int k = 0; k < 4; k++) {
			v[k] = _mm256_loadu_ps(src + 8 * k);
			/* a NaN in the first operand leaves the second: fmaxf's choice */
			m = _mm256_max_ps(_mm256_andnot_ps(sign, v[k]), m);
		}
		__m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
		m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
		m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
		float d = _mm_cvtss_f32(m4) / 127.0f;
		__m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
		__m256i q[4];
		for (int k = 0; k < 4; k++)
			q[k] = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v[k], id)), lo), hi);
		/* s[l] = 8 * (q[4l..4l+4) + q[16+4l..16+4l+4)) summed */
		__m256i a = _mm256_add_epi32(q[0], q[2]), c = _mm256_add_epi32(q[1], q[3]);
		__m256i h = _mm256_hadd_epi32(a, c);
		h = _mm256_hadd_epi32(h, h);
		__m128i s = _mm_unpacklo_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
		__m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
		bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
		_mm_storeu_ps((float *)(void *)(p + pf_q8_s_chunk(nb, b, 0)), _mm_set1_ps(d));
		_mm_storeu_si128((__m128i *)(void *)(p + pf_q8_s_chunk(nb, b, 1)), _mm_slli_epi32(s, 3));
		_mm_storeu_si128((__m128i *)(void *)(p + pf_q8_s_chunk(nb, b, 2)), _mm256_castsi256_si128(bytes));
		_mm_storeu_si128((__m128i *)(void *)(p + pf_q8_s_chunk(nb, b, 3)), _mm256_extracti128_si256(bytes, 1));
	}
}

#endif
