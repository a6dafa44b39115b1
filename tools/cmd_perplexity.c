/* pinfer-model perplexity: the stories260K reference protocol. Every
 * non-empty line is an independent sequence [BOS] + encode(line) in a fresh
 * context; the NLL of each token given its prefix is summed in double over
 * positions 1..n-1; PPL = exp(total / predicted tokens). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"

enum { OPT_LINES = 2000 };

/* -log softmax(logits)[target], in double. */
static double nll(const float *logits, int n, int32_t target)
{
	float max = logits[0];
	for (int i = 1; i < n; i++)
		if (logits[i] > max)
			max = logits[i];
	double sum = 0.0;
	for (int i = 0; i < n; i++)
		sum += exp((double)logits[i] - max);
	return log(sum) - ((double)logits[target] - max);
}

int cmd_perplexity(int argc, char **argv)
{
	static const struct option longopts[] = {
		MODEL_LONG_OPTS,
		{ "file", required_argument, NULL, 'f' },
		{ "lines", required_argument, NULL, OPT_LINES },
		{ 0 },
	};
	struct model_opts mo;
	model_opts_init(&mo);
	const char *path = NULL;
	long max_lines = -1;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, MODEL_SHORT_OPTS "f:", longopts, NULL)) != -1) {
		int r = model_opts_parse(&mo, opt, optarg, "perplexity");
		if (r < 0)
			return 2;
		if (r > 0)
			continue;
		if (opt == 'f') {
			path = optarg;
		} else if (opt == OPT_LINES && parse_int(optarg, 1, __LONG_MAX__, &max_lines)) {
			continue;
		} else {
			fprintf(stderr, "usage: pinfer-model perplexity -m MODEL -f TEXT [--lines N] [-t N]\n");
			return 2;
		}
	}
	if (!path) {
		fprintf(stderr, "perplexity: no text file given (-f TEXT)\n");
		return 2;
	}
	size_t len;
	char *text = slurp(path, &len);
	if (!text) {
		fprintf(stderr, "perplexity: cannot read %s\n", path);
		return 1;
	}
	struct pinfer_model *m = model_opts_open(&mo, "perplexity");
	if (!m) {
		free(text);
		return 1;
	}
	int rc = 1;
	const struct pinfer_model_info *info = pinfer_model_info(m);
	int n_ctx = mo.n_ctx ? mo.n_ctx : info->n_ctx_train;
	struct model_opts ctx_opts = mo;
	ctx_opts.n_ctx = n_ctx;
	struct pinfer_ctx *c = model_opts_ctx(&ctx_opts, m, n_ctx, true, "perplexity");
	int32_t *tokens = malloc(((size_t)len + 2) * sizeof(*tokens));
	if (!c || !tokens)
		goto out;
	double total = 0.0;
	long predicted = 0, lines = 0;
	double t0 = now_seconds();
	for (char *line = text, *next; line && *line && (max_lines < 0 || lines < max_lines); line = next) {
		char *nl = strchr(line, '\n');
		next = nl ? nl + 1 : NULL;
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		if (n == 0)
			continue;
		int nt = pinfer_tokenize(m, line, n, true, false, tokens, n + 2);
		if (nt < 0 || (size_t)nt > n + 2) {
			fprintf(stderr, "perplexity: cannot tokenize line %ld\n", lines + 1);
			goto out;
		}
		if (nt > n_ctx)
			nt = n_ctx;
		lines++;
		if (nt < 2)
			continue;
		struct pf_err err;
		pinfer_ctx_truncate(c, 0);
		if (pinfer_eval(c, tokens, nt, &err)) {
			fprintf(stderr, "perplexity: line %ld: %s\n", lines, err.msg);
			goto out;
		}
		for (int i = 0; i + 1 < nt; i++)
			total += nll(pinfer_logits(c, i), info->n_vocab, tokens[i + 1]);
		predicted += nt - 1;
	}
	double dt = now_seconds() - t0;
	if (predicted == 0) {
		fprintf(stderr, "perplexity: no tokens to predict in %s\n", path);
		goto out;
	}
	fprintf(stderr, "lines=%ld predicted_tokens=%ld total_nll=%.6f mean_nll=%.6f (%.1f tok/s)\n",
		lines, predicted, total, total / predicted, predicted / (dt > 0 ? dt : 1e-9));
	printf("ppl %.6f\n", exp(total / (double)predicted));
	rc = 0;
out:
	free(tokens);
	free(text);
	pinfer_ctx_free(c);
	pinfer_model_free(m);
	return rc;
}
