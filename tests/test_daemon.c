/* pinferd end to end: a real daemon on a temporary socket, real clients. */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon_harness.h"

static int32_t ref_ids[200];
static char ref_text[8192];

static void load_refs(void)
{
	char *text = read_file(shared_path("models/stories260K/ref/greedy_n200.tokens"), NULL);
	int n = 0;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == '#')
			continue;
		for (char *tok = strtok(line, " "); tok && n < 200; tok = strtok(NULL, " "))
			ref_ids[n++] = atoi(tok);
		break;
	}
	free(text);
	assert_int_equal(n, 200);
	size_t len;
	text = read_file(shared_path("models/stories260K/ref/greedy_n200.stdout"), &len);
	assert_true(len < sizeof(ref_text));
	memcpy(ref_text, text, len + 1);
	/* the reference ends its output with a newline of its own */
	if (len && ref_text[len - 1] == '\n')
		ref_text[len - 1] = 0;
	free(text);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static const struct gen_opts greedy = { .has_temp = true, .temp = 0.0f, .n_predict = 200, .ids = true };

/* 1. Greedy from BOS through the daemon is llama2.c's reference, ids and text. */
static void test_greedy_reference(void **state)
{
	(void)state;
	struct daemon d;
	daemon_start(&d, NULL);
	struct client c;
	client_connect(&c, &d);
	struct gen_result r;
	client_generate(&c, 1, &greedy);
	client_collect(&c, 1, &r);
	assert_int_equal(r.reason, PINFER__DONE_REASON__DONE_LENGTH);
	assert_int_equal(r.n_ids, 200);
	assert_memory_equal(r.ids, ref_ids, sizeof(ref_ids));
	assert_string_equal(r.text, ref_text);
	assert_int_equal(r.prompt_tokens, 1);
	assert_int_equal(r.generated_tokens, 200);
	client_close(&c);
	daemon_stop(&d);
}

/* 2. Eight generations at once (4 slots + 4 queued) each produce what they
 * produce alone; a ninth gets BUSY; the running ones interleave. */
static void test_concurrent_clients(void **state)
{
	(void)state;
	/* Prompts of ~500 tokens taken 2 per step keep all eight in the
	 * daemon long after the ninth arrives (stories end early with EOS). */
	const char *flags[] = { "--slots", "4", "--queue", "4", "--batch", "2", NULL };
	struct daemon d;
	daemon_start(&d, flags);
	enum { N = 8 };
	static struct gen_result alone[N], together[N];
	/* Each prompt starts differently, so no slot's cache can shortcut
	 * another's prompt. */
	static char prompts[N + 1][2400];
	for (int i = 0; i <= N; i++) {
		snprintf(prompts[i], sizeof(prompts[i]), "%s ", (const char *[]){ "Tom", "Lily", "Sue", "Ben",
			 "Max", "Mia", "Sam", "Amy", "Tim" }[i]);
		while (strlen(prompts[i]) < sizeof(prompts[i]) - 64)
			strcat(prompts[i], "saw a big red ball in the park. ");
	}
	struct gen_opts o = { .has_temp = true, .temp = 1.0f, .has_seed = true, .n_predict = 300, .ids = true };
	struct client c[N + 1];
	client_connect(&c[0], &d);
	for (int i = 0; i < N; i++) {
		o.seed = 1000 + (uint64_t)i;
		o.prompt = prompts[i];
		client_generate(&c[0], (uint64_t)i + 1, &o);
		client_collect(&c[0], (uint64_t)i + 1, &alone[i]);
		assert_int_equal(alone[i].error, 0);
	}
	client_close(&c[0]);

	for (int i = 0; i <= N; i++)
		client_connect(&c[i], &d);
	for (int i = 0; i < N; i++) {
		o.seed = 1000 + (uint64_t)i;
		o.prompt = prompts[i];
		client_generate(&c[i], 1, &o);
		memset(&together[i], 0, sizeof(together[i]));
	}
	/* The ninth must be refused while the first eight are in. Give the
	 * daemon a moment to have read all eight. */
	sleep_ms(50);
	o.seed = 99;
	o.prompt = prompts[N];
	struct gen_result busy;
	client_generate(&c[N], 1, &o);
	client_collect(&c[N], 1, &busy);
	assert_int_equal(busy.error, PINFER__ERROR_CODE__ERR_BUSY);

	/* Read the first four in turns: each gets tokens before any of them
	 * is done, so none starves the others. */
	bool done[N] = { false };
	int first_done = -1;
	for (int round = 0; first_done < 0; round++)
		for (int i = 0; i < 4; i++)
			if (!done[i] && client_step(&c[i], 1, &together[i])) {
				done[i] = true;
				if (first_done < 0)
					first_done = i;
			}
	for (int i = 0; i < 4; i++)
		assert_true(together[i].n_token_frames > 10);
	for (int i = 0; i < N; i++)
		while (!done[i])
			done[i] = client_step(&c[i], 1, &together[i]);
	for (int i = 0; i < N; i++) {
		assert_int_equal(together[i].error, 0);
		assert_int_equal(together[i].n_ids, alone[i].n_ids);
		assert_memory_equal(together[i].ids, alone[i].ids, sizeof(int32_t) * (size_t)alone[i].n_ids);
		assert_string_equal(together[i].text, alone[i].text);
	}
	for (int i = 0; i <= N; i++)
		client_close(&c[i]);
	daemon_stop(&d);
}

static uint32_t active_requests(struct client *c)
{
	Pinfer__Status st = PINFER__STATUS__INIT;
	st.request_id = 77;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_STATUS;
	m.status = &st;
	client_send(c, &m);
	Pinfer__ServerMessage *r = client_recv(c);
	assert_non_null(r);
	assert_int_equal(r->msg_case, PINFER__SERVER_MESSAGE__MSG_STATUS_REPLY);
	return r->status_reply->requests_active + r->status_reply->requests_queued;
}

/* 3. A client killed mid-generation and a Cancel in the middle of a long
 * prompt both free their slot at once; another stream goes on. */
static void test_cancel_and_hangup(void **state)
{
	(void)state;
	const char *flags[] = { "--slots", "2", "--queue", "0", "--batch", "4", NULL };
	struct daemon d;
	daemon_start(&d, flags);
	struct client watcher, other;
	client_connect(&watcher, &d);
	client_connect(&other, &d);
	struct gen_opts long_gen = { .has_temp = true, .temp = 1.0f, .has_seed = true, .seed = 5,
				     .n_predict = 1500, .prompt = "Once upon a time" };
	client_generate(&other, 1, &long_gen);

	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct client k;
		client_connect(&k, &d);
		client_generate(&k, 1, &long_gen);
		struct gen_result r = { 0 };
		while (r.n_token_frames < 5)
			client_step(&k, 1, &r);
		pause();  /* killed here, mid-generation */
		_exit(0);
	}
	/* Wait until it has been streaming, then kill it. */
	for (int i = 0; i < 200 && active_requests(&watcher) < 2; i++)
		sleep_ms(5);
	sleep_ms(20);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	uint32_t active = 2;
	for (int i = 0; i < 200 && (active = active_requests(&watcher)) > 1; i++)
		sleep_ms(5);
	assert_int_equal(active, 1);

	/* Cancel during prompt processing: 4 tokens per step, hundreds of
	 * steps of prompt. */
	static char prompt[4000];  /* about 1000 tokens: within the context */
	prompt[0] = 0;
	while (strlen(prompt) < sizeof(prompt) - 64)
		strcat(prompt, "Lily and Tom went to the park to play. ");
	struct client k;
	client_connect(&k, &d);
	struct gen_opts big = { .prompt = prompt, .n_predict = 10 };
	client_generate(&k, 9, &big);
	Pinfer__Cancel cancel = PINFER__CANCEL__INIT;
	cancel.request_id = 9;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_CANCEL;
	m.cancel = &cancel;
	sleep_ms(20);
	client_send(&k, &m);
	struct gen_result r;
	client_collect(&k, 9, &r);
	assert_int_equal(r.reason, PINFER__DONE_REASON__DONE_CANCELLED);
	assert_int_equal(r.generated_tokens, 0);
	assert_int_equal(active_requests(&watcher), 1);

	/* The survivor finishes its stream normally. */
	struct gen_result rest;
	client_collect(&other, 1, &rest);
	assert_true(rest.reason == PINFER__DONE_REASON__DONE_LENGTH ||
		    rest.reason == PINFER__DONE_REASON__DONE_EOS);
	client_close(&k);
	client_close(&watcher);
	client_close(&other);
	daemon_stop(&d);
}

/* Sends raw bytes on a fresh connection (after Hello when hello is set) and
 * expects an Error frame and then the end of the connection. */
static void expect_error_and_close(const struct daemon *d, bool hello, const void *bytes, size_t n,
				   Pinfer__ErrorCode code)
{
	struct client c;
	if (hello)
		client_connect(&c, d);
	else
		client_connect_raw(&c, d);
	client_send_bytes(&c, bytes, n);
	Pinfer__ServerMessage *m = client_recv(&c);
	assert_non_null(m);
	assert_int_equal(m->msg_case, PINFER__SERVER_MESSAGE__MSG_ERROR);
	if (m->error->code != code)
		fail_msg("expected error %d, got %d: %s", code, m->error->code, m->error->message);
	assert_null(client_recv(&c));
	client_close(&c);
}

static size_t frame(uint8_t *out, const uint8_t *msg, size_t n)
{
	out[0] = (uint8_t)(n >> 24);
	out[1] = (uint8_t)(n >> 16);
	out[2] = (uint8_t)(n >> 8);
	out[3] = (uint8_t)n;
	memcpy(out + 4, msg, n);
	return n + 4;
}

/* 4. Malformed input gets an error and a close; another client's stream
 * is not disturbed. */
static void test_malformed_frames(void **state)
{
	(void)state;
	struct daemon d;
	daemon_start(&d, NULL);
	struct client good;
	client_connect(&good, &d);
	client_generate(&good, 1, &greedy);
	struct gen_result r;
	memset(&r, 0, sizeof(r));
	/* Some of its output first. A loaded machine batches many tokens into
	 * one frame, so the whole reply may take fewer than 20 frames. */
	bool over = false;
	for (int i = 0; i < 20 && !over; i++)
		over = client_step(&good, 1, &r);

	uint8_t buf[256];
	uint64_t seed = 17;
	for (int i = 0; i < 20; i++) {
		uint8_t junk[64];
		for (size_t k = 0; k < sizeof(junk); k++)
			junk[k] = (uint8_t)test_rand(&seed);
		junk[0] = 0x7f;  /* a length far over the limit */
		expect_error_and_close(&d, i % 2, junk, sizeof(junk), PINFER__ERROR_CODE__ERR_FRAME_TOO_LARGE);
	}
	/* decodes as nothing: field 1 with a wire type protobuf rejects */
	const uint8_t bad_wire[] = { 0x0f, 0x01, 0x02 };
	expect_error_and_close(&d, true, buf, frame(buf, bad_wire, sizeof(bad_wire)),
			       PINFER__ERROR_CODE__ERR_DECODE_ERROR);
	/* a request before Hello: Ping{request_id 1} */
	const uint8_t ping[] = { 0x42, 0x02, 0x08, 0x01 };
	expect_error_and_close(&d, false, buf, frame(buf, ping, sizeof(ping)),
			       PINFER__ERROR_CODE__ERR_HANDSHAKE_REQUIRED);
	/* an envelope whose only field is unknown (field 99) */
	const uint8_t unknown[] = { 0x98, 0x06, 0x01 };
	expect_error_and_close(&d, true, buf, frame(buf, unknown, sizeof(unknown)),
			       PINFER__ERROR_CODE__ERR_BAD_REQUEST);
	/* Generate whose model name is not UTF-8 */
	const uint8_t bad_utf8[] = { 0x12, 0x06, 0x08, 0x01, 0x12, 0x02, 0xc3, 0x28 };
	expect_error_and_close(&d, true, buf, frame(buf, bad_utf8, sizeof(bad_utf8)),
			       PINFER__ERROR_CODE__ERR_BAD_REQUEST);
	/* Hello with an unsupported major version */
	const uint8_t v9[] = { 0x0a, 0x02, 0x08, 0x09 };
	expect_error_and_close(&d, false, buf, frame(buf, v9, sizeof(v9)),
			       PINFER__ERROR_CODE__ERR_UNSUPPORTED_VERSION);
	/* a truncated frame, then the peer leaves: nothing to answer */
	struct client t;
	client_connect(&t, &d);
	const uint8_t partial[] = { 0, 0, 0, 50, 0x42, 0x02 };
	client_send_bytes(&t, partial, sizeof(partial));
	client_close(&t);

	while (!over)
		over = client_step(&good, 1, &r);
	assert_int_equal(r.n_ids, 200);
	assert_memory_equal(r.ids, ref_ids, sizeof(ref_ids));
	client_close(&good);
	daemon_stop(&d);
}

static Pinfer__ModelInfo *list_model(struct client *c)
{
	Pinfer__ListModels lm = PINFER__LIST_MODELS__INIT;
	lm.request_id = 55;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_LIST_MODELS;
	m.list_models = &lm;
	client_send(c, &m);
	Pinfer__ServerMessage *r = client_recv(c);
	assert_non_null(r);
	assert_int_equal(r->msg_case, PINFER__SERVER_MESSAGE__MSG_LIST_MODELS_REPLY);
	assert_int_equal(r->list_models_reply->n_models, 1);
	return r->list_models_reply->models[0];
}

/* 5. Keep-alive: 1 s unloads after a second, 0 right after the reply,
 * negative never; the expiry shows in ListModels. */
static void test_keep_alive(void **state)
{
	(void)state;
	struct daemon d;
	daemon_start(&d, NULL);
	struct client c;
	client_connect(&c, &d);
	assert_false(list_model(&c)->loaded);

	struct gen_opts o = { .has_temp = true, .temp = 0.0f, .n_predict = 4, .has_keep_alive = true,
			      .keep_alive_ms = 1000 };
	struct gen_result r;
	client_generate(&c, 1, &o);
	client_collect(&c, 1, &r);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	Pinfer__ModelInfo *mi = list_model(&c);
	assert_true(mi->loaded);
	assert_true(mi->expires_at_ms > now_ms + 500 && mi->expires_at_ms <= now_ms + 1100);
	sleep_ms(1300);
	assert_false(list_model(&c)->loaded);

	o.keep_alive_ms = 0;
	client_generate(&c, 2, &o);
	client_collect(&c, 2, &r);
	assert_int_equal(r.reason, PINFER__DONE_REASON__DONE_LENGTH);
	assert_false(list_model(&c)->loaded);

	o.keep_alive_ms = -1;
	client_generate(&c, 3, &o);
	client_collect(&c, 3, &r);
	mi = list_model(&c);
	assert_true(mi->loaded);
	assert_int_equal(mi->expires_at_ms, -1);
	client_close(&c);
	daemon_stop(&d);
}

/* 6. Stop strings are cut exactly even when split across tokens; a prompt
 * sharing a prefix with the slot's cache reuses it and gives the same
 * tokens as a cold run. */
static void test_stop_strings_and_prompt_cache(void **state)
{
	(void)state;
	const char *flags[] = { "--slots", "1", NULL };
	struct daemon d;
	daemon_start(&d, flags);
	struct client c;
	client_connect(&c, &d);
	/* First, while the slot's cache is empty: a cold run, then the same
	 * prompt again. */
	struct gen_opts p = { .prompt = "Once upon a time, there was a little girl", .has_temp = true,
			      .temp = 0.0f, .n_predict = 30, .ids = true };
	struct gen_result cold, warm;
	client_generate(&c, 2, &p);
	client_collect(&c, 2, &cold);
	client_generate(&c, 3, &p);
	client_collect(&c, 3, &warm);
	assert_int_equal(cold.cached_tokens, 0);
	assert_int_equal(warm.cached_tokens, warm.prompt_tokens - 1);
	assert_int_equal(warm.n_ids, cold.n_ids);
	assert_memory_equal(warm.ids, cold.ids, sizeof(int32_t) * (size_t)cold.n_ids);

	/* " girl named" spans several tokens in the reference text. */
	const char *stops[] = { "XYZ", " girl named" };
	struct gen_opts o = greedy;
	o.stops = stops;
	o.n_stops = 2;
	o.ids = false;
	struct gen_result r;
	client_generate(&c, 1, &o);
	client_collect(&c, 1, &r);
	assert_int_equal(r.reason, PINFER__DONE_REASON__DONE_STOP);
	assert_string_equal(r.stop, " girl named");
	const char *cut = strstr(ref_text, " girl named");
	assert_non_null(cut);
	assert_int_equal(r.text_len, (size_t)(cut - ref_text));
	assert_memory_equal(r.text, ref_text, r.text_len);
	client_close(&c);
	daemon_stop(&d);
}

static void expect_timeout(struct client *c)
{
	Pinfer__ServerMessage *m = client_recv(c);
	assert_non_null(m);
	assert_int_equal(m->msg_case, PINFER__SERVER_MESSAGE__MSG_ERROR);
	assert_int_equal(m->error->code, PINFER__ERROR_CODE__ERR_TIMEOUT);
	assert_null(client_recv(c));
	client_close(c);
}

/* A connection that never says Hello is dropped after the handshake
 * timeout, and one that stays idle after the idle timeout, each with
 * ERR_TIMEOUT; one with a request running is not. */
static void test_timeouts(void **state)
{
	(void)state;
	const char *flags[] = { "--handshake-timeout", "200ms", "--idle-timeout", "100ms", "--batch", "1",
				NULL };
	struct daemon d;
	daemon_start(&d, flags);
	struct client c;
	client_connect_raw(&c, &d);
	expect_timeout(&c);
	client_connect(&c, &d);
	expect_timeout(&c);

	/* busy for longer than the idle timeout: a 1000-token prompt taken one
	 * token per step */
	client_connect(&c, &d);
	static char prompt[4000];
	prompt[0] = 0;
	while (strlen(prompt) < sizeof(prompt) - 64)
		strcat(prompt, "Lily and Tom went to the park to play. ");
	struct gen_opts o = { .prompt = prompt, .n_predict = 8 };
	struct gen_result r;
	client_generate(&c, 1, &o);
	client_collect(&c, 1, &r);
	assert_int_equal(r.error, 0);
	expect_timeout(&c);
	daemon_stop(&d);
}

/* The memory budget: a model that cannot fit is refused before its caches
 * are allocated, with the figures; one that fits evicts the idle one that
 * was used least recently. */
static void test_memory_budget(void **state)
{
	(void)state;
	/* stories260K needs about 46 MiB with 4 slots of 2048 positions */
	const char *tight[] = { "--memory-budget", "2M", NULL };
	struct daemon d;
	daemon_start(&d, tight);
	struct client c;
	client_connect(&c, &d);
	struct gen_opts o = { .has_temp = true, .temp = 0.0f, .n_predict = 4 };
	struct gen_result r;
	client_generate(&c, 1, &o);
	client_collect(&c, 1, &r);
	assert_int_equal(r.error, PINFER__ERROR_CODE__ERR_OUT_OF_MEMORY);
	client_close(&c);
	daemon_stop(&d);

	const char *one_fits[] = { "--memory-budget", "60M", NULL };
	daemon_start(&d, one_fits);
	daemon_add_model(&d, "second");
	client_connect(&c, &d);
	client_generate(&c, 1, &o);
	client_collect(&c, 1, &r);
	assert_int_equal(r.reason, PINFER__DONE_REASON__DONE_LENGTH);
	o.model = "second";
	client_generate(&c, 2, &o);
	client_collect(&c, 2, &r);
	assert_int_equal(r.reason, PINFER__DONE_REASON__DONE_LENGTH);
	Pinfer__ListModels lm = PINFER__LIST_MODELS__INIT;
	lm.request_id = 3;
	lm.loaded_only = true;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_LIST_MODELS;
	m.list_models = &lm;
	client_send(&c, &m);
	Pinfer__ServerMessage *reply = client_recv(&c);
	assert_non_null(reply);
	assert_int_equal(reply->list_models_reply->n_models, 1);
	assert_string_equal(reply->list_models_reply->models[0]->name, "second");
	client_close(&c);
	daemon_stop(&d);
}

/* SIGTERM with generations running: they get the grace period, are then
 * cancelled (their clients see Done{cancelled}), and the daemon exits 0;
 * also with no grace period at all. */
static void test_shutdown_with_requests(void **state)
{
	(void)state;
	static char prompt[4000];
	prompt[0] = 0;
	while (strlen(prompt) < sizeof(prompt) - 64)
		strcat(prompt, "Lily and Tom went to the park to play. ");
	const char *graces[] = { "200ms", "0" };
	for (int i = 0; i < 2; i++) {
		const char *flags[] = { "--shutdown-grace", graces[i], "--batch", "1", NULL };
		struct daemon d;
		daemon_start(&d, flags);
		struct client c;
		client_connect(&c, &d);
		struct gen_opts o = { .prompt = prompt, .n_predict = 500 };
		client_generate(&c, 1, &o);
		struct gen_result r;
		memset(&r, 0, sizeof(r));
		sleep_ms(50);
		kill(d.pid, SIGTERM);
		while (!client_step(&c, 1, &r))
			;
		assert_int_equal(r.reason, PINFER__DONE_REASON__DONE_CANCELLED);
		client_close(&c);
		daemon_stop(&d);
	}
	/* A client that hangs up leaves its generation to be cancelled on
	 * the worker; a SIGTERM right after must wait for it (under ASan, a
	 * request dropped at exit is a leak and daemon_stop fails). */
	const char *flags[] = { "--batch", "1", NULL };
	struct daemon d;
	daemon_start(&d, flags);
	for (int i = 0; i < 3; i++) {
		struct client c;
		client_connect(&c, &d);
		struct gen_opts o = { .prompt = prompt, .n_predict = 500 };
		client_generate(&c, 1, &o);
		sleep_ms(20);
		client_close(&c);
	}
	daemon_stop(&d);
}

int main(void)
{
	load_refs();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_greedy_reference, daemon_cleanup),
		cmocka_unit_test_teardown(test_concurrent_clients, daemon_cleanup),
		cmocka_unit_test_teardown(test_cancel_and_hangup, daemon_cleanup),
		cmocka_unit_test_teardown(test_malformed_frames, daemon_cleanup),
		cmocka_unit_test_teardown(test_keep_alive, daemon_cleanup),
		cmocka_unit_test_teardown(test_stop_strings_and_prompt_cache, daemon_cleanup),
		cmocka_unit_test_teardown(test_timeouts, daemon_cleanup),
		cmocka_unit_test_teardown(test_memory_budget, daemon_cleanup),
		cmocka_unit_test_teardown(test_shutdown_with_requests, daemon_cleanup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
