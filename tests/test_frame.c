/* The wire protocol's C support (proto/): framing, the output queue, the
 * blocking client helpers, the capped decode arena and UTF-8 validation. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "arena.h"
#include "frame.h"

/* Decoded messages of one test live here; each test resets it. */
static struct proto_arena arena;

static int setup(void **state)
{
	(void)state;
	proto_arena_init(&arena, 1 << 20);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	proto_arena_destroy(&arena);
	return 0;
}

static void socket_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void set_nonblock(int fd)
{
	assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/* The frame bytes of m (length prefix + packed), appended at buf + *off. */
static void append_frame(uint8_t *buf, size_t *off, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	buf[*off] = n >> 24;
	buf[*off + 1] = n >> 16;
	buf[*off + 2] = n >> 8;
	buf[*off + 3] = n;
	protobuf_c_message_pack(m, buf + *off + 4);
	*off += 4 + n;
}

static void assert_packs_same(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
	size_t na = protobuf_c_message_get_packed_size(a);
	size_t nb = protobuf_c_message_get_packed_size(b);
	assert_int_equal(na, nb);
	uint8_t *pa = malloc(na + 1), *pb = malloc(nb + 1);
	protobuf_c_message_pack(a, pa);
	protobuf_c_message_pack(b, pb);
	assert_memory_equal(pa, pb, na);
	free(pa);
	free(pb);
}

/* Sends m the way the daemon does (frame_out over a socket), receives it
 * the way the client does (frame_read_one), decodes it into the arena, and
 * checks that it packs to the same bytes as the original. UTF-8 is left to
 * the caller: protobuf-c passes invalid strings through. */
static const ProtobufCMessage *roundtrip(const ProtobufCMessage *m)
{
	int sv[2];
	socket_pair(sv);
	struct pf_err err = { { 0 } };
	struct frame_out q;
	frame_out_init(&q, FRAME_MAX_DEFAULT, 2 * FRAME_MAX_DEFAULT);
	if (frame_out_push(&q, m, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(frame_out_write(&q, sv[0], &err), 0);
	assert_int_equal(frame_out_pending(&q), 0);

	struct frame_in in;
	frame_in_init(&in, FRAME_MAX_DEFAULT);
	const uint8_t *frame;
	size_t len;
	assert_int_equal(frame_read_one(sv[1], &in, &frame, &len, &err), 1);
	assert_int_equal(len, protobuf_c_message_get_packed_size(m));
	ProtobufCMessage *out;
	int r = m->descriptor == &pinfer__server_message__descriptor
			? proto_decode_server(&arena, frame, len, (Pinfer__ServerMessage **)&out, &err)
			: proto_decode_client(&arena, frame, len, (Pinfer__ClientMessage **)&out, &err);
	if (r)
		fail_msg("%s", err.msg);
	assert_ptr_equal(out->descriptor, m->descriptor);
	assert_packs_same(m, out);
	frame_in_free(&in);
	frame_out_free(&q);
	close(sv[0]);
	close(sv[1]);
	return out;
}

static const Pinfer__ClientMessage *rt_client(Pinfer__ClientMessage *m, bool *seen)
{
	const Pinfer__ClientMessage *d = (const Pinfer__ClientMessage *)roundtrip(&m->base);
	assert_int_equal(d->msg_case, m->msg_case);
	assert_int_equal(proto_check_utf8(&d->base, NULL), 0);
	seen[m->msg_case] = true;
	return d;
}

static const Pinfer__ServerMessage *rt_server(Pinfer__ServerMessage *m, bool *seen)
{
	const Pinfer__ServerMessage *d = (const Pinfer__ServerMessage *)roundtrip(&m->base);
	assert_int_equal(d->msg_case, m->msg_case);
	assert_int_equal(proto_check_utf8(&d->base, NULL), 0);
	seen[m->msg_case] = true;
	return d;
}

/* Every member of the envelope's oneof was sent; catches a message added
 * to the .proto without a round trip here. */
static void assert_all_seen(const ProtobufCMessageDescriptor *d, const bool *seen)
{
	for (unsigned i = 0; i < d->n_fields; i++)
		if (!seen[d->fields[i].id])
			fail_msg("%s.%s has no round-trip test", d->short_name, d->fields[i].name);
}

static void test_roundtrip_client(void **state)
{
	(void)state;
	bool seen[64] = { false };

	Pinfer__Hello hello = PINFER__HELLO__INIT;
	hello.protocol_major = PROTO_MAJOR;
	hello.protocol_minor = PROTO_MINOR;
	hello.client_name = "test_frame";
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_HELLO;
	m.hello = &hello;
	const Pinfer__ClientMessage *d = rt_client(&m, seen);
	assert_int_equal(d->hello->protocol_major, 1);
	assert_string_equal(d->hello->client_name, "test_frame");

	/* A prompt with every sampling field set, zeros included: presence
	 * must survive even for the values proto3 would otherwise omit. */
	Pinfer__Sampling s = PINFER__SAMPLING__INIT;
	s.opt_temperature_case = PINFER__SAMPLING__OPT_TEMPERATURE_TEMPERATURE;
	s.temperature = 0.0f;
	s.opt_top_k_case = PINFER__SAMPLING__OPT_TOP_K_TOP_K;
	s.top_k = 40;
	s.opt_top_p_case = PINFER__SAMPLING__OPT_TOP_P_TOP_P;
	s.top_p = 0.95f;
	s.opt_min_p_case = PINFER__SAMPLING__OPT_MIN_P_MIN_P;
	s.min_p = 0.05f;
	s.opt_repeat_penalty_case = PINFER__SAMPLING__OPT_REPEAT_PENALTY_REPEAT_PENALTY;
	s.repeat_penalty = 1.1f;
	s.opt_repeat_last_n_case = PINFER__SAMPLING__OPT_REPEAT_LAST_N_REPEAT_LAST_N;
	s.repeat_last_n = 64;
	s.opt_presence_penalty_case = PINFER__SAMPLING__OPT_PRESENCE_PENALTY_PRESENCE_PENALTY;
	s.presence_penalty = -0.5f;
	s.opt_frequency_penalty_case = PINFER__SAMPLING__OPT_FREQUENCY_PENALTY_FREQUENCY_PENALTY;
	s.frequency_penalty = 0.25f;
	s.opt_seed_case = PINFER__SAMPLING__OPT_SEED_SEED;
	s.seed = 0;
	char *stops[] = { "\n\n", "</s>", "User:" };
	Pinfer__Generate g = PINFER__GENERATE__INIT;
	g.request_id = 42;
	g.model = "stories260K";
	g.input_case = PINFER__GENERATE__INPUT_PROMPT;
	g.prompt = "Once upon a time, \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80";
	g.raw = true;
	g.opt_chat_template_case = PINFER__GENERATE__OPT_CHAT_TEMPLATE_CHAT_TEMPLATE;
	g.chat_template = "chatml";
	g.sampling = &s;
	g.opt_n_predict_case = PINFER__GENERATE__OPT_N_PREDICT_N_PREDICT;
	g.n_predict = 0;
	g.n_stop = 3;
	g.stop = stops;
	g.opt_keep_alive_ms_case = PINFER__GENERATE__OPT_KEEP_ALIVE_MS_KEEP_ALIVE_MS;
	g.keep_alive_ms = -1;
	g.return_token_ids = true;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_GENERATE;
	m.generate = &g;
	d = rt_client(&m, seen);
	const Pinfer__Generate *dg = d->generate;
	assert_int_equal(dg->request_id, 42);
	assert_int_equal(dg->input_case, PINFER__GENERATE__INPUT_PROMPT);
	assert_string_equal(dg->prompt, g.prompt);
	assert_true(dg->raw);
	assert_string_equal(dg->chat_template, "chatml");
	assert_non_null(dg->sampling);
	assert_int_equal(dg->sampling->opt_temperature_case,
			 PINFER__SAMPLING__OPT_TEMPERATURE_TEMPERATURE);
	assert_true(dg->sampling->temperature == 0.0f);
	assert_true(dg->sampling->opt_seed_case);
	assert_int_equal(dg->sampling->seed, 0);
	assert_true(dg->sampling->presence_penalty == -0.5f);
	assert_true(dg->opt_n_predict_case);
	assert_int_equal(dg->n_predict, 0);
	assert_true(dg->opt_keep_alive_ms_case);
	assert_int_equal(dg->keep_alive_ms, -1);
	assert_int_equal(dg->n_stop, 3);
	assert_string_equal(dg->stop[2], "User:");

	/* Chat input with nothing optional set: every presence is unset and
	 * keep_alive 0 ("unload after") stays distinct from unset. */
	Pinfer__ChatMessage cm[3] = { PINFER__CHAT_MESSAGE__INIT, PINFER__CHAT_MESSAGE__INIT,
				      PINFER__CHAT_MESSAGE__INIT };
	Pinfer__ChatMessage *cmp[3] = { &cm[0], &cm[1], &cm[2] };
	cm[0].role = "system";
	cm[0].content = "Be brief.";
	cm[1].role = "user";
	cm[1].content = "Hi";
	cm[2].role = "assistant";
	cm[2].content = "";
	Pinfer__Chat chat = PINFER__CHAT__INIT;
	chat.n_messages = 3;
	chat.messages = cmp;
	Pinfer__Generate g2 = PINFER__GENERATE__INIT;
	g2.request_id = 43;
	g2.model = "m";
	g2.input_case = PINFER__GENERATE__INPUT_CHAT;
	g2.chat = &chat;
	m.generate = &g2;
	dg = rt_client(&m, seen)->generate;
	assert_int_equal(dg->input_case, PINFER__GENERATE__INPUT_CHAT);
	assert_int_equal(dg->chat->n_messages, 3);
	assert_string_equal(dg->chat->messages[1]->content, "Hi");
	assert_null(dg->sampling);
	assert_false(dg->opt_n_predict_case);
	assert_false(dg->opt_keep_alive_ms_case);
	assert_false(dg->opt_chat_template_case);
	g2.opt_keep_alive_ms_case = PINFER__GENERATE__OPT_KEEP_ALIVE_MS_KEEP_ALIVE_MS;
	g2.keep_alive_ms = 0;
	dg = rt_client(&m, seen)->generate;
	assert_true(dg->opt_keep_alive_ms_case);
	assert_int_equal(dg->keep_alive_ms, 0);

	Pinfer__Cancel cancel = PINFER__CANCEL__INIT;
	cancel.request_id = 42;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_CANCEL;
	m.cancel = &cancel;
	assert_int_equal(rt_client(&m, seen)->cancel->request_id, 42);

	Pinfer__Tokenize tok = PINFER__TOKENIZE__INIT;
	tok.request_id = 5;
	tok.model = "m";
	tok.text = "<s>Hello world";
	tok.add_bos = true;
	tok.parse_special = true;
	tok.return_pieces = true;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_TOKENIZE;
	m.tokenize = &tok;
	assert_true(rt_client(&m, seen)->tokenize->return_pieces);

	int32_t ids[] = { 1, 0, 31999, -1, 2147483647 };
	Pinfer__Detokenize detok = PINFER__DETOKENIZE__INIT;
	detok.request_id = 6;
	detok.model = "m";
	detok.n_ids = 5;
	detok.ids = ids;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_DETOKENIZE;
	m.detokenize = &detok;
	assert_memory_equal(rt_client(&m, seen)->detokenize->ids, ids, sizeof(ids));

	Pinfer__ListModels lm = PINFER__LIST_MODELS__INIT;
	lm.request_id = 7;
	lm.loaded_only = true;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_LIST_MODELS;
	m.list_models = &lm;
	assert_true(rt_client(&m, seen)->list_models->loaded_only);

	Pinfer__Status st = PINFER__STATUS__INIT;
	st.request_id = 8;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_STATUS;
	m.status = &st;
	assert_int_equal(rt_client(&m, seen)->status->request_id, 8);

	Pinfer__Ping ping = PINFER__PING__INIT;
	ping.request_id = UINT64_MAX;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_PING;
	m.ping = &ping;
	assert_true(rt_client(&m, seen)->ping->request_id == UINT64_MAX);

	Pinfer__LoadModel load = PINFER__LOAD_MODEL__INIT;
	load.request_id = 9;
	load.model = "qwen";
	load.opt_keep_alive_ms_case = PINFER__LOAD_MODEL__OPT_KEEP_ALIVE_MS_KEEP_ALIVE_MS;
	load.keep_alive_ms = 3600000;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_LOAD_MODEL;
	m.load_model = &load;
	assert_int_equal(rt_client(&m, seen)->load_model->keep_alive_ms, 3600000);

	Pinfer__UnloadModel unload = PINFER__UNLOAD_MODEL__INIT;
	unload.request_id = 10;
	unload.model = "qwen";
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_UNLOAD_MODEL;
	m.unload_model = &unload;
	assert_string_equal(rt_client(&m, seen)->unload_model->model, "qwen");

	assert_all_seen(&pinfer__client_message__descriptor, seen);
	proto_arena_reset(&arena);
}

static void test_roundtrip_server(void **state)
{
	(void)state;
	bool seen[64] = { false };
	Pinfer__ServerMessage m = PINFER__SERVER_MESSAGE__INIT;

	char *caps[] = { "model_control" };
	Pinfer__HelloReply hr = PINFER__HELLO_REPLY__INIT;
	hr.server_version = "0.1.0";
	hr.protocol_major = PROTO_MAJOR;
	hr.protocol_minor = PROTO_MINOR;
	hr.max_frame = FRAME_MAX_DEFAULT;
	hr.n_capabilities = 1;
	hr.capabilities = caps;
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_HELLO_REPLY;
	m.hello_reply = &hr;
	const Pinfer__ServerMessage *d = rt_server(&m, seen);
	assert_int_equal(d->hello_reply->max_frame, FRAME_MAX_DEFAULT);
	assert_string_equal(d->hello_reply->capabilities[0], "model_control");

	Pinfer__Error e = PINFER__ERROR__INIT;
	e.request_id = 0;
	e.code = PINFER__ERROR_CODE__ERR_UNSUPPORTED_VERSION;
	e.message = "client speaks protocol 2.0; pinferd speaks 1.x";
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_ERROR;
	m.error = &e;
	assert_int_equal(rt_server(&m, seen)->error->code, PINFER__ERROR_CODE__ERR_UNSUPPORTED_VERSION);

	int32_t tids[] = { 15043, 3186 };
	Pinfer__Token t = PINFER__TOKEN__INIT;
	t.request_id = 42;
	t.text = " Hello world";
	t.n_ids = 2;
	t.ids = tids;
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_TOKEN;
	m.token = &t;
	d = rt_server(&m, seen);
	assert_string_equal(d->token->text, " Hello world");
	assert_int_equal(d->token->n_ids, 2);

	Pinfer__Done done = PINFER__DONE__INIT;
	done.request_id = 42;
	done.reason = PINFER__DONE_REASON__DONE_STOP;
	done.prompt_tokens = 100;
	done.cached_prompt_tokens = 60;
	done.generated_tokens = 17;
	done.load_ns = 1500000000ull;
	done.prompt_ns = 20000000ull;
	done.decode_ns = 99999999999ull;
	done.stop = "\n\n";
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_DONE;
	m.done = &done;
	d = rt_server(&m, seen);
	assert_int_equal(d->done->reason, PINFER__DONE_REASON__DONE_STOP);
	assert_int_equal(d->done->decode_ns, 99999999999ull);
	assert_null(d->done->error);
	Pinfer__Error derr = PINFER__ERROR__INIT;
	derr.request_id = 42;
	derr.code = PINFER__ERROR_CODE__ERR_INTERNAL;
	derr.message = "eval failed at position 17";
	done.reason = PINFER__DONE_REASON__DONE_ERROR;
	done.stop = "";
	done.error = &derr;
	d = rt_server(&m, seen);
	assert_string_equal(d->done->error->message, derr.message);

	/* Pieces are bytes: a token may hold half a character. */
	int32_t kids[] = { 1, 2 };
	ProtobufCBinaryData pieces[] = { { 3, (uint8_t *)"<s>" }, { 2, (uint8_t *)"\xe2\x82" } };
	Pinfer__TokenizeReply tr = PINFER__TOKENIZE_REPLY__INIT;
	tr.request_id = 5;
	tr.n_ids = 2;
	tr.ids = kids;
	tr.n_pieces = 2;
	tr.pieces = pieces;
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_TOKENIZE_REPLY;
	m.tokenize_reply = &tr;
	d = rt_server(&m, seen);
	assert_int_equal(d->tokenize_reply->pieces[1].len, 2);
	assert_memory_equal(d->tokenize_reply->pieces[1].data, "\xe2\x82", 2);

	Pinfer__DetokenizeReply dr = PINFER__DETOKENIZE_REPLY__INIT;
	dr.request_id = 6;
	dr.text = (ProtobufCBinaryData){ 4, (uint8_t *)"a\0b\xff" };
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_DETOKENIZE_REPLY;
	m.detokenize_reply = &dr;
	assert_memory_equal(rt_server(&m, seen)->detokenize_reply->text.data, "a\0b\xff", 4);

	Pinfer__ModelInfo mi[2] = { PINFER__MODEL_INFO__INIT, PINFER__MODEL_INFO__INIT };
	Pinfer__ModelInfo *mip[2] = { &mi[0], &mi[1] };
	mi[0].name = "stories260K";
	mi[0].path = "/var/lib/pinfer/models/stories260K.gguf";
	mi[0].size_bytes = 1185376;
	mi[0].loaded = true;
	mi[0].memory_bytes = 3 << 20;
	mi[0].expires_at_ms = -1;
	mi[0].slots_total = 4;
	mi[0].slots_busy = 1;
	mi[0].arch = "llama";
	mi[0].n_params = 292000;
	mi[0].quant = "F32";
	mi[0].context_length = 512;
	mi[1].name = "qwen2-1.5b";
	mi[1].expires_at_ms = 1767225600000ll;
	mi[1].chat_template = "chatml";
	Pinfer__ListModelsReply lr = PINFER__LIST_MODELS_REPLY__INIT;
	lr.request_id = 7;
	lr.n_models = 2;
	lr.models = mip;
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_LIST_MODELS_REPLY;
	m.list_models_reply = &lr;
	d = rt_server(&m, seen);
	assert_int_equal(d->list_models_reply->n_models, 2);
	assert_int_equal(d->list_models_reply->models[0]->expires_at_ms, -1);
	assert_int_equal(d->list_models_reply->models[1]->expires_at_ms, 1767225600000ll);

	Pinfer__StatusReply sr = PINFER__STATUS_REPLY__INIT;
	sr.request_id = 8;
	sr.daemon_version = "0.1.0";
	sr.uptime_ms = 86400000;
	sr.models_loaded = 1;
	sr.memory_used_bytes = 1ull << 32;
	sr.memory_budget_bytes = 6ull << 30;
	sr.requests_active = 2;
	sr.requests_queued = 3;
	sr.connections = 4;
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_STATUS_REPLY;
	m.status_reply = &sr;
	assert_int_equal(rt_server(&m, seen)->status_reply->memory_budget_bytes, 6ull << 30);

	Pinfer__Pong pong = PINFER__PONG__INIT;
	pong.request_id = 11;
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_PONG;
	m.pong = &pong;
	assert_int_equal(rt_server(&m, seen)->pong->request_id, 11);

	Pinfer__LoadModelReply lmr = PINFER__LOAD_MODEL_REPLY__INIT;
	lmr.request_id = 9;
	lmr.model = &mi[0];
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_LOAD_MODEL_REPLY;
	m.load_model_reply = &lmr;
	assert_string_equal(rt_server(&m, seen)->load_model_reply->model->arch, "llama");

	Pinfer__UnloadModelReply ur = PINFER__UNLOAD_MODEL_REPLY__INIT;
	ur.request_id = 10;
	ur.was_loaded = true;
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_UNLOAD_MODEL_REPLY;
	m.unload_model_reply = &ur;
	assert_true(rt_server(&m, seen)->unload_model_reply->was_loaded);

	assert_all_seen(&pinfer__server_message__descriptor, seen);
	proto_arena_reset(&arena);
}

/* A frame whose decoded form needs more than the arena's cap fails with
 * -ENOBUFS, leaves the arena within its cap, and the arena works after a
 * reset. */
static void test_arena_cap(void **state)
{
	(void)state;
	struct pf_err err = { { 0 } };
	enum { N = 20000 };
	/* 20000 empty chat messages: 2 bytes each on the wire, a struct and a
	 * pointer each once decoded. */
	Pinfer__ChatMessage cm = PINFER__CHAT_MESSAGE__INIT;
	Pinfer__ChatMessage **cmp = malloc(N * sizeof(*cmp));
	for (int i = 0; i < N; i++)
		cmp[i] = &cm;
	Pinfer__Chat chat = PINFER__CHAT__INIT;
	chat.n_messages = N;
	chat.messages = cmp;
	Pinfer__Generate g = PINFER__GENERATE__INIT;
	g.request_id = 1;
	g.input_case = PINFER__GENERATE__INPUT_CHAT;
	g.chat = &chat;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_GENERATE;
	m.generate = &g;
	size_t len = protobuf_c_message_get_packed_size(&m.base);
	uint8_t *buf = malloc(len);
	protobuf_c_message_pack(&m.base, buf);
	assert_true(len < 50000);

	struct proto_arena small;
	proto_arena_init(&small, 256 * 1024);
	Pinfer__ClientMessage *out = NULL;
	assert_int_equal(proto_decode_client(&small, buf, len, &out, &err), -ENOBUFS);
	assert_null(out);
	assert_non_null(strstr(err.msg, "cannot decode ClientMessage"));
	assert_non_null(strstr(err.msg, "262144-byte decode limit"));
	assert_true(small.taken <= small.cap);

	/* Usable again after reset. */
	proto_arena_reset(&small);
	Pinfer__Ping ping = PINFER__PING__INIT;
	ping.request_id = 3;
	Pinfer__ClientMessage pm = PINFER__CLIENT_MESSAGE__INIT;
	pm.msg_case = PINFER__CLIENT_MESSAGE__MSG_PING;
	pm.ping = &ping;
	uint8_t pbuf[16];
	size_t plen = protobuf_c_message_pack(&pm.base, pbuf);
	assert_int_equal(proto_decode_client(&small, pbuf, plen, &out, &err), 0);
	assert_int_equal(out->ping->request_id, 3);

	/* A big enough arena decodes the chat, in several chunks. */
	struct proto_arena big;
	proto_arena_init(&big, 8 << 20);
	assert_int_equal(proto_decode_client(&big, buf, len, &out, &err), 0);
	assert_int_equal(out->generate->chat->n_messages, N);
	assert_true(big.taken > len);
	/* Reset gives the large chunks back. */
	proto_arena_reset(&big);
	assert_true(big.taken <= 64 * 1024);

	/* An arena too small for even one chunk refuses everything. */
	struct proto_arena tiny;
	proto_arena_init(&tiny, 8);
	assert_int_equal(proto_decode_client(&tiny, pbuf, plen, &out, &err), -ENOBUFS);
	assert_int_equal(tiny.taken, 0);

	proto_arena_destroy(&tiny);
	proto_arena_destroy(&big);
	proto_arena_destroy(&small);
	free(buf);
	free(cmp);
}

/* Three Ping frames (request ids 1, 2, 3) in one byte stream. */
static size_t ping_stream(uint8_t *buf)
{
	size_t off = 0;
	for (uint64_t id = 1; id <= 3; id++) {
		Pinfer__Ping ping = PINFER__PING__INIT;
		ping.request_id = id;
		Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
		m.msg_case = PINFER__CLIENT_MESSAGE__MSG_PING;
		m.ping = &ping;
		append_frame(buf, &off, &m.base);
	}
	return off;
}

static uint64_t ping_id(const uint8_t *frame, size_t len)
{
	Pinfer__ClientMessage *m;
	struct pf_err err = { { 0 } };
	if (proto_decode_client(&arena, frame, len, &m, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(m->msg_case, PINFER__CLIENT_MESSAGE__MSG_PING);
	return m->ping->request_id;
}

static void test_extract_bytewise(void **state)
{
	(void)state;
	uint8_t stream[64];
	size_t n = ping_stream(stream);
	struct frame_in in;
	frame_in_init(&in, 1024);
	struct pf_err err = { { 0 } };
	const uint8_t *frame;
	size_t len;
	uint64_t next_id = 1;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(frame_in_feed(&in, stream + i, 1, &err), 1);
		while (frame_in_next(&in, &frame, &len, &err) == FRAME_READY)
			assert_int_equal(ping_id(frame, len), next_id++);
	}
	assert_int_equal(next_id, 4);
	assert_int_equal(frame_in_pending(&in), 0);
	frame_in_free(&in);
	proto_arena_reset(&arena);
}

static void test_extract_one_feed(void **state)
{
	(void)state;
	uint8_t stream[64];
	size_t n = ping_stream(stream);
	struct frame_in in;
	frame_in_init(&in, 1024);
	struct pf_err err = { { 0 } };
	const uint8_t *frame;
	size_t len;
	assert_int_equal(frame_in_feed(&in, stream, n, &err), (ssize_t)n);
	for (uint64_t id = 1; id <= 3; id++) {
		assert_int_equal(frame_in_next(&in, &frame, &len, &err), FRAME_READY);
		assert_int_equal(ping_id(frame, len), id);
	}
	assert_int_equal(frame_in_next(&in, &frame, &len, &err), FRAME_NEED_MORE);
	assert_int_equal(frame_in_pending(&in), 0);

	/* Truncated: all but the last byte is held and nothing comes out. */
	assert_int_equal(frame_in_feed(&in, stream, n - 1, &err), (ssize_t)n - 1);
	assert_int_equal(frame_in_next(&in, &frame, &len, &err), FRAME_READY);
	assert_int_equal(frame_in_next(&in, &frame, &len, &err), FRAME_READY);
	assert_int_equal(frame_in_next(&in, &frame, &len, &err), FRAME_NEED_MORE);
	assert_int_equal(frame_in_pending(&in), n / 3 - 1);
	assert_int_equal(frame_in_feed(&in, stream + n - 1, 1, &err), 1);
	assert_int_equal(frame_in_next(&in, &frame, &len, &err), FRAME_READY);
	assert_int_equal(ping_id(frame, len), 3);
	frame_in_free(&in);
	proto_arena_reset(&arena);
}

static void test_extract_too_large(void **state)
{
	(void)state;
	struct frame_in in;
	frame_in_init(&in, 100);
	struct pf_err err = { { 0 } };
	const uint8_t *frame;
	size_t len;
	uint8_t hdr[4] = { 0, 0, 0, 101 };
	assert_int_equal(frame_in_feed(&in, hdr, 4, &err), 4);
	assert_int_equal(frame_in_next(&in, &frame, &len, &err), FRAME_TOO_LARGE);
	assert_int_equal(len, 101);
	assert_string_equal(err.msg, "frame length 101 exceeds the 100-byte limit");
	/* The stream is lost: asking again says the same. */
	assert_int_equal(frame_in_next(&in, &frame, &len, &err), FRAME_TOO_LARGE);
	frame_in_free(&in);

	frame_in_init(&in, 100);
	uint8_t huge[4] = { 0xff, 0xff, 0xff, 0xff };
	assert_int_equal(frame_in_feed(&in, huge, 4, &err), 4);
	assert_int_equal(frame_in_next(&in, &frame, &len, &err), FRAME_TOO_LARGE);
	assert_int_equal(len, 4294967295u);
	assert_true(in.b.cap <= 104);
	frame_in_free(&in);

	/* Exactly max_frame is fine. */
	frame_in_init(&in, 100);
	uint8_t exact[104] = { 0, 0, 0, 100 };
	assert_int_equal(frame_in_feed(&in, exact, sizeof(exact), &err), 104);
	assert_int_equal(frame_in_next(&in, &frame, &len, &err), FRAME_READY);
	assert_int_equal(len, 100);
	frame_in_free(&in);
}

static void test_extract_zero_length(void **state)
{
	(void)state;
	struct frame_in in;
	frame_in_init(&in, 100);
	struct pf_err err = { { 0 } };
	const uint8_t *frame = NULL;
	size_t len = 99;
	uint8_t zero[4] = { 0 };
	assert_int_equal(frame_in_feed(&in, zero, 4, &err), 4);
	assert_int_equal(frame_in_next(&in, &frame, &len, &err), FRAME_READY);
	assert_int_equal(len, 0);
	assert_non_null(frame);
	/* It decodes as an empty envelope, which the daemon refuses as
	 * BAD_REQUEST without closing. */
	Pinfer__ClientMessage *m;
	assert_int_equal(proto_decode_client(&arena, frame, len, &m, &err), 0);
	assert_int_equal(m->msg_case, PINFER__CLIENT_MESSAGE__MSG__NOT_SET);
	assert_int_equal(frame_in_next(&in, &frame, &len, &err), FRAME_NEED_MORE);
	frame_in_free(&in);
	proto_arena_reset(&arena);
}

/* However much the peer sends, the buffer stays within max_frame + 4: feed
 * takes what fits and the rest waits until frames are extracted. */
static void test_extract_bounded(void **state)
{
	(void)state;
	enum { MAX = 100, FRAMES = 50 };
	uint8_t stream[FRAMES * (MAX + 4)];
	for (int i = 0; i < FRAMES; i++) {
		uint8_t *f = stream + i * (MAX + 4);
		f[0] = f[1] = f[2] = 0;
		f[3] = MAX;
		memset(f + 4, i, MAX);
	}
	struct frame_in in;
	frame_in_init(&in, MAX);
	struct pf_err err = { { 0 } };
	size_t off = 0;
	int got = 0;
	while (off < sizeof(stream)) {
		ssize_t r = frame_in_feed(&in, stream + off, sizeof(stream) - off, &err);
		assert_true(r > 0 && r <= MAX + 4);
		assert_true(in.b.cap <= MAX + 4);
		off += (size_t)r;
		const uint8_t *frame;
		size_t len;
		while (frame_in_next(&in, &frame, &len, &err) == FRAME_READY) {
			assert_int_equal(len, MAX);
			assert_int_equal(frame[0], got);
			assert_int_equal(frame[MAX - 1], got);
			got++;
		}
	}
	assert_int_equal(got, FRAMES);
	/* A full buffer must be drained before reading more. */
	assert_int_equal(frame_in_feed(&in, stream, sizeof(stream), &err), MAX + 4);
	assert_int_equal(frame_in_feed(&in, stream, sizeof(stream), &err), 0);
	assert_int_equal(frame_in_read(&in, -1, &err), -ENOBUFS);
	assert_non_null(strstr(err.msg, "input buffer is full"));
	frame_in_free(&in);
}

/* Random bytes, and valid frames with random bytes changed, never crash the
 * decoder or the UTF-8 walk, and never take the arena over its cap. */
static void test_garbage(void **state)
{
	(void)state;
	uint64_t rng = 0x5eed;
	struct proto_arena small;
	proto_arena_init(&small, 4096);
	struct pf_err err = { { 0 } };

	/* A valid Generate to mutate. */
	Pinfer__Sampling s = PINFER__SAMPLING__INIT;
	s.opt_top_k_case = PINFER__SAMPLING__OPT_TOP_K_TOP_K;
	s.top_k = 5;
	char *stops[] = { "a", "bc" };
	Pinfer__Generate g = PINFER__GENERATE__INIT;
	g.request_id = 9;
	g.model = "model";
	g.input_case = PINFER__GENERATE__INPUT_PROMPT;
	g.prompt = "hello there";
	g.sampling = &s;
	g.n_stop = 2;
	g.stop = stops;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_GENERATE;
	m.generate = &g;
	uint8_t valid[256];
	size_t vlen = protobuf_c_message_pack(&m.base, valid);

	int decoded = 0, refused = 0;
	for (int i = 0; i < 10000; i++) {
		uint8_t buf[256];
		size_t len;
		if (i % 2) {
			len = test_rand(&rng) % sizeof(buf);
			for (size_t k = 0; k < len; k++)
				buf[k] = (uint8_t)test_rand(&rng);
		} else {
			len = vlen;
			memcpy(buf, valid, vlen);
			for (int k = 1 + (int)(test_rand(&rng) % 4); k > 0; k--)
				buf[test_rand(&rng) % len] = (uint8_t)test_rand(&rng);
		}
		Pinfer__ClientMessage *cm;
		Pinfer__ServerMessage *sm;
		if (proto_decode_client(&small, buf, len, &cm, &err) == 0) {
			decoded++;
			proto_check_utf8(&cm->base, &err);
		} else {
			refused++;
			assert_non_null(strstr(err.msg, "cannot decode ClientMessage"));
		}
		assert_true(small.taken <= small.cap);
		proto_arena_reset(&small);
		if (proto_decode_server(&small, buf, len, &sm, &err) == 0)
			proto_check_utf8(&sm->base, &err);
		assert_true(small.taken <= small.cap);
		proto_arena_reset(&small);
	}
	/* Both outcomes happened, so both paths were exercised. */
	assert_true(decoded > 0);
	assert_true(refused > 0);
	proto_arena_destroy(&small);
}

static void test_utf8(void **state)
{
	(void)state;
	static const char *valid[] = {
		"", "plain ASCII", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
		"\xef\xbf\xbf",      /* U+FFFF */
		"\xf4\x8f\xbf\xbf",  /* U+10FFFF */
		"\xed\x9f\xbf",      /* U+D7FF, just below the surrogates */
	};
	static const char *invalid[] = {
		"\x80",              /* lone continuation */
		"\xc0\x80",          /* overlong NUL */
		"\xc1\xbf",          /* overlong */
		"\xe0\x80\x80",      /* overlong */
		"\xed\xa0\x80",      /* surrogate U+D800 */
		"\xf0\x80\x80\x80",  /* overlong */
		"\xf4\x90\x80\x80",  /* above U+10FFFF */
		"\xf5\x80\x80\x80",
		"\xff",
		"\xe2\x82",          /* truncated */
		"\xe2\x28\xa1",      /* bad continuation */
		"ok\xf0\x9f\x98",    /* truncated at the end */
	};
	for (size_t i = 0; i < sizeof(valid) / sizeof(*valid); i++)
		assert_true(proto_utf8_valid(valid[i], strlen(valid[i])));
	for (size_t i = 0; i < sizeof(invalid) / sizeof(*invalid); i++)
		if (proto_utf8_valid(invalid[i], strlen(invalid[i])))
			fail_msg("invalid[%zu] passed", i);
	/* Embedded NUL is a valid character for a length-delimited check. */
	assert_true(proto_utf8_valid("a\0b", 3));

	/* The walk names the field, through oneofs and repeated messages. */
	struct pf_err err = { { 0 } };
	Pinfer__ChatMessage cm[2] = { PINFER__CHAT_MESSAGE__INIT, PINFER__CHAT_MESSAGE__INIT };
	Pinfer__ChatMessage *cmp[2] = { &cm[0], &cm[1] };
	cm[0].role = "user";
	cm[0].content = "fine";
	cm[1].role = "user";
	cm[1].content = "bad\xc0\xafhere";
	Pinfer__Chat chat = PINFER__CHAT__INIT;
	chat.n_messages = 2;
	chat.messages = cmp;
	Pinfer__Generate g = PINFER__GENERATE__INIT;
	g.model = "m";
	g.input_case = PINFER__GENERATE__INPUT_CHAT;
	g.chat = &chat;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_GENERATE;
	m.generate = &g;
	/* Through the wire: protobuf-c itself lets it pass. */
	const Pinfer__ClientMessage *d = (const Pinfer__ClientMessage *)roundtrip(&m.base);
	assert_int_equal(proto_check_utf8(&d->base, &err), -EILSEQ);
	assert_string_equal(err.msg, "generate.chat.messages[1].content: invalid UTF-8 at byte 3");

	cm[1].content = "fine too";
	char *stops[] = { "ok", "\xe2\x82", "x" };
	g.n_stop = 3;
	g.stop = stops;
	assert_int_equal(proto_check_utf8(&m.base, &err), -EILSEQ);
	assert_string_equal(err.msg, "generate.stop[1]: invalid UTF-8 at byte 0");

	g.n_stop = 0;
	g.opt_chat_template_case = PINFER__GENERATE__OPT_CHAT_TEMPLATE_CHAT_TEMPLATE;
	g.chat_template = "\xff";
	assert_int_equal(proto_check_utf8(&m.base, &err), -EILSEQ);
	assert_string_equal(err.msg, "generate.chat_template: invalid UTF-8 at byte 0");

	g.chat_template = "chatml";
	g.model = "m\xed\xa0\x80";
	assert_int_equal(proto_check_utf8(&m.base, &err), -EILSEQ);
	assert_string_equal(err.msg, "generate.model: invalid UTF-8 at byte 1");

	/* The prompt member of the same oneof, and a clean message. */
	g.model = "m";
	g.input_case = PINFER__GENERATE__INPUT_PROMPT;
	g.prompt = "\xe2\x82\xac ok";
	assert_int_equal(proto_check_utf8(&m.base, &err), 0);
	g.prompt = "\xe2\x82\xac \x80";
	assert_int_equal(proto_check_utf8(&m.base, &err), -EILSEQ);
	assert_string_equal(err.msg, "generate.prompt: invalid UTF-8 at byte 4");
	proto_arena_reset(&arena);
}

/* The daemon's output path against a peer that reads 1000 bytes at a time
 * through small socket buffers: writes are partial, nothing is lost or
 * reordered. */
static void test_out_queue_partial(void **state)
{
	(void)state;
	int sv[2];
	socket_pair(sv);
	int sz = 4096;
	assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
	assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
	set_nonblock(sv[0]);
	set_nonblock(sv[1]);

	enum { FRAMES = 64, TEXT = 8000 };
	struct pf_err err = { { 0 } };
	struct frame_out q;
	frame_out_init(&q, 64 * 1024, 1 << 20);
	char *text = malloc(TEXT + 1);
	size_t queued = 0;
	for (int i = 0; i < FRAMES; i++) {
		memset(text, 'a' + i % 26, TEXT);
		text[TEXT] = '\0';
		Pinfer__Token t = PINFER__TOKEN__INIT;
		t.request_id = (uint64_t)i + 1;
		t.text = text;
		Pinfer__ServerMessage m = PINFER__SERVER_MESSAGE__INIT;
		m.msg_case = PINFER__SERVER_MESSAGE__MSG_TOKEN;
		m.token = &t;
		if (frame_out_push(&q, &m.base, &err))
			fail_msg("%s", err.msg);
		queued += 4 + protobuf_c_message_get_packed_size(&m.base);
		assert_int_equal(frame_out_pending(&q), queued);
	}

	struct frame_in in;
	frame_in_init(&in, 64 * 1024);
	int received = 0, partial = 0;
	for (int step = 0; received < FRAMES; step++) {
		assert_true(step < 100000);
		int r = frame_out_write(&q, sv[0], &err);
		if (r < 0)
			fail_msg("%s", err.msg);
		partial += r == 1;
		/* Mostly 1000-byte reads fed in; every fourth step the daemon's
		 * own reader, which sizes its buffer for the frame it is in. */
		if (step % 4 == 3) {
			ssize_t n = frame_in_read(&in, sv[1], &err);
			assert_true(n > 0 || n == -EAGAIN);
		} else {
			uint8_t chunk[1000];
			ssize_t n = read(sv[1], chunk, sizeof(chunk));
			if (n < 0) {
				assert_int_equal(errno, EAGAIN);
				continue;
			}
			assert_int_equal(frame_in_feed(&in, chunk, (size_t)n, &err), n);
		}
		const uint8_t *frame;
		size_t len;
		while (frame_in_next(&in, &frame, &len, &err) == FRAME_READY) {
			Pinfer__ServerMessage *sm;
			if (proto_decode_server(&arena, frame, len, &sm, &err))
				fail_msg("%s", err.msg);
			assert_int_equal(sm->token->request_id, received + 1);
			assert_int_equal(strlen(sm->token->text), TEXT);
			assert_int_equal(sm->token->text[TEXT - 1], 'a' + received % 26);
			received++;
			proto_arena_reset(&arena);
		}
	}
	assert_true(partial > 0);
	assert_int_equal(frame_out_pending(&q), 0);
	assert_int_equal(frame_in_pending(&in), 0);

	/* Nothing left to read: a non-blocking read says so. */
	assert_int_equal(frame_in_read(&in, sv[1], &err), -EAGAIN);

	/* The peer goes away: -EPIPE, not SIGPIPE. */
	Pinfer__Pong pong = PINFER__PONG__INIT;
	Pinfer__ServerMessage pm = PINFER__SERVER_MESSAGE__INIT;
	pm.msg_case = PINFER__SERVER_MESSAGE__MSG_PONG;
	pm.pong = &pong;
	close(sv[1]);
	assert_int_equal(frame_out_push(&q, &pm.base, &err), 0);
	assert_int_equal(frame_out_write(&q, sv[0], &err), -EPIPE);
	assert_non_null(strstr(err.msg, "write to fd"));
	close(sv[0]);
	frame_in_free(&in);
	frame_out_free(&q);
	free(text);
}

static void test_out_queue_limits(void **state)
{
	(void)state;
	struct pf_err err = { { 0 } };
	struct frame_out q;
	frame_out_init(&q, 1024, 3000);
	char text[2001];
	memset(text, 'x', 2000);
	text[2000] = '\0';
	Pinfer__Token t = PINFER__TOKEN__INIT;
	t.text = text;
	Pinfer__ServerMessage m = PINFER__SERVER_MESSAGE__INIT;
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_TOKEN;
	m.token = &t;
	assert_int_equal(frame_out_push(&q, &m.base, &err), -EMSGSIZE);
	assert_string_equal(err.msg, "ServerMessage of 2006 bytes exceeds the 1024-byte frame limit");
	assert_int_equal(frame_out_pending(&q), 0);

	text[900] = '\0';
	assert_int_equal(frame_out_push(&q, &m.base, &err), 0);
	assert_int_equal(frame_out_push(&q, &m.base, &err), 0);
	assert_int_equal(frame_out_push(&q, &m.base, &err), 0);
	size_t pending = frame_out_pending(&q);
	assert_int_equal(frame_out_push(&q, &m.base, &err), -ENOBUFS);
	assert_non_null(strstr(err.msg, "output queue full"));
	assert_int_equal(frame_out_pending(&q), pending);

	/* The blocking writer checks the same limit. */
	assert_int_equal(frame_write_all(-1, &m.base, 100, &err), -EMSGSIZE);
	frame_out_free(&q);
}

static void test_read_one_eof(void **state)
{
	(void)state;
	struct pf_err err = { { 0 } };
	const uint8_t *frame;
	size_t len;
	Pinfer__Ping ping = PINFER__PING__INIT;
	ping.request_id = 77;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_PING;
	m.ping = &ping;
	uint8_t buf[64];
	size_t n = 0;
	append_frame(buf, &n, &m.base);
	assert_int_equal(n, 8);

	/* Two frames written at once, then a clean end of file. */
	int sv[2];
	socket_pair(sv);
	assert_int_equal(frame_write_all(sv[0], &m.base, FRAME_MAX_DEFAULT, &err), 0);
	assert_int_equal(frame_write_all(sv[0], &m.base, FRAME_MAX_DEFAULT, &err), 0);
	close(sv[0]);
	struct frame_in in;
	frame_in_init(&in, FRAME_MAX_DEFAULT);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(frame_read_one(sv[1], &in, &frame, &len, &err), 1);
		assert_int_equal(ping_id(frame, len), 77);
	}
	assert_int_equal(frame_read_one(sv[1], &in, &frame, &len, &err), 0);
	frame_in_free(&in);
	close(sv[1]);

	/* Closed inside the length, then inside the message. */
	static const struct {
		size_t sent;
		const char *msg;
	} cut[] = {
		{ 2, "connection closed mid-frame (2 of the 4 length bytes)" },
		{ 5, "connection closed mid-frame (5 of 8 bytes)" },
	};
	for (size_t i = 0; i < 2; i++) {
		socket_pair(sv);
		assert_int_equal(write(sv[0], buf, cut[i].sent), (ssize_t)cut[i].sent);
		close(sv[0]);
		frame_in_init(&in, FRAME_MAX_DEFAULT);
		assert_int_equal(frame_read_one(sv[1], &in, &frame, &len, &err), -EPROTO);
		assert_non_null(strstr(err.msg, cut[i].msg));
		frame_in_free(&in);
		close(sv[1]);
	}

	/* A length over the limit. */
	socket_pair(sv);
	uint8_t big[4] = { 0, 0x10, 0, 1 };
	assert_int_equal(write(sv[0], big, 4), 4);
	frame_in_init(&in, FRAME_MAX_DEFAULT);
	assert_int_equal(frame_read_one(sv[1], &in, &frame, &len, &err), -EMSGSIZE);
	assert_string_equal(err.msg, "frame length 1048577 exceeds the 1048576-byte limit");
	frame_in_free(&in);

	/* Nothing arrives within SO_RCVTIMEO. */
	struct timeval tv = { 0, 10000 };
	assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	frame_in_init(&in, FRAME_MAX_DEFAULT);
	assert_int_equal(frame_read_one(sv[1], &in, &frame, &len, &err), -ETIMEDOUT);
	assert_non_null(strstr(err.msg, "timed out"));
	frame_in_free(&in);

	/* The daemon went away: the client's write fails, no SIGPIPE. */
	close(sv[1]);
	assert_int_equal(frame_write_all(sv[0], &m.base, FRAME_MAX_DEFAULT, &err), -EPIPE);
	assert_non_null(strstr(err.msg, "write to fd"));
	close(sv[0]);
	proto_arena_reset(&arena);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_client),
		cmocka_unit_test(test_roundtrip_server),
		cmocka_unit_test(test_arena_cap),
		cmocka_unit_test(test_extract_bytewise),
		cmocka_unit_test(test_extract_one_feed),
		cmocka_unit_test(test_extract_too_large),
		cmocka_unit_test(test_extract_zero_length),
		cmocka_unit_test(test_extract_bounded),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_out_queue_partial),
		cmocka_unit_test(test_out_queue_limits),
		cmocka_unit_test(test_read_one_eof),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
