#include "ffn_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bundle_file.h"
#include "crc32c.h"
#include "ffn_store_internal.h"
#include "model.h"

/* Prefill reads a run of clusters at once: large sequential reads (the
 * disk's throughput stops growing well below this size). */
#define STAGING_BYTES (4u << 20)
/* The share of the cache's slots the hottest clusters get pinned in; the
 * rest hold cold clusters by recency. */
#define HOT_SHARE_NUM 3
#define HOT_SHARE_DEN 4


static uint32_t rd_u32(const void *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* Reads n bytes at offset into dst (page-aligned for O_DIRECT). */
static int read_exact(struct pf_ffn_store *s, uint8_t *dst, size_t n, uint64_t offset, struct pf_err *err)
{
	uint64_t t0 = pf_now_ns();
	size_t done = 0;
	while (done < n) {
		ssize_t got = pread(s->fd, dst + done, n - done, (off_t)(offset + done));
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return pf_errf(err, -errno, "%s: read of %zu bytes at offset %llu: %s", s->path, n - done,
				       (unsigned long long)(offset + done), strerror(errno));
		if (got == 0)
			return pf_errf(err, -EIO, "%s: short read: the file ends at offset %llu, %zu bytes early",
				       s->path, (unsigned long long)(offset + done), n - done);
		/* an O_DIRECT read cannot go on from an unaligned place */
		if (s->direct && (size_t)got < n - done)
			return pf_errf(err, -EIO, "%s: short read: %zd of %zu bytes at offset %llu", s->path, got,
				       n - done, (unsigned long long)(offset + done));
		done += (size_t)got;
	}
	s->reads++;
	s->bytes_read += n;
	s->read_ns += pf_now_ns() - t0;
	return 0;
}

int pf_store_check_cluster(const struct pf_ffn_store *s, int l, int64_t k, const uint8_t *data, struct pf_err *err)
{
	const struct store_layer *L = &s->layers[l];
	uint32_t got = pf_crc32c(0, data, L->cluster_bytes), want = rd_u32(L->crc + 4 * k);
	if (got == want)
		return 0;
	return pf_errf(err, -EBADMSG,
		       "%s: layer %d cluster %lld (%zu bytes at offset %llu): checksum 0x%08x, expected 0x%08x: the file is damaged",
		       s->path, l, (long long)k, L->cluster_bytes,
		       (unsigned long long)(L->offset + (uint64_t)k * L->cluster_bytes), got, want);
}

static int layer_of(const struct pf_ffn_store *s, int64_t key)
{
	int l = 0;
	while (l + 1 < s->n_layer && s->layers[l + 1].first_key <= key)
		l++;
	return l;
}

/* Hottest first: a cluster's count is its first (hottest) neuron's; ties
 * by key, so that each layer's hot clusters are a prefix of it. */
static int by_heat(const void *a, const void *b, void *arg)
{
	const int32_t *heat = arg;
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	if (heat[x] != heat[y])
		return heat[x] > heat[y] ? -1 : 1;
	return (x > y) - (x < y);
}

static int sort_by_heat(struct pf_ffn_store *s)
{
	int32_t *heat = malloc((size_t)s->n_keys * sizeof(*heat));
	s->by_heat = malloc((size_t)s->n_keys * sizeof(*s->by_heat));
	if (!heat || !s->by_heat) {
		free(heat);
		return -ENOMEM;
	}
	for (int l = 0; l < s->n_layer; l++) {
		const struct store_layer *L = &s->layers[l];
		for (int64_t k = 0; k < L->n_clusters; k++)
			heat[L->first_key + k] = L->count[k * L->neurons];
	}
	for (int64_t k = 0; k < s->n_keys; k++)
		s->by_heat[k] = k;
	qsort_r(s->by_heat, (size_t)s->n_keys, sizeof(*s->by_heat), by_heat, heat);
	free(heat);
	return 0;
}

/* ---- planning ---- */

static uint64_t slot_bytes(const struct pf_ffn_store *s)
{
	return s->cache.slot_bytes;
}

/* The smallest budget: what is not the cache, plus slots for every
 * cluster of the largest layer (a step may need them all at once). */
static uint64_t minimum(const struct pf_ffn_store *s)
{
	return s->resident_bytes + s->ctx_bytes + s->fixed_bytes + (uint64_t)s->min_slots * slot_bytes(s);
}

static int32_t slots_for(const struct pf_ffn_store *s, uint64_t budget)
{
	uint64_t n;
	if (s->ffn_percent == PINFER_FFN_CACHE_MIN) {
		n = (uint64_t)s->min_slots;
	} else if (s->ffn_percent > 0) {
		n = ((uint64_t)s->n_keys * (uint64_t)s->ffn_percent + 99) / 100;
		if (n < (uint64_t)s->min_slots)
			n = (uint64_t)s->min_slots;
	} else {
		uint64_t other = s->resident_bytes + s->ctx_bytes + s->fixed_bytes;
		n = budget > other ? (budget - other) / slot_bytes(s) : 0;
	}
	return n > (uint64_t)s->cache.max_slots ? s->cache.max_slots : (int32_t)n;
}

/* Reads the hot clusters not cached yet, a layer's run of them at a time
 * through the staging buffer, and pins them. */
static int pin_hot(struct pf_ffn_store *s, int64_t from, int64_t to, struct pf_err *err)
{
	for (int64_t i = from; i < to;) {
		int64_t key = s->by_heat[i];
		int l = layer_of(s, key);
		const struct store_layer *L = &s->layers[l];
		int64_t k = key - L->first_key;
		if (s->cache.slot_of[key] >= 0) {
			pf_ncache_pin(&s->cache, key, true);
			i++;
			continue;
		}
		/* the run of keys of this layer that follow in the heat order */
		int64_t n = 1, max = (int64_t)(s->staging_bytes / L->cluster_bytes);
		while (i + n < to && n < max && s->by_heat[i + n] == key + n && k + n < L->n_clusters &&
		       s->cache.slot_of[key + n] < 0)
			n++;
		int r = read_exact(s, s->staging, (size_t)n * L->cluster_bytes, L->offset + (uint64_t)k * L->cluster_bytes,
				   err);
		for (int64_t j = 0; j < n && !r; j++) {
			const uint8_t *src = s->staging + (size_t)j * L->cluster_bytes;
			if ((r = pf_store_check_cluster(s, l, k + j, src, err)))
				break;
			uint8_t *slot = pf_ncache_put(&s->cache, key + j, true);
			if (!slot)
				return pf_errf(err, -ENOSPC, "no free slot for a hot cluster (planner bug)");
			memcpy(slot, src, L->cluster_bytes);
		}
		if (r)
			return r;
		i += n;
	}
	return 0;
}

/* Sizes the cache for the budget and the hot set for the cache. */
static int replan(struct pf_ffn_store *s, struct pf_err *err)
{
	int32_t slots = slots_for(s, s->budget);
	if (slots < s->min_slots)
		return pf_errf(err, -ENOMEM, "%s: a memory budget of %llu bytes is below this model's minimum of %llu",
			       s->path, (unsigned long long)s->budget, (unsigned long long)minimum(s));
	/* Room for everything: everything is hot. Else the unpinned slots must
	 * hold a whole layer, which one step may need at once. */
	int64_t hot = slots >= s->n_keys ? s->n_keys : (int64_t)slots * HOT_SHARE_NUM / HOT_SHARE_DEN;
	if (hot < s->n_keys && hot > slots - s->min_slots)
		hot = slots - s->min_slots;
	if (s->ffn_percent)
		s->budget = s->resident_bytes + s->ctx_bytes + s->fixed_bytes + (uint64_t)slots * slot_bytes(s);
	pf_ncache_begin_step(&s->cache);
	for (int64_t i = hot; i < s->n_hot; i++)
		pf_ncache_pin(&s->cache, s->by_heat[i], false);
	pf_ncache_resize(&s->cache, slots);
	int64_t was = s->n_hot < hot ? s->n_hot : hot;
	s->n_hot = hot;
	/* keys pinned before the resize may have lost their slots to it */
	int r = pin_hot(s, 0, was, err);
	return r ? r : pin_hot(s, was, hot, err);
}

/* ---- setup ---- */

static int bind_layers(struct pf_ffn_store *s, const struct pinfer_model *m, struct pf_err *err)
{
	const struct gguf_file *f = m->gguf;
	size_t biggest = 0;
	int64_t key = 0, widest = 0;
	for (int l = 0; l < s->n_layer; l++) {
		struct store_layer *L = &s->layers[l];
		char name[64];
		snprintf(name, sizeof(name), "blk.%d.ffn_clusters", l);
		const struct gguf_tensor *t = gguf_find_tensor(f, name);
		snprintf(name, sizeof(name), "blk.%d.ffn_cluster_crc", l);
		const struct gguf_tensor *crc = gguf_find_tensor(f, name);
		snprintf(name, sizeof(name), "blk.%d.ffn_count", l);
		const struct gguf_tensor *count = gguf_find_tensor(f, name);
		if (!t || !crc || !count || count->type != PF_I32 || count->ne[0] != (uint64_t)m->info.n_ff)
			return pf_errf(err, -EINVAL, "%s: layer %d's clusters, checksums or counts are missing", s->path, l);
		L->offset = f->data_offset + t->offset;
		L->cluster_bytes = (size_t)t->ne[0];
		L->n_clusters = (int64_t)t->ne[1];
		L->crc = crc->data;
		L->count = count->data;
		L->neurons = m->layers[l].ffn_up.group > 1 ? m->layers[l].ffn_up.group : 1;
		L->bundle_bytes = m->layers[l].ffn_up.stride;
		L->first_key = key;
		key += L->n_clusters;
		if (L->cluster_bytes > biggest)
			biggest = L->cluster_bytes;
		if (L->n_clusters > widest)
			widest = L->n_clusters;
	}
	s->n_keys = key;
	s->min_slots = (int32_t)widest;
	size_t most = 0;
	for (int l = 0; l < s->n_layer; l++) {
		size_t all = (size_t)s->layers[l].n_clusters * s->layers[l].cluster_bytes;
		most = all > most ? all : most;
	}
	/* half a layer, or half the staging size, as whole pages and at least
	 * one cluster */
	size_t half = (most < STAGING_BYTES ? most : STAGING_BYTES) / 2 / 4096 * 4096;
	s->half_bytes = half > biggest ? half : biggest;
	s->staging_bytes = 2 * s->half_bytes;
	return pf_ncache_init(&s->cache, biggest, (int32_t)key, (int32_t)widest, key)
		       ? pf_errf(err, -ENOMEM, "out of memory for the neuron cache's tables")
		       : 0;
}

/* Called with the store's lock held. */
static void publish(struct pf_ffn_store *s)
{
	struct pinfer_offload_stats st = {
		.budget = s->budget,
		.minimum = minimum(s),
		.resident_bytes = s->resident_bytes,
		.context_bytes = s->ctx_bytes,
		.cache_bytes = (uint64_t)s->cache.n_slots * slot_bytes(s),
		.clusters = (uint64_t)s->n_keys,
		.hot_clusters = (uint64_t)s->n_hot,
		.cached_clusters = (uint64_t)pf_ncache_count(&s->cache),
		.hits = s->cache.hits,
		.misses = s->cache.misses,
		.reads = s->reads,
		.bytes_read = s->bytes_read,
		.read_ns = s->read_ns,
		.prefetch_reads = s->prefetch_reads,
		.prefetch_used = s->prefetch_used,
		.direct = s->direct,
		.io = pf_io_backend(s->io),
	};
	pthread_mutex_lock(&s->stats_lock);
	s->stats = st;
	pthread_mutex_unlock(&s->stats_lock);
}

int pf_ffn_store_open(struct pf_ffn_store **out, struct pinfer_model *m, uint64_t budget, int ffn_percent,
		      struct pf_err *err)
{
	*out = NULL;
	struct pf_ffn_store *s = calloc(1, sizeof(*s));
	if (!s)
		return pf_errf(err, -ENOMEM, "out of memory");
	s->path = m->gguf->path;
	s->n_layer = m->info.n_layer;
	s->n_ff = m->info.n_ff;
	s->fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->land_lock, NULL);
	pthread_mutex_init(&s->stats_lock, NULL);
	pthread_cond_init(&s->land_cond, NULL);
	int r;
	s->layers = calloc((size_t)s->n_layer, sizeof(*s->layers));
	if (!s->layers) {
		r = pf_errf(err, -ENOMEM, "out of memory");
		goto fail;
	}
	if ((r = bind_layers(s, m, err)))
		goto fail;
	void *staging = mmap(NULL, s->staging_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	s->staging = staging == MAP_FAILED ? NULL : staging;
	if (!s->staging) {
		r = pf_errf(err, -ENOMEM, "out of memory for the staging buffer");
		goto fail;
	}
	if (sort_by_heat(s)) {
		r = pf_errf(err, -ENOMEM, "out of memory");
		goto fail;
	}
	/* The page cache would keep a second copy of every cold cluster read,
	 * outside the budget: bypass it where the file system allows. */
	s->fd = open(s->path, O_RDONLY | O_CLOEXEC | O_DIRECT);
	s->direct = s->fd >= 0;
	if (s->fd < 0)
		s->fd = open(s->path, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0) {
		r = pf_errf(err, -errno, "%s: %s", s->path, strerror(errno));
		goto fail;
	}
	s->reqs = calloc((size_t)s->min_slots, sizeof(*s->reqs));
	s->miss_keys = calloc((size_t)s->min_slots, sizeof(*s->miss_keys));
	s->wait_idx = calloc((size_t)s->n_ff, sizeof(*s->wait_idx));
	s->wait_ptr = calloc((size_t)s->n_ff, sizeof(*s->wait_ptr));
	s->wait_first = calloc((size_t)s->min_slots + 1, sizeof(*s->wait_first));
	s->landed = calloc((size_t)s->min_slots, sizeof(*s->landed));
	s->read_of = malloc((size_t)s->min_slots * sizeof(*s->read_of));
	s->wait_read = calloc((size_t)s->n_ff, sizeof(*s->wait_read));
	if (!s->reqs || !s->miss_keys || !s->wait_idx || !s->wait_ptr || !s->wait_first || !s->landed ||
	    !s->read_of || !s->wait_read) {
		r = pf_errf(err, -ENOMEM, "out of memory");
		goto fail;
	}
	for (int32_t k = 0; k < s->min_slots; k++)
		s->read_of[k] = -1;
	if ((r = pf_io_open(&s->io, s->fd, err)))
		goto fail;
	uint64_t clusters = 0;
	for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
		const struct gguf_tensor *t = &m->gguf->tensors[i];
		if (t->type == PF_I8 && t->name.len > 13 &&
		    !memcmp(t->name.ptr + t->name.len - 13, ".ffn_clusters", 13))
			clusters += t->nbytes;
	}
	s->resident_bytes = m->gguf->size - clusters;
	s->fixed_bytes = s->staging_bytes + (uint64_t)s->n_keys * (sizeof(int32_t) + sizeof(int64_t)) +
			 (uint64_t)s->cache.max_slots * (sizeof(int64_t) + 4 * sizeof(int32_t) + 1);
	s->budget = budget;
	s->ffn_percent = ffn_percent;
	if ((r = replan(s, err)))
		goto fail;
	publish(s);
	*out = s;
	return 0;
fail:
	pf_ffn_store_free(s);
	return r;
}

void pf_ffn_store_free(struct pf_ffn_store *s)
{
	if (!s)
		return;
	pf_io_free(s->io);
	free(s->reqs);
	free(s->miss_keys);
	free(s->wait_idx);
	free(s->wait_ptr);
	free(s->wait_first);
	free(s->landed);
	free(s->read_of);
	free(s->wait_read);
	if (s->fd >= 0)
		close(s->fd);
	pf_ncache_free(&s->cache);
	if (s->staging)
		munmap(s->staging, s->staging_bytes);
	free(s->layers);
	free(s->by_heat);
	pthread_mutex_destroy(&s->stats_lock);
	pthread_cond_destroy(&s->land_cond);
	pthread_mutex_destroy(&s->land_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void pf_ffn_store_begin_step(struct pf_ffn_store *s)
{
	pthread_mutex_lock(&s->lock);
	pf_ncache_begin_step(&s->cache);
	s->step_wait_ns = 0;
	pf_io_start(s->io, s->reqs, 0);
}

void pf_ffn_store_end_step(struct pf_ffn_store *s)
{
	/* a run read ahead that a failed step left behind */
	pf_io_finish(s->io);
	s->run_reading = false;
	publish(s);
	pthread_mutex_unlock(&s->lock);
}

int pf_ffn_store_set_budget(struct pf_ffn_store *s, uint64_t budget, struct pf_err *err)
{
	pthread_mutex_lock(&s->lock);
	uint64_t old = s->budget;
	int old_percent = s->ffn_percent;
	s->budget = budget;
	s->ffn_percent = 0;
	int r = replan(s, err);
	if (r == -ENOMEM) {
		s->budget = old;
		s->ffn_percent = old_percent;
		replan(s, NULL);
	}
	publish(s);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int pf_ffn_store_add_ctx(struct pf_ffn_store *s, int64_t bytes, struct pf_err *err)
{
	pthread_mutex_lock(&s->lock);
	s->ctx_bytes = (uint64_t)((int64_t)s->ctx_bytes + bytes);
	int r = replan(s, err);
	if (r == -ENOMEM && bytes > 0) {
		s->ctx_bytes -= (uint64_t)bytes;
		replan(s, NULL);
	}
	publish(s);
	pthread_mutex_unlock(&s->lock);
	return r;
}

uint64_t pf_ffn_store_percent_budget(struct pf_ffn_store *s, int percent)
{
	pthread_mutex_lock(&s->stats_lock);
	uint64_t ctx = s->stats.context_bytes;
	pthread_mutex_unlock(&s->stats_lock);
	/* slots_for()'s count; what it reads besides the contexts is fixed at
	 * open */
	uint64_t n = ((uint64_t)s->n_keys * (uint64_t)percent + 99) / 100;
	n = n < (uint64_t)s->min_slots ? (uint64_t)s->min_slots : n;
	n = n > (uint64_t)s->cache.max_slots ? (uint64_t)s->cache.max_slots : n;
	return s->resident_bytes + ctx + s->fixed_bytes + n * s->cache.slot_bytes;
}

void pf_ffn_store_stats(struct pf_ffn_store *s, struct pinfer_offload_stats *out)
{
	pthread_mutex_lock(&s->stats_lock);
	*out = s->stats;
	pthread_mutex_unlock(&s->stats_lock);
}
