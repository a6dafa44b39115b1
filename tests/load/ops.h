/* One load client: a thread that repeats a random mix of operations on
 * pinferd until the run's end. Weights, out of 100: 45 a streamed
 * generation on the main model, 10 on the second model (which D-Bus keeps
 * loading and evicting), 15 a generation cancelled after its first token,
 * 10 a generation whose connection is closed after its first token, 20 a
 * malformed frame on a connection of its own (garbage that does not decode,
 * a length over max_frame, a frame cut short by a hang-up). While the D-Bus
 * thread drains the second model to evict it, its share goes to the main
 * one. A refusal (ERR_BUSY) is followed by a pause of 10 to 50 ms, as a
 * client that retries later would. */
#ifndef PINFER_LOAD_OPS_H
#define PINFER_LOAD_OPS_H

#include <stdint.h>

#include "load.h"
#include "stats.h"
#include "wire.h"

struct client {
	int index;
	struct load_config *cfg;
	uint64_t rng;
	struct wire conn;    /* kept between generations; fd < 0 when closed */
	uint64_t next_id;
	struct stats st;
};

/* The thread's body: arg is a struct client. */
void *client_run(void *arg);

#endif
