/* NEON quantizers of Q8_S and Q8_0 (actquant_x86.c says why): the scalar
 * ones' bytes bit for bit. vmaxnm ignores a NaN as fmaxf does, and FCVTNS
 * is what lrintf is here (a NaN product gives 0). */
#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>

#include "quant_internal.h"

/* The 32 values at src into v; their largest magnitude. */
static inline float block_max(const float *src, float32x4_t v[8])
{
	float32x4_t m = vdupq_n_f32(0.0f);
	for (int k = 0; k < 8; k++) {
		v[k] = vld1q_f32(src + 4 * k);
		m = vmaxnmq_f32(m, vabsq_f32(v[k]));
	}
	return vmaxnmvq_f32(m);
}

/* round(v * (1 / d)) clamped to -127..127 (0 for d = 0) */
static inline void block_levels(const float32x4_t v[8], float d, int32x4_t q[8])
{
	float id = d != 0.0f ? 1.0f / d : 0.0f;
	for (int k = 0; k < 8; k++) {
		int32x4_t r = vcvtnq_s32_f32(vmulq_n_f32(v[k], id));
		q[k] = vminq_s32(vmaxq_s32(r, vdupq_n_s32(-127)), vdupq_n_s32(127));
	}
}

/* Levels q[4h..4h+4) as 16 bytes. */
static inline int8x16_t block_bytes(const int32x4_t q[8], int h)
{
	int16x8_t a = vcombine_s16(vqmovn_s32(q[4 * h]), vqmovn_s32(q[4 * h + 1]));
	int16x8_t b = vcombine_s16(vqmovn_s32(q[4 * h + 2]), vqmovn_s32(q[4 * h + 3]));
	return vcombine_s8(vqmovn_s16(a), vqmovn_s16(b));
}

void pf_q8_s_from_float_neon(const float *src, void *dst, int64_t n)
{
	uint8_t *p = dst;
	int nb = (int)(n / QK);
	for (int b = 0; b < nb; b++, src += QK) {
		float32x4_t v[8];
		float d = block_max(src, v) / 127.0f;
		int32x4_t q[8];
		block_levels(v, d, q);
		int32_t s[4];
		for (int l = 0; l < 4; l++)
			s[l] = 8 * vaddvq_s32(vaddq_s32(q[l], q[4 + l]));
		float dd[4] = { d, d, d, d };
		memcpy(p + pf_q8_s_chunk(nb, b, 0), dd, sizeof(dd));
		memcpy(p + pf_q8_s_chunk(nb, b, 1), s, sizeof(s));
		vst1q_s8((int8_t *)(p + pf_q8_s_chunk(nb, b, 2)), block_bytes(q, 0));
		vst1q_s8((int8_t *)(p + pf_q8_s_chunk(nb, b, 3)), block_bytes(q, 1));
	}
}

/* Q8_0 quantizes against its scale rounded to fp16, as the reference does. */
void pf_q8_0_from_float_neon(const float *src, void *dst, int64_t n)
{
	struct pf_block_q8_0 *b = dst;
	for (int64_t i = 0; i < n / QK; i++, b++, src += QK) {
		float32x4_t v[8];
		__fp16 h = (__fp16)(block_max(src, v) / 127.0f);
		int32x4_t q[8];
		block_levels(v, (float)h, q);
		vst1q_s8((int8_t *)b->qs, block_bytes(q, 0));
		vst1q_s8((int8_t *)b->qs + 16, block_bytes(q, 1));
		memcpy(b->d, &h, sizeof(h));
	}
}

/* The conversion rounds to nearest even (the default FPCR) as the
 * reference does, takes values past 65504 to infinity and keeps a NaN
 * quiet with its payload's top bits. */
void pf_f16_from_float_neon(const float *src, void *dst, int64_t n)
{
	uint8_t *p = dst;
	int64_t i = 0;
	for (; i + 4 <= n; i += 4)
		vst1_u8(p + 2 * i, vreinterpret_u8_f16(vcvt_f16_f32(vld1q_f32(src + i))));
	for (; i < n; i++) {
		__fp16 h = (__fp16)src[i];
		memcpy(p + 2 * i, &h, sizeof(h));
	}
}

#endif
