/* Subcommands of pinfer-model. Each takes argc/argv with argv[0] set to the
 * subcommand's name and returns the process exit status. */
#ifndef PINFER_TOOLS_COMMANDS_H
#define PINFER_TOOLS_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pinfer.h"

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

/* The token streams perplexity, profile and calibrate share
 * (cmd_perplexity.c): every non-empty line of a text is one sequence
 * [BOS] + encode(line), truncated to the context, in a fresh context.
 *
 * Walks the non-empty lines of text after the first skip of them, at
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
/* Evaluates the lines text_lines selects (text is len bytes), each in a
 * fresh sequence of c, for the side effects of a probe. Returns the number
 * of lines and the tokens evaluated, or -1 after printing why. */
long eval_text_lines(struct pinfer_ctx *c, const struct pinfer_model *m, char *text, size_t len,
		     long skip, long max, uint64_t *tokens, const char *cmd);

#endif
