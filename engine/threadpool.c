#include "threadpool.h"

#include <errno.h>
#include <pthread.h>
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

/* Iterations a worker polls for new work before it sleeps on the condvar. */
#define SPIN_ITERS 20000

struct worker {
	struct pf_pool *pool;
	pthread_t thread;
	int index;
};

struct pf_pool {
	int n_threads;
	struct worker *workers;

	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_cond_t done_cond;
	/* Bumped once per job; workers run a job when they see a new value. */
	atomic_uint generation;
	atomic_int pending;
	atomic_int sleepers;
	atomic_bool stop;

	pf_task_fn fn;
	void *arg;
	int64_t n, align;
};

int pf_cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

static void run_share(struct pf_pool *p, int t)
{
	int64_t n = p->n, align = p->align;
	int64_t units = (n + align - 1) / align;
	int64_t begin = units * t / p->n_threads * align;
	int64_t end = units * (t + 1) / p->n_threads * align;
	if (end > n)
		end = n;
	if (begin < end)
		p->fn(p->arg, begin, end, t);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pf_pool *p = w->pool;
	unsigned seen = 0;
	for (;;) {
		unsigned gen;
		int spins = 0;
		while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen) {
			if (++spins < SPIN_ITERS) {
				cpu_relax();
				continue;
			}
			pthread_mutex_lock(&p->lock);
			atomic_fetch_add(&p->sleepers, 1);
			while (atomic_load(&p->generation) == seen && !p->stop)
				pthread_cond_wait(&p->wake, &p->lock);
			atomic_fetch_sub(&p->sleepers, 1);
			bool stop = p->stop;
			pthread_mutex_unlock(&p->lock);
			if (stop)
				return NULL;
			spins = 0;
		}
		if (atomic_load(&p->stop))
			return NULL;
		seen = gen;
		run_share(p, w->index);
		if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
			pthread_mutex_lock(&p->lock);
			pthread_cond_signal(&p->done_cond);
			pthread_mutex_unlock(&p->lock);
		}
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
	p->stop = true;
	atomic_fetch_add(&p->generation, 1);
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
	if (p->n_threads == 1 || n <= align) {
		fn(arg, 0, n, 0);
		return;
	}
	p->fn = fn;
	p->arg = arg;
	p->n = n;
	p->align = align;
	atomic_store(&p->pending, p->n_threads - 1);
	/* Sequentially consistent on both sides (here and the sleeper count in
	 * worker_main), or a worker going to sleep could miss this job. */
	atomic_fetch_add(&p->generation, 1);
	if (atomic_load(&p->sleepers) > 0) {
		pthread_mutex_lock(&p->lock);
		pthread_cond_broadcast(&p->wake);
		pthread_mutex_unlock(&p->lock);
	}
	run_share(p, 0);
	int spins = 0;
	while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
		if (++spins < SPIN_ITERS) {
			cpu_relax();
			continue;
		}
		pthread_mutex_lock(&p->lock);
		while (atomic_load(&p->pending) > 0)
			pthread_cond_wait(&p->done_cond, &p->lock);
		pthread_mutex_unlock(&p->lock);
	}
}
