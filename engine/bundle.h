/* Neuron bundles (docs/sparsity.md): in a sparse mode, every FFN neuron's
 * weights stored together, in one anonymous mapping built at load:
 *
 *   layer l, neuron j: [gate row (predictor mode)] [up row] [down row]
 *
 * the down row being the neuron's column of ffn_down, neuron-major (from
 * the file's blk.N.ffn_down_t, or transposed at load). A sparse decode step
 * reads a few hundred neurons per layer at scattered places; a bundle is
 * one contiguous stream the hardware prefetcher follows, where three rows
 * in three matrices are three short streams that each start cold (1.6x the
 * read speed measured on Zen 2). The same layout, padded for O_DIRECT, is
 * what flash-offloaded models read one neuron at a time.
 *
 * After pf_bundles_build, the layer's ffn_up, ffn_down_t and (predictor
 * mode) ffn_gate point into the bundles with stride = the bundle size;
 * prefill computes from them too (ffn.c), so the file's copies of those
 * rows and of ffn_down are left to the page cache. Gate and threshold
 * modes read the whole gate matrix every token, which streams best where
 * it is, so it stays in the file. */
#ifndef PINFER_BUNDLE_H
#define PINFER_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct pinfer_model;

struct pf_bundles {
	uint8_t *mem;      /* every layer's bundles; NULL in dense mode */
	size_t mem_bytes;  /* length of the mapping */
	bool gate;         /* the bundles hold the gate rows */
	bool locked;
};

/* Builds the bundles of every layer on all CPUs and points the layers'
 * weights into them; with_gate puts the gate rows in too. The file's
 * ffn_down_t is used when bound (non-NULL data), else ffn_down is
 * transposed. lock: mlock the bundles (the model was loaded with mlock). */
int pf_bundles_build(struct pinfer_model *m, bool with_gate, bool lock, struct pf_err *err);
/* Safe on a model without bundles. */
void pf_bundles_free(struct pinfer_model *m);

#endif
