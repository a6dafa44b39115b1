#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void model_opts_init(struct model_opts *o)
{
	memset(o, 0, sizeof(*o));
	pinfer_model_params_default(&o->params);
}

int model_opts_parse(struct model_opts *o, int opt, const char *arg, const char *cmd)
{
	long v;
	switch (opt) {
	case 'm':
		o->model = arg;
		return 1;
	case 't':
		if (!parse_int(arg, 1, 1024, &v))
			break;
		o->n_threads = (int)v;
		return 1;
	case 'c':
	case OPT_CTX:
		if (!parse_int(arg, 1, 1 << 20, &v))
			break;
		o->n_ctx = (int)v;
		return 1;
	case OPT_KV_TYPE:
		if (pinfer_kv_type_parse(arg, &o->kv_type)) {
			fprintf(stderr, "%s: --kv-type must be auto, f32 or f16\n", cmd);
			return -1;
		}
		return 1;
	case OPT_MLOCK:
		o->params.mlock = true;
		return 1;
	case OPT_MMAP:
		o->params.mmap_weights = true;
		return 1;
	case OPT_ACT:
		for (int a = PINFER_ACT_SILU; a <= PINFER_ACT_DRELU; a++)
			if (!strcasecmp(arg, pinfer_ffn_act_name((enum pinfer_ffn_act)a))) {
				o->params.ffn_act = (enum pinfer_ffn_act)a;
				return 1;
			}
		fprintf(stderr, "%s: --act must be silu, relu or drelu\n", cmd);
		return -1;
	case OPT_SPARSITY:
		if (pinfer_sparsity_parse(arg, &o->params.sparsity)) {
			fprintf(stderr, "%s: --sparsity must be auto, dense, gate, threshold or predictor\n", cmd);
			return -1;
		}
		return 1;
	case OPT_CALIBRATION:
		o->params.calibration = arg;
		return 1;
	case OPT_MEMORY_BUDGET:
		if (!pinfer_memory_budget_parse(arg, &o->params))
			return 1;
		fprintf(stderr, "%s: --memory-budget takes a size (e.g. 2G, 1500M), N%%ffn (1-100), min or none\n", cmd);
		return -1;
	case OPT_ROPE:
		if (!strcasecmp(arg, "norm"))
			o->params.rope = PINFER_ROPE_NORM;
		else if (!strcasecmp(arg, "neox"))
			o->params.rope = PINFER_ROPE_NEOX;
		else {
			fprintf(stderr, "%s: --rope must be norm or neox\n", cmd);
			return -1;
		}
		return 1;
	default:
		return 0;
	}
	fprintf(stderr, "%s: bad value '%s' for -%c\n", cmd, arg, opt);
	return -1;
}

struct pinfer_model *model_opts_open(const struct model_opts *o, const char *cmd)
{
	if (!o->model) {
		fprintf(stderr, "%s: no model given (-m MODEL)\n", cmd);
		return NULL;
	}
	struct pinfer_model *m;
	struct pf_err err;
	if (pinfer_model_open(&m, o->model, &o->params, &err)) {
		fprintf(stderr, "%s: %s\n", cmd, err.msg);
		return NULL;
	}
	return m;
}

const char *model_opts_name(const struct model_opts *o, const struct pinfer_model *m)
{
	const struct pinfer_model_info *info = pinfer_model_info(m);
	const char *slash = strrchr(o->model, '/');
	return info->name[0] ? info->name : slash ? slash + 1 : o->model;
}

struct pinfer_ctx *model_opts_ctx(const struct model_opts *o, struct pinfer_model *m,
				  int n_batch, bool all_logits, const char *cmd)
{
	struct pinfer_ctx_params cp;
	pinfer_ctx_params_default(&cp);
	cp.n_ctx = o->n_ctx;
	cp.kv_type = o->kv_type;
	cp.n_threads = o->n_threads;
	cp.n_batch = n_batch;
	cp.all_logits = all_logits;
	struct pinfer_ctx *c;
	struct pf_err err;
	if (pinfer_ctx_new(&c, m, &cp, &err)) {
		fprintf(stderr, "%s: %s\n", cmd, err.msg);
		return NULL;
	}
	return c;
}

int usage_error(const char *cmd, void (*usage)(void), const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage();
	return 2;
}

int logits_argmax(const float *x, int n)
{
	int best = 0;
	for (int i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

bool parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool parse_float(const char *s, float *out)
{
	char *end;
	errno = 0;
	float v = strtof(s, &end);
	if (errno || end == s || *end)
		return false;
	*out = v;
	return true;
}

double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

char *slurp(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		n += fread(buf + n, 1, cap - n - 1, f);
		if (n < cap - 1)
			break;
		char *bigger = realloc(buf, cap * 2);
		if (!bigger) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = bigger;
		cap *= 2;
	}
	bool failed = ferror(f);
	if (f != stdin)
		fclose(f);
	if (!buf || failed) {
		free(buf);
		return NULL;
	}
	buf[n] = 0;
	if (len)
		*len = n;
	return buf;
}
