/* Training one layer's low-rank activation predictor (fit_predictor.h,
 * docs/sparsity.md "Fitting predictors").
 *
 * 1. Initialization: the best rank-k approximation, over the training
 *    tokens, of the gate scores z = M x (M the gate matrix, or gate + up
 *    for dReLU): the top-k eigenvectors Q of M C M^T, C = X^T X, by
 *    subspace iteration from a seeded random start. With A = Q^T M,
 *    relu(A x) - relu(-A x) = A x, so k pairs of hidden units (rows A and
 *    -A of W1, columns Q and -Q of W2) compute Q Q^T z exactly. One more
 *    unit looks along the mean of x (about 1 for every token, a bias there
 *    is none of in the format) and cancels the threshold's offset.
 * 2. Training: weighted binary cross-entropy of the logits s - 1 against
 *    the active labels (active neurons weigh pos_weight, so recall is
 *    favoured), Adam, shuffled minibatches, a linearly decaying step.
 * 3. Threshold: the score below which 1 - recall of the training data's
 *    active neurons fall; W2 is divided by it, so that the layer's
 *    threshold becomes FIT_THRESHOLD, one value for the file. */
#include "fit_predictor.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static uint64_t next_rand(uint64_t *state)
{
	/* splitmix64 */
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double next_unit(uint64_t *state)
{
	return ((double)(next_rand(state) >> 11) + 0.5) * 0x1.0p-53;
}

static float next_normal(uint64_t *state)
{
	double u = next_unit(state), v = next_unit(state);
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

/* The units: k pairs, then the mean-direction unit (nb of them, 0 or 1),
 * then a spare one when R is even. */
static void unit_layout(int rank, int *k, int *nb)
{
	*nb = rank >= 3 ? 1 : 0;
	*k = (rank - *nb) / 2;
}

static int init_predictor(const struct fit_data *D, const struct fit_opts *o, float *w1, float *w2,
			  uint64_t *rng)
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
	float *a = malloc((size_t)kk * (size_t)d * sizeof(float));
	int rows = n < 1024 ? n : 1024;
	float *h = malloc((size_t)rows * (size_t)R * sizeof(float));
	float *s = malloc((size_t)rows * (size_t)n_ff * sizeof(float));
	double *mean = calloc((size_t)d, sizeof(double));
	int r = -1;
	if (!c || !q || !p || !p2 || !a || !h || !s || !mean)
		goto out;
	if (k > 0) {
		gemm(true, false, d, d, n, 1.0f / (float)n, D->x, d, D->x, d, 0.0f, c, d);
		for (size_t i = 0; i < (size_t)n_ff * (size_t)k; i++)
			q[i] = next_normal(rng);
		orthonormalize(q, n_ff, k, rng);
		for (int it = 0; it < o->power_iters; it++) {
			gemm(true, false, d, k, n_ff, 1.0f, D->init, d, q, k, 0.0f, p, k);   /* M^T Q */
			gemm(false, false, d, k, d, 1.0f, c, d, p, k, 0.0f, p2, k);          /* C M^T Q */
			gemm(false, false, n_ff, k, d, 1.0f, D->init, d, p2, k, 0.0f, q, k); /* M C M^T Q */
			orthonormalize(q, n_ff, k, rng);
		}
		gemm(true, false, k, d, n_ff, 1.0f, q, k, D->init, d, 0.0f, a, d);  /* A = Q^T M */
		/* Each pair's input scaled to an RMS of 1 over the data, its output
		 * the other way: the same scores, better conditioned for Adam. */
		float *ac = malloc((size_t)k * (size_t)d * sizeof(float));
		if (!ac)
			goto out;
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
		free(ac);
		/* Scale the scores to an RMS of 3 over the first rows: logits
		 * with room on both sides of the threshold. */
		fit_scores(rows, d, n_ff, R, D->x, w1, w2, h, s);
		double ss = 0.0;
		for (size_t i = 0; i < (size_t)rows * (size_t)n_ff; i++)
			ss += (double)s[i] * s[i];
		double rms = sqrt(ss / ((double)rows * n_ff));
		float g = rms > 1e-30 ? (float)(3.0 / rms) : 1.0f;
		for (int j = 0; j < n_ff; j++)
			for (int i = 0; i < 2 * k; i++)
				w2[(size_t)j * R + i] *= g;
	}
	/* The mean-direction unit: relu(m . x / |m|^2), about 1 for tokens
	 * along the mean; its output column cancels the threshold. */
	int u0 = 2 * k;
	if (nb) {
		for (int t = 0; t < n; t++)
			for (int u = 0; u < d; u++)
				mean[u] += D->x[(size_t)t * d + u];
		double mm = 0.0;
		for (int u = 0; u < d; u++) {
			mean[u] /= n;
			mm += mean[u] * mean[u];
		}
		if (mm > 1e-30) {
			double hsum = 0.0;
			for (int u = 0; u < d; u++)
				w1[(size_t)u0 * d + u] = (float)(mean[u] / mm);
			for (int t = 0; t < n; t++) {
				double v = 0.0;
				for (int u = 0; u < d; u++)
					v += (double)w1[(size_t)u0 * d + u] * D->x[(size_t)t * d + u];
				hsum += v > 0.0 ? v : 0.0;
			}
			double hm = hsum / n;
			if (hm > 1e-3)
				for (int j = 0; j < n_ff; j++)
					w2[(size_t)j * R + u0] = (float)(FIT_THRESHOLD / hm);
		}
	}
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
	free(a);
	free(h);
	free(s);
	free(mean);
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

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* Weighted BCE training of w1, w2 from their initialization. */
static int train(const struct fit_data *D, const struct fit_opts *o, float pw, float *w1, float *w2,
		 const int *rows, int n, uint64_t *rng)
{
	int d = D->d, n_ff = D->n_ff, R = o->rank;
	int B = o->batch < n ? o->batch : n;
	int yb = (n_ff + 7) / 8;
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
			int j = (int)(next_rand(rng) % (uint64_t)(i + 1));
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
			/* s becomes dLoss/ds: w (sigmoid(l) - y), l = s - threshold,
			 * averaged over the batch's tokens. */
			float inv = 1.0f / (float)nb;
			for (int t = 0; t < nb; t++) {
				const uint8_t *yr = D->y + (size_t)perm[b0 + t] * yb;
				float *st = s + (size_t)t * n_ff;
				for (int j = 0; j < n_ff; j++) {
					float l = st[j] - FIT_THRESHOLD;
					float e = expf(-fabsf(l));
					float sig = l >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
					st[j] = (yr[j >> 3] >> (j & 7)) & 1 ? pw * (sig - 1.0f) * inv : sig * inv;
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

/* The threshold on the current scores that keeps o->recall of the active
 * pairs: halfway between the largest score missed and the next. */
static int choose_threshold(const struct fit_data *D, const struct fit_opts *o, const float *w1,
			    const float *w2, const int *rows, int n, float *thr)
{
	int d = D->d, n_ff = D->n_ff, R = o->rank, yb = (n_ff + 7) / 8;
	uint64_t n_active = 0;
	for (int t = 0; t < n; t++)
		for (int i = 0; i < yb; i++)
			n_active += (uint64_t)__builtin_popcount(D->y[(size_t)rows[t] * yb + i]);
	float *act = malloc((size_t)(n_active ? n_active : 1) * sizeof(float));
	float *xb = malloc((size_t)CHUNK * d * sizeof(float));
	float *h = malloc((size_t)CHUNK * R * sizeof(float));
	float *s = malloc((size_t)CHUNK * n_ff * sizeof(float));
	if (!act || !xb || !h || !s) {
		free(act);
		free(xb);
		free(h);
		free(s);
		return -1;
	}
	size_t na = 0;
	for (int t0 = 0; t0 < n; t0 += CHUNK) {
		int nt = n - t0 < CHUNK ? n - t0 : CHUNK;
		chunk_scores(D, R, w1, w2, rows + t0, nt, xb, h, s);
		for (int t = 0; t < nt; t++)
			for (int j = 0; j < n_ff; j++)
				if (fit_label(D->y, yb, rows[t0 + t], j))
					act[na++] = s[(size_t)t * n_ff + j];
	}
	qsort(act, na, sizeof(float), cmp_float);
	size_t miss = (size_t)floor((1.0 - (double)o->recall) * (double)na);
	if (na == 0)
		*thr = FIT_THRESHOLD;
	else if (miss == 0)
		*thr = act[0] - 0.5f * fabsf(act[0]) - 1e-6f;
	else if (miss >= na)
		*thr = act[na - 1];
	else
		*thr = act[miss - 1] + 0.5f * (act[miss] - act[miss - 1]);
	free(act);
	free(xb);
	free(h);
	free(s);
	return 0;
}

/* Recall and precision of the final weights (threshold FIT_THRESHOLD). */
static int measure(const struct fit_data *D, const struct fit_opts *o, const float *w1, const float *w2,
		   const int *rows, int n, float *recall, float *precision)
{
	int d = D->d, n_ff = D->n_ff, R = o->rank, yb = (n_ff + 7) / 8;
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
	for (int t0 = 0; t0 < n; t0 += CHUNK) {
		int nt = n - t0 < CHUNK ? n - t0 : CHUNK;
		chunk_scores(D, R, w1, w2, rows + t0, nt, xb, h, s);
		for (int t = 0; t < nt; t++)
			for (int j = 0; j < n_ff; j++) {
				int y = fit_label(D->y, yb, rows[t0 + t], j);
				int p = s[(size_t)t * n_ff + j] > FIT_THRESHOLD;
				active += (uint64_t)y;
				pred += (uint64_t)p;
				tp += (uint64_t)(y & p);
			}
	}
	*recall = active ? (float)((double)tp / (double)active) : 1.0f;
	*precision = pred ? (float)((double)tp / (double)pred) : 1.0f;
	free(xb);
	free(h);
	free(s);
	return 0;
}

int fit_layer(const struct fit_data *D, const struct fit_opts *o, float *w1, float *w2,
	      void (*round)(float *, size_t), struct fit_result *res)
{
	memset(res, 0, sizeof(*res));
	uint64_t rng = o->seed * 0x9e3779b97f4a7c15ull + 0x70726564ull;
	int n = D->n, yb = (D->n_ff + 7) / 8;
	uint64_t n_active = 0;
	for (size_t i = 0; i < (size_t)n * (size_t)yb; i++)
		n_active += (uint64_t)__builtin_popcount(D->y[i]);
	double rate = (double)n_active / ((double)n * D->n_ff);
	res->active_rate = rate;
	/* Auto: the negatives' share over the positives', so that both classes
	 * weigh the same, which favours recall against a plain loss. */
	float pw = o->pos_weight > 0.0f ? o->pos_weight
		   : rate > 0.0 && rate < 1.0 ? (float)((1.0 - rate) / rate) : 1.0f;
	if (pw > 1000.0f)
		pw = 1000.0f;
	res->pos_weight = pw;
	/* The threshold rows: a seeded val_share of the groups (the text's
	 * sequences), or of the rows without groups; the rest train. A
	 * threshold chosen on rows it was trained on, or on other tokens of
	 * the same sequences, would be optimistic. */
	int *rows = malloc((size_t)n * sizeof(int));
	if (!rows)
		return -1;
	int n_val = 0, n_trn = 0;
	uint64_t cut = (uint64_t)((double)o->val_share * 4294967296.0);
	for (int i = 0; i < n; i++) {
		uint64_t key = (uint64_t)(D->group ? D->group[i] : i) + o->seed * 0x632be59bd9b4e019ull;
		if ((next_rand(&key) >> 32) < cut)
			rows[n_val++] = i;
	}
	for (int i = 0; i < n; i++) {
		uint64_t key = (uint64_t)(D->group ? D->group[i] : i) + o->seed * 0x632be59bd9b4e019ull;
		if (!((next_rand(&key) >> 32) < cut))
			rows[n_val + n_trn++] = i;
	}
	const int *val = rows, *trn = rows + n_val;
	if (n_val < 16 || n_trn < 16) {
		/* too few rows to split: all of them for both */
		for (int i = 0; i < n; i++)
			rows[i] = i;
		n_val = n_trn = n;
		trn = rows;
	}
	int r = -1;
	if (init_predictor(D, o, w1, w2, &rng) || (o->epochs > 0 && train(D, o, pw, w1, w2, trn, n_trn, &rng)))
		goto out;
	if (round)
		round(w1, (size_t)o->rank * (size_t)D->d);
	float thr;
	if (choose_threshold(D, o, w1, w2, val, n_val, &thr))
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
	if (!measure(D, o, w1, w2, val, n_val, &res->recall, &res->precision) &&
	    !measure(D, o, w1, w2, trn, n_trn, &res->train_recall, &res->train_precision))
		r = 0;
out:
	free(rows);
	return r;
}
