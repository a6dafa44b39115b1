#include "generate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t gen_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int gen_tokenize(const struct pinfer_model *m, struct request *r, int32_t **out)
{
	const struct gen_params *p = &r->params;
	/* One token per byte at most, plus BOS and SentencePiece's dummy prefix. */
	size_t cap = p->prompt_len + 2;
	int32_t *tokens = malloc(cap * sizeof(*tokens));
	if (!tokens) {
		request_finish(r, DONE_ERROR, "out of memory tokenizing the prompt", NULL);
		return -ENOMEM;
	}
	int n = pinfer_tokenize(m, p->prompt, p->prompt_len, p->add_bos, p->parse_special, tokens, cap);
	if (n > p->max_prompt_tokens && p->max_prompt_tokens > 0) {
		char why[128];
		snprintf(why, sizeof(why), "the prompt has %d tokens, more than the limit of %d", n,
			 p->max_prompt_tokens);
		free(tokens);
		r->limit_exceeded = true;
		request_finish(r, DONE_ERROR, why, NULL);
		return -E2BIG;
	}
	if (n <= 0 || (size_t)n > cap) {
		free(tokens);
		request_finish(r, DONE_ERROR, n == 0 ? "the prompt is empty" : "cannot tokenize the prompt",
			       NULL);
		return n == 0 ? -EINVAL : -EIO;
	}
	*out = tokens;
	return n;
}

int gen_shared_prefix(const struct slot *s, const int32_t *tokens, int n)
{
	int k = 0;
	while (k < n && k < s->n_cached && s->cached[k] == tokens[k])
		k++;
	return k;
}

static void gen_free(struct generation *g)
{
	if (!g)
		return;
	free(g->prompt);
	pinfer_sampler_free(g->sampler);
	stop_matcher_free(&g->stop);
	request_unref(g->req);
	free(g);
}

int gen_start(struct slot *s, const struct pinfer_model *m, struct request *r, int32_t *tokens,
	      int n_tokens)
{
	const char *why = NULL;
	int rc = -ENOMEM;
	struct generation *g = calloc(1, sizeof(*g));
	if (!g) {
		free(tokens);
		request_finish(r, DONE_ERROR, "out of memory", NULL);
		return rc;
	}
	request_ref(r);
	g->req = r;
	g->model = m;
	g->prompt = tokens;
	g->n_prompt = n_tokens;
	g->stats.prompt_tokens = n_tokens;
	if (n_tokens >= pinfer_ctx_size(s->ctx)) {
		why = "the prompt does not fit in the context";
		rc = -ENOSPC;
		goto fail;
	}
	if (pinfer_sampler_new(&g->sampler, &r->params.sampling, pinfer_model_info(m)->n_vocab) ||
	    stop_matcher_init(&g->stop, (const char *const *)r->params.stops, (size_t)r->params.n_stops)) {
		why = "out of memory";
		goto fail;
	}
	/* Reuse what the slot already holds, but evaluate at least the last
	 * prompt token: its logits give the first new token. */
	int keep = gen_shared_prefix(s, tokens, n_tokens);
	if (keep == n_tokens)
		keep--;
	pinfer_ctx_truncate(s->ctx, keep);
	s->n_cached = keep;
	g->n_evaluated = keep;
	g->stats.cached_tokens = keep;
	for (int i = 0; i < n_tokens; i++)
		pinfer_sampler_accept(g->sampler, tokens[i]);
	pinfer_detok_init(&g->detok, m, !r->params.add_bos || n_tokens > 1);
	pinfer_ctx_ffn_stats(s->ctx, &g->ffn_start);
	g->phase = GEN_PROMPT;
	g->t_phase = gen_now_ns();
	s->gen = g;
	return 0;
fail:
	request_finish(r, DONE_ERROR, why, &g->stats);
	gen_free(g);
	return rc;
}

/* Ends the generation: releases the held-back text unless a stop string
 * matched, records the timings and frees the slot. */
static bool finish(struct slot *s, enum done_reason reason, const char *error)
{
	struct generation *g = s->gen;
	uint64_t now = gen_now_ns();
	if (g->phase == GEN_PROMPT)
		g->stats.prompt_ns += now - g->t_phase;
	else
		g->stats.decode_ns += now - g->t_phase;
	struct pinfer_ffn_stats ffn;
	pinfer_ctx_ffn_stats(s->ctx, &ffn);
	g->stats.ffn_neurons = ffn.neurons - g->ffn_start.neurons;
	g->stats.ffn_active = ffn.active - g->ffn_start.active;
	if (reason == DONE_EOS || reason == DONE_LENGTH) {
		/* The detokenizer and the stop matcher may still hold text; a
		 * stop string can even complete inside it. */
		char tail[8], out[8 + STOP_MAX_LEN];
		bool hit = false;
		int n = pinfer_detok_flush(&g->detok, tail, sizeof(tail));
		int k = n > 0 ? stop_matcher_feed(&g->stop, tail, (size_t)n, out, sizeof(out), &hit) : 0;
		if (k > 0)
			request_emit(g->req, out, (size_t)k, -1);
		if (hit) {
			reason = DONE_STOP;
			g->req->stop_index = g->stop.matched;
		} else {
			k = stop_matcher_flush(&g->stop, out, sizeof(out));
			if (k > 0)
				request_emit(g->req, out, (size_t)k, -1);
		}
	}
	request_finish(g->req, reason, error, &g->stats);
	gen_free(g);
	s->gen = NULL;
	return true;
}

static bool eval_or_finish(struct slot *s, const int32_t *tokens, int n)
{
	struct pf_err err;
	if (pinfer_eval(s->ctx, tokens, n, &err)) {
		/* The cache may hold a partial batch now: forget all of it. */
		pinfer_ctx_truncate(s->ctx, 0);
		s->n_cached = 0;
		return finish(s, DONE_ERROR, err.msg);
	}
	memcpy(s->cached + s->n_cached, tokens, (size_t)n * sizeof(*tokens));
	s->n_cached += n;
	return false;
}

static bool prompt_step(struct slot *s)
{
	struct generation *g = s->gen;
	int n_batch = pinfer_ctx_batch(s->ctx);
	int n = g->n_prompt - g->n_evaluated;
	if (n > n_batch)
		n = n_batch;
	if (eval_or_finish(s, g->prompt + g->n_evaluated, n))
		return true;
	g->n_evaluated += n;
	if (g->n_evaluated < g->n_prompt)
		return false;
	uint64_t now = gen_now_ns();
	g->stats.prompt_ns += now - g->t_phase;
	g->t_phase = now;
	g->phase = GEN_DECODE;
	if (g->req->params.n_predict == 0)
		return finish(s, DONE_LENGTH, NULL);
	return false;
}

static bool decode_step(struct slot *s)
{
	struct generation *g = s->gen;
	struct request *r = g->req;
	int32_t id = pinfer_sampler_sample(g->sampler, pinfer_logits(s->ctx, -1));
	if (pinfer_token_is_eog(g->model, id))
		return finish(s, DONE_EOS, NULL);
	pinfer_sampler_accept(g->sampler, id);
	g->stats.generated_tokens++;

	char piece[512], safe[512 + STOP_MAX_LEN];
	int n = pinfer_detok_push(&g->detok, id, piece, sizeof(piece));
	if (n < 0)
		return finish(s, DONE_ERROR, "cannot decode a generated token");
	bool hit = false;
	int k = stop_matcher_feed(&g->stop, piece, (size_t)n, safe, sizeof(safe), &hit);
	if (k < 0)
		return finish(s, DONE_ERROR, "stop-string matching failed");
	if (request_emit(r, safe, (size_t)k, id))
		return finish(s, DONE_ERROR, "out of memory for the output");
	if (k > 0 || r->params.return_ids)
		s->notify(s->notify_data, r);
	if (hit) {
		r->stop_index = g->stop.matched;
		return finish(s, DONE_STOP, NULL);
	}
	int limit = r->params.n_predict;
	if ((limit >= 0 && g->stats.generated_tokens >= limit) ||
	    pinfer_ctx_pos(s->ctx) >= pinfer_ctx_size(s->ctx))
		return finish(s, DONE_LENGTH, NULL);
	return eval_or_finish(s, &id, 1);
}

bool gen_step(struct slot *s)
{
	struct generation *g = s->gen;
	if (atomic_load(&g->req->cancel))
		return finish(s, DONE_CANCELLED, NULL);
	return g->phase == GEN_PROMPT ? prompt_step(s) : decode_step(s);
}
