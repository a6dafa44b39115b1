/* One sequence's state: KV cache, activations of the batch being
 * evaluated, logits. Internal; see pinfer.h. */
#ifndef PINFER_CONTEXT_H
#define PINFER_CONTEXT_H

#include "matmul.h"
#include "model.h"
#include "threadpool.h"

/* Queries whose attention scores one thread holds at once. */
#define PF_ATTN_QUERY_BLOCK 32

struct pinfer_ctx {
	const struct pinfer_model *model;
	struct pf_pool *pool;
	bool owns_pool;
	int n_ctx, n_batch;
	bool all_logits;
	int pos;         /* tokens in the KV cache */
	int n_logits;    /* rows in logits from the last eval */

	/* (n_layer, n_head_kv, n_ctx, head_dim): a head's keys (values) one
	 * after another, so attention streams each head's through memory
	 * instead of taking head_dim floats every kv_dim. */
	enum pinfer_kv_type kv_type;
	size_t kv_elem;  /* bytes of a cached element */
	uint8_t *k_cache;
	uint8_t *v_cache;
	/* F16 cache only: per thread, a head's keys then its values as floats,
	 * (n_threads, 2, n_ctx, head_dim), for prefill's sgemm. */
	float *kv_f32;
	float *k_new;    /* (n_batch, kv_dim) the batch's keys, before they go to the cache */
	float *v_new;    /* (n_batch, kv_dim) and values */

	/* Activations of up to n_batch tokens, row-major (token, feature). */
	float *x;        /* (n_batch, n_embd) residual stream */
	float *xb;       /* (n_batch, n_embd) normed input / sublayer output */
	float *q;        /* (n_batch, q_dim) */
	float *att;      /* (n_batch, q_dim) attention output */
	float *hb;       /* (n_batch, n_ff) gate, then activated */
	float *hb2;      /* (n_batch, n_ff) up */
	float *rope_cs;  /* (n_batch, rope_dim) cos/sin per token */
	float *scores;   /* (n_threads, PF_ATTN_QUERY_BLOCK, n_ctx) attention scores */
	float *logits;   /* (all_logits ? n_batch : 1, n_vocab) */
	/* Sparse modes only (ffn.c): */
	int32_t *active; /* (n_ff) neurons computed this layer */
	const uint8_t **bundle;  /* (n_ff) their bundles */
	float *partial;  /* (n_threads, n_embd) down-projection sums */
	float *ffn_out;  /* (n_batch, n_embd) prefill's FFN output */
	float *chunk;    /* offloaded models: a run of clusters' gate and up outputs */
	float *pred_h;   /* (n_batch, rank) predictor mode: hidden layer */
	float *pred_s;   /* (n_batch, n_ff) predictor mode: scores */
	bool store_step;    /* an offloaded model's step is open: a prefetch began it */
	/* Decode's prefetch (ffn.c) costs a predictor pass per layer and saves
	 * waiting for reads: whether it pays is learnt from token times. */
	bool prefetching;   /* in this token */
	double token_ns[2]; /* running mean token time without and with it; 0: not tried */
	uint32_t tokens;
	struct pinfer_ffn_stats ffn_stats;
	pinfer_ffn_probe_fn probe;
	void *probe_data;
	float *probe_gate;  /* (n_batch, n_ff) gate before activation, with a probe */
	float *probe_act;   /* (n_ff) activations of a sparse step, with a probe */
	struct pf_matmul_scratch scratch;
	uint64_t bytes;
	bool registered;    /* counted in an offloaded model's budget */
};

/* Runs the model over tokens[0..T) at positions pos..pos+T-1, T <= n_batch.
 * On failure (an offloaded model's read) pos stays where it was. */
int pf_forward(struct pinfer_ctx *c, const int32_t *tokens, int T, struct pf_err *err);

#endif
