#include "neuron_cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static uint8_t *slot_data(const struct pf_neuron_cache *c, int32_t s)
{
	return c->slab + (size_t)s * c->slot_bytes;
}

/* ---- the recency list: newest at one end, oldest at the other ---- */

static void unlink_slot(struct pf_neuron_cache *c, int32_t s)
{
	if (c->prev[s] >= 0)
		c->next[c->prev[s]] = c->next[s];
	else
		c->newest = c->next[s];
	if (c->next[s] >= 0)
		c->prev[c->next[s]] = c->prev[s];
	else
		c->oldest = c->prev[s];
	c->prev[s] = c->next[s] = -1;
}

static void link_newest(struct pf_neuron_cache *c, int32_t s)
{
	c->prev[s] = -1;
	c->next[s] = c->newest;
	if (c->newest >= 0)
		c->prev[c->newest] = s;
	c->newest = s;
	if (c->oldest < 0)
		c->oldest = s;
}

static void push_free(struct pf_neuron_cache *c, int32_t s)
{
	c->free_next[s] = c->free_head;
	c->free_head = s;
}

int pf_ncache_init(struct pf_neuron_cache *c, size_t slot_bytes, int32_t max_slots, int32_t n_slots,
		   int64_t n_keys)
{
	memset(c, 0, sizeof(*c));
	c->slot_bytes = slot_bytes;
	c->max_slots = max_slots;
	c->n_keys = n_keys;
	c->newest = c->oldest = c->free_head = -1;
	/* Reserved, not committed: pages are taken as slots are filled. */
	void *slab = mmap(NULL, (size_t)max_slots * slot_bytes, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	c->slot_of = malloc((size_t)n_keys * sizeof(*c->slot_of));
	c->key_of = malloc((size_t)max_slots * sizeof(*c->key_of));
	c->prev = malloc((size_t)max_slots * sizeof(*c->prev));
	c->next = malloc((size_t)max_slots * sizeof(*c->next));
	c->free_next = malloc((size_t)max_slots * sizeof(*c->free_next));
	c->pinned = calloc((size_t)max_slots, sizeof(*c->pinned));
	c->used_in = calloc((size_t)max_slots, sizeof(*c->used_in));
	c->slab = slab == MAP_FAILED ? NULL : slab;
	/* huge pages where the kernel offers them: a step touches hundreds of
	 * slots spread over the slab, one TLB miss each with 4 KiB pages */
	if (c->slab)
		madvise(c->slab, (size_t)max_slots * slot_bytes, MADV_HUGEPAGE);
	if (!c->slab || !c->slot_of || !c->key_of || !c->prev || !c->next || !c->free_next || !c->pinned ||
	    !c->used_in) {
		pf_ncache_free(c);
		return -ENOMEM;
	}
	for (int64_t k = 0; k < n_keys; k++)
		c->slot_of[k] = -1;
	for (int32_t s = 0; s < max_slots; s++) {
		c->key_of[s] = -1;
		c->prev[s] = c->next[s] = -1;
	}
	c->n_slots = n_slots;
	for (int32_t s = n_slots - 1; s >= 0; s--)
		push_free(c, s);
	c->step = 1;
	return 0;
}

void pf_ncache_free(struct pf_neuron_cache *c)
{
	if (c->slab)
		munmap(c->slab, (size_t)c->max_slots * c->slot_bytes);
	free(c->slot_of);
	free(c->key_of);
	free(c->prev);
	free(c->next);
	free(c->free_next);
	free(c->pinned);
	free(c->used_in);
	memset(c, 0, sizeof(*c));
}

void pf_ncache_begin_step(struct pf_neuron_cache *c)
{
	c->step++;
}

uint8_t *pf_ncache_get(struct pf_neuron_cache *c, int64_t key)
{
	int32_t s = c->slot_of[key];
	if (s < 0) {
		c->misses++;
		return NULL;
	}
	c->hits++;
	c->used_in[s] = c->step;
	if (!c->pinned[s]) {
		unlink_slot(c, s);
		link_newest(c, s);
	}
	return slot_data(c, s);
}

/* Empties slot s (occupied), which leaves the recency list if on it. */
static void evict(struct pf_neuron_cache *c, int32_t s)
{
	if (!c->pinned[s])
		unlink_slot(c, s);
	else
		c->n_pinned--;
	c->slot_of[c->key_of[s]] = -1;
	c->key_of[s] = -1;
	c->pinned[s] = false;
	c->n_used--;
}

static int32_t take_slot(struct pf_neuron_cache *c)
{
	if (c->free_head >= 0) {
		int32_t s = c->free_head;
		c->free_head = c->free_next[s];
		return s;
	}
	for (int32_t s = c->oldest; s >= 0; s = c->prev[s])
		if (c->used_in[s] != c->step) {
			evict(c, s);
			c->evictions++;
			return s;
		}
	return -1;
}

static void occupy(struct pf_neuron_cache *c, int32_t s, int64_t key, bool pin)
{
	c->key_of[s] = key;
	c->slot_of[key] = s;
	c->n_used++;
	c->used_in[s] = c->step;
	c->pinned[s] = pin;
	if (pin)
		c->n_pinned++;
	else
		link_newest(c, s);
}

uint8_t *pf_ncache_put(struct pf_neuron_cache *c, int64_t key, bool pin)
{
	int32_t s = take_slot(c);
	if (s < 0)
		return NULL;
	occupy(c, s, key, pin);
	return slot_data(c, s);
}

void pf_ncache_drop(struct pf_neuron_cache *c, int64_t key)
{
	int32_t s = c->slot_of[key];
	if (s < 0)
		return;
	evict(c, s);
	push_free(c, s);
}

void pf_ncache_pin(struct pf_neuron_cache *c, int64_t key, bool pin)
{
	int32_t s = c->slot_of[key];
	if (s < 0 || c->pinned[s] == pin)
		return;
	if (pin) {
		unlink_slot(c, s);
		c->n_pinned++;
	} else {
		link_newest(c, s);
		c->n_pinned--;
	}
	c->pinned[s] = pin;
}

/* The free list holds exactly the free slots below n_slots. */
static void rebuild_free(struct pf_neuron_cache *c)
{
	c->free_head = -1;
	for (int32_t s = c->n_slots - 1; s >= 0; s--)
		if (c->key_of[s] < 0)
			push_free(c, s);
}

void pf_ncache_resize(struct pf_neuron_cache *c, int32_t n_slots)
{
	if (n_slots < 1)
		n_slots = 1;
	if (n_slots > c->max_slots)
		n_slots = c->max_slots;
	int32_t old = c->n_slots;
	if (n_slots < old) {
		/* Unpinned entries past the end go; pinned ones move down into
		 * free slots, or in place of the oldest unpinned entries below. */
		for (int32_t s = n_slots; s < old; s++)
			if (c->key_of[s] >= 0 && !c->pinned[s])
				evict(c, s);
		c->n_slots = n_slots;
		rebuild_free(c);
		for (int32_t s = n_slots; s < old; s++) {
			if (c->key_of[s] < 0)
				continue;
			int64_t key = c->key_of[s];
			int32_t to = c->free_head;
			if (to >= 0) {
				c->free_head = c->free_next[to];
			} else if (c->oldest >= 0) {
				to = c->oldest;
				evict(c, to);
			}
			evict(c, s);
			if (to < 0)
				continue;  /* more pinned entries than slots */
			memcpy(slot_data(c, to), slot_data(c, s), c->slot_bytes);
			occupy(c, to, key, true);
		}
		madvise(slot_data(c, n_slots), (size_t)(old - n_slots) * c->slot_bytes, MADV_DONTNEED);
	} else {
		c->n_slots = n_slots;
		rebuild_free(c);
	}
}

int32_t pf_ncache_count(const struct pf_neuron_cache *c)
{
	return c->n_used;
}
