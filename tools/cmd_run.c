/* pinfer-model run: in-process generation. The generated text goes to
 * stdout as it is produced; timings go to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"

enum {
	OPT_TEMP = 2000, OPT_TOP_K, OPT_TOP_P, OPT_MIN_P, OPT_REPEAT_PENALTY, OPT_REPEAT_LAST_N,
	OPT_PRESENCE, OPT_FREQUENCY, OPT_NO_BOS, OPT_SPECIAL, OPT_IDS,
};

static void usage(void)
{
	fprintf(stderr,
		"usage: pinfer-model run -m MODEL [-p PROMPT] [-n N] [options]\n"
		"  -p, --prompt TEXT        prompt (default: empty, generation starts from BOS)\n"
		"  -n, --n-predict N        tokens to generate (default 128)\n"
		"  --temp T                 temperature, 0 = greedy (default 0.8)\n"
		"  --top-k K --top-p P --min-p P\n"
		"  --repeat-penalty R --repeat-last-n N --presence-penalty P --frequency-penalty F\n"
		"  -s, --seed S             sampling seed (default: random)\n"
		MODEL_OPTS_HELP
		"  --no-bos                 do not prepend BOS\n"
		"  --special                parse control tokens written in the prompt\n"
		"  --ids                    print token ids instead of text\n");
}

int cmd_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		MODEL_LONG_OPTS,
		{ "prompt", required_argument, NULL, 'p' },
		{ "n-predict", required_argument, NULL, 'n' },
		{ "seed", required_argument, NULL, 's' },
		{ "temp", required_argument, NULL, OPT_TEMP },
		{ "top-k", required_argument, NULL, OPT_TOP_K },
		{ "top-p", required_argument, NULL, OPT_TOP_P },
		{ "min-p", required_argument, NULL, OPT_MIN_P },
		{ "repeat-penalty", required_argument, NULL, OPT_REPEAT_PENALTY },
		{ "repeat-last-n", required_argument, NULL, OPT_REPEAT_LAST_N },
		{ "presence-penalty", required_argument, NULL, OPT_PRESENCE },
		{ "frequency-penalty", required_argument, NULL, OPT_FREQUENCY },
		{ "no-bos", no_argument, NULL, OPT_NO_BOS },
		{ "special", no_argument, NULL, OPT_SPECIAL },
		{ "ids", no_argument, NULL, OPT_IDS },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct model_opts mo;
	model_opts_init(&mo);
	struct pinfer_sampler_params sp;
	pinfer_sampler_params_default(&sp);
	const char *prompt = "";
	long n_predict = 128, v;
	bool add_bos = true, special = false, print_ids = false, ok = true;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, MODEL_SHORT_OPTS "p:n:s:h", longopts, NULL)) != -1) {
		int r = model_opts_parse(&mo, opt, optarg, "run");
		if (r < 0)
			return 2;
		if (r > 0)
			continue;
		switch (opt) {
		case 'p': prompt = optarg; break;
		case 'n': ok = parse_int(optarg, 0, 1 << 24, &n_predict); break;
		case 's': ok = parse_int(optarg, 0, __LONG_MAX__, &v); sp.seed = (uint64_t)v; break;
		case OPT_TEMP: ok = parse_float(optarg, &sp.temp); break;
		case OPT_TOP_K: ok = parse_int(optarg, 0, 1 << 24, &v); sp.top_k = (int)v; break;
		case OPT_TOP_P: ok = parse_float(optarg, &sp.top_p); break;
		case OPT_MIN_P: ok = parse_float(optarg, &sp.min_p); break;
		case OPT_REPEAT_PENALTY: ok = parse_float(optarg, &sp.repeat_penalty); break;
		case OPT_REPEAT_LAST_N: ok = parse_int(optarg, 0, 1 << 20, &v); sp.repeat_last_n = (int)v; break;
		case OPT_PRESENCE: ok = parse_float(optarg, &sp.presence_penalty); break;
		case OPT_FREQUENCY: ok = parse_float(optarg, &sp.frequency_penalty); break;
		case OPT_NO_BOS: add_bos = false; break;
		case OPT_SPECIAL: special = true; break;
		case OPT_IDS: print_ids = true; break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
		if (!ok) {
			fprintf(stderr, "run: bad value '%s'\n", optarg);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "run: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}

	double t_load = now_seconds();
	struct pinfer_model *m = model_opts_open(&mo, "run");
	if (!m)
		return 1;
	int rc = 1;
	struct pinfer_ctx *c = NULL;
	struct pinfer_sampler *s = NULL;
	int32_t *tokens = NULL;
	const struct pinfer_model_info *info = pinfer_model_info(m);
	size_t plen = strlen(prompt);
	size_t cap = plen + 2;
	tokens = malloc(cap * sizeof(*tokens));
	int n_prompt = tokens ? pinfer_tokenize(m, prompt, plen, add_bos, special, tokens, cap) : -1;
	if (n_prompt <= 0 || (size_t)n_prompt > cap) {
		fprintf(stderr, "run: %s\n", n_prompt == 0 ? "empty prompt and no BOS token" : "cannot tokenize the prompt");
		goto out;
	}
	c = model_opts_ctx(&mo, m, 0, false, "run");
	if (!c)
		goto out;
	if (pinfer_sampler_new(&s, &sp, info->n_vocab)) {
		fprintf(stderr, "run: cannot create the sampler\n");
		goto out;
	}
	t_load = now_seconds() - t_load;
	struct pf_err err;
	double t0 = now_seconds();
	if (pinfer_eval(c, tokens, n_prompt, &err)) {
		fprintf(stderr, "run: %s\n", err.msg);
		goto out;
	}
	double t_prompt = now_seconds() - t0;
	for (int i = 0; i < n_prompt; i++)
		pinfer_sampler_accept(s, tokens[i]);

	struct pinfer_detok detok;
	pinfer_detok_init(&detok, m, plen > 0);
	char piece[512];
	int n_gen = 0;
	double t_first = 0.0;
	t0 = now_seconds();
	while (n_gen < n_predict) {
		int32_t id = pinfer_sampler_sample(s, pinfer_logits(c, -1));
		if (pinfer_token_is_eog(m, id))
			break;
		pinfer_sampler_accept(s, id);
		if (n_gen++ == 0)
			t_first = t_prompt + now_seconds() - t0;
		if (print_ids) {
			printf("%s%d", n_gen > 1 ? " " : "", id);
		} else {
			int n = pinfer_detok_push(&detok, id, piece, sizeof(piece));
			if (n > 0)
				fwrite(piece, 1, (size_t)(n < (int)sizeof(piece) ? n : (int)sizeof(piece)), stdout);
		}
		fflush(stdout);
		if (n_gen == n_predict)
			break;
		if (pinfer_eval(c, &id, 1, &err)) {
			fprintf(stderr, "\nrun: %s\n", err.msg);
			goto out;
		}
	}
	if (!print_ids) {
		int n = pinfer_detok_flush(&detok, piece, sizeof(piece));
		if (n > 0)
			fwrite(piece, 1, (size_t)n, stdout);
	}
	printf("\n");
	fflush(stdout);
	double t_gen = now_seconds() - t0;
	fprintf(stderr, "load: %.3f s  prompt: %d tokens, %.1f tok/s  first token: %.2f ms  decode: %d tokens, %.1f tok/s\n",
		t_load, n_prompt, n_prompt / (t_prompt > 0 ? t_prompt : 1e-9), t_first * 1e3, n_gen,
		n_gen / (t_gen > 0 ? t_gen : 1e-9));
	rc = 0;
out:
	free(tokens);
	pinfer_sampler_free(s);
	pinfer_ctx_free(c);
	pinfer_model_free(m);
	return rc;
}
