/* The loaded model: hyperparameters, weight views into the GGUF mapping,
 * and the vocabulary. Internal to the engine; pinfer.h is the public face. */
#ifndef PINFER_MODEL_H
#define PINFER_MODEL_H

#include "bundle.h"
#include "gguf.h"
#include "pinfer.h"
#include "quant.h"
#include "resident.h"
#include "tokenizer.h"

/* A 2-D weight matrix of `rows` rows of `cols` elements. Row r starts
 * r * stride bytes after data: stride is row_bytes for a tensor of the
 * file, more where the rows are interleaved with others (neuron bundles).
 * Rows may also come in groups of `group` rows, group_bytes apart (the
 * clusters of a bundle file, padded to whole disk blocks); group 0 or 1
 * means no groups. */
struct pf_weight {
	const uint8_t *data;
	enum pf_dtype type;
	int64_t rows, cols;
	size_t row_bytes;
	size_t stride;
	int64_t group;
	size_t group_bytes;
	const struct pf_quant_ops *ops;
};

static inline const uint8_t *pf_weight_row(const struct pf_weight *w, int64_t r)
{
	if (w->group <= 1)
		return w->data + (size_t)r * w->stride;
	return w->data + (size_t)(r / w->group) * w->group_bytes + (size_t)(r % w->group) * w->stride;
}

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
	/* Sparse modes: ffn_down neuron-major, one row per neuron, from the
	 * file (blk.N.ffn_down_t) or built at load. After the load it lives in
	 * the neuron bundles, as do ffn_up and, in predictor mode, ffn_gate
	 * (bundle.h). */
	struct pf_weight ffn_down_t;  /* (n_ff, n_embd) */
	/* Predictor mode: score = fc2 relu(fc1 x); a neuron runs when its
	 * score exceeds pinfer_model.pred_threshold. */
	struct pf_weight fc1;  /* (rank, n_embd) */
	struct pf_weight fc2;  /* (n_ff, rank) */
};

struct pf_ffn_store;

struct pinfer_model {
	struct gguf_file *gguf;
	struct pinfer_model_info info;
	struct pf_vocab *vocab;
	struct pf_weight tok_embd;  /* (n_vocab, n_embd) */
	float *output_norm;         /* (n_embd) */
	struct pf_weight output;    /* (n_vocab, n_embd); a copy of tok_embd when tied */
	struct pf_layer *layers;
	float *thresholds;          /* (n_layer) threshold mode: |silu(gate)| cut-offs */
	int pred_rank;              /* predictor mode: rows of fc1, 0 without predictors */
	float pred_threshold;       /* powerinfer.sparse_threshold */
	struct pf_bundles bundles;  /* sparse modes */
	struct pf_resident resident; /* copies of the weights read in place otherwise */
	struct pf_ffn_store *store; /* a bundle file under a memory budget */
	bool bundle_file;           /* packed for offload (bundle_file.h) */
	bool bundle_gate;           /* a bundle file whose bundles hold the gate rows */
	bool locked;
};

/* Points w at tensor name, which must be a matrix of rows x cols in a
 * format with kernels; the error names the tensor and what was found. */
int pf_bind_weight(struct pinfer_model *m, struct pf_weight *w, const char *name, int64_t rows,
		   int64_t cols, struct pf_err *err);

#endif
