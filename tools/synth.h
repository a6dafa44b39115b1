/* pinfer-model synth: writes a llama GGUF of any shape and weight type with
 * random weights and a real vocabulary, so speed can be measured on
 * full-size models without downloading them. The weights are a pure
 * function of the seed (not of the thread count), and numerically tame:
 * approximately normal with standard deviation 1/sqrt(row length), norms
 * all 1, so every activation stays O(1).
 *
 * With a sparsity S (ReLU or dReLU models only) the model is built so that
 * its own forward pass leaves about a fraction S of the FFN activations at
 * exactly zero for each token, in every layer, with a heavy head of hot
 * neurons like trained ReLU models (the top 20% of neurons carry about 80%
 * of the activations at S = 0.9): a constant bias channel in dimension 0
 * gives every gate (and dReLU up) neuron a bias chosen from its target
 * firing probability. No forward pass is run while writing; the scales are
 * predicted analytically (synth_sparse.c, docs/sparsity-synth.md). The file then
 * has pinfer.synth.sparsity = S.
 *
 * With a predictor of R hidden units as well, the file is in PowerInfer's
 * format (magic PWRI) and has, per layer, a low-rank activation predictor
 * (blk.N.fc1.weight, blk.N.fc2.weight) and the down projection transposed
 * (blk.N.ffn_down_t.weight). The gate matrix (and dReLU's up) is then a
 * bias, a rank R/2 - 1 part the predictor reproduces exactly and a little
 * noise, so that fc2 . relu(fc1 . x) > powerinfer.sparse_threshold finds
 * about 99.5% of the neurons that fire while predicting few more than
 * fire. */
#ifndef PINFER_TOOLS_SYNTH_H
#define PINFER_TOOLS_SYNTH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dtype.h"
#include "error.h"
#include "pinfer.h"

struct synth_opts {
	const char *shape;  /* named shape, for general.name; NULL: custom */
	int n_embd, n_ff, n_layer, n_head, n_head_kv;
	const char *vocab;  /* GGUF whose tokenizer.* keys are copied */
	enum pf_dtype type;
	enum pinfer_ffn_act act;  /* PINFER_ACT_AUTO: pinfer.ffn_act is not written */
	float sparsity;           /* 0: plain random weights; else 0 < S < 1, act relu or drelu:
				   * the FFN's fraction of zero activations per token */
	int predictor;            /* 0: none; else (with a sparsity) the predictor's hidden
				   * units R, even, 2 <= R <= n_embd: PowerInfer's format */
	enum pf_dtype predictor_type;  /* fc1 and fc2 */
	uint32_t n_ctx;
	uint64_t seed;
	int n_threads;  /* 0: online CPUs */
	FILE *log;      /* progress and summary; NULL: silent */
};

/* Defaults: no shape, type f16, predictor type q8_0, context 4096, seed 1,
 * vocab NULL. */
void synth_opts_init(struct synth_opts *o);
/* Sets the dimensions of a named shape; -1 when there is none by that name. */
int synth_set_shape(struct synth_opts *o, const char *name);
/* The named shapes, space separated. */
void synth_shape_names(char *buf, size_t size);
/* $SHARED/models/llama-2-tiny-random/llama-2-tiny-random.gguf, with SHARED
 * defaulting to ../shared; written into buf, which is returned. */
const char *synth_default_vocab(char *buf, size_t size);

int synth_model(const char *out, const struct synth_opts *o, struct pf_err *err);

#endif
