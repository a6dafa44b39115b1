/* The event loop of pinferd: one thread and one epoll instance serve every
 * socket, timer, signal and worker wake-up of the daemon.
 *
 * Threads: every function here must be called on the loop thread (the one
 * that runs loop_run), except loop_wake_post() and loop_now_ms(), which
 * any thread may call.
 * Callbacks run on the loop thread, must not block, and may call any
 * function here but loop_run and loop_free, on any watch, timer or wake-up,
 * including the one being dispatched. An event the loop has already
 * collected for a watch that is removed before its turn is dropped; it is
 * never delivered to a watch that reuses the fd number.
 *
 * Errors: functions returning int return 0 or a negative errno, and leave
 * the loop as it was when they fail.
 *
 * Ownership: the loop never owns the fds it watches nor the data pointers
 * handed to it; it never calls a callback to release them. */
#ifndef PINFER_LOOP_H
#define PINFER_LOOP_H

#include <stdint.h>

struct loop;
struct loop_wake;

/* Readiness of a watched fd. LOOP_HUP (hang-up or error) is reported
 * whether or not it was asked for, because epoll reports it regardless: a
 * callback that gets it must unwatch the fd or the loop keeps reporting it.
 * Asking for LOOP_HUP also reports a stream peer's shutdown(SHUT_WR).
 * LOOP_PRI is EPOLLPRI: a PSI file (/proc/pressure/memory, a cgroup's
 * memory.pressure) reports a trigger with it, a pty master in packet mode a
 * status change. Like LOOP_READ and LOOP_WRITE, it is reported only when
 * asked for. */
#define LOOP_READ  (1u << 0)
#define LOOP_WRITE (1u << 1)
#define LOOP_HUP   (1u << 2)
#define LOOP_PRI   (1u << 3)

/* events: the LOOP_* bits that are ready, among those watched plus LOOP_HUP. */
typedef void loop_fd_fn(struct loop *l, int fd, uint32_t events, void *data);
/* Timers, wake-ups and the before-sleep hook. */
typedef void loop_fn(struct loop *l, void *data);
typedef void loop_signal_fn(struct loop *l, int signo, void *data);

int loop_new(struct loop **out);
/* Takes NULL. Every wake-up must have been freed first. Timers and watches
 * are dropped without calling anything; routed signals get their default
 * action back. */
void loop_free(struct loop *l);

/* Runs until loop_stop(): each iteration calls the before-sleep hook, waits
 * for events or the nearest timer, calls the fd callbacks, then fires the
 * timers that are due. Returns 0 once stopped, or a negative errno when
 * epoll_wait fails. Not reentrant. */
int loop_run(struct loop *l);
/* loop_run returns once the current iteration's callbacks have run. */
void loop_stop(struct loop *l);
/* Called at the start of every iteration, before the loop may sleep: the
 * place to flush output queued by callbacks. fn NULL removes it. */
void loop_set_before_sleep(struct loop *l, loop_fn *fn, void *data);

/* Watches fd (level-triggered) for events (LOOP_* bits, 0 allowed). The fd
 * stays the caller's: call loop_unwatch() before closing it, since epoll
 * keeps reporting an fd whose file is still open elsewhere (dup, fork).
 * -EEXIST if fd is already watched; -EPERM for fds epoll cannot watch
 * (regular files). */
int loop_watch(struct loop *l, int fd, uint32_t events, loop_fd_fn *fn, void *data);
/* Replaces the events of a watched fd; -ENOENT if it is not watched. An
 * event already collected for bits no longer watched is not delivered. */
int loop_modify(struct loop *l, int fd, uint32_t events);
/* No-op for an fd that is not watched. */
void loop_unwatch(struct loop *l, int fd);

/* One-shot timer on the monotonic clock, ms resolution; fn may add a new
 * timer to repeat. Inside loop_run, delays count from the time the loop
 * last woke up, so timers added together fire in order of delay, then of
 * creation; outside it they count from now. A timer added while timers
 * fire waits for the next iteration even with delay 0, so a timer that
 * re-arms itself cannot starve the fds. Returns its id, never 0, or 0 when
 * out of memory. */
uint64_t loop_timer_add(struct loop *l, uint64_t delay_ms, loop_fn *fn, void *data);
/* No-op for 0 and for ids that fired or were cancelled already. */
void loop_timer_cancel(struct loop *l, uint64_t id);

/* Routes signo to fn: a handler (SA_RESTART) on whatever thread the kernel
 * picks writes it to a self-pipe the loop reads, so signals arrive even
 * with threads the daemon did not create. One loop per process may route
 * signals. loop_free() puts the default actions back. -EEXIST if signo is
 * routed already; -EINVAL for SIGKILL, SIGSTOP and glibc's internal
 * signals. */
int loop_signal(struct loop *l, int signo, loop_signal_fn *fn, void *data);

/* A wake-up that any thread posts to have fn run on the loop thread. Posts
 * coalesce: fn runs at least once after every post, maybe once for many,
 * and sees all the memory the posting thread wrote before posting. */
int loop_wake_new(struct loop *l, struct loop_wake **out, loop_fn *fn, void *data);
/* On the loop thread, once no thread can post any more (workers joined).
 * Takes NULL. A pending post is dropped. */
void loop_wake_free(struct loop_wake *w);
/* Never blocks, takes no lock, and is async-signal-safe: a flag exchange and
 * at most one write(2) to an eventfd. */
void loop_wake_post(struct loop_wake *w);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t loop_now_ms(void);

#endif
