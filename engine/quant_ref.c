/* Scalar reference code for the float formats and the 32-element block
 * formats: what the SIMD kernels are tested against, and the kernels used
 * where no SIMD version exists. */
#include <math.h>

#include "quant_internal.h"

/* lrintf rounds to nearest even and, unlike a cast, is defined for any
 * float; callers clamp the result to their quant range. */
static int round_clamp(float v, int lo, int hi)
{
	long r = lrintf(v);
	return r < lo ? lo : r > hi ? hi : (int)r;
}

/* Scale and its reciprocal as the dequantizer will see them: quantizing
 * against the fp16-rounded scale keeps the rounding error of d out of the
 * round trip. */
static float f16_round(float f)
{
	return pf_fp16_to_fp32(pf_fp32_to_fp16(f));
}

static float inv_or_zero(float d)
{
	return d != 0.0f ? 1.0f / d : 0.0f;
}

/* ---- float formats ---- */

void pf_f32_to_float(const void *src, float *dst, int64_t n)
{
	memcpy(dst, src, (size_t)n * sizeof(float));
}

void pf_f32_from_float(const float *src, void *dst, int64_t n)
{
	memcpy(dst, src, (size_t)n * sizeof(float));
}

/* The float dots accumulate in double: they are the yardstick the SIMD
 * versions, which sum in a different order, are measured against. */
void pf_f32_dot_ref(int n, float *s, const void *w, const void *x)
{
	const uint8_t *pw = w, *px = x;
	double sum = 0.0;
	for (int i = 0; i < n; i++)
		sum += (double)pf_rd_f32(pw + 4 * i) * pf_rd_f32(px + 4 * i);
	*s = (float)sum;
}

void pf_f16_to_float(const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;
	for (int64_t i = 0; i < n; i++)
		dst[i] = pf_rd_f16(p + 2 * i);
}

void pf_f16_from_float(const float *src, void *dst, int64_t n)
{
	uint8_t *p = dst;
	for (int64_t i = 0; i < n; i++)
		pf_wr_f16(p + 2 * i, src[i]);
}

void pf_f16_dot_ref(int n, float *s, const void *w, const void *x)
{
	const uint8_t *pw = w, *px = x;
	double sum = 0.0;
	for (int i = 0; i < n; i++)
		sum += (double)pf_rd_f16(pw + 2 * i) * pf_rd_f32(px + 4 * i);
	*s = (float)sum;
}

void pf_bf16_to_float(const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;
	for (int64_t i = 0; i < n; i++)
		dst[i] = pf_bf16_to_fp32(pf_rd_u16(p + 2 * i));
}

void pf_bf16_from_float(const float *src, void *dst, int64_t n)
{
	uint8_t *p = dst;
	for (int64_t i = 0; i < n; i++) {
		uint16_t h = pf_fp32_to_bf16(src[i]);
		memcpy(p + 2 * i, &h, sizeof(h));
	}
}

void pf_bf16_dot_ref(int n, float *s, const void *w, const void *x)
{
	const uint8_t *pw = w, *px = x;
	double sum = 0.0;
	for (int i = 0; i < n; i++)
		sum += (double)pf_bf16_to_fp32(pf_rd_u16(pw + 2 * i)) * pf_rd_f32(px + 4 * i);
	*s = (float)sum;
}

/* ---- 32-element block formats ---- */

/* The value of largest magnitude, with its sign: the symmetric formats map
 * it to their most negative level, which is one step longer than the
 * positive side. */
static float signed_absmax(const float *x, int n)
{
	float amax = 0.0f, max = 0.0f;
	for (int i = 0; i < n; i++)
		if (fabsf(x[i]) > amax) {
			amax = fabsf(x[i]);
			max = x[i];
		}
	return max;
}

static void min_max(const float *x, int n, float *min, float *max)
{
	*min = *max = x[0];
	for (int i = 1; i < n; i++) {
		*min = fminf(*min, x[i]);
		*max = fmaxf(*max, x[i]);
	}
}

void pf_q4_0_to_float(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q4_0 *b = src;
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		float d = pf_rd_f16(b->d);
		for (int j = 0; j < QK / 2; j++) {
			dst[j] = d * ((b->qs[j] & 0x0f) - 8);
			dst[j + QK / 2] = d * ((b->qs[j] >> 4) - 8);
		}
	}
}

void pf_q4_0_from_float(const float *src, void *dst, int64_t n)
{
	struct pf_block_q4_0 *b = dst;
	for (int64_t i = 0; i < n / QK; i++, b++, src += QK) {
		float d = f16_round(signed_absmax(src, QK) / -8.0f);
		float id = inv_or_zero(d);
		pf_wr_f16(b->d, d);
		for (int j = 0; j < QK / 2; j++) {
			int lo = round_clamp(src[j] * id + 8.0f, 0, 15);
			int hi = round_clamp(src[j + QK / 2] * id + 8.0f, 0, 15);
			b->qs[j] = (uint8_t)(lo | hi << 4);
		}
	}
}

void pf_q4_1_to_float(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q4_1 *b = src;
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		float d = pf_rd_f16(b->d), m = pf_rd_f16(b->m);
		for (int j = 0; j < QK / 2; j++) {
			dst[j] = d * (b->qs[j] & 0x0f) + m;
			dst[j + QK / 2] = d * (b->qs[j] >> 4) + m;
		}
	}
}

void pf_q4_1_from_float(const float *src, void *dst, int64_t n)
{
	struct pf_block_q4_1 *b = dst;
	for (int64_t i = 0; i < n / QK; i++, b++, src += QK) {
		float min, max;
		min_max(src, QK, &min, &max);
		float d = f16_round((max - min) / 15.0f), m = f16_round(min);
		float id = inv_or_zero(d);
		pf_wr_f16(b->d, d);
		pf_wr_f16(b->m, m);
		for (int j = 0; j < QK / 2; j++) {
			int lo = round_clamp((src[j] - m) * id, 0, 15);
			int hi = round_clamp((src[j + QK / 2] - m) * id, 0, 15);
			b->qs[j] = (uint8_t)(lo | hi << 4);
		}
	}
}

/* 5-bit values: nibble from qs, fifth bit from qh (shared by Q5_0/Q5_1). */
static int q5_get(const uint8_t *qs, uint32_t qh, int j)
{
	int nib = j < QK / 2 ? qs[j] & 0x0f : qs[j - QK / 2] >> 4;
	return nib | (int)((qh >> j) & 1) << 4;
}

static void q5_put(uint8_t *qs, uint8_t *qh_bytes, const int *q)
{
	uint32_t qh = 0;
	for (int j = 0; j < QK / 2; j++)
		qs[j] = (uint8_t)((q[j] & 0x0f) | (q[j + QK / 2] & 0x0f) << 4);
	for (int j = 0; j < QK; j++)
		qh |= (uint32_t)(q[j] >> 4) << j;
	memcpy(qh_bytes, &qh, sizeof(qh));
}

void pf_q5_0_to_float(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q5_0 *b = src;
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		float d = pf_rd_f16(b->d);
		uint32_t qh = pf_rd_u32(b->qh);
		for (int j = 0; j < QK; j++)
			dst[j] = d * (q5_get(b->qs, qh, j) - 16);
	}
}

void pf_q5_0_from_float(const float *src, void *dst, int64_t n)
{
	struct pf_block_q5_0 *b = dst;
	for (int64_t i = 0; i < n / QK; i++, b++, src += QK) {
		float d = f16_round(signed_absmax(src, QK) / -16.0f);
		float id = inv_or_zero(d);
		int q[QK];
		for (int j = 0; j < QK; j++)
			q[j] = round_clamp(src[j] * id + 16.0f, 0, 31);
		pf_wr_f16(b->d, d);
		q5_put(b->qs, b->qh, q);
	}
}

void pf_q5_1_to_float(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q5_1 *b = src;
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		float d = pf_rd_f16(b->d), m = pf_rd_f16(b->m);
		uint32_t qh = pf_rd_u32(b->qh);
		for (int j = 0; j < QK; j++)
			dst[j] = d * q5_get(b->qs, qh, j) + m;
	}
}

void pf_q5_1_from_float(const float *src, void *dst, int64_t n)
{
	struct pf_block_q5_1 *b = dst;
	for (int64_t i = 0; i < n / QK; i++, b++, src += QK) {
		float min, max;
		min_max(src, QK, &min, &max);
		float d = f16_round((max - min) / 31.0f), m = f16_round(min);
		float id = inv_or_zero(d);
		int q[QK];
		for (int j = 0; j < QK; j++)
			q[j] = round_clamp((src[j] - m) * id, 0, 31);
		pf_wr_f16(b->d, d);
		pf_wr_f16(b->m, m);
		q5_put(b->qs, b->qh, q);
	}
}

/* Q8_0 and Q8_1 share the quantizer; Q8_1 also records d * sum(q). */
static float q8_block(const float *src, int8_t *qs, uint8_t *d_out)
{
	float amax = 0.0f;
	for (int j = 0; j < QK; j++)
		amax = fmaxf(amax, fabsf(src[j]));
	float d = f16_round(amax / 127.0f);
	float id = inv_or_zero(d);
	int sum = 0;
	for (int j = 0; j < QK; j++) {
		qs[j] = (int8_t)round_clamp(src[j] * id, -127, 127);
		sum += qs[j];
	}
	pf_wr_f16(d_out, d);
	return d * (float)sum;
}

void pf_q8_0_to_float(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q8_0 *b = src;
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		float d = pf_rd_f16(b->d);
		for (int j = 0; j < QK; j++)
			dst[j] = d * b->qs[j];
	}
}

void pf_q8_0_from_float(const float *src, void *dst, int64_t n)
{
	struct pf_block_q8_0 *b = dst;
	for (int64_t i = 0; i < n / QK; i++, b++, src += QK)
		q8_block(src, b->qs, b->d);
}

void pf_q8_1_to_float(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q8_1 *b = src;
	for (int64_t i = 0; i < n / QK; i++, b++, dst += QK) {
		float d = pf_rd_f16(b->d);
		for (int j = 0; j < QK; j++)
			dst[j] = d * b->qs[j];
	}
}

/* s is stored as fp16 like ggml's, so a block whose values sum past 65504
 * saturates to inf; activations are far below that in practice. */
void pf_q8_1_from_float(const float *src, void *dst, int64_t n)
{
	struct pf_block_q8_1 *b = dst;
	for (int64_t i = 0; i < n / QK; i++, b++, src += QK)
		pf_wr_f16(b->s, q8_block(src, b->qs, b->d));
}

/* Q8_S: Q8_0's quantizer with the scale kept as a float, in the layout of
 * quant_internal.h. */
void pf_q8_s_to_float(const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;
	int nb = (int)(n / QK);
	for (int b = 0; b < nb; b++, dst += QK) {
		float d = pf_rd_f32(p + pf_q8_s_chunk(nb, b, 0));
		const int8_t *lo = (const int8_t *)(p + pf_q8_s_chunk(nb, b, 2));
		const int8_t *hi = (const int8_t *)(p + pf_q8_s_chunk(nb, b, 3));
		for (int j = 0; j < QK / 2; j++) {
			dst[j] = d * lo[j];
			dst[j + QK / 2] = d * hi[j];
		}
	}
}

void pf_q8_s_from_float(const float *src, void *dst, int64_t n)
{
	uint8_t *p = dst;
	int nb = (int)(n / QK);
	for (int b = 0; b < nb; b++, src += QK) {
		float amax = 0.0f;
		for (int j = 0; j < QK; j++)
			amax = fmaxf(amax, fabsf(src[j]));
		float d = amax / 127.0f;
		float id = inv_or_zero(d);
		int8_t q[QK];
		for (int j = 0; j < QK; j++)
			q[j] = (int8_t)round_clamp(src[j] * id, -127, 127);
		int32_t s[4];
		for (int l = 0; l < 4; l++) {
			s[l] = 0;
			for (int j = 4 * l; j < 4 * l + 4; j++)
				s[l] += 8 * (q[j] + q[j + QK / 2]);
		}
		float dd[4] = { d, d, d, d };
		memcpy(p + pf_q8_s_chunk(nb, b, 0), dd, sizeof(dd));
		memcpy(p + pf_q8_s_chunk(nb, b, 1), s, sizeof(s));
		memcpy(p + pf_q8_s_chunk(nb, b, 2), q, QK / 2);
		memcpy(p + pf_q8_s_chunk(nb, b, 3), q + QK / 2, QK / 2);
	}
}

void pf_q4_0_dot_ref(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q4_0 *bw = w;
	const uint8_t *px = x;
	int nb = n / QK;
	float sum = 0.0f;
	for (int b = 0; b < nb; b++, bw++) {
		const int8_t *lo = (const int8_t *)(px + pf_q8_s_chunk(nb, b, 2));
		const int8_t *hi = (const int8_t *)(px + pf_q8_s_chunk(nb, b, 3));
		int isum = 0;
		for (int j = 0; j < QK / 2; j++)
			isum += ((bw->qs[j] & 0x0f) - 8) * lo[j] + ((bw->qs[j] >> 4) - 8) * hi[j];
		sum += pf_rd_f16(bw->d) * pf_rd_f32(px + pf_q8_s_chunk(nb, b, 0)) * (float)isum;
	}
	*s = sum;
}

/* The scalar multi-token kernels: the reference once per token. */
#define DOT_MULTI_REF(name) \
	void pf_##name##_dot_multi_ref(int n, float *s, size_t s_stride, const void *w, const void *x, \
				       size_t x_stride, int n_x) \
	{ \
		for (int t = 0; t < n_x; t++) \
			pf_##name##_dot_ref(n, s + (size_t)t * s_stride, w, \
					    (const uint8_t *)x + (size_t)t * x_stride); \
	}
DOT_MULTI_REF(q4_0)
DOT_MULTI_REF(q4_k)
DOT_MULTI_REF(q6_k)

/* The scalar multi-row kernel: the reference once per row. */
void pf_q4_0_dot_rows_ref(int n, int k, float *s, const uint8_t *const *w, const void *x)
{
	for (int r = 0; r < k; r++)
		pf_q4_0_dot_ref(n, s + r, w[r], x);
}

void pf_q4_1_dot_ref(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q4_1 *bw = w;
	const struct pf_block_q8_1 *bx = x;
	float sum = 0.0f;
	for (int i = 0; i < n / QK; i++, bw++, bx++) {
		int isum = 0;
		for (int j = 0; j < QK / 2; j++)
			isum += (bw->qs[j] & 0x0f) * bx->qs[j] + (bw->qs[j] >> 4) * bx->qs[j + QK / 2];
		sum += pf_rd_f16(bw->d) * pf_rd_f16(bx->d) * (float)isum +
			pf_rd_f16(bw->m) * pf_rd_f16(bx->s);
	}
	*s = sum;
}

void pf_q5_0_dot_ref(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q5_0 *bw = w;
	const uint8_t *px = x;
	int nb = n / QK;
	float sum = 0.0f;
	for (int b = 0; b < nb; b++, bw++) {
		const int8_t *lo = (const int8_t *)(px + pf_q8_s_chunk(nb, b, 2));
		const int8_t *hi = (const int8_t *)(px + pf_q8_s_chunk(nb, b, 3));
		uint32_t qh = pf_rd_u32(bw->qh);
		int isum = 0;
		for (int j = 0; j < QK / 2; j++)
			isum += (q5_get(bw->qs, qh, j) - 16) * lo[j] +
				(q5_get(bw->qs, qh, j + QK / 2) - 16) * hi[j];
		sum += pf_rd_f16(bw->d) * pf_rd_f32(px + pf_q8_s_chunk(nb, b, 0)) * (float)isum;
	}
	*s = sum;
}

void pf_q5_1_dot_ref(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q5_1 *bw = w;
	const struct pf_block_q8_1 *bx = x;
	float sum = 0.0f;
	for (int i = 0; i < n / QK; i++, bw++, bx++) {
		uint32_t qh = pf_rd_u32(bw->qh);
		int isum = 0;
		for (int j = 0; j < QK; j++)
			isum += q5_get(bw->qs, qh, j) * bx->qs[j];
		sum += pf_rd_f16(bw->d) * pf_rd_f16(bx->d) * (float)isum +
			pf_rd_f16(bw->m) * pf_rd_f16(bx->s);
	}
	*s = sum;
}

void pf_q8_0_dot_ref(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q8_0 *bw = w;
	const struct pf_block_q8_0 *bx = x;
	float sum = 0.0f;
	for (int i = 0; i < n / QK; i++, bw++, bx++) {
		int isum = 0;
		for (int j = 0; j < QK; j++)
			isum += bw->qs[j] * bx->qs[j];
		sum += pf_rd_f16(bw->d) * pf_rd_f16(bx->d) * (float)isum;
	}
	*s = sum;
}

/* ---- axpy: y += a * to_float(w), whole blocks at a time ---- */

#define AXPY_REF(name, block, block_bytes) \
	void pf_##name##_axpy_ref(int n, float a, const void *w, float *y) \
	{ \
		pf_axpy_by_blocks(pf_##name##_to_float, block, block_bytes, n, a, w, y); \
	}
AXPY_REF(f32, 1, sizeof(float))
AXPY_REF(f16, 1, sizeof(uint16_t))
AXPY_REF(bf16, 1, sizeof(uint16_t))
AXPY_REF(q4_0, QK, sizeof(struct pf_block_q4_0))
AXPY_REF(q4_1, QK, sizeof(struct pf_block_q4_1))
AXPY_REF(q5_0, QK, sizeof(struct pf_block_q5_0))
AXPY_REF(q5_1, QK, sizeof(struct pf_block_q5_1))
AXPY_REF(q8_0, QK, sizeof(struct pf_block_q8_0))
#undef AXPY_REF

#define AXPY_MULTI_REF(name) \
	void pf_##name##_axpy_multi_ref(int n, int k, const float *a, const uint8_t *const *w, float *y) \
	{ \
		for (int r = 0; r < k; r++) \
			pf_##name##_axpy_ref(n, a[r], w[r], y); \
	}
AXPY_MULTI_REF(q4_0)
AXPY_MULTI_REF(q8_0)
#undef AXPY_MULTI_REF
