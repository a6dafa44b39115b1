/* The feed-forward sublayer of one token in a sparse mode (decode); prefill
 * and the dense mode are in ffn_prefill.c.
 *
 * The gate projection for every neuron (gate and threshold modes need it
 * to know which fire), the neurons that fire picked from it, the up
 * projection for those rows only (predictor mode: the predictor picks the
 * neurons, and gate and up are computed for those rows only), and the down
 * projection as a sum of those neurons' rows of the neuron-major down
 * matrix, scaled by their activations, split across the threads by
 * active-list chunks. The weight bytes read drop from 3 n_ff rows to n_ff
 * + 2 * active. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "ffn_internal.h"
#include "ffn_store.h"
#include "ops.h"
#include "sparse.h"

void pf_ffn_predict(struct pinfer_ctx *c, const struct pf_layer *L, int T)
{
	int64_t rank = L->fc1.rows;
	struct pf_matmul_out h = { .w = &L->fc1, .y = c->pred_h };
	pf_matmul(c->pool, &c->scratch, &h, 1, c->xb, T);
	for (int64_t i = 0; i < (int64_t)T * rank; i++)
		c->pred_h[i] = c->pred_h[i] > 0.0f ? c->pred_h[i] : 0.0f;
	struct pf_matmul_out s = { .w = &L->fc2, .y = c->pred_s };
	pf_matmul(c->pool, &c->scratch, &s, 1, c->pred_h, T);
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
	struct pf_bundle_layout bl;
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

/* Neurons per group: their gate rows, then the up rows of those that fire,
 * go through the multi-row kernel together (quant.h: vec_dot_rows). */
#define GROUP PF_DOT_ROWS_MAX

/* s[r] = dot(rows[r], x) for k rows in w's format. */
static void dot_rows(const struct pf_weight *w, int n, int k, float *s, const uint8_t *const *rows,
		     const uint8_t *x)
{
	if (k > 1 && w->ops->vec_dot_rows)
		w->ops->vec_dot_rows(n, k, s, rows, x);
	else
		for (int r = 0; r < k; r++)
			w->ops->vec_dot(n, &s[r], rows[r], x);
}

static float activation(const struct neuron_job *j, float g, float u)
{
	if (j->mode == PINFER_SPARSITY_THRESHOLD)
		return pf_silu(g) * u;
	if (j->act == PINFER_ACT_DRELU)
		return u > 0.0f ? g * u : 0.0f;
	return g * u;
}

/* For the chosen neurons of [begin, end), a group at a time: what their
 * activations still lack (the gates in predictor mode, then the ups of
 * those whose gate fires, up to eight rows per kernel call: as many
 * streams of weights in flight where one at a time left the bus idle; asking
 * for the next group's bundles ahead made it slower), then the down rows
 * of those that fire added into this thread's sum y, in the neurons'
 * order. Returns how many fired. */
static uint64_t neurons(struct neuron_job *j, int64_t begin, int64_t end, struct down_batch *batch, float *y)
{
	const struct pf_layer *L = j->L;
	int n = (int)j->dim;
	bool predicted = j->mode == PINFER_SPARSITY_PREDICTOR;
	uint64_t fired = 0;
	for (int64_t i = begin; i < end; i += GROUP) {
		int k = end - i < GROUP ? (int)(end - i) : GROUP, m = 0, at[GROUP];
		const uint8_t *rows[GROUP];
		float g[GROUP], u[GROUP];
		if (predicted) {
			for (int r = 0; r < k; r++)
				rows[r] = j->gate_in_bundle ? j->bundle[i + r] : pf_weight_row(&L->ffn_gate, j->idx[i + r]);
			dot_rows(&L->ffn_gate, n, k, g, rows, j->xq_gate);
			for (int r = 0; r < k; r++)
				if (g[r] > 0.0f) {  /* else predicted, but it does not fire */
					g[m] = g[r];
					at[m++] = r;
				}
		} else {
			for (int r = 0; r < k; r++) {
				g[m] = j->gate[j->idx[i + r]];
				at[m++] = r;
			}
		}
		for (int q = 0; q < m; q++)
			rows[q] = j->bundle[i + at[q]] + j->bl.up_off;
		dot_rows(&L->ffn_up, n, m, u, rows, j->xq_up);
		for (int q = 0; q < m; q++) {
			float a = activation(j, g[q], u[q]);
			if (a == 0.0f)
				continue;
			down_add(batch, a, j->bundle[i + at[q]] + j->bl.down_off, y);
			if (j->act_out)
				j->act_out[j->idx[i + at[q]]] = a;
			fired++;
		}
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

/* The indices j < n with s[j] > thr into idx, ascending; returns how many.
 * Written without a branch on the comparison: which neurons fire cannot
 * be predicted element by element (a 7B layer's 11008 scores took 13-19
 * us with the branch, 9.8 without, on Zen 2). */
static int select_above(const float *s, int n, float thr, int32_t *idx)
{
	int k = 0;
	for (int j = 0; j < n; j++) {
		idx[k] = j;
		k += s[j] > thr;
	}
	return k;
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
	uint64_t t0 = pf_now_ns();
	if (hp->sparsity == PINFER_SPARSITY_PREDICTOR) {
		pf_ffn_predict(c, L, 1);
		n = select_above(c->pred_s, n_ff, m->pred_threshold, idx);
		c->ffn_stats.predicted += (uint64_t)n;
		c->ffn_stats.predictor_ns += pf_now_ns() - t0;
	} else {
		struct pf_matmul_out g = { .w = &L->ffn_gate, .y = gate };
		pf_matmul(c->pool, &c->scratch, &g, 1, c->xb, 1);
		if (hp->sparsity == PINFER_SPARSITY_THRESHOLD) {
			float thr = m->thresholds[l];
			for (int j = 0; j < n_ff; j++) {
				idx[n] = j;
				n += fabsf(pf_silu(gate[j])) > thr;
			}
		} else {
			n = select_above(gate, n_ff, 0.0f, idx);
		}
	}
	/* Under a budget, the neurons whose clusters are cached are computed
	 * while the others' reads are in flight, and each of those clusters
	 * as soon as it lands. */
	struct pf_bundle_layout bl = pf_bundle_layout_of(m, L);
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
	c->ffn_stats.ffn_ns += pf_now_ns() - t0;
	return 0;
}

int pf_ffn(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T, struct pf_err *err)
{
	if (c->model->info.sparsity == PINFER_SPARSITY_DENSE) {
		uint64_t t0 = T == 1 ? pf_now_ns() : 0;
		pf_ffn_dense(c, L, l, T);
		if (T == 1)
			c->ffn_stats.ffn_ns += pf_now_ns() - t0;
		return 0;
	}
	return T == 1 ? ffn_sparse(c, L, l, err) : pf_ffn_prefill(c, L, l, T, err);
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
	pf_ffn_predict(c, L, 1);
	int n = select_above(c->pred_s, hp->n_ff, m->pred_threshold, c->active);
	pf_ffn_store_begin_step(s);
	c->store_step = true;
	pf_ffn_store_prefetch(s, l, c->active, n);
}

/* Every PREFETCH_PROBE-th token tries the setting that was slower, so the
 * choice follows the budget, the disk and the load of the machine. Prefetch
 * starts off and is taken only when its running mean beats the other's by
 * PREFETCH_GAIN: it costs a second predictor pass per layer and the reads
 * of the guesses that miss, and on a noisy machine a tie is not a win
 * (measured: off was the faster at 30%, 50% and 80% budgets). */
#define PREFETCH_PROBE 16
#define PREFETCH_GAIN 0.95

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
	bool best = c->token_ns[0] != 0.0 && c->token_ns[1] != 0.0 &&
		    c->token_ns[1] < PREFETCH_GAIN * c->token_ns[0];
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
