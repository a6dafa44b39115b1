#include "ops.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "message.h"

static const char *const prompts[] = {
	"Once upon a time", "The little dog", "Lily and Tom went to the park", "", "One day, a girl",
};

/* splitmix64: each client's own deterministic stream. */
static uint64_t rnd(struct client *c)
{
	uint64_t z = (c->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* How a generation is treated once its first token arrives. */
enum gen_mode { GEN_FULL, GEN_CANCEL, GEN_HANGUP };

static int send_generate(struct client *c, struct wire *w, uint64_t id, const char *model, int64_t deadline,
			 struct pf_err *why)
{
	Pinfer__Sampling s = PINFER__SAMPLING__INIT;
	s.opt_temperature_case = PINFER__SAMPLING__OPT_TEMPERATURE_TEMPERATURE;
	s.temperature = 1.0f;
	s.opt_seed_case = PINFER__SAMPLING__OPT_SEED_SEED;
	s.seed = rnd(c) >> 1;
	Pinfer__Generate g = PINFER__GENERATE__INIT;
	g.request_id = id;
	g.model = (char *)model;
	g.input_case = PINFER__GENERATE__INPUT_PROMPT;
	g.prompt = (char *)prompts[rnd(c) % (sizeof(prompts) / sizeof(prompts[0]))];
	g.sampling = &s;
	g.opt_n_predict_case = PINFER__GENERATE__OPT_N_PREDICT_N_PREDICT;
	g.n_predict = c->cfg->n_predict;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_GENERATE;
	m.generate = &g;
	return wire_send(w, &m, deadline, why);
}

static int send_cancel(struct wire *w, uint64_t id, int64_t deadline, struct pf_err *why)
{
	Pinfer__Cancel cancel = PINFER__CANCEL__INIT;
	cancel.request_id = id;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_CANCEL;
	m.cancel = &cancel;
	return wire_send(w, &m, deadline, why);
}

static const char *status_name(enum wire_status st)
{
	return st == WIRE_CLOSED ? "the daemon closed the connection" : "no reply before the deadline";
}

/* Streams one generation on w and counts how it ended. Returns 0 when w
 * may carry the next request, -1 when it must be closed. */
static int generate(struct client *c, struct wire *w, const char *model, enum gen_mode mode)
{
	struct pf_err why;
	int64_t start = wire_now_ms(), deadline = start + c->cfg->timeout_ms, first = -1;
	uint64_t id = c->next_id++;
	if (send_generate(c, w, id, model, deadline, &why)) {
		stats_fail(&c->st, "client %d: Generate on %s: %s", c->index, model, why.msg);
		return -1;
	}
	bool cancelled = false;
	for (;;) {
		Pinfer__ServerMessage *m;
		enum wire_status st = wire_recv(w, deadline, &m, &why);
		if (st != WIRE_MSG) {
			stats_fail(&c->st, "client %d: generation %llu on %s: %s", c->index, (unsigned long long)id,
				   model, st == WIRE_FAILED ? why.msg : status_name(st));
			return -1;
		}
		uint64_t rid = proto_reply_id(m);
		if (m->msg_case == PINFER__SERVER_MESSAGE__MSG_ERROR && (rid == id || rid == 0)) {
			if (m->error->code == PINFER__ERROR_CODE__ERR_BUSY && rid == id) {
				c->st.refused++;
				long ms = 10 + (long)(rnd(c) % 41);
				struct timespec pause = { 0, ms * 1000000L };
				nanosleep(&pause, NULL);
				return 0;
			}
			stats_fail(&c->st, "client %d: generation %llu on %s: error %d: %s", c->index,
				   (unsigned long long)id, model, m->error->code, m->error->message);
			return rid == 0 ? -1 : 0;
		}
		if (rid != id) {
			stats_fail(&c->st, "client %d: a reply for request %llu while %llu runs", c->index,
				   (unsigned long long)rid, (unsigned long long)id);
			return -1;
		}
		if (m->msg_case == PINFER__SERVER_MESSAGE__MSG_TOKEN) {
			if (first >= 0)
				continue;
			first = wire_now_ms();
			if (mode == GEN_HANGUP) {
				c->st.disconnected++;
				return -1;
			}
			if (mode == GEN_CANCEL) {
				if (send_cancel(w, id, deadline, &why)) {
					stats_fail(&c->st, "client %d: Cancel %llu: %s", c->index,
						   (unsigned long long)id, why.msg);
					return -1;
				}
				cancelled = true;
			}
			continue;
		}
		if (m->msg_case != PINFER__SERVER_MESSAGE__MSG_DONE) {
			stats_fail(&c->st, "client %d: generation %llu answered with message %d", c->index,
				   (unsigned long long)id, m->msg_case);
			return -1;
		}
		Pinfer__DoneReason r = m->done->reason;
		bool ended = r == PINFER__DONE_REASON__DONE_LENGTH || r == PINFER__DONE_REASON__DONE_EOS ||
			     r == PINFER__DONE_REASON__DONE_STOP;
		if (mode != GEN_FULL && (ended || (cancelled && r == PINFER__DONE_REASON__DONE_CANCELLED))) {
			/* The Cancel may cross the last frames: ending anyway is fine. */
			if (mode == GEN_CANCEL)
				c->st.cancelled++;
			else
				c->st.disconnected++;
			return mode == GEN_HANGUP ? -1 : 0;
		}
		if (!ended) {
			stats_fail(&c->st, "client %d: generation %llu on %s ended with reason %d%s%s", c->index,
				   (unsigned long long)id, model, r, m->done->error ? ": " : "",
				   m->done->error ? m->done->error->message : "");
			return 0;
		}
		int64_t end = wire_now_ms();
		c->st.answered++;
		c->st.tokens += m->done->generated_tokens;
		if (samples_add(&c->st.ttft, (double)((first >= 0 ? first : end) - start)) ||
		    samples_add(&c->st.total, (double)(end - start)))
			stats_fail(&c->st, "client %d: out of memory for latency samples", c->index);
		return 0;
	}
}

/* A generation on the kept connection, opened first when needed. */
static void generate_kept(struct client *c, const char *model, enum gen_mode mode)
{
	struct pf_err why;
	if (c->conn.fd < 0 && wire_open(&c->conn, c->cfg->socket, wire_now_ms() + c->cfg->timeout_ms, &why)) {
		stats_fail(&c->st, "client %d: %s", c->index, why.msg);
		return;
	}
	if (generate(c, &c->conn, model, mode))
		wire_close(&c->conn);
}

/* A fresh connection whose generation is dropped after its first token. */
static void hang_up(struct client *c)
{
	struct wire w;
	struct pf_err why;
	if (wire_open(&w, c->cfg->socket, wire_now_ms() + c->cfg->timeout_ms, &why)) {
		stats_fail(&c->st, "client %d: %s", c->index, why.msg);
		return;
	}
	generate(c, &w, c->cfg->model, GEN_HANGUP);
	wire_close(&w);
}

/* Expects the daemon to answer with an Error about the connection, code,
 * and then to close it. */
static void expect_fatal(struct client *c, struct wire *w, Pinfer__ErrorCode code, const char *what)
{
	struct pf_err why;
	int64_t deadline = wire_now_ms() + c->cfg->timeout_ms;
	Pinfer__ServerMessage *m;
	enum wire_status st = wire_recv(w, deadline, &m, &why);
	if (st != WIRE_MSG || m->msg_case != PINFER__SERVER_MESSAGE__MSG_ERROR || m->error->code != code ||
	    m->error->request_id != 0) {
		stats_fail(&c->st, "client %d: %s: expected error %d, got %s", c->index, what, code,
			   st == WIRE_MSG ? "another reply" : st == WIRE_FAILED ? why.msg : status_name(st));
		return;
	}
	st = wire_recv(w, deadline, &m, &why);
	if (st != WIRE_CLOSED)
		stats_fail(&c->st, "client %d: %s: the connection stayed open after the error", c->index, what);
}

/* One malformed frame on a connection of its own. */
static void malformed(struct client *c)
{
	struct wire w;
	struct pf_err why;
	int64_t deadline = wire_now_ms() + c->cfg->timeout_ms;
	if (wire_open(&w, c->cfg->socket, deadline, &why)) {
		stats_fail(&c->st, "client %d: %s", c->index, why.msg);
		return;
	}
	uint8_t buf[4 + 256];
	size_t body = 1 + rnd(c) % 255;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)rnd(c);
	switch (rnd(c) % 3) {
	case 0:
		/* Field 1 with wire type 7, which no protobuf decoder accepts,
		 * then random bytes. */
		buf[0] = 0;
		buf[1] = 0;
		buf[2] = 0;
		buf[3] = (uint8_t)body;
		buf[4] = 0x0f;
		if (!wire_send_bytes(&w, buf, 4 + body, deadline, &why))
			expect_fatal(c, &w, PINFER__ERROR_CODE__ERR_DECODE_ERROR, "a frame of garbage");
		else
			stats_fail(&c->st, "client %d: sending garbage: %s", c->index, why.msg);
		c->st.garbage++;
		break;
	case 1: {
		uint32_t len = (uint32_t)w.max_frame + 1 + (uint32_t)(rnd(c) % 0x7f000000u);
		buf[0] = (uint8_t)(len >> 24);
		buf[1] = (uint8_t)(len >> 16);
		buf[2] = (uint8_t)(len >> 8);
		buf[3] = (uint8_t)len;
		if (!wire_send_bytes(&w, buf, 4 + body, deadline, &why))
			expect_fatal(c, &w, PINFER__ERROR_CODE__ERR_FRAME_TOO_LARGE, "a length over max_frame");
		else
			stats_fail(&c->st, "client %d: sending a length over max_frame: %s", c->index, why.msg);
		c->st.oversized++;
		break;
	}
	default:
		/* A frame announced longer than what comes before the hang-up:
		 * nothing to answer, only to forget. */
		buf[0] = 0;
		buf[1] = 0;
		buf[2] = 1;
		buf[3] = 0;
		if (wire_send_bytes(&w, buf, 4 + body, deadline, &why))
			stats_fail(&c->st, "client %d: sending a truncated frame: %s", c->index, why.msg);
		c->st.truncated++;
		break;
	}
	wire_close(&w);
}

void *client_run(void *arg)
{
	struct client *c = arg;
	c->conn.fd = -1;
	c->next_id = 1;
	while (wire_now_ms() < c->cfg->end_ms && !atomic_load(&c->cfg->daemon_gone)) {
		const char *second = c->cfg->second_model && !atomic_load(&c->cfg->second_draining)
					     ? c->cfg->second_model : c->cfg->model;
		unsigned pick = (unsigned)(rnd(c) % 100);
		if (pick < 45)
			generate_kept(c, c->cfg->model, GEN_FULL);
		else if (pick < 55)
			generate_kept(c, second, GEN_FULL);
		else if (pick < 70)
			generate_kept(c, c->cfg->model, GEN_CANCEL);
		else if (pick < 80)
			hang_up(c);
		else
			malformed(c);
	}
	wire_close(&c->conn);
	return NULL;
}
