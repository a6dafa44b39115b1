/* What the two halves of the feed-forward sublayer share: ffn.c (decode,
 * one token at a time, in the sparse modes) and ffn_prefill.c (prefill, and
 * every evaluation in the dense mode). */
#ifndef PINFER_FFN_INTERNAL_H
#define PINFER_FFN_INTERNAL_H

#include <math.h>

#include "context.h"
#include "model.h"

static inline float pf_silu(float g)
{
	return g / (1.0f + expf(-g));
}

/* Where a layer's neuron bundles keep their rows (bundle.h): the first row
 * the sparse paths read (the gate when the bundles hold it, else the up),
 * the offsets of the up and down rows in a bundle, and the bytes read. */
struct pf_bundle_layout {
	const struct pf_weight *first;
	size_t up_off, down_off, bytes;
	int64_t group;  /* neurons per cluster of a bundle file, else 1 */
};

static inline struct pf_bundle_layout pf_bundle_layout_of(const struct pinfer_model *m, const struct pf_layer *L)
{
	bool gate = m->bundles.gate;
	size_t up_off = gate ? L->ffn_gate.row_bytes : 0;
	return (struct pf_bundle_layout){
		.first = gate ? &L->ffn_gate : &L->ffn_up,
		.up_off = up_off,
		.down_off = up_off + L->ffn_up.row_bytes,
		.bytes = up_off + L->ffn_up.row_bytes + L->ffn_down_t.row_bytes,
		.group = L->ffn_up.group > 1 ? L->ffn_up.group : 1,
	};
}

/* The predictor's scores for T tokens of c->xb into c->pred_s. */
void pf_ffn_predict(struct pinfer_ctx *c, const struct pf_layer *L, int T);

/* T tokens of c->xb through the FFN into c->xb: every neuron through the
 * matrix products (pf_ffn_dense), or, in a sparse mode, from the bundles
 * (pf_ffn_prefill, which may read them from a bundle file). */
void pf_ffn_dense(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T);
int pf_ffn_prefill(struct pinfer_ctx *c, const struct pf_layer *L, int l, int T, struct pf_err *err);

#endif
