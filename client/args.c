#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "frame.h"
#include "report.h"

int arg_int(const char *opt, const char *s, int32_t *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < INT32_MIN || v > INT32_MAX) {
		report("invalid value '%s' for %s: expected an integer", s, opt);
		return EXIT_USAGE;
	}
	*out = (int32_t)v;
	return EXIT_OK;
}

int arg_float(const char *opt, const char *s, float *out)
{
	char *end;
	errno = 0;
	float v = strtof(s, &end);
	if (errno || end == s || *end || !isfinite(v)) {
		report("invalid value '%s' for %s: expected a number", s, opt);
		return EXIT_USAGE;
	}
	*out = v;
	return EXIT_OK;
}

int arg_seed(const char *opt, const char *s, uint64_t *out)
{
	if (!strcmp(s, "-1")) {
		*out = UINT64_MAX;
		return EXIT_OK;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	/* strtoull accepts "-5" as a huge number: refuse signs. */
	if (errno || end == s || *end || s[0] == '-' || s[0] == '+') {
		report("invalid value '%s' for %s: expected 0 .. 2^64-1, or -1 for random", s,
		       opt);
		return EXIT_USAGE;
	}
	*out = v;
	return EXIT_OK;
}

int arg_duration(const char *opt, const char *s, int64_t *ms)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	double scale = 0;
	if (!errno && end != s && isfinite(v)) {
		if (!*end || !strcmp(end, "s"))
			scale = 1000;
		else if (!strcmp(end, "ms"))
			scale = 1;
		else if (!strcmp(end, "m"))
			scale = 60000;
		else if (!strcmp(end, "h"))
			scale = 3600000;
	}
	if (scale == 0 || v * scale > 9e15) {
		report("invalid duration '%s' for %s: expected e.g. 30s, 5m, 2h, 250ms, "
		       "0 (unload when idle) or -1 (forever)", s, opt);
		return EXIT_USAGE;
	}
	*ms = v < 0 ? -1 : (int64_t)(v * scale);
	return EXIT_OK;
}

int args_parse(struct global *g, int argc, char **argv, const char *shortopts,
	       const struct option *longopts, const char *usage, opt_fn fn, void *ctx,
	       int *first)
{
	/* 0 re-initializes GNU getopt, which main() used on the global
	 * options; errors are worded here, naming the command. */
	optind = 0;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		int r;
		switch (opt) {
		case 'v':
			g->verbose = true;
			continue;
		case OPT_JSON:
			g->json = true;
			continue;
		case 'h':
			fputs(usage, stdout);
			exit(EXIT_OK);
		case ':':
			report("%s: option '%s' needs a value", argv[0], argv[optind - 1]);
			fputs(usage, stderr);
			return EXIT_USAGE;
		case '?':
			report("%s: unknown option '%s'", argv[0], argv[optind - 1]);
			fputs(usage, stderr);
			return EXIT_USAGE;
		default:
			r = fn ? fn(ctx, opt, optarg) : -1;
			if (r < 0) {
				report("%s: option '%s' is not handled (a bug)", argv[0],
				       argv[optind - 1]);
				return EXIT_USAGE;
			}
			if (r)
				return r;
		}
	}
	*first = optind;
	return EXIT_OK;
}

int args_count(int n, int min, int max, const char *usage)
{
	if (n >= min && (max < 0 || n <= max))
		return EXIT_OK;
	report("%s", n < min ? "missing arguments" : "too many arguments");
	fputs(usage, stderr);
	return EXIT_USAGE;
}

int arg_text(const char *what, const char *s, size_t n)
{
	if (strlen(s) != n) {
		report("%s contains a NUL byte at offset %zu", what, strlen(s));
		return EXIT_USAGE;
	}
	if (!proto_utf8_valid(s, n)) {
		report("%s is not valid UTF-8", what);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}
