/* Prefill, and the dense mode: every neuron through the matrix products,
 * with the neurons a sparse mode skips zeroed before the down projection,
 * so prefill and decode (ffn.c) agree on which neurons count. In a sparse
 * mode the weights are the neuron bundles' (bundle.h): gate and up rows as
 * strided matrices, and the down projection from the neuron-major down
 * rows, only for the neurons that fired; an offloaded model's bundles
 * stream through the store's staging buffer a run of clusters at a time. */
#include <string.h>

#include "ffn_internal.h"
#include "ffn_store.h"
#include "ops.h"

/* Whether neuron activity is counted for a dense evaluation: only ReLU
 * models have zeros to count there. */
static bool counts_zeros(const struct pinfer_model_info *hp)
{
	return hp->ffn_act == PINFER_ACT_RELU || hp->ffn_act == PINFER_ACT_DRELU ||
	       hp->sparsity == PINFER_SPARSITY_THRESHOLD;
}

/* A view of rows [p0, p0 + rows) of w, whose row p0 starts at data. */
static struct pf_weight rows_view(const struct pf_weight *w, const uint8_t *data, int64_t rows)
{
	struct pf_weight v = *w;
	v.data = data;
	v.rows = rows;
	return v;
}

/* The activation of columns [p0, p1) of T rows of hb (gate) and hb2 (up),
 * with the neurons the mode skips zeroed. */
static void activate(struct pinfer_ctx *c, int l, int T, int64_t p0, int64_t p1)
{
	const struct pinfer_model *m = c->model;
	const struct pinfer_model_info *hp = &m->info;
	for (int t = 0; t < T; t++) {
		size_t row = (size_t)t * (size_t)hp->n_ff;
		float *g = c->hb + row + p0, *u = c->hb2 + row + p0;
		int64_t n = p1 - p0;
		if (hp->sparsity == PINFER_SPARSITY_THRESHOLD) {
			float thr = m->thresholds[l];
			for (int64_t i = 0; i < n; i++) {
				float s = pf_silu(g[i]);
				g[i] = fabsf(s) > thr ? s * u[i] : 0.0f;
			}
		} else {
			pf_ffn_act(g, u, n, hp->ffn_act);
		}
		if (hp->sparsity == PINFER_SPARSITY_PREDICTOR) {
			const float *score = c->pred_s + row + p0;
			for (int64_t i = 0; i < n; i++)
				if (!(score[i] > m->pred_threshold))
					g[i] = 0.0f;
		}
	}
}

/* The statistics and the probe of a prefill, once hb holds every
 * neuron's activation. */
static void count_prefill(struct pinfer_ctx *c, int l, int T)
{
	const struct pinfer_model_info *hp = &c->model->info;
	int64_t n = (int64_t)T * hp->n_ff;
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
			 hp->sparsity == PINFER_SPARSITY_PREDICTOR || c->model->bundles.gate ? NULL : c->probe_gate,
			 c->hb);
}

void pf_ffn_dense(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T)
{
	int64_t n = (int64_t)T * c->model->info.n_ff;
	struct pf_matmul_out gate_up[2] = { { .w = &L->ffn_gate, .y = c->hb }, { .w = &L->ffn_up, .y = c->hb2 } };
	pf_matmul(c->pool, &c->scratch, gate_up, 2, c->xb, T);
	if (c->probe)
		memcpy(c->probe_gate, c->hb, (size_t)n * sizeof(float));
	activate(c, l, T, 0, c->model->info.n_ff);
	count_prefill(c, l, T);
	struct pf_matmul_out down = { .w = &L->ffn_down, .y = c->xb };
	pf_matmul(c->pool, &c->scratch, &down, 1, c->hb, T);
}

/* Prefill's down projection from neuron-major rows: neurons [p0, p1),
 * their rows in down (row 0 = neuron p0), added into y. */
struct down_t_job {
	const struct pf_weight *down;
	const float *h;  /* T x n_ff activations */
	float *y;        /* T x dim */
	int64_t n_ff, dim, T, tile, p0, p1;
};

/* The threads take tiles of tokens and walk the neurons: each output row
 * is summed by one thread, in neuron order (no partial sums to add up, the
 * same result whatever the scheduling), and a down row is read once per
 * tile in which some token fired it. */
static void run_down_t(void *arg, int64_t begin, int64_t end, int thread)
{
	(void)thread;
	const struct down_t_job *j = arg;
	pf_axpy_fn axpy = j->down->ops->axpy;
	int n = (int)j->dim;
	for (int64_t k = begin; k < end; k++) {
		int64_t t0 = k * j->tile, t1 = t0 + j->tile < j->T ? t0 + j->tile : j->T;
		for (int64_t i = j->p0; i < j->p1; i++) {
			const uint8_t *row = NULL;
			for (int64_t t = t0; t < t1; t++) {
				float a = j->h[t * j->n_ff + i];
				if (a == 0.0f)
					continue;
				if (!row)
					row = pf_weight_row(j->down, i - j->p0);
				axpy(n, a, row, j->y + t * j->dim);
			}
		}
	}
}

/* Tokens per tile: up to 8 share each read of a down row, while there are
 * still a couple of tiles per thread to balance. */
#define DOWN_T_TILE_MAX 8

static void down_t_add(struct pinfer_ctx *c, const struct pf_weight *down, int T, int64_t p0, int64_t p1)
{
	int n_threads = pf_pool_threads(c->pool);
	int64_t tile = ((int64_t)T + 2 * n_threads - 1) / (2 * n_threads);
	tile = tile < 1 ? 1 : tile > DOWN_T_TILE_MAX ? DOWN_T_TILE_MAX : tile;
	struct down_t_job j = { .down = down, .h = c->hb, .y = c->ffn_out, .n_ff = c->model->info.n_ff,
				.dim = down->cols, .T = T, .tile = tile, .p0 = p0, .p1 = p1 };
	pf_pool_run(c->pool, run_down_t, &j, (T + tile - 1) / tile, 1);
}

/* Copies a T x (p1 - p0) block into columns [p0, p1) of a T x n_ff one. */
static void scatter(float *dst, const float *src, int T, int64_t n_ff, int64_t p0, int64_t p1)
{
	for (int t = 0; t < T; t++)
		memcpy(dst + (size_t)t * (size_t)n_ff + p0, src + (size_t)t * (size_t)(p1 - p0),
		       (size_t)(p1 - p0) * sizeof(float));
}

/* One run of clusters of a prefill in a sparse mode: neurons [p0, p1),
 * whose bundles start at base. */
static void prefill_run(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T, const struct pf_bundle_layout *bl,
			const uint8_t *base, int64_t p0, int64_t p1)
{
	const struct pinfer_model *m = c->model;
	int64_t n_ff = m->info.n_ff, rows = p1 - p0;
	bool whole = p0 == 0 && p1 == n_ff;
	float *g = whole ? c->hb : c->chunk, *u = whole ? c->hb2 : c->chunk + (size_t)T * (size_t)rows;
	struct pf_weight gv = rows_view(&L->ffn_gate, base, rows);
	struct pf_weight uv = rows_view(&L->ffn_up, base + bl->up_off, rows);
	struct pf_weight dv = rows_view(&L->ffn_down_t, base + bl->down_off, rows);
	struct pf_matmul_out outs[2] = { { .w = &uv, .y = u }, { .w = &gv, .y = g } };
	pf_matmul(c->pool, &c->scratch, outs, m->bundles.gate ? 2 : 1, c->xb, T);
	if (!whole) {
		scatter(c->hb2, u, T, n_ff, p0, p1);
		if (m->bundles.gate)
			scatter(c->hb, g, T, n_ff, p0, p1);
	}
	activate(c, l, T, p0, p1);
	down_t_add(c, &dv, T, p0, p1);
}

/* Prefill in a sparse mode: the gate (when not in the bundles) and the
 * predictor for every neuron, then the bundles a run of clusters at a
 * time (all at once in memory; in the staging buffer under a budget):
 * their gate and up rows, the activation, and the down rows of the
 * neurons that fired added into the output. */
int pf_ffn_prefill(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T, struct pf_err *err)
{
	const struct pinfer_model *m = c->model;
	int64_t n_ff = m->info.n_ff, dim = m->info.n_embd;
	struct pf_bundle_layout bl = pf_bundle_layout_of(m, L);
	if (!m->bundles.gate) {
		struct pf_matmul_out g = { .w = &L->ffn_gate, .y = c->hb };
		pf_matmul(c->pool, &c->scratch, &g, 1, c->xb, T);
		if (c->probe)
			memcpy(c->probe_gate, c->hb, (size_t)T * (size_t)n_ff * sizeof(float));
	}
	if (m->info.sparsity == PINFER_SPARSITY_PREDICTOR)
		pf_ffn_predict(c, L, T);
	memset(c->ffn_out, 0, (size_t)T * (size_t)dim * sizeof(float));
	struct pf_ffn_store *s = m->store;
	int r = 0;
	if (!s) {
		prefill_run(c, L, l, T, &bl, bl.first->data, 0, n_ff);
	} else {
		if (!c->store_step) {
			pf_ffn_store_begin_step(s);
			pf_ffn_store_runs_start(s, l);
		}
		c->store_step = false;
		int64_t k0, k1;
		const uint8_t *base;
		while ((r = pf_ffn_store_run_next(s, l, &k0, &k1, &base, err)) > 0) {
			int64_t p1 = k1 * bl.group < n_ff ? k1 * bl.group : n_ff;
			prefill_run(c, L, l, T, &bl, base, k0 * bl.group, p1);
		}
		pf_ffn_store_end_step(s);
	}
	if (r)
		return r;
	count_prefill(c, l, T);
	memcpy(c->xb, c->ffn_out, (size_t)T * (size_t)dim * sizeof(float));
	return 0;
}
