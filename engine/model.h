/* The loaded model: hyperparameters, weight views into the GGUF mapping,
 * and the vocabulary. Internal to the engine; pinfer.h is the public face. */
#ifndef PINFER_MODEL_H
#define PINFER_MODEL_H

#include "gguf.h"
#include "pinfer.h"
#include "quant.h"
#include "tokenizer.h"

/* A 2-D weight matrix of `rows` rows of `cols` elements, rows contiguous. */
struct pf_weight {
	const uint8_t *data;
	enum pf_dtype type;
	int64_t rows, cols;
	size_t row_bytes;
	const struct pf_quant_ops *ops;
};

struct pf_layer {
	float *attn_norm;  /* (n_embd) */
	float *ffn_norm;   /* (n_embd) */
	struct pf_weight wq;      /* (n_head * head_dim, n_embd) */
	struct pf_weight wk;      /* (n_head_kv * head_dim, n_embd) */
	struct pf_weight wv;      /* (n_head_kv * head_dim, n_embd) */
	struct pf_weight wo;      /* (n_embd, n_head * head_dim) */
	struct pf_weight ffn_gate;  /* (n_ff, n_embd) */
	struct pf_weight ffn_up;    /* (n_ff, n_embd) */
	struct pf_weight ffn_down;  /* (n_embd, n_ff) */
	/* Sparse modes: ffn_down neuron-major, one row per neuron (sparse_model.c). */
	struct pf_weight ffn_down_t;  /* (n_ff, n_embd) */
	void *down_t_mem;
};

struct pinfer_model {
	struct gguf_file *gguf;
	struct pinfer_model_info info;
	struct pf_vocab *vocab;
	struct pf_weight tok_embd;  /* (n_vocab, n_embd) */
	float *output_norm;         /* (n_embd) */
	struct pf_weight output;    /* (n_vocab, n_embd); a copy of tok_embd when tied */
	struct pf_layer *layers;
	float *thresholds;          /* (n_layer) threshold mode: |silu(gate)| cut-offs */
	bool locked;
};

#endif
