/* pinfer-model synth's sparse construction (synth_sparse.c,
 * docs/sparsity-synth.md): the biases and gains that make a ReLU or dReLU
 * model about --sparsity S sparse with a heavy head of hot neurons, the
 * rows of the tensors it gives sparse roles, and (--predictor R) the
 * embedded low-rank predictor in PowerInfer's format. */
#ifndef PINFER_TOOLS_SYNTH_SPARSE_H
#define PINFER_TOOLS_SYNTH_SPARSE_H

#include <stdint.h>
#include <stdio.h>

#include "error.h"
#include "synth.h"
#include "synth_item.h"

struct sparse_plan {
	float *mu;    /* n_layer * n_ff: gate's standardized bias of each neuron */
	float *nu;    /* the same for up (dReLU; NULL for ReLU) */
	float *gain;  /* n_layer: ffn_norm's weight of the bias channel */
	/* --predictor */
	struct lowrank *lr;  /* n_layer */
	uint32_t *group;     /* n_layer * n_embd: struct lowrank's */
	float *w;            /* n_layer * n_embd */
	float *qbias;        /* 2 * n_ff: struct lowrank's, shared by the layers */
	/* the low-rank rows' noise share, the weight type's relative error of
	 * the gate, the noise the predictor's type adds to its score, the
	 * margin M (in units of the gate's standard deviation sigma N) and the
	 * expected predicted / active (predictor_finish) */
	double noise, quant, pred_quant, margin, ratio;
	enum pf_dtype pred_type;  /* fc2's, as written (f16 where rows fit no block) */
};

/* Checks --sparsity and --predictor (against --act and --dim): 0 or
 * -EINVAL with a message in err. */
int synth_sparse_check(const struct synth_opts *o, struct pf_err *err);
/* For o->sparsity > 0: plans every layer's biases and bias channel gain
 * (and with a predictor its low-rank part and margin) into sp, zeroed by
 * the caller, and gives the tensors synth.c's plan() listed their sparse
 * roles. 0 or -ENOMEM; sp is to be freed either way. */
int synth_sparse_plan(struct sparse_plan *sp, struct item *items, const struct synth_opts *o,
		      struct pf_err *err);
void synth_sparse_plan_free(struct sparse_plan *sp);
/* The summary lines of the plan (none for a plain model). */
void synth_sparse_log(FILE *log, const struct synth_opts *o, const struct sparse_plan *sp);
/* Row `row` of a tensor with a sparse role (any but ROLE_RANDOM and
 * ROLE_ONES). */
void synth_sparse_row(const struct item *it, int64_t row, float *dst);

#endif
