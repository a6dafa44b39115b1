/* pinfer-model bench --vs: two models' decode speed in one run. */
#ifndef PINFER_TOOLS_BENCH_COMPARE_H
#define PINFER_TOOLS_BENCH_COMPARE_H

#include "common.h"

/* Decodes n_decode tokens with mo's model and with vs (opened with mo's
 * options but sparsity vs_mode and no memory budget), in alternating
 * rounds, and prints each one's best rate and their ratio. Returns the
 * exit status. */
int bench_compare(const struct model_opts *mo, const char *vs, enum pinfer_sparsity vs_mode, long n_decode);

#endif
