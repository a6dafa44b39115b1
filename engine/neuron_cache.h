/* The neuron cache of a flash-offloaded model: a slab of equal slots, each
 * holding one cluster of neuron bundles read from a bundle file
 * (bundle_file.h), found by key in O(1) through a direct table (a model
 * has a few hundred thousand clusters), evicted least recently used first.
 *
 * The slab is reserved once for the largest capacity it may ever have and
 * never reallocated: the capacity moves within it, and shrinking moves the
 * pinned entries of the slots past the new end down, drops the rest and
 * gives their pages back. Pinned entries (the hot set) are never evicted;
 * entries used in the current step (a layer's neurons being computed) are
 * not evicted until the next step begins, so pointers handed out stay good
 * for the step. Slots are whole pages, aligned for O_DIRECT reads.
 *
 * Not thread-safe: its owner serializes access. */
#ifndef PINFER_NEURON_CACHE_H
#define PINFER_NEURON_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pf_neuron_cache {
	uint8_t *slab;
	size_t slot_bytes;
	int32_t max_slots;  /* reserved */
	int32_t n_slots;    /* capacity now */
	int64_t n_keys;
	int32_t *slot_of;   /* [n_keys]: slot, or -1 */
	int64_t *key_of;    /* [max_slots]: key, or -1 for a free slot */
	int32_t *prev, *next;  /* recency list of the occupied unpinned slots */
	int32_t newest, oldest;
	int32_t *free_next;    /* free slots below n_slots */
	int32_t free_head;
	bool *pinned;
	uint32_t *used_in;     /* [max_slots]: the step that last used the slot */
	uint32_t step;
	int32_t n_pinned;
	int32_t n_used;        /* occupied slots: read with every step's figures */
	uint64_t hits, misses, evictions;
};

/* slot_bytes: a multiple of the page size. Returns 0 or -ENOMEM. */
int pf_ncache_init(struct pf_neuron_cache *c, size_t slot_bytes, int32_t max_slots, int32_t n_slots,
		   int64_t n_keys);
/* Safe on a zeroed or failed cache. */
void pf_ncache_free(struct pf_neuron_cache *c);

/* Starts a step: what the previous one used becomes evictable again. */
void pf_ncache_begin_step(struct pf_neuron_cache *c);

/* The slot holding key (marked used in this step, made the most recent),
 * or NULL. Counts a hit or a miss. */
uint8_t *pf_ncache_get(struct pf_neuron_cache *c, int64_t key);

/* A slot for key, which must not be cached, for the caller to fill: a free
 * one, or the least recently used one that is neither pinned nor used in
 * this step. NULL when there is none. */
uint8_t *pf_ncache_put(struct pf_neuron_cache *c, int64_t key, bool pin);

/* Forgets key (its fill failed, say); its slot becomes free. */
void pf_ncache_drop(struct pf_neuron_cache *c, int64_t key);

/* Pins or unpins a cached key. */
void pf_ncache_pin(struct pf_neuron_cache *c, int64_t key, bool pin);

/* Changes the capacity (1 <= n_slots <= max_slots). Shrinking keeps the
 * pinned entries while they fit, most of them in the slots that remain,
 * and drops the others. */
void pf_ncache_resize(struct pf_neuron_cache *c, int32_t n_slots);

/* Entries cached now. */
int32_t pf_ncache_count(const struct pf_neuron_cache *c);

#endif
