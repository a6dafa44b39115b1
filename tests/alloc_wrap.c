#include "alloc_wrap.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__real_aligned_alloc(size_t align, size_t n);
int __real_posix_memalign(void **out, size_t align, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_munmap(void *addr, size_t len);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __real_pthread_join(pthread_t t, void **ret);
int __real_pthread_detach(pthread_t t);

/* Worker threads allocate too, hence one lock around the counters and
 * the set of live blocks. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool armed;
static long counted, fail_at;
static bool fired;
static char fired_what[64];

/* The live blocks: an open-addressing set of addresses, linear probing,
 * deletion by shifting back (no tombstones to fill it up over the many
 * thousand runs of a test). */
#define SET_BITS 18
#define SET_SIZE (1u << SET_BITS)
static uintptr_t set[SET_SIZE];
static long n_live;
/* Threads started and neither joined nor detached. */
static long n_threads;

static size_t slot_of(uintptr_t p)
{
	return (size_t)((p * 0x9e3779b97f4a7c15ull) >> (64 - SET_BITS));
}

static void set_add(void *ptr)
{
	uintptr_t p = (uintptr_t)ptr;
	if (n_live >= SET_SIZE / 2) {
		fprintf(stderr, "alloc_wrap: more than %u live blocks\n", SET_SIZE / 2);
		abort();
	}
	size_t i = slot_of(p);
	while (set[i])
		i = (i + 1) & (SET_SIZE - 1);
	set[i] = p;
	n_live++;
}

/* Blocks the wrappers did not make (libc's, from before) are not there. */
static void set_remove(void *ptr)
{
	uintptr_t p = (uintptr_t)ptr;
	size_t i = slot_of(p);
	while (set[i] && set[i] != p)
		i = (i + 1) & (SET_SIZE - 1);
	if (!set[i])
		return;
	set[i] = 0;
	n_live--;
	/* Moves back the entries after the hole that probing would no longer
	 * reach. */
	for (size_t j = (i + 1) & (SET_SIZE - 1); set[j]; j = (j + 1) & (SET_SIZE - 1)) {
		size_t home = slot_of(set[j]);
		bool reachable = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!reachable) {
			set[i] = set[j];
			set[j] = 0;
			i = j;
		}
	}
}

/* Counts one allocation; true when it is the one to fail. */
static bool fail_now(const char *fn, size_t n)
{
	pthread_mutex_lock(&lock);
	bool fail = armed && ++counted == fail_at;
	if (fail) {
		fired = true;
		snprintf(fired_what, sizeof(fired_what), "%s of %zu bytes", fn, n);
	}
	pthread_mutex_unlock(&lock);
	if (fail)
		errno = ENOMEM;
	return fail;
}

static void *track(void *p)
{
	if (p) {
		pthread_mutex_lock(&lock);
		set_add(p);
		pthread_mutex_unlock(&lock);
	}
	return p;
}

static void untrack(void *p)
{
	if (p) {
		pthread_mutex_lock(&lock);
		set_remove(p);
		pthread_mutex_unlock(&lock);
	}
}

void alloc_wrap_arm(long at)
{
	pthread_mutex_lock(&lock);
	armed = true;
	counted = 0;
	fail_at = at;
	fired = false;
	pthread_mutex_unlock(&lock);
}

long alloc_wrap_disarm(void)
{
	pthread_mutex_lock(&lock);
	armed = false;
	long n = counted;
	pthread_mutex_unlock(&lock);
	return n;
}

bool alloc_wrap_fired(const char **what)
{
	pthread_mutex_lock(&lock);
	bool f = fired;
	pthread_mutex_unlock(&lock);
	if (what)
		*what = fired_what;
	return f;
}

long alloc_wrap_live(void)
{
	pthread_mutex_lock(&lock);
	long n = n_live;
	pthread_mutex_unlock(&lock);
	return n;
}

long alloc_wrap_threads(void)
{
	pthread_mutex_lock(&lock);
	long n = n_threads;
	pthread_mutex_unlock(&lock);
	return n;
}

static void count_thread(int delta)
{
	pthread_mutex_lock(&lock);
	n_threads += delta;
	pthread_mutex_unlock(&lock);
}

void *__wrap_malloc(size_t n)
{
	return fail_now("malloc", n) ? NULL : track(__real_malloc(n));
}

void *__wrap_calloc(size_t n, size_t size)
{
	return fail_now("calloc", n * size) ? NULL : track(__real_calloc(n, size));
}

void *__wrap_realloc(void *p, size_t n)
{
	if (fail_now("realloc", n))
		return NULL;
	void *q = __real_realloc(p, n);
	/* realloc(p, 0) frees p and returns NULL; a failure keeps p */
	if (q || !n)
		untrack(p);
	return track(q);
}

void __wrap_free(void *p)
{
	untrack(p);
	__real_free(p);
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
	return fail_now("aligned_alloc", n) ? NULL : track(__real_aligned_alloc(align, n));
}

int __wrap_posix_memalign(void **out, size_t align, size_t n)
{
	if (fail_now("posix_memalign", n))
		return ENOMEM;
	int r = __real_posix_memalign(out, align, n);
	if (!r)
		track(*out);
	return r;
}

char *__wrap_strdup(const char *s)
{
	return fail_now("strdup", strlen(s) + 1) ? NULL : track(__real_strdup(s));
}

char *__wrap_strndup(const char *s, size_t n)
{
	return fail_now("strndup", strnlen(s, n) + 1) ? NULL : track(__real_strndup(s, n));
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (fail_now("mmap", len))
		return MAP_FAILED;
	void *p = __real_mmap(addr, len, prot, flags, fd, off);
	return p == MAP_FAILED ? p : track(p);
}

/* The engine unmaps whole mappings only, so the start address names one. */
int __wrap_munmap(void *addr, size_t len)
{
	untrack(addr);
	return __real_munmap(addr, len);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	if (fail_now("pthread_create", 0))
		return EAGAIN;
	int detached = PTHREAD_CREATE_JOINABLE;
	if (attr)
		pthread_attr_getdetachstate(attr, &detached);
	int r = __real_pthread_create(t, attr, fn, arg);
	if (!r && detached == PTHREAD_CREATE_JOINABLE)
		count_thread(1);
	return r;
}

int __wrap_pthread_join(pthread_t t, void **ret)
{
	int r = __real_pthread_join(t, ret);
	if (!r)
		count_thread(-1);
	return r;
}

int __wrap_pthread_detach(pthread_t t)
{
	int r = __real_pthread_detach(t);
	if (!r)
		count_thread(-1);
	return r;
}
