/* What pinfer-model synth's files share (synth.c writes, synth_sparse.c
 * builds sparse models): the tensors to write, in the order synth.c's plan()
 * lists them, and the seeded generators their rows come from (synth.c). */
#ifndef PINFER_TOOLS_SYNTH_ITEM_H
#define PINFER_TOOLS_SYNTH_ITEM_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "synth.h"

/* How a tensor's rows are made. Plain synthesis uses the first two; the
 * sparse construction (see the comment at the top of synth.h,
 * synth_sparse.c and docs/sparsity-synth.md) the others. */
enum role {
	ROLE_RANDOM,     /* approximately normal, std */
	ROLE_ONES,       /* a norm: all ones */
	ROLE_EMBD,       /* bias channel in column 0, the rest of norm exactly std sqrt(cols - 1) */
	ROLE_READ,       /* random with column 0 zero: blind to the bias channel */
	ROLE_QUERY,      /* QUERY_GAIN x the attn_k row it meets in the score: heads attend to their own token */
	ROLE_WRITE,      /* random with row 0 zero: never writes the bias channel */
	ROLE_BIASED,     /* column 0 a neuron's bias, the rest of norm exactly std sqrt(cols - 1) */
	ROLE_FFN_NORM,   /* ones, but the bias channel's gain in column 0 */
	/* the predictor's (--predictor) */
	ROLE_LOWRANK,    /* column 0 a neuron's bias, the rest a_j B + noise (struct lowrank) */
	ROLE_DOWN_H,     /* ROLE_WRITE from a counter-based generator: element (i, j) alone */
	ROLE_DOWN_T,     /* the transpose of ROLE_DOWN_H: row j is column j of ffn_down */
	ROLE_FC1,        /* [B'; -B'], B' = [e_0; B] */
	ROLE_FC2,        /* row j: [bias_j + margin, a_j, 0, -a_j] */
};

/* One layer's predictor (synth_sparse.c). */
struct lowrank;

/* One tensor to write. */
struct item {
	char name[64];
	uint32_t n_dims;
	uint64_t ne[2];
	enum pf_dtype type;
	enum role role;
	float std;
	uint64_t key;        /* seeds its rows */
	/* sparse roles only */
	const float *mu;     /* ROLE_BIASED: each row's bias in noise standard deviations */
	float gain;          /* ROLE_FFN_NORM: the weight of column 0 */
	uint64_t src_key;    /* ROLE_QUERY: attn_k's key */
	int head_dim, group; /* ROLE_QUERY: row r copies attn_k row (r / head_dim / group) * head_dim + r % head_dim */
	/* predictor roles only */
	struct lowrank *lr;  /* ROLE_LOWRANK, ROLE_FC1, ROLE_FC2 */
	int half;            /* ROLE_LOWRANK: 0 gate, 1 up */
};

/* Tensors per layer: the llama ones (attn_norm .. ffn_down), then
 * (--predictor) fc1, fc2 and ffn_down_t. Layer l's are items 1 + l times
 * this on; item 0 is token_embd. */
size_t synth_layer_items(const struct synth_opts *o);

/* SplitMix64's output for state x. */
uint64_t synth_splitmix64(uint64_t x);
/* The factor that gives the sum of four uniform 16-bit lanes (less its
 * mean) a standard deviation std. */
float synth_lanes_scale(float std);
/* Row `row` of a tensor seeded by key: n approximately normal values of
 * standard deviation std, a pure function of (key, row). */
void synth_gen_random(uint64_t key, int64_t row, float std, int64_t n, float *dst);

#endif
