/* pinfer-model synth's sparse construction (synth_sparse.h; synth.c writes
 * the models). Sparse models (--sparsity S with --act relu|drelu) are built
 * so that their own forward pass leaves about S of the FFN activations at
 * exactly zero for every token (docs/sparsity-synth.md):
 *
 *   - a bias channel: every token embedding has the constant BIAS_CHANNEL
 *     in dimension 0, and the matrices that write the residual stream
 *     (attn_output, ffn_down) have row 0 zero, so x[0] never changes;
 *   - ffn_norm's weight of dimension 0 (the layer's "gain") scales it so
 *     that after rmsnorm it is BIAS_GAIN times the norm N of the other
 *     dimensions, from an analytic prediction of N at that layer;
 *   - column 0 of ffn_gate (and of ffn_up for dReLU) is then a bias: row
 *     j's rest is normalized, so gate_j = sigma (mu_j + z) with z ~ N(0, 1)
 *     (over the neurons for one token; over the tokens for one neuron),
 *     and neuron j fires with probability Phi(mu_j);
 *   - the mu_j of a layer are the normal quantiles m + SPREAD eps_j, so a
 *     few neurons fire often and most rarely, and the mean is 1 - S;
 *   - attn_q, attn_k, attn_v (and ReLU's ffn_up) have column 0 zero, and
 *     attn_q is QUERY_GAIN x attn_k, so that each head attends mostly to
 *     its own token and the energy attention adds is known.
 *
 * With a predictor of R hidden units (--predictor R, PowerInfer's format):
 *   - row j of ffn_gate (and of dReLU's ffn_up) is [bias_j, a_j B + e_j]:
 *     B has K = R/2 - 1 orthonormal rows (random signs on disjoint random
 *     sets of columns, none in column 0), a_j is random of norm
 *     sqrt(1 - PRED_NOISE^2) of the row's, and the noise e_j, orthogonal
 *     to B, has the rest; dReLU's up shares gate's a_j (not its noise), so
 *     that one linear score predicts both;
 *   - fc1 = [B'; -B'] with B' = [e_0; B], and fc2 row j = [c_j, a_j, 0,
 *     -a_j]: fc2 . relu(fc1 . x) = a_j B x + c_j x[0] exactly, the gate
 *     without its noise, and c_j is the gate's stored bias plus a margin
 *     chosen from the noise (and the quantization error) for PRED_RECALL;
 *   - ffn_down's values come from a counter-based generator, so that
 *     ffn_down_t (its transpose) can be written row by row too. */
#include "synth_sparse.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

/* The sparse construction's constants (docs/sparsity-synth.md). */
#define BIAS_CHANNEL 4.0f  /* x[0] of every token, in embedding standard deviations */
#define BIAS_GAIN 0.5f     /* the FFN input's x[0] over the norm of its other dimensions */
#define QUERY_GAIN 2.0f    /* attn_q = QUERY_GAIN attn_k: each head attends to its own token */
#define SPREAD 1.4         /* std of the neurons' probit biases: how heavy the hot head is */

/* The predictor's (--predictor). */
#define PRED_NOISE 0.1     /* a gate row's noise outside the predictor's subspace, over the row's norm */
#define PRED_RECALL 0.995  /* the share of firing neurons the margin is chosen to predict */
#define PRED_MAX 8192      /* most hidden units: bounds the per-row scratch on the stack */
#define BLOCK_MAX 256      /* most elements in a block of any weight type (K-quants) */

/* One layer's predictor and the low-rank part of its gate (and dReLU up)
 * rows. */
struct lowrank {
	const uint32_t *group;  /* n_embd: the row of B (1..K) column i is in; 0 for column 0 */
	const float *w;         /* n_embd: B's entry in column i, +-1/sqrt(the row's columns) */
	int K, R;               /* B's rows, the predictor's hidden units (2K + 2) */
	uint64_t akey;          /* seeds the a_j, shared by gate and up */
	float ca, ce;           /* norms of a row's low-rank part and its noise */
	float margin;           /* added to fc2's bias weights: M sigma / BIAS_GAIN */
	float *qbias[2];        /* n_ff: column 0 of gate and (dReLU) up as stored, filled as
				 * they are written, read by fc2 after them */
};

/* Scales dst[1..n-1] to norm std sqrt(n - 1) exactly. */
static void normalize_tail(float *dst, int64_t n, float std)
{
	double ss = 0;
	for (int64_t i = 1; i < n; i++)
		ss += (double)dst[i] * dst[i];
	if (ss <= 0)
		return;
	float s = (float)((double)std * sqrt((double)(n - 1) / ss));
	for (int64_t i = 1; i < n; i++)
		dst[i] *= s;
}

/* Element idx of a tensor seeded by key, from a counter-based generator
 * (SplitMix64's idx-th output), so any element can be made alone: the same
 * sum of four 16-bit lanes as synth_gen_random, times scale (synth_lanes_scale). */
static float hashed_normal(uint64_t key, uint64_t idx, float scale)
{
	uint64_t v = synth_splitmix64(key + idx * 0x9e3779b97f4a7c15ull);
	int32_t s = (int32_t)(v & 0xffff) + (int32_t)(v >> 16 & 0xffff) +
		    (int32_t)(v >> 32 & 0xffff) + (int32_t)(v >> 48) - 131070;
	return (float)s * scale;
}

/* a_j of row j (a[1..K]) at norm lr->ca; a[0] = 0. */
static void lowrank_coef(const struct lowrank *lr, int64_t row, float *a)
{
	a[0] = 0.0f;
	if (!lr->K)
		return;
	synth_gen_random(lr->akey, row, 1.0f, lr->K, a + 1);
	double ss = 0;
	for (int k = 1; k <= lr->K; k++)
		ss += (double)a[k] * a[k];
	float s = ss > 0 ? (float)(lr->ca / sqrt(ss)) : 0.0f;
	for (int k = 1; k <= lr->K; k++)
		a[k] *= s;
}

/* Row j of a ROLE_LOWRANK matrix: noise made orthogonal to B and scaled to
 * norm ce, plus a_j B, and the bias in column 0. Remembers the bias as the
 * weight type stores it (its first block, quantized and read back), which
 * is what the gate computes with. */
static void gen_lowrank(const struct item *it, int64_t row, float *dst)
{
	const struct lowrank *lr = it->lr;
	int64_t n = (int64_t)it->ne[0];
	float acc[PRED_MAX / 2], a[PRED_MAX / 2];
	synth_gen_random(it->key, row, 1.0f, n, dst);
	dst[0] = 0.0f;
	memset(acc, 0, (size_t)(lr->K + 1) * sizeof(acc[0]));
	for (int64_t i = 1; i < n; i++)
		acc[lr->group[i]] += lr->w[i] * dst[i];
	double ss = 0;
	for (int64_t i = 1; i < n; i++) {
		dst[i] -= lr->w[i] * acc[lr->group[i]];
		ss += (double)dst[i] * dst[i];
	}
	float s = ss > 0 ? (float)(lr->ce / sqrt(ss)) : 0.0f;
	lowrank_coef(lr, row, a);
	for (int64_t i = 1; i < n; i++)
		dst[i] = dst[i] * s + a[lr->group[i]] * lr->w[i];
	dst[0] = it->mu[row] * it->std / BIAS_GAIN;

	const struct pf_quant_ops *ops = pf_quant_ops(it->type);
	int64_t block = pf_dtype_info(it->type)->block;
	uint8_t q[BLOCK_MAX * sizeof(float)];
	float back[BLOCK_MAX];
	ops->from_float(dst, q, block);
	ops->to_float(q, back, block);
	lr->qbias[it->half][row] = back[0];
}

void synth_sparse_row(const struct item *it, int64_t row, float *dst)
{
	int64_t n = (int64_t)it->ne[0];
	switch (it->role) {
	case ROLE_RANDOM:
	case ROLE_ONES:  /* plain roles: synth.c's gen_row makes them */
		break;
	case ROLE_FFN_NORM:
		for (int64_t i = 0; i < n; i++)
			dst[i] = 1.0f;
		dst[0] = it->gain;
		break;
	case ROLE_EMBD:
		synth_gen_random(it->key, row, it->std, n, dst);
		normalize_tail(dst, n, it->std);
		/* The channel stays the largest value of its block, which the
		 * block formats then store exactly. */
		for (int64_t i = 1; i < n; i++)
			dst[i] = fminf(fmaxf(dst[i], -0.9f * BIAS_CHANNEL * it->std),
				       0.9f * BIAS_CHANNEL * it->std);
		dst[0] = BIAS_CHANNEL * it->std;
		break;
	case ROLE_READ:
		synth_gen_random(it->key, row, it->std, n, dst);
		dst[0] = 0.0f;
		break;
	case ROLE_QUERY: {
		/* attn_k's std is attn_q's: both have rows of n_embd */
		int64_t hd = it->head_dim;
		int64_t src = row / hd / it->group * hd + row % hd;
		synth_gen_random(it->src_key, src, it->std, n, dst);
		dst[0] = 0.0f;
		for (int64_t i = 1; i < n; i++)
			dst[i] *= QUERY_GAIN;
		break;
	}
	case ROLE_WRITE:
		if (row == 0)
			memset(dst, 0, (size_t)n * sizeof(float));
		else
			synth_gen_random(it->key, row, it->std, n, dst);
		break;
	case ROLE_BIASED:
		/* The rest's dot product with an input whose dimensions 1.. have
		 * norm N has std `std N`; column 0 meets BIAS_GAIN N. */
		synth_gen_random(it->key, row, it->std, n, dst);
		normalize_tail(dst, n, it->std);
		dst[0] = it->mu[row] * it->std / BIAS_GAIN;
		break;
	case ROLE_LOWRANK:
		gen_lowrank(it, row, dst);
		break;
	case ROLE_DOWN_H: {
		/* element (i, j) is number i * n_ff + j; row 0 stays zero */
		float scale = synth_lanes_scale(it->std);
		for (int64_t j = 0; j < n; j++)
			dst[j] = row ? hashed_normal(it->key, (uint64_t)(row * n + j), scale) : 0.0f;
		break;
	}
	case ROLE_DOWN_T: {
		uint64_t ff = it->ne[1];
		float scale = synth_lanes_scale(it->std);
		dst[0] = 0.0f;
		for (int64_t i = 1; i < n; i++)
			dst[i] = hashed_normal(it->key, (uint64_t)i * ff + (uint64_t)row, scale);
		break;
	}
	case ROLE_FC1: {
		/* rows 0..R/2-1: B' = [e_0; B]; the rest: -B' */
		const struct lowrank *lr = it->lr;
		int half = lr->R / 2;
		uint32_t k = (uint32_t)(row % half);
		float sign = row < half ? 1.0f : -1.0f;
		memset(dst, 0, (size_t)n * sizeof(float));
		if (k == 0)
			dst[0] = sign;
		else
			for (int64_t i = 1; i < n; i++)
				if (lr->group[i] == k)
					dst[i] = sign * lr->w[i];
		break;
	}
	case ROLE_FC2: {
		/* relu(B'x) - relu(-B'x) = B'x: fc2 . relu(fc1 . x) = a_j B x +
		 * (bias_j + margin) x[0] (relu(-x[0]) = 0 meets weight 0) */
		const struct lowrank *lr = it->lr;
		int half = lr->R / 2;
		float a[PRED_MAX / 2];
		lowrank_coef(lr, row, a);
		memset(dst, 0, (size_t)n * sizeof(float));
		for (int k = 1; k <= lr->K; k++) {
			dst[k] = a[k];
			dst[half + k] = -a[k];
		}
		float bias = lr->qbias[0][row];
		if (it->half)  /* dReLU: the smaller of gate's and up's */
			bias = fminf(bias, lr->qbias[1][row]);
		dst[0] = bias + lr->margin;
		break;
	}
	}
}

int synth_sparse_check(const struct synth_opts *o, struct pf_err *err)
{
	if (o->sparsity != 0 && !(o->sparsity > 0 && o->sparsity < 1))
		return pf_errf(err, -EINVAL, "--sparsity %g: expected a fraction strictly between 0 and 1",
			       (double)o->sparsity);
	if (o->sparsity != 0 && o->act != PINFER_ACT_RELU && o->act != PINFER_ACT_DRELU)
		return pf_errf(err, -EINVAL,
			       "--sparsity needs --act relu or drelu: a SiLU model has no exact zeros");
	if (o->predictor && o->sparsity == 0)
		return pf_errf(err, -EINVAL,
			       "--predictor needs --sparsity (and --act relu or drelu): it predicts the neurons of a sparse model");
	if (o->predictor && (o->predictor < 2 || o->predictor % 2 ||
			     o->predictor > (o->n_embd < PRED_MAX ? o->n_embd : PRED_MAX)))
		return pf_errf(err, -EINVAL,
			       "--predictor %d: expected an even number of hidden units from 2 to %d (--dim, at most %d)",
			       o->predictor, o->n_embd < PRED_MAX ? o->n_embd : PRED_MAX, PRED_MAX);
	return 0;
}

static double norm_cdf(double x)
{
	return 0.5 * erfc(-x / M_SQRT2);
}

/* E[relu(mu + z)^2] for z ~ N(0, 1). */
static double relu_sq_mean(double mu)
{
	return (mu * mu + 1.0) * norm_cdf(mu) + mu * exp(-0.5 * mu * mu) / sqrt(2.0 * M_PI);
}

/* The inverse of norm_cdf for 0 < p < 1: Acklam's rational approximation
 * (relative error 1.2e-9), polished by one Halley step. */
static double norm_quantile(double p)
{
	static const double a[] = { -3.969683028665376e+01, 2.209460984245205e+02,
				    -2.759285104469687e+02, 1.383577518672690e+02,
				    -3.066479806614716e+01, 2.506628277459239e+00 };
	static const double b[] = { -5.447609879822406e+01, 1.615858368580409e+02,
				    -1.556989798598866e+02, 6.680131188771972e+01,
				    -1.328068155288572e+01 };
	static const double c[] = { -7.784894002430293e-03, -3.223964580411365e-01,
				    -2.400758277161838e+00, -2.549732539343734e+00,
				    4.374664141464968e+00, 2.938163982698783e+00 };
	static const double d[] = { 7.784695709041462e-03, 3.224671290700398e-01,
				    2.445134137142996e+00, 3.754408661907416e+00 };
	double x;
	if (p < 0.02425 || p > 1 - 0.02425) {
		double q = sqrt(-2.0 * log(p < 0.5 ? p : 1.0 - p));
		x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
		    ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
		if (p > 0.5)
			x = -x;
	} else {
		double q = p - 0.5, r = q * q;
		x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
		    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
	}
	double e = norm_cdf(x) - p;
	double u = e * sqrt(2.0 * M_PI) * exp(0.5 * x * x);
	return x - u / (1.0 + 0.5 * x * u);
}

/* The x with norm_cdf(x)^2 = norm_cdf(t): dReLU splits a neuron's firing
 * probability evenly between gate and up. The upper tail is computed from
 * 1 - norm_cdf(t), which keeps its precision where norm_cdf(t) rounds to 1. */
static double split_sqrt(double t)
{
	if (t < 0)
		return norm_quantile(sqrt(norm_cdf(t)));
	return -norm_quantile(norm_cdf(-t) / (1.0 + sqrt(norm_cdf(t))));
}

/* dReLU with a predictor: gate and up share the low-rank part L ~ N(0, 1 -
 * f^2) (over the tokens, in units of the gate's standard deviation) and
 * have their own noise ~ N(0, f^2), f = PRED_NOISE, so with bias mu a
 * neuron fires (gate > 0 and up > 0) with probability
 *     P(mu) = E_L[Phi((mu + L) / f)^2]
 * and its E[act^2] is E_L[(f^2 Q((mu + L) / f))^2], Q = relu_sq_mean. The
 * table holds both on a grid of mu (the probability as a normal quantile,
 * its upper half from 1 - P for precision), by quadrature over L. */
struct fire_table {
	double lo, h;
	int n;
	double *T;  /* n: the normal quantile of P(lo + i h) */
	double *E;  /* n: E[act^2] in units of the noise variances */
};

static void fire_table_free(struct fire_table *ft)
{
	free(ft->T);
	free(ft->E);
}

static int fire_table_make(struct fire_table *ft, double f)
{
	const double h = 0.01, lo = -12.0, hi = 31.0, sdl = sqrt(1.0 - f * f);
	int n = (int)lround((hi - lo) / h) + 1, kw = (int)ceil(16.0 * sdl / h), nx = n + 2 * kw;
	*ft = (struct fire_table){ .lo = lo, .h = h, .n = n, .T = malloc((size_t)n * sizeof(double)),
				   .E = malloc((size_t)n * sizeof(double)) };
	double *ker = malloc((size_t)(2 * kw + 1) * sizeof(double));
	double *p2 = malloc((size_t)nx * 3 * sizeof(double)), *c2 = p2 + nx, *e2 = c2 + nx;
	if (!ft->T || !ft->E || !ker || !p2) {
		free(ker);
		free(p2);
		fire_table_free(ft);
		return -ENOMEM;
	}
	double sum = 0;
	for (int m = -kw; m <= kw; m++)
		sum += ker[m + kw] = exp(-0.5 * (m * h / sdl) * (m * h / sdl));
	for (int m = 0; m <= 2 * kw; m++)
		ker[m] /= sum;
	for (int x = 0; x < nx; x++) {
		double z = (lo + (x - kw) * h) / f, q = f * f * relu_sq_mean(z);
		p2[x] = norm_cdf(z) * norm_cdf(z);
		c2[x] = norm_cdf(-z) * (1.0 + norm_cdf(z));
		e2[x] = q * q;
	}
	for (int i = 0; i < n; i++) {
		double p = 0, c = 0, e = 0;
		for (int m = 0; m <= 2 * kw; m++) {
			p += ker[m] * p2[i + m];
			c += ker[m] * c2[i + m];
			e += ker[m] * e2[i + m];
		}
		ft->T[i] = p < 0.5 ? norm_quantile(p) : -norm_quantile(c);
		ft->E[i] = e;
	}
	free(ker);
	free(p2);
	return 0;
}

/* The bias mu whose firing probability is norm_cdf(t); outside the table,
 * shifted by the table's last offset. */
static double fire_table_mu(const struct fire_table *ft, double t)
{
	int n = ft->n;
	if (t <= ft->T[0])
		return ft->lo + (t - ft->T[0]);
	if (t >= ft->T[n - 1])
		return ft->lo + (n - 1) * ft->h + (t - ft->T[n - 1]);
	int a = 0, b = n - 1;  /* T[a] <= t < T[b] */
	while (b - a > 1) {
		int c = (a + b) / 2;
		if (ft->T[c] <= t)
			a = c;
		else
			b = c;
	}
	return ft->lo + (a + (t - ft->T[a]) / (ft->T[b] - ft->T[a])) * ft->h;
}

static double fire_table_energy(const struct fire_table *ft, double mu)
{
	double pos = (mu - ft->lo) / ft->h;
	if (pos <= 0)
		return ft->E[0];
	if (pos >= ft->n - 1)
		return ft->E[ft->n - 1];
	int i = (int)pos;
	return ft->E[i] + (pos - i) * (ft->E[i + 1] - ft->E[i]);
}

/* Sets perm[0..n-1] to a permutation of 0..n-1 drawn (Fisher-Yates) from
 * the SplitMix64 sequence after state x; returns the state it ends at. */
static uint64_t shuffle(uint32_t *perm, int n, uint64_t x)
{
	for (int j = 0; j < n; j++)
		perm[j] = (uint32_t)j;
	for (int j = n - 1; j > 0; j--) {
		x = synth_splitmix64(x);
		int r = (int)(x % (uint64_t)(j + 1));
		uint32_t t = perm[j];
		perm[j] = perm[r];
		perm[r] = t;
	}
	return x;
}

/* Layer l's neurons: each gets a standardized bias t = m + SPREAD * eps,
 * eps the normal quantile of its rank under a random permutation (so the
 * biases are stratified, their distribution exact, and the hot neurons
 * scattered over the layer), m such that the mean of norm_cdf(t) over
 * eps ~ N(0, 1) is 1 - sparsity. Returns the layer's sum of E[act^2] in
 * units of the gate and up noise variances. */
static double layer_biases(const struct synth_opts *o, int l, uint32_t *perm, float *mu,
			   float *nu, const struct fire_table *ft)
{
	int ff = o->n_ff;
	double m = norm_quantile(1.0 - o->sparsity) * sqrt(1.0 + SPREAD * SPREAD);
	shuffle(perm, ff, synth_splitmix64(synth_splitmix64(o->seed ^ 0x5ba75e5ba75e5ba7ull) + (uint64_t)l));
	double energy = 0;
	for (int j = 0; j < ff; j++) {
		double t = m + SPREAD * norm_quantile((perm[j] + 0.5) / ff);
		t = fmin(fmax(t, -30.0), 30.0);
		if (nu && ft) {
			/* with a predictor: gate and up share a low-rank part */
			double s = fire_table_mu(ft, t);
			mu[j] = nu[j] = (float)s;
			energy += fire_table_energy(ft, s);
		} else if (nu) {
			double s = split_sqrt(t);
			mu[j] = nu[j] = (float)s;
			energy += relu_sq_mean(s) * relu_sq_mean(s);
		} else {
			mu[j] = (float)t;
			energy += relu_sq_mean(t);
		}
	}
	return energy;
}

/* Layer l's B: column i >= 1 goes to row 1 + perm(i) % K under a seeded
 * permutation, with a random sign, and the rows are normalized, so they are
 * orthonormal and do not see the bias channel. */
static void lowrank_layer(const struct synth_opts *o, int l, int K, uint32_t *group, float *w,
			  uint32_t *perm)
{
	int d = o->n_embd;
	memset(group, 0, (size_t)d * sizeof(*group));
	memset(w, 0, (size_t)d * sizeof(*w));
	if (!K)
		return;
	uint64_t x = shuffle(perm, d - 1,
			     synth_splitmix64(synth_splitmix64(o->seed ^ 0x9d1c7ab1e5eed001ull) + (uint64_t)l));
	for (int i = 1; i < d; i++) {
		uint32_t c = perm[i - 1] % (uint32_t)K;
		/* the values v in 0..d-2 with v % K == c */
		uint32_t size = (uint32_t)(d - 2 - (int)c) / (uint32_t)K + 1;
		x = synth_splitmix64(x);
		group[i] = c + 1;
		w[i] = (x >> 63 ? -1.0f : 1.0f) / sqrtf((float)size);
	}
}

/* The biases of every layer, and the bias channel's gain at every FFN
 * input from the predicted norm of the residual stream's other dimensions
 * (docs/sparsity-synth.md):
 *   R^2 of the embeddings            d - 1 (normalized rows, std 1)
 *   N^2 = |rmsnorm(x)[1..]|^2        R^2 d / (C^2 + R^2)
 *   attention adds                   (d - 1) / d N^2 (each head sees its own token's v)
 *   the FFN adds                     (d - 1) / n_ff (N^2 / d)^2 sum_j E[act_j^2 / noise^2]
 * and gain = BIAS_GAIN R / C makes the FFN input's bias channel BIAS_GAIN N.
 * With a predictor, also every layer's B and struct lowrank, and dReLU's
 * biases and energies from struct fire_table (gate and up then share their
 * low-rank part). */
static int sparse_plan_make(struct sparse_plan *sp, const struct synth_opts *o,
			    struct pf_err *err)
{
	size_t nl = (size_t)o->n_layer, ff = (size_t)o->n_ff, d_ = (size_t)o->n_embd;
	bool drelu = o->act == PINFER_ACT_DRELU;
	int K = o->predictor ? o->predictor / 2 - 1 : 0;
	/* the low-rank part's share of a gate row (see struct lowrank) */
	sp->noise = K ? PRED_NOISE : 1.0;
	struct fire_table ft = { 0 };
	bool table = drelu && K > 0;
	uint32_t *perm = malloc((ff > d_ ? ff : d_) * sizeof(*perm));
	sp->mu = malloc(nl * ff * sizeof(float));
	sp->nu = drelu ? malloc(nl * ff * sizeof(float)) : NULL;
	sp->gain = malloc(nl * sizeof(float));
	if (o->predictor) {
		sp->lr = calloc(nl, sizeof(*sp->lr));
		sp->group = malloc(nl * d_ * sizeof(*sp->group));
		sp->w = malloc(nl * d_ * sizeof(*sp->w));
		sp->qbias = malloc(2 * ff * sizeof(*sp->qbias));
	}
	if (!perm || !sp->mu || (drelu && !sp->nu) || !sp->gain ||
	    (o->predictor && (!sp->lr || !sp->group || !sp->w || !sp->qbias)) ||
	    (table && fire_table_make(&ft, PRED_NOISE))) {
		free(perm);
		return pf_errf(err, -ENOMEM, "out of memory for the biases of %zu neurons", nl * ff);
	}
	double d = o->n_embd, C = BIAS_CHANNEL, R2 = d - 1.0;
	for (size_t l = 0; l < nl; l++) {
		double energy = layer_biases(o, (int)l, perm, sp->mu + l * ff,
					     drelu ? sp->nu + l * ff : NULL, table ? &ft : NULL);
		double N2 = R2 * d / (C * C + R2);
		R2 += (d - 1.0) / d * N2;
		sp->gain[l] = (float)(BIAS_GAIN * sqrt(R2) / C);
		N2 = R2 * d / (C * C + R2);
		R2 += (d - 1.0) / (double)ff * (N2 / d) * (N2 / d) * energy;
		if (o->predictor) {
			struct lowrank *lr = &sp->lr[l];
			lowrank_layer(o, (int)l, K, sp->group + l * d_, sp->w + l * d_, perm);
			double tail = sqrt((d - 1.0) / d);  /* sigma sqrt(d - 1) */
			*lr = (struct lowrank){
				.group = sp->group + l * d_, .w = sp->w + l * d_, .K = K,
				.R = o->predictor,
				.akey = synth_splitmix64(synth_splitmix64(o->seed ^ 0xa11ce5eed0c0ffeeull) + l),
				.ca = (float)(tail * sqrt(1.0 - sp->noise * sp->noise)),
				.ce = (float)(tail * sp->noise),
				.qbias = { sp->qbias, sp->qbias + ff },
			};
		}
	}
	free(perm);
	fire_table_free(&ft);
	return 0;
}

/* Gives the tensors of plan() their sparse roles; the embeddings get std 1
 * (instead of 1/sqrt(d)), so that the token stays a visible part of the
 * residual stream next to what the layers add. */
static void sparse_roles(struct item *items, const struct synth_opts *o,
			 const struct sparse_plan *sp)
{
	size_t ff = (size_t)o->n_ff;
	items[0].role = ROLE_EMBD;
	items[0].std = 1.0f;
	for (int l = 0; l < o->n_layer; l++) {
		/* attn_norm .. ffn_down, then fc1, fc2, ffn_down_t */
		struct item *it = &items[1 + synth_layer_items(o) * (size_t)l];
		it[1].role = ROLE_QUERY;
		it[1].src_key = it[2].key;
		it[1].head_dim = o->n_embd / o->n_head;
		it[1].group = o->n_head / o->n_head_kv;
		it[2].role = it[3].role = ROLE_READ;
		it[4].role = it[8].role = ROLE_WRITE;
		it[5].role = ROLE_FFN_NORM;
		it[5].gain = sp->gain[l];
		it[6].role = ROLE_BIASED;
		it[6].mu = sp->mu + (size_t)l * ff;
		if (sp->nu) {
			it[7].role = ROLE_BIASED;
			it[7].mu = sp->nu + (size_t)l * ff;
		} else {
			it[7].role = ROLE_READ;
		}
		if (!o->predictor)
			continue;
		struct lowrank *lr = &sp->lr[l];
		it[6].role = ROLE_LOWRANK;
		it[6].lr = lr;
		if (sp->nu) {
			it[7].role = ROLE_LOWRANK;
			it[7].lr = lr;
			it[7].half = 1;
		}
		it[8].role = ROLE_DOWN_H;
		it[9].role = ROLE_FC1;
		it[9].lr = lr;
		it[10].role = ROLE_FC2;
		it[10].lr = lr;
		it[10].half = sp->nu != NULL;
		it[11].role = ROLE_DOWN_T;
	}
}

/* The predictor's margin M (in units of the gate's standard deviation
 * sigma N, see docs/sparsity-synth.md). For a token, neuron j's gate is
 * sigma N (X + noise) with X = mu_j + L_j what the predictor computes: L_j
 * ~ N(0, sdl^2) over the tokens and mu_j distributed as the layer's biases
 * (mu; every layer has the same ones, permuted). The noise has standard
 * deviation fe (PRED_NOISE and the gate's quantization error); the neuron
 * fires with probability Phi(X / fe)^k given X (k = 2 for dReLU: gate and
 * up have independent noise). The predictor computes X with an error of
 * standard deviation ep (its own rounding, the same for gate and up), so
 * the neuron is predicted with probability Phi((X + M) / ep) (X > -M when
 * ep is 0). Over the tokens and neurons the recall is E[fire, predicted] /
 * E[fire]: the smallest M that makes it PRED_RECALL, found by bisection
 * over a grid of X (the biases binned, convolved with L's density).
 * *ratio: the expected predicted / active. */
static double predicted_share(double x, double m, double ep)
{
	return ep > 0 ? norm_cdf((x + m) / ep) : x > -m ? 1.0 : 0.0;
}

static double predictor_margin(const float *mu, int n, double sdl, double fe, double ep, int k,
			       double *ratio)
{
	const double h = 0.01, lo = -30.0;
	const int ng = 6001;
	int kw = sdl > 0 ? (int)ceil(8.0 * sdl / h) : 0;
	double *hist = calloc((size_t)ng * 2 + (size_t)(2 * kw + 1), sizeof(double));
	if (!hist)
		return 30.0;  /* predict everything */
	double *dens = hist + ng, *ker = dens + ng;
	for (int j = 0; j < n; j++) {
		double pos = (fmin(fmax(mu[j], -20.0), 20.0) - lo) / h;
		int i = (int)pos;
		hist[i] += (1.0 - (pos - i)) / n;
		hist[i + 1] += (pos - i) / n;
	}
	double sum = 0;
	for (int m = -kw; m <= kw; m++)
		sum += ker[m + kw] = sdl > 0 ? exp(-0.5 * (m * h / sdl) * (m * h / sdl)) : 1.0;
	for (int i = 0; i < ng; i++)
		if (hist[i] > 0)
			for (int m = -kw; m <= kw; m++)
				if (i + m >= 0 && i + m < ng)
					dens[i + m] += hist[i] * ker[m + kw] / sum;
	double active = 0;
	for (int i = 0; i < ng; i++)
		active += dens[i] * pow(norm_cdf((lo + i * h) / fe), k);
	/* the miss falls as M grows: the smallest M whose miss is in budget */
	double m_lo = lo, m_hi = -lo, pred = 1.0;
	while (m_hi - m_lo > h / 4) {
		double m = 0.5 * (m_lo + m_hi), miss = 0;
		for (int i = 0; i < ng; i++)
			miss += dens[i] * pow(norm_cdf((lo + i * h) / fe), k) *
				(1.0 - predicted_share(lo + i * h, m, ep));
		if (miss > (1.0 - PRED_RECALL) * active)
			m_lo = m;
		else
			m_hi = m;
	}
	for (int i = 0; i < ng; i++)
		pred -= dens[i] * (1.0 - predicted_share(lo + i * h, m_hi, ep));
	free(hist);
	*ratio = active > 0 ? pred / active : 0;
	return m_hi;
}

/* The relative error the weight type adds to the columns 1.. of a matrix's
 * rows (some rows of layer 0's): for the gate, noise the predictor does
 * not see; for fc1 and fc2, noise on the predictor's own score. The rms
 * error of column 0 (the bias, which meets the bias channel) goes to
 * *bias_err. */
static double quant_noise(const struct item *it, double *bias_err)
{
	const struct pf_quant_ops *ops = pf_quant_ops(it->type);
	int64_t n = (int64_t)it->ne[0], rows = (int64_t)it->ne[1];
	uint64_t row_bytes;
	if (!pf_dtype_bytes(it->type, (uint64_t)n, &row_bytes))
		return 0;
	float *x = malloc(2 * (size_t)n * sizeof(float));
	void *q = malloc(row_bytes);
	double err2 = 0, norm2 = 0, bias2 = 0;
	int64_t sampled = 0;
	for (int64_t s = 0; x && q && s < 64 && s < rows; s++, sampled++) {
		int64_t row = s * rows / (rows < 64 ? rows : 64);
		synth_sparse_row(it, row, x);
		ops->from_float(x, q, n);
		ops->to_float(q, x + n, n);
		bias2 += (double)(x[n] - x[0]) * (x[n] - x[0]);
		for (int64_t i = 1; i < n; i++) {
			err2 += (double)(x[n + i] - x[i]) * (x[n + i] - x[i]);
			norm2 += (double)x[i] * x[i];
		}
	}
	free(x);
	free(q);
	*bias_err = sampled ? sqrt(bias2 / (double)sampled) : 0;
	return norm2 > 0 ? sqrt(err2 / norm2) : 0;
}

/* Sets every layer's margin (the same: all layers have the same biases and
 * noise). The predictor's score is the low-rank part L of the gate, of
 * standard deviation sdl, plus fc2's bias column times the bias channel
 * (BIAS_GAIN N): the rounding of fc1 and fc2 adds their relative error of
 * L (fc1's rows, a few weights each, are nearly exact in any block
 * format; fc2's are not below 8 bits) and fc2's error of the bias, which
 * is a different offset for each neuron. */
static void predictor_finish(struct item *items, const struct synth_opts *o,
			     struct sparse_plan *sp)
{
	/* layer 0's (sparse_roles' order) */
	const struct item *gate = &items[1 + 6], *up = &items[1 + 7];
	const struct item *fc1 = &items[1 + 9], *fc2 = &items[1 + 10];
	double sdl = sqrt(1.0 - sp->noise * sp->noise), bias_err;
	/* the gate's rows (and dReLU's up's) first: fc2's take their stored biases */
	sp->quant = quant_noise(gate, &bias_err);
	if (sp->nu)
		quant_noise(up, &bias_err);
	double q1 = quant_noise(fc1, &bias_err), q2 = quant_noise(fc2, &bias_err);
	double b = bias_err * BIAS_GAIN / gate->std;
	sp->pred_type = fc2->type;
	sp->pred_quant = sqrt(sdl * sdl * (q1 * q1 + q2 * q2) + b * b);
	double fe = sqrt(sp->noise * sp->noise + sp->quant * sp->quant);
	sp->margin = predictor_margin(sp->mu, o->n_ff, sdl, fe, sp->pred_quant, sp->nu ? 2 : 1, &sp->ratio);
	for (int l = 0; l < o->n_layer; l++)
		sp->lr[l].margin = (float)(sp->margin * gate->std / BIAS_GAIN);
}

int synth_sparse_plan(struct sparse_plan *sp, struct item *items, const struct synth_opts *o,
		      struct pf_err *err)
{
	int r = sparse_plan_make(sp, o, err);
	if (r)
		return r;
	sparse_roles(items, o, sp);
	if (o->predictor)
		predictor_finish(items, o, sp);
	return 0;
}

void synth_sparse_plan_free(struct sparse_plan *sp)
{
	free(sp->mu);
	free(sp->nu);
	free(sp->gain);
	free(sp->lr);
	free(sp->group);
	free(sp->w);
	free(sp->qbias);
}

void synth_sparse_log(FILE *log, const struct synth_opts *o, const struct sparse_plan *sp)
{
	if (o->sparsity > 0)
		fprintf(log, "synth: %s FFN built to be %.3g sparse; bias channel gain %.3g (layer 0) to %.3g (layer %d)\n",
			pinfer_ffn_act_name(o->act), (double)o->sparsity, (double)sp->gain[0],
			(double)sp->gain[o->n_layer - 1], o->n_layer - 1);
	if (o->predictor)
		fprintf(log, "synth: predictor of %d hidden units (rank %d and the bias) in PowerInfer's format (%s): noise %.3g, quantization error %.3g (gate) and %.3g (predictor), margin %.3g: expected recall %.3g, predicted/active %.3g\n",
			o->predictor, o->predictor / 2 - 1, pf_dtype_info(sp->pred_type)->name,
			sp->noise, sp->quant, sp->pred_quant, sp->margin,
			PRED_RECALL, sp->ratio);
}
