/* The NEON quantizer of Q8_S (actquant_x86.c says why): the scalar one's
 * bytes bit for bit. vmaxnm ignores a NaN as fmaxf does, and FCVTNS is
 * what lrintf is here (a NaN product gives 0). */
#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>

#include "quant_internal.h"

void pf_q8_s_from_float_neon(const float *src, void *dst, int64_t n)
{
	uint8_t *p = dst;
	int nb = (int)(n / QK);
	for (int b = 0; b < nb; b++, src += QK) {
		float32x4_t v[8], m = vdupq_n_f32(0.0f);
		for (int k = 0; k < 8; k++) {
			v[k] = vld1q_f32(src + 4 * k);
			m = vmaxnmq_f32(m, vabsq_f32(v[k]));
		}
		float d = vmaxnmvq_f32(m) / 127.0f;
		float id = d != 0.0f ? 1.0f / d : 0.0f;
		int32x4_t q[8];
		for (int k = 0; k < 8; k++) {
			int32x4_t r = vcvtnq_s32_f32(vmulq_n_f32(v[k], id));
			q[k] = vminq_s32(vmaxq_s32(r, vdupq_n_s32(-127)), vdupq_n_s32(127));
		}
		int32_t s[4];
		for (int l = 0; l < 4; l++)
			s[l] = 8 * vaddvq_s32(vaddq_s32(q[l], q[4 + l]));
		int16x8_t h[4];
		for (int k = 0; k < 4; k++)
			h[k] = vcombine_s16(vqmovn_s32(q[2 * k]), vqmovn_s32(q[2 * k + 1]));
		float dd[4] = { d, d, d, d };
		memcpy(p + pf_q8_s_chunk(nb, b, 0), dd, sizeof(dd));
		memcpy(p + pf_q8_s_chunk(nb, b, 1), s, sizeof(s));
		vst1q_s8((int8_t *)(p + pf_q8_s_chunk(nb, b, 2)), vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
		vst1q_s8((int8_t *)(p + pf_q8_s_chunk(nb, b, 3)), vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])));
	}
}

#endif
