#include "request_check.h"

#include <stdio.h>
#include <string.h>

#include "request.h"
#include "stop.h"

Pinfer__ErrorCode request_check_generate(const Pinfer__Generate *g, int max_predict, int *n_predict,
					 char *why, size_t size)
{
	if (g->raw && g->input_case == PINFER__GENERATE__INPUT_CHAT) {
		snprintf(why, size, "raw applies to a prompt, not a chat");
		return PINFER__ERROR_CODE__ERR_BAD_REQUEST;
	}
	if (g->n_stop > REQUEST_MAX_STOPS) {
		snprintf(why, size, "at most %d stop strings", REQUEST_MAX_STOPS);
		return PINFER__ERROR_CODE__ERR_LIMIT_EXCEEDED;
	}
	for (size_t i = 0; i < g->n_stop; i++) {
		size_t n = strlen(g->stop[i]);
		if (n == 0 || n > STOP_MAX_LEN || (g->stop[i][0] & 0xc0) == 0x80) {
			snprintf(why, size, "stop string %zu must be 1 to %d bytes of UTF-8", i, STOP_MAX_LEN);
			return PINFER__ERROR_CODE__ERR_BAD_REQUEST;
		}
	}
	*n_predict = g->opt_n_predict_case && g->n_predict >= 0 ? g->n_predict : max_predict;
	if (*n_predict > max_predict) {
		snprintf(why, size, "n_predict %d is above the daemon's limit of %d", *n_predict, max_predict);
		return PINFER__ERROR_CODE__ERR_LIMIT_EXCEEDED;
	}
	return PINFER__ERROR_CODE__ERR_UNSPECIFIED;
}

Pinfer__ErrorCode request_check_load(const Pinfer__LoadModel *m, enum pinfer_sparsity *mode,
				     struct models_budget *budget, char *why, size_t size)
{
	*mode = PINFER_SPARSITY_AUTO;
	if (m->opt_sparsity_case && pinfer_sparsity_parse(m->sparsity, mode)) {
		snprintf(why, size, "sparsity '%s' is not auto, dense, gate, threshold or predictor", m->sparsity);
		return PINFER__ERROR_CODE__ERR_BAD_REQUEST;
	}
	*budget = (struct models_budget){ .kind = BUDGET_AUTO };
	if (m->opt_memory_budget_case && !models_parse_budget(m->memory_budget, budget)) {
		snprintf(why, size, "memory_budget '%s' is not a size (2G, 1500M, bytes), N%%ffn (1-100), min or none",
			 m->memory_budget);
		return PINFER__ERROR_CODE__ERR_BAD_REQUEST;
	}
	return PINFER__ERROR_CODE__ERR_UNSPECIFIED;
}
