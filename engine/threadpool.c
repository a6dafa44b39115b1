#include "threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* Iterations a thread polls before it sleeps on a condvar; every
 * YIELD_EVERY of them it yields the core, because on a busy machine the
 * thread being waited for may be queued behind the spinner itself. */
#define SPIN_ITERS 20000
#define YIELD_EVERY 256
/* Chunks per thread: more than one, so a thread that the kernel delays
 * leaves its share to the others instead of holding everyone up. */
#define CHUNKS_PER_THREAD 4

struct worker {
	struct pf_pool *pool;
	pthread_t thread;
	int index;
};

/* A job is handed out chunk by chunk through one atomic word: the job's
 * generation in the high half, the next chunk in the low half. A thread
 * takes a chunk only while the generation still matches, so one that
 * wakes late never runs a chunk of a job that is over, and never mixes
 * one job's chunk number with another's function. A finished job's word
 * is closed (chunk UINT32_MAX) before the next job is set up. */
struct pf_pool {
	int n_threads;
	struct worker *workers;

	_Atomic uint64_t work;
	atomic_uint chunks_done;
	atomic_int sleepers;
	atomic_bool main_sleeping;
	atomic_bool stop;
	pthread_mutex_t lock;
	pthread_cond_t wake;       /* workers: a new job or stop */
	pthread_cond_t done_cond;  /* the caller: the job's last chunk finished */

	uint32_t generation;       /* of the current job; written by the caller only */
	pf_task_fn fn;
	void *arg;
	int64_t n, align;
	/* Read by late workers while the next job is set up (they then see
	 * a closed word and stop), hence atomic. */
	_Atomic uint32_t n_chunks;
};

int pf_cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

static void spin_pause(int spins)
{
	if (spins % YIELD_EVERY == 0)
		sched_yield();
	else
		cpu_relax();
}

static void run_chunk(struct pf_pool *p, uint32_t c, int thread)
{
	int64_t units = (p->n + p->align - 1) / p->align;
	uint32_t n_chunks = atomic_load_explicit(&p->n_chunks, memory_order_relaxed);
	int64_t begin = units * c / n_chunks * p->align;
	int64_t end = units * (c + 1) / n_chunks * p->align;
	if (end > p->n)
		end = p->n;
	if (begin < end)
		p->fn(p->arg, begin, end, thread);
}

/* Takes and runs chunks of job gen until none is left. */
static void take_chunks(struct pf_pool *p, uint32_t gen, int thread)
{
	for (;;) {
		uint64_t v = atomic_load_explicit(&p->work, memory_order_acquire);
		if ((uint32_t)(v >> 32) != gen ||
		    (uint32_t)v >= atomic_load_explicit(&p->n_chunks, memory_order_relaxed))
			return;
		if (!atomic_compare_exchange_weak_explicit(&p->work, &v, v + 1, memory_order_acq_rel,
							   memory_order_acquire))
			continue;
		run_chunk(p, (uint32_t)v, thread);
		if (atomic_fetch_add_explicit(&p->chunks_done, 1, memory_order_acq_rel) + 1 ==
			    atomic_load_explicit(&p->n_chunks, memory_order_relaxed) &&
		    atomic_load(&p->main_sleeping)) {
			pthread_mutex_lock(&p->lock);
			pthread_cond_signal(&p->done_cond);
			pthread_mutex_unlock(&p->lock);
		}
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pf_pool *p = w->pool;
	uint32_t seen = 0;
	for (;;) {
		uint32_t gen;
		int spins = 0;
		while ((gen = (uint32_t)(atomic_load_explicit(&p->work, memory_order_acquire) >> 32)) == seen) {
			if (++spins < SPIN_ITERS) {
				spin_pause(spins);
				continue;
			}
			pthread_mutex_lock(&p->lock);
			/* Sequentially consistent with the caller's publication, so
			 * either it sees this sleeper or this sees its job. */
			atomic_fetch_add(&p->sleepers, 1);
			while ((uint32_t)(atomic_load(&p->work) >> 32) == seen && !atomic_load(&p->stop))
				pthread_cond_wait(&p->wake, &p->lock);
			atomic_fetch_sub(&p->sleepers, 1);
			pthread_mutex_unlock(&p->lock);
			if (atomic_load(&p->stop))
				return NULL;
			spins = 0;
		}
		if (atomic_load(&p->stop))
			return NULL;
		seen = gen;
		take_chunks(p, gen, w->index);
	}
}

int pf_pool_new(struct pf_pool **out, int n_threads)
{
	*out = NULL;
	if (n_threads < 1)
		n_threads = 1;
	struct pf_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->n_threads = n_threads;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	pthread_cond_init(&p->done_cond, NULL);
	p->workers = calloc((size_t)n_threads, sizeof(*p->workers));
	if (!p->workers) {
		pf_pool_free(p);
		return -ENOMEM;
	}
	for (int i = 1; i < n_threads; i++) {
		p->workers[i].pool = p;
		p->workers[i].index = i;
		int r = pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]);
		if (r) {
			p->n_threads = i;  /* only join what started */
			pf_pool_free(p);
			return -r;
		}
	}
	*out = p;
	return 0;
}

void pf_pool_free(struct pf_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	atomic_store(&p->stop, true);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	if (p->workers)
		for (int i = 1; i < p->n_threads; i++)
			pthread_join(p->workers[i].thread, NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	pthread_cond_destroy(&p->done_cond);
	free(p->workers);
	free(p);
}

int pf_pool_threads(const struct pf_pool *p)
{
	return p->n_threads;
}

void pf_pool_run(struct pf_pool *p, pf_task_fn fn, void *arg, int64_t n, int64_t align)
{
	if (n <= 0)
		return;
	if (align < 1)
		align = 1;
	int64_t units = (n + align - 1) / align;
	if (p->n_threads == 1 || units == 1) {
		fn(arg, 0, n, 0);
		return;
	}
	int64_t chunks = (int64_t)p->n_threads * CHUNKS_PER_THREAD;
	p->fn = fn;
	p->arg = arg;
	p->n = n;
	p->align = align;
	uint32_t n_chunks = (uint32_t)(units < chunks ? units : chunks);
	atomic_store_explicit(&p->n_chunks, n_chunks, memory_order_relaxed);
	atomic_store_explicit(&p->chunks_done, 0, memory_order_relaxed);
	uint32_t gen = ++p->generation;
	if (gen == 0)  /* 0 is what workers start out having seen */
		gen = ++p->generation;
	atomic_store(&p->work, (uint64_t)gen << 32);
	if (atomic_load(&p->sleepers) > 0) {
		pthread_mutex_lock(&p->lock);
		pthread_cond_broadcast(&p->wake);
		pthread_mutex_unlock(&p->lock);
	}
	take_chunks(p, gen, 0);
	/* Every chunk is taken; wait for those still running elsewhere. */
	int spins = 0;
	while (atomic_load_explicit(&p->chunks_done, memory_order_acquire) < n_chunks) {
		if (++spins < SPIN_ITERS) {
			spin_pause(spins);
			continue;
		}
		pthread_mutex_lock(&p->lock);
		atomic_store(&p->main_sleeping, true);
		while (atomic_load(&p->chunks_done) < n_chunks)
			pthread_cond_wait(&p->done_cond, &p->lock);
		atomic_store(&p->main_sleeping, false);
		pthread_mutex_unlock(&p->lock);
	}
	/* Closed before the next job's fields are written: a worker still
	 * holding this job's last word (gen, n_chunks) would otherwise compare
	 * it with the next job's larger n_chunks, and its compare-and-swap on
	 * the unchanged word would take a chunk of the next job before that
	 * job exists (run twice, and counted into the wrong job: a wrong sum,
	 * or a caller waiting forever). */
	atomic_store(&p->work, ((uint64_t)gen << 32) | UINT32_MAX);
}
