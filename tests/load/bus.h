/* The D-Bus side of the load: one thread that loads the second model with
 * Manager.LoadModel, lets the clients use it, then drains it (clients
 * leave it alone) and evicts it with Manager.EvictModel, over and over.
 * EvictModel answers Busy while generations started before the drain
 * still run, and is retried; Busy for longer than the operation timeout
 * means the daemon lost count of the model's users, a failure, as is any
 * other error. */
#ifndef PINFER_LOAD_BUS_H
#define PINFER_LOAD_BUS_H

#include "load.h"
#include "stats.h"

struct bus_churn {
	struct load_config *cfg;
	struct stats st;
};

/* The thread's body: arg is a struct bus_churn. */
void *bus_churn_run(void *arg);

#endif
