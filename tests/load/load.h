/* pinfer-load: many clients against one pinferd for a set time (the
 * operations in ops.c, D-Bus load/evict in bus.c, the daemon's RSS in
 * rss.c). What every part reads. */
#ifndef PINFER_LOAD_H
#define PINFER_LOAD_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

struct load_config {
	const char *socket;
	const char *model;         /* generations, mostly */
	const char *second_model;  /* generations too, and D-Bus load/evict; NULL: none */
	const char *bus;           /* D-Bus address for load/evict; NULL: no D-Bus */
	pid_t pid;                 /* pinferd, for its RSS and liveness */
	int clients;
	int duration_s;
	int n_predict;
	int timeout_ms;            /* the longest any one operation may take */
	int bus_period_ms;         /* between a D-Bus load and the next evict */
	int rss_period_ms;
	double max_rss_growth_mib;
	uint64_t seed;
	int64_t end_ms;            /* wire_now_ms() when clients stop starting operations */
	atomic_bool daemon_gone;   /* set by the RSS sampler: stop early */
	atomic_bool second_draining;  /* set by the D-Bus thread: leave the second model alone */
};

#endif
