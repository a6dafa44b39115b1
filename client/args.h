/* Parsing option values. Each parser names the option in its message and
 * returns EXIT_OK, or EXIT_USAGE after reporting. */
#ifndef PINFER_CLIENT_ARGS_H
#define PINFER_CLIENT_ARGS_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

#include "commands.h"

/* Options every command takes, after its own. */
enum { OPT_JSON = 1000 };
#define COMMON_SHORT_OPTS "vh"
#define COMMON_LONG_OPTS                                \
	{ "verbose", no_argument, NULL, 'v' },          \
	{ "json", no_argument, NULL, OPT_JSON },        \
	{ "help", no_argument, NULL, 'h' },             \
	{ NULL, 0, NULL, 0 }

/* A command's own options: called with getopt's result and the value;
 * returns EXIT_OK, an exit code after reporting, or -1 for an option it
 * does not know (a bug: it is in the table but not handled). */
typedef int (*opt_fn)(void *ctx, int opt, char *arg);

/* Parses argv (argv[0]: the command name) with getopt_long, options and
 * operands in any order, "--" ending the options. -v and --json set g's
 * flags, --help prints usage on stdout and exits 0, the rest go to fn.
 * Returns EXIT_OK with *first set to the index of the first operand, or
 * an exit code after reporting. */
int args_parse(struct global *g, int argc, char **argv, const char *shortopts,
	       const struct option *longopts, const char *usage, opt_fn fn, void *ctx,
	       int *first);

/* Checks the operand count: between min and max operands (max < 0: no
 * limit). EXIT_OK, or EXIT_USAGE after printing usage. */
int args_count(int n, int min, int max, const char *usage);

/* A text for the daemon must be valid UTF-8 without NUL bytes (the daemon
 * closes a connection that sends other text). what names it in the
 * message. EXIT_OK or EXIT_USAGE. */
int arg_text(const char *what, const char *s, size_t n);

int arg_int(const char *opt, const char *s, int32_t *out);
int arg_float(const char *opt, const char *s, float *out);

/* A seed: 0 .. 2^64-1, or -1 for random (llama.cpp's spelling), which is
 * 2^64-1 on the wire. */
int arg_seed(const char *opt, const char *s, uint64_t *out);

/* As pinferd's --keep-alive: "250ms", "30s", "5m", "2h", a bare number of
 * seconds, or a negative number (forever, as -1 ms). */
int arg_duration(const char *opt, const char *s, int64_t *ms);

#endif
