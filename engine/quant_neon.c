/* NEON dot kernels for aarch64, where NEON is baseline. The int8 products
 * use sdot when the compiler targets the dot-product extension and widening
 * multiplies otherwise. All loads go through byte pointers: NEON loads have
 * no alignment requirement and rows sit at odd strides. */
#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>

#include "quant_internal.h"
#include "quant_neon.h"

/* acc += 4-lane partial sums of a[i] * b[i]. Products of int8 fit int16
 * (|-128 * -128| = 16384), so the widening path cannot overflow either. */
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b)
{
#if defined(__ARM_FEATURE_DOTPROD)
	return vdotq_s32(acc, a, b);
#else
	int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
	int16x8_t hi = vmull_high_s8(a, b);
	return vpadalq_s16(vpadalq_s16(acc, lo), hi);
#endif
}

static inline int8x16_t ld_s8(const int8_t *p)
{
	return vld1q_s8(p);
}

/* ---- float formats: four accumulators hide the FMA latency ---- */

static inline float32x4_t ld_f32x4(const uint8_t *p)
{
	return vreinterpretq_f32_u8(vld1q_u8(p));
}

static inline float32x4_t sum4(float32x4_t a, float32x4_t b, float32x4_t c, float32x4_t d)
{
	return vaddq_f32(vaddq_f32(a, b), vaddq_f32(c, d));
}

void pf_f32_dot_neon(int n, float *s, const void *w, const void *x)
{
	const uint8_t *pw = w, *px = x;
	float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		a0 = vfmaq_f32(a0, ld_f32x4(pw + 4 * i), ld_f32x4(px + 4 * i));
		a1 = vfmaq_f32(a1, ld_f32x4(pw + 4 * i + 16), ld_f32x4(px + 4 * i + 16));
		a2 = vfmaq_f32(a2, ld_f32x4(pw + 4 * i + 32), ld_f32x4(px + 4 * i + 32));
		a3 = vfmaq_f32(a3, ld_f32x4(pw + 4 * i + 48), ld_f32x4(px + 4 * i + 48));
	}
	for (; i + 4 <= n; i += 4)
		a0 = vfmaq_f32(a0, ld_f32x4(pw + 4 * i), ld_f32x4(px + 4 * i));
	float sum = vaddvq_f32(sum4(a0, a1, a2, a3));
	for (; i < n; i++)
		sum += pf_rd_f32(pw + 4 * i) * pf_rd_f32(px + 4 * i);
	*s = sum;
}

void pf_f16_dot_neon(int n, float *s, const void *w, const void *x)
{
	const uint8_t *pw = w, *px = x;
	float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		float16x8_t h0 = vreinterpretq_f16_u8(vld1q_u8(pw + 2 * i));
		float16x8_t h1 = vreinterpretq_f16_u8(vld1q_u8(pw + 2 * i + 16));
		a0 = vfmaq_f32(a0, vcvt_f32_f16(vget_low_f16(h0)), ld_f32x4(px + 4 * i));
		a1 = vfmaq_f32(a1, vcvt_high_f32_f16(h0), ld_f32x4(px + 4 * i + 16));
		a2 = vfmaq_f32(a2, vcvt_f32_f16(vget_low_f16(h1)), ld_f32x4(px + 4 * i + 32));
		a3 = vfmaq_f32(a3, vcvt_high_f32_f16(h1), ld_f32x4(px + 4 * i + 48));
	}
	float sum = vaddvq_f32(sum4(a0, a1, a2, a3));
	for (; i < n; i++)
		sum += ld_f16(pw + 2 * i) * pf_rd_f32(px + 4 * i);
	*s = sum;
}

/* bf16 is the top half of a float: widen with a 16-bit shift. */
void pf_bf16_dot_neon(int n, float *s, const void *w, const void *x)
{
	const uint8_t *pw = w, *px = x;
	float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		uint16x8_t h0 = vreinterpretq_u16_u8(vld1q_u8(pw + 2 * i));
		uint16x8_t h1 = vreinterpretq_u16_u8(vld1q_u8(pw + 2 * i + 16));
		a0 = vfmaq_f32(a0, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h0), 16)), ld_f32x4(px + 4 * i));
		a1 = vfmaq_f32(a1, vreinterpretq_f32_u32(vshll_high_n_u16(h0, 16)), ld_f32x4(px + 4 * i + 16));
		a2 = vfmaq_f32(a2, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h1), 16)), ld_f32x4(px + 4 * i + 32));
		a3 = vfmaq_f32(a3, vreinterpretq_f32_u32(vshll_high_n_u16(h1, 16)), ld_f32x4(px + 4 * i + 48));
	}
	float sum = vaddvq_f32(sum4(a0, a1, a2, a3));
	for (; i < n; i++)
		sum += pf_bf16_to_fp32(pf_rd_u16(pw + 2 * i)) * pf_rd_f32(px + 4 * i);
	*s = sum;
}

/* ---- 32-element formats ----
 *
 * Each block's 32 levels come as two int8x16 (elements 0-15 and 16-31);
 * blocks go in pairs into two accumulators so the two chains overlap. */

struct levels {
	int8x16_t lo, hi;
};

static inline struct levels nibbles(const uint8_t *qs)
{
	uint8x16_t v = vld1q_u8(qs);
	return (struct levels){ vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))),
		vreinterpretq_s8_u8(vshrq_n_u8(v, 4)) };
}

static inline int32x4_t dot_block(struct levels q, const int8_t *x)
{
	return dot16(dot16(vdupq_n_s32(0), q.lo, ld_s8(x)), q.hi, ld_s8(x + 16));
}

static inline float32x4_t scaled(float32x4_t acc, int32x4_t isum, float d)
{
	return vfmaq_n_f32(acc, vcvtq_f32_s32(isum), d);
}

static inline struct levels q8_0_levels(const struct pf_block_q8_0 *b)
{
	return (struct levels){ ld_s8(b->qs), ld_s8(b->qs + 16) };
}

/* Level minus 16 without a subtraction: where the fifth bit is clear the
 * top nibble becomes 0xf, which reads as nibble - 16 in int8. */
static inline struct levels q5_0_levels(const struct pf_block_q5_0 *b)
{
	struct levels q = nibbles(b->qs);
	uint8x16_t hl, hh;
	expand_bits(b->qh, &hl, &hh);
	const uint8x16_t f0 = vdupq_n_u8(0xf0);
	q.lo = vorrq_s8(q.lo, vreinterpretq_s8_u8(vbicq_u8(f0, hl)));
	q.hi = vorrq_s8(q.hi, vreinterpretq_s8_u8(vbicq_u8(f0, hh)));
	return q;
}

static inline struct levels q5_1_levels(const struct pf_block_q5_1 *b)
{
	struct levels q = nibbles(b->qs);
	uint8x16_t hl, hh;
	expand_bits(b->qh, &hl, &hh);
	const uint8x16_t b4 = vdupq_n_u8(0x10);
	q.lo = vorrq_s8(q.lo, vreinterpretq_s8_u8(vandq_u8(hl, b4)));
	q.hi = vorrq_s8(q.hi, vreinterpretq_s8_u8(vandq_u8(hh, b4)));
	return q;
}

/* Kernels for activations in Q8_0 (Q8_0 weights) and Q8_1 (weights with an
 * offset m, whose term m * sum(x) is the activations' s). */
#define DOT_Q8_0(name, wtype, levels_fn) \
	void pf_##name##_dot_neon(int n, float *s, const void *w, const void *x) \
	{ \
		const struct wtype *bw = w; \
		const struct pf_block_q8_0 *bx = x; \
		float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0; \
		int nb = n / QK, i = 0; \
		for (; i + 1 < nb; i += 2) { \
			acc0 = scaled(acc0, dot_block(levels_fn(bw + i), bx[i].qs), \
				ld_f16(bw[i].d) * ld_f16(bx[i].d)); \
			acc1 = scaled(acc1, dot_block(levels_fn(bw + i + 1), bx[i + 1].qs), \
				ld_f16(bw[i + 1].d) * ld_f16(bx[i + 1].d)); \
		} \
		if (i < nb) \
			acc0 = scaled(acc0, dot_block(levels_fn(bw + i), bx[i].qs), \
				ld_f16(bw[i].d) * ld_f16(bx[i].d)); \
		*s = vaddvq_f32(vaddq_f32(acc0, acc1)); \
	}

#define DOT_Q8_1(name, wtype, levels_fn) \
	void pf_##name##_dot_neon(int n, float *s, const void *w, const void *x) \
	{ \
		const struct wtype *bw = w; \
		const struct pf_block_q8_1 *bx = x; \
		float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0; \
		float offs = 0.0f; \
		int nb = n / QK, i = 0; \
		for (; i + 1 < nb; i += 2) { \
			acc0 = scaled(acc0, dot_block(levels_fn(bw + i), bx[i].qs), \
				ld_f16(bw[i].d) * ld_f16(bx[i].d)); \
			acc1 = scaled(acc1, dot_block(levels_fn(bw + i + 1), bx[i + 1].qs), \
				ld_f16(bw[i + 1].d) * ld_f16(bx[i + 1].d)); \
			offs += ld_f16(bw[i].m) * ld_f16(bx[i].s) + \
				ld_f16(bw[i + 1].m) * ld_f16(bx[i + 1].s); \
		} \
		if (i < nb) { \
			acc0 = scaled(acc0, dot_block(levels_fn(bw + i), bx[i].qs), \
				ld_f16(bw[i].d) * ld_f16(bx[i].d)); \
			offs += ld_f16(bw[i].m) * ld_f16(bx[i].s); \
		} \
		*s = vaddvq_f32(vaddq_f32(acc0, acc1)) + offs; \
	}

static inline struct levels q4_1_levels(const struct pf_block_q4_1 *b)
{
	return nibbles(b->qs);
}

DOT_Q8_0(q8_0, pf_block_q8_0, q8_0_levels)
DOT_Q8_1(q4_1, pf_block_q4_1, q4_1_levels)
DOT_Q8_1(q5_1, pf_block_q5_1, q5_1_levels)

/* Q4_0 x Q8_S: unsigned levels, and Q8_S's s (8 * sum(x), split over four
 * lanes) takes the offset of 8 off. Within a pair of Q8_S blocks the
 * chunks of the two interleave (step 32); an odd last block's are
 * contiguous (step 16). */
static inline int32x4_t q4_0_levels_dot(struct levels q, const uint8_t *pb, size_t step)
{
	int32x4_t p = dot16(dot16(vdupq_n_s32(0), q.lo, vreinterpretq_s8_u8(vld1q_u8(pb + 2 * step))),
		q.hi, vreinterpretq_s8_u8(vld1q_u8(pb + 3 * step)));
	return vsubq_s32(p, vreinterpretq_s32_u8(vld1q_u8(pb + step)));
}

static inline int32x4_t q4_0_block(const struct pf_block_q4_0 *bw, const uint8_t *pb, size_t step)
{
	return q4_0_levels_dot(nibbles(bw->qs), pb, step);
}

/* Q5_0's levels minus 16 fit int8, so it needs no offset term. */
static inline int32x4_t q5_0_block(const struct pf_block_q5_0 *bw, const uint8_t *pb, size_t step)
{
	struct levels q = q5_0_levels(bw);
	return dot16(dot16(vdupq_n_s32(0), q.lo, vreinterpretq_s8_u8(vld1q_u8(pb + 2 * step))),
		q.hi, vreinterpretq_s8_u8(vld1q_u8(pb + 3 * step)));
}

#define DOT_Q8_S(name, wtype, block_fn) \
	void pf_##name##_dot_neon(int n, float *s, const void *w, const void *x) \
	{ \
		const struct wtype *bw = w; \
		const uint8_t *px = x; \
		float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0; \
		int nb = n / QK, b = 0; \
		for (; b + 1 < nb; b += 2) { \
			const uint8_t *pb = px + (size_t)b * 4 * Q8_S_CHUNK; \
			acc0 = scaled(acc0, block_fn(bw + b, pb, 2 * Q8_S_CHUNK), \
				ld_f16(bw[b].d) * pf_rd_f32(pb)); \
			acc1 = scaled(acc1, block_fn(bw + b + 1, pb + Q8_S_CHUNK, 2 * Q8_S_CHUNK), \
				ld_f16(bw[b + 1].d) * pf_rd_f32(pb + Q8_S_CHUNK)); \
		} \
		if (b < nb) { \
			const uint8_t *pb = px + (size_t)b * 4 * Q8_S_CHUNK; \
			acc0 = scaled(acc0, block_fn(bw + b, pb, Q8_S_CHUNK), ld_f16(bw[b].d) * pf_rd_f32(pb)); \
		} \
		*s = vaddvq_f32(vaddq_f32(acc0, acc1)); \
	}

DOT_Q8_S(q4_0, pf_block_q4_0, q4_0_block)
DOT_Q8_S(q5_0, pf_block_q5_0, q5_0_block)

/* k rows of Q4_0 against one x (k a constant after inlining): per row the
 * operations and their order of pf_q4_0_dot_neon, so its sums bit for bit;
 * the rows' blocks are taken in step, so k streams of weights are read at
 * once. */
static inline __attribute__((always_inline)) void q4_0_rows(int n, float *s, const uint8_t *const *w,
	const uint8_t *px, int k)
{
	const struct pf_block_q4_0 *bw[PF_DOT_ROWS_MAX];
	float32x4_t acc0[PF_DOT_ROWS_MAX], acc1[PF_DOT_ROWS_MAX];
	PF_UNROLL(8)
	for (int r = 0; r < k; r++) {
		bw[r] = (const struct pf_block_q4_0 *)(const void *)w[r];
		acc0[r] = acc1[r] = vdupq_n_f32(0.0f);
	}
	int nb = n / QK, b = 0;
	for (; b + 1 < nb; b += 2) {
		const uint8_t *pb = px + (size_t)b * 4 * Q8_S_CHUNK;
		PF_UNROLL(8)
		for (int r = 0; r < k; r++) {
			acc0[r] = scaled(acc0[r], q4_0_block(bw[r] + b, pb, 2 * Q8_S_CHUNK),
				ld_f16(bw[r][b].d) * pf_rd_f32(pb));
			acc1[r] = scaled(acc1[r], q4_0_block(bw[r] + b + 1, pb + Q8_S_CHUNK, 2 * Q8_S_CHUNK),
				ld_f16(bw[r][b + 1].d) * pf_rd_f32(pb + Q8_S_CHUNK));
		}
	}
	if (b < nb) {
		const uint8_t *pb = px + (size_t)b * 4 * Q8_S_CHUNK;
		PF_UNROLL(8)
		for (int r = 0; r < k; r++)
			acc0[r] = scaled(acc0[r], q4_0_block(bw[r] + b, pb, Q8_S_CHUNK), ld_f16(bw[r][b].d) * pf_rd_f32(pb));
	}
	PF_UNROLL(8)
	for (int r = 0; r < k; r++)
		s[r] = vaddvq_f32(vaddq_f32(acc0[r], acc1[r]));
}

void pf_q4_0_dot_rows_neon(int n, int k, float *s, const uint8_t *const *w, const void *x)
{
	PF_DOT_ROWS_SWITCH(q4_0_rows, pf_q4_0_dot_neon, n, k, s, w, x);
}

/* Q4_0 x Q8_S for nx tokens at once (nx a constant after inlining): each
 * block's nibbles and scale are unpacked once for all the tokens. Per token
 * the operations and their order are pf_q4_0_dot_neon's, so the sums match
 * it bit for bit. */
static inline __attribute__((always_inline)) void q4_0_tokens(int n, float *s, size_t s_stride,
	const struct pf_block_q4_0 *bw, const uint8_t *px, size_t x_stride, int nx)
{
	float32x4_t acc0[PF_DOT_MULTI_MAX], acc1[PF_DOT_MULTI_MAX];
	PF_UNROLL(4)
	for (int t = 0; t < nx; t++)
		acc0[t] = acc1[t] = vdupq_n_f32(0.0f);
	int nb = n / QK, b = 0;
	for (; b + 1 < nb; b += 2) {
		struct levels q0 = nibbles(bw[b].qs), q1 = nibbles(bw[b + 1].qs);
		float d0 = ld_f16(bw[b].d), d1 = ld_f16(bw[b + 1].d);
		PF_UNROLL(4)
		for (int t = 0; t < nx; t++) {
			const uint8_t *pb = px + (size_t)t * x_stride + (size_t)b * 4 * Q8_S_CHUNK;
			acc0[t] = scaled(acc0[t], q4_0_levels_dot(q0, pb, 2 * Q8_S_CHUNK), d0 * pf_rd_f32(pb));
			acc1[t] = scaled(acc1[t], q4_0_levels_dot(q1, pb + Q8_S_CHUNK, 2 * Q8_S_CHUNK),
				d1 * pf_rd_f32(pb + Q8_S_CHUNK));
		}
	}
	if (b < nb) {
		struct levels q0 = nibbles(bw[b].qs);
		float d0 = ld_f16(bw[b].d);
		PF_UNROLL(4)
		for (int t = 0; t < nx; t++) {
			const uint8_t *pb = px + (size_t)t * x_stride + (size_t)b * 4 * Q8_S_CHUNK;
			acc0[t] = scaled(acc0[t], q4_0_levels_dot(q0, pb, Q8_S_CHUNK), d0 * pf_rd_f32(pb));
		}
	}
	PF_UNROLL(4)
	for (int t = 0; t < nx; t++)
		s[(size_t)t * s_stride] = vaddvq_f32(vaddq_f32(acc0[t], acc1[t]));
}

void pf_q4_0_dot_multi_neon(int n, float *s, size_t s_stride, const void *w, const void *x,
			    size_t x_stride, int n_x)
{
	switch (n_x) {
	case 4: q4_0_tokens(n, s, s_stride, w, x, x_stride, 4); break;
	case 3: q4_0_tokens(n, s, s_stride, w, x, x_stride, 3); break;
	case 2: q4_0_tokens(n, s, s_stride, w, x, x_stride, 2); break;
	default: pf_q4_0_dot_neon(n, s, w, x); break;
	}
}

/* ---- K formats: exact int32 sums per super-block, scaled once ---- */

static inline int16x8_t ld_s16x8(const uint8_t *p)
{
	return vreinterpretq_s16_u8(vld1q_u8(p));
}

/* sum over sub-blocks j of m[j] times the sum of the activations in j (two
 * Q8_K bsums each). */
static inline int32_t k4_offsets(const uint8_t *m, const struct pf_block_q8_k *bx)
{
	int16x8_t pairs = vpaddq_s16(ld_s16x8(bx->bsums[0]), ld_s16x8(bx->bsums[8]));
	int16x8_t mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(m)));
	int32x4_t p = vmull_s16(vget_low_s16(pairs), vget_low_s16(mins));
	p = vmlal_high_s16(p, pairs, mins);
	return vaddvq_s32(p);
}

static inline int32x4_t dot32(const int8x16_t *q, const int8_t *x)
{
	return dot16(dot16(vdupq_n_s32(0), q[0], ld_s8(x)), q[1], ld_s8(x + 16));
}

void pf_q4_k_dot_neon(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q4_k *bw = w;
	const struct pf_block_q8_k *bx = x;
	const uint8x16_t m4 = vdupq_n_u8(0x0f);
	float sum = 0.0f;
	for (int i = 0; i < n / QK_K; i++, bw++, bx++) {
		uint8_t sc[8], m[8];
		pf_k4_scales(bw->scales, sc, m);
		int32x4_t acc0 = vdupq_n_s32(0), acc1 = acc0;
		for (int c = 0; c < 4; c++) {
			uint8x16_t v0 = vld1q_u8(bw->qs + 32 * c), v1 = vld1q_u8(bw->qs + 32 * c + 16);
			int8x16_t lo[2] = { vreinterpretq_s8_u8(vandq_u8(v0, m4)), vreinterpretq_s8_u8(vandq_u8(v1, m4)) };
			int8x16_t hi[2] = { vreinterpretq_s8_u8(vshrq_n_u8(v0, 4)), vreinterpretq_s8_u8(vshrq_n_u8(v1, 4)) };
			acc0 = vmlaq_n_s32(acc0, dot32(lo, bx->qs + 64 * c), sc[2 * c]);
			acc1 = vmlaq_n_s32(acc1, dot32(hi, bx->qs + 64 * c + 32), sc[2 * c + 1]);
		}
		float dx = pf_rd_f32(bx->d);
		sum += dx * (ld_f16(bw->d) * (float)vaddvq_s32(vaddq_s32(acc0, acc1)) -
			ld_f16(bw->dmin) * (float)k4_offsets(m, bx));
	}
	*s = sum;
}

/* Q4_K x Q8_K for nx tokens at once (nx a constant after inlining): each
 * super-block's 256 levels are unpacked once into 16 registers and
 * multiplied with every token's activations. Per token the sums and their
 * order are pf_q4_k_dot_neon's, so the results match it bit for bit. */
static inline __attribute__((always_inline)) void q4_k_tokens(int n, float *s, size_t s_stride,
	const struct pf_block_q4_k *bw, const uint8_t *px, size_t x_stride, int nx)
{
	const uint8x16_t m4 = vdupq_n_u8(0x0f);
	float sum[PF_DOT_MULTI_MAX];
	PF_UNROLL(4)
	for (int t = 0; t < nx; t++)
		sum[t] = 0.0f;
	for (int i = 0; i < n / QK_K; i++, bw++) {
		uint8_t sc[8], m[8];
		pf_k4_scales(bw->scales, sc, m);
		int8x16_t lo[4][2], hi[4][2];
		PF_UNROLL(4)
		for (int c = 0; c < 4; c++) {
			uint8x16_t v0 = vld1q_u8(bw->qs + 32 * c), v1 = vld1q_u8(bw->qs + 32 * c + 16);
			lo[c][0] = vreinterpretq_s8_u8(vandq_u8(v0, m4));
			lo[c][1] = vreinterpretq_s8_u8(vandq_u8(v1, m4));
			hi[c][0] = vreinterpretq_s8_u8(vshrq_n_u8(v0, 4));
			hi[c][1] = vreinterpretq_s8_u8(vshrq_n_u8(v1, 4));
		}
		float d = ld_f16(bw->d), dmin = ld_f16(bw->dmin);
		PF_UNROLL(4)
		for (int t = 0; t < nx; t++) {
			const struct pf_block_q8_k *bx =
				(const struct pf_block_q8_k *)(const void *)(px + (size_t)t * x_stride) + i;
			int32x4_t acc0 = vdupq_n_s32(0), acc1 = acc0;
			PF_UNROLL(4)
			for (int c = 0; c < 4; c++) {
				acc0 = vmlaq_n_s32(acc0, dot32(lo[c], bx->qs + 64 * c), sc[2 * c]);
				acc1 = vmlaq_n_s32(acc1, dot32(hi[c], bx->qs + 64 * c + 32), sc[2 * c + 1]);
			}
			float dx = pf_rd_f32(bx->d);
			sum[t] += dx * (d * (float)vaddvq_s32(vaddq_s32(acc0, acc1)) -
				dmin * (float)k4_offsets(m, bx));
		}
	}
	PF_UNROLL(4)
	for (int t = 0; t < nx; t++)
		s[(size_t)t * s_stride] = sum[t];
}

void pf_q4_k_dot_multi_neon(int n, float *s, size_t s_stride, const void *w, const void *x,
			    size_t x_stride, int n_x)
{
	switch (n_x) {
	case 4: q4_k_tokens(n, s, s_stride, w, x, x_stride, 4); break;
	case 3: q4_k_tokens(n, s, s_stride, w, x, x_stride, 3); break;
	case 2: q4_k_tokens(n, s, s_stride, w, x, x_stride, 2); break;
	default: pf_q4_k_dot_neon(n, s, w, x); break;
	}
}

/* The fifth bits of chunk c's halves are bits 2c and 2c+1 of qh. */
void pf_q5_k_dot_neon(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q5_k *bw = w;
	const struct pf_block_q8_k *bx = x;
	const uint8x16_t m4 = vdupq_n_u8(0x0f), b4 = vdupq_n_u8(0x10);
	float sum = 0.0f;
	for (int i = 0; i < n / QK_K; i++, bw++, bx++) {
		uint8_t sc[8], m[8];
		pf_k4_scales(bw->scales, sc, m);
		uint8x16_t h0 = vld1q_u8(bw->qh), h1 = vld1q_u8(bw->qh + 16);
		int32x4_t acc0 = vdupq_n_s32(0), acc1 = acc0;
		for (int c = 0; c < 4; c++) {
			uint8x16_t v0 = vld1q_u8(bw->qs + 32 * c), v1 = vld1q_u8(bw->qs + 32 * c + 16);
			uint8x16_t bl = vdupq_n_u8((uint8_t)(1 << (2 * c))), bh = vdupq_n_u8((uint8_t)(2 << (2 * c)));
			int8x16_t lo[2] = {
				vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v0, m4), vandq_u8(vtstq_u8(h0, bl), b4))),
				vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v1, m4), vandq_u8(vtstq_u8(h1, bl), b4))),
			};
			int8x16_t hi[2] = {
				vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v0, 4), vandq_u8(vtstq_u8(h0, bh), b4))),
				vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v1, 4), vandq_u8(vtstq_u8(h1, bh), b4))),
			};
			acc0 = vmlaq_n_s32(acc0, dot32(lo, bx->qs + 64 * c), sc[2 * c]);
			acc1 = vmlaq_n_s32(acc1, dot32(hi, bx->qs + 64 * c + 32), sc[2 * c + 1]);
		}
		float dx = pf_rd_f32(bx->d);
		sum += dx * (ld_f16(bw->d) * (float)vaddvq_s32(vaddq_s32(acc0, acc1)) -
			ld_f16(bw->dmin) * (float)k4_offsets(m, bx));
	}
	*s = sum;
}

/* Levels minus 32 fit int8, so each 16-element sub-block is one signed dot
 * times its scale. */
void pf_q6_k_dot_neon(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q6_k *bw = w;
	const struct pf_block_q8_k *bx = x;
	const int8x16_t off = vdupq_n_s8(32);
	float sum = 0.0f;
	for (int i = 0; i < n / QK_K; i++, bw++, bx++) {
		int32x4_t acc0 = vdupq_n_s32(0), acc1 = acc0;
		for (int h = 0; h < 2; h++) {
			const int8_t *xq = bx->qs + 128 * h, *sc = bw->scales + 8 * h;
			uint8x16_t q[8];
			q6_k_levels(bw, h, q);
			for (int k = 0; k < 8; k += 2) {
				int8x16_t q0 = vsubq_s8(vreinterpretq_s8_u8(q[k]), off);
				int8x16_t q1 = vsubq_s8(vreinterpretq_s8_u8(q[k + 1]), off);
				acc0 = vmlaq_n_s32(acc0, dot16(vdupq_n_s32(0), q0, ld_s8(xq + 16 * k)), sc[k]);
				acc1 = vmlaq_n_s32(acc1, dot16(vdupq_n_s32(0), q1, ld_s8(xq + 16 * k + 16)), sc[k + 1]);
			}
		}
		sum += ld_f16(bw->d) * pf_rd_f32(bx->d) * (float)vaddvq_s32(vaddq_s32(acc0, acc1));
	}
	*s = sum;
}

/* Q6_K x Q8_K for nx tokens at once (nx a constant after inlining): each
 * super-block's 256 levels (minus 32) are unpacked once into 16 registers.
 * Per token the float operations are pf_q6_k_dot_neon's, on the same exact
 * integer sums, so the results match it bit for bit. */
static inline __attribute__((always_inline)) void q6_k_tokens(int n, float *s, size_t s_stride,
	const struct pf_block_q6_k *bw, const uint8_t *px, size_t x_stride, int nx)
{
	const int8x16_t off = vdupq_n_s8(32);
	float sum[PF_DOT_MULTI_MAX];
	PF_UNROLL(4)
	for (int t = 0; t < nx; t++)
		sum[t] = 0.0f;
	for (int i = 0; i < n / QK_K; i++, bw++) {
		int8x16_t q[2][8];
		PF_UNROLL(2)
		for (int h = 0; h < 2; h++) {
			uint8x16_t u[8];
			q6_k_levels(bw, h, u);
			PF_UNROLL(8)
			for (int k = 0; k < 8; k++)
				q[h][k] = vsubq_s8(vreinterpretq_s8_u8(u[k]), off);
		}
		float d = ld_f16(bw->d);
		PF_UNROLL(4)
		for (int t = 0; t < nx; t++) {
			const struct pf_block_q8_k *bx =
				(const struct pf_block_q8_k *)(const void *)(px + (size_t)t * x_stride) + i;
			int32x4_t acc0 = vdupq_n_s32(0), acc1 = acc0;
			PF_UNROLL(2)
			for (int h = 0; h < 2; h++) {
				const int8_t *xq = bx->qs + 128 * h, *sc = bw->scales + 8 * h;
				PF_UNROLL(4)
				for (int k = 0; k < 8; k += 2) {
					acc0 = vmlaq_n_s32(acc0, dot16(vdupq_n_s32(0), q[h][k], ld_s8(xq + 16 * k)), sc[k]);
					acc1 = vmlaq_n_s32(acc1, dot16(vdupq_n_s32(0), q[h][k + 1], ld_s8(xq + 16 * k + 16)),
						sc[k + 1]);
				}
			}
			sum[t] += d * pf_rd_f32(bx->d) * (float)vaddvq_s32(vaddq_s32(acc0, acc1));
		}
	}
	PF_UNROLL(4)
	for (int t = 0; t < nx; t++)
		s[(size_t)t * s_stride] = sum[t];
}

void pf_q6_k_dot_multi_neon(int n, float *s, size_t s_stride, const void *w, const void *x,
			    size_t x_stride, int n_x)
{
	switch (n_x) {
	case 4: q6_k_tokens(n, s, s_stride, w, x, x_stride, 4); break;
	case 3: q6_k_tokens(n, s, s_stride, w, x, x_stride, 3); break;
	case 2: q6_k_tokens(n, s, s_stride, w, x, x_stride, 2); break;
	default: pf_q6_k_dot_neon(n, s, w, x); break;
	}
}

#else
/* Keeps the translation unit non-empty on other architectures. */
typedef int pf_quant_neon_unused;
#endif
