#include "rss.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wire.h"

static atomic_bool stopping;

void rss_stop(void)
{
	atomic_store(&stopping, true);
}

double rss_read(pid_t pid, char *why, size_t n)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(why, n, "%s: %s", path, strerror(errno));
		return -1;
	}
	double kib = -1;
	bool zombie = false;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "State:", 6) && strstr(line, "zombie"))
			zombie = true;
		if (!strncmp(line, "VmRSS:", 6))
			kib = strtod(line + 6, NULL);
	}
	fclose(f);
	if (zombie || kib < 0) {
		snprintf(why, n, "pid %d has exited", (int)pid);
		return -1;
	}
	return kib / 1024.0;
}

static int add(struct rss_log *r, double mib)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 256;
		struct rss_sample *v = realloc(r->v, cap * sizeof(*v));
		if (!v)
			return -1;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n++] = (struct rss_sample){ wire_now_ms() - r->start_ms, mib };
	return 0;
}

void *rss_run(void *arg)
{
	struct rss_log *r = arg;
	int ms = r->cfg->rss_period_ms;
	struct timespec period = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (!atomic_load(&stopping)) {
		double mib = rss_read(r->cfg->pid, r->why, sizeof(r->why));
		if (mib < 0) {
			r->gone = true;
			atomic_store(&r->cfg->daemon_gone, true);
			return NULL;
		}
		if (add(r, mib)) {
			snprintf(r->why, sizeof(r->why), "out of memory for RSS samples");
			return NULL;
		}
		nanosleep(&period, NULL);
	}
	return NULL;
}

void rss_peaks(const struct rss_log *r, double *early, double *late)
{
	*early = *late = 0;
	if (!r->n)
		return;
	int64_t span = r->v[r->n - 1].t_ms;
	for (size_t i = 0; i < r->n; i++) {
		if (r->v[i].t_ms <= span / 4 && r->v[i].mib > *early)
			*early = r->v[i].mib;
		if (r->v[i].t_ms >= span - span / 4 && r->v[i].mib > *late)
			*late = r->v[i].mib;
	}
}

void rss_free(struct rss_log *r)
{
	free(r->v);
	r->v = NULL;
	r->n = r->cap = 0;
}
