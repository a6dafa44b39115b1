/* The event loop: epoll for fds, a binary min-heap of timers, a self-pipe
 * for signals, and one eventfd per wake-up. See loop.h for the contract. */
#include "loop.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* Events taken per epoll_wait(). More stay queued in the kernel and come
 * back next iteration, since every watch is level-triggered. */
#define EVENTS_PER_WAIT 64
/* Signals read from the self-pipe per dispatch, the rest next iteration. */
#define SIGNALS_PER_READ 8
#define NO_TIMER UINT32_MAX

/* The write end of the signal self-pipe (see loop_signal): a handler can
 * reach nothing else. */
static int signal_pipe_wr = -1;

/* One per fd number, in a table indexed by fd that never shrinks. */
struct watch {
	loop_fd_fn *fn;   /* NULL: the fd is not watched */
	void *data;
	uint32_t events;  /* the LOOP_* bits asked for */
	/* Which loop_watch() call made this watch. Its epoll events carry it
	 * next to the fd, so an event collected before the fd was unwatched,
	 * closed, and its number reused by a new watch is told apart. */
	uint32_t gen;
};

/* Timers live in slots that are reused; the heap orders slot numbers. */
struct timer {
	uint64_t deadline_ms;
	uint64_t seq;       /* creation order: breaks ties, fences firing */
	loop_fn *fn;        /* NULL: the slot is free */
	void *data;
	/* Bumped when the slot is freed; ids are gen << 32 | slot, so the id of
	 * a fired or cancelled timer no longer matches its slot. Starts at 1,
	 * which keeps ids non-zero. */
	uint32_t gen;
	uint32_t heap_pos;  /* index in loop.heap while armed */
	uint32_t next_free; /* next slot of the free list while free */
};

struct signal_route {
	loop_signal_fn *fn;  /* NULL: not routed */
	void *data;
};

struct loop {
	int epfd;
	bool running;
	bool stopping;
	/* Monotonic ms, refreshed when the loop wakes up and before it sleeps:
	 * timers added by callbacks count from it. */
	uint64_t now_ms;

	struct watch *watches;
	size_t n_watches;           /* entries in watches, watched or not */
	uint32_t watch_gen;         /* of the latest loop_watch() */
	struct epoll_event events[EVENTS_PER_WAIT];

	struct timer *timers;
	uint32_t *heap;             /* slot numbers, earliest (deadline, seq) first */
	uint32_t timer_cap;         /* of timers and heap alike */
	uint32_t n_timer_slots;     /* slots ever used: armed or on the free list */
	uint32_t heap_len;
	uint32_t free_timer;        /* head of the free list, or NO_TIMER */
	uint64_t timer_seq;         /* seq of the next timer */

	int sigfd;                  /* self-pipe read end; -1 until the first loop_signal() */
	struct signal_route signals[_NSIG];

	loop_fn *before_sleep;
	void *before_sleep_data;
	unsigned n_wakes;           /* alive, to catch loop_free() before them */
};

struct loop_wake {
	struct loop *loop;
	int fd;  /* eventfd, watched by the loop */
	/* Set by the first post after the loop cleared it; the posts that find
	 * it set skip the write, so a burst costs one syscall and the eventfd
	 * counter stays far from the overflow at which write() would fail. */
	atomic_bool posted;
	loop_fn *fn;
	void *data;
};

uint64_t loop_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int loop_new(struct loop **out)
{
	*out = NULL;
	struct loop *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	/* Close-on-exec in the same call: a fork+exec on another thread between
	 * two calls would leak the fd into the child. */
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		int r = -errno;
		free(l);
		return r;
	}
	l->now_ms = loop_now_ms();
	l->free_timer = NO_TIMER;
	l->sigfd = -1;
	*out = l;
	return 0;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	/* A live wake-up would keep a pointer to the freed loop. */
	assert(l->n_wakes == 0);
	if (l->sigfd >= 0) {
		for (int signo = 1; signo < _NSIG; signo++)
			if (l->signals[signo].fn)
				signal(signo, SIG_DFL);
		close(l->sigfd);
		close(signal_pipe_wr);
		signal_pipe_wr = -1;
	}
	close(l->epfd);
	free(l->watches);
	free(l->timers);
	free(l->heap);
	free(l);
}

/* fd watches */

static uint32_t to_epoll(uint32_t events)
{
	return (events & LOOP_READ ? EPOLLIN : 0) | (events & LOOP_WRITE ? EPOLLOUT : 0) |
	       (events & LOOP_HUP ? EPOLLRDHUP : 0) | (events & LOOP_PRI ? EPOLLPRI : 0);
}

static uint32_t from_epoll(uint32_t events)
{
	return (events & EPOLLIN ? LOOP_READ : 0) | (events & EPOLLOUT ? LOOP_WRITE : 0) |
	       (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP) ? LOOP_HUP : 0) |
	       (events & EPOLLPRI ? LOOP_PRI : 0);
}

static struct watch *find_watch(struct loop *l, int fd)
{
	if (fd < 0 || (size_t)fd >= l->n_watches || !l->watches[fd].fn)
		return NULL;
	return &l->watches[fd];
}

static int grow_watches(struct loop *l, int fd)
{
	size_t n = l->n_watches ? 2 * l->n_watches : 16;
	if (n <= (size_t)fd)
		n = (size_t)fd + 1;
	struct watch *watches = realloc(l->watches, n * sizeof(*watches));
	if (!watches)
		return -ENOMEM;
	memset(watches + l->n_watches, 0, (n - l->n_watches) * sizeof(*watches));
	l->watches = watches;
	l->n_watches = n;
	return 0;
}

int loop_watch(struct loop *l, int fd, uint32_t events, loop_fd_fn *fn, void *data)
{
	assert(fn);
	if (fd < 0)
		return -EBADF;
	if ((size_t)fd >= l->n_watches) {
		int r = grow_watches(l, fd);
		if (r < 0)
			return r;
	}
	struct watch *w = &l->watches[fd];
	if (w->fn)
		return -EEXIST;
	uint32_t gen = ++l->watch_gen;
	struct epoll_event ev = {
		.events = to_epoll(events),
		.data.u64 = (uint64_t)gen << 32 | (uint32_t)fd,
	};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	*w = (struct watch){ .fn = fn, .data = data, .events = events, .gen = gen };
	return 0;
}

int loop_modify(struct loop *l, int fd, uint32_t events)
{
	struct watch *w = find_watch(l, fd);
	if (!w)
		return -ENOENT;
	struct epoll_event ev = {
		.events = to_epoll(events),
		.data.u64 = (uint64_t)w->gen << 32 | (uint32_t)fd,
	};
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		return -errno;
	w->events = events;
	return 0;
}

void loop_unwatch(struct loop *l, int fd)
{
	struct watch *w = find_watch(l, fd);
	if (!w)
		return;
	/* Fails only when the fd was closed already, which removed it from
	 * epoll unless its file is open elsewhere: nothing left to do. */
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	w->fn = NULL;
}

static void dispatch_fds(struct loop *l, int n_events)
{
	for (int i = 0; i < n_events; i++) {
		uint64_t tag = l->events[i].data.u64;
		int fd = (int)(uint32_t)tag;
		/* In range: the table never shrinks. Re-read every time, since a
		 * callback may have grown (moved) it or changed this entry. */
		struct watch *w = &l->watches[fd];
		if (!w->fn || w->gen != (uint32_t)(tag >> 32))
			continue;
		uint32_t events = from_epoll(l->events[i].events) & (w->events | LOOP_HUP);
		if (events)
			w->fn(l, fd, events, w->data);
	}
}

/* timers */

static bool timer_before(const struct loop *l, uint32_t a, uint32_t b)
{
	const struct timer *ta = &l->timers[a], *tb = &l->timers[b];
	return ta->deadline_ms != tb->deadline_ms ? ta->deadline_ms < tb->deadline_ms : ta->seq < tb->seq;
}

static void heap_set(struct loop *l, uint32_t pos, uint32_t slot)
{
	l->heap[pos] = slot;
	l->timers[slot].heap_pos = pos;
}

static void heap_up(struct loop *l, uint32_t pos)
{
	uint32_t slot = l->heap[pos];
	while (pos > 0) {
		uint32_t parent = (pos - 1) / 2;
		if (!timer_before(l, slot, l->heap[parent]))
			break;
		heap_set(l, pos, l->heap[parent]);
		pos = parent;
	}
	heap_set(l, pos, slot);
}

static void heap_down(struct loop *l, uint32_t pos)
{
	uint32_t slot = l->heap[pos];
	for (;;) {
		uint32_t child = 2 * pos + 1;
		if (child >= l->heap_len)
			break;
		if (child + 1 < l->heap_len && timer_before(l, l->heap[child + 1], l->heap[child]))
			child++;
		if (!timer_before(l, l->heap[child], slot))
			break;
		heap_set(l, pos, l->heap[child]);
		pos = child;
	}
	heap_set(l, pos, slot);
}

/* Takes the timer in slot out of the heap and puts the slot on the free
 * list. O(log n). */
static void timer_release(struct loop *l, uint32_t slot)
{
	struct timer *t = &l->timers[slot];
	uint32_t pos = t->heap_pos;
	uint32_t last = l->heap[--l->heap_len];
	if (pos < l->heap_len) {
		/* The last entry fills the hole; it may belong above or below. */
		heap_set(l, pos, last);
		heap_up(l, pos);
		heap_down(l, l->timers[last].heap_pos);
	}
	t->fn = NULL;
	if (++t->gen == 0)
		t->gen = 1;
	t->next_free = l->free_timer;
	l->free_timer = slot;
}

static int grow_timers(struct loop *l)
{
	if (l->timer_cap > UINT32_MAX / 4)
		return -ENOMEM;
	uint32_t cap = l->timer_cap ? 2 * l->timer_cap : 16;
	struct timer *timers = realloc(l->timers, cap * sizeof(*timers));
	if (!timers)
		return -ENOMEM;
	l->timers = timers;
	uint32_t *heap = realloc(l->heap, cap * sizeof(*heap));
	if (!heap)
		return -ENOMEM;  /* timers keeps its larger block until freed */
	l->heap = heap;
	l->timer_cap = cap;
	return 0;
}

uint64_t loop_timer_add(struct loop *l, uint64_t delay_ms, loop_fn *fn, void *data)
{
	assert(fn);
	uint32_t slot = l->free_timer;
	if (slot != NO_TIMER) {
		l->free_timer = l->timers[slot].next_free;
	} else {
		if (l->n_timer_slots == l->timer_cap && grow_timers(l) < 0)
			return 0;
		slot = l->n_timer_slots++;
		l->timers[slot].gen = 1;
	}
	struct timer *t = &l->timers[slot];
	uint64_t base = l->running ? l->now_ms : loop_now_ms();
	t->deadline_ms = delay_ms > UINT64_MAX - base ? UINT64_MAX : base + delay_ms;
	t->seq = l->timer_seq++;
	t->fn = fn;
	t->data = data;
	uint32_t pos = l->heap_len++;
	l->heap[pos] = slot;
	heap_up(l, pos);
	return (uint64_t)t->gen << 32 | slot;
}

void loop_timer_cancel(struct loop *l, uint64_t id)
{
	uint32_t slot = (uint32_t)id;
	if (slot >= l->n_timer_slots || l->timers[slot].gen != (uint32_t)(id >> 32) ||
	    !l->timers[slot].fn)
		return;
	timer_release(l, slot);
}

static void fire_timers(struct loop *l)
{
	/* Timers added from here on wait for the next iteration. They sort
	 * after every due timer that is older (their deadline is at least
	 * now_ms), so meeting one at the top means no older one is due. */
	uint64_t fence = l->timer_seq;
	while (l->heap_len) {
		uint32_t slot = l->heap[0];
		struct timer *t = &l->timers[slot];
		if (t->deadline_ms > l->now_ms || t->seq >= fence)
			break;
		loop_fn *fn = t->fn;
		void *data = t->data;
		/* Released before the call, so that fn may reuse the slot and
		 * cancelling its own id is a no-op. */
		timer_release(l, slot);
		fn(l, data);
	}
}

static int wait_timeout_ms(const struct loop *l)
{
	if (!l->heap_len)
		return -1;
	uint64_t deadline = l->timers[l->heap[0]].deadline_ms;
	if (deadline <= l->now_ms)
		return 0;
	return deadline - l->now_ms > INT_MAX ? INT_MAX : (int)(deadline - l->now_ms);
}

/* signals
 *
 * A handler that writes the signal number to a pipe, rather than a
 * signalfd: a signalfd only sees signals blocked in every thread, and
 * libraries start threads of their own before main() (OpenBLAS does), whose
 * masks we cannot change. The kernel may run the handler on any thread; the
 * byte reaches the loop all the same. */

static void on_signal(int signo)
{
	int saved = errno;
	unsigned char b = (unsigned char)signo;
	if (signal_pipe_wr >= 0 && write(signal_pipe_wr, &b, 1) < 0) {
		/* A full pipe already holds a byte for this loop to wake on. */
	}
	errno = saved;
}

static void dispatch_signals(struct loop *l, int fd, uint32_t events, void *data)
{
	(void)events;
	(void)data;
	unsigned char signos[SIGNALS_PER_READ];
	ssize_t n = read(fd, signos, sizeof(signos));
	/* n < 0 (EAGAIN, EINTR): nothing now; the loop asks epoll again. */
	for (ssize_t i = 0; i < n; i++) {
		struct signal_route *route = &l->signals[signos[i]];
		if (route->fn)
			route->fn(l, signos[i], route->data);
	}
}

int loop_signal(struct loop *l, int signo, loop_signal_fn *fn, void *data)
{
	assert(fn);
	sigset_t probe;
	sigemptyset(&probe);
	/* sigaddset rejects what is out of range and glibc's internal signals. */
	if (signo == SIGKILL || signo == SIGSTOP || signo >= 256 || sigaddset(&probe, signo) < 0)
		return -EINVAL;
	if (l->signals[signo].fn)
		return -EEXIST;
	if (l->sigfd < 0) {
		int fds[2];
		if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
			return -errno;
		int r = loop_watch(l, fds[0], LOOP_READ, dispatch_signals, NULL);
		if (r < 0) {
			close(fds[0]);
			close(fds[1]);
			return r;
		}
		l->sigfd = fds[0];
		signal_pipe_wr = fds[1];
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(signo, &sa, NULL) < 0)
		return -errno;
	l->signals[signo] = (struct signal_route){ .fn = fn, .data = data };
	return 0;
}

/* wake-ups */

static void dispatch_wake(struct loop *l, int fd, uint32_t events, void *data)
{
	(void)events;
	struct loop_wake *w = data;
	uint64_t count;
	/* Resets the counter. The result does not matter: readiness said
	 * there was something, and a failed read leaves it for next time. */
	ssize_t n = read(fd, &count, sizeof(count));
	(void)n;
	/* Cleared after the read: a post after this point writes the eventfd
	 * again and gets its own call, one before it is covered by the call
	 * below. An exchange, not a store, so that it synchronizes with the
	 * posters' exchanges and fn sees what they wrote before posting. */
	atomic_exchange(&w->posted, false);
	w->fn(l, w->data);
}

int loop_wake_new(struct loop *l, struct loop_wake **out, loop_fn *fn, void *data)
{
	assert(fn);
	*out = NULL;
	struct loop_wake *w = malloc(sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = (struct loop_wake){ .loop = l, .posted = false, .fn = fn, .data = data };
	w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->fd < 0) {
		int r = -errno;
		free(w);
		return r;
	}
	int r = loop_watch(l, w->fd, LOOP_READ, dispatch_wake, w);
	if (r < 0) {
		close(w->fd);
		free(w);
		return r;
	}
	l->n_wakes++;
	*out = w;
	return 0;
}

void loop_wake_free(struct loop_wake *w)
{
	if (!w)
		return;
	loop_unwatch(w->loop, w->fd);
	close(w->fd);
	w->loop->n_wakes--;
	free(w);
}

void loop_wake_post(struct loop_wake *w)
{
	if (atomic_exchange(&w->posted, true))
		return;
	uint64_t one = 1;
	/* Cannot fail: the counter is at most 1 here, far from the overflow at
	 * which a non-blocking eventfd write returns EAGAIN. */
	ssize_t n = write(w->fd, &one, sizeof(one));
	(void)n;
}

/* running */

void loop_set_before_sleep(struct loop *l, loop_fn *fn, void *data)
{
	l->before_sleep = fn;
	l->before_sleep_data = data;
}

void loop_stop(struct loop *l)
{
	l->stopping = true;
}

int loop_run(struct loop *l)
{
	int r = 0;
	l->running = true;
	l->stopping = false;
	l->now_ms = loop_now_ms();
	while (!l->stopping) {
		if (l->before_sleep) {
			l->before_sleep(l, l->before_sleep_data);
			if (l->stopping)
				break;
		}
		/* Callbacks took time since the loop woke up. */
		l->now_ms = loop_now_ms();
		int n = epoll_wait(l->epfd, l->events, EVENTS_PER_WAIT, wait_timeout_ms(l));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		l->now_ms = loop_now_ms();
		dispatch_fds(l, n);
		fire_timers(l);
	}
	l->running = false;
	return r;
}
