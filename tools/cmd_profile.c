/* pinfer-model profile: how often each FFN neuron fires (docs/sparsity.md).
 *
 * Runs the model over a text with the perplexity protocol's sequences
 * (every non-empty line is [BOS] + encode(line) in a fresh context) and an
 * FFN probe that counts, per layer and neuron, the tokens whose activation
 * into the down projection is not zero (prefill included: the engine zeroes
 * the neurons its mode skips there too). Writes the counts as a small GGUF
 * and prints per layer the sparsity and how concentrated the activations
 * are in the hottest neurons. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"
#include "gguf_writer.h"

struct profile {
	int n_layer, n_ff;
	uint64_t *count;   /* n_layer * n_ff */
	uint64_t tokens;   /* rows the probe saw at layer 0 */
};

static void probe(void *data, int layer, int T, const float *x, const float *gate, const float *act)
{
	(void)x;
	(void)gate;
	struct profile *p = data;
	uint64_t *count = p->count + (size_t)layer * (size_t)p->n_ff;
	for (int t = 0; t < T; t++) {
		const float *a = act + (size_t)t * (size_t)p->n_ff;
		for (int j = 0; j < p->n_ff; j++)
			count[j] += a[j] != 0.0f;
	}
	if (layer == 0)
		p->tokens += (uint64_t)T;
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x < y) - (x > y);
}

/* The share of the activations of the n neurons (counts sorted
 * descending) that fall in the hottest fraction q of them. */
static double top_share(const uint64_t *sorted, size_t n, double q)
{
	uint64_t total = 0, top = 0;
	size_t k = (size_t)(q * (double)n + 0.5);
	if (k == 0)
		k = 1;
	for (size_t i = 0; i < n; i++) {
		total += sorted[i];
		if (i < k)
			top += sorted[i];
	}
	return total ? (double)top / (double)total : 0.0;
}

static void print_row(const char *label, const uint64_t *counts, size_t n, uint64_t tokens, uint64_t *tmp)
{
	uint64_t active = 0;
	for (size_t i = 0; i < n; i++)
		active += counts[i];
	memcpy(tmp, counts, n * sizeof(*tmp));
	qsort(tmp, n, sizeof(*tmp), cmp_desc);
	double sparsity = tokens ? 1.0 - (double)active / ((double)tokens * (double)n) : 0.0;
	if (active == 0) {
		printf("%-6s %9.3f%%  %7s %7s %7s\n", label, 100.0 * sparsity, "-", "-", "-");
		return;
	}
	printf("%-6s %9.3f%%  %6.2f%% %6.2f%% %6.2f%%\n", label, 100.0 * sparsity,
	       100.0 * top_share(tmp, n, 0.1), 100.0 * top_share(tmp, n, 0.2), 100.0 * top_share(tmp, n, 0.5));
}

static int write_profile(const char *path, const struct profile *p, const struct pinfer_model *m,
			 const char *model_name, const char *text_path)
{
	const struct pinfer_model_info *info = pinfer_model_info(m);
	struct gguf_writer *w = gguf_writer_new();
	if (!w) {
		fprintf(stderr, "profile: out of memory\n");
		return -1;
	}
	const char *base = strrchr(text_path, '/');
	gguf_writer_set_str(w, "general.architecture", info->arch);
	gguf_writer_set_str(w, "pinfer.profile.model", model_name);
	gguf_writer_set_str(w, "pinfer.profile.text", base ? base + 1 : text_path);
	gguf_writer_set_str(w, "pinfer.profile.sparsity", pinfer_sparsity_name(info->sparsity));
	gguf_writer_set_u64(w, "pinfer.profile.tokens", p->tokens);
	if (info->sparsity == PINFER_SPARSITY_THRESHOLD) {
		float *thr = malloc((size_t)p->n_layer * sizeof(float));
		if (thr) {
			for (int l = 0; l < p->n_layer; l++)
				thr[l] = pinfer_model_threshold(m, l);
			gguf_writer_set_arr_f32(w, "pinfer.profile.thresholds", thr, (uint64_t)p->n_layer);
			free(thr);
		}
	}
	uint64_t ne[1] = { (uint64_t)p->n_ff };
	for (int l = 0; l < p->n_layer; l++) {
		char name[64];
		snprintf(name, sizeof(name), "blk.%d.ffn_act_count", l);
		gguf_writer_add_tensor(w, name, 1, ne, PF_I32);
	}
	struct pf_err err;
	int r = gguf_writer_write_header(w, path, &err);
	int32_t *row = malloc((size_t)p->n_ff * sizeof(*row));
	if (!r && !row)
		r = pf_errf(&err, -ENOMEM, "out of memory");
	for (int l = 0; l < p->n_layer && !r; l++) {
		for (int j = 0; j < p->n_ff; j++)
			row[j] = (int32_t)p->count[(size_t)l * (size_t)p->n_ff + (size_t)j];
		r = gguf_writer_write_tensor_data(w, l, row, (uint64_t)p->n_ff * sizeof(*row), &err);
	}
	if (!r)
		r = gguf_writer_finish(w, &err);
	free(row);
	gguf_writer_free(w);
	if (r) {
		fprintf(stderr, "profile: %s: %s\n", path, err.msg);
		return -1;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: pinfer-model profile -m MODEL -f TEXT -o PROFILE [--lines N] [--skip-lines K] [options]\n"
		"  -f, --file TEXT          text: every non-empty line is one sequence (as perplexity)\n"
		"  -o, --output PROFILE     GGUF file for the counts (docs/sparsity.md)\n"
		"  --lines N                profile at most N lines\n"
		"  --skip-lines K           skip the first K non-empty lines\n"
		MODEL_OPTS_HELP
		"SwiGLU models never have exact zeros in dense mode: profile them with\n"
		"--sparsity threshold --calibration FILE (pinfer-model calibrate).\n");
}

int cmd_profile(int argc, char **argv)
{
	static const struct option longopts[] = {
		MODEL_LONG_OPTS,
		TEXT_LONG_OPTS,
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct model_opts mo;
	model_opts_init(&mo);
	struct text_opts to = TEXT_OPTS_INIT;
	const char *out_path = NULL;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, MODEL_SHORT_OPTS TEXT_SHORT_OPTS "o:h", longopts, NULL)) != -1) {
		int r = text_cmd_opts_parse(&mo, &to, opt, optarg, "profile", usage);
		if (r < 0)
			return 2;
		if (r > 0)
			continue;
		switch (opt) {
		case 'o': out_path = optarg; break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	int r = text_cmd_opts_check(&mo, &to, argc, argv, "profile", usage);
	if (r)
		return r;
	if (!out_path)
		return usage_error("profile", usage, "no output file given (-o PROFILE)");
	size_t len;
	char *text = text_opts_read(&to, &len, "profile");
	if (!text)
		return 1;
	struct pinfer_model *m = model_opts_open(&mo, "profile");
	if (!m) {
		free(text);
		return 1;
	}
	int rc = 1;
	const struct pinfer_model_info *info = pinfer_model_info(m);
	struct profile p = { .n_layer = info->n_layer, .n_ff = info->n_ff };
	size_t n_all = (size_t)info->n_layer * (size_t)info->n_ff;
	p.count = calloc(n_all, sizeof(*p.count));
	uint64_t *tmp = malloc(n_all * sizeof(*tmp));
	struct pinfer_ctx *c = text_ctx(&mo, m, false, "profile");
	if (!c || !p.count || !tmp) {
		if (c)
			fprintf(stderr, "profile: out of memory\n");
		goto out;
	}
	if (pinfer_ctx_set_ffn_probe(c, probe, &p)) {
		fprintf(stderr, "profile: cannot set the FFN probe (out of memory)\n");
		goto out;
	}
	uint64_t tokens;
	double t0 = now_seconds();
	long lines = eval_text_lines(c, m, text, len, &to, &tokens, "profile");
	if (lines < 0)
		goto out;
	double dt = now_seconds() - t0;
	if (tokens == 0) {
		fprintf(stderr, "profile: no tokens to profile in %s\n", to.path);
		goto out;
	}
	if (tokens != p.tokens) {
		fprintf(stderr, "profile: the probe saw %llu tokens, %llu were evaluated\n",
			(unsigned long long)p.tokens, (unsigned long long)tokens);
		goto out;
	}
	if (tokens > INT32_MAX) {
		fprintf(stderr, "profile: %llu tokens overflow the I32 counts; profile fewer lines\n",
			(unsigned long long)tokens);
		goto out;
	}
	const char *model_name = model_opts_name(&mo, m);
	if (write_profile(out_path, &p, m, model_name, to.path))
		goto out;

	printf("profile: %s, %s mode, %ld lines, %llu tokens, %d layers x %d neurons (%.0f tok/s)\n",
	       model_name, pinfer_sparsity_name(info->sparsity), lines, (unsigned long long)tokens,
	       info->n_layer, info->n_ff, (double)tokens / (dt > 0 ? dt : 1e-9));
	if (info->sparsity == PINFER_SPARSITY_DENSE && info->ffn_act == PINFER_ACT_SILU)
		printf("note: SiLU is never exactly zero, so in dense mode every neuron counts as active;\n"
		       "      profile SwiGLU models with --sparsity threshold --calibration FILE\n");
	printf("sparsity: share of (token, neuron) pairs not active; top N%%: share of the active\n"
	       "pairs that fall on the layer's (total: the model's) hottest N%% of neurons\n");
	printf("%-6s %10s  %7s %7s %7s\n", "layer", "sparsity", "top10%", "top20%", "top50%");
	for (int l = 0; l < info->n_layer; l++) {
		char label[16];
		snprintf(label, sizeof(label), "%d", l);
		print_row(label, p.count + (size_t)l * (size_t)info->n_ff, (size_t)info->n_ff, tokens, tmp);
	}
	print_row("total", p.count, n_all, tokens, tmp);
	fprintf(stderr, "wrote %s\n", out_path);
	rc = 0;
out:
	pinfer_ctx_free(c);
	pinfer_model_free(m);
	free(p.count);
	free(tmp);
	free(text);
	return rc;
}
