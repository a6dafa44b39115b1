/* NEON dequantizers for aarch64, which prefill runs over tiles of weight
 * rows for sgemm, and the axpy kernels (at the end), which fuse the same
 * unpacking with y += a * w.
 *
 * The dequantizers give the reference's floats bit for bit: every element
 * is d * q, d * q + m or ds * q - dm, with the scalar factors formed as
 * the reference forms them and each operation a separate multiply, add or
 * subtract, as in the reference (one FMA would round once where it rounds
 * twice). That also relies on the compiler not fusing them itself, which
 * GCC does not do under -std=c11. The only difference: vcvt_f32_f16 quiets
 * a signaling-NaN half, which the reference passes through as it is.
 *
 * Levels are assembled 16 at a time in bytes, as in the dot kernels, then
 * widened to four float vectors. */
#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>

#include "quant_internal.h"
#include "quant_neon.h"

struct f32x16 {
	float32x4_t v[4];
};

static inline struct f32x16 widen_u8(uint8x16_t q)
{
	uint16x8_t lo = vmovl_u8(vget_low_u8(q)), hi = vmovl_high_u8(q);
	return (struct f32x16){ {
		vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))), vcvtq_f32_u32(vmovl_high_u16(lo)),
		vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))), vcvtq_f32_u32(vmovl_high_u16(hi)),
	} };
}

static inline struct f32x16 widen_s8(int8x16_t q)
{
	int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
	return (struct f32x16){ {
		vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), vcvtq_f32_s32(vmovl_high_s16(lo)),
		vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), vcvtq_f32_s32(vmovl_high_s16(hi)),
	} };
}

/* dst[0..16) = d * q */
static inline void store_mul(float *dst, struct f32x16 q, float d)
{
	PF_UNROLL(4)
	for (int k = 0; k < 4; k++)
		vst1q_f32(dst + 4 * k, vmulq_n_f32(q.v[k], d));
}

/* dst[0..16) = d * q + m */
static inline void store_add(float *dst, struct f32x16 q, float d, float m)
{
	PF_UNROLL(4)
	for (int k = 0; k < 4; k++)
		vst1q_f32(dst + 4 * k, vaddq_f32(vmulq_n_f32(q.v[k], d), vdupq_n_f32(m)));
}

/* dst[0..16) = d * q - m */
static inline void store_sub(float *dst, struct f32x16 q, float d, float m)
{
	PF_UNROLL(4)
	for (int k = 0; k < 4; k++)
		vst1q_f32(dst + 4 * k, vsubq_f32(vmulq_n_f32(q.v[k], d), vdupq_n_f32(m)));
}

/* ---- float formats ---- */

void pf_f16_to_float_neon(const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(p + 2 * i));
		vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
		vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
	}
	for (; i < n; i++)
		dst[i] = ld_f16(p + 2 * i);
}

/* bf16 is the top half of a float: widen with a 16-bit shift. */
void pf_bf16_to_float_neon(const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint16x8_t h = vreinterpretq_u16_u8(vld1q_u8(p + 2 * i));
		vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)));
		vst1q_f32(dst + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(h, 16)));
	}
	for (; i < n; i++)
		dst[i] = pf_bf16_to_fp32(pf_rd_u16(p + 2 * i));
}

/* ---- 32-element formats: levels of elements 0-15 and 16-31 ---- */

void pf_q8_0_to_float_neon(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q8_0 *b = src;
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		float d = ld_f16(b->d);
		store_mul(dst, widen_s8(vld1q_s8(b->qs)), d);
		store_mul(dst + 16, widen_s8(vld1q_s8(b->qs + 16)), d);
	}
}

void pf_q4_0_to_float_neon(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q4_0 *b = src;
	const int8x16_t eight = vdupq_n_s8(8);
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		uint8x16_t v = vld1q_u8(b->qs);
		float d = ld_f16(b->d);
		store_mul(dst, widen_s8(vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))), eight)), d);
		store_mul(dst + 16, widen_s8(vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight)), d);
	}
}

void pf_q4_1_to_float_neon(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q4_1 *b = src;
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		uint8x16_t v = vld1q_u8(b->qs);
		float d = ld_f16(b->d), m = ld_f16(b->m);
		store_add(dst, widen_u8(vandq_u8(v, vdupq_n_u8(0x0f))), d, m);
		store_add(dst + 16, widen_u8(vshrq_n_u8(v, 4)), d, m);
	}
}

/* Level minus 16 without a subtraction: where the fifth bit is clear the
 * top nibble becomes 0xf, which reads as nibble - 16 in int8. */
void pf_q5_0_to_float_neon(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q5_0 *b = src;
	const uint8x16_t f0 = vdupq_n_u8(0xf0);
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		uint8x16_t v = vld1q_u8(b->qs), hl, hh;
		expand_bits(b->qh, &hl, &hh);
		float d = ld_f16(b->d);
		uint8x16_t lo = vorrq_u8(vandq_u8(v, vdupq_n_u8(0x0f)), vbicq_u8(f0, hl));
		uint8x16_t hi = vorrq_u8(vshrq_n_u8(v, 4), vbicq_u8(f0, hh));
		store_mul(dst, widen_s8(vreinterpretq_s8_u8(lo)), d);
		store_mul(dst + 16, widen_s8(vreinterpretq_s8_u8(hi)), d);
	}
}

void pf_q5_1_to_float_neon(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q5_1 *b = src;
	const uint8x16_t b4 = vdupq_n_u8(0x10);
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		uint8x16_t v = vld1q_u8(b->qs), hl, hh;
		expand_bits(b->qh, &hl, &hh);
		float d = ld_f16(b->d), m = ld_f16(b->m);
		uint8x16_t lo = vorrq_u8(vandq_u8(v, vdupq_n_u8(0x0f)), vandq_u8(hl, b4));
		uint8x16_t hi = vorrq_u8(vshrq_n_u8(v, 4), vandq_u8(hh, b4));
		store_add(dst, widen_u8(lo), d, m);
		store_add(dst + 16, widen_u8(hi), d, m);
	}
}

/* ---- K formats ---- */

/* Q4_K/Q5_K's per-sub-block factors, as the reference computes them:
 * ds[j] = d * sc[j], dm[j] = dmin * m[j]. */
static inline void k4_factors(const uint8_t *d, const uint8_t *dmin, const uint8_t *scales,
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

/* Chunk c of 32 qs bytes: low nibbles are elements 64c..64c+32 (sub-block
 * 2c), high nibbles the next 32 (sub-block 2c+1). */
void pf_q4_k_to_float_neon(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q4_k *b = src;
	const uint8x16_t m4 = vdupq_n_u8(0x0f);
	for (int64_t i = 0; i < n / QK_K; i++, b++, dst += QK_K) {
		float ds[8], dm[8];
		k4_factors(b->d, b->dmin, b->scales, ds, dm);
		for (int c = 0; c < 4; c++) {
			float *o = dst + 64 * c;
			for (int k = 0; k < 2; k++) {
				uint8x16_t v = vld1q_u8(b->qs + 32 * c + 16 * k);
				store_sub(o + 16 * k, widen_u8(vandq_u8(v, m4)), ds[2 * c], dm[2 * c]);
				store_sub(o + 32 + 16 * k, widen_u8(vshrq_n_u8(v, 4)), ds[2 * c + 1], dm[2 * c + 1]);
			}
		}
	}
}

/* As Q4_K, with the fifth bits of chunk c's halves in bits 2c and 2c+1 of
 * qh. */
void pf_q5_k_to_float_neon(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q5_k *b = src;
	const uint8x16_t m4 = vdupq_n_u8(0x0f), b4 = vdupq_n_u8(0x10);
	for (int64_t i = 0; i < n / QK_K; i++, b++, dst += QK_K) {
		float ds[8], dm[8];
		k4_factors(b->d, b->dmin, b->scales, ds, dm);
		for (int c = 0; c < 4; c++) {
			float *o = dst + 64 * c;
			uint8x16_t bl = vdupq_n_u8((uint8_t)(1 << (2 * c))), bh = vdupq_n_u8((uint8_t)(2 << (2 * c)));
			for (int k = 0; k < 2; k++) {
				uint8x16_t v = vld1q_u8(b->qs + 32 * c + 16 * k), h = vld1q_u8(b->qh + 16 * k);
				uint8x16_t lo = vorrq_u8(vandq_u8(v, m4), vandq_u8(vtstq_u8(h, bl), b4));
				uint8x16_t hi = vorrq_u8(vshrq_n_u8(v, 4), vandq_u8(vtstq_u8(h, bh), b4));
				store_sub(o + 16 * k, widen_u8(lo), ds[2 * c], dm[2 * c]);
				store_sub(o + 32 + 16 * k, widen_u8(hi), ds[2 * c + 1], dm[2 * c + 1]);
			}
		}
	}
}

/* Each half of 128 elements is eight 16-element sub-blocks, built in
 * element order as in the dot kernel. */
void pf_q6_k_to_float_neon(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q6_k *b = src;
	const int8x16_t off = vdupq_n_s8(32);
	for (int64_t i = 0; i < n / QK_K; i++, b++, dst += QK_K) {
		float d = ld_f16(b->d);
		for (int h = 0; h < 2; h++) {
			uint8x16_t q[8];
			q6_k_levels(b, h, q);
			PF_UNROLL(8)
			for (int k = 0; k < 8; k++)
				store_mul(dst + 128 * h + 16 * k, widen_s8(vsubq_s8(vreinterpretq_s8_u8(q[k]), off)),
					d * b->scales[8 * h + k]);
		}
	}
}

/* ---- axpy: y += a * w, for the sparse FFN's down projection ----
 *
 * Levels are unpacked 16 at a time as above and widened, then added into y
 * with one FMA per vector: y = q * (a * d) + y; formats with an offset add
 * their share (a * m, -a * dm) to y first. Unlike the dequantizers these
 * round differently from the reference, a * (d * q) then an add, by a few
 * ulps of the terms. y stays in L1 while the weights stream past. */

/* y[0..16) += s * q */
static inline void axpy16(float *y, struct f32x16 q, float s)
{
	PF_UNROLL(4)
	for (int k = 0; k < 4; k++)
		vst1q_f32(y + 4 * k, vfmaq_n_f32(vld1q_f32(y + 4 * k), q.v[k], s));
}

/* y[0..16) += s * q + o */
static inline void axpy16_off(float *y, struct f32x16 q, float s, float o)
{
	float32x4_t vo = vdupq_n_f32(o);
	PF_UNROLL(4)
	for (int k = 0; k < 4; k++)
		vst1q_f32(y + 4 * k, vfmaq_n_f32(vaddq_f32(vld1q_f32(y + 4 * k), vo), q.v[k], s));
}

/* The float formats: 16 elements per step with four independent FMAs,
 * then 4, then a scalar tail (their rows may have any length). */
static inline float32x4_t ld_f32x4(const uint8_t *p)
{
	return vreinterpretq_f32_u8(vld1q_u8(p));
}

static inline void fma4(float *y, float32x4_t w, float a)
{
	vst1q_f32(y, vfmaq_n_f32(vld1q_f32(y), w, a));
}

void pf_f32_axpy_neon(int n, float a, const void *w, float *y)
{
	const uint8_t *p = w;
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		PF_UNROLL(4)
		for (int k = 0; k < 16; k += 4)
			fma4(y + i + k, ld_f32x4(p + 4 * (i + k)), a);
	}
	for (; i + 4 <= n; i += 4)
		fma4(y + i, ld_f32x4(p + 4 * i), a);
	for (; i < n; i++)
		y[i] += a * pf_rd_f32(p + 4 * i);
}

void pf_f16_axpy_neon(int n, float a, const void *w, float *y)
{
	const uint8_t *p = w;
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		float16x8_t h0 = vreinterpretq_f16_u8(vld1q_u8(p + 2 * i));
		float16x8_t h1 = vreinterpretq_f16_u8(vld1q_u8(p + 2 * i + 16));
		fma4(y + i, vcvt_f32_f16(vget_low_f16(h0)), a);
		fma4(y + i + 4, vcvt_high_f32_f16(h0), a);
		fma4(y + i + 8, vcvt_f32_f16(vget_low_f16(h1)), a);
		fma4(y + i + 12, vcvt_high_f32_f16(h1), a);
	}
	for (; i < n; i++)
		y[i] += a * ld_f16(p + 2 * i);
}

void pf_bf16_axpy_neon(int n, float a, const void *w, float *y)
{
	const uint8_t *p = w;
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		uint16x8_t h0 = vreinterpretq_u16_u8(vld1q_u8(p + 2 * i));
		uint16x8_t h1 = vreinterpretq_u16_u8(vld1q_u8(p + 2 * i + 16));
		fma4(y + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h0), 16)), a);
		fma4(y + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(h0, 16)), a);
		fma4(y + i + 8, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h1), 16)), a);
		fma4(y + i + 12, vreinterpretq_f32_u32(vshll_high_n_u16(h1, 16)), a);
	}
	for (; i < n; i++)
		y[i] += a * pf_bf16_to_fp32(pf_rd_u16(p + 2 * i));
}

void pf_q8_0_axpy_neon(int n, float a, const void *w, float *y)
{
	const struct pf_block_q8_0 *b = w;
	for (int i = 0; i < n / QK; i++, b++, y += QK) {
		float s = a * ld_f16(b->d);
		axpy16(y, widen_s8(vld1q_s8(b->qs)), s);
		axpy16(y + 16, widen_s8(vld1q_s8(b->qs + 16)), s);
	}
}

void pf_q4_0_axpy_neon(int n, float a, const void *w, float *y)
{
	const struct pf_block_q4_0 *b = w;
	const int8x16_t eight = vdupq_n_s8(8);
	for (int i = 0; i < n / QK; i++, b++, y += QK) {
		uint8x16_t v = vld1q_u8(b->qs);
		float s = a * ld_f16(b->d);
		axpy16(y, widen_s8(vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))), eight)), s);
		axpy16(y + 16, widen_s8(vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight)), s);
	}
}

/* Multi-row axpy: a block's 32 elements of y stay in eight registers while
 * each row's block is added as the single-row kernels add it, so the sums
 * are theirs bit for bit. */
static inline void fma16(float32x4_t acc[4], struct f32x16 q, float s)
{
	PF_UNROLL(4)
	for (int k = 0; k < 4; k++)
		acc[k] = vfmaq_n_f32(acc[k], q.v[k], s);
}

#define AXPY_MULTI(name, block_t, add_block) \
	void pf_##name##_axpy_multi_neon(int n, int k, const float *a, const uint8_t *const *w, float *y) \
	{ \
		const block_t *bw[PF_AXPY_MULTI_MAX]; \
		for (int r = 0; r < k; r++) \
			bw[r] = (const block_t *)(const void *)w[r]; \
		for (int i = 0; i < n / QK; i++) { \
			float *yb = y + QK * i; \
			float32x4_t lo[4], hi[4]; \
			PF_UNROLL(4) \
			for (int e = 0; e < 4; e++) { \
				lo[e] = vld1q_f32(yb + 4 * e); \
				hi[e] = vld1q_f32(yb + 16 + 4 * e); \
			} \
			for (int r = 0; r < k; r++) \
				add_block(&bw[r][i], a[r] * ld_f16(bw[r][i].d), lo, hi); \
			PF_UNROLL(4) \
			for (int e = 0; e < 4; e++) { \
				vst1q_f32(yb + 4 * e, lo[e]); \
				vst1q_f32(yb + 16 + 4 * e, hi[e]); \
			} \
		} \
	}

static inline void add_q4_0(const struct pf_block_q4_0 *b, float s, float32x4_t lo[4], float32x4_t hi[4])
{
	const int8x16_t eight = vdupq_n_s8(8);
	uint8x16_t v = vld1q_u8(b->qs);
	fma16(lo, widen_s8(vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))), eight)), s);
	fma16(hi, widen_s8(vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight)), s);
}

static inline void add_q8_0(const struct pf_block_q8_0 *b, float s, float32x4_t lo[4], float32x4_t hi[4])
{
	fma16(lo, widen_s8(vld1q_s8(b->qs)), s);
	fma16(hi, widen_s8(vld1q_s8(b->qs + 16)), s);
}

AXPY_MULTI(q4_0, struct pf_block_q4_0, add_q4_0)
AXPY_MULTI(q8_0, struct pf_block_q8_0, add_q8_0)
#undef AXPY_MULTI

void pf_q4_1_axpy_neon(int n, float a, const void *w, float *y)
{
	const struct pf_block_q4_1 *b = w;
	for (int i = 0; i < n / QK; i++, b++, y += QK) {
		uint8x16_t v = vld1q_u8(b->qs);
		float s = a * ld_f16(b->d), o = a * ld_f16(b->m);
		axpy16_off(y, widen_u8(vandq_u8(v, vdupq_n_u8(0x0f))), s, o);
		axpy16_off(y + 16, widen_u8(vshrq_n_u8(v, 4)), s, o);
	}
}

/* Level minus 16 as in pf_q5_0_to_float_neon. */
void pf_q5_0_axpy_neon(int n, float a, const void *w, float *y)
{
	const struct pf_block_q5_0 *b = w;
	const uint8x16_t f0 = vdupq_n_u8(0xf0);
	for (int i = 0; i < n / QK; i++, b++, y += QK) {
		uint8x16_t v = vld1q_u8(b->qs), hl, hh;
		expand_bits(b->qh, &hl, &hh);
		float s = a * ld_f16(b->d);
		uint8x16_t lo = vorrq_u8(vandq_u8(v, vdupq_n_u8(0x0f)), vbicq_u8(f0, hl));
		uint8x16_t hi = vorrq_u8(vshrq_n_u8(v, 4), vbicq_u8(f0, hh));
		axpy16(y, widen_s8(vreinterpretq_s8_u8(lo)), s);
		axpy16(y + 16, widen_s8(vreinterpretq_s8_u8(hi)), s);
	}
}

void pf_q5_1_axpy_neon(int n, float a, const void *w, float *y)
{
	const struct pf_block_q5_1 *b = w;
	const uint8x16_t b4 = vdupq_n_u8(0x10);
	for (int i = 0; i < n / QK; i++, b++, y += QK) {
		uint8x16_t v = vld1q_u8(b->qs), hl, hh;
		expand_bits(b->qh, &hl, &hh);
		float s = a * ld_f16(b->d), o = a * ld_f16(b->m);
		uint8x16_t lo = vorrq_u8(vandq_u8(v, vdupq_n_u8(0x0f)), vandq_u8(hl, b4));
		uint8x16_t hi = vorrq_u8(vshrq_n_u8(v, 4), vandq_u8(hh, b4));
		axpy16_off(y, widen_u8(lo), s, o);
		axpy16_off(y + 16, widen_u8(hi), s, o);
	}
}

/* Q4_K/Q5_K's factors for sub-block j: s[j] = a * (d * sc[j]) and
 * o[j] = -(a * (dmin * m[j])). */
static inline void k4_axpy_factors(float a, const uint8_t *d, const uint8_t *dmin, const uint8_t *scales,
	float s[8], float o[8])
{
	float ds[8], dm[8];
	k4_factors(d, dmin, scales, ds, dm);
	for (int j = 0; j < 8; j++) {
		s[j] = a * ds[j];
		o[j] = -(a * dm[j]);
	}
}

void pf_q4_k_axpy_neon(int n, float a, const void *w, float *y)
{
	const struct pf_block_q4_k *b = w;
	const uint8x16_t m4 = vdupq_n_u8(0x0f);
	for (int i = 0; i < n / QK_K; i++, b++, y += QK_K) {
		float s[8], o[8];
		k4_axpy_factors(a, b->d, b->dmin, b->scales, s, o);
		for (int c = 0; c < 4; c++) {
			float *out = y + 64 * c;
			PF_UNROLL(2)
			for (int k = 0; k < 2; k++) {
				uint8x16_t v = vld1q_u8(b->qs + 32 * c + 16 * k);
				axpy16_off(out + 16 * k, widen_u8(vandq_u8(v, m4)), s[2 * c], o[2 * c]);
				axpy16_off(out + 32 + 16 * k, widen_u8(vshrq_n_u8(v, 4)), s[2 * c + 1], o[2 * c + 1]);
			}
		}
	}
}

void pf_q5_k_axpy_neon(int n, float a, const void *w, float *y)
{
	const struct pf_block_q5_k *b = w;
	const uint8x16_t m4 = vdupq_n_u8(0x0f), b4 = vdupq_n_u8(0x10);
	for (int i = 0; i < n / QK_K; i++, b++, y += QK_K) {
		float s[8], o[8];
		k4_axpy_factors(a, b->d, b->dmin, b->scales, s, o);
		for (int c = 0; c < 4; c++) {
			float *out = y + 64 * c;
			uint8x16_t bl = vdupq_n_u8((uint8_t)(1 << (2 * c))), bh = vdupq_n_u8((uint8_t)(2 << (2 * c)));
			PF_UNROLL(2)
			for (int k = 0; k < 2; k++) {
				uint8x16_t v = vld1q_u8(b->qs + 32 * c + 16 * k), h = vld1q_u8(b->qh + 16 * k);
				uint8x16_t lo = vorrq_u8(vandq_u8(v, m4), vandq_u8(vtstq_u8(h, bl), b4));
				uint8x16_t hi = vorrq_u8(vshrq_n_u8(v, 4), vandq_u8(vtstq_u8(h, bh), b4));
				axpy16_off(out + 16 * k, widen_u8(lo), s[2 * c], o[2 * c]);
				axpy16_off(out + 32 + 16 * k, widen_u8(hi), s[2 * c + 1], o[2 * c + 1]);
			}
		}
	}
}

void pf_q6_k_axpy_neon(int n, float a, const void *w, float *y)
{
	const struct pf_block_q6_k *b = w;
	const int8x16_t off = vdupq_n_s8(32);
	for (int i = 0; i < n / QK_K; i++, b++, y += QK_K) {
		float d = ld_f16(b->d);
		for (int h = 0; h < 2; h++) {
			uint8x16_t q[8];
			q6_k_levels(b, h, q);
			PF_UNROLL(8)
			for (int k = 0; k < 8; k++)
				axpy16(y + 128 * h + 16 * k, widen_s8(vsubq_s8(vreinterpretq_s8_u8(q[k]), off)),
					a * (d * b->scales[8 * h + k]));
		}
	}
}

#else
/* Keeps the translation unit non-empty on other architectures. */
typedef int pf_dequant_neon_unused;
#endif
