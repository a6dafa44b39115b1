/* The state of the FFN store (ffn_store.h), shared by its two halves:
 * ffn_store.c (planning, the cache, budgets, figures) and ffn_store_step.c
 * (a step's reads: decode's clusters as they land, prefetch, prefill's
 * runs). */
#ifndef PINFER_FFN_STORE_INTERNAL_H
#define PINFER_FFN_STORE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "ffn_store.h"
#include "io.h"
#include "neuron_cache.h"

struct store_layer {
	uint64_t offset;        /* of cluster 0 in the file */
	int64_t n_clusters;
	size_t cluster_bytes;
	const uint8_t *crc;     /* per cluster (in the mapping) */
	const int32_t *count;   /* per position: profile count, non-increasing */
	int64_t neurons;        /* per cluster */
	size_t bundle_bytes;    /* from one neuron of a cluster to the next */
	int64_t first_key;
};

struct pf_ffn_store {
	const char *path;
	int fd;
	bool direct;
	struct pf_io *io;
	/* a step's reads (at most a layer's clusters), the neurons waiting
	 * for them (those of read j from wait_first[j] on, counted after the
	 * ready ones), and the reads landed and checked, waiting to be handed
	 * to a compute thread (landed[land_head..land_tail)) */
	struct pf_io_req *reqs;
	int64_t *miss_keys;
	int n_miss;
	int32_t *wait_idx;
	const uint8_t **wait_ptr;
	int *wait_first;
	int32_t *read_of;      /* per cluster of the step's layer: its read, or -1 */
	int32_t *wait_read;
	int n_prefetch;        /* reads the step's prefetch started (the first ones) */
	int *landed;
	int land_head, land_tail, land_reported;
	bool land_reaping;
	int land_r;            /* the first failed read's error */
	struct pf_err land_err;
	pthread_mutex_t land_lock;
	pthread_cond_t land_cond;
	pthread_mutex_t lock;
	/* the figures as of the last step or plan, for readers that must not
	 * wait for a step (the daemon's loop) */
	pthread_mutex_t stats_lock;
	struct pinfer_offload_stats stats;
	struct pf_neuron_cache cache;
	int n_layer;
	int64_t n_ff;
	struct store_layer *layers;
	int64_t n_keys;
	int64_t *by_heat;       /* every key, hottest first (the planner's order) */
	int64_t n_hot;          /* keys of by_heat pinned */
	/* two halves: prefill computes on a run of clusters in one while the
	 * next run is read into the other */
	uint8_t *staging;
	size_t staging_bytes;   /* STAGING_BYTES, or less for a model whose layers are smaller */
	size_t half_bytes;
	struct pf_io_req run_req;
	int64_t run_k;          /* the first cluster of the run in the next half */
	int run_half;
	bool run_reading;
	uint64_t budget, resident_bytes, ctx_bytes, fixed_bytes;
	int ffn_percent;        /* pinfer_model_params.ffn_cache_percent; 0: budget */
	int step_layer;
	uint64_t step_wait_ns;  /* a step's time spent waiting for its reads */
	int32_t min_slots;
	uint64_t reads, bytes_read, read_ns, prefetch_reads, prefetch_used;
};

/* Cluster k of layer l, at data, against its CRC32C. */
int pf_store_check_cluster(const struct pf_ffn_store *s, int l, int64_t k, const uint8_t *data, struct pf_err *err);

#endif
