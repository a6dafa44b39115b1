/* pinferd's defences against its clients, end to end on a real daemon:
 * who may reach the socket and what is logged about them, model names
 * that point outside the models directory, the prompt and n_predict caps,
 * and the memory a connection can make the daemon hold (huge frame
 * headers, pipelined requests, payloads waiting for a model's load, a
 * client that does not read). The D-Bus side of the model names is in
 * tests/test_security.sh. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon_harness.h"

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static double rss_mib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	double kib = -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kib = strtod(line + 6, NULL);
	fclose(f);
	assert_true(kib > 0);
	return kib / 1024.0;
}

/* Waits up to 10 s for needle in the daemon's log. */
static bool log_has(const struct daemon *d, const char *needle)
{
	for (int i = 0; i < 1000; i++) {
		char *text = read_file(d->log, NULL);
		bool found = strstr(text, needle) != NULL;
		free(text);
		if (found)
			return true;
		sleep_ms(10);
	}
	return false;
}

static Pinfer__ServerMessage *call(struct client *c, Pinfer__ClientMessage *m)
{
	client_send(c, m);
	Pinfer__ServerMessage *r = client_recv(c);
	assert_non_null(r);
	return r;
}

static Pinfer__StatusReply *status(struct client *c)
{
	Pinfer__Status st = PINFER__STATUS__INIT;
	st.request_id = 900;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_STATUS;
	m.status = &st;
	Pinfer__ServerMessage *r = call(c, &m);
	assert_int_equal(r->msg_case, PINFER__SERVER_MESSAGE__MSG_STATUS_REPLY);
	return r->status_reply;
}

/* 1. The socket file is 0660, owned by the daemon's uid and gid; a
 * connection is logged with the peer's pid, uid and gid from SO_PEERCRED;
 * another user cannot connect at all. */
static void test_socket_and_peer(void **state)
{
	(void)state;
	struct daemon d;
	daemon_start(&d, NULL);
	struct stat st;
	assert_int_equal(lstat(d.socket, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal(st.st_uid, geteuid());
	assert_int_equal(st.st_gid, getegid());

	struct client c;
	client_connect(&c, &d);
	char line[128];
	snprintf(line, sizeof(line), "from pid %d, uid %u, gid %u", (int)getpid(), (unsigned)geteuid(),
		 (unsigned)getegid());
	if (!log_has(&d, line))
		fail_msg("the log does not name the peer: no '%s' in %s", line, d.log);
	client_close(&c);

	/* Only root can become another user; as anyone else the mode above
	 * is what keeps others out. */
	if (geteuid() == 0) {
		pid_t child = fork();
		assert_true(child >= 0);
		if (child == 0) {
			if (setgid(65534) || setuid(65534))
				_exit(2);
			int fd = socket(AF_UNIX, SOCK_STREAM, 0);
			struct sockaddr_un sa = { .sun_family = AF_UNIX };
			snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d.socket);
			_exit(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == EACCES ? 0 : 1);
		}
		int wst;
		assert_int_equal(waitpid(child, &wst, 0), child);
		assert_true(WIFEXITED(wst));
		if (WEXITSTATUS(wst) != 0)
			fail_msg("%s", WEXITSTATUS(wst) == 1 ? "user nobody could connect to the socket"
							      : "the test could not become user nobody");
	}
	daemon_stop(&d);
}

/* Sends one request about model name and returns the error code it got
 * (0 when it was accepted). */
static Pinfer__ErrorCode try_name(struct client *c, int kind, const char *name)
{
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	Pinfer__Generate g = PINFER__GENERATE__INIT;
	Pinfer__LoadModel lm = PINFER__LOAD_MODEL__INIT;
	Pinfer__Tokenize tk = PINFER__TOKENIZE__INIT;
	switch (kind) {
	case 0:
		g.request_id = 1;
		g.model = (char *)name;
		g.input_case = PINFER__GENERATE__INPUT_PROMPT;
		g.prompt = "Once";
		g.opt_n_predict_case = PINFER__GENERATE__OPT_N_PREDICT_N_PREDICT;
		g.n_predict = 1;
		m.msg_case = PINFER__CLIENT_MESSAGE__MSG_GENERATE;
		m.generate = &g;
		break;
	case 1:
		lm.request_id = 1;
		lm.model = (char *)name;
		m.msg_case = PINFER__CLIENT_MESSAGE__MSG_LOAD_MODEL;
		m.load_model = &lm;
		break;
	default:
		tk.request_id = 1;
		tk.model = (char *)name;
		tk.text = "Once";
		m.msg_case = PINFER__CLIENT_MESSAGE__MSG_TOKENIZE;
		m.tokenize = &tk;
		break;
	}
	client_send(c, &m);
	for (;;) {
		Pinfer__ServerMessage *r = client_recv(c);
		assert_non_null(r);
		if (r->msg_case == PINFER__SERVER_MESSAGE__MSG_ERROR)
			return r->error->code;
		if (r->msg_case != PINFER__SERVER_MESSAGE__MSG_TOKEN)
			return 0;
	}
}

static void make_link(const char *target, const char *dir, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(symlink(target, path), 0);
}

/* 2. A client names a model; it never names a path. Names that would
 * reach outside the models directory (.., absolute paths, a subdirectory,
 * a symlinked directory pointing outside) and entries that are not
 * regular model files (a device, a dangling link) are refused by Generate,
 * LoadModel and Tokenize alike, and nothing is loaded. Symlinked model
 * files themselves are the administrator's choice and are served (every
 * test links stories260K in). */
static void test_model_names(void **state)
{
	(void)state;
	struct daemon d;
	daemon_start(&d, NULL);
	char models[128], model_file[4096], sub[160];
	snprintf(models, sizeof(models), "%s/models", d.dir);
	snprintf(sub, sizeof(sub), "%s/sub", models);
	char link_path[256];
	snprintf(link_path, sizeof(link_path), "%s/stories260K.gguf", models);
	ssize_t n = readlink(link_path, model_file, sizeof(model_file) - 1);
	assert_true(n > 0);
	model_file[n] = 0;
	make_link(model_file, d.dir, "outside.gguf");
	assert_int_equal(mkdir(sub, 0755), 0);
	make_link(model_file, sub, "inner.gguf");
	make_link(d.dir, models, "escape");
	make_link("/dev/zero", models, "zero.gguf");
	make_link("/nonexistent/model.gguf", models, "dangling.gguf");

	char abs_stem[256], abs_file[256];
	snprintf(abs_stem, sizeof(abs_stem), "%s/outside", d.dir);
	snprintf(abs_file, sizeof(abs_file), "%s/outside.gguf", d.dir);
	const char *names[] = { "../outside", "../outside.gguf", abs_stem, abs_file, model_file,
				"sub/inner", "escape/outside", "escape/models/stories260K", "zero", "dangling",
				"./stories260K", "stories260K/../stories260K", "stories260K.gguf", "", "escape",
				"sub", "..", "." };
	struct client c;
	client_connect(&c, &d);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		for (int kind = 0; kind < 3; kind++) {
			Pinfer__ErrorCode code = try_name(&c, kind, names[i]);
			if (code != PINFER__ERROR_CODE__ERR_NOT_FOUND && code != PINFER__ERROR_CODE__ERR_BAD_REQUEST)
				fail_msg("request %d for model '%s' got %d, not a refusal", kind, names[i], code);
		}
	assert_int_equal(status(&c)->models_loaded, 0);

	Pinfer__ListModels lm = PINFER__LIST_MODELS__INIT;
	lm.request_id = 2;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_LIST_MODELS;
	m.list_models = &lm;
	Pinfer__ServerMessage *r = call(&c, &m);
	assert_int_equal(r->msg_case, PINFER__SERVER_MESSAGE__MSG_LIST_MODELS_REPLY);
	assert_int_equal(r->list_models_reply->n_models, 1);
	assert_string_equal(r->list_models_reply->models[0]->name, "stories260K");
	/* The real one still works. */
	assert_int_equal(try_name(&c, 0, "stories260K"), 0);
	client_close(&c);
	daemon_stop(&d);
}

/* The error a generation ended with: an Error frame when it was refused
 * up front, the Done's error when it was refused once tokenized (the
 * prompt's length is known only then); 0 when it ran. */
static Pinfer__ErrorCode gen_error(struct client *c, uint64_t id, uint32_t *generated)
{
	for (;;) {
		Pinfer__ServerMessage *m = client_recv(c);
		assert_non_null(m);
		if (m->msg_case == PINFER__SERVER_MESSAGE__MSG_ERROR && m->error->request_id == id)
			return m->error->code;
		if (m->msg_case == PINFER__SERVER_MESSAGE__MSG_DONE && m->done->request_id == id) {
			*generated = m->done->generated_tokens;
			return m->done->error ? m->done->error->code : 0;
		}
	}
}

/* 3. Prompts over max-prompt-tokens and n_predict over max-predict are
 * refused; an unset or negative n_predict stops at the ceiling. */
static void test_prompt_and_predict_caps(void **state)
{
	(void)state;
	const char *flags[] = { "--max-prompt-tokens", "16", "--max-predict", "8", NULL };
	struct daemon d;
	daemon_start(&d, flags);
	struct client c;
	client_connect(&c, &d);
	uint32_t generated = 0;
	struct gen_opts o = { .prompt = "Lily and Tom went to the park to play with the big red ball and the "
					"little dog that lived next door",
			      .n_predict = 4 };
	client_generate(&c, 1, &o);
	assert_int_equal(gen_error(&c, 1, &generated), PINFER__ERROR_CODE__ERR_LIMIT_EXCEEDED);
	/* As long as a frame allows: refused just the same. */
	static char huge[60000];
	memset(huge, 'a', sizeof(huge) - 1);
	o.prompt = huge;
	client_generate(&c, 2, &o);
	assert_int_equal(gen_error(&c, 2, &generated), PINFER__ERROR_CODE__ERR_LIMIT_EXCEEDED);

	o.prompt = "Once upon a time";
	o.n_predict = 9;
	client_generate(&c, 3, &o);
	assert_int_equal(gen_error(&c, 3, &generated), PINFER__ERROR_CODE__ERR_LIMIT_EXCEEDED);
	/* Unset (the harness's -1), then a negative value sent as such: both
	 * stop at the ceiling. Greedy, so that no early end of story hides it. */
	struct gen_opts u = { .prompt = "Once upon a time", .has_temp = true, .temp = 0.0f, .n_predict = -1 };
	client_generate(&c, 4, &u);
	assert_int_equal(gen_error(&c, 4, &generated), 0);
	assert_int_equal(generated, 8);
	Pinfer__Sampling greedy = PINFER__SAMPLING__INIT;
	greedy.opt_temperature_case = PINFER__SAMPLING__OPT_TEMPERATURE_TEMPERATURE;
	greedy.temperature = 0.0f;
	Pinfer__Generate g = PINFER__GENERATE__INIT;
	g.request_id = 5;
	g.model = "stories260K";
	g.input_case = PINFER__GENERATE__INPUT_PROMPT;
	g.prompt = "Once upon a time";
	g.sampling = &greedy;
	g.opt_n_predict_case = PINFER__GENERATE__OPT_N_PREDICT_N_PREDICT;
	g.n_predict = -1000;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_GENERATE;
	m.generate = &g;
	client_send(&c, &m);
	assert_int_equal(gen_error(&c, 5, &generated), 0);
	assert_int_equal(generated, 8);
	client_close(&c);
	daemon_stop(&d);
}

/* Sends until the daemon stops taking bytes or hangs up; returns how many
 * it took. */
static size_t flood(int fd, const uint8_t *buf, size_t n, size_t repeat)
{
	size_t sent = 0;
	for (size_t i = 0; i < repeat; i++) {
		size_t off = 0;
		while (off < n) {
			ssize_t w = send(fd, buf + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0) {
				off += (size_t)w;
				continue;
			}
			if (w < 0 && errno == EAGAIN) {
				struct pollfd p = { .fd = fd, .events = POLLOUT };
				if (poll(&p, 1, 2000) > 0)
					continue;
			}
			return sent + off;
		}
		sent += n;
	}
	return sent;
}

/* Reads until the daemon closes; false if it does not within 15 s. */
static bool drained_to_eof(int fd)
{
	char buf[65536];
	for (int i = 0; i < 1500; i++) {
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return true;
		if (r < 0 && errno != EAGAIN)
			return false;
		if (r < 0)
			sleep_ms(10);
	}
	return false;
}

/* 4. What one connection may make the daemon hold is bounded: a frame
 * header announcing gigabytes is refused before any buffer grows; frames
 * of the largest allowed size held half-sent on every connection allowed
 * cost about max_frame each; connections past the limit are closed; a
 * flood of pipelined Pings whose Pongs go unread ends with the connection
 * dropped, and requests past max-requests are refused. */
static void test_connection_memory(void **state)
{
	(void)state;
	const char *flags[] = { "--max-frame", "64K", "--max-connections", "8", "--max-queued-output", "16K",
				"--max-requests", "4", "--slots", "4", NULL };
	struct daemon d;
	daemon_start(&d, flags);
	struct client watcher;
	client_connect(&watcher, &d);
	assert_int_equal(status(&watcher)->connections, 1);
	double before = rss_mib(d.pid);

	const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xf0, 0x0a, 0x02 };
	for (int i = 0; i < 4; i++) {
		struct client c;
		client_connect(&c, &d);
		client_send_bytes(&c, huge, sizeof(huge));
		Pinfer__ServerMessage *m = client_recv(&c);
		assert_non_null(m);
		assert_int_equal(m->error->code, PINFER__ERROR_CODE__ERR_FRAME_TOO_LARGE);
		assert_null(client_recv(&c));
		client_close(&c);
	}

	/* 7 more connections (8 with the watcher), each stuck one byte short
	 * of a 64 KiB frame. */
	static uint8_t body[4 + 65536];
	body[0] = 0;
	body[1] = 1;
	body[2] = 0;
	body[3] = 0;
	struct client held[7];
	for (int i = 0; i < 7; i++) {
		client_connect(&held[i], &d);
		assert_int_equal(flood(held[i].fd, body, sizeof(body) - 1, 1), sizeof(body) - 1);
	}
	/* The ninth is over the limit: closed without a word. */
	struct client extra;
	client_connect_raw(&extra, &d);
	assert_null(client_recv(&extra));
	client_close(&extra);
	assert_true(log_has(&d, "too many connections"));
	double held_rss = rss_mib(d.pid);
	if (held_rss - before > 8)
		fail_msg("7 half-sent 64 KiB frames grew pinferd from %.1f to %.1f MiB", before, held_rss);
	for (int i = 0; i < 7; i++)
		client_close(&held[i]);
	/* The hang-ups are seen before the next connection is let in. */
	uint32_t open_conns = 8;
	for (int i = 0; i < 1000 && (open_conns = status(&watcher)->connections) > 1; i++)
		sleep_ms(10);
	assert_int_equal(open_conns, 1);

	/* 100000 Pings, 800 KB of requests whose 16 KiB of unread replies
	 * are all the daemon will queue. */
	struct client p;
	client_connect(&p, &d);
	const uint8_t ping[] = { 0, 0, 0, 4, 0x42, 0x02, 0x08, 0x01 };
	static uint8_t pings[sizeof(ping) * 1000];
	for (size_t i = 0; i < 1000; i++)
		memcpy(pings + i * sizeof(ping), ping, sizeof(ping));
	size_t sent = flood(p.fd, pings, sizeof(pings), 100);
	assert_true(log_has(&d, "bytes of output unread"));
	assert_true(drained_to_eof(p.fd));
	client_close(&p);
	double flood_rss = rss_mib(d.pid);
	if (flood_rss - before > 8)
		fail_msg("%zu bytes of unread Pings grew pinferd from %.1f to %.1f MiB", sent, before, flood_rss);

	/* Ten pipelined Generates in one write: four are taken, six refused. */
	struct client g;
	client_connect(&g, &d);
	uint8_t batch[4096];
	size_t len = 0;
	for (uint64_t id = 1; id <= 10; id++) {
		Pinfer__Generate gen = PINFER__GENERATE__INIT;
		gen.request_id = id;
		gen.model = "stories260K";
		gen.input_case = PINFER__GENERATE__INPUT_PROMPT;
		gen.prompt = "Once upon a time";
		gen.opt_n_predict_case = PINFER__GENERATE__OPT_N_PREDICT_N_PREDICT;
		gen.n_predict = 16;
		Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
		m.msg_case = PINFER__CLIENT_MESSAGE__MSG_GENERATE;
		m.generate = &gen;
		size_t n = protobuf_c_message_get_packed_size(&m.base);
		batch[len] = 0;
		batch[len + 1] = 0;
		batch[len + 2] = (uint8_t)(n >> 8);
		batch[len + 3] = (uint8_t)n;
		protobuf_c_message_pack(&m.base, batch + len + 4);
		len += 4 + n;
	}
	client_send_bytes(&g, batch, len);
	int done = 0, refused = 0;
	while (done + refused < 10) {
		Pinfer__ServerMessage *m = client_recv(&g);
		assert_non_null(m);
		if (m->msg_case == PINFER__SERVER_MESSAGE__MSG_DONE) {
			done++;
		} else if (m->msg_case == PINFER__SERVER_MESSAGE__MSG_ERROR) {
			assert_int_equal(m->error->code, PINFER__ERROR_CODE__ERR_LIMIT_EXCEEDED);
			refused++;
		}
	}
	assert_int_equal(done, 4);
	assert_int_equal(refused, 6);
	client_close(&g);
	client_close(&watcher);
	daemon_stop(&d);
}

/* 5. Requests waiting for a model's load keep their payload; together
 * they may hold 4 max_frames per connection (CONN_HELD_FACTOR), not
 * max-requests times that: of 16 Detokenize requests of a million ids
 * each (4 MB once decoded), one waits and 15 are refused. The load hangs
 * on a FIFO that replaced the model file after it was listed. */
static void test_held_payloads(void **state)
{
	(void)state;
	struct daemon d;
	daemon_start(&d, NULL);
	char slow[160];
	snprintf(slow, sizeof(slow), "%s/models/slow.gguf", d.dir);
	size_t len;
	char *bytes = read_file(shared_path("models/stories260K/stories260K.gguf"), &len);
	FILE *f = fopen(slow, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(bytes, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	free(bytes);
	struct client c;
	client_connect(&c, &d);
	Pinfer__ListModels lm = PINFER__LIST_MODELS__INIT;
	lm.request_id = 100;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_LIST_MODELS;
	m.list_models = &lm;
	assert_int_equal(call(&c, &m)->list_models_reply->n_models, 2);
	assert_int_equal(unlink(slow), 0);
	assert_int_equal(mkfifo(slow, 0644), 0);
	double before = rss_mib(d.pid);

	enum { N_IDS = 1000000 };
	int32_t *ids = malloc(N_IDS * sizeof(*ids));
	assert_non_null(ids);
	for (int i = 0; i < N_IDS; i++)
		ids[i] = 1;
	for (uint64_t id = 1; id <= 16; id++) {
		Pinfer__Detokenize dt = PINFER__DETOKENIZE__INIT;
		dt.request_id = id;
		dt.model = "slow";
		dt.n_ids = N_IDS;
		dt.ids = ids;
		m = (Pinfer__ClientMessage)PINFER__CLIENT_MESSAGE__INIT;
		m.msg_case = PINFER__CLIENT_MESSAGE__MSG_DETOKENIZE;
		m.detokenize = &dt;
		client_send(&c, &m);
	}
	free(ids);
	int refused = 0;
	for (int i = 0; i < 15; i++) {
		Pinfer__ServerMessage *r = client_recv(&c);
		assert_non_null(r);
		assert_int_equal(r->msg_case, PINFER__SERVER_MESSAGE__MSG_ERROR);
		assert_int_equal(r->error->code, PINFER__ERROR_CODE__ERR_LIMIT_EXCEEDED);
		assert_true(r->error->request_id >= 2);
		refused++;
	}
	assert_int_equal(refused, 15);
	double held = rss_mib(d.pid);
	if (held - before > 24)
		fail_msg("16 waiting Detokenize requests grew pinferd from %.1f to %.1f MiB", before, held);
	/* A writer lets the load go on, to fail: the FIFO is no model file. */
	int fd = open(slow, O_RDWR);
	assert_true(fd >= 0);
	close(fd);
	Pinfer__ServerMessage *r = client_recv(&c);
	assert_non_null(r);
	assert_int_equal(r->msg_case, PINFER__SERVER_MESSAGE__MSG_ERROR);
	assert_int_equal(r->error->request_id, 1);
	assert_int_equal(r->error->code, PINFER__ERROR_CODE__ERR_LOAD_FAILED);
	client_close(&c);
	assert_int_equal(unlink(slow), 0);
	daemon_stop(&d);
}

/* 6. A client that sends generations and never reads: once its unread
 * output passes max-queued-output its requests are cancelled, the daemon
 * drops it, and its memory stays bounded; the others are served. */
static void test_slow_reader(void **state)
{
	(void)state;
	const char *flags[] = { "--max-queued-output", "16K", "--ctx-size", "512", NULL };
	struct daemon d;
	daemon_start(&d, flags);
	struct client watcher, slow;
	client_connect(&watcher, &d);
	client_connect(&slow, &d);
	struct gen_opts warm = { .n_predict = 4 };
	struct gen_result r;
	client_generate(&watcher, 1, &warm);
	client_collect(&watcher, 1, &r);
	double before = rss_mib(d.pid);

	struct gen_opts o = { .prompt = "Once upon a time", .has_temp = true, .temp = 1.0f, .n_predict = -1,
			      .ids = true };
	for (uint64_t id = 1; id <= 16; id++) {
		o.has_seed = true;
		o.seed = id;
		client_generate(&slow, id, &o);
	}
	if (!log_has(&d, "bytes of output unread; cancelling its requests"))
		fail_msg("a client that does not read was not cancelled (see %s)", d.log);
	uint32_t busy = 1;
	for (int i = 0; i < 1000 && busy; i++) {
		Pinfer__StatusReply *s = status(&watcher);
		busy = s->requests_active + s->requests_queued;
		if (busy)
			sleep_ms(10);
	}
	assert_int_equal(busy, 0);
	double after = rss_mib(d.pid);
	if (after - before > 8)
		fail_msg("a slow reader grew pinferd from %.1f to %.1f MiB", before, after);
	assert_true(drained_to_eof(slow.fd));
	client_close(&slow);
	client_generate(&watcher, 2, &warm);
	client_collect(&watcher, 2, &r);
	assert_int_equal(r.error, 0);
	client_close(&watcher);
	daemon_stop(&d);
}

int main(void)
{
	/* The daemons under ASan: freed memory waits in a quarantine of up to
	 * 256 MiB, which would read as growth in the RSS checks; a small one
	 * still catches use after free. */
	const char *asan = getenv("ASAN_OPTIONS");
	char opts[1024];
	snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=8", asan ? asan : "", asan && *asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_socket_and_peer, daemon_cleanup),
		cmocka_unit_test_teardown(test_model_names, daemon_cleanup),
		cmocka_unit_test_teardown(test_prompt_and_predict_caps, daemon_cleanup),
		cmocka_unit_test_teardown(test_connection_memory, daemon_cleanup),
		cmocka_unit_test_teardown(test_held_payloads, daemon_cleanup),
		cmocka_unit_test_teardown(test_slow_reader, daemon_cleanup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
