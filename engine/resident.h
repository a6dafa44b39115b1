/* The weights a decode step reads outside the FFN bundles (attention,
 * output head, predictor, and the FFN matrices of the modes that read them
 * whole), copied out of the file's mapping into anonymous memory backed by
 * huge pages.
 *
 * Read in place, those weights come from the page cache in 4 KiB pages,
 * wherever the kernel put them: on the 2-core Zen 2 VM the attention output
 * matrices of a 7B model streamed at 23.4-26.0 GB/s from the mapping,
 * 27.6-28.5 from a copy in 4 KiB anonymous pages and 29.1-30.9 from a copy
 * in huge pages (docs/design.md "Weights in memory"). The copy costs the
 * load a memcpy, and its pages are the model's own instead of the page
 * cache's: pinfer_model_params.mmap_weights keeps the old way. */
#ifndef PINFER_RESIDENT_H
#define PINFER_RESIDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct pinfer_model;

struct pf_resident {
	uint8_t *mem;      /* NULL: the weights are read in place */
	size_t mem_bytes;  /* length of the mapping */
	bool locked;
};

/* Copies them after the sparse mode has bound the FFN to its bundles, and
 * points the weights at the copies; the file's pages of those tensors are
 * released from the mapping (and unlocked, for a model loaded with mlock,
 * whose copies are locked instead). Adds the copy to info.heap_bytes and
 * info.copied_bytes. */
int pf_resident_copy(struct pinfer_model *m, bool lock, struct pf_err *err);
/* Safe on a model without copies. */
void pf_resident_free(struct pinfer_model *m);

#endif
