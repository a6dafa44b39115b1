/* The daemon's input path from bytes to a request it accepts, as conn.c
 * runs it: the byte stream split into frames (fed in uneven pieces so that
 * frames and headers straddle them), each frame decoded through the capped
 * arena as a ClientMessage, its strings checked for UTF-8, then the
 * handlers' field checks (request_check.h) and, for a Generate, its chat
 * rendered through a built-in template. The client's decoder (for
 * ServerMessage) gets every frame too. */
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "frame.h"
#include "fuzz_util.h"
#include "pinfer.h"
#include "request_check.h"

#define MAX_FRAME FRAME_MAX_MIN
/* The daemon's own cap (conn.c) for this max_frame. */
#define ARENA_CAP (4 * MAX_FRAME + 65536)
#define MAX_PREDICT 4096

static const char *const templates[] = { "llama2", "mistral-v3", "llama3", "chatml", "zephyr", "phi3", "gemma" };
#define N_TEMPLATES (sizeof(templates) / sizeof(templates[0]))

/* As the handlers build a prompt: an explicit template (which must exist)
 * or, standing in for the model's own, one picked by the request id. */
static void render(const Pinfer__Generate *g)
{
	const char *name = g->opt_chat_template_case ? pinfer_chat_template_find(g->chat_template)
						     : templates[g->request_id % N_TEMPLATES];
	if (!name || g->raw)
		return;
	bool chat = g->input_case == PINFER__GENERATE__INPUT_CHAT;
	size_t n = chat ? g->chat->n_messages : 1;
	struct pinfer_chat_msg *msgs = calloc(n ? n : 1, sizeof(*msgs));
	if (!msgs)
		abort();
	for (size_t i = 0; i < n; i++) {
		msgs[i].role = chat ? g->chat->messages[i]->role : "user";
		msgs[i].content = chat ? g->chat->messages[i]->content
				       : g->input_case == PINFER__GENERATE__INPUT_PROMPT ? g->prompt : "";
	}
	int need = pinfer_chat_render(name, msgs, n, true, NULL, 0);
	if (need >= 0) {
		char *text = malloc((size_t)need + 1);
		if (!text)
			abort();
		/* The second pass must fit exactly what the first one counted. */
		if (pinfer_chat_render(name, msgs, n, true, text, (size_t)need) != need)
			abort();
		free(text);
	}
	free(msgs);
}

static void handle(const Pinfer__ClientMessage *m)
{
	char why[160];
	if (m->msg_case == PINFER__CLIENT_MESSAGE__MSG_GENERATE) {
		int n_predict;
		if (!request_check_generate(m->generate, MAX_PREDICT, &n_predict, why, sizeof(why))) {
			if (n_predict < 0 || n_predict > MAX_PREDICT)
				abort();
			render(m->generate);
		}
	} else if (m->msg_case == PINFER__CLIENT_MESSAGE__MSG_LOAD_MODEL) {
		enum pinfer_sparsity mode;
		struct models_budget budget;
		request_check_load(m->load_model, &mode, &budget, why, sizeof(why));
	}
}

static void frame(struct proto_arena *a, const uint8_t *buf, size_t len)
{
	struct pf_err err = { { 0 } };
	Pinfer__ServerMessage *sm;
	proto_arena_reset(a);
	int r = proto_decode_server(a, buf, len, &sm, &err);
	fuzz_check_err(r, &err, "proto_decode_server");
	if (!r) {
		r = proto_check_utf8(&sm->base, &err);
		fuzz_check_err(r, &err, "proto_check_utf8");
	}
	Pinfer__ClientMessage *m;
	proto_arena_reset(a);
	memset(&err, 0, sizeof(err));
	r = proto_decode_client(a, buf, len, &m, &err);
	fuzz_check_err(r, &err, "proto_decode_client");
	if (r)
		return;
	r = proto_check_utf8(&m->base, &err);
	fuzz_check_err(r, &err, "proto_check_utf8");
	if (!r)
		handle(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct frame_in in;
	struct proto_arena a;
	frame_in_init(&in, MAX_FRAME);
	proto_arena_init(&a, ARENA_CAP);
	struct pf_err err = { { 0 } };
	for (size_t off = 0, piece = 1; off < size; piece = piece * 7 % 1021 + 1) {
		size_t n = size - off < piece ? size - off : piece;
		ssize_t took = frame_in_feed(&in, data + off, n, &err);
		if (took < 0)
			abort();
		off += (size_t)took;
		const uint8_t *f;
		size_t len;
		enum frame_status st;
		int frames = 0;
		while ((st = frame_in_next(&in, &f, &len, &err)) == FRAME_READY) {
			frame(&a, f, len);
			frames++;
		}
		if (st == FRAME_TOO_LARGE)
			break;  /* the daemon closes the connection */
		if (took == 0 && frames == 0)
			abort();  /* a full buffer that holds no frame: the stream would hang */
	}
	proto_arena_destroy(&a);
	frame_in_free(&in);
	return 0;
}
