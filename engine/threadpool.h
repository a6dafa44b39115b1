/* A fixed pool of worker threads for data-parallel kernels.
 *
 * pf_pool_run() splits [0, n) into a few contiguous chunks per thread and
 * calls fn on them from whichever threads take them, the caller included,
 * returning when all are done. Chunks are taken, not assigned, so a thread
 * the kernel delays (a busy phone) leaves its work to the others instead of
 * stalling the whole step. Decode dispatches a few hundred small jobs per
 * token, so idle workers spin briefly before sleeping: waking a sleeping
 * thread costs more than a short matrix-vector product. */
#ifndef PINFER_THREADPOOL_H
#define PINFER_THREADPOOL_H

#include <stdint.h>

struct pf_pool;

typedef void (*pf_task_fn)(void *arg, int64_t begin, int64_t end, int thread);

/* n_threads counts the caller: 1 means no worker threads at all. */
int pf_pool_new(struct pf_pool **out, int n_threads);
void pf_pool_free(struct pf_pool *p);
int pf_pool_threads(const struct pf_pool *p);

/* Runs fn over [0, n). Ranges are rounded to multiples of align (e.g. a
 * cache line of output rows) except the last; `thread` (0 for the caller)
 * tells fn which thread's scratch it may use. */
void pf_pool_run(struct pf_pool *p, pf_task_fn fn, void *arg, int64_t n, int64_t align);

/* Online CPUs, at least 1. */
int pf_cpu_count(void);

#endif
