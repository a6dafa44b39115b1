/* Scalar reference code for the K formats (super-blocks of 256 with
 * quantized per-sub-block scales) and their Q8_K activations.
 *
 * The quantizers search, per sub-block, for the scale (and offset) that
 * minimizes the squared error, then quantize those scales against one
 * super-block scale and requantize the values with the scales the
 * dequantizer will actually use. */
#include <math.h>

#include "quant_internal.h"

static int round_clamp(float v, int lo, int hi)
{
	long r = lrintf(v);
	return r < lo ? lo : r > hi ? hi : (int)r;
}

static float f16_round(float f)
{
	return pf_fp16_to_fp32(pf_fp32_to_fp16(f));
}

/* Byte-wise unpacking of Q4_K/Q5_K scale j, spelled out independently of
 * pf_k4_scales so the tests compare two readings of the format. */
static void k4_scale_min(const uint8_t *q, int j, int *sc, int *m)
{
	if (j < 4) {
		*sc = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*sc = (q[j + 4] & 0x0f) | (q[j - 4] >> 6) << 4;
		*m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
	}
}

static void k4_pack_scales(uint8_t *q, const int *sc, const int *m)
{
	for (int j = 0; j < 4; j++) {
		q[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
		q[j + 4] = (uint8_t)(m[j] | (m[j + 4] >> 4) << 6);
		q[j + 8] = (uint8_t)((sc[j + 4] & 0x0f) | (m[j + 4] & 0x0f) << 4);
	}
}

/* Fits x ≈ scale * l - off, l in [0, nmax], scale >= 0, off >= 0 (the
 * formats subtract a non-negative offset). Tries quantization steps around
 * the min-max one and, for each, the least-squares scale and offset of the
 * resulting levels; keeps the fit with the smallest squared error. */
static float fit_affine(const float *x, int n, int nmax, float *off)
{
	float min = 0.0f, max = 0.0f;
	for (int i = 0; i < n; i++) {
		min = fminf(min, x[i]);
		max = fmaxf(max, x[i]);
	}
	*off = -min;
	if (max == min)
		return 0.0f;
	float best_err = INFINITY, best_scale = (max - min) / nmax;
	for (int k = -10; k <= 10; k++) {
		float iscale = (nmax + 0.1f * k) / (max - min);
		float sl = 0, sll = 0, sx = 0, slx = 0;
		for (int i = 0; i < n; i++) {
			int l = round_clamp(iscale * (x[i] - min), 0, nmax);
			sl += l;
			sll += (float)(l * l);
			sx += x[i];
			slx += l * x[i];
		}
		float det = n * sll - sl * sl;
		if (det <= 0.0f)
			continue;
		float scale = (n * slx - sl * sx) / det;
		float b = (sll * sx - sl * slx) / det;
		if (b > 0.0f) {
			b = 0.0f;
			scale = slx / sll;
		}
		if (scale <= 0.0f)
			continue;
		float err = 0.0f;
		for (int i = 0; i < n; i++) {
			int l = round_clamp((x[i] - b) / scale, 0, nmax);
			float e = scale * l + b - x[i];
			err += e * e;
		}
		if (err < best_err) {
			best_err = err;
			best_scale = scale;
			*off = -b;
		}
	}
	return best_scale;
}

/* Fits x ≈ scale * l, l in [-nmax, nmax - 1]; scale may be negative so that
 * the value of largest magnitude can use the extra level -nmax. */
static float fit_symmetric(const float *x, int n, int nmax)
{
	float amax = 0.0f, max = 0.0f;
	for (int i = 0; i < n; i++)
		if (fabsf(x[i]) > amax) {
			amax = fabsf(x[i]);
			max = x[i];
		}
	if (amax == 0.0f)
		return 0.0f;
	float best = -1.0f, best_scale = max / -nmax;
	for (int k = -9; k <= 9; k++) {
		float iscale = -(nmax + 0.1f * k) / max;
		float sll = 0, slx = 0;
		for (int i = 0; i < n; i++) {
			int l = round_clamp(iscale * x[i], -nmax, nmax - 1);
			sll += (float)(l * l);
			slx += l * x[i];
		}
		/* With the least-squares scale slx/sll the squared error is
		 * sum(x^2) - slx^2/sll, so the best candidate maximizes the
		 * latter term. */
		if (sll > 0.0f && slx * slx / sll > best) {
			best = slx * slx / sll;
			best_scale = slx / sll;
		}
	}
	return best_scale;
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): fills d, dmin, the packed
 * scales and the levels l[0..256). */
static void k4_quantize(const float *x, int nmax, uint8_t *d_out, uint8_t *dmin_out,
	uint8_t *scales, uint8_t *l)
{
	float scale[8], off[8], max_scale = 0.0f, max_off = 0.0f;
	for (int j = 0; j < 8; j++) {
		scale[j] = fit_affine(x + 32 * j, 32, nmax, &off[j]);
		max_scale = fmaxf(max_scale, scale[j]);
		max_off = fmaxf(max_off, off[j]);
	}
	float d = f16_round(max_scale / 63.0f), dmin = f16_round(max_off / 63.0f);
	float id = d > 0.0f ? 1.0f / d : 0.0f, idmin = dmin > 0.0f ? 1.0f / dmin : 0.0f;
	int sc[8], m[8];
	for (int j = 0; j < 8; j++) {
		sc[j] = round_clamp(scale[j] * id, 0, 63);
		m[j] = round_clamp(off[j] * idmin, 0, 63);
		float ds = d * sc[j], dm = dmin * m[j];
		for (int i = 0; i < 32; i++)
			l[32 * j + i] = ds > 0.0f ? (uint8_t)round_clamp((x[32 * j + i] + dm) / ds, 0, nmax) : 0;
	}
	pf_wr_f16(d_out, d);
	pf_wr_f16(dmin_out, dmin);
	k4_pack_scales(scales, sc, m);
}

/* ---- Q4_K ---- */

void pf_q4_k_to_float(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q4_k *b = src;
	for (int64_t i = 0; i < n / QK_K; i++, b++, dst += QK_K) {
		float d = pf_rd_f16(b->d), dmin = pf_rd_f16(b->dmin);
		for (int c = 0; c < 4; c++) {
			int sc0, m0, sc1, m1;
			k4_scale_min(b->scales, 2 * c, &sc0, &m0);
			k4_scale_min(b->scales, 2 * c + 1, &sc1, &m1);
			const uint8_t *q = b->qs + 32 * c;
			for (int l = 0; l < 32; l++) {
				dst[64 * c + l] = d * sc0 * (q[l] & 0x0f) - dmin * m0;
				dst[64 * c + 32 + l] = d * sc1 * (q[l] >> 4) - dmin * m1;
			}
		}
	}
}

void pf_q4_k_from_float(const float *src, void *dst, int64_t n)
{
	struct pf_block_q4_k *b = dst;
	for (int64_t i = 0; i < n / QK_K; i++, b++, src += QK_K) {
		uint8_t l[QK_K];
		k4_quantize(src, 15, b->d, b->dmin, b->scales, l);
		for (int c = 0; c < 4; c++)
			for (int j = 0; j < 32; j++)
				b->qs[32 * c + j] = (uint8_t)(l[64 * c + j] | l[64 * c + 32 + j] << 4);
	}
}

/* ---- Q5_K ---- */

static void q5_k_levels(const struct pf_block_q5_k *b, uint8_t *l)
{
	for (int c = 0; c < 4; c++)
		for (int j = 0; j < 32; j++) {
			uint8_t q = b->qs[32 * c + j], h = b->qh[j];
			l[64 * c + j] = (uint8_t)((q & 0x0f) | ((h >> (2 * c)) & 1) << 4);
			l[64 * c + 32 + j] = (uint8_t)((q >> 4) | ((h >> (2 * c + 1)) & 1) << 4);
		}
}

void pf_q5_k_to_float(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q5_k *b = src;
	for (int64_t i = 0; i < n / QK_K; i++, b++, dst += QK_K) {
		float d = pf_rd_f16(b->d), dmin = pf_rd_f16(b->dmin);
		uint8_t l[QK_K];
		q5_k_levels(b, l);
		for (int j = 0; j < 8; j++) {
			int sc, m;
			k4_scale_min(b->scales, j, &sc, &m);
			for (int k = 0; k < 32; k++)
				dst[32 * j + k] = d * sc * l[32 * j + k] - dmin * m;
		}
	}
}

void pf_q5_k_from_float(const float *src, void *dst, int64_t n)
{
	struct pf_block_q5_k *b = dst;
	for (int64_t i = 0; i < n / QK_K; i++, b++, src += QK_K) {
		uint8_t l[QK_K];
		k4_quantize(src, 31, b->d, b->dmin, b->scales, l);
		memset(b->qh, 0, sizeof(b->qh));
		for (int c = 0; c < 4; c++)
			for (int j = 0; j < 32; j++) {
				uint8_t lo = l[64 * c + j], hi = l[64 * c + 32 + j];
				b->qs[32 * c + j] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
				b->qh[j] |= (uint8_t)((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
			}
	}
}

/* ---- Q6_K ---- */

/* Levels minus 32, in element order. */
static void q6_k_levels(const struct pf_block_q6_k *b, int8_t *l)
{
	for (int h = 0; h < 2; h++) {
		const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
		int8_t *o = l + 128 * h;
		for (int j = 0; j < 32; j++) {
			o[j] = (int8_t)(((ql[j] & 0x0f) | (qh[j] & 3) << 4) - 32);
			o[j + 32] = (int8_t)(((ql[j + 32] & 0x0f) | ((qh[j] >> 2) & 3) << 4) - 32);
			o[j + 64] = (int8_t)(((ql[j] >> 4) | ((qh[j] >> 4) & 3) << 4) - 32);
			o[j + 96] = (int8_t)(((ql[j + 32] >> 4) | ((qh[j] >> 6) & 3) << 4) - 32);
		}
	}
}

void pf_q6_k_to_float(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q6_k *b = src;
	for (int64_t i = 0; i < n / QK_K; i++, b++, dst += QK_K) {
		float d = pf_rd_f16(b->d);
		int8_t l[QK_K];
		q6_k_levels(b, l);
		for (int k = 0; k < QK_K; k++)
			dst[k] = d * b->scales[k / 16] * l[k];
	}
}

void pf_q6_k_from_float(const float *src, void *dst, int64_t n)
{
	struct pf_block_q6_k *b = dst;
	for (int64_t i = 0; i < n / QK_K; i++, b++, src += QK_K) {
		float scale[16], amax = 0.0f, max = 0.0f;
		for (int j = 0; j < 16; j++) {
			scale[j] = fit_symmetric(src + 16 * j, 16, 32);
			if (fabsf(scale[j]) > amax) {
				amax = fabsf(scale[j]);
				max = scale[j];
			}
		}
		float d = f16_round(max / -128.0f);
		float id = d != 0.0f ? 1.0f / d : 0.0f;
		uint8_t l[QK_K];
		for (int j = 0; j < 16; j++) {
			b->scales[j] = (int8_t)round_clamp(scale[j] * id, -128, 127);
			float ds = d * b->scales[j];
			for (int k = 0; k < 16; k++)
				l[16 * j + k] = (uint8_t)(ds != 0.0f ? round_clamp(src[16 * j + k] / ds, -32, 31) + 32 : 32);
		}
		pf_wr_f16(b->d, d);
		for (int h = 0; h < 2; h++) {
			uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
			const uint8_t *o = l + 128 * h;
			for (int j = 0; j < 32; j++) {
				ql[j] = (uint8_t)((o[j] & 0x0f) | (o[j + 64] & 0x0f) << 4);
				ql[j + 32] = (uint8_t)((o[j + 32] & 0x0f) | (o[j + 96] & 0x0f) << 4);
				qh[j] = (uint8_t)(o[j] >> 4 | (o[j + 32] >> 4) << 2 |
					(o[j + 64] >> 4) << 4 | (o[j + 96] >> 4) << 6);
			}
		}
	}
}

/* ---- Q8_K ---- */

void pf_q8_k_to_float(const void *src, float *dst, int64_t n)
{
	const struct pf_block_q8_k *b = src;
	for (int64_t i = 0; i < n / QK_K; i++, b++, dst += QK_K) {
		float d = pf_rd_f32(b->d);
		for (int k = 0; k < QK_K; k++)
			dst[k] = d * b->qs[k];
	}
}

/* The value of largest magnitude maps to -128, so the whole int8 range is
 * used; the kernels multiply with unsigned weight levels, where -128 is no
 * special case. */
void pf_q8_k_from_float(const float *src, void *dst, int64_t n)
{
	struct pf_block_q8_k *b = dst;
	for (int64_t i = 0; i < n / QK_K; i++, b++, src += QK_K) {
		float amax = 0.0f, max = 0.0f;
		for (int k = 0; k < QK_K; k++)
			if (fabsf(src[k]) > amax) {
				amax = fabsf(src[k]);
				max = src[k];
			}
		float iscale = amax > 0.0f ? -128.0f / max : 0.0f;
		float d = amax > 0.0f ? 1.0f / iscale : 0.0f;
		memcpy(b->d, &d, sizeof(d));
		for (int j = 0; j < QK_K / 16; j++) {
			int16_t sum = 0;
			for (int k = 16 * j; k < 16 * j + 16; k++) {
				b->qs[k] = (int8_t)round_clamp(iscale * src[k], -128, 127);
				sum = (int16_t)(sum + b->qs[k]);
			}
			memcpy(b->bsums[j], &sum, sizeof(sum));
		}
	}
}

static int16_t q8_k_bsum(const struct pf_block_q8_k *b, int j)
{
	int16_t v;
	memcpy(&v, b->bsums[j], sizeof(v));
	return v;
}

/* ---- dots ---- */

void pf_q4_k_dot_ref(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q4_k *bw = w;
	const struct pf_block_q8_k *bx = x;
	float sum = 0.0f;
	for (int i = 0; i < n / QK_K; i++, bw++, bx++) {
		int isum = 0, msum = 0;
		for (int j = 0; j < 8; j++) {
			int sc, m, dot = 0;
			k4_scale_min(bw->scales, j, &sc, &m);
			const uint8_t *q = bw->qs + 32 * (j / 2);
			int shift = 4 * (j % 2);
			for (int k = 0; k < 32; k++)
				dot += ((q[k] >> shift) & 0x0f) * bx->qs[32 * j + k];
			isum += sc * dot;
			msum += m * (q8_k_bsum(bx, 2 * j) + q8_k_bsum(bx, 2 * j + 1));
		}
		float dx = pf_rd_f32(bx->d);
		sum += dx * (pf_rd_f16(bw->d) * (float)isum - pf_rd_f16(bw->dmin) * (float)msum);
	}
	*s = sum;
}

void pf_q5_k_dot_ref(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q5_k *bw = w;
	const struct pf_block_q8_k *bx = x;
	float sum = 0.0f;
	for (int i = 0; i < n / QK_K; i++, bw++, bx++) {
		uint8_t l[QK_K];
		q5_k_levels(bw, l);
		int isum = 0, msum = 0;
		for (int j = 0; j < 8; j++) {
			int sc, m, dot = 0;
			k4_scale_min(bw->scales, j, &sc, &m);
			for (int k = 32 * j; k < 32 * j + 32; k++)
				dot += l[k] * bx->qs[k];
			isum += sc * dot;
			msum += m * (q8_k_bsum(bx, 2 * j) + q8_k_bsum(bx, 2 * j + 1));
		}
		float dx = pf_rd_f32(bx->d);
		sum += dx * (pf_rd_f16(bw->d) * (float)isum - pf_rd_f16(bw->dmin) * (float)msum);
	}
	*s = sum;
}

void pf_q6_k_dot_ref(int n, float *s, const void *w, const void *x)
{
	const struct pf_block_q6_k *bw = w;
	const struct pf_block_q8_k *bx = x;
	float sum = 0.0f;
	for (int i = 0; i < n / QK_K; i++, bw++, bx++) {
		int8_t l[QK_K];
		q6_k_levels(bw, l);
		int isum = 0;
		for (int j = 0; j < 16; j++) {
			int dot = 0;
			for (int k = 16 * j; k < 16 * j + 16; k++)
				dot += l[k] * bx->qs[k];
			isum += bw->scales[j] * dot;
		}
		sum += pf_rd_f16(bw->d) * pf_rd_f32(bx->d) * (float)isum;
	}
	*s = sum;
}

/* ---- axpy: y += a * to_float(w), a super-block at a time ---- */

#define AXPY_REF(name) \
	void pf_##name##_axpy_ref(int n, float a, const void *w, float *y) \
	{ \
		pf_axpy_by_blocks(pf_##name##_to_float, QK_K, sizeof(struct pf_block_##name), n, a, w, y); \
	}
AXPY_REF(q4_k)
AXPY_REF(q5_k)
AXPY_REF(q6_k)
#undef AXPY_REF
