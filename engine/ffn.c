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
#include <stdatomic.h>
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

/* The chosen neurons of one layer, for one pass of the threads. */
struct neuron_job {
	const struct pf_layer *L;
	const int32_t *idx;
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

static void prefetch_rows(const struct pf_layer *L, int32_t j)
{
	const uint8_t *up = L->ffn_up.data + (size_t)j * L->ffn_up.row_bytes;
	const uint8_t *down = L->ffn_down_t.data + (size_t)j * L->ffn_down_t.row_bytes;
	for (int k = 0; k < 4; k++) {
		__builtin_prefetch(up + 64 * k, 0, 0);
		__builtin_prefetch(down + 64 * k, 0, 0);
	}
}

/* For each chosen neuron, what its activation still lacks (the gate in
 * predictor mode, the up), then its down row added into this thread's sum:
 * a neuron's rows are read back to back, and the next neuron's first cache
 * lines are requested meanwhile, since the hardware prefetcher does not
 * follow a jump to another row. */
static void run_neurons(void *arg, int64_t begin, int64_t end, int thread)
{
	struct neuron_job *j = arg;
	const struct pf_layer *L = j->L;
	int n = (int)j->dim;
	float *y = j->partial + (size_t)thread * (size_t)j->dim;
	uint64_t fired = 0;
	for (int64_t i = begin; i < end; i++) {
		int32_t id = j->idx[i];
		if (i + 1 < end)
			prefetch_rows(L, j->idx[i + 1]);
		float g, u, a;
		if (j->mode == PINFER_SPARSITY_PREDICTOR) {
			L->ffn_gate.ops->vec_dot(n, &g, L->ffn_gate.data + (size_t)id * L->ffn_gate.row_bytes,
						 j->xq_gate);
			if (g <= 0.0f)
				continue;  /* predicted, but it does not fire */
		} else {
			g = j->gate[id];
		}
		L->ffn_up.ops->vec_dot(n, &u, L->ffn_up.data + (size_t)id * L->ffn_up.row_bytes, j->xq_up);
		if (j->mode == PINFER_SPARSITY_THRESHOLD)
			a = silu(g) * u;
		else if (j->act == PINFER_ACT_DRELU)
			a = u > 0.0f ? g * u : 0.0f;
		else
			a = g * u;
		if (a == 0.0f)
			continue;
		L->ffn_down_t.ops->axpy(n, a, L->ffn_down_t.data + (size_t)id * L->ffn_down_t.row_bytes, y);
		if (j->act_out)
			j->act_out[id] = a;
		fired++;
	}
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

/* Neurons per chunk a thread takes: enough to amortize taking it, few
 * enough to balance a few hundred chosen neurons. */
#define NEURON_CHUNK 16

static void ffn_sparse(struct pinfer_ctx *c, const struct pf_layer *L, int l)
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

	int n_threads = pf_pool_threads(c->pool);
	memset(c->partial, 0, (size_t)n_threads * (size_t)dim * sizeof(float));
	const uint8_t *xq_up = kernel_input(&L->ffn_up, c->xb, dim, c->scratch.buf[0]);
	const uint8_t *xq_gate = L->ffn_gate.ops->vec_dot_type == L->ffn_up.ops->vec_dot_type
					 ? xq_up
					 : kernel_input(&L->ffn_gate, c->xb, dim, c->scratch.buf[1]);
	if (c->probe)
		memset(c->probe_act, 0, (size_t)n_ff * sizeof(float));
	struct neuron_job j = {
		.L = L, .idx = idx, .gate = gate, .xq_gate = xq_gate, .xq_up = xq_up,
		.partial = c->partial, .dim = dim, .mode = hp->sparsity, .act = hp->ffn_act,
		.act_out = c->probe ? c->probe_act : NULL,
	};
	pf_pool_run(c->pool, run_neurons, &j, n, NEURON_CHUNK);
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
}

void pf_ffn(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T)
{
	if (T == 1 && c->model->info.sparsity != PINFER_SPARSITY_DENSE)
		ffn_sparse(c, L, l);
	else
		ffn_full(c, L, l, T);
}
