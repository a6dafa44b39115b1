/* Activation sparsity (docs/sparsity.md): the mode of a model and what it
 * needs at load time (sparse_model.c), and the feed-forward sublayer that
 * runs it (ffn.c). Internal; pinfer.h has the public names. */
#ifndef PINFER_SPARSE_H
#define PINFER_SPARSE_H

#include "context.h"
#include "model.h"

/* Threshold-mode thresholds, one per layer (f32 array), in a model or in a
 * calibration file written by `pinfer-model calibrate`. */
#define PF_THRESHOLDS_KEY "pinfer.sparsity.thresholds"

/* After the weights are bound: picks the mode (p->sparsity, AUTO resolved
 * from the activation and the thresholds found), reads the thresholds and
 * builds the neuron-major down projection the sparse modes read. */
int pf_sparse_setup(struct pinfer_model *m, const struct pinfer_model_params *p, struct pf_err *err);
void pf_sparse_free(struct pinfer_model *m);

/* The feed-forward sublayer of layer l on c->xb (T normalized rows), its
 * output in c->xb: T = 1 in a sparse mode computes only the neurons the
 * mode keeps; otherwise every neuron is computed and the skipped ones are
 * zeroed, which gives the same result. Fails (err set) only when an
 * offloaded model's cluster cannot be read. */
int pf_ffn(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T, struct pf_err *err);
/* Before layer l's attention, for an offloaded model: starts the reads
 * the layer's FFN will wait for, so that they land while attention is
 * computed. Prefill: the first run of the layer's clusters. Decode in
 * predictor mode: the clusters the predictor guesses from the layer's
 * input. */
void pf_ffn_prefetch(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T);
/* Around a decode step: whether this token prefetches, and what it took. */
void pf_ffn_prefetch_choose(struct pinfer_ctx *c);
void pf_ffn_prefetch_learn(struct pinfer_ctx *c, uint64_t token_ns);

#endif
