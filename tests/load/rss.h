/* pinferd's resident memory over the run, sampled from /proc/PID/status,
 * and whether it is still alive. Growth is judged by peaks, not single
 * samples, because loading and evicting the second model makes the RSS
 * swing: growth = the highest sample of the last quarter of the run minus
 * the highest of the first quarter. A leak raises the late peaks; the
 * churn does not. */
#ifndef PINFER_LOAD_RSS_H
#define PINFER_LOAD_RSS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "load.h"

struct rss_sample {
	int64_t t_ms;   /* since the run began */
	double mib;
};

struct rss_log {
	struct load_config *cfg;
	int64_t start_ms;
	struct rss_sample *v;
	size_t n, cap;
	bool gone;      /* the process ended (or became a zombie) during the run */
	char why[128];  /* what reading it said then */
};

/* The thread's body: arg is a struct rss_log. Samples until cfg->end_ms
 * plus the time clients take to finish, set by main through stop. */
void *rss_run(void *arg);
void rss_stop(void);

/* The process's VmRSS in MiB; < 0 when it is gone (why says how). */
double rss_read(pid_t pid, char *why, size_t n);

/* Peaks of the first and last quarter, as in the header comment. */
void rss_peaks(const struct rss_log *r, double *early, double *late);

void rss_free(struct rss_log *r);

#endif
