/* The scheduler of one loaded model: a fixed set of slots (each a context
 * with its own KV cache), a bounded FIFO queue for requests beyond them,
 * and one worker thread that advances the active slots in turn, one step
 * each, so concurrent generations interleave fairly.
 *
 * The loop thread submits and cancels; the worker reports every change of
 * a request through the notify callback (called on the worker thread,
 * without the scheduler lock held). */
#ifndef PINFERD_SCHED_H
#define PINFERD_SCHED_H

#include "pinfer.h"
#include "request.h"

struct sched_config {
	int n_slots;
	int queue_max;   /* requests waiting beyond the slots */
	int n_ctx;       /* per slot; 0: the engine's default */
	enum pinfer_kv_type kv_type;
	int n_batch;     /* prompt chunk per step; 0: the engine's default */
	int n_threads;   /* compute threads; 0: online CPUs */
};

typedef void (*sched_notify_fn)(void *data, struct request *r);

struct sched;

int sched_new(struct sched **out, const struct pinfer_model *m, const struct sched_config *c,
	      sched_notify_fn notify, void *data, struct pf_err *err);
/* Cancels what is running or queued (each gets its final notify), stops
 * the worker and frees the slots. */
void sched_free(struct sched *s);

/* Loop thread. Takes a reference on r. -EBUSY when every slot is busy and
 * the queue is full: the request was not taken. */
int sched_submit(struct sched *s, struct request *r);
/* Loop thread: asks r to stop. A queued request finishes at once; a
 * running one at its next step. */
void sched_cancel(struct sched *s, struct request *r);

struct sched_stats {
	int slots, busy, queued;
	int n_ctx;          /* per slot */
};
void sched_stats(struct sched *s, struct sched_stats *out);

/* Bytes the scheduler of this configuration would allocate for model m,
 * to check a load against the memory budget before doing it. */
uint64_t sched_estimate_bytes(const struct pinfer_model *m, const struct sched_config *c);

#endif
