/* Bundle files (docs/format.md): a model packed by `pinfer-model pack` for
 * flash offload. A GGUF file aligned to 4 KiB whose FFN weights are stored
 * as neuron bundles (bundle.h), hottest neurons first, in clusters of whole
 * 4 KiB blocks so that one O_DIRECT read fetches whole neurons, each
 * cluster with its CRC32C; every other tensor ("resident") has its CRC32C
 * in a table too. The neurons of a layer are renumbered by their position
 * in the file (the predictor's fc2 rows and a resident gate's rows are
 * permuted to match), so the engine never maps ids. */
#ifndef PINFER_BUNDLE_FILE_H
#define PINFER_BUNDLE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"

#define PF_BUNDLE_VERSION 1
#define PF_BUNDLE_BLOCK 4096

#define PF_BUNDLE_KEY_VERSION "pinfer.bundle.version"
#define PF_BUNDLE_KEY_GATE "pinfer.bundle.gate"  /* bool: gate rows in the bundles */
#define PF_BUNDLE_KEY_SOURCE "pinfer.bundle.source"
#define PF_BUNDLE_KEY_PROFILE_TOKENS "pinfer.bundle.profile_tokens"
/* Per layer (arrays of n_layer): the formats of the bundle's rows, and the
 * clusters' shape. */
#define PF_BUNDLE_KEY_GATE_TYPE "pinfer.bundle.gate_type"
#define PF_BUNDLE_KEY_UP_TYPE "pinfer.bundle.up_type"
#define PF_BUNDLE_KEY_DOWN_TYPE "pinfer.bundle.down_type"
#define PF_BUNDLE_KEY_CLUSTER_NEURONS "pinfer.bundle.cluster_neurons"
#define PF_BUNDLE_KEY_CLUSTER_BYTES "pinfer.bundle.cluster_bytes"
/* I32 tensor: the CRC32C of every tensor's data in file order, 0 for the
 * cluster tensors (their clusters have their own) and for itself. */
#define PF_BUNDLE_CRC_TENSOR "pinfer.bundle.crc32c"
/* Per layer N: blk.N.ffn_clusters (I8, [cluster_bytes, n_clusters]),
 * blk.N.ffn_cluster_crc (I32, [n_clusters]), blk.N.ffn_order (I32,
 * [n_ff]: the source's neuron id at each position) and blk.N.ffn_count
 * (I32, [n_ff]: the profile's activation count at each position). */

struct pinfer_model;

/* How a layer's bundles of bundle_bytes are grouped: bundles larger than
 * a block take whole blocks each; smaller ones are packed several to a
 * block (reading one cold neuron costs a block whatever it holds). */
void pf_bundle_cluster_shape(size_t bundle_bytes, int64_t *neurons, size_t *bytes);

bool pf_bundle_file_is(const struct gguf_file *f);

/* For a bundle file, after the resident weights are bound: checks the
 * layout keys and every resident tensor's checksum, and gives each layer's
 * ffn_up, ffn_down_t and (gate in the bundles) ffn_gate their shape and
 * cluster layout, without data yet. */
int pf_bundle_file_bind(struct pinfer_model *m, struct pf_err *err);

/* Reads every cluster into memory (all neurons resident), verifying each
 * one's checksum, and points the layers' FFN weights at them. */
int pf_bundle_file_load(struct pinfer_model *m, bool lock, struct pf_err *err);

#endif
