/* What one decoded token costs, from the FFN statistics of the decode
 * steps between two snapshots: the weight bytes it reads and the share of
 * its time in the FFN and in the predictor (pinfer-model bench). */
#ifndef PINFER_TOOLS_BENCH_TOKEN_H
#define PINFER_TOOLS_BENCH_TOKEN_H

#include "pinfer.h"

struct bench_token {
	double step_bytes;    /* weights read per decoded token */
	double active;        /* share of FFN neurons computed */
	double predicted;     /* predictor mode: share the predictor chose */
	double ffn_ms, predictor_ms;
};

/* From the stats before and after `tokens` decode steps. */
void bench_token_measure(const struct pinfer_model_info *info, const struct pinfer_ffn_stats *before,
			 const struct pinfer_ffn_stats *after, double tokens, struct bench_token *out);
/* "FFN 17.7 ms a token (27.4%), predictor 3.1 ms (4.8%)" for a token of
 * token_ms, into buf. */
const char *bench_token_time(const struct bench_token *t, double token_ms, char *buf, size_t size);

#endif
