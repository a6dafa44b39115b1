#include "bench_compare.h"

#include <stdio.h>

#include "bench_token.h"

/* Rounds of n_decode tokens each, alternated between the two models: both
 * see the same machine (another job, a throttled core) as nearly as a
 * shared machine allows, so their ratio is steadier than either rate. */
#define ROUNDS 5

struct side {
	const char *path;
	struct pinfer_model *m;
	struct pinfer_ctx *c;
	int32_t tok;
	double best;
	double seconds, tokens;  /* of the timed rounds */
};

/* n greedy tokens after BOS in a fresh sequence; the rate is kept if best. */
static int decode(struct side *s, long n, struct pf_err *err)
{
	int n_vocab = pinfer_model_info(s->m)->n_vocab;
	int32_t bos = pinfer_token_bos(s->m) >= 0 ? pinfer_token_bos(s->m) : 0;
	pinfer_ctx_truncate(s->c, 0);
	int r = pinfer_eval(s->c, &bos, 1, err);
	if (r)
		return r;
	double t0 = now_seconds();
	for (long i = 0; i < n; i++) {
		s->tok = logits_argmax(pinfer_logits(s->c, -1), n_vocab);
		if ((r = pinfer_eval(s->c, &s->tok, 1, err)))
			return r;
	}
	double dt = now_seconds() - t0;
	s->seconds += dt;
	s->tokens += (double)n;
	if ((double)n / dt > s->best)
		s->best = (double)n / dt;
	return 0;
}

int bench_compare(const struct model_opts *mo, const char *vs, enum pinfer_sparsity vs_mode, long n_decode)
{
	struct model_opts vo = *mo;
	vo.model = vs;
	vo.params.sparsity = vs_mode;
	vo.params.memory_budget = 0;
	vo.params.ffn_cache_percent = 0;
	struct side sides[2] = { { .path = mo->model }, { .path = vs } };
	const struct model_opts *opts[2] = { mo, &vo };
	struct pf_err err;
	int rc = 1;
	for (int i = 0; i < 2; i++) {
		if (!(sides[i].m = model_opts_open(opts[i], "bench")) ||
		    !(sides[i].c = model_opts_ctx(opts[i], sides[i].m, 1, false, "bench")))
			goto out;
		/* the weights paged in before anything is timed */
		if (decode(&sides[i], 1, &err))
			goto fail;
		sides[i].best = sides[i].seconds = sides[i].tokens = 0.0;
	}
	struct pinfer_ffn_stats before[2], after[2];
	for (int i = 0; i < 2; i++)
		pinfer_ctx_ffn_stats(sides[i].c, &before[i]);
	for (int round = 0; round < ROUNDS; round++)
		for (int i = 0; i < 2; i++)
			if (decode(&sides[i], n_decode, &err))
				goto fail;
	/* The BOS steps that start each round are in the statistics too; one
	 * in n_decode + 1 tokens. */
	for (int i = 0; i < 2; i++) {
		const struct pinfer_model_info *info = pinfer_model_info(sides[i].m);
		pinfer_ctx_ffn_stats(sides[i].c, &after[i]);
		struct bench_token bt;
		bench_token_measure(info, &before[i], &after[i], sides[i].tokens + ROUNDS, &bt);
		char share[128];
		printf("decode: %s (%s): %.2f tok/s; %.1f MiB of weights a token; %s\n", sides[i].path,
		       pinfer_sparsity_name(info->sparsity), sides[i].best, bt.step_bytes / 1048576.0,
		       bench_token_time(&bt, sides[i].seconds * 1e3 / sides[i].tokens, share, sizeof(share)));
	}
	printf("ratio: %.2fx (best of %d alternated rounds of %ld tokens, %d threads)\n",
	       sides[0].best / sides[1].best, ROUNDS, n_decode, mo->n_threads);
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "bench: %s\n", err.msg);
out:
	for (int i = 0; i < 2; i++) {
		pinfer_ctx_free(sides[i].c);
		pinfer_model_free(sides[i].m);
	}
	return rc;
}
