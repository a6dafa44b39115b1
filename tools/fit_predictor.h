/* Training one layer's low-rank activation predictor (PowerInfer's fc1 and
 * fc2, docs/sparsity.md "Fitting predictors"): s = W2 relu(W1 x), neuron j
 * predicted active when s_j > 1. All the heavy algebra is cblas_sgemm,
 * called from the calling thread only. */
#ifndef PINFER_TOOLS_FIT_PREDICTOR_H
#define PINFER_TOOLS_FIT_PREDICTOR_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* The threshold every fitted layer is scaled to (powerinfer.sparse_threshold). */
#define FIT_THRESHOLD 1.0f

struct fit_opts {
	int rank;           /* R, hidden units */
	int epochs;
	int batch;
	float lr;
	float pos_weight;   /* mean weight of an active neuron in the loss; <= 0: auto */
	float contrib;      /* 0..1: how much of an active neuron's weight follows its output
			     * contribution (the rest is the same for all) */
	float recall;       /* the recall the threshold keeps on the threshold rows */
	float missed;       /* and the output it may miss there: sqrt(missed energy / energy),
			     * the energy of a (token, neuron) its contribution squared; <= 0: no limit */
	uint64_t seed;
	int power_iters;    /* subspace iterations of the initialization */
	float val_share;    /* share of the rows kept out of training to pick the threshold */
};

/* One layer's training data: n rows of x (d floats) and the active neurons
 * with their output contributions (n_ff bytes a row, fit_code: 0 for an
 * inactive neuron), and the matrix whose low-rank part initializes the
 * predictor (n_ff x d: the gate, or gate + up for dReLU). */
struct fit_data {
	int n, d, n_ff;
	const float *x;
	const uint8_t *y;
	const float *init;
	const int *group;  /* per row: its sequence, for the threshold split; may be NULL */
	const uint8_t *generated;  /* per row: 1 for a token the model generated; may be NULL */
};

/* What fitting found, on the training data. */
struct fit_result {
	float threshold;    /* the raw threshold on W2's original scale, folded into W2 */
	float recall, precision, missed;      /* on the threshold rows (missed: as fit_opts.missed) */
	float train_recall, train_precision, train_missed;  /* on the rows trained on */
	int by_output;      /* the threshold was lowered below the recall's for fit_opts.missed */
	int n_val, n_train;
	int n_val_generated; /* threshold rows the model generated */
	double active_rate; /* share of (token, neuron) pairs active */
	float pos_weight;   /* used */
	int clamped;        /* the raw threshold was <= 0 and had to be raised */
};

/* An active neuron's output contribution c = |act_j| |down column j| in a
 * byte: 8 steps an octave, 2^-15.875 .. 2^15.875 (clamped), never 0. */
static inline uint8_t fit_code(float c)
{
	if (!(c > 0x1p-16f))
		return 1;
	int v = (int)lrintf(8.0f * log2f(c)) + 128;
	return (uint8_t)(v < 1 ? 1 : v > 255 ? 255 : v);
}

static inline float fit_contrib(uint8_t code)
{
	return exp2f((float)((int)code - 128) * 0.125f);
}

/* Fits W1 (R x d) and W2 (n_ff x R), both allocated by the caller, so that
 * W2 relu(W1 x) > FIT_THRESHOLD keeps opts->recall of the active neurons of
 * the threshold rows (a seeded val_share of the sequences, not trained
 * on; the text's and the generated ones each) and misses at most
 * opts->missed of their output. round(ptr, n) (may be NULL) is applied to
 * W1 before the threshold is chosen and to W2 after it is folded in: the
 * rounding of the output format. Returns 0, or -1 when out of memory. */
int fit_layer(const struct fit_data *data, const struct fit_opts *o, float *w1, float *w2,
	      void (*round)(float *, size_t), struct fit_result *res);

/* Scores of n rows of x: s (n x n_ff) = W2 relu(W1 x); h is scratch of n x R. */
void fit_scores(int n, int d, int n_ff, int rank, const float *x, const float *w1, const float *w2,
		float *h, float *s);

#endif
