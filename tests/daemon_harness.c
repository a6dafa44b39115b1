#include "daemon_harness.h"

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int try_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A copy of the running test's daemon, killed by daemon_cleanup() when the
 * test fails before it could stop it (the test's own struct is gone with
 * its stack frame by then). */
static struct daemon running;
static bool is_running;

int daemon_cleanup(void **state)
{
	(void)state;
	if (!is_running)
		return 0;
	is_running = false;
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "echo '--- pinferd log:' >&2; tail -n 30 '%s' >&2", running.log);
	if (system(cmd) != 0)
		fprintf(stderr, "(no daemon log)\n");
	if (running.pid > 0) {
		kill(running.pid, SIGKILL);
		waitpid(running.pid, NULL, 0);
	}
	return test_rmtree(running.dir);
}

void daemon_start(struct daemon *d, const char *const *flags)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/pinfer-test-daemon-XXXXXX");
	assert_non_null(mkdtemp(d->dir));
	char models[160], link_path[200];
	snprintf(models, sizeof(models), "%s/models", d->dir);
	assert_int_equal(mkdir(models, 0755), 0);
	snprintf(link_path, sizeof(link_path), "%s/stories260K.gguf", models);
	char target[4096];
	snprintf(target, sizeof(target), "%s", shared_path("models/stories260K/stories260K.gguf"));
	if (target[0] != '/') {
		char cwd[2048];
		assert_non_null(getcwd(cwd, sizeof(cwd)));
		char rel[4096];
		snprintf(rel, sizeof(rel), "%s/%s", cwd, target);
		snprintf(target, sizeof(target), "%s", rel);
	}
	assert_int_equal(symlink(target, link_path), 0);
	snprintf(d->socket, sizeof(d->socket), "%s/pinferd.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/pinferd.log", d->dir);

	const char *build = getenv("BUILD") ? getenv("BUILD") : "build/rel";
	char exe[256];
	snprintf(exe, sizeof(exe), "%s/pinferd", build);
	const char *argv[64] = { exe, "--socket", d->socket, "--models", models, "--log-level", "debug" };
	int argc = 7;
	for (int i = 0; flags && flags[i] && argc < 62; i++)
		argv[argc++] = flags[i];
	argv[argc] = NULL;
	d->pid = fork();
	assert_true(d->pid >= 0);
	if (d->pid == 0) {
		int log = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(log, 2);
		execv(exe, (char *const *)argv);
		_exit(127);
	}
	running = *d;
	is_running = true;
	for (int i = 0; i < 500; i++) {
		int fd = try_connect(d->socket);
		if (fd >= 0) {
			close(fd);
			return;
		}
		int status;
		if (waitpid(d->pid, &status, WNOHANG) == d->pid)
			fail_msg("pinferd exited at startup (status %d); see %s", status, d->log);
		sleep_ms(10);
	}
	fail_msg("pinferd did not start listening on %s", d->socket);
}

void daemon_add_model(const struct daemon *d, const char *name)
{
	char from[256], to[256];
	snprintf(from, sizeof(from), "%s/models/stories260K.gguf", d->dir);
	snprintf(to, sizeof(to), "%s/models/%s.gguf", d->dir, name);
	char target[4096];
	ssize_t n = readlink(from, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = 0;
	assert_int_equal(symlink(target, to), 0);
}

void daemon_stop(struct daemon *d)
{
	int status = 0;
	kill(d->pid, SIGTERM);
	for (int i = 0; i < 1000 && waitpid(d->pid, &status, WNOHANG) == 0; i++)
		sleep_ms(10);
	is_running = false;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char cmd[256];
		snprintf(cmd, sizeof(cmd), "tail -n 40 %s >&2", d->log);
		if (system(cmd) != 0)
			fprintf(stderr, "(no log)\n");
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		fail_msg("pinferd did not exit cleanly (status 0x%x)", status);
	}
	assert_int_equal(test_rmtree(d->dir), 0);
}

void client_connect_raw(struct client *c, const struct daemon *d)
{
	c->fd = try_connect(d->socket);
	assert_true(c->fd >= 0);
	/* Only a net under a daemon that hangs: a sanitizer build on a busy
	 * machine takes seconds over a long prompt before its first frame. */
	struct timeval tv = { 60, 0 };
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	frame_in_init(&c->in, FRAME_MAX_DEFAULT);
	proto_arena_init(&c->arena, 16u << 20);
}

void client_connect(struct client *c, const struct daemon *d)
{
	client_connect_raw(c, d);
	Pinfer__Hello h = PINFER__HELLO__INIT;
	h.protocol_major = PROTO_MAJOR;
	h.protocol_minor = PROTO_MINOR;
	h.client_name = "test";
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_HELLO;
	m.hello = &h;
	client_send(c, &m);
	Pinfer__ServerMessage *r = client_recv(c);
	assert_non_null(r);
	assert_int_equal(r->msg_case, PINFER__SERVER_MESSAGE__MSG_HELLO_REPLY);
}

void client_close(struct client *c)
{
	close(c->fd);
	frame_in_free(&c->in);
	proto_arena_destroy(&c->arena);
}

void client_send(struct client *c, const Pinfer__ClientMessage *m)
{
	struct pf_err err;
	if (frame_write_all(c->fd, &m->base, FRAME_MAX_DEFAULT, &err))
		fail_msg("send: %s", err.msg);
}

void client_send_bytes(struct client *c, const void *buf, size_t n)
{
	assert_int_equal(send(c->fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

Pinfer__ServerMessage *client_recv(struct client *c)
{
	const uint8_t *frame;
	size_t len;
	struct pf_err err;
	int r = frame_read_one(c->fd, &c->in, &frame, &len, &err);
	if (r == 0 || r == -ECONNRESET)
		return NULL;
	if (r < 0)
		fail_msg("receive: %s", err.msg);
	proto_arena_reset(&c->arena);
	Pinfer__ServerMessage *m;
	if (proto_decode_server(&c->arena, frame, len, &m, &err))
		fail_msg("decode: %s", err.msg);
	return m;
}

void client_generate(struct client *c, uint64_t id, const struct gen_opts *o)
{
	Pinfer__Sampling s = PINFER__SAMPLING__INIT;
	if (o->has_temp) {
		s.opt_temperature_case = PINFER__SAMPLING__OPT_TEMPERATURE_TEMPERATURE;
		s.temperature = o->temp;
	}
	if (o->has_seed) {
		s.opt_seed_case = PINFER__SAMPLING__OPT_SEED_SEED;
		s.seed = o->seed;
	}
	Pinfer__Generate g = PINFER__GENERATE__INIT;
	g.request_id = id;
	g.model = (char *)(o->model ? o->model : "stories260K");
	g.input_case = PINFER__GENERATE__INPUT_PROMPT;
	g.prompt = (char *)(o->prompt ? o->prompt : "");
	g.sampling = &s;
	g.raw = o->raw;
	if (o->n_predict >= 0) {
		g.opt_n_predict_case = PINFER__GENERATE__OPT_N_PREDICT_N_PREDICT;
		g.n_predict = o->n_predict;
	}
	g.n_stop = o->n_stops;
	g.stop = (char **)o->stops;
	g.return_token_ids = o->ids;
	if (o->has_keep_alive) {
		g.opt_keep_alive_ms_case = PINFER__GENERATE__OPT_KEEP_ALIVE_MS_KEEP_ALIVE_MS;
		g.keep_alive_ms = o->keep_alive_ms;
	}
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_GENERATE;
	m.generate = &g;
	client_send(c, &m);
}

bool client_step(struct client *c, uint64_t id, struct gen_result *out)
{
	Pinfer__ServerMessage *m = client_recv(c);
	if (!m)
		fail_msg("the daemon closed the connection during request %llu", (unsigned long long)id);
	switch (m->msg_case) {
	case PINFER__SERVER_MESSAGE__MSG_TOKEN:
		if (m->token->request_id != id)
			return false;
		out->n_token_frames++;
		size_t n = strlen(m->token->text);
		assert_true(out->text_len + n < sizeof(out->text));
		memcpy(out->text + out->text_len, m->token->text, n);
		out->text_len += n;
		out->text[out->text_len] = 0;
		for (size_t i = 0; i < m->token->n_ids && out->n_ids < 4096; i++)
			out->ids[out->n_ids++] = m->token->ids[i];
		return false;
	case PINFER__SERVER_MESSAGE__MSG_DONE:
		if (m->done->request_id != id)
			return false;
		out->reason = m->done->reason;
		out->prompt_tokens = m->done->prompt_tokens;
		out->cached_tokens = m->done->cached_prompt_tokens;
		out->generated_tokens = m->done->generated_tokens;
		snprintf(out->stop, sizeof(out->stop), "%s", m->done->stop);
		return true;
	case PINFER__SERVER_MESSAGE__MSG_ERROR:
		if (m->error->request_id != id && m->error->request_id != 0)
			return false;
		out->error = m->error->code;
		return true;
	default:
		return false;
	}
}

void client_collect(struct client *c, uint64_t id, struct gen_result *out)
{
	memset(out, 0, sizeof(*out));
	while (!client_step(c, id, out))
		;
}
