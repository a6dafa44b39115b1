/* pinfer-model perplexity: the stories260K reference protocol. Every
 * non-empty line is an independent sequence [BOS] + encode(line) in a fresh
 * context; the NLL of each token given its prefix is summed in double over
 * positions 1..n-1; PPL = exp(total / predicted tokens).
 *
 * The line selection and the per-line evaluation are shared with profile
 * and calibrate (commands.h), so the three see the same token streams. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"

bool text_opts_parse(struct text_opts *o, int opt, const char *arg, const char **bad)
{
	switch (opt) {
	case 'f':
		o->path = arg;
		return true;
	case OPT_LINES:
		if (!parse_int(arg, 1, __LONG_MAX__, &o->max))
			*bad = "--lines";
		return true;
	case OPT_SKIP_LINES:
		if (!parse_int(arg, 0, __LONG_MAX__, &o->skip))
			*bad = "--skip-lines";
		return true;
	default:
		return false;
	}
}

int text_cmd_opts_parse(struct model_opts *mo, struct text_opts *to, int opt, const char *arg,
			const char *cmd, void (*usage)(void))
{
	int r = model_opts_parse(mo, opt, arg, cmd);
	if (r)
		return r;
	const char *bad = NULL;
	if (!text_opts_parse(to, opt, arg, &bad))
		return 0;
	if (bad) {
		usage_error(cmd, usage, "bad value '%s' for %s", arg, bad);
		return -1;
	}
	return 1;
}

int text_cmd_opts_check(const struct model_opts *mo, const struct text_opts *to, int argc, char **argv,
			const char *cmd, void (*usage)(void))
{
	if (optind < argc)
		return usage_error(cmd, usage, "unexpected argument '%s'", argv[optind]);
	if (!mo->model || !to->path)
		return usage_error(cmd, usage, "%s", !mo->model ? "no model given (-m MODEL)"
								: "no text file given (-f TEXT)");
	return 0;
}

char *text_opts_read(const struct text_opts *o, size_t *len, const char *cmd)
{
	char *text = slurp(o->path, len);
	if (!text)
		fprintf(stderr, "%s: cannot read %s\n", cmd, o->path);
	return text;
}

struct pinfer_ctx *text_ctx(const struct model_opts *mo, struct pinfer_model *m, bool all_logits,
			    const char *cmd)
{
	struct model_opts o = *mo;
	if (!o.n_ctx)
		o.n_ctx = pinfer_model_info(m)->n_ctx_train;
	return model_opts_ctx(&o, m, all_logits ? o.n_ctx : 0, all_logits, cmd);
}

void text_lines_init(struct text_lines *it, char *text, long skip, long max)
{
	it->next = text;
	it->skip = skip;
	it->max = max;
	it->n = 0;
}

bool text_lines_next(struct text_lines *it, const char **line, size_t *len)
{
	while (it->next && *it->next && (it->max < 0 || it->n < it->max)) {
		char *l = it->next;
		char *nl = strchr(l, '\n');
		it->next = nl ? nl + 1 : NULL;
		size_t n = nl ? (size_t)(nl - l) : strlen(l);
		if (n == 0)
			continue;
		if (it->skip > 0) {
			it->skip--;
			continue;
		}
		it->n++;
		*line = l;
		*len = n;
		return true;
	}
	return false;
}

int tokenize_line(const struct pinfer_model *m, const char *line, size_t n, int n_ctx,
		  int32_t *tokens, long line_no, const char *cmd)
{
	int nt = pinfer_tokenize(m, line, n, true, false, tokens, n + 2);
	if (nt < 0 || (size_t)nt > n + 2) {
		fprintf(stderr, "%s: cannot tokenize line %ld\n", cmd, line_no);
		return -1;
	}
	return nt > n_ctx ? n_ctx : nt;
}

long eval_text_lines(struct pinfer_ctx *c, const struct pinfer_model *m, char *text, size_t len,
		     const struct text_opts *o, uint64_t *tokens_out, const char *cmd)
{
	int n_ctx = pinfer_ctx_size(c);
	int32_t *tokens = malloc((len + 2) * sizeof(*tokens));
	if (!tokens) {
		fprintf(stderr, "%s: out of memory\n", cmd);
		return -1;
	}
	struct text_lines it;
	text_lines_init(&it, text, o->skip, o->max);
	const char *line;
	size_t n;
	uint64_t total = 0;
	while (text_lines_next(&it, &line, &n)) {
		int nt = tokenize_line(m, line, n, n_ctx, tokens, o->skip + it.n, cmd);
		if (nt < 0)
			goto fail;
		if (nt == 0)
			continue;
		struct pf_err err;
		pinfer_ctx_truncate(c, 0);
		if (pinfer_eval(c, tokens, nt, &err)) {
			fprintf(stderr, "%s: line %ld: %s\n", cmd, o->skip + it.n, err.msg);
			goto fail;
		}
		total += (uint64_t)nt;
	}
	free(tokens);
	*tokens_out = total;
	return it.n;
fail:
	free(tokens);
	return -1;
}

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
		TEXT_LONG_OPTS,
		{ 0 },
	};
	struct model_opts mo;
	model_opts_init(&mo);
	struct text_opts to = TEXT_OPTS_INIT;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, MODEL_SHORT_OPTS TEXT_SHORT_OPTS, longopts, NULL)) != -1) {
		int r = model_opts_parse(&mo, opt, optarg, "perplexity");
		if (r < 0)
			return 2;
		if (r > 0)
			continue;
		const char *bad = NULL;
		if (!text_opts_parse(&to, opt, optarg, &bad) || bad) {
			fprintf(stderr, "usage: pinfer-model perplexity -m MODEL -f TEXT [--lines N] [--skip-lines K] [options]\n" MODEL_OPTS_HELP);
			return 2;
		}
	}
	if (!to.path) {
		fprintf(stderr, "perplexity: no text file given (-f TEXT)\n");
		return 2;
	}
	size_t len;
	char *text = text_opts_read(&to, &len, "perplexity");
	if (!text)
		return 1;
	struct pinfer_model *m = model_opts_open(&mo, "perplexity");
	if (!m) {
		free(text);
		return 1;
	}
	int rc = 1;
	const struct pinfer_model_info *info = pinfer_model_info(m);
	struct pinfer_ctx *c = text_ctx(&mo, m, true, "perplexity");
	int32_t *tokens = malloc(((size_t)len + 2) * sizeof(*tokens));
	if (!c || !tokens)
		goto out;
	int n_ctx = pinfer_ctx_size(c);
	double total = 0.0;
	long predicted = 0;
	double t0 = now_seconds();
	struct text_lines it;
	text_lines_init(&it, text, to.skip, to.max);
	const char *line;
	size_t n;
	while (text_lines_next(&it, &line, &n)) {
		int nt = tokenize_line(m, line, n, n_ctx, tokens, to.skip + it.n, "perplexity");
		if (nt < 0)
			goto out;
		if (nt < 2)
			continue;
		struct pf_err err;
		pinfer_ctx_truncate(c, 0);
		if (pinfer_eval(c, tokens, nt, &err)) {
			fprintf(stderr, "perplexity: line %ld: %s\n", to.skip + it.n, err.msg);
			goto out;
		}
		for (int i = 0; i + 1 < nt; i++)
			total += nll(pinfer_logits(c, i), info->n_vocab, tokens[i + 1]);
		predicted += nt - 1;
	}
	double dt = now_seconds() - t0;
	if (predicted == 0) {
		fprintf(stderr, "perplexity: no tokens to predict in %s\n", to.path);
		goto out;
	}
	fprintf(stderr, "lines=%ld predicted_tokens=%ld total_nll=%.6f mean_nll=%.6f (%.1f tok/s)\n",
		it.n, predicted, total, total / predicted, predicted / (dt > 0 ? dt : 1e-9));
	/* The share of FFN neurons the mode skipped over every evaluated
	 * token: what a threshold or gate run actually achieved. */
	struct pinfer_ffn_stats st;
	pinfer_ctx_ffn_stats(c, &st);
	double sparsity = st.neurons ? 1.0 - (double)st.active / (double)st.neurons : 0.0;
	fprintf(stderr, "ffn: %s mode, %llu of %llu neuron evaluations active, sparsity %.2f%%\n",
		pinfer_sparsity_name(info->sparsity), (unsigned long long)st.active,
		(unsigned long long)st.neurons, 100.0 * sparsity);
	printf("ppl %.6f\n", exp(total / (double)predicted));
	printf("ffn_sparsity %.6f\n", sparsity);
	rc = 0;
out:
	free(tokens);
	free(text);
	pinfer_ctx_free(c);
	pinfer_model_free(m);
	return rc;
}
