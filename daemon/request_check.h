/* The checks of a request's own fields, apart from the daemon's state (the
 * connection, the models): pure functions of the decoded message and the
 * configured limits, so that the protocol fuzz target (tests/fuzz/) runs
 * exactly what the handlers run on whatever a frame decodes to.
 *
 * Each returns 0 (ERR_UNSPECIFIED) when the request may go on, else the
 * error code to reply with and, in why, the sentence to send. */
#ifndef PINFERD_REQUEST_CHECK_H
#define PINFERD_REQUEST_CHECK_H

#include <stddef.h>

#include "models.h"
#include "pinfer.h"
#include "pinfer.pb-c.h"

/* Generate: raw with a chat, the stop strings, n_predict against
 * max_predict (also its default: *n_predict is what the request gets). */
Pinfer__ErrorCode request_check_generate(const Pinfer__Generate *g, int max_predict, int *n_predict,
					 char *why, size_t size);

/* LoadModel: its sparsity mode and memory budget, parsed into *mode
 * (AUTO when absent) and *budget (BUDGET_AUTO when absent). */
Pinfer__ErrorCode request_check_load(const Pinfer__LoadModel *m, enum pinfer_sparsity *mode,
				     struct models_budget *budget, char *why, size_t size);

#endif
