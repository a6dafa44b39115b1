/* One generation running in one slot, advanced a step at a time by the
 * model's worker thread: a step is one prompt chunk or one new token, so
 * the scheduler can interleave slots fairly and notice cancellation
 * between steps, including in the middle of a long prompt. */
#ifndef PINFERD_GENERATE_H
#define PINFERD_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "pinfer.h"
#include "request.h"
#include "stop.h"

/* A context and the tokens its KV cache holds, reused across requests so a
 * prompt sharing a prefix with the previous one skips that prefix. */
struct slot {
	struct pinfer_ctx *ctx;
	/* Told about new output at once, so a token reaches the client before
	 * the step that evaluates it (a whole decode step sooner). */
	void (*notify)(void *data, struct request *r);
	void *notify_data;
	int32_t *cached;   /* tokens in the KV cache, in order */
	int n_cached;
	struct generation *gen;  /* NULL when idle */
};

enum gen_phase { GEN_PROMPT, GEN_DECODE };

struct generation {
	struct request *req;   /* holds a reference */
	const struct pinfer_model *model;
	int32_t *prompt;
	int n_prompt;
	int n_evaluated;       /* prompt tokens in the KV cache */
	enum gen_phase phase;
	struct pinfer_sampler *sampler;
	struct pinfer_detok detok;
	struct stop_matcher stop;
	struct gen_stats stats;
	struct pinfer_ffn_stats ffn_start;  /* the slot's context's when it began */
	uint64_t t_phase;      /* start of the current phase, ns */
};

/* The request's prompt as tokens (malloc'd into *out). On failure the
 * request is finished with an error and a negative errno is returned. */
int gen_tokenize(const struct pinfer_model *m, struct request *r, int32_t **out);

/* Common prefix of the slot's cache and tokens (what gen_start reuses). */
int gen_shared_prefix(const struct slot *s, const int32_t *tokens, int n);

/* Binds a tokenized request to an idle slot (taking ownership of tokens),
 * reusing the longest prefix the slot's cache shares with it. On failure
 * the request is finished with an error and the slot stays idle. */
int gen_start(struct slot *s, const struct pinfer_model *m, struct request *r, int32_t *tokens,
	      int n_tokens);

/* One step. Returns true when the generation finished (the request is
 * then marked done and the slot idle again). */
bool gen_step(struct slot *s);

uint64_t gen_now_ns(void);

#endif
