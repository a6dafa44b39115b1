/* The event loop and logging of pinferd. Every wait here is bounded by a
 * timer of a few ms or by an event the test causes itself; asserts check
 * order and counts, never durations. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"

static struct loop *new_loop(void)
{
	struct loop *l;
	assert_int_equal(loop_new(&l), 0);
	return l;
}

static void stop_cb(struct loop *l, void *data)
{
	(void)data;
	loop_stop(l);
}

/* Runs exactly one iteration over whatever is ready now: a zero-delay timer
 * fires after the fd callbacks of the first iteration and stops the loop. */
static void run_one_iteration(struct loop *l)
{
	assert_int_not_equal(loop_timer_add(l, 0, stop_cb, NULL), 0);
	assert_int_equal(loop_run(l), 0);
}

/* fd watches */

struct rw_state {
	int peer;
	int calls;
	uint32_t events[3];
};

/* Writable, then readable, then the peer's hang-up. */
static void rw_cb(struct loop *l, int fd, uint32_t events, void *data)
{
	struct rw_state *s = data;
	char c;
	assert_true(s->calls < 3);
	s->events[s->calls++] = events;
	switch (s->calls) {
	case 1:
		assert_int_equal(loop_modify(l, fd, LOOP_READ), 0);
		assert_int_equal(write(s->peer, "x", 1), 1);
		break;
	case 2:
		assert_int_equal(read(fd, &c, 1), 1);
		close(s->peer);
		break;
	case 3:
		assert_int_equal(read(fd, &c, 1), 0);
		loop_unwatch(l, fd);
		loop_stop(l);
		break;
	}
}

static void test_fd_readiness(void **state)
{
	(void)state;
	struct loop *l = new_loop();
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct rw_state s = { .peer = sv[1] };
	assert_int_equal(loop_watch(l, sv[0], LOOP_WRITE, rw_cb, &s), 0);
	assert_int_equal(loop_run(l), 0);
	assert_int_equal(s.calls, 3);
	assert_int_equal(s.events[0], LOOP_WRITE);
	assert_int_equal(s.events[1], LOOP_READ);
	/* Hang-up is reported though only LOOP_READ was asked for. */
	assert_int_equal(s.events[2], LOOP_READ | LOOP_HUP);
	close(sv[0]);
	loop_free(l);
}

static void count_cb(struct loop *l, int fd, uint32_t events, void *data)
{
	(void)l;
	(void)fd;
	(void)events;
	++*(int *)data;
}

static void test_fd_errors(void **state)
{
	(void)state;
	struct loop *l = new_loop();
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	int calls = 0;
	assert_int_equal(loop_watch(l, -1, LOOP_READ, count_cb, &calls), -EBADF);
	assert_int_equal(loop_watch(l, p[0], LOOP_READ, count_cb, &calls), 0);
	assert_int_equal(loop_watch(l, p[0], LOOP_READ, count_cb, &calls), -EEXIST);
	assert_int_equal(loop_modify(l, p[1], LOOP_WRITE), -ENOENT);
	loop_unwatch(l, p[1]);
	/* A read end that is readable but no longer watched for reading. */
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(loop_modify(l, p[0], 0), 0);
	run_one_iteration(l);
	assert_int_equal(calls, 0);
	assert_int_equal(loop_modify(l, p[0], LOOP_READ), 0);
	run_one_iteration(l);
	assert_int_equal(calls, 1);
	loop_unwatch(l, p[0]);
	loop_unwatch(l, p[0]);

	/* epoll refuses regular files. */
	char path[] = "/tmp/pinfer-test-loop-XXXXXX";
	int file = mkstemp(path);
	assert_true(file >= 0);
	unlink(path);
	assert_int_equal(loop_watch(l, file, LOOP_READ, count_cb, &calls), -EPERM);
	close(file);
	close(p[0]);
	close(p[1]);
	loop_free(l);
}

struct pri_state {
	int calls;
	uint32_t events;
};

static void pri_cb(struct loop *l, int fd, uint32_t events, void *data)
{
	(void)l;
	(void)fd;
	struct pri_state *s = data;
	s->calls++;
	s->events = events;
}

/* LOOP_PRI, from a pty master in packet mode: a flush on the slave sets a
 * status packet, which the master reports as EPOLLPRI and EPOLLIN until it
 * is read. */
static void test_fd_priority(void **state)
{
	(void)state;
	int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		skip();  /* no ptys here */
	char name[64];
	assert_int_equal(grantpt(master), 0);
	assert_int_equal(unlockpt(master), 0);
	assert_int_equal(ptsname_r(master, name, sizeof(name)), 0);
	int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(slave >= 0);
	int one = 1;
	assert_int_equal(ioctl(master, TIOCPKT, &one), 0);

	struct loop *l = new_loop();
	struct pri_state s = { 0 };
	assert_int_equal(loop_watch(l, master, LOOP_PRI, pri_cb, &s), 0);
	run_one_iteration(l);
	assert_int_equal(s.calls, 0);

	assert_int_equal(tcflush(slave, TCIFLUSH), 0);
	run_one_iteration(l);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.events, LOOP_PRI);
	/* Each bit only when asked for. */
	assert_int_equal(loop_modify(l, master, LOOP_READ), 0);
	run_one_iteration(l);
	assert_int_equal(s.calls, 2);
	assert_int_equal(s.events, LOOP_READ);
	assert_int_equal(loop_modify(l, master, LOOP_READ | LOOP_PRI), 0);
	run_one_iteration(l);
	assert_int_equal(s.calls, 3);
	assert_int_equal(s.events, LOOP_READ | LOOP_PRI);

	/* Reading the packet clears it. */
	unsigned char packet[8];
	assert_int_equal(read(master, packet, sizeof(packet)), 1);
	assert_int_equal(packet[0], TIOCPKT_FLUSHREAD);
	run_one_iteration(l);
	assert_int_equal(s.calls, 3);
	/* Plain data is readable, not priority. It reaches the master
	 * through a kernel worker: wait for it. */
	assert_int_equal(write(slave, "x", 1), 1);
	struct pollfd pfd = { .fd = master, .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	run_one_iteration(l);
	assert_int_equal(s.calls, 4);
	assert_int_equal(s.events, LOOP_READ);
	assert_int_equal(read(master, packet, sizeof(packet)), 2);
	assert_int_equal(packet[0], TIOCPKT_DATA);

	loop_unwatch(l, master);
	close(slave);
	close(master);
	loop_free(l);
}

/* Two readable fds; whichever callback runs first removes the other. */
struct rival {
	int fds[2];         /* watched */
	int calls[2];
	int reused_fd;      /* -1, or a new socket on the number of the loser */
	int reused_peer;
	int reused_calls;
	enum rival_mode { UNWATCH, UNWATCH_AND_REUSE, STOP_READING } mode;
};

static void reused_cb(struct loop *l, int fd, uint32_t events, void *data)
{
	(void)fd;
	(void)events;
	struct rival *r = data;
	r->reused_calls++;
	loop_stop(l);
}

static void rival_cb(struct loop *l, int fd, uint32_t events, void *data)
{
	(void)events;
	struct rival *r = data;
	int me = fd == r->fds[1];
	int loser = r->fds[!me];
	char c;
	assert_int_equal(read(fd, &c, 1), 1);
	r->calls[me]++;
	if (r->mode == STOP_READING) {
		assert_int_equal(loop_modify(l, loser, LOOP_WRITE), 0);
		return;
	}
	loop_unwatch(l, loser);
	if (r->mode == UNWATCH)
		return;
	/* A new socket takes the loser's number once it is closed, as one
	 * from accept() would; dup3 makes sure of it whatever else is free
	 * below that number. */
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	close(loser);
	assert_int_equal(dup3(sv[0], loser, O_CLOEXEC), loser);
	close(sv[0]);
	r->reused_fd = loser;
	r->reused_peer = sv[1];
	assert_int_equal(loop_watch(l, loser, LOOP_READ, reused_cb, r), 0);
}

static void run_rivals(enum rival_mode mode)
{
	struct loop *l = new_loop();
	struct rival r = { .reused_fd = -1, .reused_peer = -1, .mode = mode };
	int peers[2];
	for (int i = 0; i < 2; i++) {
		int sv[2];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		r.fds[i] = sv[0];
		peers[i] = sv[1];
		assert_int_equal(write(peers[i], "x", 1), 1);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(loop_watch(l, r.fds[i], LOOP_READ, rival_cb, &r), 0);

	/* Both events come back from the same epoll_wait; the second one
	 * belongs to a watch removed or no longer reading, and is dropped. */
	run_one_iteration(l);
	assert_int_equal(r.calls[0] + r.calls[1], 1);
	assert_int_equal(r.reused_calls, 0);

	if (mode == UNWATCH_AND_REUSE) {
		/* The new watch on the reused number works. */
		assert_int_equal(write(r.reused_peer, "y", 1), 1);
		assert_int_equal(loop_run(l), 0);
		assert_int_equal(r.reused_calls, 1);
		loop_unwatch(l, r.reused_fd);
		close(r.reused_fd);
		close(r.reused_peer);
	}
	for (int i = 0; i < 2; i++) {
		loop_unwatch(l, r.fds[i]);
		if (r.fds[i] != r.reused_fd)
			close(r.fds[i]);
		close(peers[i]);
	}
	loop_free(l);
}

static void test_unwatch_pending_event(void **state)
{
	(void)state;
	run_rivals(UNWATCH);
}

static void test_modify_pending_event(void **state)
{
	(void)state;
	run_rivals(STOP_READING);
}

static void test_fd_number_reuse(void **state)
{
	(void)state;
	run_rivals(UNWATCH_AND_REUSE);
}

/* timers */

#define N_ORDERED 256

/* Timers with random delays, every third cancelled: removals from the
 * middle of the heap move its last entry up as well as down. */
struct ordered {
	struct loop *loop;
	uint64_t delay[N_ORDERED];
	uint64_t id[N_ORDERED];
	int fired[N_ORDERED];
	int n_fired;
	int n_expected;
	struct ordered_timer {
		struct ordered *o;
		int index;
	} timers[N_ORDERED];
};

static void ordered_cb(struct loop *l, void *data)
{
	struct ordered_timer *t = data;
	struct ordered *o = t->o;
	o->fired[o->n_fired++] = t->index;
	if (o->n_fired == o->n_expected)
		loop_stop(l);
}

/* Added from a callback, so that all delays count from the same time. */
static void add_ordered_cb(struct loop *l, void *data)
{
	struct ordered *o = data;
	for (int i = 0; i < N_ORDERED; i++) {
		o->id[i] = loop_timer_add(l, o->delay[i], ordered_cb, &o->timers[i]);
		assert_int_not_equal(o->id[i], 0);
	}
	for (int i = 0; i < N_ORDERED; i += 3)
		loop_timer_cancel(l, o->id[i]);
	o->n_expected = N_ORDERED - (N_ORDERED + 2) / 3;
}

static void test_timer_order(void **state)
{
	(void)state;
	struct ordered o = { .loop = new_loop() };
	uint64_t rng = 42;
	for (int i = 0; i < N_ORDERED; i++) {
		o.delay[i] = test_rand(&rng) % 5;
		o.timers[i] = (struct ordered_timer){ .o = &o, .index = i };
	}
	assert_int_not_equal(loop_timer_add(o.loop, 0, add_ordered_cb, &o), 0);
	assert_int_equal(loop_run(o.loop), 0);
	assert_int_equal(o.n_fired, o.n_expected);
	/* By delay, ties in order of creation. */
	for (int i = 0; i < o.n_fired; i++) {
		assert_int_not_equal(o.fired[i] % 3, 0);
		if (i == 0)
			continue;
		int a = o.fired[i - 1], b = o.fired[i];
		assert_true(o.delay[a] < o.delay[b] || (o.delay[a] == o.delay[b] && a < b));
	}
	loop_free(o.loop);
}

struct cancels {
	uint64_t victim;     /* due in the same iteration as the canceller */
	uint64_t canceller;
	uint64_t stale;      /* cancelled, its slot since reused */
	int fired;
};

static void must_not_fire_cb(struct loop *l, void *data)
{
	(void)l;
	((struct cancels *)data)->fired++;
}

static void canceller_cb(struct loop *l, void *data)
{
	struct cancels *c = data;
	loop_timer_cancel(l, c->victim);
	loop_timer_cancel(l, c->canceller);  /* fired already */
	loop_timer_cancel(l, c->stale);
	loop_timer_cancel(l, 0);
	loop_timer_cancel(l, UINT64_MAX);
}

static void add_cancels_cb(struct loop *l, void *data)
{
	struct cancels *c = data;
	c->stale = loop_timer_add(l, 1, must_not_fire_cb, c);
	loop_timer_cancel(l, c->stale);
	/* Likely reuses the stale id's slot; the stale id must not cancel it. */
	assert_int_not_equal(loop_timer_add(l, 2, stop_cb, NULL), 0);
	c->canceller = loop_timer_add(l, 1, canceller_cb, c);
	c->victim = loop_timer_add(l, 1, must_not_fire_cb, c);
	assert_int_not_equal(c->victim, c->canceller);
}

static void test_timer_cancel(void **state)
{
	(void)state;
	struct loop *l = new_loop();
	struct cancels c = { 0 };
	assert_int_not_equal(loop_timer_add(l, 0, add_cancels_cb, &c), 0);
	assert_int_equal(loop_run(l), 0);
	assert_int_equal(c.fired, 0);
	loop_free(l);
}

struct rearm {
	int fired;
	int iterations;
};

static void rearm_cb(struct loop *l, void *data)
{
	struct rearm *r = data;
	if (++r->fired == 5)
		loop_stop(l);
	else
		assert_int_not_equal(loop_timer_add(l, 0, rearm_cb, r), 0);
}

static void count_iterations_cb(struct loop *l, void *data)
{
	(void)l;
	((struct rearm *)data)->iterations++;
}

static void test_timer_rearm_zero_delay(void **state)
{
	(void)state;
	struct loop *l = new_loop();
	struct rearm r = { 0 };
	loop_set_before_sleep(l, count_iterations_cb, &r);
	assert_int_not_equal(loop_timer_add(l, 0, rearm_cb, &r), 0);
	assert_int_equal(loop_run(l), 0);
	assert_int_equal(r.fired, 5);
	/* One firing per iteration: a zero-delay re-arm waits for the next
	 * one instead of spinning inside the timer phase. */
	assert_int_equal(r.iterations, 5);
	loop_free(l);
}

static void test_stop_from_timer(void **state)
{
	(void)state;
	struct loop *l = new_loop();
	for (int run = 0; run < 2; run++) {
		assert_int_not_equal(loop_timer_add(l, 1, stop_cb, NULL), 0);
		assert_int_equal(loop_run(l), 0);
	}
	loop_free(l);
}

/* signals */

static void signal_cb(struct loop *l, int signo, void *data)
{
	*(int *)data = signo;
	loop_stop(l);
}

static void test_signal(void **state)
{
	(void)state;
	struct loop *l = new_loop();
	int got = 0;
	assert_int_equal(loop_signal(l, SIGKILL, signal_cb, &got), -EINVAL);
	assert_int_equal(loop_signal(l, 0, signal_cb, &got), -EINVAL);
	assert_int_equal(loop_signal(l, SIGUSR1, signal_cb, &got), 0);
	assert_int_equal(loop_signal(l, SIGUSR1, signal_cb, &got), -EEXIST);
	assert_int_equal(raise(SIGUSR1), 0);
	assert_int_equal(loop_run(l), 0);
	assert_int_equal(got, SIGUSR1);
	loop_free(l);
}

/* wake-ups */

#define WAKE_THREADS 4
#define WAKE_POSTS 1000

struct wake_test {
	struct loop_wake *wake;
	atomic_int produced;
	int calls;
	int seen;
};

static void *post_thread(void *arg)
{
	struct wake_test *t = arg;
	for (int i = 0; i < WAKE_POSTS; i++) {
		atomic_fetch_add(&t->produced, 1);
		loop_wake_post(t->wake);
	}
	return NULL;
}

static void wake_cb(struct loop *l, void *data)
{
	struct wake_test *t = data;
	t->calls++;
	t->seen = atomic_load(&t->produced);
	if (t->seen == WAKE_THREADS * WAKE_POSTS)
		loop_stop(l);
}

static void test_wake_threads(void **state)
{
	(void)state;
	struct loop *l = new_loop();
	struct wake_test t = { .calls = 0 };
	atomic_init(&t.produced, 0);
	assert_int_equal(loop_wake_new(l, &t.wake, wake_cb, &t), 0);
	pthread_t threads[WAKE_THREADS];
	for (int i = 0; i < WAKE_THREADS; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, post_thread, &t), 0);
	/* Stops only once a call has seen every increment: the last post is
	 * followed by a call. */
	assert_int_equal(loop_run(l), 0);
	for (int i = 0; i < WAKE_THREADS; i++)
		assert_int_equal(pthread_join(threads[i], NULL), 0);
	assert_int_equal(t.seen, WAKE_THREADS * WAKE_POSTS);
	assert_true(t.calls >= 1 && t.calls <= WAKE_THREADS * WAKE_POSTS);

	/* A wake-up freed with a post pending calls nothing. */
	int calls = t.calls;
	loop_wake_post(t.wake);
	loop_wake_free(t.wake);
	run_one_iteration(l);
	assert_int_equal(t.calls, calls);
	loop_free(l);
}

/* log */

/* Runs fn with stderr sent to a temporary file, which is the journal
 * stream when journal is set, and returns what was written (malloc'd). */
static char *capture_stderr(int journal, void (*fn)(void))
{
	char path[] = "/tmp/pinfer-test-log-XXXXXX";
	int file = mkstemp(path);
	assert_true(file >= 0);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(file, STDERR_FILENO), STDERR_FILENO);
	if (journal) {
		struct stat st;
		assert_int_equal(fstat(file, &st), 0);
		char stream[64];
		snprintf(stream, sizeof(stream), "%llu:%llu", (unsigned long long)st.st_dev,
		         (unsigned long long)st.st_ino);
		setenv("JOURNAL_STREAM", stream, 1);
	} else {
		/* A stream that is not stderr must not count. */
		setenv("JOURNAL_STREAM", "1:2", 1);
	}
	log_init();
	fn();
	unsetenv("JOURNAL_STREAM");
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	close(file);
	log_init();
	log_set_level(LOG_LEVEL_INFO);
	char *text = read_file(path, NULL);
	unlink(path);
	return text;
}

static void log_levels(void)
{
	log_set_level(LOG_LEVEL_WARN);
	log_error("boom %d", 42);
	log_warn("careful");
	log_info("dropped");
	log_debug("dropped");
	log_set_level(LOG_LEVEL_DEBUG);
	log_info("two\nlines");
	log_debug("verbose");
}

static void test_log_journal(void **state)
{
	(void)state;
	char *text = capture_stderr(1, log_levels);
	assert_string_equal(text, "<3>boom 42\n<4>careful\n<6>two lines\n<7>verbose\n");
	free(text);
}

static void log_long(void)
{
	/* Two-byte characters after an odd prefix (the plain one is 30
	 * bytes), so that the cut falls inside one unless handled. */
	char msg[2 * LOG_LINE_MAX];
	msg[0] = 'x';
	for (size_t i = 1; i + 2 < sizeof(msg); i += 2)
		memcpy(msg + i, "é", 2);
	msg[sizeof(msg) - 1] = 0;
	errno = EAGAIN;
	log_warn("%s", msg);
	assert_int_equal(errno, EAGAIN);
	log_debug("dropped");
}

static void test_log_plain_truncated(void **state)
{
	(void)state;
	char *text = capture_stderr(0, log_long);
	size_t len = strlen(text);
	assert_true(len <= LOG_LINE_MAX && len > LOG_LINE_MAX - 4);
	/* "YYYY-MM-DD HH:MM:SS.mmm warn  " */
	assert_int_equal(text[4], '-');
	assert_int_equal(text[19], '.');
	assert_memory_equal(text + 23, " warn  xéé", strlen(" warn  xéé"));
	assert_string_equal(text + len - 4, "…\n");
	assert_memory_equal(text + len - 6, "é", 2);
	free(text);
}

static void test_log_level_parse(void **state)
{
	(void)state;
	enum log_level level;
	assert_int_equal(log_level_parse("debug", &level), 0);
	assert_int_equal(level, LOG_LEVEL_DEBUG);
	assert_int_equal(log_level_parse("error", &level), 0);
	assert_int_equal(level, LOG_LEVEL_ERROR);
	assert_int_equal(log_level_parse("notice", &level), -EINVAL);
	assert_int_equal(log_level_parse("", &level), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fd_readiness),
		cmocka_unit_test(test_fd_errors),
		cmocka_unit_test(test_fd_priority),
		cmocka_unit_test(test_unwatch_pending_event),
		cmocka_unit_test(test_modify_pending_event),
		cmocka_unit_test(test_fd_number_reuse),
		cmocka_unit_test(test_timer_order),
		cmocka_unit_test(test_timer_cancel),
		cmocka_unit_test(test_timer_rearm_zero_delay),
		cmocka_unit_test(test_stop_from_timer),
		cmocka_unit_test(test_signal),
		cmocka_unit_test(test_wake_threads),
		cmocka_unit_test(test_log_journal),
		cmocka_unit_test(test_log_plain_truncated),
		cmocka_unit_test(test_log_level_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
