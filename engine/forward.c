/* The transformer forward pass over a batch of T tokens, read top to bottom:
 * embedding, then per layer attention and feed-forward sublayers on the
 * residual stream, then the output head. Decode is the T = 1 case. */
#include <math.h>
#include <string.h>

#include "blas.h"
#include "clock.h"
#include "context.h"
#include "ops.h"
#include "quant.h"
#include "sparse.h"

struct attn_job {
	struct pinfer_ctx *c;
	const uint8_t *k, *v;  /* this layer's cache: n_head_kv heads of n_ctx rows */
	int T;
};

/* The kernels of the cache's element type; both take floats for x. */
static const struct pf_quant_ops *kv_ops(const struct pinfer_ctx *c)
{
	return pf_quant_ops(c->kv_type == PINFER_KV_F16 ? PF_F16 : PF_F32);
}

/* Decode: one query, so the products are a dot per cached key and a sum
 * of value rows, done with the float kernels on this thread. sgemm would
 * add its call overhead per head and take the lock every sgemm call shares
 * (blas.h), which leaves one thread at a time in attention. */
static void attend_one(struct pinfer_ctx *c, int64_t h, const uint8_t *k, const uint8_t *v, float *scores)
{
	const struct pinfer_model_info *hp = &c->model->info;
	const struct pf_quant_ops *ops = kv_ops(c);
	int hd = hp->head_dim;
	size_t row = (size_t)hd * c->kv_elem;
	int n_keys = c->pos + 1;
	float scale = 1.0f / sqrtf((float)hd);
	const float *q = c->q + (size_t)h * hd;
	for (int i = 0; i < n_keys; i++) {
		ops->vec_dot(hd, &scores[i], k + (size_t)i * row, q);
		scores[i] *= scale;
	}
	pf_softmax(scores, n_keys);
	float *out = c->att + (size_t)h * hd;
	memset(out, 0, (size_t)hd * sizeof(float));
	for (int i = 0; i < n_keys; i++)
		ops->axpy(hd, scores[i], v + (size_t)i * row, out);
}

/* One head at a time, for every new token of the batch: scores = Q K^T
 * over the cached keys, causal softmax per query row, output = scores V.
 * Both products go to sgemm (queries in blocks, so the scores of a long
 * prompt stay within the per-thread buffer). A KV head's keys and values
 * are consecutive rows of head_dim floats, shared by `group` query heads. */
static void attend(void *arg, int64_t begin, int64_t end, int thread)
{
	const struct attn_job *j = arg;
	struct pinfer_ctx *c = j->c;
	const struct pinfer_model_info *hp = &c->model->info;
	int hd = hp->head_dim;
	int q_dim = hp->n_head * hd;
	int group = hp->n_head / hp->n_head_kv;
	size_t head_kv = (size_t)c->n_ctx * hd * c->kv_elem;
	float scale = 1.0f / sqrtf((float)hd);
	float *scores = c->scores + (size_t)thread * PF_ATTN_QUERY_BLOCK * c->n_ctx;
	for (int64_t h = begin; h < end; h++) {
		const uint8_t *kh = j->k + (size_t)(h / group) * head_kv;
		const uint8_t *vh = j->v + (size_t)(h / group) * head_kv;
		if (j->T == 1) {
			attend_one(c, h, kh, vh, scores);
			continue;
		}
		/* sgemm takes floats: an F16 cache's keys and values up to the
		 * batch's last position, converted once per head */
		const float *k = (const float *)(const void *)kh, *v = (const float *)(const void *)vh;
		if (c->kv_type == PINFER_KV_F16) {
			float *kf = c->kv_f32 + (size_t)thread * 2 * (size_t)c->n_ctx * hd;
			float *vf = kf + (size_t)c->n_ctx * hd;
			int64_t n = (int64_t)(c->pos + j->T) * hd;
			kv_ops(c)->to_float_fast(kh, kf, n);
			kv_ops(c)->to_float_fast(vh, vf, n);
			k = kf;
			v = vf;
		}
		for (int t0 = 0; t0 < j->T; t0 += PF_ATTN_QUERY_BLOCK) {
			int nq = j->T - t0 < PF_ATTN_QUERY_BLOCK ? j->T - t0 : PF_ATTN_QUERY_BLOCK;
			int n_keys = c->pos + t0 + nq;  /* the last query's prefix */
			const float *q = c->q + (size_t)t0 * q_dim + (size_t)h * hd;
			pf_sgemm(true, nq, n_keys, hd, scale, q, q_dim, k, hd, 0.0f, scores, n_keys);
			for (int i = 0; i < nq; i++) {
				float *row = scores + (size_t)i * n_keys;
				int visible = c->pos + t0 + i + 1;
				pf_softmax(row, visible);
				memset(row + visible, 0, (size_t)(n_keys - visible) * sizeof(float));
			}
			pf_sgemm(false, nq, hd, n_keys, 1.0f, scores, n_keys, v, hd, 0.0f,
				 c->att + (size_t)t0 * q_dim + (size_t)h * hd, q_dim);
		}
	}
}

/* The batch's keys and values (token-major, as the matrix products write
 * them) into the cache's rows of each head from position pos on. */
static void cache_kv(struct pinfer_ctx *c, uint8_t *k_cache, uint8_t *v_cache, int T)
{
	const struct pinfer_model_info *hp = &c->model->info;
	pf_from_float_fn store = kv_ops(c)->from_float;
	size_t hd = (size_t)hp->head_dim, head_kv = (size_t)c->n_ctx * hd;
	for (int h = 0; h < hp->n_head_kv; h++)
		for (int t = 0; t < T; t++) {
			size_t from = ((size_t)t * (size_t)hp->n_head_kv + (size_t)h) * hd;
			size_t to = ((size_t)h * head_kv + (size_t)(c->pos + t) * hd) * c->kv_elem;
			store(c->k_new + from, k_cache + to, (int64_t)hd);
			store(c->v_new + from, v_cache + to, (int64_t)hd);
		}
}

static void embed(struct pinfer_ctx *c, const int32_t *tokens, int T)
{
	const struct pf_weight *e = &c->model->tok_embd;
	for (int t = 0; t < T; t++)
		e->ops->to_float(pf_weight_row(e, tokens[t]),
				 c->x + (size_t)t * e->cols, e->cols);
}

static void add(float *y, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] += x[i];
}

int pf_forward(struct pinfer_ctx *c, const int32_t *tokens, int T, struct pf_err *err)
{
	const struct pinfer_model *m = c->model;
	const struct pinfer_model_info *hp = &m->info;
	int dim = hp->n_embd;
	size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
	size_t layer_kv = (size_t)c->n_ctx * kv_dim;

	uint64_t t0 = T == 1 ? pf_now_ns() : 0;
	if (T == 1)
		pf_ffn_prefetch_choose(c);
	embed(c, tokens, T);
	for (int t = 0; t < T; t++)
		pf_rope_angles(c->rope_cs + (size_t)t * hp->rope_dim, c->pos + t, hp->rope_dim,
			       hp->rope_freq_base);

	for (int l = 0; l < hp->n_layer; l++) {
		const struct pf_layer *L = &m->layers[l];
		uint8_t *k_cache = c->k_cache + l * layer_kv * c->kv_elem;
		uint8_t *v_cache = c->v_cache + l * layer_kv * c->kv_elem;

		pf_ffn_prefetch(c, L, l, T);
		/* attention: the new tokens' K and V, rotated, then into the cache */
		for (int t = 0; t < T; t++)
			pf_rmsnorm(c->xb + (size_t)t * dim, c->x + (size_t)t * dim, L->attn_norm, dim,
				   hp->rms_eps);
		struct pf_matmul_out qkv[3] = {
			{ .w = &L->wq, .y = c->q },
			{ .w = &L->wk, .y = c->k_new },
			{ .w = &L->wv, .y = c->v_new },
		};
		pf_matmul(c->pool, &c->scratch, qkv, 3, c->xb, T);
		for (int t = 0; t < T; t++) {
			const float *cs = c->rope_cs + (size_t)t * hp->rope_dim;
			pf_rope(c->q + (size_t)t * hp->n_head * hp->head_dim, hp->n_head, hp->head_dim,
				hp->rope_dim, cs, hp->rope);
			pf_rope(c->k_new + (size_t)t * kv_dim, hp->n_head_kv, hp->head_dim, hp->rope_dim, cs,
				hp->rope);
		}
		cache_kv(c, k_cache, v_cache, T);
		struct attn_job aj = { c, k_cache, v_cache, T };
		pf_pool_run(c->pool, attend, &aj, hp->n_head, 1);
		struct pf_matmul_out o = { .w = &L->wo, .y = c->xb };
		pf_matmul(c->pool, &c->scratch, &o, 1, c->att, T);
		add(c->x, c->xb, (size_t)T * dim);

		/* feed-forward */
		for (int t = 0; t < T; t++)
			pf_rmsnorm(c->xb + (size_t)t * dim, c->x + (size_t)t * dim, L->ffn_norm, dim,
				   hp->rms_eps);
		int r = pf_ffn(c, L, l, T, err);
		if (r)
			return r;
		add(c->x, c->xb, (size_t)T * dim);
	}

	/* output head: every token's logits, or only the last one's */
	int first = c->all_logits ? 0 : T - 1;
	int n_out = T - first;
	for (int t = first; t < T; t++)
		pf_rmsnorm(c->xb + (size_t)(t - first) * dim, c->x + (size_t)t * dim, m->output_norm,
			   dim, hp->rms_eps);
	struct pf_matmul_out head = { .w = &m->output, .y = c->logits };
	pf_matmul(c->pool, &c->scratch, &head, 1, c->xb, n_out);
	c->n_logits = n_out;
	c->pos += T;
	if (T == 1)
		pf_ffn_prefetch_learn(c, pf_now_ns() - t0);
	return 0;
}
