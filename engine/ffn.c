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
 * so prefill and decode agree on which neurons count. In a sparse mode the
 * weights are the neuron bundles' (bundle.h): gate and up rows as strided
 * matrices, and the down projection from the neuron-major down rows, only
 * for the neurons that fired. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ffn_store.h"
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

/* Where a layer's neuron bundles keep their rows (bundle.h): the first row
 * the sparse paths read (the gate when the bundles hold it, else the up),
 * the offsets of the up and down rows in a bundle, and the bytes read. */
struct bundle_layout {
	const struct pf_weight *first;
	size_t up_off, down_off, bytes;
	int64_t group;  /* neurons per cluster of a bundle file, else 1 */
};

static struct bundle_layout layout_of(const struct pinfer_model *m, const struct pf_layer *L)
{
	bool gate = m->bundles.gate;
	size_t up_off = gate ? L->ffn_gate.row_bytes : 0;
	return (struct bundle_layout){
		.first = gate ? &L->ffn_gate : &L->ffn_up,
		.up_off = up_off,
		.down_off = up_off + L->ffn_up.row_bytes,
		.bytes = up_off + L->ffn_up.row_bytes + L->ffn_down_t.row_bytes,
		.group = L->ffn_up.group > 1 ? L->ffn_up.group : 1,
	};
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
				float s = silu(g[i]);
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

static void ffn_dense(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T)
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
static void prefill_run(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T, const struct bundle_layout *bl,
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
static int ffn_prefill_sparse(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T, struct pf_err *err)
{
	const struct pinfer_model *m = c->model;
	int64_t n_ff = m->info.n_ff, dim = m->info.n_embd;
	struct bundle_layout bl = layout_of(m, L);
	if (!m->bundles.gate) {
		struct pf_matmul_out g = { .w = &L->ffn_gate, .y = c->hb };
		pf_matmul(c->pool, &c->scratch, &g, 1, c->xb, T);
		if (c->probe)
			memcpy(c->probe_gate, c->hb, (size_t)T * (size_t)n_ff * sizeof(float));
	}
	if (m->info.sparsity == PINFER_SPARSITY_PREDICTOR)
		predict(c, L, T);
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

/* Neurons per chunk a thread takes: enough to amortize taking it, few
 * enough to balance a few hundred chosen neurons. */
#define NEURON_CHUNK 16

/* The chosen neurons of one layer, for one pass of the threads: the
 * ready ones (in memory, or cached) taken a chunk at a time, then, under a
 * budget, those of each cluster read from the file as it lands. */
struct neuron_job {
	const struct pf_layer *L;
	const int32_t *idx;
	const uint8_t *const *bundle;  /* each chosen neuron's bundle */
	int64_t n_ready;
	_Atomic int64_t next_ready;
	struct pf_ffn_store *store;
	struct bundle_layout bl;
	bool gate_in_bundle;
	const float *gate;          /* every neuron's gate (gate and threshold modes) */
	const uint8_t *xq_gate;     /* x in the gate's and the up's kernel formats */
	const uint8_t *xq_up;
	float *partial;             /* per thread: dim floats of down-projection sum */
	int64_t dim;
	enum pinfer_sparsity mode;
	enum pinfer_ffn_act act;
	float *act_out;             /* with a probe: each neuron's activation */
	_Atomic uint64_t fired;
};

static void prefetch_bundle(const uint8_t *p, size_t bytes)
{
	for (size_t o = 0; o < bytes; o += 64)
		__builtin_prefetch(p + o, 0, 0);
}

/* Down rows of neurons that fired, waiting to be added to a thread's sum:
 * a few at a time where the format adds several rows per pass over it. */
struct down_batch {
	const struct pf_weight *down;
	int max, n;
	float a[PF_AXPY_MULTI_MAX];
	const uint8_t *rows[PF_AXPY_MULTI_MAX];
};

static void down_flush(struct down_batch *b, float *y)
{
	if (b->n == 1)
		b->down->ops->axpy((int)b->down->cols, b->a[0], b->rows[0], y);
	else if (b->n > 1)
		b->down->ops->axpy_multi((int)b->down->cols, b->n, b->a, b->rows, y);
	b->n = 0;
}

static void down_add(struct down_batch *b, float a, const uint8_t *row, float *y)
{
	b->a[b->n] = a;
	b->rows[b->n++] = row;
	if (b->n == b->max)
		down_flush(b, y);
}

/* For each chosen neuron of [begin, end), what its activation still lacks
 * (the gate in predictor mode, the up), then its down row added into this
 * thread's sum y. A neuron's rows are one bundle, read front to back; the
 * next neuron's bundle is requested meanwhile, since the hardware
 * prefetcher does not follow a jump to another bundle. Returns how many
 * fired. */
static uint64_t neurons(struct neuron_job *j, int64_t begin, int64_t end, struct down_batch *batch, float *y)
{
	const struct pf_layer *L = j->L;
	int n = (int)j->dim;
	uint64_t fired = 0;
	for (int64_t i = begin; i < end; i++) {
		int32_t id = j->idx[i];
		const uint8_t *b = j->bundle[i];
		if (i + 1 < end)
			prefetch_bundle(j->bundle[i + 1], j->bl.bytes);
		float g, u, a;
		if (j->mode == PINFER_SPARSITY_PREDICTOR) {
			L->ffn_gate.ops->vec_dot(n, &g, j->gate_in_bundle ? b : pf_weight_row(&L->ffn_gate, id),
						 j->xq_gate);
			if (g <= 0.0f)
				continue;  /* predicted, but it does not fire */
		} else {
			g = j->gate[id];
		}
		L->ffn_up.ops->vec_dot(n, &u, b + j->bl.up_off, j->xq_up);
		if (j->mode == PINFER_SPARSITY_THRESHOLD)
			a = silu(g) * u;
		else if (j->act == PINFER_ACT_DRELU)
			a = u > 0.0f ? g * u : 0.0f;
		else
			a = g * u;
		if (a == 0.0f)
			continue;
		down_add(batch, a, b + j->bl.down_off, y);
		if (j->act_out)
			j->act_out[id] = a;
		fired++;
	}
	return fired;
}

/* A thread's share of a layer's neurons: it takes ready ones while any is
 * left, then the clusters that land. The pool calls this a few times per
 * thread so that one that starts late still finds a call to join by; a
 * call that finds nothing left returns at once. */
static void run_neurons(void *arg, int64_t begin, int64_t end, int thread)
{
	(void)begin;
	(void)end;
	struct neuron_job *j = arg;
	const struct pf_weight *down = &j->L->ffn_down_t;
	float *y = j->partial + (size_t)thread * (size_t)j->dim;
	uint64_t fired = 0;
	struct down_batch batch = { .down = down, .max = down->ops->axpy_multi ? PF_AXPY_MULTI_MAX : 1 };
	for (;;) {
		int64_t i = atomic_fetch_add_explicit(&j->next_ready, NEURON_CHUNK, memory_order_relaxed);
		if (i >= j->n_ready)
			break;
		fired += neurons(j, i, i + NEURON_CHUNK < j->n_ready ? i + NEURON_CHUNK : j->n_ready, &batch, y);
	}
	int first, count;
	while (j->store && pf_ffn_store_next_landed(j->store, &first, &count))
		fired += neurons(j, j->n_ready + first, j->n_ready + first + count, &batch, y);
	down_flush(&batch, y);
	atomic_fetch_add_explicit(&j->fired, fired, memory_order_relaxed);
}

/* x in weight w's kernel format: x itself for float formats, else
 * converted into buf. */
static const uint8_t *kernel_input(const struct pf_weight *w, const float *x, int64_t n, uint8_t *buf)
{
	enum pf_dtype vt = w->ops->vec_dot_type;
	if (vt == PF_F32)
		return (const uint8_t *)x;
	pf_quant_ops(vt)->from_float(x, buf, n);
	return buf;
}

static int ffn_sparse(struct pinfer_ctx *c, const struct pf_layer *L, int l, struct pf_err *err)
{
	const struct pinfer_model *m = c->model;
	const struct pinfer_model_info *hp = &m->info;
	int n_ff = hp->n_ff;
	int64_t dim = hp->n_embd;
	float *gate = c->hb;
	int32_t *idx = c->active;
	int n = 0;
	if (hp->sparsity == PINFER_SPARSITY_PREDICTOR) {
		predict(c, L, 1);
		for (int j = 0; j < n_ff; j++)
			if (c->pred_s[j] > m->pred_threshold)
				idx[n++] = j;
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
	}
	/* Under a budget, the neurons whose clusters are cached are computed
	 * while the others' reads are in flight, and each of those clusters
	 * as soon as it lands. */
	struct bundle_layout bl = layout_of(m, L);
	struct pf_ffn_store *s = m->store;
	int n_ready = n;
	if (s) {
		if (!c->store_step)
			pf_ffn_store_begin_step(s);
		c->store_step = false;
		n_ready = pf_ffn_store_neurons_start(s, l, idx, n, c->bundle, err);
		if (n_ready < 0) {
			pf_ffn_store_end_step(s);
			return n_ready;
		}
	} else {
		for (int i = 0; i < n; i++)
			c->bundle[i] = pf_weight_row(bl.first, idx[i]);
	}

	int n_threads = pf_pool_threads(c->pool);
	memset(c->partial, 0, (size_t)n_threads * (size_t)dim * sizeof(float));
	const uint8_t *xq_up = kernel_input(&L->ffn_up, c->xb, dim, c->scratch.buf[0]);
	const uint8_t *xq_gate = L->ffn_gate.ops->vec_dot_type == L->ffn_up.ops->vec_dot_type
					 ? xq_up
					 : kernel_input(&L->ffn_gate, c->xb, dim, c->scratch.buf[1]);
	if (c->probe)
		memset(c->probe_act, 0, (size_t)n_ff * sizeof(float));
	struct neuron_job j = {
		.L = L, .idx = idx, .bundle = c->bundle, .n_ready = n_ready, .store = s, .bl = bl,
		.gate_in_bundle = m->bundles.gate, .gate = gate, .xq_gate = xq_gate, .xq_up = xq_up,
		.partial = c->partial, .dim = dim, .mode = hp->sparsity, .act = hp->ffn_act,
		.act_out = c->probe ? c->probe_act : NULL,
	};
	pf_pool_run(c->pool, run_neurons, &j, 4 * n_threads, 1);
	if (s) {
		int r = pf_ffn_store_neurons_finish(s, l, err);
		pf_ffn_store_end_step(s);
		if (r)
			return r;
	}
	c->ffn_stats.neurons += (uint64_t)n_ff;
	c->ffn_stats.active += atomic_load(&j.fired);
	if (c->probe) {
		bool pred = hp->sparsity == PINFER_SPARSITY_PREDICTOR;
		if (!pred)
			memcpy(c->probe_gate, gate, (size_t)n_ff * sizeof(float));
		c->probe(c->probe_data, l, 1, c->xb, pred ? NULL : c->probe_gate, c->probe_act);
	}
	float *y = c->xb;
	memcpy(y, c->partial, (size_t)dim * sizeof(float));
	for (int t = 1; t < n_threads; t++) {
		const float *p = c->partial + (size_t)t * dim;
		for (int64_t i = 0; i < dim; i++)
			y[i] += p[i];
	}
	return 0;
}

int pf_ffn(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T, struct pf_err *err)
{
	if (c->model->info.sparsity == PINFER_SPARSITY_DENSE) {
		ffn_dense(c, L, l, T);
		return 0;
	}
	return T == 1 ? ffn_sparse(c, L, l, err) : ffn_prefill_sparse(c, L, l, T, err);
}

void pf_ffn_prefetch(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T)
{
	const struct pinfer_model *m = c->model;
	const struct pinfer_model_info *hp = &m->info;
	struct pf_ffn_store *s = m->store;
	if (!s || hp->sparsity == PINFER_SPARSITY_DENSE)
		return;
	if (T > 1) {
		pf_ffn_store_begin_step(s);
		c->store_step = true;
		pf_ffn_store_runs_start(s, l);
		return;
	}
	if (!c->prefetching)
		return;
	pf_rmsnorm(c->xb, c->x, L->ffn_norm, (int)hp->n_embd, hp->rms_eps);
	predict(c, L, 1);
	int n = 0;
	for (int j = 0; j < hp->n_ff; j++)
		if (c->pred_s[j] > m->pred_threshold)
			c->active[n++] = j;
	pf_ffn_store_begin_step(s);
	c->store_step = true;
	pf_ffn_store_prefetch(s, l, c->active, n);
}

/* Every PREFETCH_PROBE-th token tries the setting that was slower, so the
 * choice follows the budget, the disk and the load of the machine. */
#define PREFETCH_PROBE 16

void pf_ffn_prefetch_choose(struct pinfer_ctx *c)
{
	const struct pinfer_model *m = c->model;
	c->prefetching = false;
	if (!m->store || m->info.sparsity != PINFER_SPARSITY_PREDICTOR || !pf_ffn_store_misses(m->store))
		return;
	/* PINFER_PREFETCH=0 or 1 fixes the choice (tests, measurements) */
	const char *force = getenv("PINFER_PREFETCH");
	if (force && (*force == '0' || *force == '1')) {
		c->prefetching = *force == '1';
		return;
	}
	bool best = c->token_ns[1] == 0.0 || (c->token_ns[0] != 0.0 && c->token_ns[1] < c->token_ns[0]);
	c->prefetching = c->tokens % PREFETCH_PROBE == PREFETCH_PROBE - 1 ? !best : best;
}

void pf_ffn_prefetch_learn(struct pinfer_ctx *c, uint64_t token_ns)
{
	if (!c->model->store)
		return;
	double *mean = &c->token_ns[c->prefetching];
	*mean = *mean == 0.0 ? (double)token_ns : 0.75 * *mean + 0.25 * (double)token_ns;
	c->tokens++;
}
