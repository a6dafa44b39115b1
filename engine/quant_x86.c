/* AVX2 dot kernels for x86-64, and the axpy kernels (at the end), which
 * share their unpacking of levels. The library is built without -m flags, so
 * every function that uses the instructions carries a target attribute and
 * quant.c only calls them after checking the CPU at run time.
 *
 * The integer kernels multiply weight levels with int8 activations using
 * vpmaddubsw, which needs one unsigned and one signed operand and saturates
 * pair sums at int16: each kernel notes why its ranges stay clear of that. */
#if defined(__x86_64__)

#include <immintrin.h>

#include "quant_internal.h"

#define TARGET __attribute__((target("avx2,fma,f16c")))

TARGET static inline float hsum128(__m128 v)
{
	v = _mm_add_ps(v, _mm_movehl_ps(v, v));
	v = _mm_add_ss(v, _mm_movehdup_ps(v));
	return _mm_cvtss_f32(v);
}

TARGET static inline float hsum(__m256 v)
{
	return hsum128(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

TARGET static inline float ld_f16(const uint8_t *p)
{
	return _cvtsh_ss(pf_rd_u16(p));
}

TARGET static inline __m256i load256(const void *p)
{
	return _mm256_loadu_si256((const __m256i *)p);
}

TARGET static inline __m128i load128(const void *p)
{
	return _mm_loadu_si128((const __m128i *)p);
}

/* Software prefetch of the weight row, this many bytes ahead of the block
 * being multiplied (past the row's end it fetches the next rows, which
 * decode multiplies next). The hardware prefetchers alone leave the memory
 * bus idle part of the time on these streams: on Zen 2 this lifted the
 * single-thread Q8_0, Q4_K and Q6_K kernels by 18-30% out of cache. F16
 * goes without: it already runs at the single-thread read bandwidth. */
#ifndef PF_PREFETCH_AHEAD
#define PF_PREFETCH_AHEAD 1536
#endif

/* Prefetches the cache lines of [p, p + bytes) that sit PF_PREFETCH_AHEAD
 * bytes ahead; bytes is a compile-time constant, so the loop unrolls. */
TARGET static inline void prefetch_ahead(const void *p, int bytes)
{
	for (int o = 0; o < bytes; o += 64)
		_mm_prefetch((const char *)p + PF_PREFETCH_AHEAD + o, _MM_HINT_T0);
}

/* ---- float formats: four independent accumulators hide the FMA latency ---- */

TARGET void pf_f32_dot_avx2(int n, float *s, const void *w, const void *x)
{
	const float *pw = w, *px = x;
	__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	int i = 0;
	for (; i + 32 <= n; i += 32) {
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(pw + i), _mm256_loadu_ps(px + i), a0);
		a1 = _mm256_fmadd_ps(_mm256_loadu_ps(pw + i + 8), _mm256_loadu_ps(px + i + 8), a1);
		a2 = _mm256_fmadd_ps(_mm256_loadu_ps(pw + i + 16), _mm256_loadu_ps(px + i + 16), a2);
		a3 = _mm256_fmadd_ps(_mm256_loadu_ps(pw + i + 24), _mm256_loadu_ps(px + i + 24), a3);
	}
	for (; i + 8 <= n; i += 8)
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(pw + i), _mm256_loadu_ps(px + i), a0);
	float sum = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
	for (; i < n; i++)
		sum += pf_rd_f32((const uint8_t *)w + 4 * i) * pf_rd_f32((const uint8_t *)x + 4 * i);
	*s = sum;
}

TARGET static inline __m256 load_f16x8(const uint8_t *p)
{
	return _mm256_cvtph_ps(load128(p));
}

TARGET void pf_f16_dot_avx2(int n, float *s, const void *w, const void *x)
{
	const uint8_t *pw = w;
	const float *px = x;
	__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	int i = 0;
	for (; i + 32 <= n; i += 32) {
		a0 = _mm256_fmadd_ps(load_f16x8(pw + 2 * i), _mm256_loadu_ps(px + i), a0);
		a1 = _mm256_fmadd_ps(load_f16x8(pw + 2 * i + 16), _mm256_loadu_ps(px + i + 8), a1);
		a2 = _mm256_fmadd_ps(load_f16x8(pw + 2 * i + 32), _mm256_loadu_ps(px + i + 16), a2);
		a3 = _mm256_fmadd_ps(load_f16x8(pw + 2 * i + 48), _mm256_loadu_ps(px + i + 24), a3);
	}
	for (; i + 8 <= n; i += 8)
		a0 = _mm256_fmadd_ps(load_f16x8(pw + 2 * i), _mm256_loadu_ps(px + i), a0);
	float sum = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
	for (; i < n; i++)
		sum += ld_f16(pw + 2 * i) * px[i];
	*s = sum;
}

/* bf16 is the top half of a float: widen and shift. */
TARGET static inline __m256 load_bf16x8(const uint8_t *p)
{
	__m256i v = _mm256_cvtepu16_epi32(load128(p));
	return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

TARGET void pf_bf16_dot_avx2(int n, float *s, const void *w, const void *x)
{
	const uint8_t *pw = w;
	const float *px = x;
	__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	int i = 0;
	for (; i + 32 <= n; i += 32) {
		a0 = _mm256_fmadd_ps(load_bf16x8(pw + 2 * i), _mm256_loadu_ps(px + i), a0);
		a1 = _mm256_fmadd_ps(load_bf16x8(pw + 2 * i + 16), _mm256_loadu_ps(px + i + 8), a1);
		a2 = _mm256_fmadd_ps(load_bf16x8(pw + 2 * i + 32), _mm256_loadu_ps(px + i + 16), a2);
		a3 = _mm256_fmadd_ps(load_bf16x8(pw + 2 * i + 48), _mm256_loadu_ps(px + i + 24), a3);
	}
	for (; i + 8 <= n; i += 8)
		a0 = _mm256_fmadd_ps(load_bf16x8(pw + 2 * i), _mm256_loadu_ps(px + i), a0);
	float sum = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
	for (; i < n; i++)
		sum += pf_bf16_to_fp32(pf_rd_u16(pw + 2 * i)) * px[i];
	*s = sum;
}

/* ---- 32-element formats ---- */

/* Sum of products of two int8 vectors, in 8 float lanes. vpmaddubsw wants
 * its first operand unsigned, so the sign of a moves onto b. Safe as long as
 * b has no -128 (whose negation wraps): b is always Q8_0 activations, which
 * stop at -127, and |a| <= 128 keeps pair sums <= 2*128*127 < 32768. */
TARGET static inline __m256 dot_i8(__m256i a, __m256i b)
{
	__m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
	return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* Same for unsigned a (levels of at most 5 bits, no saturation). */
TARGET static inline __m256 dot_u8_i8(__m256i a, __m256i b)
{
	__m256i p = _mm256_maddubs_epi16(a, b);
	return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* 16 bytes of packed nibbles to 32 levels in element order: low nibbles in
 * the first lane, high nibbles in the second. */
TARGET static inline __m256i unpack_nibbles(const uint8_t *qs)
{
	__m128i v = load128(qs);
	__m256i both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
	return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

/* Byte j is 0xff when bit j of bits is set: each byte gathers the qh byte
 * holding its bit, then tests its own bit. */
TARGET static inline __m256i expand_bits(const uint8_t *qh)
{
	const __m256i spread = _mm256_setr_epi8(
		0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
		2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
	const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
	__m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)pf_rd_u32(qh)), spread);
	return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* Two blocks per iteration into separate accumulators, so two independent
 * FMA chains are in flight; the tail block (odd count) goes to the first. */
#define BLOCK_LOOP(nb, body) \
	do { \
		int i_ = 0; \
		for (; i_ + 1 < (nb); i_ += 2) { \
			body(i_, acc0); \
			body(i_ + 1, acc1); \
		} \
		if (i_ < (nb)) \
			body(i_, acc0); \
	} while (0)

TARGET void pf_q8_0_dot_avx2(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q8_0 *bw = w, *bx = x;
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
#define Q8_0_BLOCK(i, acc) \
	acc = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(bw[i].d) * ld_f16(bx[i].d)), \
		dot_i8(load256(bw[i].qs), load256(bx[i].qs)), acc)
	int nb = n / QK, i = 0;
	for (; i + 1 < nb; i += 2) {
		prefetch_ahead(bw + i, 64);
		Q8_0_BLOCK(i, acc0);
		Q8_0_BLOCK(i + 1, acc1);
	}
	if (i < nb)
		Q8_0_BLOCK(i, acc0);
#undef Q8_0_BLOCK
	*s = hsum(_mm256_add_ps(acc0, acc1));
}

/* Q4_0 x Q8_S, two blocks per step: their nibbles share one register (block
 * b's in the low lane, b+1's in the high), which Q8_S's paired layout matches
 * chunk for chunk, so the widening, offset, conversion and FMA are done once
 * per pair. Levels stay unsigned (0..15: pair sums of vpmaddubsw are at most
 * 2*15*127, the two halves' sum 7620) and Q8_S's s, 8 * sum(x), takes the
 * offset of 8 off. The two fp16 scales are spread to [d0 x4 | d1 x4] as
 * halves and converted together. */
TARGET static inline __m256 q4_0_pair(const struct pf_block_q4_0 *bw, const uint8_t *px, __m256 acc)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	const __m128i spread = _mm_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3);
	__m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(load128(bw[0].qs)), load128(bw[1].qs), 1);
	__m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
	__m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, load256(px + 4 * Q8_S_CHUNK)),
		_mm256_maddubs_epi16(hi, load256(px + 6 * Q8_S_CHUNK)));
	__m256i p = _mm256_sub_epi32(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)),
		load256(px + 2 * Q8_S_CHUNK));
	__m128i d = _mm_insert_epi16(_mm_cvtsi32_si128(pf_rd_u16(bw[0].d)), pf_rd_u16(bw[1].d), 1);
	__m256 dw = _mm256_cvtph_ps(_mm_shuffle_epi8(d, spread));
	return _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_loadu_ps((const float *)(const void *)px)),
		_mm256_cvtepi32_ps(p), acc);
}

/* The odd last block of a row, alone in its chunks at pb: its term. */
TARGET static inline float q4_0_last_block(const struct pf_block_q4_0 *b, const uint8_t *pb)
{
	const __m128i m4 = _mm_set1_epi8(0x0f);
	__m128i v = load128(b->qs);
	__m128i p16 = _mm_add_epi16(
		_mm_maddubs_epi16(_mm_and_si128(v, m4), load128(pb + 2 * Q8_S_CHUNK)),
		_mm_maddubs_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), m4), load128(pb + 3 * Q8_S_CHUNK)));
	__m128i p = _mm_sub_epi32(_mm_madd_epi16(p16, _mm_set1_epi16(1)), load128(pb + Q8_S_CHUNK));
	return ld_f16(b->d) * pf_rd_f32(pb) * hsum128(_mm_cvtepi32_ps(p));
}

TARGET void pf_q4_0_dot_avx2(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q4_0 *bw = w;
	const uint8_t *px = x;
	int nb = n / QK, b = 0;
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
	for (; b + 3 < nb; b += 4) {
		prefetch_ahead(bw + b, 4 * (int)sizeof(*bw));
		acc0 = q4_0_pair(bw + b, px + (size_t)b * 4 * Q8_S_CHUNK, acc0);
		acc1 = q4_0_pair(bw + b + 2, px + (size_t)(b + 2) * 4 * Q8_S_CHUNK, acc1);
	}
	if (b + 1 < nb) {
		acc0 = q4_0_pair(bw + b, px + (size_t)b * 4 * Q8_S_CHUNK, acc0);
		b += 2;
	}
	float sum = hsum(_mm256_add_ps(acc0, acc1));
	if (b < nb)
		sum += q4_0_last_block(bw + b, px + (size_t)b * 4 * Q8_S_CHUNK);
	*s = sum;
}

/* k rows of Q4_0 against one x: per row the operations and their order of
 * pf_q4_0_dot_avx2 (so its sums bit for bit); the rows' blocks are taken
 * in step, so x's chunks are loaded once for all and k streams of weights
 * are in flight. */
TARGET static inline __attribute__((always_inline)) void q4_0_rows(int n, float *s, const uint8_t *const *w,
	const uint8_t *px, int k)
{
	const struct pf_block_q4_0 *bw[PF_DOT_ROWS_MAX];
	__m256 acc0[PF_DOT_ROWS_MAX], acc1[PF_DOT_ROWS_MAX];
	PF_UNROLL(8)
	for (int r = 0; r < k; r++) {
		bw[r] = (const struct pf_block_q4_0 *)(const void *)w[r];
		acc0[r] = acc1[r] = _mm256_setzero_ps();
	}
	int nb = n / QK, b = 0;
	for (; b + 3 < nb; b += 4) {
		PF_UNROLL(8)
		for (int r = 0; r < k; r++) {
			prefetch_ahead(bw[r] + b, 4 * (int)sizeof(*bw[r]));
			acc0[r] = q4_0_pair(bw[r] + b, px + (size_t)b * 4 * Q8_S_CHUNK, acc0[r]);
			acc1[r] = q4_0_pair(bw[r] + b + 2, px + (size_t)(b + 2) * 4 * Q8_S_CHUNK, acc1[r]);
		}
	}
	bool pair = b + 1 < nb;
	PF_UNROLL(8)
	for (int r = 0; r < k; r++) {
		int e = b;
		if (pair) {
			acc0[r] = q4_0_pair(bw[r] + e, px + (size_t)e * 4 * Q8_S_CHUNK, acc0[r]);
			e += 2;
		}
		float sum = hsum(_mm256_add_ps(acc0[r], acc1[r]));
		if (e < nb)
			sum += q4_0_last_block(bw[r] + e, px + (size_t)e * 4 * Q8_S_CHUNK);
		s[r] = sum;
	}
}

TARGET void pf_q4_0_dot_rows_avx2(int n, int k, float *s, const uint8_t *const *w, const void *x)
{
	PF_DOT_ROWS_SWITCH(q4_0_rows, pf_q4_0_dot_avx2, n, k, s, w, x);
}

/* Q4_0 x Q8_S for nx tokens at once (nx a constant after inlining): each
 * pair of blocks is unpacked once (nibbles, scales) and multiplied with
 * every token's pair, into the token's own accumulators. Per token the
 * operations and their order are pf_q4_0_dot_avx2's, so the sums match it
 * bit for bit. */
#define Q4_0_PAIR_TOKENS(bw, off, acc) \
	do { \
		__m256i v_ = _mm256_inserti128_si256(_mm256_castsi128_si256(load128((bw)[0].qs)), \
			load128((bw)[1].qs), 1); \
		__m256i lo_ = _mm256_and_si256(v_, m4), hi_ = _mm256_and_si256(_mm256_srli_epi16(v_, 4), m4); \
		__m128i d_ = _mm_insert_epi16(_mm_cvtsi32_si128(pf_rd_u16((bw)[0].d)), pf_rd_u16((bw)[1].d), 1); \
		__m256 dw_ = _mm256_cvtph_ps(_mm_shuffle_epi8(d_, spread)); \
		PF_UNROLL(4) \
		for (int t_ = 0; t_ < nx; t_++) { \
			const uint8_t *p_ = px + (size_t)t_ * x_stride + (off); \
			__m256i p16_ = _mm256_add_epi16(_mm256_maddubs_epi16(lo_, load256(p_ + 4 * Q8_S_CHUNK)), \
				_mm256_maddubs_epi16(hi_, load256(p_ + 6 * Q8_S_CHUNK))); \
			__m256i pi_ = _mm256_sub_epi32(_mm256_madd_epi16(p16_, ones), load256(p_ + 2 * Q8_S_CHUNK)); \
			acc[t_] = _mm256_fmadd_ps(_mm256_mul_ps(dw_, _mm256_loadu_ps((const float *)(const void *)p_)), \
				_mm256_cvtepi32_ps(pi_), acc[t_]); \
		} \
	} while (0)

TARGET static inline __attribute__((always_inline)) void q4_0_tokens(int n, float *s, size_t s_stride,
	const struct pf_block_q4_0 *bw, const uint8_t *px, size_t x_stride, int nx)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
	const __m128i spread = _mm_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3);
	int nb = n / QK, b = 0;
	__m256 acc0[PF_DOT_MULTI_MAX], acc1[PF_DOT_MULTI_MAX];
	PF_UNROLL(4)
	for (int t = 0; t < nx; t++)
		acc0[t] = acc1[t] = _mm256_setzero_ps();
	for (; b + 3 < nb; b += 4) {
		prefetch_ahead(bw + b, 4 * (int)sizeof(*bw));
		Q4_0_PAIR_TOKENS(bw + b, (size_t)b * 4 * Q8_S_CHUNK, acc0);
		Q4_0_PAIR_TOKENS(bw + b + 2, (size_t)(b + 2) * 4 * Q8_S_CHUNK, acc1);
	}
	if (b + 1 < nb) {
		Q4_0_PAIR_TOKENS(bw + b, (size_t)b * 4 * Q8_S_CHUNK, acc0);
		b += 2;
	}
	float sum[PF_DOT_MULTI_MAX];
	PF_UNROLL(4)
	for (int t = 0; t < nx; t++)
		sum[t] = hsum(_mm256_add_ps(acc0[t], acc1[t]));
	if (b < nb) {
		const __m128i m4x = _mm_set1_epi8(0x0f);
		__m128i v = load128(bw[b].qs);
		__m128i lo = _mm_and_si128(v, m4x), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4x);
		PF_UNROLL(4)
		for (int t = 0; t < nx; t++) {
			const uint8_t *pb = px + (size_t)t * x_stride + (size_t)b * 4 * Q8_S_CHUNK;
			__m128i p16 = _mm_add_epi16(_mm_maddubs_epi16(lo, load128(pb + 2 * Q8_S_CHUNK)),
				_mm_maddubs_epi16(hi, load128(pb + 3 * Q8_S_CHUNK)));
			__m128i p = _mm_sub_epi32(_mm_madd_epi16(p16, _mm_set1_epi16(1)), load128(pb + Q8_S_CHUNK));
			sum[t] += ld_f16(bw[b].d) * pf_rd_f32(pb) * hsum128(_mm_cvtepi32_ps(p));
		}
	}
	PF_UNROLL(4)
	for (int t = 0; t < nx; t++)
		s[(size_t)t * s_stride] = sum[t];
}
#undef Q4_0_PAIR_TOKENS

TARGET void pf_q4_0_dot_multi_avx2(int n, float *s, size_t s_stride, const void *w, const void *x,
				   size_t x_stride, int n_x)
{
	switch (n_x) {
	case 4: q4_0_tokens(n, s, s_stride, w, x, x_stride, 4); break;
	case 3: q4_0_tokens(n, s, s_stride, w, x, x_stride, 3); break;
	case 2: q4_0_tokens(n, s, s_stride, w, x, x_stride, 2); break;
	default: pf_q4_0_dot_avx2(n, s, w, x); break;
	}
}

/* The offset term m * sum(x) comes from the activations' precomputed s. */
TARGET void pf_q4_1_dot_avx2(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q4_1 *bw = w;
	const struct pf_block_q8_1 *bx = x;
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
	float offs = 0.0f;
#define Q4_1_BLOCK(i, acc) \
	do { \
		acc = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(bw[i].d) * ld_f16(bx[i].d)), \
			dot_u8_i8(unpack_nibbles(bw[i].qs), load256(bx[i].qs)), acc); \
		offs += ld_f16(bw[i].m) * ld_f16(bx[i].s); \
	} while (0)
	BLOCK_LOOP(n / QK, Q4_1_BLOCK);
#undef Q4_1_BLOCK
	*s = hsum(_mm256_add_ps(acc0, acc1)) + offs;
}

/* Q5_0 x Q8_S, in pairs of blocks like Q4_0. The fifth bits of the pair's
 * low halves are bits 0-15 of each block's qh, of the high halves bits
 * 16-31: with block b's qh in the low lane and b+1's in the high one, one
 * byte shuffle per half spreads them. Levels stay unsigned (0..31: the two
 * halves' pair sums add to at most 4*31*127 = 15748) and 2 * s, 16 * sum(x),
 * takes the offset of 16 off. */
TARGET static inline __m256 q5_0_pair(const struct pf_block_q5_0 *bw, const uint8_t *px, __m256 acc)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
	const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
	const __m256i spread_lo = _mm256_setr_epi8(
		0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
		0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
	const __m256i spread_hi = _mm256_add_epi8(spread_lo, _mm256_set1_epi8(2));
	const __m128i spread = _mm_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3);
	__m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(load128(bw[0].qs)), load128(bw[1].qs), 1);
	__m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_cvtsi32_si128((int)pf_rd_u32(bw[0].qh))),
		_mm_cvtsi32_si128((int)pf_rd_u32(bw[1].qh)), 1);
	__m256i hl = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(h, spread_lo), bit), bit);
	__m256i hh = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(h, spread_hi), bit), bit);
	__m256i lo = _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(hl, b4));
	__m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), _mm256_and_si256(hh, b4));
	__m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, load256(px + 4 * Q8_S_CHUNK)),
		_mm256_maddubs_epi16(hi, load256(px + 6 * Q8_S_CHUNK)));
	__m256i p = _mm256_sub_epi32(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)),
		_mm256_slli_epi32(load256(px + 2 * Q8_S_CHUNK), 1));
	__m128i d = _mm_insert_epi16(_mm_cvtsi32_si128(pf_rd_u16(bw[0].d)), pf_rd_u16(bw[1].d), 1);
	__m256 dw = _mm256_cvtph_ps(_mm_shuffle_epi8(d, spread));
	return _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_loadu_ps((const float *)(const void *)px)),
		_mm256_cvtepi32_ps(p), acc);
}

TARGET void pf_q5_0_dot_avx2(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q5_0 *bw = w;
	const uint8_t *px = x;
	int nb = n / QK, b = 0;
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
	for (; b + 3 < nb; b += 4) {
		prefetch_ahead(bw + b, 4 * (int)sizeof(*bw));
		acc0 = q5_0_pair(bw + b, px + (size_t)b * 4 * Q8_S_CHUNK, acc0);
		acc1 = q5_0_pair(bw + b + 2, px + (size_t)(b + 2) * 4 * Q8_S_CHUNK, acc1);
	}
	if (b + 1 < nb) {
		acc0 = q5_0_pair(bw + b, px + (size_t)b * 4 * Q8_S_CHUNK, acc0);
		b += 2;
	}
	float sum = hsum(_mm256_add_ps(acc0, acc1));
	if (b < nb) {
		/* The odd last block: levels minus 16 as int8, against its contiguous
		 * q (the sign trick of dot_i8 in 128 bits). */
		const uint8_t *pb = px + (size_t)b * 4 * Q8_S_CHUNK;
		const __m256i f0 = _mm256_set1_epi8((char)0xf0);
		__m256i q = _mm256_or_si256(unpack_nibbles(bw[b].qs), _mm256_andnot_si256(expand_bits(bw[b].qh), f0));
		__m256i xq = _mm256_inserti128_si256(_mm256_castsi128_si256(load128(pb + 2 * Q8_S_CHUNK)),
			load128(pb + 3 * Q8_S_CHUNK), 1);
		sum += ld_f16(bw[b].d) * pf_rd_f32(pb) * hsum(dot_i8(q, xq));
	}
	*s = sum;
}

TARGET void pf_q5_1_dot_avx2(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q5_1 *bw = w;
	const struct pf_block_q8_1 *bx = x;
	const __m256i b4 = _mm256_set1_epi8(0x10);
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
	float offs = 0.0f;
#define Q5_1_BLOCK(i, acc) \
	do { \
		__m256i q_ = _mm256_or_si256(unpack_nibbles(bw[i].qs), \
			_mm256_and_si256(expand_bits(bw[i].qh), b4)); \
		acc = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(bw[i].d) * ld_f16(bx[i].d)), \
			dot_u8_i8(q_, load256(bx[i].qs)), acc); \
		offs += ld_f16(bw[i].m) * ld_f16(bx[i].s); \
	} while (0)
	BLOCK_LOOP(n / QK, Q5_1_BLOCK);
#undef Q5_1_BLOCK
	*s = hsum(_mm256_add_ps(acc0, acc1)) + offs;
}

/* ---- K formats ----
 *
 * Per super-block the integer sums stay exact in int32 and are scaled once.
 * Weight levels are unsigned (at most 6 bits), so vpmaddubsw pairs stay
 * within 2*63*128 < 32768 even for Q8_K's -128. */

/* Broadcasts 16-bit lane k of each 128-bit half of v across that half. */
TARGET static inline __m256i bcast16(__m256i v, int k)
{
	return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)((2 * k + 1) << 8 | 2 * k)));
}

/* Q4_K/Q5_K's offset term: dmin * sum over sub-blocks of m[j] times the sum
 * of the activations in sub-block j (two Q8_K bsums each). */
TARGET static inline __m128 k4_offsets(const uint8_t *m, const struct pf_block_q8_k *bx)
{
	__m128i pairs = _mm_hadd_epi16(load128(bx->bsums[0]), load128(bx->bsums[8]));
	__m128i mins = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)m));
	return _mm_cvtepi32_ps(_mm_madd_epi16(pairs, mins));
}

/* Sub-block scales as 16-bit lanes, the same 8 in both halves. */
TARGET static inline __m256i k4_scale_lanes(const uint8_t *sc)
{
	return _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
}

TARGET void pf_q4_k_dot_avx2(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q4_k *bw = w;
	const struct pf_block_q8_k *bx = x;
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	__m256 acc = _mm256_setzero_ps();
	__m128 acc_off = _mm_setzero_ps();
	for (int i = 0; i < n / QK_K; i++, bw++, bx++) {
		prefetch_ahead(bw, (int)sizeof(*bw));
		float dx = pf_rd_f32(bx->d);
		uint8_t sc[8], m[8];
		pf_k4_scales(bw->scales, sc, m);
		acc_off = _mm_fmadd_ps(_mm_set1_ps(ld_f16(bw->dmin) * dx), k4_offsets(m, bx), acc_off);
		__m256i scales = k4_scale_lanes(sc);
		/* Two sums so consecutive chunks do not wait on each other. */
		__m256i sum0 = _mm256_setzero_si256(), sum1 = sum0;
		for (int c = 0; c < 4; c++) {
			__m256i q = load256(bw->qs + 32 * c);
			__m256i plo = _mm256_maddubs_epi16(_mm256_and_si256(q, m4), load256(bx->qs + 64 * c));
			__m256i phi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
				load256(bx->qs + 64 * c + 32));
			sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(plo, bcast16(scales, 2 * c)));
			sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(phi, bcast16(scales, 2 * c + 1)));
		}
		acc = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(bw->d) * dx),
			_mm256_cvtepi32_ps(_mm256_add_epi32(sum0, sum1)), acc);
	}
	*s = hsum(acc) - hsum128(acc_off);
}

/* Q4_K x Q8_K for nx tokens at once (nx a constant after inlining): each
 * super-block's levels and broadcast sub-block scales are unpacked once
 * into locals (the compiler keeps what fits in registers, the rest in L1)
 * and every token's activations are multiplied with them. Per token the
 * sums and their order are pf_q4_k_dot_avx2's, so the results match it bit
 * for bit. */
TARGET static inline __attribute__((always_inline)) void q4_k_tokens(int n, float *s, size_t s_stride,
	const struct pf_block_q4_k *bw, const uint8_t *px, size_t x_stride, int nx)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	__m256 acc[PF_DOT_MULTI_MAX];
	__m128 acc_off[PF_DOT_MULTI_MAX];
	PF_UNROLL(4)
	for (int t = 0; t < nx; t++) {
		acc[t] = _mm256_setzero_ps();
		acc_off[t] = _mm_setzero_ps();
	}
	for (int i = 0; i < n / QK_K; i++, bw++) {
		prefetch_ahead(bw, (int)sizeof(*bw));
		uint8_t sc[8], m[8];
		pf_k4_scales(bw->scales, sc, m);
		__m256i scales = k4_scale_lanes(sc);
		__m256i lv[8], sl[8];
		PF_UNROLL(4)
		for (int c = 0; c < 4; c++) {
			__m256i q = load256(bw->qs + 32 * c);
			lv[2 * c] = _mm256_and_si256(q, m4);
			lv[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
			sl[2 * c] = bcast16(scales, 2 * c);
			sl[2 * c + 1] = bcast16(scales, 2 * c + 1);
		}
		float d = ld_f16(bw->d), dmin = ld_f16(bw->dmin);
		PF_UNROLL(4)
		for (int t = 0; t < nx; t++) {
			const struct pf_block_q8_k *bx =
				(const struct pf_block_q8_k *)(const void *)(px + (size_t)t * x_stride) + i;
			float dx = pf_rd_f32(bx->d);
			acc_off[t] = _mm_fmadd_ps(_mm_set1_ps(dmin * dx), k4_offsets(m, bx), acc_off[t]);
			__m256i sum0 = _mm256_setzero_si256(), sum1 = sum0;
			PF_UNROLL(4)
			for (int c = 0; c < 4; c++) {
				__m256i plo = _mm256_maddubs_epi16(lv[2 * c], load256(bx->qs + 64 * c));
				__m256i phi = _mm256_maddubs_epi16(lv[2 * c + 1], load256(bx->qs + 64 * c + 32));
				sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(plo, sl[2 * c]));
				sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(phi, sl[2 * c + 1]));
			}
			acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * dx),
				_mm256_cvtepi32_ps(_mm256_add_epi32(sum0, sum1)), acc[t]);
		}
	}
	PF_UNROLL(4)
	for (int t = 0; t < nx; t++)
		s[(size_t)t * s_stride] = hsum(acc[t]) - hsum128(acc_off[t]);
}

TARGET void pf_q4_k_dot_multi_avx2(int n, float *s, size_t s_stride, const void *w, const void *x,
				   size_t x_stride, int n_x)
{
	switch (n_x) {
	case 4: q4_k_tokens(n, s, s_stride, w, x, x_stride, 4); break;
	case 3: q4_k_tokens(n, s, s_stride, w, x, x_stride, 3); break;
	case 2: q4_k_tokens(n, s, s_stride, w, x, x_stride, 2); break;
	default: pf_q4_k_dot_avx2(n, s, w, x); break;
	}
}

/* The fifth bits of chunk c's two halves are bits 2c and 2c+1 of qh: shift
 * qh right one bit per half and take bit 0 of each byte (the 16-bit shift
 * only ever pollutes bit 7). */
TARGET void pf_q5_k_dot_avx2(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q5_k *bw = w;
	const struct pf_block_q8_k *bx = x;
	const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
	__m256 acc = _mm256_setzero_ps();
	__m128 acc_off = _mm_setzero_ps();
	for (int i = 0; i < n / QK_K; i++, bw++, bx++) {
		float dx = pf_rd_f32(bx->d);
		uint8_t sc[8], m[8];
		pf_k4_scales(bw->scales, sc, m);
		acc_off = _mm_fmadd_ps(_mm_set1_ps(ld_f16(bw->dmin) * dx), k4_offsets(m, bx), acc_off);
		__m256i scales = k4_scale_lanes(sc);
		__m256i hb = load256(bw->qh);
		__m256i sum0 = _mm256_setzero_si256(), sum1 = sum0;
		for (int c = 0; c < 4; c++) {
			__m256i q = load256(bw->qs + 32 * c);
			__m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4),
				_mm256_slli_epi16(_mm256_and_si256(hb, one), 4));
			hb = _mm256_srli_epi16(hb, 1);
			__m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
				_mm256_slli_epi16(_mm256_and_si256(hb, one), 4));
			hb = _mm256_srli_epi16(hb, 1);
			__m256i plo = _mm256_maddubs_epi16(lo, load256(bx->qs + 64 * c));
			__m256i phi = _mm256_maddubs_epi16(hi, load256(bx->qs + 64 * c + 32));
			sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(plo, bcast16(scales, 2 * c)));
			sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(phi, bcast16(scales, 2 * c + 1)));
		}
		acc = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(bw->d) * dx),
			_mm256_cvtepi32_ps(_mm256_add_epi32(sum0, sum1)), acc);
	}
	*s = hsum(acc) - hsum128(acc_off);
}

/* Levels are used unsigned (0..63); the -32 offset is applied once per
 * super-block as 32 * sum(scales[j] * bsums[j]). A 32-element group covers
 * two 16-element sub-blocks: its first 128-bit half takes scale 2g, its
 * second 2g+1. */
TARGET void pf_q6_k_dot_avx2(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q6_k *bw = w;
	const struct pf_block_q8_k *bx = x;
	const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
	__m256 acc = _mm256_setzero_ps();
	for (int i = 0; i < n / QK_K; i++, bw++, bx++) {
		prefetch_ahead(bw, (int)sizeof(*bw));
		__m256i sum0 = _mm256_setzero_si256(), sum1 = sum0;
		for (int h = 0; h < 2; h++) {
			const uint8_t *ql = bw->ql + 64 * h;
			const int8_t *xq = bx->qs + 128 * h;
			__m256i l0 = load256(ql), l1 = load256(ql + 32), hh = load256(bw->qh + 32 * h);
			__m256i q[4] = {
				_mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hh, 4), m30)),
				_mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hh, 2), m30)),
				_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hh, m30)),
				_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
					_mm256_and_si256(_mm256_srli_epi16(hh, 2), m30)),
			};
			__m256i scales = _mm256_broadcastsi128_si256(
				_mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(bw->scales + 8 * h))));
			for (int g = 0; g < 4; g++) {
				__m256i p = _mm256_maddubs_epi16(q[g], load256(xq + 32 * g));
				__m256i sel = _mm256_set_m128i(
					_mm_set1_epi16((short)((4 * g + 3) << 8 | (4 * g + 2))),
					_mm_set1_epi16((short)((4 * g + 1) << 8 | 4 * g)));
				__m256i t = _mm256_madd_epi16(p, _mm256_shuffle_epi8(scales, sel));
				if (g & 1)
					sum1 = _mm256_add_epi32(sum1, t);
				else
					sum0 = _mm256_add_epi32(sum0, t);
			}
		}
		__m256i all_scales = _mm256_cvtepi8_epi16(load128(bw->scales));
		__m256i offset = _mm256_madd_epi16(load256(bx->bsums), all_scales);
		__m256i sumi = _mm256_sub_epi32(_mm256_add_epi32(sum0, sum1), _mm256_slli_epi32(offset, 5));
		acc = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(bw->d) * pf_rd_f32(bx->d)),
			_mm256_cvtepi32_ps(sumi), acc);
	}
	*s = hsum(acc);
}

/* Q6_K x Q8_K for nx tokens at once (nx a constant after inlining): each
 * super-block's levels and broadcast scales are unpacked once, as in
 * q4_k_tokens. Per token the float operations are pf_q6_k_dot_avx2's, on
 * the same exact integer sums, so the results match it bit for bit. */
TARGET static inline __attribute__((always_inline)) void q6_k_tokens(int n, float *s, size_t s_stride,
	const struct pf_block_q6_k *bw, const uint8_t *px, size_t x_stride, int nx)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
	__m256 acc[PF_DOT_MULTI_MAX];
	PF_UNROLL(4)
	for (int t = 0; t < nx; t++)
		acc[t] = _mm256_setzero_ps();
	for (int i = 0; i < n / QK_K; i++, bw++) {
		prefetch_ahead(bw, (int)sizeof(*bw));
		__m256i lv[8], sl[8];
		PF_UNROLL(2)
		for (int h = 0; h < 2; h++) {
			const uint8_t *ql = bw->ql + 64 * h;
			__m256i l0 = load256(ql), l1 = load256(ql + 32), hh = load256(bw->qh + 32 * h);
			lv[4 * h] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hh, 4), m30));
			lv[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hh, 2), m30));
			lv[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hh, m30));
			lv[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
				_mm256_and_si256(_mm256_srli_epi16(hh, 2), m30));
			__m256i scales = _mm256_broadcastsi128_si256(
				_mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(bw->scales + 8 * h))));
			PF_UNROLL(4)
			for (int g = 0; g < 4; g++)
				sl[4 * h + g] = _mm256_shuffle_epi8(scales, _mm256_set_m128i(
					_mm_set1_epi16((short)((4 * g + 3) << 8 | (4 * g + 2))),
					_mm_set1_epi16((short)((4 * g + 1) << 8 | 4 * g))));
		}
		__m256i all_scales = _mm256_cvtepi8_epi16(load128(bw->scales));
		float d = ld_f16(bw->d);
		PF_UNROLL(4)
		for (int t = 0; t < nx; t++) {
			const struct pf_block_q8_k *bx =
				(const struct pf_block_q8_k *)(const void *)(px + (size_t)t * x_stride) + i;
			__m256i sum0 = _mm256_setzero_si256(), sum1 = sum0;
			PF_UNROLL(8)
			for (int k = 0; k < 8; k++) {
				__m256i p = _mm256_maddubs_epi16(lv[k], load256(bx->qs + 32 * k));
				__m256i u = _mm256_madd_epi16(p, sl[k]);
				if (k & 1)
					sum1 = _mm256_add_epi32(sum1, u);
				else
					sum0 = _mm256_add_epi32(sum0, u);
			}
			__m256i offset = _mm256_madd_epi16(load256(bx->bsums), all_scales);
			__m256i sumi = _mm256_sub_epi32(_mm256_add_epi32(sum0, sum1), _mm256_slli_epi32(offset, 5));
			acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * pf_rd_f32(bx->d)), _mm256_cvtepi32_ps(sumi), acc[t]);
		}
	}
	PF_UNROLL(4)
	for (int t = 0; t < nx; t++)
		s[(size_t)t * s_stride] = hsum(acc[t]);
}

TARGET void pf_q6_k_dot_multi_avx2(int n, float *s, size_t s_stride, const void *w, const void *x,
				   size_t x_stride, int n_x)
{
	switch (n_x) {
	case 4: q6_k_tokens(n, s, s_stride, w, x, x_stride, 4); break;
	case 3: q6_k_tokens(n, s, s_stride, w, x, x_stride, 3); break;
	case 2: q6_k_tokens(n, s, s_stride, w, x, x_stride, 2); break;
	default: pf_q6_k_dot_avx2(n, s, w, x); break;
	}
}

/* ---- axpy: y += a * w, for the sparse FFN's down projection ----
 *
 * y stays in L1 while weight rows stream past, so the floor is the stores
 * to y, one 8-float vector per cycle, which the small formats do not reach:
 * their cost is the unpacking, and the code is shaped to keep that short.
 * Each vector of 8 levels ends as int32 lanes, is converted and added with
 * one FMA, y = q * (a * d) + y; formats with an offset add their share,
 * a * m or -a * dm, to y first. The factors are rounded once more than the
 * reference's a * (d * q) and the FMA once less than its multiply and add,
 * so results differ from it by a few ulps of the terms.
 *
 * Packed nibbles are spread straight into int32 lanes: a block's 16 bytes
 * are broadcast to both 128-bit lanes and one vpshufb puts bytes 0-7 (or
 * 8-15) one per lane, whose low nibbles are 8 consecutive elements and high
 * nibbles the 8 elements 16 (Q4_0) or 32 (Q4_K) further on. Levels built in
 * bytes (5 and 6 bits, Q8_0) are sign-extended 8 at a time. The scales of
 * the 32-element formats are converted four blocks at a time, and the K
 * formats' eight or sixteen sub-block factors in vectors, then all are
 * broadcast from memory, which costs no shuffle. On Zen 2 (Q4_0, rows in
 * L2) the spreading took a block from 3.6 to 3.0 ns and the batched scales
 * to 2.6 ns; the weights are prefetched as in the dot kernels, which
 * helped from memory. */

/* Byte k of 16 broadcast to both lanes into int32 lane k, bytes 0-7 (LANES_LO)
 * or 8-15 (LANES_HI); the other bytes of each lane are zeroed. */
#define SPREAD(b) (int)(0xffffff00u | (b))
#define LANES_LO _mm256_setr_epi32(SPREAD(0), SPREAD(1), SPREAD(2), SPREAD(3), \
	SPREAD(4), SPREAD(5), SPREAD(6), SPREAD(7))
#define LANES_HI _mm256_setr_epi32(SPREAD(8), SPREAD(9), SPREAD(10), SPREAD(11), \
	SPREAD(12), SPREAD(13), SPREAD(14), SPREAD(15))

TARGET static inline __m256i bcast128(const uint8_t *p)
{
	return _mm256_broadcastsi128_si256(load128(p));
}

/* y[0..8) = q * s + y */
TARGET static inline void fma8(float *y, __m256i q, __m256 s)
{
	_mm256_storeu_ps(y, _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), s, _mm256_loadu_ps(y)));
}

/* y[0..8) = q * s + (y + o) */
TARGET static inline void fma8_off(float *y, __m256i q, __m256 s, __m256 o)
{
	_mm256_storeu_ps(y, _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), s, _mm256_add_ps(_mm256_loadu_ps(y), o)));
}

/* Int8 levels q[0..8) (the low 8 bytes) into y[0..8), times s. */
TARGET static inline void fma8_i8(float *y, __m128i q, __m256 s)
{
	fma8(y, _mm256_cvtepi8_epi32(q), s);
}

TARGET static inline void fma8_i8_off(float *y, __m128i q, __m256 s, __m256 o)
{
	fma8_off(y, _mm256_cvtepi8_epi32(q), s, o);
}

/* 32 int8 levels in element order. */
TARGET static inline void fma32_i8(float *y, __m256i q, __m256 s)
{
	__m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
	fma8_i8(y, lo, s);
	fma8_i8(y + 8, _mm_unpackhi_epi64(lo, lo), s);
	fma8_i8(y + 16, hi, s);
	fma8_i8(y + 24, _mm_unpackhi_epi64(hi, hi), s);
}

TARGET static inline void fma32_i8_off(float *y, __m256i q, __m256 s, __m256 o)
{
	__m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
	fma8_i8_off(y, lo, s, o);
	fma8_i8_off(y + 8, _mm_unpackhi_epi64(lo, lo), s, o);
	fma8_i8_off(y + 16, hi, s, o);
	fma8_i8_off(y + 24, _mm_unpackhi_epi64(hi, hi), s, o);
}

/* The float formats: four vectors per step, then single vectors, then a
 * scalar tail (their rows may have any length). */
#define AXPY_FLOAT(name, load8, ld1, esize) \
	TARGET void pf_##name##_axpy_avx2(int n, float a, const void *w, float *y) \
	{ \
		const uint8_t *pw = w; \
		__m256 va = _mm256_set1_ps(a); \
		int i = 0; \
		for (; i + 32 <= n; i += 32) { \
			PF_UNROLL(4) \
			for (int k = 0; k < 32; k += 8) \
				_mm256_storeu_ps(y + i + k, _mm256_fmadd_ps(load8(pw + esize * (i + k)), va, \
					_mm256_loadu_ps(y + i + k))); \
		} \
		for (; i + 8 <= n; i += 8) \
			_mm256_storeu_ps(y + i, _mm256_fmadd_ps(load8(pw + esize * i), va, _mm256_loadu_ps(y + i))); \
		for (; i < n; i++) \
			y[i] += a * ld1(pw + esize * i); \
	}

TARGET static inline __m256 load_f32x8(const uint8_t *p)
{
	return _mm256_loadu_ps((const float *)(const void *)p);
}

TARGET static inline float ld_bf16(const uint8_t *p)
{
	return pf_bf16_to_fp32(pf_rd_u16(p));
}

AXPY_FLOAT(f32, load_f32x8, pf_rd_f32, 4)
AXPY_FLOAT(f16, load_f16x8, ld_f16, 2)
AXPY_FLOAT(bf16, load_bf16x8, ld_bf16, 2)
#undef AXPY_FLOAT

/* The fp16 fields at p, p + stride, p + 2 * stride, p + 3 * stride as
 * halves 4k..4k+4 of a vector, k = 0 for d, 1 for m. */
TARGET static inline uint64_t halves4(const uint8_t *p, size_t stride)
{
	return pf_rd_u16(p) | (uint64_t)pf_rd_u16(p + stride) << 16 |
		(uint64_t)pf_rd_u16(p + 2 * stride) << 32 | (uint64_t)pf_rd_u16(p + 3 * stride) << 48;
}

/* f[k] = a * d and f[4 + k] = a * m of blocks k < 4 (m: any fp16 field,
 * the scale again where the type has no offset). */
TARGET static inline void factors4(const uint8_t *d, const uint8_t *m, size_t stride, float a, float f[8])
{
	__m128i h = _mm_set_epi64x((long long)halves4(m, stride), (long long)halves4(d, stride));
	_mm256_storeu_ps(f, _mm256_mul_ps(_mm256_set1_ps(a), _mm256_cvtph_ps(h)));
}

/* Runs body(i, s, o) for every block i < nb of bw, s and o broadcasts of
 * a * d and a * m (mfield: m, or d where the type has none): four blocks
 * per step with their factors converted together, then one at a time. */
#define AXPY_BLOCKS(nb, bw, mfield, body) \
	do { \
		int i_ = 0; \
		float f_[8]; \
		for (; i_ + 3 < (nb); i_ += 4) { \
			prefetch_ahead((bw) + i_, 4 * (int)sizeof(*(bw))); \
			factors4((bw)[i_].d, (bw)[i_].mfield, sizeof(*(bw)), a, f_); \
			PF_UNROLL(4) \
			for (int k_ = 0; k_ < 4; k_++) { \
				__m256 s_ = _mm256_broadcast_ss(f_ + k_), o_ = _mm256_broadcast_ss(f_ + 4 + k_); \
				body(i_ + k_, s_, o_); \
			} \
		} \
		for (; i_ < (nb); i_++) { \
			__m256 s_ = _mm256_set1_ps(a * ld_f16((bw)[i_].d)); \
			__m256 o_ = _mm256_set1_ps(a * ld_f16((bw)[i_].mfield)); \
			body(i_, s_, o_); \
		} \
	} while (0)

TARGET void pf_q8_0_axpy_avx2(int n, float a, const void *w, float *y)
{
	const struct pf_block_q8_0 *bw = w;
#define Q8_0_AXPY(i, s, o) \
	do { \
		(void)(o); \
		PF_UNROLL(4) \
		for (int k = 0; k < QK; k += 8) \
			fma8_i8(y + QK * (i) + k, _mm_loadl_epi64((const __m128i *)(const void *)(bw[i].qs + k)), s); \
	} while (0)
	AXPY_BLOCKS(n / QK, bw, d, Q8_0_AXPY);
#undef Q8_0_AXPY
}

/* Multi-row axpy: a block's 32 elements of y stay in four registers while
 * each row's block is unpacked and added as the single-row kernels add it
 * (levels to float, one FMA with a[r] * d), so the sums are theirs bit for
 * bit. */
#define AXPY_MULTI(name, block_t, unpack) \
	TARGET void pf_##name##_axpy_multi_avx2(int n, int k, const float *a, const uint8_t *const *w, \
						float *y) \
	{ \
		const block_t *bw[PF_AXPY_MULTI_MAX]; \
		for (int r = 0; r < k; r++) \
			bw[r] = (const block_t *)(const void *)w[r]; \
		for (int i = 0; i < n / QK; i++) { \
			float *yb = y + QK * i; \
			__m256 acc[4]; \
			PF_UNROLL(4) \
			for (int e = 0; e < 4; e++) \
				acc[e] = _mm256_loadu_ps(yb + 8 * e); \
			for (int r = 0; r < k; r++) { \
				__m256i q[4]; \
				unpack(&bw[r][i], q); \
				__m256 s = _mm256_set1_ps(a[r] * ld_f16(bw[r][i].d)); \
				PF_UNROLL(4) \
				for (int e = 0; e < 4; e++) \
					acc[e] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q[e]), s, acc[e]); \
			} \
			PF_UNROLL(4) \
			for (int e = 0; e < 4; e++) \
				_mm256_storeu_ps(yb + 8 * e, acc[e]); \
		} \
	}

TARGET static inline void unpack_q8_0(const struct pf_block_q8_0 *b, __m256i q[4])
{
	PF_UNROLL(4)
	for (int e = 0; e < 4; e++)
		q[e] = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(b->qs + 8 * e)));
}

AXPY_MULTI(q8_0, struct pf_block_q8_0, unpack_q8_0)
#undef AXPY_MULTI

/* y[QK * i..) += the k rows' block i, s[r] = a[r] * d of row r's block,
 * off = -8 * (s[0] + ... + s[k-1]). The levels are added as 0..15 and the
 * -8 of every row once at the end: a subtraction per row and vector less
 * than the single-row kernel, in exchange for the sums no longer being k
 * axpy calls' bit for bit (they differ by rounding, as any other order of
 * the same additions would). */
TARGET static inline __attribute__((always_inline)) void q4_0_axpy_block(float *yb, int k,
	const struct pf_block_q4_0 *const *bw, int i, const float *s, size_t s_stride, float off)
{
	const __m256i m4 = _mm256_set1_epi32(0x0f);
	__m256 acc[4];
	PF_UNROLL(4)
	for (int e = 0; e < 4; e++)
		acc[e] = _mm256_loadu_ps(yb + 8 * e);
	PF_UNROLL(8)
	for (int r = 0; r < k; r++) {
		/* bytes 0-7 hold elements 0-7 and 16-23, bytes 8-15 8-15 and 24-31 */
		__m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)bw[r][i].qs));
		__m256i hi = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(bw[r][i].qs + 8)));
		__m256 f = _mm256_broadcast_ss(s + (size_t)r * s_stride);
		acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(lo, m4)), f, acc[0]);
		acc[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(hi, m4)), f, acc[1]);
		acc[2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(lo, 4)), f, acc[2]);
		acc[3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(hi, 4)), f, acc[3]);
	}
	__m256 o = _mm256_set1_ps(off);
	PF_UNROLL(4)
	for (int e = 0; e < 4; e++)
		_mm256_storeu_ps(yb + 8 * e, _mm256_add_ps(acc[e], o));
}

/* Q4_0 rows, four blocks at a time: the rows' factors a[r] * d of the four
 * blocks are converted together (as the single-row kernel's are) and taken
 * by broadcast from memory; a tail block alone. On Zen 2 (rows in L2) a
 * block of a row takes 1.8 ns with eight rows per call, 2.1 with four,
 * where the kernel that added each row as axpy does took 2.6; in the 7B
 * sparse FFN the neuron pass ran 10% faster. */
TARGET static inline __attribute__((always_inline)) void q4_0_axpy_rows(int n, int k, const float *a,
	const uint8_t *const *w, float *y)
{
	const struct pf_block_q4_0 *bw[PF_AXPY_MULTI_MAX];
	PF_UNROLL(8)
	for (int r = 0; r < k; r++)
		bw[r] = (const struct pf_block_q4_0 *)(const void *)w[r];
	int nb = n / QK, i = 0;
	for (; i + 3 < nb; i += 4) {
		float s[PF_AXPY_MULTI_MAX][4], off[4];
		__m128 sum = _mm_setzero_ps();
		PF_UNROLL(8)
		for (int r = 0; r < k; r++) {
			prefetch_ahead(bw[r] + i, 4 * (int)sizeof(*bw[r]));
			__m128 f = _mm_mul_ps(_mm_set1_ps(a[r]),
				_mm_cvtph_ps(_mm_cvtsi64_si128((long long)halves4(bw[r][i].d, sizeof(*bw[r])))));
			_mm_storeu_ps(s[r], f);
			sum = _mm_add_ps(sum, f);
		}
		_mm_storeu_ps(off, _mm_mul_ps(sum, _mm_set1_ps(-8.0f)));
		PF_UNROLL(4)
		for (int b = 0; b < 4; b++)
			q4_0_axpy_block(y + QK * (i + b), k, bw, i + b, &s[0][b], 4, off[b]);
	}
	for (; i < nb; i++) {
		float s[PF_AXPY_MULTI_MAX], sum = 0.0f;
		for (int r = 0; r < k; r++) {
			s[r] = a[r] * ld_f16(bw[r][i].d);
			sum += s[r];
		}
		q4_0_axpy_block(y + QK * i, k, bw, i, s, 1, -8.0f * sum);
	}
}

TARGET void pf_q4_0_axpy_multi_avx2(int n, int k, const float *a, const uint8_t *const *w, float *y)
{
	switch (k) {
	case 8: q4_0_axpy_rows(n, 8, a, w, y); break;
	default: q4_0_axpy_rows(n, k, a, w, y); break;
	}
}

/* Elements 0-7 and 16-23 from bytes 0-7, 8-15 and 24-31 from bytes 8-15,
 * levels minus 8 in int32. */
TARGET void pf_q4_0_axpy_avx2(int n, float a, const void *w, float *y)
{
	const struct pf_block_q4_0 *bw = w;
	const __m256i m4 = _mm256_set1_epi32(0x0f), eight = _mm256_set1_epi32(8);
	const __m256i lanes_lo = LANES_LO, lanes_hi = LANES_HI;
#define Q4_0_AXPY(i, s, o) \
	do { \
		(void)(o); \
		__m256i v_ = bcast128(bw[i].qs), p_ = _mm256_shuffle_epi8(v_, lanes_lo), \
			q_ = _mm256_shuffle_epi8(v_, lanes_hi); \
		float *y_ = y + QK * (i); \
		fma8(y_, _mm256_sub_epi32(_mm256_and_si256(p_, m4), eight), s); \
		fma8(y_ + 8, _mm256_sub_epi32(_mm256_and_si256(q_, m4), eight), s); \
		fma8(y_ + 16, _mm256_sub_epi32(_mm256_srli_epi32(p_, 4), eight), s); \
		fma8(y_ + 24, _mm256_sub_epi32(_mm256_srli_epi32(q_, 4), eight), s); \
	} while (0)
	AXPY_BLOCKS(n / QK, bw, d, Q4_0_AXPY);
#undef Q4_0_AXPY
}

TARGET void pf_q4_1_axpy_avx2(int n, float a, const void *w, float *y)
{
	const struct pf_block_q4_1 *bw = w;
	const __m256i m4 = _mm256_set1_epi32(0x0f);
	const __m256i lanes_lo = LANES_LO, lanes_hi = LANES_HI;
#define Q4_1_AXPY(i, s, o) \
	do { \
		__m256i v_ = bcast128(bw[i].qs), p_ = _mm256_shuffle_epi8(v_, lanes_lo), \
			q_ = _mm256_shuffle_epi8(v_, lanes_hi); \
		float *y_ = y + QK * (i); \
		fma8_off(y_, _mm256_and_si256(p_, m4), s, o); \
		fma8_off(y_ + 8, _mm256_and_si256(q_, m4), s, o); \
		fma8_off(y_ + 16, _mm256_srli_epi32(p_, 4), s, o); \
		fma8_off(y_ + 24, _mm256_srli_epi32(q_, 4), s, o); \
	} while (0)
	AXPY_BLOCKS(n / QK, bw, m, Q4_1_AXPY);
#undef Q4_1_AXPY
}

/* Q5_0/Q5_1's levels are put together in bytes as in the dot kernels. Level
 * minus 16 without a subtraction: where the fifth bit is clear the top
 * nibble becomes 0xf, which reads as nibble - 16 in int8. */
TARGET void pf_q5_0_axpy_avx2(int n, float a, const void *w, float *y)
{
	const struct pf_block_q5_0 *bw = w;
	const __m256i f0 = _mm256_set1_epi8((char)0xf0);
#define Q5_0_AXPY(i, s, o) \
	do { \
		(void)(o); \
		__m256i q_ = _mm256_or_si256(unpack_nibbles(bw[i].qs), _mm256_andnot_si256(expand_bits(bw[i].qh), f0)); \
		fma32_i8(y + QK * (i), q_, s); \
	} while (0)
	AXPY_BLOCKS(n / QK, bw, d, Q5_0_AXPY);
#undef Q5_0_AXPY
}

TARGET void pf_q5_1_axpy_avx2(int n, float a, const void *w, float *y)
{
	const struct pf_block_q5_1 *bw = w;
	const __m256i b4 = _mm256_set1_epi8(0x10);
#define Q5_1_AXPY(i, s, o) \
	do { \
		__m256i q_ = _mm256_or_si256(unpack_nibbles(bw[i].qs), _mm256_and_si256(expand_bits(bw[i].qh), b4)); \
		fma32_i8_off(y + QK * (i), q_, s, o); \
	} while (0)
	AXPY_BLOCKS(n / QK, bw, m, Q5_1_AXPY);
#undef Q5_1_AXPY
}

/* f[j] = a * d * sc[j] and f[8 + j] = -(a * dmin * m[j]) for Q4_K/Q5_K's
 * sub-blocks j. */
TARGET static inline void k4_axpy_factors(float a, const uint8_t *d, const uint8_t *dmin,
	const uint8_t *scales, float f[16])
{
	uint8_t sc[8], m[8];
	pf_k4_scales(scales, sc, m);
	__m256 fsc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)sc)));
	__m256 fm = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)m)));
	_mm256_storeu_ps(f, _mm256_mul_ps(_mm256_set1_ps(a * ld_f16(d)), fsc));
	_mm256_storeu_ps(f + 8, _mm256_mul_ps(_mm256_set1_ps(-(a * ld_f16(dmin))), fm));
}

/* Chunk c of 32 qs bytes: low nibbles are sub-block 2c, high ones 2c+1. */
TARGET void pf_q4_k_axpy_avx2(int n, float a, const void *w, float *y)
{
	const struct pf_block_q4_k *bw = w;
	const __m256i m4 = _mm256_set1_epi32(0x0f);
	const __m256i lanes_lo = LANES_LO, lanes_hi = LANES_HI;
	for (int i = 0; i < n / QK_K; i++, bw++, y += QK_K) {
		prefetch_ahead(bw, (int)sizeof(*bw));
		float f[16];
		k4_axpy_factors(a, bw->d, bw->dmin, bw->scales, f);
		PF_UNROLL(4)
		for (int c = 0; c < 4; c++) {
			__m256 slo = _mm256_broadcast_ss(f + 2 * c), olo = _mm256_broadcast_ss(f + 8 + 2 * c);
			__m256 shi = _mm256_broadcast_ss(f + 2 * c + 1), ohi = _mm256_broadcast_ss(f + 9 + 2 * c);
			PF_UNROLL(2)
			for (int k = 0; k < 32; k += 16) {
				__m256i v = bcast128(bw->qs + 32 * c + k);
				__m256i p = _mm256_shuffle_epi8(v, lanes_lo), q = _mm256_shuffle_epi8(v, lanes_hi);
				float *o = y + 64 * c + k;
				fma8_off(o, _mm256_and_si256(p, m4), slo, olo);
				fma8_off(o + 8, _mm256_and_si256(q, m4), slo, olo);
				fma8_off(o + 32, _mm256_srli_epi32(p, 4), shi, ohi);
				fma8_off(o + 40, _mm256_srli_epi32(q, 4), shi, ohi);
			}
		}
	}
}

/* Levels in bytes as in pf_q5_k_dot_avx2: the fifth bits of chunk c's
 * halves are bits 2c and 2c+1 of qh. */
TARGET void pf_q5_k_axpy_avx2(int n, float a, const void *w, float *y)
{
	const struct pf_block_q5_k *bw = w;
	const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
	for (int i = 0; i < n / QK_K; i++, bw++, y += QK_K) {
		prefetch_ahead(bw, (int)sizeof(*bw));
		float f[16];
		k4_axpy_factors(a, bw->d, bw->dmin, bw->scales, f);
		__m256i hb = load256(bw->qh);
		PF_UNROLL(4)
		for (int c = 0; c < 4; c++) {
			__m256i q = load256(bw->qs + 32 * c);
			__m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4),
				_mm256_slli_epi16(_mm256_and_si256(hb, one), 4));
			hb = _mm256_srli_epi16(hb, 1);
			__m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
				_mm256_slli_epi16(_mm256_and_si256(hb, one), 4));
			hb = _mm256_srli_epi16(hb, 1);
			fma32_i8_off(y + 64 * c, lo, _mm256_broadcast_ss(f + 2 * c), _mm256_broadcast_ss(f + 8 + 2 * c));
			fma32_i8_off(y + 64 * c + 32, hi, _mm256_broadcast_ss(f + 2 * c + 1),
				_mm256_broadcast_ss(f + 9 + 2 * c));
		}
	}
}

/* Levels minus 32 in bytes, as pf_q6_k_dot_avx2 unpacks them: group g of
 * half h is elements 128h + 32g .. + 32, whose first 16 take scale
 * 8h + 2g and the next 16 scale 8h + 2g + 1. */
TARGET void pf_q6_k_axpy_avx2(int n, float a, const void *w, float *y)
{
	const struct pf_block_q6_k *bw = w;
	const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30), m32 = _mm256_set1_epi8(32);
	for (int i = 0; i < n / QK_K; i++, bw++, y += QK_K) {
		prefetch_ahead(bw, (int)sizeof(*bw));
		float f[16];
		__m256 ad = _mm256_set1_ps(a * ld_f16(bw->d));
		__m128i sc = load128(bw->scales);
		_mm256_storeu_ps(f, _mm256_mul_ps(ad, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
		_mm256_storeu_ps(f + 8, _mm256_mul_ps(ad, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(sc, sc)))));
		PF_UNROLL(2)
		for (int h = 0; h < 2; h++) {
			const uint8_t *ql = bw->ql + 64 * h;
			__m256i l0 = load256(ql), l1 = load256(ql + 32), hh = load256(bw->qh + 32 * h);
			__m256i q[4] = {
				_mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hh, 4), m30)),
				_mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hh, 2), m30)),
				_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hh, m30)),
				_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
					_mm256_and_si256(_mm256_srli_epi16(hh, 2), m30)),
			};
			PF_UNROLL(4)
			for (int g = 0; g < 4; g++) {
				__m256i v = _mm256_sub_epi8(q[g], m32);
				__m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
				__m256 s0 = _mm256_broadcast_ss(f + 8 * h + 2 * g), s1 = _mm256_broadcast_ss(f + 8 * h + 2 * g + 1);
				float *o = y + 128 * h + 32 * g;
				fma8_i8(o, lo, s0);
				fma8_i8(o + 8, _mm_unpackhi_epi64(lo, lo), s0);
				fma8_i8(o + 16, hi, s1);
				fma8_i8(o + 24, _mm_unpackhi_epi64(hi, hi), s1);
			}
		}
	}
}

#else
/* Keeps the translation unit non-empty on other architectures. */
typedef int pf_quant_x86_unused;
#endif
