/* The FFN of a bundle file under a memory budget (docs/offload.md): the
 * budget covers the resident weights (mapped), the contexts made on the
 * model (KV caches, scratch), a staging buffer for prefill, and a neuron
 * cache (neuron_cache.h) that gets the rest. The planner pins the hottest
 * clusters of all layers (the profile's counts, stored in the file) in
 * three quarters of the cache's slots, leaving at least a whole layer's
 * worth unpinned (one step may need all of a layer), and the others hold
 * the least recently used cold clusters, read from the file on demand
 * (O_DIRECT where the file system allows), each checked against its
 * CRC32C.
 *
 * Access happens in steps (one layer's neurons): pointers handed out stay
 * good until the step ends. A step holds the store's lock, so a budget
 * change from another thread waits for it. */
#ifndef PINFER_FFN_STORE_H
#define PINFER_FFN_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "pinfer.h"

struct pinfer_model;
struct pf_ffn_store;

/* For a bundle file: plans for budget bytes (or ffn_percent, see
 * pinfer_model_params.ffn_cache_percent), reads the hot clusters. Refuses
 * a budget below the minimum (the message gives it). */
int pf_ffn_store_open(struct pf_ffn_store **out, struct pinfer_model *m, uint64_t budget, int ffn_percent,
		      struct pf_err *err);
void pf_ffn_store_free(struct pf_ffn_store *s);

void pf_ffn_store_begin_step(struct pf_ffn_store *s);
void pf_ffn_store_end_step(struct pf_ffn_store *s);

/* In a step, before layer l's FFN (during its attention), where the
 * budget leaves clusters on disk (pf_ffn_store_misses): starts reading
 * the clusters of neurons idx[0..n) (ascending; a guess) that are not
 * cached. The step's pf_ffn_store_neurons_start, which must be for layer
 * l, waits for those instead of reading them again. */
void pf_ffn_store_prefetch(struct pf_ffn_store *s, int l, const int32_t *idx, int n);
/* Whether the plan leaves clusters on disk; from another thread than a
 * budget change's, as of the last plan. */
bool pf_ffn_store_misses(struct pf_ffn_store *s);

/* In a step: bundle[i] = the bundle of neuron idx[i] of layer l (idx
 * ascending on entry), reordered so that the neurons whose clusters are
 * cached come first; the reads of the others are started (pf_io), all at
 * once. Returns how many neurons are ready, or an error. */
int pf_ffn_store_neurons_start(struct pf_ffn_store *s, int l, int32_t *idx, int n, const uint8_t **bundle,
			       struct pf_err *err);
/* From any compute thread, any number at once, until it returns 0: waits
 * for one of the started reads to land and pass its checks, and gives its
 * neurons: [*first, *first + *count) of idx and bundle counted after the
 * ready ones. Returns 0 once every read was handed out, or one failed. */
int pf_ffn_store_next_landed(struct pf_ffn_store *s, int *first, int *count);
/* After the compute threads are done: waits for any read still in flight
 * and returns the step's error, if any: a read error, a short read or a
 * checksum mismatch (nothing of a failed step's reads stays cached). */
int pf_ffn_store_neurons_finish(struct pf_ffn_store *s, int l, struct pf_err *err);

/* Prefill, in a step: every cluster of layer l, a run of them at a time
 * (pf_ffn_store_run_max), each from the cache or in one large read, the
 * next run read while the caller computes on the one it has.
 * pf_ffn_store_runs_start starts reading the first run (a prefetch may
 * call it before the layer's attention); each pf_ffn_store_run_next gives
 * the next run, clusters [*k0, *k1) back to back at *out, good until the
 * next call: 1, then 0 after the last, or an error (a read error, a short
 * read, a checksum mismatch). */
void pf_ffn_store_runs_start(struct pf_ffn_store *s, int l);
int pf_ffn_store_run_next(struct pf_ffn_store *s, int l, int64_t *k0, int64_t *k1, const uint8_t **out,
			  struct pf_err *err);
int64_t pf_ffn_store_run_max(const struct pf_ffn_store *s, int l);
/* Neurons in the largest such run of any layer. */
int64_t pf_ffn_store_run_neurons(const struct pf_ffn_store *s);

/* A new budget: shrinking unpins and evicts, growing pins and reads more
 * hot clusters. Refused below the minimum. */
int pf_ffn_store_set_budget(struct pf_ffn_store *s, uint64_t budget, struct pf_err *err);

/* The budget in bytes that ffn_percent (1-100) plans for now: what a
 * pinfer_model_params.ffn_cache_percent gives, as a size. Never waits
 * for a step. */
uint64_t pf_ffn_store_percent_budget(struct pf_ffn_store *s, int percent);

/* Contexts count against the budget: bytes > 0 when one is made (refused
 * when the cache would fall below its minimum), < 0 when freed. */
int pf_ffn_store_add_ctx(struct pf_ffn_store *s, int64_t bytes, struct pf_err *err);

/* The figures as of the last step's end or budget change: never waits
 * for a step. */
void pf_ffn_store_stats(struct pf_ffn_store *s, struct pinfer_offload_stats *out);


#endif
