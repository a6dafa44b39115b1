#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "dtype.h"
#include "quant.h"
#include "quant_internal.h"

/* Per weight type:
 * - rt: bound on the relative RMS error of from_float + to_float on Gaussian
 *   rows (error RMS / input RMS). The float formats are bounded by their
 *   unit roundoff; the quant ones by their level spacing (about 1/sqrt(12)
 *   of a step, a step being a block's range over its level count).
 * - fast: bound on |vec_dot - vec_dot_ref|, relative to sum |w_i * x_i|
 *   (dots of random data cancel, so the terms' magnitude is the scale).
 *   Both sum exact integer products per block; only the order of the float
 *   accumulation differs.
 * - ref: bound on |vec_dot_ref - dot(to_float(w), to_float(x))|, same
 *   scale. Q4_1/Q5_1 get more: their offset term uses the activations' s,
 *   d * sum(q) rounded to fp16, where to_float sees the exact sum. */
struct type_case {
	enum pf_dtype type;
	enum pf_dtype vec_dot_type;
	double rt, fast, ref;
};

static const struct type_case cases[] = {
	{ PF_F32, PF_F32, 0.0, 5e-6, 1e-6 },
	{ PF_F16, PF_F32, 3e-4, 5e-6, 1e-6 },
	{ PF_BF16, PF_F32, 2.5e-3, 5e-6, 1e-6 },
	{ PF_Q8_0, PF_Q8_0, 0.01, 5e-6, 5e-6 },
	{ PF_Q4_0, PF_Q8_S, 0.12, 5e-6, 5e-6 },
	{ PF_Q4_1, PF_Q8_1, 0.11, 5e-6, 2e-3 },
	{ PF_Q5_0, PF_Q8_S, 0.06, 5e-6, 5e-6 },
	{ PF_Q5_1, PF_Q8_1, 0.05, 5e-6, 2e-3 },
	{ PF_Q4_K, PF_Q8_K, 0.1, 5e-6, 5e-6 },
	{ PF_Q5_K, PF_Q8_K, 0.05, 5e-6, 5e-6 },
	{ PF_Q6_K, PF_Q8_K, 0.03, 5e-6, 5e-6 },
};

/* Activation-only formats: converters, no dot. */
static const struct type_case act_cases[] = {
	{ PF_Q8_1, PF_Q8_1, 0.01, 0, 0 },
	{ PF_Q8_K, PF_Q8_K, 0.015, 0, 0 },
	{ PF_Q8_S, PF_Q8_S, 0.01, 0, 0 },
};

#define N_MAX 4096
static const int row_lengths[] = { 256, 512, 1024, 4096 };

static float gauss(uint64_t *rng)
{
	float u = 0.5f * (test_randf(rng) + 1.0f), v = 0.5f * (test_randf(rng) + 1.0f);
	return sqrtf(-2.0f * logf(1.0f - u)) * cosf(6.2831853f * v);
}

/* Row kinds: plain Gaussians at three scales, and an awkward row with an
 * all-zero block, a block of tiny values (fp16 scales go subnormal), a
 * block of identical values and, after those, a few large outliers. Each
 * region is 256 elements, so block-aligned for all formats. */
enum { ROW_UNIT, ROW_LARGE, ROW_SMALL, ROW_AWKWARD, ROW_KINDS };

static void fill_row(float *x, int n, int kind, uint64_t *rng)
{
	static const float scale[] = { 1.0f, 1e3f, 1e-3f, 1.0f };
	for (int i = 0; i < n; i++)
		x[i] = scale[kind] * gauss(rng);
	if (kind != ROW_AWKWARD)
		return;
	memset(x, 0, 256 * sizeof(float));
	for (int i = 256; i < 512 && i < n; i++)
		x[i] *= 1e-6f;
	for (int i = 512; i < 768 && i < n; i++)
		x[i] = -0.75f;
	for (int k = 0; k < 8 && n > 768; k++)
		x[768 + (int)(test_rand(rng) % (uint64_t)(n - 768))] = (k & 1 ? 1 : -1) * 3000.0f;
}

static size_t row_bytes(enum pf_dtype t, int n)
{
	uint64_t b;
	assert_true(pf_dtype_bytes(t, (uint64_t)n, &b));
	return (size_t)b;
}

static const struct pf_quant_ops *ops_of(enum pf_dtype t)
{
	const struct pf_quant_ops *ops = pf_quant_ops(t);
	assert_non_null(ops);
	assert_int_equal(ops->type, t);
	return ops;
}

static double rel_rms(const float *a, const float *b, int n)
{
	double e = 0.0, r = 0.0;
	for (int i = 0; i < n; i++) {
		e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
		r += (double)a[i] * a[i];
	}
	return r > 0.0 ? sqrt(e / r) : sqrt(e);
}

static void round_trip(const struct type_case *c, uint64_t *rng)
{
	const struct pf_quant_ops *ops = ops_of(c->type);
	assert_non_null(ops->from_float);
	float *x = malloc(N_MAX * sizeof(float)), *y = malloc(N_MAX * sizeof(float));
	void *q = malloc(row_bytes(c->type, N_MAX));
	assert_true(x && y && q);
	double worst = 0.0;
	for (size_t li = 0; li < sizeof(row_lengths) / sizeof(row_lengths[0]); li++) {
		int n = row_lengths[li];
		for (int kind = 0; kind < ROW_KINDS; kind++) {
			fill_row(x, n, kind, rng);
			ops->from_float(x, q, n);
			ops->to_float(q, y, n);
			for (int i = 0; i < n; i++)
				assert_true(isfinite(y[i]));
			if (kind == ROW_AWKWARD) {
				/* The zero block stays exactly zero, the constant block
				 * within one fp16 rounding. */
				for (int i = 0; i < 256; i++)
					assert_true(y[i] == 0.0f);
				if (n >= 768)
					for (int i = 512; i < 768; i++)
						assert_true(fabsf(y[i] + 0.75f) <= 1e-3f);
				continue;
			}
			double e = rel_rms(x, y, n);
			if (e > c->rt)
				fail_msg("%s n=%d kind=%d: round-trip rel RMS %.3g > %.3g",
					pf_dtype_info(c->type)->name, n, kind, e, c->rt);
			worst = fmax(worst, e);
		}
	}
	print_message("%-5s round trip: worst rel RMS %.4f (bound %.4f)\n",
		pf_dtype_info(c->type)->name, worst, c->rt);
	free(x);
	free(y);
	free(q);
}

static void test_round_trip(void **state)
{
	(void)state;
	uint64_t rng = 0x1234;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		round_trip(&cases[i], &rng);
	for (size_t i = 0; i < sizeof(act_cases) / sizeof(act_cases[0]); i++)
		round_trip(&act_cases[i], &rng);
}

/* Copies of a row at an odd address, so kernels that assume alignment of
 * any field fail under UBSan (or fault). */
static void *misaligned_copy(const void *src, size_t n, void **base)
{
	*base = malloc(n + 1);
	assert_non_null(*base);
	memcpy((char *)*base + 1, src, n);
	return (char *)*base + 1;
}

static void dots(const struct type_case *c, uint64_t *rng)
{
	const struct pf_quant_ops *ops = ops_of(c->type);
	const struct pf_quant_ops *xops = ops_of(c->vec_dot_type);
	assert_int_equal(ops->vec_dot_type, c->vec_dot_type);
	assert_non_null(ops->vec_dot);
	assert_non_null(ops->vec_dot_ref);
	float *wf = malloc(N_MAX * sizeof(float)), *xf = malloc(N_MAX * sizeof(float));
	float *wd = malloc(N_MAX * sizeof(float)), *xd = malloc(N_MAX * sizeof(float));
	void *wq = malloc(row_bytes(c->type, N_MAX)), *xq = malloc(row_bytes(c->vec_dot_type, N_MAX));
	assert_true(wf && xf && wd && xd && wq && xq);
	double worst_fast = 0.0, worst_ref = 0.0;
	for (size_t li = 0; li < sizeof(row_lengths) / sizeof(row_lengths[0]); li++) {
		int n = row_lengths[li];
		for (int wk = 0; wk < ROW_KINDS; wk++) {
			int xk = (wk + (int)li) % ROW_KINDS;
			fill_row(wf, n, wk, rng);
			fill_row(xf, n, xk, rng);
			ops->from_float(wf, wq, n);
			xops->from_float(xf, xq, n);
			ops->to_float(wq, wd, n);
			xops->to_float(xq, xd, n);
			double exact = 0.0, mag = 0.0;
			for (int i = 0; i < n; i++) {
				exact += (double)wd[i] * xd[i];
				mag += fabs((double)wd[i] * xd[i]);
			}
			float fast, ref;
			ops->vec_dot(n, &fast, wq, xq);
			ops->vec_dot_ref(n, &ref, wq, xq);
			/* An all-zero product (n = 256 of the awkward row) must give 0. */
			double scale = mag > 0.0 ? mag : 1.0;
			double ef = fabs((double)fast - ref) / scale, er = fabs((double)ref - exact) / scale;
			if (!(ef <= c->fast) || !(er <= c->ref))
				fail_msg("%s n=%d w=%d x=%d: fast %.9g ref %.9g exact %.9g (|terms| %.3g)",
					pf_dtype_info(c->type)->name, n, wk, xk, fast, ref, exact, mag);
			worst_fast = fmax(worst_fast, ef);
			worst_ref = fmax(worst_ref, er);

			void *wb, *xb;
			void *wm = misaligned_copy(wq, row_bytes(c->type, n), &wb);
			void *xm = misaligned_copy(xq, row_bytes(c->vec_dot_type, n), &xb);
			float fast_m, ref_m;
			ops->vec_dot(n, &fast_m, wm, xm);
			ops->vec_dot_ref(n, &ref_m, wm, xm);
			assert_true(fast_m == fast && ref_m == ref);
			free(wb);
			free(xb);
		}
	}
	print_message("%-5s x %-5s dot: worst fast-ref %.2g (bound %.0e), ref-exact %.2g (bound %.0e)\n",
		pf_dtype_info(c->type)->name, pf_dtype_info(c->vec_dot_type)->name,
		worst_fast, c->fast, worst_ref, c->ref);
	free(wf);
	free(xf);
	free(wd);
	free(xd);
	free(wq);
	free(xq);
}

static void test_dots(void **state)
{
	(void)state;
	uint64_t rng = 0x5678;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		dots(&cases[i], &rng);
}

/* Kernels must not read past n elements, nor depend on n beyond the block
 * count: odd block counts and counts of 2 mod 4 exercise the unrolled
 * loops' tails. */
static void test_short_rows(void **state)
{
	(void)state;
	uint64_t rng = 0x9abc;
	float w[1536], x[1536];
	for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
		const struct type_case *c = &cases[ci];
		const struct pf_quant_ops *ops = ops_of(c->type), *xops = ops_of(c->vec_dot_type);
		int block = (int)pf_dtype_info(c->type)->block;
		int lens[] = { block, 3 * block, block == 1 ? 37 : 5 * block, 6 * block };
		for (int li = 0; li < 4; li++) {
			int n = lens[li];
			for (int i = 0; i < n; i++) {
				w[i] = gauss(&rng);
				x[i] = gauss(&rng);
			}
			size_t wb = row_bytes(c->type, n), xb = row_bytes(c->vec_dot_type, n);
			/* Exactly-sized heap buffers let ASan catch over-reads. */
			void *wq = malloc(wb), *xq = malloc(xb);
			assert_true(wq && xq);
			ops->from_float(w, wq, n);
			xops->from_float(x, xq, n);
			float fast, ref;
			ops->vec_dot(n, &fast, wq, xq);
			ops->vec_dot_ref(n, &ref, wq, xq);
			assert_true(fabsf(fast - ref) <= 1e-4f * (fabsf(ref) + 1.0f));
			free(wq);
			free(xq);
		}
	}
}

/* The SIMD quantizers of the activation formats decode converts to, and
 * F16's (an F16 KV cache's), give the reference's bytes, for rows of every
 * kind and with NaN, infinities, subnormals, values past fp16's range and
 * ties. */
static void test_act_quantizers(void **state)
{
	(void)state;
	static const float special[] = { NAN, INFINITY, -INFINITY, 1e-40f, -1e-45f, 0.0f, -0.0f, 3e38f,
					 65520.0f, -65519.0f, 126.5f, -126.5f, 0.5f, -0.5f, 2.5f };
	static const struct {
		enum pf_dtype type;
		pf_from_float_fn ref;
	} cases[] = { { PF_Q8_S, pf_q8_s_from_float }, { PF_Q8_0, pf_q8_0_from_float },
		      { PF_F16, pf_f16_from_float } };
	uint64_t rng = 0x9753;
	float *x = malloc(N_MAX * sizeof(float));
	uint8_t *q = malloc(row_bytes(PF_F16, N_MAX)), *qref = malloc(row_bytes(PF_F16, N_MAX));
	assert_true(x && q && qref);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		pf_from_float_fn fast = ops_of(cases[c].type)->from_float;
		for (int t = 0; t < 300; t++) {
			int n = t < 200 ? 96 : 4096;
			if (t < 200)
				for (int j = 0; j < n; j++)
					x[j] = test_rand(&rng) % 3 ? gauss(&rng) * (t % 7 ? 1.0f : 1e-38f)
								    : special[test_rand(&rng) % (sizeof(special) / sizeof(special[0]))];
			else
				fill_row(x, n, t % ROW_KINDS, &rng);
			fast(x, q, n);
			cases[c].ref(x, qref, n);
			if (memcmp(q, qref, row_bytes(cases[c].type, n)))
				fail_msg("%s from_float: row %d differs from the reference",
					 pf_dtype_info(cases[c].type)->name, t);
		}
	}
	free(x);
	free(q);
	free(qref);
}

/* Q8_S's layout (quant_internal.h), checked against its values: each block
 * is four 16-byte chunks (d four times, s, q[0..16), q[16..32)), a pair of
 * blocks interleaves its chunks, an odd last block stands alone. d is the
 * float scale to_float multiplies by, q the rounded x / d, and s[l] is 8
 * times the sum of q[4l..4l+4) and q[16+4l..16+4l+4). */
static void test_q8_s_layout(void **state)
{
	(void)state;
	uint64_t rng = 0x7531;
	static const int lens[] = { 32, 64, 96, 160, 4096 };
	float *x = malloc(N_MAX * sizeof(float)), *y = malloc(N_MAX * sizeof(float));
	uint8_t *q = malloc(row_bytes(PF_Q8_S, N_MAX));
	assert_true(x && y && q);
	const struct pf_quant_ops *ops = ops_of(PF_Q8_S);
	assert_int_equal(pf_dtype_info(PF_Q8_S)->size, 64);
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		int n = lens[li], nb = n / 32;
		for (int kind = 0; kind < ROW_KINDS; kind++) {
			fill_row(x, n, kind, &rng);
			ops->from_float(x, q, n);
			ops->to_float(q, y, n);
			for (int b = 0; b < nb; b++) {
				size_t base = (size_t)b / 2 * 128;
				size_t step = (b | 1) < nb ? 32 : 16, off = (b | 1) < nb ? 16 * (size_t)(b & 1) : 0;
				float d[4];
				int32_t sum[4];
				int8_t lv[32];
				memcpy(d, q + base + off, sizeof(d));
				memcpy(sum, q + base + off + step, sizeof(sum));
				memcpy(lv, q + base + off + 2 * step, 16);
				memcpy(lv + 16, q + base + off + 3 * step, 16);
				float amax = 0.0f;
				for (int j = 0; j < 32; j++)
					amax = fmaxf(amax, fabsf(x[32 * b + j]));
				for (int l = 0; l < 4; l++) {
					assert_true(d[l] == d[0]);
					int32_t want = 0;
					for (int j = 4 * l; j < 4 * l + 4; j++)
						want += 8 * (lv[j] + lv[j + 16]);
					assert_int_equal(sum[l], want);
				}
				assert_true(d[0] == amax / 127.0f);
				for (int j = 0; j < 32; j++) {
					assert_true(lv[j] >= -127 && lv[j] <= 127);
					assert_true(y[32 * b + j] == d[0] * lv[j]);
					if (d[0] > 0.0f)
						assert_true(fabsf(x[32 * b + j] / d[0] - lv[j]) <= 0.5f + 1e-3f);
				}
			}
		}
	}
	/* An internal format: known to the engine, refused in files. */
	assert_true(pf_dtype_info(PF_Q8_S)->internal);
	for (int t = 0; t < PF_Q8_S; t++)
		assert_true(!pf_dtype_info((uint32_t)t) || !pf_dtype_info((uint32_t)t)->internal);
	free(x);
	free(y);
	free(q);
}

/* Floats equal bit for bit; NaN == NaN too where nan_ok, for F16, whose
 * SIMD conversions quiet a signaling NaN that the reference keeps. */
static int same_float(float a, float b, int nan_ok)
{
	uint32_t ua, ub;
	memcpy(&ua, &a, sizeof(ua));
	memcpy(&ub, &b, sizeof(ub));
	return ua == ub || (nan_ok && isnan(a) && isnan(b));
}

/* vec_dot_rows must give what k separate vec_dot calls give, bit for bit:
 * block counts of every residue mod 4, every group size, rows at odd
 * addresses and each its own, and the floats past the k results left
 * alone. The scalar table's Q4_0 kernel (the reference per row) is checked
 * the same way. */
static void check_dot_rows(enum pf_dtype type, pf_vec_dot_rows_fn rows_fn, pf_vec_dot_fn dot, uint64_t *rng)
{
	const struct pf_quant_ops *ops = ops_of(type), *xops = ops_of(ops->vec_dot_type);
	int block = (int)pf_dtype_info(type)->block;
	int nbs[] = { 1, 2, 3, 4, 5, 6, 7, 9, 4096 / block + 1 };
	for (size_t ni = 0; ni < sizeof(nbs) / sizeof(nbs[0]); ni++) {
		int n = nbs[ni] * block;
		size_t wb = row_bytes(type, n);
		float *f = malloc((size_t)(n > 256 ? n : 256) * sizeof(float));
		uint8_t *xq = malloc(row_bytes(ops->vec_dot_type, n)), *wq[PF_DOT_ROWS_MAX];
		assert_true(f && xq);
		fill_row(f, n, (int)ni % ROW_KINDS, rng);
		xops->from_float(f, xq, n);
		const uint8_t *w[PF_DOT_ROWS_MAX];
		for (int r = 0; r < PF_DOT_ROWS_MAX; r++) {
			for (int i = 0; i < n; i++)
				f[i] = gauss(rng);
			assert_non_null(wq[r] = malloc(wb + 1 + (size_t)r));
			ops->from_float(f, wq[r] + 1 + r, n);
			w[r] = wq[r] + 1 + r;
		}
		for (int k = 1; k <= PF_DOT_ROWS_MAX; k++) {
			float out[PF_DOT_ROWS_MAX + 1];
			for (int r = 0; r <= PF_DOT_ROWS_MAX; r++)
				out[r] = -1234.5f;
			rows_fn(n, k, out, w, xq);
			for (int r = 0; r < k; r++) {
				float want;
				dot(n, &want, w[r], xq);
				if (!same_float(out[r], want, 0))
					fail_msg("%s n=%d k=%d row %d: rows %a, vec_dot %a", pf_dtype_info(type)->name, n,
						 k, r, out[r], want);
			}
			for (int r = k; r <= PF_DOT_ROWS_MAX; r++)
				assert_true(out[r] == -1234.5f);
		}
		for (int r = 0; r < PF_DOT_ROWS_MAX; r++)
			free(wq[r]);
		free(f);
		free(xq);
	}
}

static void test_dot_rows(void **state)
{
	(void)state;
	uint64_t rng = 0x8642;
	assert_non_null(ops_of(PF_Q4_0)->vec_dot_rows);
	check_dot_rows(PF_Q4_0, pf_q4_0_dot_rows_ref, pf_q4_0_dot_ref, &rng);
	for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
		const struct pf_quant_ops *ops = ops_of(cases[ci].type);
		if (ops->vec_dot_rows) {
			check_dot_rows(cases[ci].type, ops->vec_dot_rows, ops->vec_dot, &rng);
			print_message("%-5s multi-row dot: equal to vec_dot\n", pf_dtype_info(cases[ci].type)->name);
		}
	}
}

/* vec_dot_multi must give what n_x separate vec_dot calls give, bit for
 * bit: block counts of every residue mod 4 (the kernels' pair loops and odd
 * tails), every group width, a weight row at an odd address, activation
 * rows at an odd stride (so all but one are misaligned) and results at a
 * stride, with the floats between them left alone. Q4_0, Q4_K and Q6_K
 * have multi kernels on every ISA; any other type that gains one is checked
 * too. */
static void test_dot_multi(void **state)
{
	(void)state;
	uint64_t rng = 0x2468;
	assert_non_null(ops_of(PF_Q4_0)->vec_dot_multi);
	assert_non_null(ops_of(PF_Q4_K)->vec_dot_multi);
	assert_non_null(ops_of(PF_Q6_K)->vec_dot_multi);
	for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
		const struct type_case *c = &cases[ci];
		const struct pf_quant_ops *ops = ops_of(c->type), *xops = ops_of(c->vec_dot_type);
		if (!ops->vec_dot_multi)
			continue;
		int block = (int)pf_dtype_info(c->type)->block;
		int nbs[] = { 1, 2, 3, 4, 5, 6, 7, 9, 4096 / block + 1 };
		for (size_t ni = 0; ni < sizeof(nbs) / sizeof(nbs[0]); ni++) {
			int n = nbs[ni] * block;
			size_t wb = row_bytes(c->type, n), xb = row_bytes(c->vec_dot_type, n);
			size_t xs = xb + 13, ss = 3;
			/* fill_row writes its first 256 elements whatever n is. */
			float *f = malloc((size_t)(n > 256 ? n : 256) * sizeof(float));
			uint8_t *wq = malloc(wb + 1), *xq = malloc(xs * PF_DOT_MULTI_MAX + 1);
			float *out = malloc(ss * PF_DOT_MULTI_MAX * sizeof(float));
			assert_true(f && wq && xq && out);
			for (int i = 0; i < n; i++)
				f[i] = gauss(&rng);
			ops->from_float(f, wq + 1, n);
			memset(xq, 0x5a, xs * PF_DOT_MULTI_MAX + 1);
			for (int t = 0; t < PF_DOT_MULTI_MAX; t++) {
				fill_row(f, n, (t + (int)ni) % ROW_KINDS, &rng);
				xops->from_float(f, xq + 1 + (size_t)t * xs, n);
			}
			for (int nx = 1; nx <= PF_DOT_MULTI_MAX; nx++) {
				for (size_t i = 0; i < ss * PF_DOT_MULTI_MAX; i++)
					out[i] = -1234.5f;
				ops->vec_dot_multi(n, out, ss, wq + 1, xq + 1, xs, nx);
				for (int t = 0; t < PF_DOT_MULTI_MAX; t++) {
					float want = -1234.5f;
					if (t < nx)
						ops->vec_dot(n, &want, wq + 1, xq + 1 + (size_t)t * xs);
					if (!same_float(out[(size_t)t * ss], want, 0))
						fail_msg("%s n=%d n_x=%d token %d: multi %a, vec_dot %a",
							pf_dtype_info(c->type)->name, n, nx, t, out[(size_t)t * ss], want);
					for (size_t k = 1; k < ss; k++)
						assert_true(out[(size_t)t * ss + k] == -1234.5f);
				}
			}
			free(f);
			free(wq);
			free(xq);
			free(out);
		}
		print_message("%-5s multi-token dot: equal to vec_dot\n", pf_dtype_info(c->type)->name);
	}
}

/* Runs both dequantizers on q, the fast one from an odd source address into
 * a destination one float past malloc's alignment. Buffers are exactly
 * sized, so ASan catches a kernel reading or writing past the row. */
static void check_fast_row(const struct pf_quant_ops *ops, const void *q, int n, const char *what)
{
	size_t nb = row_bytes(ops->type, n);
	void *base;
	const void *src = misaligned_copy(q, nb, &base);
	float *ref = malloc((size_t)n * sizeof(float)), *out = malloc((size_t)(n + 1) * sizeof(float));
	assert_true(ref && out);
	out[0] = 12345.0f;
	ops->to_float(src, ref, n);
	ops->to_float_fast(src, out + 1, n);
	assert_true(out[0] == 12345.0f);
	for (int i = 0; i < n; i++)
		if (!same_float(ref[i], out[i + 1], ops->type == PF_F16))
			fail_msg("%s %s n=%d: element %d: fast %a, reference %a",
				pf_dtype_info(ops->type)->name, what, n, i, out[i + 1], ref[i]);
	free(base);
	free(ref);
	free(out);
}

/* Rows from from_float (every row kind) and rows of random bytes, which give
 * scales that are subnormal, inf or NaN. Lengths cover one block, odd block
 * counts, and for the float formats tails shorter than a vector. */
static void fast_dequant(enum pf_dtype t, uint64_t *rng)
{
	const struct pf_quant_ops *ops = ops_of(t);
	assert_non_null(ops->to_float_fast);
	int block = (int)pf_dtype_info(t)->block;
	int lens[] = { block, 3 * block, block == 1 ? 37 : 5 * block, N_MAX };
	float *x = malloc(N_MAX * sizeof(float));
	uint8_t *q = malloc(row_bytes(t, N_MAX));
	assert_true(x && q);
	for (int li = 0; li < 4; li++) {
		int n = lens[li];
		for (int kind = 0; kind < ROW_KINDS; kind++) {
			fill_row(x, n, kind, rng);
			ops->from_float(x, q, n);
			check_fast_row(ops, q, n, "quantized row");
		}
		for (size_t i = 0; i < row_bytes(t, n); i++)
			q[i] = (uint8_t)test_rand(rng);
		check_fast_row(ops, q, n, "random bytes");
	}
	free(x);
	free(q);
}

static void test_to_float_fast(void **state)
{
	(void)state;
	uint64_t rng = 0xdef0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		fast_dequant(cases[i].type, &rng);
	for (size_t i = 0; i < sizeof(act_cases) / sizeof(act_cases[0]); i++)
		fast_dequant(act_cases[i].type, &rng);
	/* Every half and bfloat16 bit pattern. */
	uint16_t *h = malloc(0x10000 * sizeof(uint16_t));
	assert_non_null(h);
	for (uint32_t i = 0; i < 0x10000; i++)
		h[i] = (uint16_t)i;
	check_fast_row(ops_of(PF_F16), h, 0x10000, "all halves");
	check_fast_row(ops_of(PF_BF16), h, 0x10000, "all bfloat16s");
	free(h);
}

/* axpy: y += a * w for one weight row.
 *
 * axpy_ref must give to_float followed by y[i] + a * v[i], and axpy what
 * axpy_ref gives, each within AXPY_TOL of the element's scale
 * |y[i]| + |a| * M, M the largest |v| in the element's block: the kernels
 * scale by a * d and add an offset (a * m, a * dmin * m) on its own, so
 * their error is a few ulps of those terms, which stay within a small
 * multiple of M (an offset is about the block's minimum). The exact value
 * is formed in double. */
#define AXPY_TOL 1e-6
#define AXPY_GUARD 3
#define AXPY_N_MAX 11008

static const float axpy_a[] = { 0.0f, 1.0f, -1.0f, 0.3183099f, -2.75f, 1.5e4f, -3e-5f };

struct axpy_stats {
	double worst_ref, worst_fast;
	long checked, skipped;
};

/* Compares out[0..n) with the exact y0 + a * v; returns the worst error
 * over scale. Elements whose scale is not finite (random bytes may give
 * inf or NaN levels, or overflow) are only counted. */
static double axpy_check(const char *what, enum pf_dtype t, int n, int kind, float a, const float *y0,
	const float *v, const float *out, const float *other, struct axpy_stats *st)
{
	int block = (int)pf_dtype_info(t)->block;
	double worst = 0.0;
	for (int b0 = 0; b0 < n; b0 += block) {
		double m = 0.0;
		for (int i = b0; i < b0 + block; i++)
			m = fmax(m, fabs((double)v[i]));
		if (isnan(m))
			m = INFINITY;
		for (int i = b0; i < b0 + block; i++) {
			double exact = (double)y0[i] + (double)a * v[i];
			double scale = fabs((double)y0[i]) + fabs((double)a) * m;
			double want = other ? other[i] : exact;
			if (!(scale <= 1e30) || !isfinite(want)) {
				st->skipped++;
				continue;
			}
			st->checked++;
			double e = fabs((double)out[i] - want);
			if (!(e <= AXPY_TOL * scale))
				fail_msg("%s %s n=%d kind=%d a=%g: element %d: got %.9g, want %.9g "
					"(y %.9g, v %.9g, block max %.3g): error %.3g of scale %.3g",
					pf_dtype_info(t)->name, what, n, kind, (double)a, i, (double)out[i], want,
					(double)y0[i], (double)v[i], m, e, scale);
			if (scale > 0.0)
				worst = fmax(worst, e / scale);
		}
	}
	return worst;
}

/* Runs kernel on a copy of y0 between guard floats, at an address 12 bytes
 * past malloc's alignment; the guards must stay as they were. */
static void axpy_run(pf_axpy_fn kernel, int n, float a, const void *w, const float *y0, float *buf)
{
	for (int i = 0; i < AXPY_GUARD; i++)
		buf[i] = buf[AXPY_GUARD + n + i] = -777.25f;
	memcpy(buf + AXPY_GUARD, y0, (size_t)n * sizeof(float));
	kernel(n, a, w, buf + AXPY_GUARD);
	for (int i = 0; i < AXPY_GUARD; i++)
		assert_true(buf[i] == -777.25f && buf[AXPY_GUARD + n + i] == -777.25f);
}

/* Row kinds: fill_row's four, then random bytes (ROW_KINDS). */
static void axpy_type(const struct type_case *c, uint64_t *rng)
{
	const struct pf_quant_ops *ops = ops_of(c->type);
	assert_non_null(ops->axpy);
	assert_non_null(ops->axpy_ref);
	int block = (int)pf_dtype_info(c->type)->block;
	int lens[] = { 0, block, 3 * block, block == 1 ? 37 : 5 * block, block == 1 ? 1000 : 6 * block,
		4096, AXPY_N_MAX };
	float *x = malloc(AXPY_N_MAX * sizeof(float)), *v = malloc(AXPY_N_MAX * sizeof(float));
	float *y0 = malloc(AXPY_N_MAX * sizeof(float));
	float *ref = malloc((AXPY_N_MAX + 2 * AXPY_GUARD) * sizeof(float));
	float *fast = malloc((AXPY_N_MAX + 2 * AXPY_GUARD) * sizeof(float));
	uint8_t *q = malloc(row_bytes(c->type, AXPY_N_MAX));
	assert_true(x && v && y0 && ref && fast && q);
	struct axpy_stats st = { 0 };
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		int n = lens[li];
		assert_true(n % block == 0);
		for (int kind = 0; kind <= ROW_KINDS; kind++) {
			if (kind < ROW_KINDS) {
				fill_row(x, n, kind, rng);
				ops->from_float(x, q, n);
			} else {
				for (size_t i = 0; i < row_bytes(c->type, n); i++)
					q[i] = (uint8_t)test_rand(rng);
			}
			void *base;
			const void *w = misaligned_copy(q, row_bytes(c->type, n), &base);
			ops->to_float(w, v, n);
			for (size_t ai = 0; ai < sizeof(axpy_a) / sizeof(axpy_a[0]); ai++) {
				float a = axpy_a[ai];
				for (int i = 0; i < n; i++)
					y0[i] = 2.0f * gauss(rng);
				axpy_run(ops->axpy_ref, n, a, w, y0, ref);
				axpy_run(ops->axpy, n, a, w, y0, fast);
				st.worst_ref = fmax(st.worst_ref, axpy_check("axpy_ref", c->type, n, kind, a, y0, v,
					ref + AXPY_GUARD, NULL, &st));
				st.worst_fast = fmax(st.worst_fast, axpy_check("axpy", c->type, n, kind, a, y0, v,
					fast + AXPY_GUARD, ref + AXPY_GUARD, &st));
			}
			free(base);
		}
	}
	/* Nearly all elements are checked: only random bytes skip any. */
	assert_true(st.skipped * 20 < st.checked);
	print_message("%-5s axpy: worst ref-exact %.2g, fast-ref %.2g of |y| + |a| * block max (bound %.0e)"
		", %ld checked\n", pf_dtype_info(c->type)->name, st.worst_ref, st.worst_fast, AXPY_TOL, st.checked);
	free(x);
	free(v);
	free(y0);
	free(ref);
	free(fast);
	free(q);
}

static void test_axpy(void **state)
{
	(void)state;
	uint64_t rng = 0x1357;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		axpy_type(&cases[i], &rng);
}

/* axpy_multi: k rows in one pass give y0 + sum of a[r] * v[r] (formed in
 * double) within (k + 1) * AXPY_TOL of the element's scale |y0[i]| + the
 * sum of |a[r]| * M[r] (M[r] row r's block max), as k axpy calls do: each
 * of the k + 1 roundings (one per row, and the AVX2 Q4_0 kernel's offsets
 * added once per block) is a few ulps of a partial sum within twice that
 * scale. For every k, row lengths including none, misaligned rows and y. */
static void axpy_multi_type(const struct pf_quant_ops *ops, uint64_t *rng)
{
	int block = (int)pf_dtype_info(ops->type)->block;
	int lens[] = { 0, block, 5 * block, 4096 };
	float *x = malloc(4096 * sizeof(float)), *y0 = malloc(4096 * sizeof(float));
	float *v = malloc(PF_AXPY_MULTI_MAX * 4096 * sizeof(float));
	float *one = malloc((4096 + 2 * AXPY_GUARD) * sizeof(float));
	float *multi = malloc((4096 + 2 * AXPY_GUARD + 1) * sizeof(float));
	void *base[PF_AXPY_MULTI_MAX];
	const uint8_t *w[PF_AXPY_MULTI_MAX];
	assert_true(x && y0 && v && one && multi);
	double worst = 0.0;
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		int n = lens[li];
		for (int k = 1; k <= PF_AXPY_MULTI_MAX; k++) {
			float a[PF_AXPY_MULTI_MAX];
			for (int r = 0; r < k; r++) {
				fill_row(x, n, r % ROW_KINDS, rng);
				uint8_t *q = malloc(row_bytes(ops->type, n) + 1);
				assert_non_null(q);
				ops->from_float(x, q, n);
				w[r] = misaligned_copy(q, row_bytes(ops->type, n), &base[r]);
				ops->to_float(w[r], v + (size_t)r * 4096, n);
				free(q);
				a[r] = axpy_a[(size_t)(r + k) % (sizeof(axpy_a) / sizeof(axpy_a[0]))];
			}
			for (int i = 0; i < n; i++)
				y0[i] = 2.0f * gauss(rng);
			axpy_run(ops->axpy, n, a[0], w[0], y0, one);
			for (int r = 1; r < k; r++)
				ops->axpy(n, a[r], w[r], one + AXPY_GUARD);
			float *y = multi + 1;  /* not 32-byte aligned */
			for (int i = 0; i < AXPY_GUARD; i++)
				y[i] = y[AXPY_GUARD + n + i] = -777.25f;
			memcpy(y + AXPY_GUARD, y0, (size_t)n * sizeof(float));
			ops->axpy_multi(n, k, a, w, y + AXPY_GUARD);
			for (int i = 0; i < AXPY_GUARD; i++)
				assert_true(y[i] == -777.25f && y[AXPY_GUARD + n + i] == -777.25f);
			for (int b0 = 0; b0 < n; b0 += block) {
				double scale0 = 0.0;
				for (int r = 0; r < k; r++) {
					double m = 0.0;
					for (int i = b0; i < b0 + block; i++)
						m = fmax(m, fabs((double)v[(size_t)r * 4096 + i]));
					scale0 += fabs((double)a[r]) * m;
				}
				for (int i = b0; i < b0 + block; i++) {
					double exact = y0[i], scale = scale0 + fabs((double)y0[i]);
					for (int r = 0; r < k; r++)
						exact += (double)a[r] * v[(size_t)r * 4096 + i];
					double e = fabs((double)y[AXPY_GUARD + i] - exact);
					double e_one = fabs((double)one[AXPY_GUARD + i] - exact);
					if (!(e <= (k + 1) * AXPY_TOL * scale) || !(e_one <= (k + 1) * AXPY_TOL * scale))
						fail_msg("%s axpy_multi: n %d, k %d, element %d: got %.9g, %d axpy calls "
							 "%.9g, want %.9g (scale %.3g)", pf_dtype_info(ops->type)->name,
							 n, k, i, (double)y[AXPY_GUARD + i], k, (double)one[AXPY_GUARD + i],
							 exact, scale);
					if (scale > 0.0)
						worst = fmax(worst, e / scale);
				}
			}
			for (int r = 0; r < k; r++)
				free(base[r]);
		}
	}
	print_message("%-5s axpy_multi: worst %.2g of the scale (bound %.0e per row)\n",
		      pf_dtype_info(ops->type)->name, worst, AXPY_TOL);
	free(x);
	free(y0);
	free(v);
	free(one);
	free(multi);
}

static void test_axpy_multi(void **state)
{
	(void)state;
	uint64_t rng = 0x2468;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pf_quant_ops *ops = ops_of(cases[i].type);
		bool has = cases[i].type == PF_Q4_0 || cases[i].type == PF_Q8_0;
		assert_int_equal(ops->axpy_multi != NULL, has);
		if (has)
			axpy_multi_type(ops, &rng);
	}
}

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pf_quant_ops *ops = ops_of(cases[i].type);
		assert_int_equal(ops->vec_dot_type, cases[i].vec_dot_type);
		assert_non_null(ops->to_float);
		/* Activations come in the weight type's blocks, so any row length
		 * valid for the weights is valid for x. */
		assert_int_equal(pf_dtype_info(ops->type)->block, pf_dtype_info(ops->vec_dot_type)->block);
		assert_non_null(ops->axpy);
		assert_non_null(ops->axpy_ref);
	}
	for (size_t i = 0; i < sizeof(act_cases) / sizeof(act_cases[0]); i++) {
		const struct pf_quant_ops *ops = ops_of(act_cases[i].type);
		assert_non_null(ops->from_float);
		assert_null(ops->vec_dot);
		assert_null(ops->axpy);
		assert_null(ops->axpy_ref);
	}
	assert_null(pf_quant_ops(PF_Q2_K));
	assert_null(pf_quant_ops(PF_Q3_K));
	assert_null(pf_quant_ops(PF_I32));
	assert_null(pf_quant_ops((enum pf_dtype)4));
	assert_null(pf_quant_ops((enum pf_dtype)PF_DTYPE_COUNT));
	const char *isa = pf_quant_isa();
#if defined(__aarch64__)
	assert_string_equal(isa, "neon");
#elif defined(__x86_64__)
	unsigned a, b, c, d;
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
		__get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C))
		assert_string_equal(isa, "avx2");
	else
		assert_string_equal(isa, "scalar");
#endif
	print_message("kernels: %s\n", isa);
}

static float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return u;
}

static void test_fp16(void **state)
{
	(void)state;
	assert_int_equal(pf_fp32_to_fp16(0.0f), 0x0000);
	assert_int_equal(pf_fp32_to_fp16(-0.0f), 0x8000);
	assert_true(signbit(pf_fp16_to_fp32(0x8000)) && pf_fp16_to_fp32(0x8000) == 0.0f);
	assert_int_equal(pf_fp32_to_fp16(1.0f), 0x3c00);
	assert_int_equal(pf_fp32_to_fp16(-2.0f), 0xc000);
	assert_int_equal(pf_fp32_to_fp16(65504.0f), 0x7bff);
	assert_true(pf_fp16_to_fp32(0x7bff) == 65504.0f);
	/* Past the largest half: 65519 is nearer 65504, 65520 is the tie and
	 * goes to the even neighbour, which is inf. */
	assert_int_equal(pf_fp32_to_fp16(65519.0f), 0x7bff);
	assert_int_equal(pf_fp32_to_fp16(65520.0f), 0x7c00);
	assert_int_equal(pf_fp32_to_fp16(1e10f), 0x7c00);
	assert_int_equal(pf_fp32_to_fp16(INFINITY), 0x7c00);
	assert_int_equal(pf_fp32_to_fp16(-INFINITY), 0xfc00);
	assert_true(isinf(pf_fp16_to_fp32(0x7c00)) && pf_fp16_to_fp32(0xfc00) < 0.0f);
	uint16_t nan = pf_fp32_to_fp16(NAN);
	assert_true((nan & 0x7c00) == 0x7c00 && (nan & 0x3ff) != 0);
	/* A NaN whose payload sits only in the dropped bits must not become inf. */
	nan = pf_fp32_to_fp16(bits_f32(0x7f800001));
	assert_true((nan & 0x7c00) == 0x7c00 && (nan & 0x3ff) != 0);
	assert_true(isnan(pf_fp16_to_fp32(0x7e00)) && isnan(pf_fp16_to_fp32(0xfc01)));
	/* Subnormals: 2^-24 is the smallest; 2^-25 is the tie with zero. */
	assert_int_equal(pf_fp32_to_fp16(0x1p-24f), 0x0001);
	assert_true(pf_fp16_to_fp32(0x0001) == 0x1p-24f);
	assert_int_equal(pf_fp32_to_fp16(0x1p-25f), 0x0000);
	assert_int_equal(pf_fp32_to_fp16(-0x1p-25f), 0x8000);
	assert_int_equal(pf_fp32_to_fp16(0x1.000002p-25f), 0x0001);
	assert_int_equal(pf_fp32_to_fp16(0x3p-25f), 0x0002);
	assert_int_equal(pf_fp32_to_fp16(0x1p-30f), 0x0000);
	assert_true(pf_fp16_to_fp32(0x03ff) == 1023 * 0x1p-24f);
	assert_int_equal(pf_fp32_to_fp16(0x1p-14f), 0x0400);
	assert_int_equal(pf_fp32_to_fp16(0x1.ffep-15f), 0x0400); /* rounds up into the normals */
	/* Ties between normals go to the even mantissa. */
	assert_int_equal(pf_fp32_to_fp16(1.0f + 0x1p-11f), 0x3c00);
	assert_int_equal(pf_fp32_to_fp16(1.0f + 0x3p-11f), 0x3c02);
	assert_int_equal(pf_fp32_to_fp16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
	/* Every finite half survives the round trip, and the midpoint between
	 * two neighbours goes to the even one, anything off it to the nearer.
	 * Bit patterns order by magnitude for either sign, so h + 1 is always
	 * the neighbour further from zero. */
	for (uint32_t h = 0; h < 0x10000; h++) {
		if ((h & 0x7c00) == 0x7c00) {
			assert_true((h & 0x3ff) ? isnan(pf_fp16_to_fp32((uint16_t)h)) : isinf(pf_fp16_to_fp32((uint16_t)h)));
			continue;
		}
		float f = pf_fp16_to_fp32((uint16_t)h);
		assert_int_equal(pf_fp32_to_fp16(f), h);
		if ((h & 0x7fff) == 0x7bff)
			continue;
		float g = pf_fp16_to_fp32((uint16_t)(h + 1));
		float mid = 0.5f * (f + g);
		uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
		assert_int_equal(pf_fp32_to_fp16(mid), even);
		assert_int_equal(pf_fp32_to_fp16(bits_f32(f32_bits(mid) - 1)), h);
		assert_int_equal(pf_fp32_to_fp16(bits_f32(f32_bits(mid) + 1)), h + 1);
	}
}

static void test_bf16(void **state)
{
	(void)state;
	assert_int_equal(pf_fp32_to_bf16(0.0f), 0x0000);
	assert_int_equal(pf_fp32_to_bf16(-0.0f), 0x8000);
	assert_int_equal(pf_fp32_to_bf16(1.0f), 0x3f80);
	assert_true(pf_bf16_to_fp32(0x3f80) == 1.0f);
	assert_int_equal(pf_fp32_to_bf16(INFINITY), 0x7f80);
	assert_int_equal(pf_fp32_to_bf16(-INFINITY), 0xff80);
	/* The largest float rounds up past the largest bf16 to inf. */
	assert_int_equal(pf_fp32_to_bf16(bits_f32(0x7f7fffff)), 0x7f80);
	assert_int_equal(pf_fp32_to_bf16(bits_f32(0x7f7f7fff)), 0x7f7f);
	/* NaN stays NaN even when its payload sits in the dropped bits. */
	uint16_t nan = pf_fp32_to_bf16(bits_f32(0x7f800001));
	assert_true((nan & 0x7f80) == 0x7f80 && (nan & 0x7f) != 0);
	assert_true(isnan(pf_bf16_to_fp32(pf_fp32_to_bf16(NAN))));
	/* Ties to even, subnormals included. */
	assert_int_equal(pf_fp32_to_bf16(bits_f32(0x3f808000)), 0x3f80);
	assert_int_equal(pf_fp32_to_bf16(bits_f32(0x3f818000)), 0x3f82);
	assert_int_equal(pf_fp32_to_bf16(bits_f32(0x3f808001)), 0x3f81);
	assert_int_equal(pf_fp32_to_bf16(bits_f32(0x00008000)), 0x0000);
	assert_int_equal(pf_fp32_to_bf16(bits_f32(0x00018000)), 0x0002);
	assert_int_equal(pf_fp32_to_bf16(bits_f32(0x00007fff)), 0x0000);
	assert_true(pf_bf16_to_fp32(0x0001) == bits_f32(0x00010000));
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = pf_bf16_to_fp32((uint16_t)h);
		if (isnan(f))
			assert_true(isnan(pf_bf16_to_fp32(pf_fp32_to_bf16(f))));
		else
			assert_int_equal(pf_fp32_to_bf16(f), h);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_fp16),
		cmocka_unit_test(test_bf16),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_act_quantizers),
		cmocka_unit_test(test_q8_s_layout),
		cmocka_unit_test(test_dots),
		cmocka_unit_test(test_short_rows),
		cmocka_unit_test(test_dot_multi),
		cmocka_unit_test(test_dot_rows),
		cmocka_unit_test(test_to_float_fast),
		cmocka_unit_test(test_axpy),
		cmocka_unit_test(test_axpy_multi),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
