#include "generate.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "json.h"
#include "report.h"

void gen_opts_init(struct gen_opts *o)
{
	memset(o, 0, sizeof(*o));
	pinfer__sampling__init(&o->sampling);
}

void gen_opts_free(struct gen_opts *o)
{
	free(o->stop);
	o->stop = NULL;
	o->n_stop = 0;
}

static int add_stop(struct gen_opts *o, char *s)
{
	char **p = realloc(o->stop, (o->n_stop + 1) * sizeof(*p));
	if (!p) {
		report("out of memory for --stop");
		return EXIT_FAIL;
	}
	p[o->n_stop++] = s;
	o->stop = p;
	return EXIT_OK;
}

int gen_opts_parse(struct gen_opts *o, int opt, char *arg)
{
	Pinfer__Sampling *s = &o->sampling;
	int r;
	switch (opt) {
	case 'n':
		o->has_n_predict = true;
		return arg_int("-n", arg, &o->n_predict);
	case OPT_KEEP_ALIVE:
		o->has_keep_alive = true;
		return arg_duration("--keep-alive", arg, &o->keep_alive_ms);
	case OPT_TEMPLATE:
		o->chat_template = arg;
		return EXIT_OK;
	case OPT_STOP:
		if (!*arg) {
			report("--stop needs a non-empty text");
			return EXIT_USAGE;
		}
		return add_stop(o, arg);
	/* The sampling fields: each sets its presence case (see pinfer.proto). */
	case 's':
		r = arg_seed("-s", arg, &s->seed);
		s->opt_seed_case = PINFER__SAMPLING__OPT_SEED_SEED;
		break;
	case OPT_TEMP:
		r = arg_float("--temp", arg, &s->temperature);
		s->opt_temperature_case = PINFER__SAMPLING__OPT_TEMPERATURE_TEMPERATURE;
		break;
	case OPT_TOP_K:
		r = arg_int("--top-k", arg, &s->top_k);
		s->opt_top_k_case = PINFER__SAMPLING__OPT_TOP_K_TOP_K;
		break;
	case OPT_TOP_P:
		r = arg_float("--top-p", arg, &s->top_p);
		s->opt_top_p_case = PINFER__SAMPLING__OPT_TOP_P_TOP_P;
		break;
	case OPT_MIN_P:
		r = arg_float("--min-p", arg, &s->min_p);
		s->opt_min_p_case = PINFER__SAMPLING__OPT_MIN_P_MIN_P;
		break;
	case OPT_REPEAT_PENALTY:
		r = arg_float("--repeat-penalty", arg, &s->repeat_penalty);
		s->opt_repeat_penalty_case = PINFER__SAMPLING__OPT_REPEAT_PENALTY_REPEAT_PENALTY;
		break;
	case OPT_REPEAT_LAST_N:
		r = arg_int("--repeat-last-n", arg, &s->repeat_last_n);
		s->opt_repeat_last_n_case = PINFER__SAMPLING__OPT_REPEAT_LAST_N_REPEAT_LAST_N;
		break;
	case OPT_PRESENCE_PENALTY:
		r = arg_float("--presence-penalty", arg, &s->presence_penalty);
		s->opt_presence_penalty_case =
			PINFER__SAMPLING__OPT_PRESENCE_PENALTY_PRESENCE_PENALTY;
		break;
	case OPT_FREQUENCY_PENALTY:
		r = arg_float("--frequency-penalty", arg, &s->frequency_penalty);
		s->opt_frequency_penalty_case =
			PINFER__SAMPLING__OPT_FREQUENCY_PENALTY_FREQUENCY_PENALTY;
		break;
	default:
		return -1;
	}
	o->has_sampling = true;
	return r;
}

void gen_opts_apply(struct gen_opts *o, Pinfer__Generate *g)
{
	if (o->has_sampling)
		g->sampling = &o->sampling;
	if (o->has_n_predict) {
		g->opt_n_predict_case = PINFER__GENERATE__OPT_N_PREDICT_N_PREDICT;
		g->n_predict = o->n_predict;
	}
	if (o->has_keep_alive) {
		g->opt_keep_alive_ms_case = PINFER__GENERATE__OPT_KEEP_ALIVE_MS_KEEP_ALIVE_MS;
		g->keep_alive_ms = o->keep_alive_ms;
	}
	if (o->chat_template) {
		g->opt_chat_template_case = PINFER__GENERATE__OPT_CHAT_TEMPLATE_CHAT_TEMPLATE;
		g->chat_template = o->chat_template;
	}
	g->stop = o->stop;
	g->n_stop = o->n_stop;
}

void gen_stats_free(struct gen_stats *st)
{
	free(st->stop);
	st->stop = NULL;
}

static int take_done(const Pinfer__Done *d, struct gen_stats *st)
{
	st->reason = d->reason;
	st->prompt_tokens = d->prompt_tokens;
	st->cached_prompt_tokens = d->cached_prompt_tokens;
	st->generated_tokens = d->generated_tokens;
	st->load_ns = d->load_ns;
	st->prompt_ns = d->prompt_ns;
	st->decode_ns = d->decode_ns;
	if (d->reason == PINFER__DONE_REASON__DONE_STOP && d->stop) {
		st->stop = strdup(d->stop);
		if (!st->stop) {
			report("out of memory copying the stop string");
			return EXIT_FAIL;
		}
	}
	return EXIT_OK;
}

/* The request's end, from its Done frame. */
static int finish(const Pinfer__Done *d, bool interrupted, struct gen_stats *st)
{
	int r = take_done(d, st);
	if (r)
		return r;
	if (interrupted)
		return EXIT_INTR;
	switch (d->reason) {
	case PINFER__DONE_REASON__DONE_ERROR:
		if (d->error)
			return report_daemon_error(d->error);
		report("the generation failed (pinferd gave no reason)");
		return EXIT_FAIL;
	case PINFER__DONE_REASON__DONE_CANCELLED:
		report("pinferd cancelled the generation (is it shutting down?)");
		return EXIT_FAIL;
	default:
		/* Unknown reasons end the request too (docs/protocol.md). */
		return EXIT_OK;
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int gen_stream(struct conn *c, Pinfer__Generate *g, gen_token_fn on_token, void *ctx,
	       struct gen_stats *st)
{
	memset(st, 0, sizeof(*st));
	uint64_t id = conn_new_id(c);
	g->request_id = id;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_GENERATE;
	m.generate = g;
	uint64_t t_sent = now_ns(), t_first = 0;
	int r = conn_send(c, &m);
	if (r)
		return r;
	bool interrupted = false;
	int64_t deadline = -1;
	for (;;) {
		Pinfer__ServerMessage *msg;
		switch (conn_recv(c, deadline, true, &msg)) {
		case RECV_MSG:
			break;
		case RECV_INTR:
			if (interrupted) {
				/* A second Ctrl-C: stop waiting. */
				st->reason = PINFER__DONE_REASON__DONE_CANCELLED;
				return EXIT_INTR;
			}
			interrupted = true;
			/* The text already received stays; the Done reports
			 * how far the generation got. */
			if (conn_cancel(c, id)) {
				st->reason = PINFER__DONE_REASON__DONE_CANCELLED;
				return EXIT_INTR;
			}
			deadline = conn_now_ms() + CANCEL_WAIT_MS;
			continue;
		case RECV_TIMEOUT:
			/* Only after Ctrl-C: leaving closes the connection, which
			 * cancels too. */
			st->reason = PINFER__DONE_REASON__DONE_CANCELLED;
			return EXIT_INTR;
		case RECV_FAILED:
			return EXIT_PROTO;
		}
		switch (msg->msg_case) {
		case PINFER__SERVER_MESSAGE__MSG_TOKEN:
			if (msg->token->request_id != id)
				continue;
			if (!t_first) {
				t_first = now_ns();
				st->first_token_ns = t_first - t_sent;
			}
			st->token_frames++;
			r = on_token(ctx, msg->token);
			if (r)
				return r;
			continue;
		case PINFER__SERVER_MESSAGE__MSG_DONE:
			if (msg->done->request_id != id)
				continue;
			if (t_first)
				st->stream_ns = now_ns() - t_first;
			return finish(msg->done, interrupted, st);
		case PINFER__SERVER_MESSAGE__MSG_ERROR:
			if (msg->error->request_id != id && msg->error->request_id != 0)
				continue;
			r = report_daemon_error(msg->error);
			return interrupted ? EXIT_INTR : r;
		default:
			continue;  /* nothing else is in flight on this connection */
		}
	}
}

const char *gen_reason_name(Pinfer__DoneReason reason, char *buf, size_t size)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&pinfer__done_reason__descriptor, (int)reason);
	if (!v) {
		snprintf(buf, size, "reason %d", (int)reason);
		return buf;
	}
	const char *name = !strncmp(v->name, "DONE_", 5) ? v->name + 5 : v->name;
	size_t i = 0;
	for (; name[i] && i + 1 < size; i++)
		buf[i] = (char)tolower((unsigned char)name[i]);
	buf[i] = '\0';
	return buf;
}

static double per_second(uint64_t n, uint64_t ns)
{
	return ns ? (double)n * 1e9 / (double)ns : 0.0;
}

void gen_stats_print(const struct gen_stats *st)
{
	char reason[32];
	uint32_t evaluated = st->prompt_tokens - st->cached_prompt_tokens;
	fprintf(stderr, "load:      %.2f ms\n", st->load_ns / 1e6);
	fprintf(stderr, "prompt:    %u tokens (%u cached) in %.2f ms, %.1f tok/s\n",
		st->prompt_tokens, st->cached_prompt_tokens, st->prompt_ns / 1e6,
		per_second(evaluated, st->prompt_ns));
	fprintf(stderr, "generated: %u tokens in %.2f ms, %.1f tok/s\n", st->generated_tokens,
		st->decode_ns / 1e6, per_second(st->generated_tokens, st->decode_ns));
	if (st->first_token_ns)
		fprintf(stderr, "client:    first token %.2f ms after sending, then %.1f tok/s as received\n",
			st->first_token_ns / 1e6,
			per_second(st->generated_tokens > 1 ? st->generated_tokens - 1 : 0, st->stream_ns));
	fprintf(stderr, "ended:     %s", gen_reason_name(st->reason, reason, sizeof(reason)));
	if (st->stop) {
		fputs(" at ", stderr);
		json_cstr(stderr, st->stop);
	}
	fputc('\n', stderr);
}

void gen_stats_json(FILE *f, const struct gen_stats *st)
{
	char reason[32];
	uint32_t evaluated = st->prompt_tokens - st->cached_prompt_tokens;
	fputs("\"reason\":", f);
	json_cstr(f, gen_reason_name(st->reason, reason, sizeof(reason)));
	fputs(",\"stop\":", f);
	json_cstr(f, st->stop);
	fprintf(f,
		",\"prompt_tokens\":%u,\"cached_prompt_tokens\":%u,\"generated_tokens\":%u"
		",\"load_ms\":%.3f,\"prompt_ms\":%.3f,\"decode_ms\":%.3f"
		",\"prompt_tok_s\":%.1f,\"decode_tok_s\":%.1f,\"first_token_ms\":%.3f",
		st->prompt_tokens, st->cached_prompt_tokens, st->generated_tokens,
		st->load_ns / 1e6, st->prompt_ns / 1e6, st->decode_ns / 1e6,
		per_second(evaluated, st->prompt_ns), per_second(st->generated_tokens, st->decode_ns),
		st->first_token_ns / 1e6);
}
