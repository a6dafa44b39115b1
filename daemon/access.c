/* Access checks without blocking the loop: one lookup thread per uid asked
 * about (at most max_threads at once, the rest queued), reporting back
 * through a loop wake-up the way model loads do, and a small cache of the
 * answers. See access.h. */
#include "access.h"

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* One uid being looked up, with the callers waiting for it. */
struct access_lookup {
	struct access *access;
	uid_t uid;
	/* Loop thread only: */
	struct access_wait *waiters;  /* in arrival order */
	uint64_t timer;               /* the waiters' deadline */
	uint64_t started_ms;
	bool running;                 /* its thread was started */
	bool overdue;                 /* the deadline passed: answer UNKNOWN at once */
	struct access_lookup *next;   /* in access.lookups, oldest first */
	/* Set by the thread under access.lock; the loop reads them once it has
	 * taken the lookup off access.finished (or, for reported, once closed
	 * is set, after which the thread writes nothing). */
	int result;
	bool reported;
	struct access_lookup *finished_next;
};

struct access_entry {
	uid_t uid;
	bool member;
	uint64_t expires_ms;  /* 0: unused */
};

struct access {
	struct loop *loop;
	access_lookup_fn *lookup;
	uint64_t wait_ms, cache_ms;
	int max_threads;
	uid_t self_uid;
	gid_t group;
	struct access_entry cache[ACCESS_CACHE_SIZE];
	struct access_lookup *lookups;  /* queued or running, one per uid */
	int running;                    /* threads started, not yet handled back */
	struct loop_wake *wake;

	/* Shared with the lookup threads. */
	pthread_mutex_t lock;
	bool closed;                    /* access_free ran: threads clean up after themselves */
	int refs;                       /* the loop's, plus one per running thread */
	struct access_lookup *finished;
};

int access_nss_in_group(uid_t uid, gid_t group)
{
	long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
	size_t size = hint > 0 ? (size_t)hint : 16384;
	char *buf = NULL;
	gid_t *groups = NULL;
	struct passwd pw, *found = NULL;
	int r;
	/* An LDAP entry may be larger than the hint: ERANGE asks for more. */
	for (;;) {
		char *grown = realloc(buf, size);
		if (!grown) {
			r = -ENOMEM;
			goto out;
		}
		buf = grown;
		r = getpwuid_r(uid, &pw, buf, size, &found);
		if (r != ERANGE || size >= (1u << 20))
			break;
		size *= 2;
	}
	if (r) {
		r = -r;
		goto out;
	}
	if (!found) {
		r = 0;  /* no such user: in no group */
		goto out;
	}
	if (pw.pw_gid == group) {
		r = 1;
		goto out;
	}
	int n = 32;
	for (;;) {
		gid_t *grown = realloc(groups, (size_t)n * sizeof(*groups));
		if (!grown) {
			r = -ENOMEM;
			goto out;
		}
		groups = grown;
		int want = n;
		if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &want) >= 0) {
			n = want;
			break;
		}
		/* Too small: want says how many there are, which may grow
		 * again before the next call. */
		if (want <= n || want > 65536) {
			r = -EIO;
			goto out;
		}
		n = want;
	}
	r = 0;
	for (int i = 0; i < n && !r; i++)
		r = groups[i] == group;
out:
	free(groups);
	free(buf);
	return r;
}

/* ---- the cache ---- */

static struct access_entry *cache_find(struct access *a, uid_t uid)
{
	uint64_t now = loop_now_ms();
	for (int i = 0; i < ACCESS_CACHE_SIZE; i++)
		if (a->cache[i].expires_ms > now && a->cache[i].uid == uid)
			return &a->cache[i];
	return NULL;
}

static void cache_put(struct access *a, uid_t uid, bool member)
{
	struct access_entry *slot = &a->cache[0];
	for (int i = 0; i < ACCESS_CACHE_SIZE; i++) {
		struct access_entry *e = &a->cache[i];
		if (e->expires_ms && e->uid == uid) {
			slot = e;
			break;
		}
		if (e->expires_ms < slot->expires_ms)
			slot = e;
	}
	*slot = (struct access_entry){ .uid = uid, .member = member, .expires_ms = loop_now_ms() + a->cache_ms };
}

void access_forget(struct access *a)
{
	memset(a->cache, 0, sizeof(a->cache));
}

/* ---- lookups ---- */

static void unlink_lookup(struct access *a, struct access_lookup *k)
{
	for (struct access_lookup **p = &a->lookups; *p; p = &(*p)->next)
		if (*p == k) {
			*p = k->next;
			return;
		}
}

/* Calls every waiter of k with answer. One at a time off the list: a
 * callback may cancel another waiter of k (closing its connection). */
static void answer_waiters(struct access_lookup *k, enum access_answer answer)
{
	struct access_wait *w;
	while ((w = k->waiters)) {
		k->waiters = w->next;
		w->next = NULL;
		w->lookup = NULL;
		w->fn(w->data, answer);
	}
}

static void *lookup_main(void *arg)
{
	struct access_lookup *k = arg;
	struct access *a = k->access;
	/* lookup and group are set before any thread starts and never change. */
	int result = a->lookup(k->uid, a->group);
	pthread_mutex_lock(&a->lock);
	bool closed = a->closed;
	if (!closed) {
		k->result = result;
		k->reported = true;
		k->finished_next = a->finished;
		a->finished = k;
		/* Under the lock: access_free sets closed under it before it
		 * frees the wake-up. */
		loop_wake_post(a->wake);
	}
	bool last = --a->refs == 0;
	pthread_mutex_unlock(&a->lock);
	if (closed)
		free(k);
	if (last) {
		pthread_mutex_destroy(&a->lock);
		free(a);
	}
	return NULL;
}

/* Starts k's thread; a negative errno when it cannot. */
static int start_lookup(struct access *a, struct access_lookup *k)
{
	pthread_attr_t attr;
	int r = pthread_attr_init(&attr);
	if (r)
		return -r;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&a->lock);
	a->refs++;
	pthread_t t;
	r = pthread_create(&t, &attr, lookup_main, k);
	if (r)
		a->refs--;
	pthread_mutex_unlock(&a->lock);
	pthread_attr_destroy(&attr);
	if (r)
		return -r;
	k->running = true;
	k->started_ms = loop_now_ms();
	a->running++;
	return 0;
}

/* Starts queued lookups while threads are free, oldest first. */
static void start_queued(struct access *a)
{
	for (struct access_lookup *k = a->lookups, *next; k && a->running < a->max_threads; k = next) {
		next = k->next;
		if (k->running)
			continue;
		int r = start_lookup(a, k);
		if (r) {
			log_error("cannot look up the groups of uid %u: no thread: %s", (unsigned)k->uid, strerror(-r));
			unlink_lookup(a, k);
			loop_timer_cancel(a->loop, k->timer);
			answer_waiters(k, ACCESS_UNKNOWN);
			free(k);
		}
	}
}

static void finish_lookup(struct access *a, struct access_lookup *k)
{
	a->running--;
	unlink_lookup(a, k);
	loop_timer_cancel(a->loop, k->timer);
	uint64_t took = loop_now_ms() - k->started_ms;
	enum access_answer answer = ACCESS_UNKNOWN;
	if (k->result >= 0) {
		/* Cached before the callbacks run, so a check they make for the
		 * same uid is answered at once. */
		cache_put(a, k->uid, k->result > 0);
		answer = k->result > 0 ? ACCESS_ALLOWED : ACCESS_DENIED;
		if (k->overdue)
			log_info("the user database answered for uid %u after %llu ms", (unsigned)k->uid,
				 (unsigned long long)took);
	} else {
		log_warn("cannot look up the groups of uid %u: %s; not allowing it to load or evict models",
			 (unsigned)k->uid, strerror(-k->result));
	}
	answer_waiters(k, answer);
	free(k);
}

static void on_finished(struct loop *l, void *data)
{
	(void)l;
	struct access *a = data;
	pthread_mutex_lock(&a->lock);
	struct access_lookup *done = a->finished;
	a->finished = NULL;
	pthread_mutex_unlock(&a->lock);
	while (done) {
		struct access_lookup *next = done->finished_next;
		finish_lookup(a, done);
		done = next;
	}
	start_queued(a);
}

/* The waiters gave up on the user database; the thread, if it started,
 * keeps going and its answer still fills the cache. */
static void on_deadline(struct loop *l, void *data)
{
	(void)l;
	struct access_lookup *k = data;
	struct access *a = k->access;
	k->timer = 0;
	k->overdue = true;
	log_warn("the user database did not answer for uid %u within %llu ms; not allowing it to load or "
		 "evict models until it does", (unsigned)k->uid, (unsigned long long)a->wait_ms);
	answer_waiters(k, ACCESS_UNKNOWN);
	if (!k->running) {
		unlink_lookup(a, k);
		free(k);
	}
}

static struct access_lookup *find_lookup(struct access *a, uid_t uid)
{
	for (struct access_lookup *k = a->lookups; k; k = k->next)
		if (k->uid == uid)
			return k;
	return NULL;
}

/* A new lookup of uid, started or queued; NULL (logged) when it can be
 * neither. */
static struct access_lookup *new_lookup(struct access *a, uid_t uid)
{
	struct access_lookup *k = calloc(1, sizeof(*k));
	if (!k) {
		log_error("cannot look up the groups of uid %u: out of memory", (unsigned)uid);
		return NULL;
	}
	k->access = a;
	k->uid = uid;
	k->timer = loop_timer_add(a->loop, a->wait_ms, on_deadline, k);
	if (!k->timer) {
		log_error("cannot look up the groups of uid %u: out of memory", (unsigned)uid);
		free(k);
		return NULL;
	}
	if (a->running < a->max_threads) {
		int r = start_lookup(a, k);
		if (r) {
			log_error("cannot look up the groups of uid %u: no thread: %s", (unsigned)uid, strerror(-r));
			loop_timer_cancel(a->loop, k->timer);
			free(k);
			return NULL;
		}
	}
	struct access_lookup **p = &a->lookups;
	while (*p)
		p = &(*p)->next;
	*p = k;
	return k;
}

enum access_answer access_check(struct access *a, uid_t uid, gid_t gid, struct access_wait *w,
				access_done_fn *fn, void *data)
{
	if (uid == 0 || uid == a->self_uid || (gid != (gid_t)-1 && gid == a->group))
		return ACCESS_ALLOWED;
	/* SO_PEERCRED that failed: nobody to look up. */
	if (uid == (uid_t)-1)
		return ACCESS_DENIED;
	struct access_entry *e = cache_find(a, uid);
	if (e)
		return e->member ? ACCESS_ALLOWED : ACCESS_DENIED;
	struct access_lookup *k = find_lookup(a, uid);
	/* A lookup that already kept callers waiting too long answers nobody
	 * else until it ends: each would wait the whole deadline again. */
	if (k && k->overdue)
		return ACCESS_UNKNOWN;
	if (!k && !(k = new_lookup(a, uid)))
		return ACCESS_UNKNOWN;
	*w = (struct access_wait){ .fn = fn, .data = data, .lookup = k };
	struct access_wait **p = &k->waiters;
	while (*p)
		p = &(*p)->next;
	*p = w;
	return ACCESS_PENDING;
}

void access_cancel(struct access_wait *w)
{
	if (!w->lookup)
		return;
	for (struct access_wait **p = &w->lookup->waiters; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
	w->lookup = NULL;
	w->next = NULL;
}

int access_new(struct access **out, struct loop *l, const struct access_config *cfg)
{
	*out = NULL;
	struct access *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->loop = l;
	a->lookup = cfg && cfg->lookup ? cfg->lookup : access_nss_in_group;
	a->wait_ms = cfg && cfg->wait_ms ? cfg->wait_ms : ACCESS_WAIT_MS;
	a->cache_ms = cfg && cfg->cache_ms ? cfg->cache_ms : ACCESS_CACHE_MS;
	a->max_threads = cfg && cfg->max_threads > 0 ? cfg->max_threads : ACCESS_MAX_THREADS;
	/* The group is the daemon's own: getgid() is a system call, not a
	 * lookup, and the daemon never changes it. */
	a->self_uid = getuid();
	a->group = getgid();
	a->refs = 1;
	int r = pthread_mutex_init(&a->lock, NULL);
	if (r) {
		free(a);
		return -r;
	}
	r = loop_wake_new(l, &a->wake, on_finished, a);
	if (r) {
		pthread_mutex_destroy(&a->lock);
		free(a);
		return r;
	}
	*out = a;
	return 0;
}

void access_free(struct access *a)
{
	if (!a)
		return;
	/* Under the lock throughout: a thread that finds closed set frees its
	 * own lookup as soon as it gets the lock, so those still running are
	 * not touched after it is released. The ones that reported are the
	 * loop's to free. */
	pthread_mutex_lock(&a->lock);
	a->closed = true;
	while (a->lookups) {
		struct access_lookup *k = a->lookups;
		a->lookups = k->next;
		loop_timer_cancel(a->loop, k->timer);
		/* A waiter's later access_cancel must not reach a freed lookup. */
		for (struct access_wait *w = k->waiters; w; w = w->next)
			w->lookup = NULL;
		if (!k->running || k->reported)
			free(k);
	}
	struct loop_wake *wake = a->wake;
	bool last = --a->refs == 0;
	pthread_mutex_unlock(&a->lock);
	/* Not a->wake: once unlocked, the last thread may free a. No thread
	 * posts any more: they post only while closed is unset. */
	loop_wake_free(wake);
	if (last) {
		pthread_mutex_destroy(&a->lock);
		free(a);
	}
}
