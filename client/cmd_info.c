/* The short request/reply commands: list, ps, status, ping, tokenize, load
 * and evict (or unload). Each connects, sends one request and prints its
 * reply, as a table for people or (--json) one JSON object per line for
 * scripts. load, evict and ps ask pinferd on D-Bus first when --bus says
 * so (bus.h), and print the same from what the bus answers. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "buf.h"
#include "bus.h"
#include "commands.h"
#include "conn.h"
#include "json.h"
#include "report.h"

static const struct option common_only[] = { COMMON_LONG_OPTS };

/* ---- Formatting ---- */

/* "512 B", "1.1 MiB", "3.9 GiB". */
static const char *human_size(uint64_t bytes, char *buf, size_t size)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, size, "%" PRIu64 " B", bytes);
	else
		snprintf(buf, size, "%.1f %s", v, units[u]);
	return buf;
}

/* "2h 3m", "4m 59s", "30s": the two largest units, as people read them. */
static const char *human_duration(uint64_t ms, char *buf, size_t size)
{
	uint64_t s = ms / 1000, d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;
	s %= 60;
	if (d)
		snprintf(buf, size, "%" PRIu64 "d %" PRIu64 "h", d, h);
	else if (h)
		snprintf(buf, size, "%" PRIu64 "h %" PRIu64 "m", h, m);
	else if (m)
		snprintf(buf, size, "%" PRIu64 "m %" PRIu64 "s", m, s);
	else
		snprintf(buf, size, "%" PRIu64 "s", s);
	return buf;
}

/* Monotonic, with the sub-millisecond precision a ping's round trip needs. */
static double mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int64_t unix_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* When a loaded model goes: "in 4m 59s", "forever", or, while requests
 * run on it (the daemon starts the countdown when they end, and reports 0
 * until then), "when idle". */
static const char *expiry_text(const Pinfer__ModelInfo *mi, char *buf, size_t size)
{
	if (!mi->loaded)
		return "-";
	if (mi->expires_at_ms < 0)
		return "forever";
	if (mi->expires_at_ms == 0)
		return "when idle";
	int64_t left = mi->expires_at_ms - unix_now_ms();
	char d[32];
	snprintf(buf, size, "in %s", human_duration(left > 0 ? (uint64_t)left : 0, d, sizeof(d)));
	return buf;
}

/* object: the model's D-Bus object when it came from the bus, else NULL. */
static void model_json(const Pinfer__ModelInfo *mi, const char *object)
{
	fputs("{\"name\":", stdout);
	json_cstr(stdout, mi->name);
	fputs(",\"path\":", stdout);
	json_cstr(stdout, mi->path);
	printf(",\"size_bytes\":%" PRIu64 ",\"loaded\":%s,\"memory_bytes\":%" PRIu64
	       ",\"expires_at_ms\":%" PRId64 ",\"slots_total\":%u,\"slots_busy\":%u,\"arch\":",
	       mi->size_bytes, mi->loaded ? "true" : "false", mi->memory_bytes, mi->expires_at_ms,
	       mi->slots_total, mi->slots_busy);
	json_cstr(stdout, mi->arch);
	printf(",\"n_params\":%" PRIu64 ",\"quant\":", mi->n_params);
	json_cstr(stdout, mi->quant);
	printf(",\"context_length\":%u,\"chat_template\":", mi->context_length);
	json_cstr(stdout, mi->chat_template);
	fputs(",\"sparsity\":", stdout);
	json_cstr(stdout, mi->sparsity);
	printf(",\"measured_sparsity\":%.4f,\"tokens_generated\":%" PRIu64 ",\"decode_tokens_per_second\":%.2f",
	       mi->measured_sparsity, mi->tokens_generated, mi->decode_tokens_per_second);
	printf(",\"memory_budget\":%" PRIu64 ",\"neuron_cache_bytes\":%" PRIu64
	       ",\"neuron_cache_hit_rate\":%.4f,\"bytes_read_per_token\":%.1f",
	       mi->memory_budget, mi->neuron_cache_bytes, mi->neuron_cache_hit_rate, mi->bytes_read_per_token);
	if (object && *object) {
		fputs(",\"object\":", stdout);
		json_cstr(stdout, object);
	}
	fputs("}\n", stdout);
}

/* ---- One request, one reply ---- */

static int flush_stdout(void)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return EXIT_OK;
	report("cannot write to stdout: %s", strerror(errno));
	return EXIT_FAIL;
}

/* What a reply's printer may need besides the reply. */
struct reply_ctx {
	const struct global *g;
	const struct conn *c;
	const void *req;   /* the request sent, e.g. a Pinfer__UnloadModel */
	double sent_ms;    /* mono_ms() when it was sent */
};

typedef int (*print_fn)(const struct reply_ctx *x, const Pinfer__ServerMessage *reply);

/* Connects, sends m, whose message is req with its request id at *id, and
 * passes the reply of type want to print. */
static int request(struct global *g, Pinfer__ClientMessage *m, const void *req, uint64_t *id,
		   Pinfer__ServerMessage__MsgCase want, print_fn print)
{
	struct conn c;
	int r = conn_open(&c, g->socket);
	if (r)
		return r;
	*id = conn_new_id(&c);
	struct reply_ctx x = { .g = g, .c = &c, .req = req, .sent_ms = mono_ms() };
	Pinfer__ServerMessage *reply;
	r = conn_call(&c, m, *id, want, &reply);
	if (!r)
		r = print(&x, reply);
	if (!r)
		r = flush_stdout();
	conn_close(&c);
	return r;
}

/* A command that takes no operands and no options of its own. */
static int no_operands(struct global *g, int argc, char **argv, const char *usage)
{
	int first, r = args_parse(g, argc, argv, ":" COMMON_SHORT_OPTS, common_only, usage, NULL,
				  NULL, &first);
	return r ? r : args_count(argc - first, 0, 0, usage);
}

/* ---- list and ps ---- */

/* The NAME column's width: the longest name, or the heading. */
static int name_width(Pinfer__ModelInfo *const *models, size_t n)
{
	size_t w = strlen("NAME");
	for (size_t i = 0; i < n; i++)
		if (strlen(models[i]->name) > w)
			w = strlen(models[i]->name);
	return (int)w;
}

static int print_list(const struct reply_ctx *x, const Pinfer__ServerMessage *reply)
{
	const Pinfer__ListModelsReply *lr = reply->list_models_reply;
	if (x->g->json) {
		for (size_t i = 0; i < lr->n_models; i++)
			model_json(lr->models[i], NULL);
		return EXIT_OK;
	}
	int w = name_width(lr->models, lr->n_models);
	printf("%-*s  %10s  %s\n", w, "NAME", "SIZE", "LOADED");
	for (size_t i = 0; i < lr->n_models; i++) {
		const Pinfer__ModelInfo *mi = lr->models[i];
		char size[32];
		printf("%-*s  %10s  %s\n", w, mi->name, human_size(mi->size_bytes, size, sizeof(size)),
		       mi->loaded ? "yes" : "no");
	}
	return EXIT_OK;
}

/* ps's table, or its JSON lines; objects[i]: models[i]'s D-Bus object
 * (objects NULL: from the socket). */
static void print_ps_models(const struct global *g, Pinfer__ModelInfo *const *models,
			    const char *const *objects, size_t n)
{
	if (g->json) {
		for (size_t i = 0; i < n; i++)
			model_json(models[i], objects ? objects[i] : NULL);
		return;
	}
	int w = name_width(models, n);
	printf("%-*s  %10s  %-7s  %-15s  %7s  %s\n", w, "NAME", "MEMORY", "SLOTS", "SPARSITY", "TOK/S",
	       "EXPIRES");
	for (size_t i = 0; i < n; i++) {
		const Pinfer__ModelInfo *mi = models[i];
		char mem[32], slots[32], exp[48], sparsity[48], speed[16] = "-";
		snprintf(slots, sizeof(slots), "%u/%u", mi->slots_busy, mi->slots_total);
		/* The mode, and what the finished generations measured. */
		if (mi->tokens_generated && mi->sparsity && strcmp(mi->sparsity, "dense"))
			snprintf(sparsity, sizeof(sparsity), "%s %.0f%%", mi->sparsity, 100.0 * mi->measured_sparsity);
		else
			snprintf(sparsity, sizeof(sparsity), "%s", mi->sparsity && *mi->sparsity ? mi->sparsity : "-");
		if (mi->tokens_generated)
			snprintf(speed, sizeof(speed), "%.1f", mi->decode_tokens_per_second);
		printf("%-*s  %10s  %-7s  %-15s  %7s  %s\n", w, mi->name,
		       human_size(mi->memory_bytes, mem, sizeof(mem)), slots, sparsity, speed,
		       expiry_text(mi, exp, sizeof(exp)));
	}
}

static int print_ps(const struct reply_ctx *x, const Pinfer__ServerMessage *reply)
{
	const Pinfer__ListModelsReply *lr = reply->list_models_reply;
	print_ps_models(x->g, lr->models, NULL, lr->n_models);
	return EXIT_OK;
}

/* ---- D-Bus or socket ---- */

typedef int (*bus_fn)(struct global *g, struct bus_conn *b, void *ctx);

/* Runs fn on the bus g->bus names. BUS_FALLBACK (said with -v): pinferd
 * is not there, use the socket; else fn's exit code. */
static int via_bus(struct global *g, bus_fn fn, void *ctx)
{
	if (g->bus == BUS_NONE)
		return BUS_FALLBACK;
	struct bus_conn b;
	int r = bus_open(&b, g->bus, g->verbose);
	if (!r) {
		if (g->verbose)
			report("asking %s on the %s bus", BUS_NAME, bus_choice_name(g->bus));
		r = fn(g, &b, ctx);
	}
	if (r == BUS_FALLBACK && g->verbose)
		report("%s; using the socket %s", b.why, g->socket);
	bus_close(&b);
	if (!r)
		r = flush_stdout();
	return r;
}

static int ps_on_bus(struct global *g, struct bus_conn *b, void *ctx)
{
	(void)ctx;
	struct bus_model *models;
	size_t n;
	int r = bus_loaded_models(b, &models, &n);
	if (r)
		return r;
	Pinfer__ModelInfo **infos = calloc(n ? n : 1, sizeof(*infos));
	const char **objects = calloc(n ? n : 1, sizeof(*objects));
	if (infos && objects) {
		for (size_t i = 0; i < n; i++) {
			infos[i] = &models[i].mi;
			objects[i] = models[i].object;
		}
		print_ps_models(g, infos, objects, n);
	} else {
		report("out of memory");
		r = EXIT_FAIL;
	}
	free(infos);
	free(objects);
	bus_models_free(models, n);
	return r;
}

static int list_models(struct global *g, int argc, char **argv, const char *usage, bool loaded)
{
	int r = no_operands(g, argc, argv, usage);
	if (r)
		return r;
	if (loaded && (r = via_bus(g, ps_on_bus, NULL)) != BUS_FALLBACK)
		return r;
	Pinfer__ListModels lm = PINFER__LIST_MODELS__INIT;
	lm.loaded_only = loaded;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_LIST_MODELS;
	m.list_models = &lm;
	return request(g, &m, &lm, &lm.request_id, PINFER__SERVER_MESSAGE__MSG_LIST_MODELS_REPLY,
		       loaded ? print_ps : print_list);
}

int cmd_list(struct global *g, int argc, char **argv)
{
	return list_models(g, argc, argv,
			   "usage: pinfer list [--json]\n"
			   "Lists the models in pinferd's model directory: name, file size, and\n"
			   "whether it is loaded.\n",
			   false);
}

int cmd_ps(struct global *g, int argc, char **argv)
{
	return list_models(g, argc, argv,
			   "usage: pinfer ps [--json]\n"
			   "Lists the loaded models: memory, slots busy/total, and when each\n"
			   "unloads if it stays idle. Asks pinferd on D-Bus when --bus says so\n"
			   "(Manager.LoadedModels), else on the socket.\n",
			   true);
}

/* ---- status and ping ---- */

static int print_status(const struct reply_ctx *x, const Pinfer__ServerMessage *reply)
{
	const Pinfer__StatusReply *s = reply->status_reply;
	if (x->g->json) {
		fputs("{\"daemon_version\":", stdout);
		json_cstr(stdout, s->daemon_version);
		fputs(",\"socket\":", stdout);
		json_cstr(stdout, x->c->path);
		printf(",\"uptime_ms\":%" PRIu64 ",\"models_loaded\":%u,\"memory_used_bytes\":%" PRIu64
		       ",\"memory_budget_bytes\":%" PRIu64 ",\"requests_active\":%u"
		       ",\"requests_queued\":%u,\"connections\":%u,\"models\":[",
		       s->uptime_ms, s->models_loaded, s->memory_used_bytes, s->memory_budget_bytes,
		       s->requests_active, s->requests_queued, s->connections);
		for (size_t i = 0; i < s->n_models; i++) {
			const Pinfer__ModelInfo *mi = s->models[i];
			fputs(i ? ",{\"name\":" : "{\"name\":", stdout);
			json_cstr(stdout, mi->name);
			fputs(",\"sparsity\":", stdout);
			json_cstr(stdout, mi->sparsity);
			printf(",\"measured_sparsity\":%.4f,\"tokens_generated\":%" PRIu64
			       ",\"decode_tokens_per_second\":%.2f}",
			       mi->measured_sparsity, mi->tokens_generated, mi->decode_tokens_per_second);
		}
		fputs("]}\n", stdout);
		return EXIT_OK;
	}
	char up[32], used[32], budget[32];
	printf("pinferd %s, up %s\n", s->daemon_version,
	       human_duration(s->uptime_ms, up, sizeof(up)));
	printf("socket:       %s\n", x->c->path);
	printf("models:       %u loaded\n", s->models_loaded);
	printf("memory:       %s used of %s\n", human_size(s->memory_used_bytes, used, sizeof(used)),
	       human_size(s->memory_budget_bytes, budget, sizeof(budget)));
	printf("requests:     %u active, %u queued\n", s->requests_active, s->requests_queued);
	printf("connections:  %u\n", s->connections);
	/* What each loaded model measured: its FFN sparsity and decode speed. */
	for (size_t i = 0; i < s->n_models; i++) {
		const Pinfer__ModelInfo *mi = s->models[i];
		printf("model %s: sparsity %s", mi->name, mi->sparsity);
		if (mi->tokens_generated)
			printf(", %.1f%% of FFN neurons skipped, %.1f tok/s over %" PRIu64 " tokens",
			       100.0 * mi->measured_sparsity, mi->decode_tokens_per_second, mi->tokens_generated);
		putchar('\n');
	}
	return EXIT_OK;
}

int cmd_status(struct global *g, int argc, char **argv)
{
	static const char usage[] = "usage: pinfer status [--json]\n"
				    "Shows pinferd's version, uptime, memory and load.\n";
	int r = no_operands(g, argc, argv, usage);
	if (r)
		return r;
	Pinfer__Status st = PINFER__STATUS__INIT;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_STATUS;
	m.status = &st;
	return request(g, &m, &st, &st.request_id, PINFER__SERVER_MESSAGE__MSG_STATUS_REPLY,
		       print_status);
}

static int print_pong(const struct reply_ctx *x, const Pinfer__ServerMessage *reply)
{
	(void)reply;  /* a Pong says nothing but that it came */
	double rtt = mono_ms() - x->sent_ms;
	if (x->g->json) {
		fputs("{\"ok\":true,\"daemon_version\":", stdout);
		json_cstr(stdout, x->c->server_version);
		fputs(",\"socket\":", stdout);
		json_cstr(stdout, x->c->path);
		printf(",\"rtt_ms\":%.3f}\n", rtt);
	} else {
		printf("pong from pinferd %s at %s in %.3f ms\n", x->c->server_version, x->c->path,
		       rtt);
	}
	return EXIT_OK;
}

int cmd_ping(struct global *g, int argc, char **argv)
{
	static const char usage[] = "usage: pinfer ping [--json]\n"
				    "Checks that pinferd answers.\n";
	int r = no_operands(g, argc, argv, usage);
	if (r)
		return r;
	Pinfer__Ping p = PINFER__PING__INIT;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_PING;
	m.ping = &p;
	return request(g, &m, &p, &p.request_id, PINFER__SERVER_MESSAGE__MSG_PONG, print_pong);
}

/* ---- tokenize ---- */

static const char tokenize_usage[] =
	"usage: pinfer tokenize MODEL [TEXT...] [options]\n"
	"Prints the token ids of TEXT (the words joined by spaces; stdin when none\n"
	"is given), space-separated.\n"
	"  --no-bos         do not prepend the model's BOS token\n"
	"  --special        read control tokens such as <s> in the text\n"
	"  -v, --verbose    one token a line: id and its bytes as a quoted string\n"
	"  --json           {\"ids\":[...]} (with -v also \"pieces\")\n";

enum { OPT_NO_BOS = 1, OPT_SPECIAL };

static int tokenize_opt(void *ctx, int opt, char *arg)
{
	(void)arg;
	Pinfer__Tokenize *t = ctx;
	switch (opt) {
	case OPT_NO_BOS:
		t->add_bos = false;
		return EXIT_OK;
	case OPT_SPECIAL:
		t->parse_special = true;
		return EXIT_OK;
	default:
		return -1;
	}
}

static int print_tokens(const struct reply_ctx *x, const Pinfer__ServerMessage *reply)
{
	const Pinfer__TokenizeReply *t = reply->tokenize_reply;
	bool pieces = x->g->verbose && t->n_pieces == t->n_ids;
	if (x->g->json) {
		fputs("{\"ids\":[", stdout);
		for (size_t i = 0; i < t->n_ids; i++)
			printf("%s%d", i ? "," : "", t->ids[i]);
		fputc(']', stdout);
		if (pieces) {
			fputs(",\"pieces\":[", stdout);
			for (size_t i = 0; i < t->n_pieces; i++) {
				if (i)
					fputc(',', stdout);
				json_str(stdout, (const char *)t->pieces[i].data, t->pieces[i].len);
			}
			fputc(']', stdout);
		}
		fputs("}\n", stdout);
	} else if (pieces) {
		/* Quoted and escaped: a piece may be a space, a newline or
		 * part of a character. */
		for (size_t i = 0; i < t->n_ids; i++) {
			printf("%6d  ", t->ids[i]);
			json_str(stdout, (const char *)t->pieces[i].data, t->pieces[i].len);
			fputc('\n', stdout);
		}
	} else {
		for (size_t i = 0; i < t->n_ids; i++)
			printf("%s%d", i ? " " : "", t->ids[i]);
		fputc('\n', stdout);
	}
	return EXIT_OK;
}

int cmd_tokenize(struct global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "no-bos", no_argument, NULL, OPT_NO_BOS },
		{ "special", no_argument, NULL, OPT_SPECIAL },
		COMMON_LONG_OPTS,
	};
	Pinfer__Tokenize t = PINFER__TOKENIZE__INIT;
	t.add_bos = true;
	struct buf text = { 0 };
	int first, r = args_parse(g, argc, argv, ":" COMMON_SHORT_OPTS, opts, tokenize_usage,
				  tokenize_opt, &t, &first);
	if (!r)
		r = args_count(argc - first, 1, -1, tokenize_usage);
	if (!r && argc - first == 1) {
		r = buf_read_input(&text, stdin, "the text from stdin");
	} else {
		for (int i = first + 1; !r && i < argc; i++)
			if ((i > first + 1 && buf_append(&text, " ", 1)) ||
			    buf_append(&text, argv[i], strlen(argv[i])))
				r = EXIT_FAIL;
	}
	if (!r)
		r = arg_text("the text", buf_str(&text), text.len);
	if (!r) {
		t.model = argv[first];
		t.text = (char *)buf_str(&text);
		t.return_pieces = g->verbose;
		Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
		m.msg_case = PINFER__CLIENT_MESSAGE__MSG_TOKENIZE;
		m.tokenize = &t;
		r = request(g, &m, &t, &t.request_id, PINFER__SERVER_MESSAGE__MSG_TOKENIZE_REPLY,
			    print_tokens);
	}
	buf_free(&text);
	return r;
}

/* ---- load and evict ---- */

/* object: the model's D-Bus object, or NULL (socket). */
static int print_loaded_model(const struct global *g, const Pinfer__ModelInfo *mi,
			      const char *object)
{
	if (g->json) {
		model_json(mi, object);
		return EXIT_OK;
	}
	if (!mi->loaded) {
		printf("%s loaded, then unloaded at once (keep-alive 0)\n", mi->name);
		return EXIT_OK;
	}
	char mem[32], exp[48];
	printf("%s loaded: %s, %u slots, unloads %s\n", mi->name,
	       human_size(mi->memory_bytes, mem, sizeof(mem)), mi->slots_total,
	       expiry_text(mi, exp, sizeof(exp)));
	return EXIT_OK;
}

static int print_loaded(const struct reply_ctx *x, const Pinfer__ServerMessage *reply)
{
	const Pinfer__ModelInfo *mi = reply->load_model_reply->model;
	if (!mi) {
		report("pinferd's LoadModelReply names no model");
		return EXIT_PROTO;
	}
	return print_loaded_model(x->g, mi, NULL);
}

static int load_opt(void *ctx, int opt, char *arg)
{
	Pinfer__LoadModel *lm = ctx;
	if (opt == 's') {
		lm->opt_sparsity_case = PINFER__LOAD_MODEL__OPT_SPARSITY_SPARSITY;
		lm->sparsity = arg;
		return 0;
	}
	if (opt == 'b') {
		lm->opt_memory_budget_case = PINFER__LOAD_MODEL__OPT_MEMORY_BUDGET_MEMORY_BUDGET;
		lm->memory_budget = arg;
		return 0;
	}
	if (opt != 'k')
		return -1;
	lm->opt_keep_alive_ms_case = PINFER__LOAD_MODEL__OPT_KEEP_ALIVE_MS_KEEP_ALIVE_MS;
	return arg_duration("--keep-alive", arg, &lm->keep_alive_ms);
}

/* Manager.LoadModel with the socket request's model and keep-alive. */
static int load_on_bus(struct global *g, struct bus_conn *b, void *ctx)
{
	const Pinfer__LoadModel *lm = ctx;
	struct bus_model m;
	int r = bus_load_model(b, lm->model,
			       lm->opt_keep_alive_ms_case ==
				       PINFER__LOAD_MODEL__OPT_KEEP_ALIVE_MS_KEEP_ALIVE_MS,
			       lm->keep_alive_ms,
			       lm->opt_sparsity_case == PINFER__LOAD_MODEL__OPT_SPARSITY_SPARSITY ? lm->sparsity : NULL,
			       lm->opt_memory_budget_case == PINFER__LOAD_MODEL__OPT_MEMORY_BUDGET_MEMORY_BUDGET
				       ? lm->memory_budget : NULL,
			       &m);
	if (r)
		return r;
	r = print_loaded_model(g, &m.mi, m.object);
	bus_model_free(&m);
	return r;
}

int cmd_load(struct global *g, int argc, char **argv)
{
	static const char usage[] =
		"usage: pinfer load MODEL [--keep-alive D] [--sparsity MODE] [--memory-budget B] [--json]\n"
		"Loads MODEL now. --keep-alive: how long it stays loaded when idle (5m,\n"
		"30s, -1 forever, 0 unload when idle; default: pinferd's). For a loaded\n"
		"model, only sets the keep-alive. --sparsity: auto, dense, gate,\n"
		"threshold or predictor (default: pinferd's setting). --memory-budget:\n"
		"for a bundle file (pinfer-model pack), the memory it may use: a size\n"
		"(2G, 1500M), N%ffn, min, or none (default: pinferd's offload-budget).\n"
		"Asks pinferd on D-Bus when --bus says so (Manager.LoadModel), else on\n"
		"the socket.\n";
	static const struct option opts[] = {
		{ "keep-alive", required_argument, NULL, 'k' },
		{ "sparsity", required_argument, NULL, 's' },
		{ "memory-budget", required_argument, NULL, 'b' },
		COMMON_LONG_OPTS,
	};
	Pinfer__LoadModel lm = PINFER__LOAD_MODEL__INIT;
	int first, r = args_parse(g, argc, argv, ":" COMMON_SHORT_OPTS, opts, usage, load_opt, &lm,
				  &first);
	if (!r)
		r = args_count(argc - first, 1, 1, usage);
	if (r)
		return r;
	lm.model = argv[first];
	if ((r = via_bus(g, load_on_bus, &lm)) != BUS_FALLBACK)
		return r;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_LOAD_MODEL;
	m.load_model = &lm;
	return request(g, &m, &lm, &lm.request_id, PINFER__SERVER_MESSAGE__MSG_LOAD_MODEL_REPLY,
		       print_loaded);
}

static void print_evicted(const struct global *g, const char *name, bool was_loaded)
{
	if (g->json) {
		fputs("{\"model\":", stdout);
		json_cstr(stdout, name);
		printf(",\"was_loaded\":%s}\n", was_loaded ? "true" : "false");
	} else {
		printf(was_loaded ? "%s unloaded\n" : "%s was not loaded\n", name);
	}
}

static int print_unloaded(const struct reply_ctx *x, const Pinfer__ServerMessage *reply)
{
	print_evicted(x->g, ((const Pinfer__UnloadModel *)x->req)->model,
		      reply->unload_model_reply->was_loaded);
	return EXIT_OK;
}

static int evict_on_bus(struct global *g, struct bus_conn *b, void *ctx)
{
	const char *name = ctx;
	bool was_loaded;
	int r = bus_evict_model(b, name, &was_loaded);
	if (!r)
		print_evicted(g, name, was_loaded);
	return r;
}

int cmd_evict(struct global *g, int argc, char **argv)
{
	static const char usage[] =
		"usage: pinfer evict MODEL [--json]\n"
		"       pinfer unload MODEL [--json]\n"
		"Unloads MODEL. On D-Bus (Manager.EvictModel, when --bus says so) at\n"
		"once, and a model in use or being loaded is refused as busy; on the\n"
		"socket once the generations running on it have finished.\n";
	int first, r = args_parse(g, argc, argv, ":" COMMON_SHORT_OPTS, common_only, usage, NULL,
				  NULL, &first);
	if (!r)
		r = args_count(argc - first, 1, 1, usage);
	if (r)
		return r;
	if ((r = via_bus(g, evict_on_bus, argv[first])) != BUS_FALLBACK)
		return r;
	Pinfer__UnloadModel um = PINFER__UNLOAD_MODEL__INIT;
	um.model = argv[first];
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_UNLOAD_MODEL;
	m.unload_model = &um;
	return request(g, &m, &um, &um.request_id, PINFER__SERVER_MESSAGE__MSG_UNLOAD_MODEL_REPLY,
		       print_unloaded);
}
