/* What `run` and `chat` share: the generation options (llama.cpp's flag
 * names) and streaming one Generate to its Done, with Ctrl-C turned into a
 * Cancel. */
#ifndef PINFER_CLIENT_GENERATE_H
#define PINFER_CLIENT_GENERATE_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "conn.h"

/* After a Cancel, how long the Done{cancelled} may take before the client
 * leaves anyway (closing the connection cancels too). */
#define CANCEL_WAIT_MS 2000

enum {
	OPT_TEMP = 256,
	OPT_TOP_K,
	OPT_TOP_P,
	OPT_MIN_P,
	OPT_REPEAT_PENALTY,
	OPT_REPEAT_LAST_N,
	OPT_PRESENCE_PENALTY,
	OPT_FREQUENCY_PENALTY,
	OPT_STOP,
	OPT_KEEP_ALIVE,
	OPT_TEMPLATE,
	/* Commands number their own long options from here. */
	OPT_GEN_END,
};

#define GEN_SHORT_OPTS "n:s:"
#define GEN_LONG_OPTS                                                          \
	{ "n-predict", required_argument, NULL, 'n' },                         \
	{ "seed", required_argument, NULL, 's' },                              \
	{ "temp", required_argument, NULL, OPT_TEMP },                         \
	{ "top-k", required_argument, NULL, OPT_TOP_K },                       \
	{ "top-p", required_argument, NULL, OPT_TOP_P },                       \
	{ "min-p", required_argument, NULL, OPT_MIN_P },                       \
	{ "repeat-penalty", required_argument, NULL, OPT_REPEAT_PENALTY },     \
	{ "repeat-last-n", required_argument, NULL, OPT_REPEAT_LAST_N },       \
	{ "presence-penalty", required_argument, NULL, OPT_PRESENCE_PENALTY }, \
	{ "frequency-penalty", required_argument, NULL, OPT_FREQUENCY_PENALTY }, \
	{ "stop", required_argument, NULL, OPT_STOP },                         \
	{ "keep-alive", required_argument, NULL, OPT_KEEP_ALIVE },             \
	{ "template", required_argument, NULL, OPT_TEMPLATE }

/* The options' usage lines, for the commands' help. */
#define GEN_USAGE                                                              \
	"  -n, --n-predict N        tokens to generate (default: until the end)\n" \
	"  -s, --seed N             sampling seed (-1: random, the default)\n"     \
	"  --temp T                 temperature (0: greedy)\n"                     \
	"  --top-k K, --top-p P, --min-p P\n"                                      \
	"  --repeat-penalty F, --repeat-last-n N\n"                                \
	"  --presence-penalty F, --frequency-penalty F\n"                          \
	"  --stop TEXT              stop before TEXT (repeatable)\n"               \
	"  --keep-alive D           keep the model loaded D after this (5m, 30s,\n" \
	"                           -1 forever, 0 unload when done)\n"             \
	"  --template NAME          use this built-in chat template\n"

struct gen_opts {
	Pinfer__Sampling sampling;
	bool has_sampling;        /* any sampling option was given */
	bool has_n_predict;
	int32_t n_predict;
	bool has_keep_alive;
	int64_t keep_alive_ms;
	char *chat_template;      /* NULL: the model's own */
	char **stop;              /* points into argv */
	size_t n_stop;
};

void gen_opts_init(struct gen_opts *o);
void gen_opts_free(struct gen_opts *o);

/* Takes getopt's result opt when it is a generation option: EXIT_OK, or
 * EXIT_USAGE after reporting a bad value. -1 when opt is not one. */
int gen_opts_parse(struct gen_opts *o, int opt, char *arg);

/* Sets g's parameters from o; g then points into o. */
void gen_opts_apply(struct gen_opts *o, Pinfer__Generate *g);

/* The Done frame's statistics. */
struct gen_stats {
	/* DONE_UNSPECIFIED until a Done arrives; DONE_CANCELLED with no
	 * counts when the client left after Ctrl-C without waiting for it. */
	Pinfer__DoneReason reason;
	uint32_t prompt_tokens, cached_prompt_tokens, generated_tokens;
	uint64_t load_ns, prompt_ns, decode_ns;
	char *stop;                 /* the stop string matched, or NULL */
	/* Seen from the client: from sending Generate to the first Token
	 * frame, and from there to the Done (0 when there was none). */
	uint64_t first_token_ns, stream_ns;
	uint32_t token_frames;
};

/* Called with each Token frame of the request; returns an exit code (a
 * non-zero one ends the stream with it, after the callback reported). */
typedef int (*gen_token_fn)(void *ctx, const Pinfer__Token *t);

/* Sends g (with a new request id) and streams its Token frames to
 * on_token until Done, which fills st. Ctrl-C sends Cancel and waits up to
 * CANCEL_WAIT_MS for the Done (a second Ctrl-C stops waiting). Returns
 * EXIT_OK when the generation ended (end of text, length or stop string),
 * EXIT_INTR after Ctrl-C, or another exit code after reporting; st is
 * filled whenever a Done arrived. gen_stats_free(st) in every case. */
int gen_stream(struct conn *c, Pinfer__Generate *g, gen_token_fn on_token, void *ctx,
	       struct gen_stats *st);
void gen_stats_free(struct gen_stats *st);

/* "eos", "length", "stop", "cancelled", "error" (from the enum's names). */
const char *gen_reason_name(Pinfer__DoneReason reason, char *buf, size_t size);

/* -v: the timings and counts, a line each, on stderr. */
void gen_stats_print(const struct gen_stats *st);

/* --json: the statistics as object members ("reason":...,"stop":...,
 * counts, milliseconds, tokens per second), without braces. */
void gen_stats_json(FILE *f, const struct gen_stats *st);

#endif
