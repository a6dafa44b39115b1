/* The feed-forward sublayer in every sparsity mode.
 *
 * Decode in a sparse mode (one token): the gate projection for every
 * neuron (gate and threshold modes need it to know which fire), the
 * neurons that fire picked from it, the up projection for those rows only,
 * (predictor mode: the predictor picks the neurons, and gate and up are
 * computed for those rows only),
 * and the down projection as a sum of those neurons' rows of the
 * neuron-major down matrix, scaled by their activations, split across the
 * threads by active-list chunks. The weight bytes read drop from 3 n_ff
 * rows to n_ff + 2 * active.
 *
 * Prefill, and the dense mode: every neuron through the matrix products,
 * with the neurons a sparse mode skips zeroed before the down projection,
 * so prefill and decode agree on which neurons count. */
#include <math.h>
#include <string.h>

#include "ops.h"
#include "sparse.h"

static inline float silu(float g)
{
	return g / (1.0f + expf(-g));
}

/* Whether neuron activity is counted for a dense evaluation: only ReLU
 * models have zeros to count there. */
static bool counts_zeros(const struct pinfer_model_info *hp)
{
	return hp->ffn_act == PINFER_ACT_RELU || hp->ffn_act == PINFER_ACT_DRELU ||
	       hp->sparsity == PINFER_SPARSITY_THRESHOLD;
}

/* The predictor's scores for T tokens of c->xb into c->pred_s. */
static void predict(struct pinfer_ctx *c, const struct pf_layer *L, int T)
{
	int64_t rank = L->fc1.rows;
	struct pf_matmul_out h = { .w = &L->fc1, .y = c->pred_h };
	pf_matmul(c->pool, &c->scratch, &h, 1, c->xb, T);
	for (int64_t i = 0; i < (int64_t)T * rank; i++)
		c->pred_h[i] = c->pred_h[i] > 0.0f ? c->pred_h[i] : 0.0f;
	struct pf_matmul_out s = { .w = &L->fc2, .y = c->pred_s };
	pf_matmul(c->pool, &c->scratch, &s, 1, c->pred_h, T);
}

static void ffn_full(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T)
{
	const struct pinfer_model *m = c->model;
	const struct pinfer_model_info *hp = &m->info;
	int64_t n = (int64_t)T * hp->n_ff;
	struct pf_matmul_out gate_up[2] = { { .w = &L->ffn_gate, .y = c->hb }, { .w = &L->ffn_up, .y = c->hb2 } };
	pf_matmul(c->pool, &c->scratch, gate_up, 2, c->xb, T);
	if (c->probe)
		memcpy(c->probe_gate, c->hb, (size_t)n * sizeof(float));
	if (hp->sparsity == PINFER_SPARSITY_THRESHOLD) {
		float thr = m->thresholds[l];
		for (int64_t i = 0; i < n; i++) {
			float s = silu(c->hb[i]);
			c->hb[i] = fabsf(s) > thr ? s * c->hb2[i] : 0.0f;
		}
	} else {
		pf_ffn_act(c->hb, c->hb2, n, hp->ffn_act);
	}
	if (hp->sparsity == PINFER_SPARSITY_PREDICTOR) {
		predict(c, L, T);
		for (int64_t i = 0; i < n; i++)
			if (!(c->pred_s[i] > m->pred_threshold))
				c->hb[i] = 0.0f;
	}
	c->ffn_stats.neurons += (uint64_t)n;
	if (counts_zeros(hp)) {
		uint64_t active = 0;
		for (int64_t i = 0; i < n; i++)
			active += c->hb[i] != 0.0f;
		c->ffn_stats.active += active;
	} else {
		c->ffn_stats.active += (uint64_t)n;
	}
	if (c->probe)
		c->probe(c->probe_data, l, T, c->xb,
			 hp->sparsity == PINFER_SPARSITY_PREDICTOR ? NULL : c->probe_gate, c->hb);
	struct pf_matmul_out down = { .w = &L->ffn_down, .y = c->xb };
	pf_matmul(c->pool, &c->scratch, &down, 1, c->hb, T);
}

struct axpy_job {
	const struct pf_weight *w;
	const int32_t *rows;
	const float *coef;
	float *partial;     /* per thread: dim floats of sum, dim of scratch */
	int64_t dim;
};

static void axpy_rows(void *arg, int64_t begin, int64_t end, int thread)
{
	const struct axpy_job *j = arg;
	const struct pf_weight *w = j->w;
	float *y = j->partial + (size_t)thread * 2 * j->dim;
	float *tmp = y + j->dim;
	for (int64_t i = begin; i < end; i++) {
		const uint8_t *row = w->data + (size_t)j->rows[i] * w->row_bytes;
		if (w->ops->axpy) {
			w->ops->axpy((int)j->dim, j->coef[i], row, y);
		} else {
			w->ops->to_float_fast(row, tmp, j->dim);
			float a = j->coef[i];
			for (int64_t k = 0; k < j->dim; k++)
				y[k] += a * tmp[k];
		}
	}
}

/* Rows of active neurons per chunk a thread takes: enough to amortize
 * taking it, few enough to balance a few hundred active neurons. */
#define AXPY_CHUNK 16

static void ffn_sparse(struct pinfer_ctx *c, const struct pf_layer *L, int l)
{
	const struct pinfer_model *m = c->model;
	const struct pinfer_model_info *hp = &m->info;
	int n_ff = hp->n_ff;
	int64_t dim = hp->n_embd;
	float *gate = c->hb, *up = c->hb2;
	int32_t *idx = c->active;
	int n = 0;
	if (hp->sparsity == PINFER_SPARSITY_PREDICTOR) {
		/* The predictor picks the neurons; gate and up only for them. */
		predict(c, L, 1);
		for (int j = 0; j < n_ff; j++)
			if (c->pred_s[j] > m->pred_threshold)
				idx[n++] = j;
		struct pf_matmul_out gu[2] = {
			{ .w = &L->ffn_gate, .y = gate, .rows = idx, .n_rows = n },
			{ .w = &L->ffn_up, .y = up, .rows = idx, .n_rows = n },
		};
		pf_matmul(c->pool, &c->scratch, gu, 2, c->xb, 1);
	} else {
		struct pf_matmul_out g = { .w = &L->ffn_gate, .y = gate };
		pf_matmul(c->pool, &c->scratch, &g, 1, c->xb, 1);
		if (hp->sparsity == PINFER_SPARSITY_THRESHOLD) {
			float thr = m->thresholds[l];
			for (int j = 0; j < n_ff; j++)
				if (fabsf(silu(gate[j])) > thr)
					idx[n++] = j;
		} else {
			for (int j = 0; j < n_ff; j++)
				if (gate[j] > 0.0f)
					idx[n++] = j;
		}
		struct pf_matmul_out u = { .w = &L->ffn_up, .y = up, .rows = idx, .n_rows = n };
		pf_matmul(c->pool, &c->scratch, &u, 1, c->xb, 1);
	}

	/* The activations of the chosen neurons, compacted; dReLU drops those
	 * whose up is not positive. */
	float *coef = c->coef;
	int k = 0;
	for (int i = 0; i < n; i++) {
		int j = idx[i];
		float a;
		if (hp->sparsity == PINFER_SPARSITY_THRESHOLD)
			a = silu(gate[j]) * up[j];
		else if (gate[j] <= 0.0f)
			a = 0.0f;  /* a predicted neuron that does not fire */
		else if (hp->ffn_act == PINFER_ACT_DRELU)
			a = up[j] > 0.0f ? gate[j] * up[j] : 0.0f;
		else
			a = gate[j] * up[j];
		if (a != 0.0f) {
			idx[k] = j;
			coef[k++] = a;
		}
	}
	c->ffn_stats.neurons += (uint64_t)n_ff;
	c->ffn_stats.active += (uint64_t)k;
	if (c->probe) {
		bool pred = hp->sparsity == PINFER_SPARSITY_PREDICTOR;
		if (!pred)
			memcpy(c->probe_gate, gate, (size_t)n_ff * sizeof(float));
		memset(c->probe_act, 0, (size_t)n_ff * sizeof(float));
		for (int i = 0; i < k; i++)
			c->probe_act[idx[i]] = coef[i];
		c->probe(c->probe_data, l, 1, c->xb, pred ? NULL : c->probe_gate, c->probe_act);
	}

	int n_threads = pf_pool_threads(c->pool);
	memset(c->partial, 0, (size_t)n_threads * 2 * (size_t)dim * sizeof(float));
	struct axpy_job j = { &L->ffn_down_t, idx, coef, c->partial, dim };
	pf_pool_run(c->pool, axpy_rows, &j, k, AXPY_CHUNK);
	float *y = c->xb;
	memcpy(y, c->partial, (size_t)dim * sizeof(float));
	for (int t = 1; t < n_threads; t++) {
		const float *p = c->partial + (size_t)t * 2 * dim;
		for (int64_t i = 0; i < dim; i++)
			y[i] += p[i];
	}
}

void pf_ffn(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T)
{
	if (T == 1 && c->model->info.sparsity != PINFER_SPARSITY_DENSE)
		ffn_sparse(c, L, l);
	else
		ffn_full(c, L, l, T);
}
