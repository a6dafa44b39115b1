/* pinfer-model plan: how a bundle file's memory budget is spent
 * (docs/offload.md): the model opened under the budget with the context a
 * `run` with the same options makes, and the plan printed, ending with the
 * total budget in bytes. */
#include <stdio.h>

#include "commands.h"
#include "common.h"

#define CMD "plan"

static void usage(void)
{
	fprintf(stderr,
		"usage: pinfer-model plan -m MODEL --memory-budget SIZE|N%%ffn|min [-c N] [options]\n"
		"  prints how the budget is spent: resident weights, the context, the neuron\n"
		"  cache and its hot set; the last line is the total budget in bytes\n" MODEL_OPTS_HELP);
}

static double mib(uint64_t b)
{
	return (double)b / (1 << 20);
}

int cmd_plan(int argc, char **argv)
{
	static const struct option longopts[] = {
		MODEL_LONG_OPTS,
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct model_opts mo;
	model_opts_init(&mo);
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, MODEL_SHORT_OPTS "h", longopts, NULL)) != -1) {
		int r = model_opts_parse(&mo, opt, optarg, CMD);
		if (r < 0)
			return 2;
		if (r > 0)
			continue;
		if (opt == 'h') {
			usage();
			return 0;
		}
		usage();
		return 2;
	}
	if (optind < argc)
		return usage_error(CMD, usage, "unexpected argument '%s'", argv[optind]);
	if (!mo.model)
		return usage_error(CMD, usage, "no model given (-m MODEL)");
	if (!mo.params.memory_budget && !mo.params.ffn_cache_percent)
		return usage_error(CMD, usage, "no budget given (--memory-budget)");
	mo.params.mmap_weights = true;  /* nothing is decoded: no copies */
	struct pinfer_model *m = model_opts_open(&mo, CMD);
	if (!m)
		return 1;
	struct pinfer_ctx *c = model_opts_ctx(&mo, m, 0, false, CMD);
	struct pinfer_offload_stats st;
	int rc = 1;
	if (c && pinfer_model_offload_stats(m, &st)) {
		printf("resident weights  %10.1f MiB  (embeddings, attention, norms, predictors, output; mapped)\n",
		       mib(st.resident_bytes));
		printf("contexts          %10.1f MiB  (KV cache of %d tokens, scratch)\n", mib(st.context_bytes),
		       pinfer_ctx_size(c));
		printf("neuron cache      %10.1f MiB  (%llu hot clusters of %llu pinned; the other slots by recency)\n",
		       mib(st.cache_bytes), (unsigned long long)st.hot_clusters, (unsigned long long)st.clusters);
		printf("staging, tables   %10.1f MiB\n",
		       mib(st.budget - st.resident_bytes - st.context_bytes - st.cache_bytes));
		printf("minimum           %10.1f MiB\n", mib(st.minimum));
		printf("reads             %s, %s\n", st.io, st.direct ? "O_DIRECT" : "through the page cache");
		printf("total: %llu bytes\n", (unsigned long long)st.budget);
		rc = 0;
	}
	pinfer_ctx_free(c);
	pinfer_model_free(m);
	return rc;
}
