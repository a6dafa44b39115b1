/* Subcommands of pinfer-model. Each takes argc/argv with argv[0] set to the
 * subcommand's name and returns the process exit status. */
#ifndef PINFER_TOOLS_COMMANDS_H
#define PINFER_TOOLS_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pinfer.h"

struct model_opts;

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_fit_predictor(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_plan(int argc, char **argv);

/* The token streams perplexity, profile and calibrate share
 * (cmd_perplexity.c): every non-empty line of a text is one sequence
 * [BOS] + encode(line), truncated to the context, in a fresh context.
 *
 * Their options -f TEXT, --lines N and --skip-lines K; the codes are
 * above the model options' and below the commands' own (2000 on). */
enum { OPT_LINES = 1100, OPT_SKIP_LINES };
#define TEXT_LONG_OPTS                                         \
	{ "file", required_argument, NULL, 'f' },              \
	{ "lines", required_argument, NULL, OPT_LINES },       \
	{ "skip-lines", required_argument, NULL, OPT_SKIP_LINES }
#define TEXT_SHORT_OPTS "f:"
struct text_opts {
	const char *path;
	long skip, max;  /* the lines skipped, at most max taken (-1: all) */
};
#define TEXT_OPTS_INIT { .path = NULL, .skip = 0, .max = -1 }
/* Handles opt when it is one of TEXT_LONG_OPTS: returns true, with *bad
 * set to the option's name when the value is bad; false when not ours. */
bool text_opts_parse(struct text_opts *o, int opt, const char *arg, const char **bad);
/* For a command with the model and the text options: handles opt when it
 * is one of them. Returns 1 when handled, 0 when not theirs, -1 when the
 * value is bad, after printing why (for a text option, with the usage). */
int text_cmd_opts_parse(struct model_opts *mo, struct text_opts *to, int opt, const char *arg,
			const char *cmd, void (*usage)(void));
/* After such a command's options: a usage error, with its exit status 2,
 * for an argument left over or a missing -m MODEL or -f TEXT; else 0. */
int text_cmd_opts_check(const struct model_opts *mo, const struct text_opts *to, int argc, char **argv,
			const char *cmd, void (*usage)(void));
/* The text (a NUL-terminated malloc'd buffer of *len bytes); NULL after
 * printing why. */
char *text_opts_read(const struct text_opts *o, size_t *len, const char *cmd);
/* A context for the lines: of the options' size, else of the model's
 * training context (longer lines are cut to it). all_logits: a line is
 * one batch with the logits of every position (perplexity); else the
 * default batches, for a probe. */
struct pinfer_ctx *text_ctx(const struct model_opts *mo, struct pinfer_model *m, bool all_logits,
			    const char *cmd);

/* Walks the non-empty lines of text after the first skip of them, at
 * most max (-1: all); n counts the lines returned. */
struct text_lines {
	char *next;
	long skip, max, n;
};
void text_lines_init(struct text_lines *it, char *text, long skip, long max);
/* The next line (len bytes, not NUL-terminated); false at the end. */
bool text_lines_next(struct text_lines *it, const char **line, size_t *len);
/* Tokens of a line into tokens (room for n + 2), capped at n_ctx; -1 after
 * printing why. */
int tokenize_line(const struct pinfer_model *m, const char *line, size_t n, int n_ctx,
		  int32_t *tokens, long line_no, const char *cmd);
/* Evaluates the lines o selects of text (len bytes), each in a fresh
 * sequence of c, for the side effects of a probe. Returns the number of
 * lines and the tokens evaluated, or -1 after printing why. */
long eval_text_lines(struct pinfer_ctx *c, const struct pinfer_model *m, char *text, size_t len,
		     const struct text_opts *o, uint64_t *tokens, const char *cmd);

#endif
