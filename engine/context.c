#include "context.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ffn_store.h"

void pinfer_ctx_params_default(struct pinfer_ctx_params *p)
{
	memset(p, 0, sizeof(*p));
}

/* The KV cache is not cleared: a position is always written before it is
 * read, and untouched pages of a large allocation cost no memory until a
 * sequence grows into them. */
static float *alloc_floats(struct pinfer_ctx *c, uint64_t n, bool clear)
{
	size_t bytes = (size_t)(n * sizeof(float) + 63) / 64 * 64;
	float *p = aligned_alloc(64, bytes);
	if (p) {
		if (clear)
			memset(p, 0, bytes);
		c->bytes += bytes;
	}
	return p;
}

/* Fills in the defaults; false for negative sizes. */
static bool resolve(const struct pinfer_model *m, struct pinfer_ctx_params *p)
{
	const struct pinfer_model_info *hp = &m->info;
	if (p->n_ctx < 0 || p->n_batch < 0 || p->n_threads < 0 ||
	    (p->kv_type != PINFER_KV_AUTO && p->kv_type != PINFER_KV_F32 && p->kv_type != PINFER_KV_F16))
		return false;
	p->kv_type = pinfer_kv_type_for(m, p->kv_type);
	if (p->n_ctx == 0)
		p->n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
	if (p->n_batch == 0)
		p->n_batch = 128;
	if (p->n_batch > p->n_ctx)
		p->n_batch = p->n_ctx;
	if (p->threads)
		p->n_threads = pf_pool_threads((struct pf_pool *)p->threads);
	else if (p->n_threads == 0)
		p->n_threads = pf_cpu_count();
	return true;
}

static const char *const kv_type_names[] = {
	[PINFER_KV_AUTO] = "auto",
	[PINFER_KV_F32] = "f32",
	[PINFER_KV_F16] = "f16",
};

const char *pinfer_kv_type_name(enum pinfer_kv_type t)
{
	return (unsigned)t < sizeof(kv_type_names) / sizeof(kv_type_names[0]) ? kv_type_names[t] : "?";
}

int pinfer_kv_type_parse(const char *name, enum pinfer_kv_type *out)
{
	for (size_t i = 0; i < sizeof(kv_type_names) / sizeof(kv_type_names[0]); i++)
		if (!strcmp(name, kv_type_names[i])) {
			*out = (enum pinfer_kv_type)i;
			return 0;
		}
	return -EINVAL;
}

/* F16 halves what attention reads per token, which at 7B (no grouped
 * keys) grows by 1 MiB in F32 with every position: at position 390 that
 * is a quarter of what the sparse modes read; llama.cpp keeps F16 too. A
 * model in F32, such as the small reference models, keeps F32, so that
 * its logits stay those of its reference to float precision. */
enum pinfer_kv_type pinfer_kv_type_for(const struct pinfer_model *m, enum pinfer_kv_type t)
{
	if (t != PINFER_KV_AUTO)
		return t;
	return strcmp(m->info.quant, "f32") ? PINFER_KV_F16 : PINFER_KV_F32;
}

static size_t kv_elem(enum pinfer_kv_type t)
{
	return t == PINFER_KV_F16 ? 2 : sizeof(float);
}

/* Floats of the prefill's per-thread copy of a head's keys and values,
 * which only an F16 cache needs. */
static uint64_t kv_f32_floats(const struct pinfer_model_info *hp, const struct pinfer_ctx_params *p)
{
	return p->kv_type == PINFER_KV_F16 ? (uint64_t)p->n_threads * 2 * (uint64_t)p->n_ctx * hp->head_dim : 0;
}

static bool sparse(const struct pinfer_model_info *hp)
{
	return hp->sparsity != PINFER_SPARSITY_DENSE;
}

static bool predictor(const struct pinfer_model *m)
{
	return m->info.sparsity == PINFER_SPARSITY_PREDICTOR;
}

static int64_t widest_row(const struct pinfer_model_info *hp)
{
	int64_t q_dim = (int64_t)hp->n_head * hp->head_dim;
	int64_t w = hp->n_embd > hp->n_ff ? hp->n_embd : hp->n_ff;
	return q_dim > w ? q_dim : w;
}

/* Neurons of the largest run of clusters an offloaded model's prefill
 * stages at once; 0 for models in memory. */
static uint64_t chunk_neurons(const struct pinfer_model *m)
{
	return m->store ? (uint64_t)pf_ffn_store_run_neurons(m->store) : 0;
}

/* Everything pinfer_ctx_new allocates, buffer by buffer in the same order
 * (tests/test_memory.c holds the two together). */
uint64_t pinfer_ctx_estimate_bytes(const struct pinfer_model *m, const struct pinfer_ctx_params *params)
{
	struct pinfer_ctx_params p;
	if (params)
		p = *params;
	else
		pinfer_ctx_params_default(&p);
	if (!resolve(m, &p))
		return 0;
	const struct pinfer_model_info *hp = &m->info;
	uint64_t B = (uint64_t)p.n_batch;
	uint64_t q_dim = (uint64_t)hp->n_head * hp->head_dim;
	uint64_t kv_dim = (uint64_t)hp->n_head_kv * hp->head_dim;
	uint64_t kv = (uint64_t)hp->n_layer * (uint64_t)p.n_ctx * kv_dim;
	uint64_t kv_floats = (kv * kv_elem(p.kv_type) + sizeof(float) - 1) / sizeof(float);
	const uint64_t floats[] = {
		kv_floats, kv_floats, kv_f32_floats(hp, &p), B * kv_dim, B * kv_dim,
		B * hp->n_embd, B * hp->n_embd, B * q_dim, B * q_dim, B * hp->n_ff, B * hp->n_ff,
		B * hp->rope_dim, (uint64_t)p.n_threads * PF_ATTN_QUERY_BLOCK * p.n_ctx,
		(p.all_logits ? B : 1) * hp->n_vocab,
		sparse(hp) ? hp->n_ff : 0,
		sparse(hp) ? 2 * (uint64_t)hp->n_ff : 0,  /* bundle pointers */
		sparse(hp) ? (uint64_t)p.n_threads * hp->n_embd : 0,
		sparse(hp) ? B * hp->n_embd : 0,
		2 * B * chunk_neurons(m),
		predictor(m) ? B * (uint64_t)m->pred_rank : 0, predictor(m) ? B * hp->n_ff : 0,
	};
	uint64_t bytes = 0;
	for (size_t i = 0; i < sizeof(floats) / sizeof(floats[0]); i++)
		if (floats[i])
			bytes += (floats[i] * sizeof(float) + 63) / 64 * 64;
	return bytes + pf_matmul_scratch_bytes(widest_row(hp), p.n_batch, p.n_threads);
}

int pinfer_ctx_new(struct pinfer_ctx **out, const struct pinfer_model *m,
		   const struct pinfer_ctx_params *params, struct pf_err *err)
{
	struct pinfer_ctx_params p;
	if (params)
		p = *params;
	else
		pinfer_ctx_params_default(&p);
	const struct pinfer_model_info *hp = &m->info;
	*out = NULL;
	if (!resolve(m, &p))
		return pf_errf(err, -EINVAL, "context sizes must not be negative, the KV type f32 or f16");

	struct pinfer_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return pf_errf(err, -ENOMEM, "out of memory");
	c->model = m;
	c->n_ctx = p.n_ctx;
	c->n_batch = p.n_batch;
	c->all_logits = p.all_logits;
	c->kv_type = p.kv_type;
	c->kv_elem = kv_elem(p.kv_type);
	uint64_t B = (uint64_t)p.n_batch;
	uint64_t kv_dim = (uint64_t)hp->n_head_kv * hp->head_dim;
	uint64_t q_dim = (uint64_t)hp->n_head * hp->head_dim;
	uint64_t kv = (uint64_t)hp->n_layer * (uint64_t)p.n_ctx * kv_dim;
	int r = 0;
	if (p.threads) {
		c->pool = (struct pf_pool *)p.threads;
	} else {
		r = pf_pool_new(&c->pool, p.n_threads);
		if (r) {
			pinfer_ctx_free(c);
			return pf_errf(err, r, "cannot start %d threads", p.n_threads);
		}
		c->owns_pool = true;
	}
	uint64_t kv_floats = (kv * c->kv_elem + sizeof(float) - 1) / sizeof(float);
	c->k_cache = (uint8_t *)alloc_floats(c, kv_floats, false);
	c->v_cache = (uint8_t *)alloc_floats(c, kv_floats, false);
	uint64_t kv_f32 = kv_f32_floats(hp, &p);
	c->kv_f32 = kv_f32 ? alloc_floats(c, kv_f32, false) : NULL;
	c->k_new = alloc_floats(c, B * kv_dim, true);
	c->v_new = alloc_floats(c, B * kv_dim, true);
	c->x = alloc_floats(c, B * hp->n_embd, true);
	c->xb = alloc_floats(c, B * hp->n_embd, true);
	c->q = alloc_floats(c, B * q_dim, true);
	c->att = alloc_floats(c, B * q_dim, true);
	c->hb = alloc_floats(c, B * hp->n_ff, true);
	c->hb2 = alloc_floats(c, B * hp->n_ff, true);
	c->rope_cs = alloc_floats(c, B * hp->rope_dim, true);
	c->scores = alloc_floats(c, (uint64_t)p.n_threads * PF_ATTN_QUERY_BLOCK * p.n_ctx, true);
	c->logits = alloc_floats(c, (p.all_logits ? B : 1) * hp->n_vocab, true);
	bool sparse_ok = true;
	if (sparse(hp)) {
		/* Indices are 4 bytes like floats. */
		c->active = (int32_t *)(void *)alloc_floats(c, (uint64_t)hp->n_ff, true);
		c->bundle = (const uint8_t **)(void *)alloc_floats(c, 2 * (uint64_t)hp->n_ff, true);
		c->partial = alloc_floats(c, (uint64_t)p.n_threads * hp->n_embd, true);
		c->ffn_out = alloc_floats(c, B * hp->n_embd, true);
		sparse_ok = c->active && c->bundle && c->partial && c->ffn_out;
		if (m->store) {
			c->chunk = alloc_floats(c, 2 * B * chunk_neurons(m), true);
			sparse_ok = sparse_ok && c->chunk;
		}
	}
	if (predictor(m)) {
		c->pred_h = alloc_floats(c, B * (uint64_t)m->pred_rank, true);
		c->pred_s = alloc_floats(c, B * hp->n_ff, true);
		sparse_ok = sparse_ok && c->pred_h && c->pred_s;
	}
	r = pf_matmul_scratch_init(&c->scratch, widest_row(hp), p.n_batch, p.n_threads);
	if (r || !c->k_cache || !c->v_cache || (kv_f32 && !c->kv_f32) || !c->k_new || !c->v_new ||
	    !c->x || !c->xb || !c->q || !c->att || !c->hb || !c->hb2 || !c->rope_cs || !c->scores ||
	    !c->logits || !sparse_ok) {
		uint64_t want = c->bytes;
		pinfer_ctx_free(c);
		return pf_errf(err, -ENOMEM,
			       "out of memory for a %d-token context (KV cache %llu MiB, %llu MiB allocated)",
			       p.n_ctx, (unsigned long long)(2 * kv * kv_elem(p.kv_type) >> 20),
			       (unsigned long long)(want >> 20));
	}
	c->bytes += c->scratch.bytes;
	/* An offloaded model's budget covers its contexts too. */
	if (m->store) {
		if ((r = pf_ffn_store_add_ctx(m->store, (int64_t)c->bytes, err))) {
			pinfer_ctx_free(c);
			return r;
		}
		c->registered = true;
	}
	*out = c;
	return 0;
}

void pinfer_ctx_free(struct pinfer_ctx *c)
{
	if (!c)
		return;
	if (c->owns_pool)
		pf_pool_free(c->pool);
	free(c->k_cache);
	free(c->v_cache);
	free(c->kv_f32);
	free(c->k_new);
	free(c->v_new);
	free(c->x);
	free(c->xb);
	free(c->q);
	free(c->att);
	free(c->hb);
	free(c->hb2);
	free(c->rope_cs);
	free(c->scores);
	free(c->logits);
	if (c->registered)
		pf_ffn_store_add_ctx(c->model->store, -(int64_t)c->bytes, NULL);
	free(c->active);
	free(c->bundle);
	free(c->partial);
	free(c->ffn_out);
	free(c->chunk);
	free(c->pred_h);
	free(c->pred_s);
	free(c->probe_gate);
	free(c->probe_act);
	pf_matmul_scratch_free(&c->scratch);
	free(c);
}

void pinfer_ctx_ffn_stats(const struct pinfer_ctx *c, struct pinfer_ffn_stats *out)
{
	*out = c->ffn_stats;
}

/* The probe's buffers are allocated here, outside pinfer_ctx_bytes: a
 * probe is a tool's instrument, not part of serving. */
int pinfer_ctx_set_ffn_probe(struct pinfer_ctx *c, pinfer_ffn_probe_fn fn, void *data)
{
	const struct pinfer_model_info *hp = &c->model->info;
	if (fn && !c->probe_gate) {
		c->probe_gate = malloc((size_t)c->n_batch * (size_t)hp->n_ff * sizeof(float));
		c->probe_act = malloc((size_t)hp->n_ff * sizeof(float));
		if (!c->probe_gate || !c->probe_act) {
			free(c->probe_gate);
			free(c->probe_act);
			c->probe_gate = c->probe_act = NULL;
			return -ENOMEM;
		}
	}
	c->probe = fn;
	c->probe_data = data;
	return 0;
}

uint64_t pinfer_ctx_bytes(const struct pinfer_ctx *c)
{
	return c->bytes;
}

uint64_t pinfer_ctx_kv_bytes(const struct pinfer_ctx *c)
{
	const struct pinfer_model_info *hp = &c->model->info;
	return 2ull * hp->n_layer * (uint64_t)c->n_ctx * hp->n_head_kv * hp->head_dim * c->kv_elem;
}

int pinfer_eval(struct pinfer_ctx *c, const int32_t *tokens, int n, struct pf_err *err)
{
	int n_vocab = c->model->info.n_vocab;
	if (n <= 0)
		return pf_errf(err, -EINVAL, "nothing to evaluate");
	if (n > c->n_ctx - c->pos)
		return pf_errf(err, -ENOSPC, "context full: %d tokens held, %d more do not fit in %d",
			       c->pos, n, c->n_ctx);
	for (int i = 0; i < n; i++)
		if (tokens[i] < 0 || tokens[i] >= n_vocab)
			return pf_errf(err, -EINVAL, "token %d at index %d is outside the vocabulary (0..%d)",
				       tokens[i], i, n_vocab - 1);
	if (c->all_logits && n > c->n_batch)
		return pf_errf(err, -EINVAL, "an eval keeping all logits takes at most n_batch (%d) tokens, got %d",
			       c->n_batch, n);
	c->n_logits = 0;
	for (int done = 0; done < n;) {
		int T = n - done < c->n_batch ? n - done : c->n_batch;
		int r = pf_forward(c, tokens + done, T, err);
		if (r)
			return r;
		c->ffn_stats.tokens += (uint64_t)T;
		done += T;
	}
	return 0;
}

const float *pinfer_logits(const struct pinfer_ctx *c, int i)
{
	if (i < 0)
		i = c->n_logits - 1;
	if (i < 0 || i >= c->n_logits)
		return NULL;
	return c->logits + (size_t)i * c->model->info.n_vocab;
}

int pinfer_ctx_pos(const struct pinfer_ctx *c)
{
	return c->pos;
}

int pinfer_ctx_size(const struct pinfer_ctx *c)
{
	return c->n_ctx;
}

int pinfer_ctx_batch(const struct pinfer_ctx *c)
{
	return c->n_batch;
}

void pinfer_ctx_truncate(struct pinfer_ctx *c, int pos)
{
	if (pos >= 0 && pos < c->pos)
		c->pos = pos;
	c->n_logits = 0;
}

int pinfer_threads_new(struct pinfer_threads **out, int n_threads)
{
	struct pf_pool *p;
	int r = pf_pool_new(&p, n_threads > 0 ? n_threads : pf_cpu_count());
	*out = (struct pinfer_threads *)p;
	return r;
}

void pinfer_threads_free(struct pinfer_threads *t)
{
	pf_pool_free((struct pf_pool *)t);
}
