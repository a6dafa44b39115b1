/* Training one layer's low-rank activation predictor (PowerInfer's fc1 and
 * fc2, docs/sparsity.md "Fitting predictors"): s = W2 relu(W1 x), neuron j
 * predicted active when s_j > 1. All the heavy algebra is cblas_sgemm,
 * called from the calling thread only. */
#ifndef PINFER_TOOLS_FIT_PREDICTOR_H
#define PINFER_TOOLS_FIT_PREDICTOR_H

#include <stddef.h>
#include <stdint.h>

/* The threshold every fitted layer is scaled to (powerinfer.sparse_threshold). */
#define FIT_THRESHOLD 1.0f

struct fit_opts {
	int rank;           /* R, hidden units */
	int epochs;
	int batch;
	float lr;
	float pos_weight;   /* weight of an active neuron in the loss; <= 0: auto */
	float recall;       /* the recall the threshold keeps on the training data */
	uint64_t seed;
	int power_iters;    /* subspace iterations of the initialization */
	float val_share;    /* share of the rows kept out of training to pick the threshold */
};

/* One layer's training data: n rows of x (d floats) and the active neurons
 * (bits, row-major, (n_ff + 7) / 8 bytes a row), and the matrix whose
 * low-rank part initializes the predictor (n_ff x d: the gate, or gate +
 * up for dReLU). */
struct fit_data {
	int n, d, n_ff;
	const float *x;
	const uint8_t *y;
	const float *init;
	const int *group;  /* per row: its sequence, for the threshold split; may be NULL */
};

/* What fitting found, on the training data. */
struct fit_result {
	float threshold;    /* the raw threshold on W2's original scale, folded into W2 */
	float recall, precision;              /* on the threshold rows */
	float train_recall, train_precision;  /* on the rows trained on */
	int n_val, n_train;
	double active_rate; /* share of (token, neuron) pairs active */
	float pos_weight;   /* used */
	int clamped;        /* the raw threshold was <= 0 and had to be raised */
};

static inline int fit_label(const uint8_t *y, int row_bytes, int t, int j)
{
	return (y[(size_t)t * (size_t)row_bytes + (size_t)(j >> 3)] >> (j & 7)) & 1;
}

/* Fits W1 (R x d) and W2 (n_ff x R), both allocated by the caller, so that
 * W2 relu(W1 x) > FIT_THRESHOLD keeps opts->recall of the active neurons of
 * the threshold rows (a seeded val_share of the rows, not trained on). round(ptr, n) (may be NULL) is applied to W1 before
 * the threshold is chosen and to W2 after it is folded in: the rounding of
 * the output format. Returns 0, or -1 when out of memory. */
int fit_layer(const struct fit_data *data, const struct fit_opts *o, float *w1, float *w2,
	      void (*round)(float *, size_t), struct fit_result *res);

/* Scores of n rows of x: s (n x n_ff) = W2 relu(W1 x); h is scratch of n x R. */
void fit_scores(int n, int d, int n_ff, int rank, const float *x, const float *w1, const float *w2,
		float *h, float *s);

#endif
