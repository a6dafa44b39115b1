/* Helpers shared by the NEON dot kernels (quant_neon.c) and dequantizers
 * (dequant_neon.c): block fields unpacked the same way in both. Included
 * only on aarch64, after arm_neon.h and quant_internal.h. */
#ifndef PINFER_QUANT_NEON_H
#define PINFER_QUANT_NEON_H

static inline float ld_f16(const uint8_t *p)
{
	__fp16 h;
	memcpy(&h, p, sizeof(h));
	return (float)h;
}

/* Masks with byte j set to 0xff when bit j of the 32-bit qh is set, for
 * elements 0-15 and 16-31: each byte picks the qh byte holding its bit and
 * tests its own bit. */
static inline void expand_bits(const uint8_t *qh, uint8x16_t *lo, uint8x16_t *hi)
{
	static const uint8_t spread_lo[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 };
	static const uint8_t spread_hi[16] = { 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3 };
	static const uint8_t bits[16] = { 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128 };
	uint8x16_t v = vreinterpretq_u8_u32(vdupq_n_u32(pf_rd_u32(qh)));
	uint8x16_t b = vld1q_u8(bits);
	*lo = vtstq_u8(vqtbl1q_u8(v, vld1q_u8(spread_lo)), b);
	*hi = vtstq_u8(vqtbl1q_u8(v, vld1q_u8(spread_hi)), b);
}

/* The 6-bit levels (0..63, before the -32 offset) of half h (128 elements)
 * of a Q6_K block, as 8 sub-blocks of 16 in element order. */
static inline void q6_k_levels(const struct pf_block_q6_k *b, int h, uint8x16_t u[8])
{
	const uint8x16_t m4 = vdupq_n_u8(0x0f), m30 = vdupq_n_u8(0x30);
	const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
	uint8x16_t l0 = vld1q_u8(ql), l1 = vld1q_u8(ql + 16);
	uint8x16_t l2 = vld1q_u8(ql + 32), l3 = vld1q_u8(ql + 48);
	uint8x16_t h0 = vld1q_u8(qh), h1 = vld1q_u8(qh + 16);
	u[0] = vorrq_u8(vandq_u8(l0, m4), vandq_u8(vshlq_n_u8(h0, 4), m30));
	u[1] = vorrq_u8(vandq_u8(l1, m4), vandq_u8(vshlq_n_u8(h1, 4), m30));
	u[2] = vorrq_u8(vandq_u8(l2, m4), vandq_u8(vshlq_n_u8(h0, 2), m30));
	u[3] = vorrq_u8(vandq_u8(l3, m4), vandq_u8(vshlq_n_u8(h1, 2), m30));
	u[4] = vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(h0, m30));
	u[5] = vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(h1, m30));
	u[6] = vorrq_u8(vshrq_n_u8(l2, 4), vandq_u8(vshrq_n_u8(h0, 2), m30));
	u[7] = vorrq_u8(vshrq_n_u8(l3, 4), vandq_u8(vshrq_n_u8(h1, 2), m30));
}

#endif
