/* Memory-pressure watching: the sources pressure_open() picks from the
 * environment, what it sends them, and how reports are spaced; then what
 * the model registry does with the reports (models_pressure), from a FIFO
 * source as in the daemon: offloaded budgets shrink step by step before
 * any model is evicted, and grow back once the reports stop. Waits end on
 * the event the test expects, with a timer of a few seconds as a backstop;
 * asserts check counts, sizes and orders of events, never durations. The
 * coalescing cases wait about one PRESSURE_INTERVAL_MS for the trailing
 * call. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "commands.h"
#include "error.h"
#include "loop.h"
#include "models.h"
#include "pressure.h"

/* Backstop for waits that end on an event. */
#define WAIT_MAX_MS 5000

struct fixture {
	char dir[64];
	char path[128];    /* the source, inside dir */
	struct loop *loop;
	struct pressure *p;
	int calls;
	int stop_at;       /* calls at which the loop stops; 0: never */
	int close_at;      /* calls at which fn closes p; 0: never */
	int iterations;    /* of the loop, counted by the before-sleep hook */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	strcpy(f->dir, "/tmp/pinfer-test-pressure-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/source", f->dir);
	assert_int_equal(loop_new(&f->loop), 0);
	unsetenv("MEMORY_PRESSURE_WATCH");
	unsetenv("MEMORY_PRESSURE_WRITE");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	unsetenv("MEMORY_PRESSURE_WATCH");
	unsetenv("MEMORY_PRESSURE_WRITE");
	pressure_close(f->p);
	loop_free(f->loop);
	test_rmtree(f->dir);
	free(f);
	return 0;
}

static void on_pressure(void *data)
{
	struct fixture *f = data;
	f->calls++;
	if (f->calls == f->close_at) {
		pressure_close(f->p);
		f->p = NULL;
	}
	if (f->calls == f->stop_at)
		loop_stop(f->loop);
}

static void stop_cb(struct loop *l, void *data)
{
	(void)data;
	loop_stop(l);
}

static void count_iterations_cb(struct loop *l, void *data)
{
	(void)l;
	((struct fixture *)data)->iterations++;
}

/* Runs the loop for ms (the timer fires after that iteration's events). */
static void run_for(struct fixture *f, uint64_t ms)
{
	uint64_t id = loop_timer_add(f->loop, ms, stop_cb, NULL);
	assert_int_not_equal(id, 0);
	assert_int_equal(loop_run(f->loop), 0);
	loop_timer_cancel(f->loop, id);
}

/* Runs the loop until fn has been called calls times in all. */
static void run_until_calls(struct fixture *f, int calls)
{
	f->stop_at = calls;
	run_for(f, WAIT_MAX_MS);
	f->stop_at = 0;
	assert_int_equal(f->calls, calls);
}

static int open_source(struct fixture *f, struct pf_err *err)
{
	return pressure_open(&f->p, f->loop, on_pressure, f, err);
}

static void write_fifo(const char *path, const char *bytes)
{
	/* The watcher holds the FIFO open for reading, so this does not
	 * fail with ENXIO. */
	int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, bytes, strlen(bytes)), (ssize_t)strlen(bytes));
	close(fd);
}

/* Whether the FIFO at path has nothing left to read. */
static bool fifo_empty(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	assert_true(fd >= 0);
	char c;
	ssize_t n = read(fd, &c, 1);
	int saved = errno;
	close(fd);
	return n < 0 && saved == EAGAIN;
}

static struct fixture *fifo_source(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(mkfifo(f->path, 0600), 0);
	assert_int_equal(setenv("MEMORY_PRESSURE_WATCH", f->path, 1), 0);
	struct pf_err err = { "" };
	assert_int_equal(open_source(f, &err), 0);
	assert_non_null(f->p);
	return f;
}

/* FIFO */

static void test_fifo(void **state)
{
	struct fixture *f = fifo_source(state);
	char expected[256];
	snprintf(expected, sizeof(expected), "MEMORY_PRESSURE_WATCH=%s (FIFO)", f->path);
	assert_string_equal(pressure_source(f->p), expected);

	run_for(f, 20);
	assert_int_equal(f->calls, 0);

	write_fifo(f->path, "x");
	run_until_calls(f, 1);
	assert_true(fifo_empty(f->path));

	/* The writer has closed: no hang-up, no spinning, no call. */
	loop_set_before_sleep(f->loop, count_iterations_cb, f);
	run_for(f, 30);
	loop_set_before_sleep(f->loop, NULL, NULL);
	assert_true(f->iterations < 10);
	assert_int_equal(f->calls, 1);

	/* A new writer, inside the interval: one more call, at its end. */
	write_fifo(f->path, "more bytes");
	run_until_calls(f, 2);
	assert_true(fifo_empty(f->path));
}

struct burst {
	struct fixture *f;
	int left;
};

static void burst_cb(struct loop *l, void *data)
{
	struct burst *b = data;
	write_fifo(b->f->path, "p");
	if (--b->left > 0)
		assert_int_not_equal(loop_timer_add(l, 5, burst_cb, b), 0);
	else
		assert_int_not_equal(loop_timer_add(l, 30, stop_cb, NULL), 0);
}

static void test_coalescing(void **state)
{
	struct fixture *f = fifo_source(state);
	/* The first report is passed on at once. */
	write_fifo(f->path, "x");
	run_until_calls(f, 1);

	/* Twenty reports, 5 ms apart, well inside the interval: each one is
	 * read (the FIFO ends empty) but none calls fn now. */
	struct burst b = { .f = f, .left = 20 };
	assert_int_not_equal(loop_timer_add(f->loop, 5, burst_cb, &b), 0);
	assert_int_equal(loop_run(f->loop), 0);
	assert_int_equal(b.left, 0);
	assert_true(fifo_empty(f->path));
	assert_int_equal(f->calls, 1);

	/* They make exactly one call, when the interval ends. */
	run_until_calls(f, 2);
	run_for(f, PRESSURE_INTERVAL_MS + 200);
	assert_int_equal(f->calls, 2);

	/* Idle again: the next report is passed on at once. */
	write_fifo(f->path, "x");
	run_until_calls(f, 3);
}

static void test_close_from_callback(void **state)
{
	struct fixture *f = fifo_source(state);
	/* Closed by fn from the fd callback... */
	f->close_at = 1;
	write_fifo(f->path, "x");
	run_until_calls(f, 1);
	assert_null(f->p);

	/* ...and from the timer that ends an interval. */
	assert_int_equal(open_source(f, NULL), 0);
	assert_non_null(f->p);
	f->close_at = 3;
	write_fifo(f->path, "x");
	run_until_calls(f, 2);
	write_fifo(f->path, "y");
	run_until_calls(f, 3);
	assert_null(f->p);
	run_for(f, 20);
	assert_int_equal(f->calls, 3);
}

/* configuration */

static void test_off(void **state)
{
	struct fixture *f = *state;
	struct pf_err err = { "" };
	const char *off[] = { "/dev/null", "" };
	for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
		assert_int_equal(setenv("MEMORY_PRESSURE_WATCH", off[i], 1), 0);
		f->p = (struct pressure *)f;  /* must be overwritten */
		assert_int_equal(open_source(f, &err), 0);
		assert_null(f->p);
	}
	pressure_close(NULL);
}

static void expect_error(struct fixture *f, int code, const char *in_msg)
{
	struct pf_err err = { "" };
	assert_int_equal(open_source(f, &err), code);
	assert_null(f->p);
	if (!strstr(err.msg, in_msg))
		fail_msg("\"%s\" not in the error \"%s\"", in_msg, err.msg);
}

static void test_bad_paths(void **state)
{
	struct fixture *f = *state;
	/* Missing. */
	assert_int_equal(setenv("MEMORY_PRESSURE_WATCH", f->path, 1), 0);
	expect_error(f, -ENOENT, f->path);
	/* Relative. */
	assert_int_equal(setenv("MEMORY_PRESSURE_WATCH", "memory.pressure", 1), 0);
	expect_error(f, -EINVAL, "memory.pressure: not an absolute path");
	/* A directory. */
	assert_int_equal(setenv("MEMORY_PRESSURE_WATCH", f->dir, 1), 0);
	expect_error(f, -EISDIR, f->dir);
	/* A regular file that is no PSI file. */
	int fd = open(f->path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(setenv("MEMORY_PRESSURE_WATCH", f->path, 1), 0);
	expect_error(f, -ENOTTY, f->path);
	/* A device. */
	assert_int_equal(setenv("MEMORY_PRESSURE_WATCH", "/dev/zero", 1), 0);
	expect_error(f, -EINVAL, "/dev/zero");
}

static void test_bad_base64(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(mkfifo(f->path, 0600), 0);
	assert_int_equal(setenv("MEMORY_PRESSURE_WATCH", f->path, 1), 0);
	const char *bad[] = {
		"not base64!",   /* off the alphabet */
		"aGVsbG8=x",     /* data after padding */
		"aGVsbG8===",    /* too much padding */
		"aGVsbG8h=",     /* padding past a full group */
		"aGVsb",         /* one character alone */
		"aGVsbG9=",      /* leftover bits not zero */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(setenv("MEMORY_PRESSURE_WRITE", bad[i], 1), 0);
		expect_error(f, -EINVAL, "MEMORY_PRESSURE_WRITE");
	}
	/* Empty is as good as unset. */
	assert_int_equal(setenv("MEMORY_PRESSURE_WRITE", "", 1), 0);
	assert_int_equal(open_source(f, NULL), 0);
	assert_non_null(f->p);
}

/* Unix sockets */

/* A listening (or, for datagrams, bound) socket at f->path. */
static int listen_at(struct fixture *f, int type)
{
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, f->path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (type != SOCK_DGRAM)
		assert_int_equal(listen(fd, 4), 0);
	/* Reads below must not hang the test if nothing comes. */
	struct timeval tv = { .tv_sec = WAIT_MAX_MS / 1000 };
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	return fd;
}

struct socket_case {
	int type;
	const char *name;
	const char *write_b64;   /* NULL: MEMORY_PRESSURE_WRITE unset */
	const char *expected;    /* its decoded bytes */
	size_t expected_len;
};

/* Opens a socket source whose server end is at *server (the accepted
 * connection, or the bound datagram socket), checks what was sent to it,
 * and the datagram peer's address in *peer. */
static void open_socket_case(struct fixture *f, const struct socket_case *c, int *server,
                             struct sockaddr_un *peer, socklen_t *peer_len)
{
	int listener = listen_at(f, c->type);
	assert_int_equal(setenv("MEMORY_PRESSURE_WATCH", f->path, 1), 0);
	if (c->write_b64)
		assert_int_equal(setenv("MEMORY_PRESSURE_WRITE", c->write_b64, 1), 0);
	else
		unsetenv("MEMORY_PRESSURE_WRITE");
	struct pf_err err = { "" };
	if (open_source(f, &err) < 0)
		fail_msg("%s", err.msg);
	assert_non_null(f->p);
	char expected[256];
	snprintf(expected, sizeof(expected), "MEMORY_PRESSURE_WATCH=%s (%s socket)", f->path, c->name);
	assert_string_equal(pressure_source(f->p), expected);

	char buf[256];
	ssize_t n;
	*peer_len = sizeof(*peer);
	if (c->type == SOCK_DGRAM) {
		*server = listener;
		if (c->expected_len) {
			n = recvfrom(listener, buf, sizeof(buf), 0, (struct sockaddr *)peer, peer_len);
		} else {
			/* Nothing is sent, so the peer's address is not known
			 * to the server; no datagram can be written back. */
			n = recv(listener, buf, sizeof(buf), MSG_DONTWAIT);
			assert_true(n < 0 && errno == EAGAIN);
			n = 0;
		}
	} else {
		*server = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
		assert_true(*server >= 0);
		close(listener);
		/* One write, so one read gets it all; or nothing at all. */
		n = recv(*server, buf, sizeof(buf), c->expected_len ? 0 : MSG_DONTWAIT);
		if (!c->expected_len) {
			assert_true(n < 0 && errno == EAGAIN);
			n = 0;
		}
	}
	assert_int_equal(n, (ssize_t)c->expected_len);
	assert_memory_equal(buf, c->expected, c->expected_len);
}

static void run_socket_case(struct fixture *f, const struct socket_case *c)
{
	int server;
	struct sockaddr_un peer;
	socklen_t peer_len;
	open_socket_case(f, c, &server, &peer, &peer_len);
	run_for(f, 20);
	assert_int_equal(f->calls, 0);

	if (c->type == SOCK_DGRAM) {
		if (c->expected_len) {
			assert_int_equal(sendto(server, "!", 1, 0, (struct sockaddr *)&peer, peer_len), 1);
			run_until_calls(f, 1);
		}
	} else {
		assert_int_equal(send(server, "!", 1, MSG_NOSIGNAL), 1);
		run_until_calls(f, 1);
		/* The server goes away: the watch stops, without spinning on
		 * the hang-up nor calling fn, now or when the interval ends. */
		close(server);
		loop_set_before_sleep(f->loop, count_iterations_cb, f);
		run_for(f, PRESSURE_INTERVAL_MS + 100);
		loop_set_before_sleep(f->loop, NULL, NULL);
		assert_true(f->iterations < 10);
		assert_int_equal(f->calls, 1);
		server = -1;
	}
	if (server >= 0)
		close(server);
	pressure_close(f->p);
	f->p = NULL;
}

static void test_socket_stream(void **state)
{
	/* systemd's own default trigger, NUL included. */
	static const struct socket_case c = { SOCK_STREAM, "stream", "c29tZSAyMDAwMDAgMjAwMDAwMAA=",
		                              "some 200000 2000000", 20 };
	run_socket_case(*state, &c);
}

static void test_socket_seqpacket(void **state)
{
	static const struct socket_case c = { SOCK_SEQPACKET, "seqpacket", NULL, "", 0 };
	run_socket_case(*state, &c);
}

static void test_socket_datagram(void **state)
{
	static const struct socket_case c = { SOCK_DGRAM, "datagram", "aGVsbG8=", "hello", 5 };
	run_socket_case(*state, &c);
}

/* MEMORY_PRESSURE_WRITE reaches a socket decoded, byte for byte. */
static void test_write_decoding(void **state)
{
	struct fixture *f = *state;
	static const struct socket_case cases[] = {
		{ SOCK_SEQPACKET, "seqpacket", "aGVsbG8=", "hello", 5 },
		{ SOCK_SEQPACKET, "seqpacket", "aGVsbG8", "hello", 5 },
		{ SOCK_SEQPACKET, "seqpacket", " aGVs\nbG8h ", "hello!", 6 },
		{ SOCK_SEQPACKET, "seqpacket", "YQ==", "a", 1 },
		{ SOCK_SEQPACKET, "seqpacket", "YWI=", "ab", 2 },
		{ SOCK_SEQPACKET, "seqpacket", "AP8Aq+/+", "\0\377\0\253\357\376", 6 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int server;
		struct sockaddr_un peer;
		socklen_t peer_len;
		open_socket_case(f, &cases[i], &server, &peer, &peer_len);
		close(server);
		pressure_close(f->p);
		f->p = NULL;
		unlink(f->path);
	}
}

/* PSI */

/* The system-wide PSI file, named or by default. Whether this kernel and
 * these privileges allow a trigger varies; either way the outcome is a
 * watch with the right trigger or a clear refusal. */
static void test_psi(void **state)
{
	struct fixture *f = *state;
	const char *psi = "/proc/pressure/memory";
	struct pf_err err = { "" };

	/* Unset: never an error. */
	assert_int_equal(open_source(f, &err), 0);
	if (f->p) {
		assert_string_equal(pressure_source(f->p),
		                    "/proc/pressure/memory (PSI trigger \"some 200000 2000000\")");
		pressure_close(f->p);
		f->p = NULL;
	}

	assert_int_equal(setenv("MEMORY_PRESSURE_WATCH", psi, 1), 0);
	/* "some 150000 2000000" and its NUL. */
	assert_int_equal(setenv("MEMORY_PRESSURE_WRITE", "c29tZSAxNTAwMDAgMjAwMDAwMAA=", 1), 0);
	int r = open_source(f, &err);
	if (r == 0) {
		assert_non_null(f->p);
		assert_string_equal(pressure_source(f->p), "MEMORY_PRESSURE_WATCH=/proc/pressure/memory "
		                                           "(PSI trigger \"some 150000 2000000\")");
		/* Armed: no error polled, so the watch stays. */
		run_for(f, 20);
		pressure_close(f->p);
		f->p = NULL;
		/* A trigger the kernel refuses. */
		assert_int_equal(setenv("MEMORY_PRESSURE_WRITE", "Ym9ndXMA", 1), 0);  /* "bogus" */
		expect_error(f, -EINVAL, "writing the trigger");
	} else {
		assert_null(f->p);
		if (!strstr(err.msg, psi))
			fail_msg("\"%s\" not in the error \"%s\"", psi, err.msg);
	}
}

/* The registry under pressure */

/* test_dir/models: stories260K, and packed, a small predictor model packed
 * into a bundle file; made once, for the tests that need them. */
static void make_models(void)
{
	static bool made;
	if (made)
		return;
	char models[512], src[512], prof[512], packed[512], stories[512];
	snprintf(models, sizeof(models), "%s/models", test_dir);
	snprintf(src, sizeof(src), "%s/m.gguf", test_dir);
	snprintf(prof, sizeof(prof), "%s/m.prof", test_dir);
	snprintf(packed, sizeof(packed), "%s/packed.gguf", models);
	snprintf(stories, sizeof(stories), "%s/stories260K.gguf", models);
	assert_int_equal(mkdir(models, 0700), 0);
	char *synth[] = { "synth", "--dim", "256", "--ff", "768", "--layers", "3", "--heads", "4", "--type", "q4_0",
			  "--act", "relu", "--sparsity", "0.9", "--predictor", "64", "-o", src, NULL };
	assert_int_equal(cmd_synth(19, synth), 0);
	char *profile[] = { "profile", "-m", src, "-f", (char *)shared_path("text/tinystories_val_head.txt"),
			    "--lines", "10", "-o", prof, NULL };
	assert_int_equal(cmd_profile(9, profile), 0);
	char *pack[] = { "pack", "-m", src, "--profile", prof, "-o", packed, NULL };
	assert_int_equal(cmd_pack(7, pack), 0);
	assert_int_equal(symlink(shared_path("models/stories260K/stories260K.gguf"), stories), 0);
	made = true;
}

struct registry {
	struct loop *loop;
	struct models *models;
	struct pressure *p;
	char fifo[512];
	int loads_left;
	struct models_relief relief[8];
	int reports;
	struct model_entry *watched;  /* its budgets, in the order they were seen */
	uint64_t seen[8];
	int n_seen;
	bool (*done)(struct registry *);
	bool timed_out;
	int want_reports, want_seen;
};

static void no_requests(void *data, struct request *r)
{
	(void)data;
	(void)r;
	fail_msg("no request was made");
}

static void on_load(void *data, struct model_entry *e, int status, const char *error)
{
	struct registry *g = data;
	if (status)
		fail_msg("loading %s: %s", e->name, error);
	g->loads_left--;
}

static void on_registry_pressure(void *data)
{
	struct registry *g = data;
	assert_true(g->reports < 8);
	models_pressure(g->models, &g->relief[g->reports++]);
}

/* Before each sleep: records the watched model's budget when it changed
 * (every budget it takes is seen: a change lands when its thread's
 * wake-up is dispatched, and the next one starts a thread of its own
 * then), and stops the loop once the awaited state is there. */
static void registry_before_sleep(struct loop *l, void *data)
{
	struct registry *g = data;
	if (g->watched) {
		uint64_t b = g->watched->mem_bytes;
		if (g->n_seen == 0 || g->seen[g->n_seen - 1] != b) {
			assert_true(g->n_seen < 8);
			g->seen[g->n_seen++] = b;
		}
	}
	if (g->done && g->done(g))
		loop_stop(l);
}

static void registry_backstop(struct loop *l, void *data)
{
	((struct registry *)data)->timed_out = true;
	loop_stop(l);
}

static void run_registry_until(struct registry *g, bool (*done)(struct registry *), const char *what)
{
	g->done = done;
	g->timed_out = false;
	uint64_t backstop = loop_timer_add(g->loop, 4 * WAIT_MAX_MS, registry_backstop, g);
	assert_int_not_equal(backstop, 0);
	assert_int_equal(loop_run(g->loop), 0);
	loop_timer_cancel(g->loop, backstop);
	g->done = NULL;
	if (g->timed_out)
		fail_msg("timed out waiting for %s", what);
}

static bool loads_done(struct registry *g)
{
	return g->loads_left == 0;
}

/* The reports and the budgets awaited are in, and no change runs. */
static bool reported(struct registry *g)
{
	return g->reports >= g->want_reports && g->n_seen >= g->want_seen && !g->watched->resizing;
}

static void registry_open(struct registry *g, uint64_t restore_ms, const char *budget)
{
	make_models();
	memset(g, 0, sizeof(*g));
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/models", test_dir);
	snprintf(g->fifo, sizeof(g->fifo), "%s/pressure", test_dir);
	unlink(g->fifo);
	assert_int_equal(mkfifo(g->fifo, 0600), 0);
	assert_int_equal(loop_new(&g->loop), 0);
	struct models_config c = {
		.dir = dir,
		.budget_bytes = 1ull << 30,
		.keep_alive_ms = -1,
		.restore_ms = restore_ms,
		.sched = { .n_slots = 1, .queue_max = 1, .n_ctx = 64, .n_batch = 16, .n_threads = 1 },
	};
	assert_int_equal(models_new(&g->models, g->loop, &c, no_requests, g, on_load, g), 0);
	struct model_entry *packed = models_find(g->models, "packed");
	assert_non_null(packed);
	struct models_budget b;
	assert_true(models_parse_budget(budget, &b));
	char why[256];
	assert_int_equal(models_want_budget(g->models, packed, &b, why, sizeof(why)), 0);
	g->loads_left = 2;
	assert_int_equal(models_load(g->models, packed), 0);
	assert_int_equal(models_load(g->models, models_find(g->models, "stories260K")), 0);
	loop_set_before_sleep(g->loop, registry_before_sleep, g);
	run_registry_until(g, loads_done, "the loads");
	g->watched = packed;
	g->seen[g->n_seen++] = packed->mem_bytes;
	assert_int_equal(setenv("MEMORY_PRESSURE_WATCH", g->fifo, 1), 0);
	assert_int_equal(pressure_open(&g->p, g->loop, on_registry_pressure, g, NULL), 0);
	assert_non_null(g->p);
	unsetenv("MEMORY_PRESSURE_WATCH");
}

static void registry_close(struct registry *g)
{
	pressure_close(g->p);
	models_free(g->models);
	loop_free(g->loop);
	unlink(g->fifo);
}

/* Reports pressure and waits until the report was handled and the
 * watched model took as many new budgets as changes. */
static void report_pressure(struct registry *g, int changes)
{
	g->want_reports = g->reports + 1;
	g->want_seen = g->n_seen + changes;
	write_fifo(g->fifo, "some");
	run_registry_until(g, reported, "a report and its budgets");
}

static uint64_t engine_budget(const struct model_entry *e)
{
	struct pinfer_offload_stats st;
	assert_true(pinfer_model_offload_stats(e->model, &st));
	return st.budget;
}

static uint64_t engine_minimum(const struct model_entry *e)
{
	struct pinfer_offload_stats st;
	assert_true(pinfer_model_offload_stats(e->model, &st));
	return st.minimum;
}

/* Three reports shrink the offloaded model to half its room
 * above the minimum, a quarter, then the minimum, with nothing evicted;
 * the next one, finding nothing to shrink, evicts the idle models. */
static void test_registry_shrinks_then_evicts(void **state)
{
	(void)state;
	struct registry g;
	registry_open(&g, 3600 * 1000, "100%ffn");
	struct model_entry *packed = g.watched, *stories = models_find(g.models, "stories260K");
	uint64_t asked = packed->mem_bytes, min = engine_minimum(packed);
	assert_int_equal(engine_budget(packed), asked);
	assert_true(asked > min + 8 * 4096);
	for (int k = 1; k <= MODELS_SQUEEZE_STEPS; k++) {
		report_pressure(&g, 1);
		uint64_t want = k < MODELS_SQUEEZE_STEPS ? min + ((asked - min) >> k) : min;
		assert_int_equal(packed->mem_bytes, want);
		assert_int_equal(engine_budget(packed), want);
		assert_int_equal(g.relief[k - 1].shrunk, 1);
		assert_int_equal(g.relief[k - 1].evicted, 0);
		assert_int_equal(stories->state, MODEL_LOADED);
	}
	assert_int_equal(models_used_bytes(g.models), min + stories->mem_bytes);
	report_pressure(&g, 1);  /* packed unloaded: its budget 0 */
	assert_int_equal(g.relief[3].shrunk, 0);
	assert_int_equal(g.relief[3].changing, 0);
	assert_int_equal(g.relief[3].evicted, 2);
	assert_int_equal(packed->state, MODEL_UNLOADED);
	assert_int_equal(stories->state, MODEL_UNLOADED);
	registry_close(&g);
}

/* Reports that stop: the budget grows back to what was asked. Then a
 * LoadModel's budget changes in place, and what it cannot change is
 * refused. */
static void test_registry_restores(void **state)
{
	(void)state;
	struct registry g;
	registry_open(&g, 50, "100%ffn");
	struct model_entry *packed = g.watched;
	uint64_t asked = packed->mem_bytes, min = engine_minimum(packed);
	/* Shrunk, then back, whenever the quiet period ends: a budget
	 * changing when it ends is grown back once the change is over. */
	report_pressure(&g, 2);
	assert_int_equal(g.relief[0].shrunk, 1);
	assert_int_equal(g.n_seen, 3);
	assert_int_equal(g.seen[0], asked);
	assert_int_equal(g.seen[1], min + (asked - min) / 2);
	assert_int_equal(g.seen[2], asked);
	assert_int_equal(engine_budget(packed), asked);
	assert_int_equal(packed->squeeze, 0);

	struct models_budget b;
	char why[512];
	assert_true(models_parse_budget("min", &b));
	assert_int_equal(models_want_budget(g.models, packed, &b, why, sizeof(why)), MODELS_BUDGET_CHANGING);
	assert_true(models_budget_changing(packed));
	g.loads_left = 1;
	run_registry_until(&g, loads_done, "the budget change");
	assert_false(models_budget_changing(packed));
	assert_int_equal(packed->mem_bytes, min);
	assert_int_equal(packed->budget_bytes, min);
	assert_int_equal(models_want_budget(g.models, packed, &b, why, sizeof(why)), 0);

	/* A share of the FFN in place: the size it gives the model now, the
	 * one it was loaded with; then the minimum again. */
	const char *round_trip[] = { "100%ffn", "min" };
	const uint64_t want[] = { asked, min };
	for (size_t i = 0; i < 2; i++) {
		assert_true(models_parse_budget(round_trip[i], &b));
		assert_int_equal(models_want_budget(g.models, packed, &b, why, sizeof(why)), MODELS_BUDGET_CHANGING);
		g.loads_left = 1;
		run_registry_until(&g, loads_done, "the budget change");
		assert_int_equal(packed->budget_bytes, want[i]);
	}
	assert_true(models_parse_budget("none", &b));
	assert_int_equal(models_want_budget(g.models, packed, &b, why, sizeof(why)), -EBUSY);
	if (!strstr(why, "takes an unload"))
		fail_msg("none: %s", why);
	assert_true(models_parse_budget("4096", &b));
	assert_int_equal(models_want_budget(g.models, packed, &b, why, sizeof(why)), -ENOMEM);
	if (!strstr(why, "below its minimum"))
		fail_msg("%s", why);
	/* More than the daemon's budget holds, with the other model busy. */
	struct model_entry *stories = models_find(g.models, "stories260K");
	models_use(g.models, stories, false, 0);
	assert_true(models_parse_budget("2G", &b));
	assert_int_equal(models_want_budget(g.models, packed, &b, why, sizeof(why)), -ENOMEM);
	assert_int_equal(stories->state, MODEL_LOADED);
	models_release(g.models, stories);
	assert_int_equal(engine_budget(packed), min);
	registry_close(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fifo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_coalescing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_from_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_base64, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_seqpacket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_datagram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_decoding, setup, teardown),
		cmocka_unit_test_setup_teardown(test_psi, setup, teardown),
		cmocka_unit_test(test_registry_shrinks_then_evicts),
		cmocka_unit_test(test_registry_restores),
	};
	return cmocka_run_group_tests(tests, test_dir_setup, test_dir_teardown);
}
