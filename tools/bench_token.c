#include "bench_token.h"

#include <stdio.h>

void bench_token_measure(const struct pinfer_model_info *info, const struct pinfer_ffn_stats *before,
			 const struct pinfer_ffn_stats *after, double tokens, struct bench_token *out)
{
	double neurons = (double)(after->neurons - before->neurons);
	out->active = neurons > 0 ? (double)(after->active - before->active) / neurons : 1.0;
	out->predicted = neurons > 0 ? (double)(after->predicted - before->predicted) / neurons : 0.0;
	/* Everything in dense mode; in a sparse mode the fixed part, the
	 * gate rows of the neurons the predictor chose (predictor mode) and
	 * the other rows of those that fired. */
	double per_layer = (double)info->n_ff * info->n_layer;
	out->step_bytes = info->sparsity == PINFER_SPARSITY_DENSE
				  ? (double)info->decode_bytes
				  : (double)info->sparse_base_bytes +
					    per_layer * (out->active * (double)(info->neuron_bytes - info->gate_row_bytes) +
							 out->predicted * (double)info->gate_row_bytes);
	out->ffn_ms = tokens > 0 ? (double)(after->ffn_ns - before->ffn_ns) / 1e6 / tokens : 0.0;
	out->predictor_ms = tokens > 0 ? (double)(after->predictor_ns - before->predictor_ns) / 1e6 / tokens : 0.0;
}

const char *bench_token_time(const struct bench_token *t, double token_ms, char *buf, size_t size)
{
	int n = snprintf(buf, size, "FFN %.2f ms a token (%.1f%%)", t->ffn_ms, 100.0 * t->ffn_ms / token_ms);
	if (t->predictor_ms > 0 && n > 0 && (size_t)n < size)
		snprintf(buf + n, size - (size_t)n, ", predictor %.2f ms (%.1f%%)", t->predictor_ms,
			 100.0 * t->predictor_ms / token_ms);
	return buf;
}
