/* A step's reads of the FFN store (docs/offload.md, "Reads"): decode's
 * missing clusters, started together and handed to the compute threads as
 * they land; the prefetch of a layer's guessed clusters during its
 * attention; prefill's runs of clusters through the two halves of the
 * staging buffer. All of it runs inside a step, under the store's lock. */
#include <errno.h>
#include <string.h>

#include "ffn_store_internal.h"

/* Checks a batch's reads: the result, then the checksum. */
static int check_read(const struct pf_ffn_store *s, int l, const struct pf_io_req *q, struct pf_err *err)
{
	const struct store_layer *L = &s->layers[l];
	int64_t k = (int64_t)((q->offset - L->offset) / L->cluster_bytes);
	if (q->result < 0)
		return pf_errf(err, (int)q->result, "%s: read of %zu bytes at offset %llu (layer %d cluster %lld): %s",
			       s->path, q->len, (unsigned long long)q->offset, l, (long long)k, strerror((int)-q->result));
	if ((size_t)q->result < q->len)
		return pf_errf(err, -EIO, "%s: short read: %zd of %zu bytes at offset %llu (layer %d cluster %lld)",
			       s->path, q->result, q->len, (unsigned long long)q->offset, l, (long long)k);
	return pf_store_check_cluster(s, l, k, q->buf, err);
}

/* Starts reading cluster k of layer l into a slot taken for it: read
 * number s->n_miss of the step. False when every slot is in use. */
static bool start_read(struct pf_ffn_store *s, int l, int64_t k, uint8_t **base)
{
	const struct store_layer *L = &s->layers[l];
	int64_t key = L->first_key + k;
	if (!(*base = pf_ncache_put(&s->cache, key, false)))
		return false;
	s->miss_keys[s->n_miss] = key;
	s->read_of[k] = s->n_miss;
	s->reqs[s->n_miss++] = (struct pf_io_req){ .buf = *base, .len = L->cluster_bytes,
						   .offset = L->offset + (uint64_t)k * L->cluster_bytes };
	return true;
}

static void reset_reads(struct pf_ffn_store *s, int l)
{
	const struct store_layer *L = &s->layers[l];
	for (int j = 0; j < s->n_miss; j++)
		s->read_of[s->miss_keys[j] - L->first_key] = -1;
	s->n_miss = s->n_prefetch = 0;
}

void pf_ffn_store_prefetch(struct pf_ffn_store *s, int l, const int32_t *idx, int n)
{
	const struct store_layer *L = &s->layers[l];
	int64_t last = -1;
	for (int i = 0; i < n; i++) {
		int64_t k = idx[i] / L->neurons;
		if (k == last)
			continue;
		last = k;
		uint8_t *base;
		if (s->cache.slot_of[L->first_key + k] < 0 && !start_read(s, l, k, &base))
			break;
	}
	s->n_prefetch = s->n_miss;
	s->prefetch_reads += (uint64_t)s->n_miss;
	s->step_layer = l;
	pf_io_extend(s->io, s->n_miss);
}

bool pf_ffn_store_misses(struct pf_ffn_store *s)
{
	pthread_mutex_lock(&s->stats_lock);
	bool some_cold = s->stats.hot_clusters < s->stats.clusters;
	pthread_mutex_unlock(&s->stats_lock);
	return some_cold;
}

/* The reads of the step so far were not all needed after all (a slot ran
 * out): waits for them and forgets them. */
static void abandon_reads(struct pf_ffn_store *s, int l)
{
	pf_io_extend(s->io, s->n_miss);
	pf_io_finish(s->io);
	for (int j = 0; j < s->n_miss; j++)
		pf_ncache_drop(&s->cache, s->miss_keys[j]);
	reset_reads(s, l);
}

int pf_ffn_store_neurons_start(struct pf_ffn_store *s, int l, int32_t *idx, int n, const uint8_t **bundle,
			       struct pf_err *err)
{
	const struct store_layer *L = &s->layers[l];
	if (s->n_prefetch && s->step_layer != l)
		return pf_errf(err, -EINVAL, "%s: layer %d computed after layer %d was prefetched", s->path, l,
			       s->step_layer);
	int n_ready = 0, n_wait = 0, read = -1;
	int64_t last = -1;
	uint8_t *base = NULL;
	for (int i = 0; i < n; i++) {
		int64_t k = idx[i] / L->neurons;
		if (k != last) {
			last = k;
			read = s->read_of[k];
			if (read >= 0) {
				/* prefetched: a miss the reads started early */
				base = s->reqs[read].buf;
				s->cache.misses++;
				s->prefetch_used++;
			} else if (!(base = pf_ncache_get(&s->cache, L->first_key + k))) {
				if (!start_read(s, l, k, &base)) {
					abandon_reads(s, l);
					return pf_errf(err, -ENOSPC, "%s: layer %d: every neuron cache slot is in use",
						       s->path, l);
				}
				read = s->read_of[k];
			}
		}
		const uint8_t *b = base + (size_t)(idx[i] % L->neurons) * L->bundle_bytes;
		if (read < 0) {
			idx[n_ready] = idx[i];
			bundle[n_ready++] = b;
		} else {
			s->wait_read[n_wait] = read;
			s->wait_idx[n_wait] = idx[i];
			s->wait_ptr[n_wait++] = b;
		}
	}
	/* The waiting neurons after the ready ones, grouped by read (those of
	 * read j from wait_first[j] on), in the order of idx within a group;
	 * landed[] is free until the reads are reaped: it holds each group's
	 * next place meanwhile. */
	int n_miss = s->n_miss;
	memset(s->wait_first, 0, (size_t)(n_miss + 1) * sizeof(*s->wait_first));
	for (int w = 0; w < n_wait; w++)
		s->wait_first[s->wait_read[w] + 1]++;
	for (int j = 0; j < n_miss; j++) {
		s->wait_first[j + 1] += s->wait_first[j];
		s->landed[j] = s->wait_first[j];
	}
	for (int w = 0; w < n_wait; w++) {
		int at = n_ready + s->landed[s->wait_read[w]]++;
		idx[at] = s->wait_idx[w];
		bundle[at] = s->wait_ptr[w];
	}
	s->step_layer = l;
	s->land_head = s->land_tail = s->land_reported = 0;
	s->land_reaping = false;
	s->land_r = 0;
	pf_io_extend(s->io, n_miss);
	return n_ready;
}

/* Collects the reads that landed (waiting for one if none has) and checks
 * them, outside the lock: the other threads go on computing meanwhile. */
static void reap_landed(struct pf_ffn_store *s)
{
	int *done = s->landed + s->land_tail;
	pthread_mutex_unlock(&s->land_lock);
	uint64_t t0 = pf_now_ns();
	int got = pf_io_wait(s->io, done, s->n_miss - s->land_reported);
	uint64_t waited = pf_now_ns() - t0;
	struct pf_err err = { 0 };
	int r = 0, ok = 0;
	if (got == 0)
		r = pf_errf(&err, -EIO, "%s: layer %d: %d reads never completed", s->path, s->step_layer,
			    s->n_miss - s->land_reported);
	for (int i = 0; i < got; i++) {
		int rr = check_read(s, s->step_layer, &s->reqs[done[i]], r ? NULL : &err);
		if (rr && !r)
			r = rr;
		if (!rr)
			done[ok++] = done[i];
	}
	pthread_mutex_lock(&s->land_lock);
	s->step_wait_ns += waited;
	s->land_tail += ok;
	s->land_reported += got;
	if (r && !s->land_r) {
		s->land_r = r;
		s->land_err = err;
	}
	s->land_reaping = false;
	pthread_cond_broadcast(&s->land_cond);
}

int pf_ffn_store_next_landed(struct pf_ffn_store *s, int *first, int *count)
{
	pthread_mutex_lock(&s->land_lock);
	int found = 0;
	while (!s->land_r) {
		if (s->land_head < s->land_tail) {
			int j = s->landed[s->land_head++];
			*first = s->wait_first[j];
			*count = s->wait_first[j + 1] - s->wait_first[j];
			found = 1;
			break;
		}
		if (s->land_reported == s->n_miss)
			break;
		if (s->land_reaping) {
			pthread_cond_wait(&s->land_cond, &s->land_lock);
			continue;
		}
		s->land_reaping = true;
		reap_landed(s);
	}
	pthread_mutex_unlock(&s->land_lock);
	return found;
}

int pf_ffn_store_neurons_finish(struct pf_ffn_store *s, int l, struct pf_err *err)
{
	const struct store_layer *L = &s->layers[l];
	int n_miss = s->n_miss, r = s->land_r;
	/* After a failed read the others still land in slots of the cache:
	 * they must be over before those slots are given back. */
	pf_io_finish(s->io);
	if (!n_miss)
		return 0;
	s->read_ns += s->step_wait_ns;
	s->reads += (uint64_t)n_miss;
	s->bytes_read += (uint64_t)n_miss * L->cluster_bytes;
	if (!r && s->land_reported < n_miss)
		r = pf_errf(err, -EIO, "%s: layer %d: %d reads were not waited for", s->path, l,
			    n_miss - s->land_reported);
	else if (r && err)
		*err = s->land_err;
	if (r)
		for (int j = 0; j < n_miss; j++)
			pf_ncache_drop(&s->cache, s->miss_keys[j]);
	reset_reads(s, l);
	return r;
}

int64_t pf_ffn_store_run_max(const struct pf_ffn_store *s, int l)
{
	return (int64_t)(s->half_bytes / s->layers[l].cluster_bytes);
}

int64_t pf_ffn_store_run_neurons(const struct pf_ffn_store *s)
{
	int64_t most = 0;
	for (int l = 0; l < s->n_layer; l++) {
		int64_t n = pf_ffn_store_run_max(s, l) * s->layers[l].neurons;
		if (n > most)
			most = n;
	}
	return most < s->n_ff ? most : s->n_ff;
}

/* Fills the next half with the run of clusters from s->run_k: copied from
 * the cache when all of it is cached, else read in one request, started
 * here and waited for by the next pf_ffn_store_run_next. */
static void start_run(struct pf_ffn_store *s, int l)
{
	const struct store_layer *L = &s->layers[l];
	int64_t k0 = s->run_k, k1 = k0 + pf_ffn_store_run_max(s, l);
	k1 = k1 < L->n_clusters ? k1 : L->n_clusters;
	s->run_reading = false;
	if (k0 >= k1)
		return;
	uint8_t *half = s->staging + (size_t)s->run_half * s->half_bytes;
	bool cached = true;
	for (int64_t k = k0; k < k1 && cached; k++)
		cached = s->cache.slot_of[L->first_key + k] >= 0;
	if (cached) {
		for (int64_t k = k0; k < k1; k++)
			memcpy(half + (size_t)(k - k0) * L->cluster_bytes,
			       s->cache.slab + (size_t)s->cache.slot_of[L->first_key + k] * s->cache.slot_bytes,
			       L->cluster_bytes);
		return;
	}
	s->run_req = (struct pf_io_req){ .buf = half, .len = (size_t)(k1 - k0) * L->cluster_bytes,
					 .offset = L->offset + (uint64_t)k0 * L->cluster_bytes };
	pf_io_start(s->io, &s->run_req, 1);
	s->run_reading = true;
}

void pf_ffn_store_runs_start(struct pf_ffn_store *s, int l)
{
	s->run_k = 0;
	s->run_half = 0;
	s->step_layer = l;
	start_run(s, l);
}

int pf_ffn_store_run_next(struct pf_ffn_store *s, int l, int64_t *k0, int64_t *k1, const uint8_t **out,
			  struct pf_err *err)
{
	const struct store_layer *L = &s->layers[l];
	if (s->step_layer != l)
		return pf_errf(err, -EINVAL, "%s: layer %d streamed after layer %d was started", s->path, l,
			       s->step_layer);
	if (s->run_k >= L->n_clusters)
		return 0;
	*k0 = s->run_k;
	*k1 = *k0 + pf_ffn_store_run_max(s, l) < L->n_clusters ? *k0 + pf_ffn_store_run_max(s, l) : L->n_clusters;
	const uint8_t *half = s->staging + (size_t)s->run_half * s->half_bytes;
	if (s->run_reading) {
		uint64_t t0 = pf_now_ns();
		pf_io_finish(s->io);
		s->run_reading = false;
		s->read_ns += pf_now_ns() - t0;
		s->reads++;
		s->bytes_read += s->run_req.len;
		const struct pf_io_req *q = &s->run_req;
		if (q->result < 0)
			return pf_errf(err, (int)q->result, "%s: read of %zu bytes at offset %llu (layer %d clusters %lld-%lld): %s",
				       s->path, q->len, (unsigned long long)q->offset, l, (long long)*k0,
				       (long long)*k1 - 1, strerror((int)-q->result));
		if ((size_t)q->result < q->len)
			return pf_errf(err, -EIO, "%s: short read: %zd of %zu bytes at offset %llu (layer %d clusters %lld-%lld)",
				       s->path, q->result, q->len, (unsigned long long)q->offset, l, (long long)*k0,
				       (long long)*k1 - 1);
		for (int64_t k = *k0; k < *k1; k++) {
			int r = pf_store_check_cluster(s, l, k, half + (size_t)(k - *k0) * L->cluster_bytes, err);
			if (r)
				return r;
		}
	}
	s->run_k = *k1;
	s->run_half ^= 1;
	start_run(s, l);
	*out = half;
	return 1;
}
