/* Shared by models.c (the registry: scan, load, unload, eviction) and
 * models_offload.c (offloaded models' budgets). Not for the rest of the
 * daemon: models.h is its interface. */
#ifndef PINFERD_MODELS_INTERNAL_H
#define PINFERD_MODELS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "models.h"

struct load_job;
struct resize_job;

struct models {
	struct loop *loop;
	struct models_config cfg;
	struct model_entry *entries;
	sched_notify_fn notify;
	void *notify_data;
	models_load_done_fn *load_done;
	void *load_done_data;
	struct loop_wake *wake;

	pthread_mutex_t lock;      /* guards finished, loading, resized and resizing */
	pthread_cond_t idle;       /* loading or resizing went down */
	struct load_job *finished;
	int loading;
	uint64_t loads;            /* loads ended well, for load_seq */

	/* models_offload.c: budget changes running on threads, and the timer
	 * that grows shrunk budgets back once memory pressure is gone. */
	struct loop_wake *resize_wake;
	struct resize_job *resized;
	int resizing;
	uint64_t restore_timer;
};

/* Evicts idle models other than for_e, least recently used first, until
 * need more bytes fit the daemon's budget (and, with one_more, the count
 * limit allows another model). False, with why, when busy models leave no
 * room. */
bool models_make_room(struct models *m, struct model_entry *for_e, uint64_t need, bool one_more, char *why,
		      size_t why_size);

/* models_offload.c's part of models_new and models_free: its wake-up, and
 * once no job runs any more (models_free waits for resizing to reach 0),
 * the finished jobs and the timer. */
int models_offload_init(struct models *m);
void models_offload_free(struct models *m);
/* A load of e ended well: what its budget is now is what it asked for. */
void models_offload_loaded(struct model_entry *e);

#endif
