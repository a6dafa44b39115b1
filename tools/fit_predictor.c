/* Training one layer's low-rank activation predictor (fit_predictor.h,
 * docs/sparsity.md "Fitting predictors").
 *
 * 1. Initialization: scores that approximate the gate z = M x (M the gate
 *    matrix, or gate + up for dReLU). The bias unit relu(b . x), b . x
 *    about 1 for every token (bias_feature: the format has no biases),
 *    carries the part along the mean m of x, with the output M m. The
 *    rest, P x with P = I - m b^T, goes to k pairs of units: rows A, -A
 *    of W1 and columns Q, -Q of W2 with A = Q^T M P, Q the top k
 *    eigenvectors of M (P C P^T) M^T (C = X^T X / n, subspace iteration
 *    from a seeded start); relu(a) - relu(-a) = a, so the pairs give
 *    Q Q^T M P x, the best rank-k approximation of the rest.
 * 2. Calibration: one scale and offset of the logits s - LOGIT_OFFSET,
 *    fitted by weighted logistic regression (calibrate_logits).
 * 3. Training: weighted binary cross-entropy of the logits against the
 *    active labels (an active neuron weighs pos_weight on average, more
 *    when it moves the output more: loss_weights), Adam, shuffled
 *    minibatches, a linearly decaying step.
 * 4. Threshold: on rows kept out of training, the highest score that
 *    keeps the recall asked and misses at most the output asked, for the
 *    text's rows and the generated ones each; W2 is divided by it, so that
 *    the layer's threshold becomes FIT_THRESHOLD, one value for the file. */
#include "fit_predictor.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* Training's logit is the score minus LOGIT_OFFSET, through the bias unit.
 * The threshold a high recall needs lies at a negative logit (-1.5 for
 * the last 0.1% of a trained layer's active neurons on the test model),
 * and scaling W2 brings a threshold to the file's only while it is above
 * 0; with an offset of 1 those thresholds were clamped. But b . x is not
 * quite constant (2.4% standard deviation there), so the offset also adds
 * noise: 16 cost a point of recall on generated text, 4 nothing
 * measurable. */
#define LOGIT_OFFSET 4.0f

static float next_normal(uint64_t *state)
{
	double u = rng_unit(state), v = rng_unit(state);
	return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* C (m x n) = op(A) op(B) with alpha, beta; row-major. */
static void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
		 const float *b, int ldb, float beta, float *c, int ldc)
{
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k,
		    alpha, a, lda, b, ldb, beta, c, ldc);
}

void fit_scores(int n, int d, int n_ff, int rank, const float *x, const float *w1, const float *w2,
		float *h, float *s)
{
	gemm(false, true, n, rank, d, 1.0f, x, d, w1, d, 0.0f, h, rank);
	for (size_t i = 0; i < (size_t)n * (size_t)rank; i++)
		h[i] = h[i] > 0.0f ? h[i] : 0.0f;
	gemm(false, true, n, n_ff, rank, 1.0f, h, rank, w2, rank, 0.0f, s, n_ff);
}

/* Orthonormal columns of q (rows x k, row-major): modified Gram-Schmidt,
 * twice for stability; a column that vanishes is replaced at random. */
static void orthonormalize(float *q, int rows, int k, uint64_t *rng)
{
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < k; i++) {
			for (int j = 0; j < i; j++) {
				double dot = 0.0;
				for (int r = 0; r < rows; r++)
					dot += (double)q[(size_t)r * k + i] * q[(size_t)r * k + j];
				for (int r = 0; r < rows; r++)
					q[(size_t)r * k + i] -= (float)dot * q[(size_t)r * k + j];
			}
			double nn = 0.0;
			for (int r = 0; r < rows; r++)
				nn += (double)q[(size_t)r * k + i] * q[(size_t)r * k + i];
			if (nn < 1e-20) {
				for (int r = 0; r < rows; r++)
					q[(size_t)r * k + i] = next_normal(rng);
				i--;  /* again, against the earlier columns */
				continue;
			}
			float inv = (float)(1.0 / sqrt(nn));
			for (int r = 0; r < rows; r++)
				q[(size_t)r * k + i] *= inv;
		}
}

/* The units: k pairs, then the bias unit (nb of them, 0 or 1), then a
 * spare one when R is even. */
static void unit_layout(int rank, int *k, int *nb)
{
	*nb = rank >= 3 ? 1 : 0;
	*k = (rank - *nb) / 2;
}

/* The mean of the rows of x (n x d) into m. */
static void row_mean(const float *x, int n, int d, double *m)
{
	memset(m, 0, (size_t)d * sizeof(double));
	for (int t = 0; t < n; t++)
		for (int u = 0; u < d; u++)
			m[u] += x[(size_t)t * d + u];
	for (int u = 0; u < d; u++)
		m[u] /= n;
}

/* The bias feature b (d): the linear function of x with mean 1 over the
 * rows and the least variance, b = S^-1 m / (m^T S^-1 m), S the
 * covariance (C - m m^T, C the second moment X^T X / n) plus a ridge of
 * 1e-3 of its mean variance. The format has no biases; b . x is the
 * nearest thing to a constant 1 the rows offer (on the test model its
 * standard deviation is 2.4%, m . x / |m|^2's 7.3%). Conjugate gradients
 * preconditioned by S's diagonal (dimensions of very different scales
 * converge alike), at most BIAS_CG_STEPS: any b with b . m = 1 is valid,
 * a rougher one only varies more. Returns 0, 1 when m is 0 (no bias
 * feature), or -1 when out of memory. */
#define BIAS_CG_STEPS 256
static int bias_feature(const float *c, const double *m, int d, float *b)
{
	double mm = 0.0, tr = 0.0;
	for (int u = 0; u < d; u++) {
		mm += m[u] * m[u];
		tr += (double)c[(size_t)u * d + u] - m[u] * m[u];
	}
	if (!(mm > 1e-30))
		return 1;
	double lambda = 1e-3 * (tr > 0.0 ? tr / d : mm / d);
	double *v = calloc((size_t)d, sizeof(double)), *r = malloc((size_t)d * sizeof(double));
	double *z = malloc((size_t)d * sizeof(double)), *dg = malloc((size_t)d * sizeof(double));
	float *p = malloc((size_t)d * sizeof(float)), *ap = malloc((size_t)d * sizeof(float));
	int ret = -1;
	if (!v || !r || !z || !dg || !p || !ap)
		goto out;
	double rz = 0.0, rr0 = 0.0;
	for (int u = 0; u < d; u++) {
		dg[u] = (double)c[(size_t)u * d + u] - m[u] * m[u] + lambda;
		r[u] = m[u];
		z[u] = r[u] / dg[u];
		p[u] = (float)z[u];
		rz += r[u] * z[u];
		rr0 += r[u] * r[u];
	}
	for (int it = 0; it < BIAS_CG_STEPS && it < d; it++) {
		/* ap = (C - m m^T + lambda I) p */
		cblas_sgemv(CblasRowMajor, CblasNoTrans, d, d, 1.0f, c, d, p, 1, 0.0f, ap, 1);
		double mp = 0.0, pap = 0.0;
		for (int u = 0; u < d; u++)
			mp += m[u] * p[u];
		for (int u = 0; u < d; u++) {
			ap[u] += (float)(lambda * p[u] - m[u] * mp);
			pap += (double)p[u] * ap[u];
		}
		if (!(pap > 0.0))
			break;
		double alpha = rz / pap, rz2 = 0.0, rr = 0.0;
		for (int u = 0; u < d; u++) {
			v[u] += alpha * p[u];
			r[u] -= alpha * ap[u];
			z[u] = r[u] / dg[u];
			rz2 += r[u] * z[u];
			rr += r[u] * r[u];
		}
		if (rr <= 1e-12 * rr0)
			break;
		for (int u = 0; u < d; u++)
			p[u] = (float)(z[u] + rz2 / rz * p[u]);
		rz = rz2;
	}
	double mv = 0.0;
	for (int u = 0; u < d; u++)
		mv += m[u] * v[u];
	for (int u = 0; u < d; u++)
		b[u] = mv > 0.0 ? (float)(v[u] / mv) : (float)(m[u] / mm);
	ret = 0;
out:
	free(v);
	free(r);
	free(z);
	free(dg);
	free(p);
	free(ap);
	return ret;
}

/* c = P C P^T for the (oblique) projection P = I - m b^T (b . m = 1),
 * which removes from x the part the bias unit carries: the second moment
 * of the rest. Returns 0, or -1 when out of memory. */
static int project_moment(float *c, const double *m, const float *b, int d)
{
	double *cb = calloc((size_t)d, sizeof(double));
	if (!cb)
		return -1;
	double bcb = 0.0;
	for (int u = 0; u < d; u++) {
		for (int v = 0; v < d; v++)
			cb[u] += (double)c[(size_t)u * d + v] * b[v];
		bcb += cb[u] * b[u];
	}
	for (int u = 0; u < d; u++)
		for (int v = 0; v < d; v++)
			c[(size_t)u * d + v] -= (float)(m[u] * cb[v] + cb[u] * m[v] - bcb * m[u] * m[v]);
	free(cb);
	return 0;
}

/* q (n_ff x k): the top k eigenvectors of M C M^T by subspace iteration
 * from a seeded random start; p, p2 are scratch of d x k. */
static void top_subspace(const float *mtx, const float *c, int n_ff, int d, int k, int iters, float *q,
			 float *p, float *p2, uint64_t *rng)
{
	for (size_t i = 0; i < (size_t)n_ff * (size_t)k; i++)
		q[i] = next_normal(rng);
	orthonormalize(q, n_ff, k, rng);
	for (int it = 0; it < iters; it++) {
		gemm(true, false, d, k, n_ff, 1.0f, mtx, d, q, k, 0.0f, p, k);   /* M^T Q */
		gemm(false, false, d, k, d, 1.0f, c, d, p, k, 0.0f, p2, k);      /* C M^T Q */
		gemm(false, false, n_ff, k, d, 1.0f, mtx, d, p2, k, 0.0f, q, k); /* M C M^T Q */
		orthonormalize(q, n_ff, k, rng);
	}
}

/* The k pairs: rows A_i, -A_i of W1 (A = Q^T M P, so that they do not see
 * the mean direction, which the bias unit carries) and columns Q_i, -Q_i
 * of W2, each pair's input scaled to an RMS of 1 over the data (by C,
 * the projected moment) and its output the other way: the same scores,
 * better conditioned for Adam. */
static int set_pairs(const float *mtx, const float *c, const float *q, const double *m, const float *bias,
		     int n_ff, int d, int k, int R, float *w1, float *w2)
{
	float *a = malloc((size_t)k * (size_t)d * sizeof(float));
	float *ac = malloc((size_t)k * (size_t)d * sizeof(float));
	if (!a || !ac) {
		free(a);
		free(ac);
		return -1;
	}
	gemm(true, false, k, d, n_ff, 1.0f, q, k, mtx, d, 0.0f, a, d);  /* A = Q^T M */
	for (int i = 0; i < k && bias; i++) {  /* A P = A - (A m) b^T */
		float *ai = a + (size_t)i * d;
		double am = 0.0;
		for (int u = 0; u < d; u++)
			am += (double)ai[u] * m[u];
		for (int u = 0; u < d; u++)
			ai[u] -= (float)(am * bias[u]);
	}
	gemm(false, false, k, d, d, 1.0f, a, d, c, d, 0.0f, ac, d);  /* A C */
	for (int i = 0; i < k; i++) {
		const float *ai = a + (size_t)i * d;
		double e = 0.0;  /* a_i^T C a_i */
		for (int u = 0; u < d; u++)
			e += (double)ac[(size_t)i * d + u] * ai[u];
		double rms = e > 1e-30 ? sqrt(e) : 1.0;
		for (int u = 0; u < d; u++) {
			w1[(size_t)(2 * i) * d + u] = (float)(ai[u] / rms);
			w1[(size_t)(2 * i + 1) * d + u] = (float)(-ai[u] / rms);
		}
		for (int j = 0; j < n_ff; j++) {
			float v = (float)(q[(size_t)j * k + i] * rms);
			w2[(size_t)j * R + 2 * i] = v;
			w2[(size_t)j * R + 2 * i + 1] = -v;
		}
	}
	free(a);
	free(ac);
	return 0;
}

/* The bias unit, relu(b . x) (bias_feature: about 1 for every token),
 * with the output M m: together with the pairs, the scores approximate
 * M x itself. Returns the unit's mean over the rows. */
static double set_bias_unit(const struct fit_data *D, const double *m, const float *bias, int u0, int R,
			    float *w1, float *w2)
{
	int n = D->n, d = D->d;
	memcpy(w1 + (size_t)u0 * d, bias, (size_t)d * sizeof(float));
	for (int j = 0; j < D->n_ff; j++) {
		double v = 0.0;
		for (int u = 0; u < d; u++)
			v += (double)D->init[(size_t)j * d + u] * m[u];
		w2[(size_t)j * R + u0] = (float)v;
	}
	double hsum = 0.0;
	for (int t = 0; t < n; t++) {
		double v = 0.0;
		for (int u = 0; u < d; u++)
			v += (double)w1[(size_t)u0 * d + u] * D->x[(size_t)t * d + u];
		hsum += v > 0.0 ? v : 0.0;
	}
	return hsum / n;
}

/* Initialization (step 1 above): scores that approximate M x, the gate
 * (gate + up for dReLU), plus LOGIT_OFFSET through the bias unit, whose
 * mean over the rows goes to *hmean (0: no bias unit). */
static int init_predictor(const struct fit_data *D, const struct fit_opts *o, float *w1, float *w2,
			  uint64_t *rng, double *hmean)
{
	int n = D->n, d = D->d, n_ff = D->n_ff, R = o->rank;
	int k, nb;
	unit_layout(R, &k, &nb);
	memset(w1, 0, (size_t)R * (size_t)d * sizeof(float));
	memset(w2, 0, (size_t)n_ff * (size_t)R * sizeof(float));
	int kk = k > 0 ? k : 1;
	float *c = malloc((size_t)d * (size_t)d * sizeof(float));
	float *q = malloc((size_t)n_ff * (size_t)kk * sizeof(float));
	float *p = malloc((size_t)d * (size_t)kk * sizeof(float));
	float *p2 = malloc((size_t)d * (size_t)kk * sizeof(float));
	int rows = n < 1024 ? n : 1024;
	float *h = malloc((size_t)rows * (size_t)R * sizeof(float));
	float *s = malloc((size_t)rows * (size_t)n_ff * sizeof(float));
	double *mean = calloc((size_t)d, sizeof(double));
	float *bias = malloc((size_t)d * sizeof(float));
	int r = -1;
	if (!c || !q || !p || !p2 || !h || !s || !mean || !bias)
		goto out;
	row_mean(D->x, n, d, mean);
	gemm(true, false, d, d, n, 1.0f / (float)n, D->x, d, D->x, d, 0.0f, c, d);
	/* Without a bias unit, the pairs see the mean direction too. */
	int hb = nb ? bias_feature(c, mean, d, bias) : 1;
	if (hb < 0 || (hb == 0 && project_moment(c, mean, bias, d)))
		goto out;
	int u0 = 2 * k;
	if (k > 0) {
		top_subspace(D->init, c, n_ff, d, k, o->power_iters, q, p, p2, rng);
		if (set_pairs(D->init, c, q, mean, hb == 0 ? bias : NULL, n_ff, d, k, R, w1, w2))
			goto out;
	}
	double hm = hb == 0 ? set_bias_unit(D, mean, bias, u0, R, w1, w2) : 0.0;
	/* Scale the scores to an RMS of 3 over the first rows: a start for
	 * calibrate_logits, which fits the scale. */
	fit_scores(rows, d, n_ff, R, D->x, w1, w2, h, s);
	double ss = 0.0;
	for (size_t i = 0; i < (size_t)rows * (size_t)n_ff; i++)
		ss += (double)s[i] * s[i];
	double rms = sqrt(ss / ((double)rows * n_ff));
	float g = rms > 1e-30 ? (float)(3.0 / rms) : 1.0f;
	for (size_t i = 0; i < (size_t)n_ff * (size_t)R; i++)
		w2[i] *= g;
	/* The bias unit's output also carries the logits' offset. */
	*hmean = hm;
	if (hm > 1e-3)
		for (int j = 0; j < n_ff; j++)
			w2[(size_t)j * R + u0] += (float)(LOGIT_OFFSET / hm);
	/* Spare units: random directions of RMS 1 over the data, no output yet. */
	double xrms = 0.0;
	for (size_t i = 0; i < (size_t)n * (size_t)d; i++)
		xrms += (double)D->x[i] * D->x[i];
	xrms = sqrt(xrms / ((double)n * d));
	for (int i = u0 + nb; i < R; i++)
		for (int u = 0; u < d; u++)
			w1[(size_t)i * d + u] = (float)(next_normal(rng) / (sqrt((double)d) * (xrms > 0 ? xrms : 1.0)));
	r = 0;
out:
	free(c);
	free(q);
	free(p);
	free(p2);
	free(h);
	free(s);
	free(mean);
	free(bias);
	return r;
}

struct adam {
	float *m, *v;
	size_t n;
};

static void adam_step(struct adam *ad, float *w, const float *g, float lr, int t)
{
	const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
	float c1 = 1.0f / (1.0f - powf(b1, (float)t)), c2 = 1.0f / (1.0f - powf(b2, (float)t));
	for (size_t i = 0; i < ad->n; i++) {
		float gi = g[i];
		ad->m[i] = b1 * ad->m[i] + (1.0f - b1) * gi;
		ad->v[i] = b2 * ad->v[i] + (1.0f - b2) * gi * gi;
		w[i] -= lr * (ad->m[i] * c1) / (sqrtf(ad->v[i] * c2) + eps);
	}
}

/* Loss weights by label code (fit_code): an inactive neuron weighs 1, an
 * active one pw (1 - contrib + contrib c / c_mean), c its output
 * contribution and c_mean their mean over the rows: on average pw, so
 * the classes keep their balance, but a neuron that moves the output more
 * costs more to miss. */
static void loss_weights(const struct fit_data *D, const struct fit_opts *o, float pw, const int *rows,
			 int n, float wt[256])
{
	uint64_t hist[256] = { 0 };
	for (int t = 0; t < n; t++) {
		const uint8_t *y = D->y + (size_t)rows[t] * (size_t)D->n_ff;
		for (int j = 0; j < D->n_ff; j++)
			hist[y[j]]++;
	}
	double na = 0.0, sum = 0.0;
	for (int c = 1; c < 256; c++) {
		na += (double)hist[c];
		sum += (double)hist[c] * fit_contrib((uint8_t)c);
	}
	double mean = na > 0.0 && sum > 0.0 ? sum / na : 1.0;
	float a = o->contrib;
	wt[0] = 1.0f;
	for (int c = 1; c < 256; c++)
		wt[c] = pw * (1.0f - a + a * (float)(fit_contrib((uint8_t)c) / mean));
}

/* Weighted BCE of the logits a u + b over (u, y) with label weights wt,
 * and its gradient and Hessian in (a, b). */
static double logit_fit_loss(const float *u, const uint8_t *y, size_t n, const float *wt, double a, double b,
			     double g[2], double hs[3])
{
	double loss = 0.0;
	g[0] = g[1] = hs[0] = hs[1] = hs[2] = 0.0;
	for (size_t i = 0; i < n; i++) {
		double l = a * u[i] + b, w = wt[y[i]];
		double sp = l > 0 ? l + log1p(exp(-l)) : log1p(exp(l));  /* softplus(l) */
		double p = 1.0 / (1.0 + exp(-l));
		double gi = y[i] ? w * (p - 1.0) : p, hi = w * p * (1.0 - p);
		loss += y[i] ? w * (sp - l) : sp;
		g[0] += gi * u[i];
		g[1] += gi;
		hs[0] += hi * u[i] * u[i];
		hs[1] += hi * u[i];
		hs[2] += hi;
	}
	return loss;
}

/* Adam moves every weight by about its step whatever the weight's size,
 * so the steps that only rescale the initialization's logits (all of W2
 * by one factor) would add noise to its structure: the logits' scale and
 * offset are fitted first, a 2-parameter weighted logistic regression
 * (Newton, halving a step that does not lower the loss) on up to 1024 of
 * the training rows, evenly spread, fewer for wide layers (two parameters
 * need no more than CALIB_PAIRS (token, neuron) pairs). The offset goes through the bias unit (u0, mean
 * output hm), which is about 1 for every token. Returns 0, or -1 when
 * out of memory. */
#define CALIB_PAIRS (1 << 21)
static int calibrate_logits(const struct fit_data *D, const struct fit_opts *o, const float *wt, const int *rows,
			    int n, float *w1, float *w2, int u0, double hm)
{
	int d = D->d, n_ff = D->n_ff, R = o->rank;
	int nt = CALIB_PAIRS / n_ff < 16 ? 16 : CALIB_PAIRS / n_ff > 1024 ? 1024 : CALIB_PAIRS / n_ff;
	nt = n < nt ? n : nt;
	size_t ne = (size_t)nt * (size_t)n_ff;
	float *xb = malloc((size_t)nt * d * sizeof(float));
	float *h = malloc((size_t)nt * R * sizeof(float));
	float *u = malloc(ne * sizeof(float));
	uint8_t *y = malloc(ne);
	if (!xb || !h || !u || !y) {
		free(xb);
		free(h);
		free(u);
		free(y);
		return -1;
	}
	for (int t = 0; t < nt; t++) {
		int row = rows[(size_t)t * (size_t)n / (size_t)nt];
		memcpy(xb + (size_t)t * d, D->x + (size_t)row * d, (size_t)d * sizeof(float));
		memcpy(y + (size_t)t * n_ff, D->y + (size_t)row * n_ff, (size_t)n_ff);
	}
	fit_scores(nt, d, n_ff, R, xb, w1, w2, h, u);
	for (size_t i = 0; i < ne; i++)
		u[i] -= LOGIT_OFFSET;
	double a = 1.0, b = 0.0, g[2], hs[3];
	bool offset = hm > 1e-3;
	double loss = logit_fit_loss(u, y, ne, wt, a, b, g, hs);
	for (int it = 0; it < 30; it++) {
		double da, db;
		if (offset) {
			double det = hs[0] * hs[2] - hs[1] * hs[1];
			if (!(det > 0))
				break;
			da = -(hs[2] * g[0] - hs[1] * g[1]) / det;
			db = -(hs[0] * g[1] - hs[1] * g[0]) / det;
		} else {
			if (!(hs[0] > 0))
				break;
			da = -g[0] / hs[0];
			db = 0.0;
		}
		double g2[2], hs2[3], l2 = 0.0;
		int k;
		for (k = 0; k < 20; k++, da *= 0.5, db *= 0.5)
			if ((l2 = logit_fit_loss(u, y, ne, wt, a + da, b + db, g2, hs2)) <= loss)
				break;
		if (k == 20 || a + da <= 0.0)
			break;
		a += da;
		b += db;
		bool done = loss - l2 <= 1e-9 * fabs(loss);
		loss = l2;
		memcpy(g, g2, sizeof(g));
		memcpy(hs, hs2, sizeof(hs));
		if (done)
			break;
	}
	/* s' - T = a (s - T) + b (T = LOGIT_OFFSET): every output times a, and
	 * (1 - a) T + b through the bias unit. */
	for (size_t i = 0; i < (size_t)n_ff * (size_t)R; i++)
		w2[i] *= (float)a;
	if (offset)
		for (int j = 0; j < n_ff; j++)
			w2[(size_t)j * R + u0] += (float)((1.0 - a) * LOGIT_OFFSET / hm + b / hm);
	free(xb);
	free(h);
	free(u);
	free(y);
	return 0;
}

/* Weighted BCE training of w1, w2 from their initialization; wt as
 * loss_weights. */
static int train(const struct fit_data *D, const struct fit_opts *o, const float *wt, float *w1, float *w2,
		 const int *rows, int n, uint64_t *rng)
{
	int d = D->d, n_ff = D->n_ff, R = o->rank;
	int B = o->batch < n ? o->batch : n;
	size_t n1 = (size_t)R * d, n2 = (size_t)n_ff * R;
	int *perm = malloc((size_t)n * sizeof(int));
	float *xb = malloc((size_t)B * d * sizeof(float));
	float *hp = malloc((size_t)B * R * sizeof(float));
	float *h = malloc((size_t)B * R * sizeof(float));
	float *s = malloc((size_t)B * n_ff * sizeof(float));
	float *dh = malloc((size_t)B * R * sizeof(float));
	float *g1 = malloc(n1 * sizeof(float));
	float *g2 = malloc(n2 * sizeof(float));
	struct adam a1 = { calloc(n1, sizeof(float)), calloc(n1, sizeof(float)), n1 };
	struct adam a2 = { calloc(n2, sizeof(float)), calloc(n2, sizeof(float)), n2 };
	int r = -1;
	if (!perm || !xb || !hp || !h || !s || !dh || !g1 || !g2 || !a1.m || !a1.v || !a2.m || !a2.v)
		goto out;
	memcpy(perm, rows, (size_t)n * sizeof(int));
	int steps_per_epoch = (n + B - 1) / B, total = steps_per_epoch * o->epochs, step = 0;
	for (int ep = 0; ep < o->epochs; ep++) {
		for (int i = n - 1; i > 0; i--) {
			int j = (int)(rng_next(rng) % (uint64_t)(i + 1));
			int tmp = perm[i];
			perm[i] = perm[j];
			perm[j] = tmp;
		}
		for (int b0 = 0; b0 < n; b0 += B) {
			int nb = n - b0 < B ? n - b0 : B;
			for (int t = 0; t < nb; t++)
				memcpy(xb + (size_t)t * d, D->x + (size_t)perm[b0 + t] * d, (size_t)d * sizeof(float));
			gemm(false, true, nb, R, d, 1.0f, xb, d, w1, d, 0.0f, hp, R);
			for (size_t i = 0; i < (size_t)nb * R; i++)
				h[i] = hp[i] > 0.0f ? hp[i] : 0.0f;
			gemm(false, true, nb, n_ff, R, 1.0f, h, R, w2, R, 0.0f, s, n_ff);
			/* s becomes dLoss/ds: w (sigmoid(l) - y), l = s - LOGIT_OFFSET,
			 * averaged over the batch's tokens. */
			float inv = 1.0f / (float)nb;
			for (int t = 0; t < nb; t++) {
				const uint8_t *yr = D->y + (size_t)perm[b0 + t] * n_ff;
				float *st = s + (size_t)t * n_ff;
				for (int j = 0; j < n_ff; j++) {
					float l = st[j] - LOGIT_OFFSET;
					float e = expf(-fabsf(l));
					float sig = l >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
					st[j] = yr[j] ? wt[yr[j]] * (sig - 1.0f) * inv : sig * inv;
				}
			}
			gemm(true, false, n_ff, R, nb, 1.0f, s, n_ff, h, R, 0.0f, g2, R);   /* dW2 = G^T H */
			gemm(false, false, nb, R, n_ff, 1.0f, s, n_ff, w2, R, 0.0f, dh, R); /* dH = G W2 */
			for (size_t i = 0; i < (size_t)nb * R; i++)
				if (!(hp[i] > 0.0f))
					dh[i] = 0.0f;
			gemm(true, false, R, d, nb, 1.0f, dh, R, xb, d, 0.0f, g1, d);       /* dW1 = dH^T X */
			float lr = o->lr * (1.0f - (float)step / (float)total);
			step++;
			adam_step(&a1, w1, g1, lr, step);
			adam_step(&a2, w2, g2, lr, step);
		}
	}
	r = 0;
out:
	free(perm);
	free(xb);
	free(hp);
	free(h);
	free(s);
	free(dh);
	free(g1);
	free(g2);
	free(a1.m);
	free(a1.v);
	free(a2.m);
	free(a2.v);
	return r;
}

#define CHUNK 512

/* Scores of the rows rows[t0 .. t0 + nt) into s, through xb (CHUNK x d). */
static void chunk_scores(const struct fit_data *D, int R, const float *w1, const float *w2, const int *rows,
			 int nt, float *xb, float *h, float *s)
{
	for (int t = 0; t < nt; t++)
		memcpy(xb + (size_t)t * D->d, D->x + (size_t)rows[t] * D->d, (size_t)D->d * sizeof(float));
	fit_scores(nt, D->d, D->n_ff, R, xb, w1, w2, h, s);
}

/* An active (token, neuron): its score and its output energy. */
struct scored {
	float s, e;
};

static int cmp_scored(const void *a, const void *b)
{
	const struct scored *x = a, *y = b;
	/* ties by energy: the same order whatever qsort does with equal keys */
	return x->s != y->s ? (x->s > y->s) - (x->s < y->s) : (x->e > y->e) - (x->e < y->e);
}

/* The active pairs of the rows, scored with the current weights, into
 * *out (sorted by score, allocated here); returns their count, or -1. */
static long scored_actives(const struct fit_data *D, int R, const float *w1, const float *w2, const int *rows,
			   int n, struct scored **out)
{
	int d = D->d, n_ff = D->n_ff;
	size_t n_active = 0;
	for (size_t t = 0; t < (size_t)n; t++)
		for (int j = 0; j < n_ff; j++)
			n_active += D->y[(size_t)rows[t] * n_ff + j] != 0;
	struct scored *act = malloc((n_active ? n_active : 1) * sizeof(*act));
	float *xb = malloc((size_t)CHUNK * d * sizeof(float));
	float *h = malloc((size_t)CHUNK * R * sizeof(float));
	float *s = malloc((size_t)CHUNK * n_ff * sizeof(float));
	long na = -1;
	if (act && xb && h && s) {
		na = 0;
		for (int t0 = 0; t0 < n; t0 += CHUNK) {
			int nt = n - t0 < CHUNK ? n - t0 : CHUNK;
			chunk_scores(D, R, w1, w2, rows + t0, nt, xb, h, s);
			for (int t = 0; t < nt; t++) {
				const uint8_t *y = D->y + (size_t)rows[t0 + t] * n_ff;
				for (int j = 0; j < n_ff; j++)
					if (y[j]) {
						float c = fit_contrib(y[j]);
						act[na++] = (struct scored){ s[(size_t)t * n_ff + j], c * c };
					}
			}
		}
		qsort(act, (size_t)na, sizeof(*act), cmp_scored);
	}
	free(xb);
	free(h);
	free(s);
	if (na < 0)
		free(act);
	else
		*out = act;
	return na;
}

/* The threshold on the current scores that misses at most 1 - o->recall
 * of the active pairs and o->missed of their output (as fit_opts.missed):
 * halfway between the largest score missed and the next. */
static int choose_threshold(const struct fit_data *D, const struct fit_opts *o, const float *w1,
			    const float *w2, const int *rows, int n, float *thr, int *by_output)
{
	struct scored *act;
	long na = scored_actives(D, o->rank, w1, w2, rows, n, &act);
	if (na < 0)
		return -1;
	double total = 0.0;
	for (long i = 0; i < na; i++)
		total += act[i].e;
	long miss = (long)floor((1.0 - (double)o->recall) * (double)na);
	*by_output = 0;
	if (o->missed > 0.0f) {
		/* the most pairs from the bottom whose energy fits the budget */
		double budget = (double)o->missed * o->missed * total, cum = 0.0;
		long i = 0;
		while (i < miss && cum + act[i].e <= budget)
			cum += act[i++].e;
		*by_output = i < miss;
		miss = i;
	}
	if (na == 0)
		*thr = LOGIT_OFFSET;
	else if (miss == 0)
		*thr = act[0].s - 0.5f * fabsf(act[0].s) - 1e-6f;
	else if (miss >= na)
		*thr = act[na - 1].s;
	else
		*thr = act[miss - 1].s + 0.5f * (act[miss].s - act[miss - 1].s);
	free(act);
	return 0;
}

/* The threshold (choose_threshold) that holds on the text's threshold
 * rows and on the generated ones, each kind on its own: the lower, when
 * both have at least 16 rows. Reorders rows, text first. */
static int threshold_by_kind(const struct fit_data *D, const struct fit_opts *o, const float *w1,
			     const float *w2, int *rows, int n, float *thr, int *by_output, int *n_generated)
{
	int nt = n;
	if (D->generated) {
		nt = 0;
		for (int i = 0; i < n; i++)
			if (!D->generated[rows[i]]) {
				int t = rows[nt];
				rows[nt++] = rows[i];
				rows[i] = t;
			}
	}
	*n_generated = n - nt;
	if (nt < 16 || n - nt < 16)
		return choose_threshold(D, o, w1, w2, rows, n, thr, by_output);
	float t2;
	int b2;
	if (choose_threshold(D, o, w1, w2, rows, nt, thr, by_output) ||
	    choose_threshold(D, o, w1, w2, rows + nt, n - nt, &t2, &b2))
		return -1;
	if (t2 < *thr) {
		*thr = t2;
		*by_output = b2;
	}
	return 0;
}

/* Recall, precision and the output missed (as fit_opts.missed) of the
 * final weights (threshold FIT_THRESHOLD). */
static int measure(const struct fit_data *D, const struct fit_opts *o, const float *w1, const float *w2,
		   const int *rows, int n, float *recall, float *precision, float *missed)
{
	int d = D->d, n_ff = D->n_ff, R = o->rank;
	float *xb = malloc((size_t)CHUNK * d * sizeof(float));
	float *h = malloc((size_t)CHUNK * R * sizeof(float));
	float *s = malloc((size_t)CHUNK * n_ff * sizeof(float));
	if (!xb || !h || !s) {
		free(xb);
		free(h);
		free(s);
		return -1;
	}
	uint64_t tp = 0, pred = 0, active = 0;
	double e_miss = 0.0, e_all = 0.0;
	for (int t0 = 0; t0 < n; t0 += CHUNK) {
		int nt = n - t0 < CHUNK ? n - t0 : CHUNK;
		chunk_scores(D, R, w1, w2, rows + t0, nt, xb, h, s);
		for (int t = 0; t < nt; t++) {
			const uint8_t *yr = D->y + (size_t)rows[t0 + t] * n_ff;
			for (int j = 0; j < n_ff; j++) {
				int y = yr[j] != 0;
				int p = s[(size_t)t * n_ff + j] > FIT_THRESHOLD;
				active += (uint64_t)y;
				pred += (uint64_t)p;
				tp += (uint64_t)(y & p);
				if (y) {
					double c = fit_contrib(yr[j]);
					e_all += c * c;
					e_miss += p ? 0.0 : c * c;
				}
			}
		}
	}
	*recall = active ? (float)((double)tp / (double)active) : 1.0f;
	*precision = pred ? (float)((double)tp / (double)pred) : 1.0f;
	*missed = e_all > 0.0 ? (float)sqrt(e_miss / e_all) : 0.0f;
	free(xb);
	free(h);
	free(s);
	return 0;
}

/* The threshold rows: a seeded val_share of the groups (the text's
 * sequences), or of the rows without groups, first in rows; the rest,
 * which train, after them. Returns how many threshold rows. A threshold
 * chosen on rows it was trained on, or on other tokens of the same
 * sequences, would be optimistic. */
static int split_rows(const struct fit_data *D, const struct fit_opts *o, int *rows)
{
	int n = D->n, n_val = 0, n_trn = 0;
	uint64_t cut = (uint64_t)((double)o->val_share * 4294967296.0);
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < n; i++) {
			uint64_t key = (uint64_t)(D->group ? D->group[i] : i) + o->seed * 0x632be59bd9b4e019ull;
			bool val = (rng_next(&key) >> 32) < cut;
			if (pass == 0 && val)
				rows[n_val++] = i;
			else if (pass == 1 && !val)
				rows[n_val + n_trn++] = i;
		}
	return n_val;
}

int fit_layer(const struct fit_data *D, const struct fit_opts *o, float *w1, float *w2,
	      void (*round)(float *, size_t), struct fit_result *res)
{
	memset(res, 0, sizeof(*res));
	uint64_t rng = o->seed * 0x9e3779b97f4a7c15ull + 0x70726564ull;
	int n = D->n;
	uint64_t n_active = 0;
	for (size_t i = 0; i < (size_t)n * (size_t)D->n_ff; i++)
		n_active += D->y[i] != 0;
	double rate = (double)n_active / ((double)n * D->n_ff);
	res->active_rate = rate;
	/* Auto: the negatives' share over the positives', so that both classes
	 * weigh the same, which favours recall against a plain loss. */
	float pw = o->pos_weight > 0.0f ? o->pos_weight
		   : rate > 0.0 && rate < 1.0 ? (float)((1.0 - rate) / rate) : 1.0f;
	if (pw > 1000.0f)
		pw = 1000.0f;
	res->pos_weight = pw;
	int *rows = malloc((size_t)n * sizeof(int));
	if (!rows)
		return -1;
	int n_val = split_rows(D, o, rows), n_trn = n - n_val;
	int *val = rows;
	const int *trn = rows + n_val;
	if (n_val < 16 || n_trn < 16) {
		/* too few rows to split: all of them for both */
		for (int i = 0; i < n; i++)
			rows[i] = i;
		n_val = n_trn = n;
		trn = rows;
	}
	int r = -1;
	float wt[256];
	loss_weights(D, o, pw, trn, n_trn, wt);
	double hm;
	int k, nb;
	unit_layout(o->rank, &k, &nb);
	if (init_predictor(D, o, w1, w2, &rng, &hm) ||
	    (calibrate_logits(D, o, wt, trn, n_trn, w1, w2, 2 * k, hm)) ||
	    (o->epochs > 0 && train(D, o, wt, w1, w2, trn, n_trn, &rng)))
		goto out;
	if (round)
		round(w1, (size_t)o->rank * (size_t)D->d);
	float thr;
	if (threshold_by_kind(D, o, w1, w2, val, n_val, &thr, &res->by_output, &res->n_val_generated))
		goto out;
	res->threshold = thr;
	if (!(thr > 1e-3f)) {
		/* Scaling W2 cannot move a threshold across 0: keep the most recall
		 * a small positive threshold gives. */
		res->clamped = 1;
		thr = 1e-3f;
	}
	float scale = FIT_THRESHOLD / thr;
	for (size_t i = 0; i < (size_t)D->n_ff * (size_t)o->rank; i++)
		w2[i] *= scale;
	if (round)
		round(w2, (size_t)D->n_ff * (size_t)o->rank);
	res->n_val = n_val;
	res->n_train = n_trn;
	if (!measure(D, o, w1, w2, val, n_val, &res->recall, &res->precision, &res->missed) &&
	    !measure(D, o, w1, w2, trn, n_trn, &res->train_recall, &res->train_precision, &res->train_missed))
		r = 0;
out:
	free(rows);
	return r;
}
