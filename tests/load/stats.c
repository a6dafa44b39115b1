#include "stats.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int samples_add(struct samples *s, double ms)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 256;
		double *v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -1;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = ms;
	return 0;
}

#define FAILURES_SHOWN 50

void stats_fail(struct stats *s, const char *fmt, ...)
{
	static atomic_int shown;
	s->failed++;
	if (atomic_fetch_add(&shown, 1) >= FAILURES_SHOWN)
		return;
	char line[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One write per line, so threads' lines do not interleave. */
	fprintf(stderr, "pinfer-load: failure: %s\n", line);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double samples_percentile(struct samples *s, double p)
{
	if (!s->n)
		return 0;
	qsort(s->v, s->n, sizeof(*s->v), cmp_double);
	size_t rank = (size_t)ceil(p / 100.0 * (double)s->n);
	return s->v[rank ? rank - 1 : 0];
}

static int samples_merge(struct samples *into, const struct samples *from)
{
	for (size_t i = 0; i < from->n; i++)
		if (samples_add(into, from->v[i]))
			return -1;
	return 0;
}

int stats_merge(struct stats *into, const struct stats *from)
{
	into->answered += from->answered;
	into->refused += from->refused;
	into->failed += from->failed;
	into->cancelled += from->cancelled;
	into->disconnected += from->disconnected;
	into->garbage += from->garbage;
	into->oversized += from->oversized;
	into->truncated += from->truncated;
	into->tokens += from->tokens;
	into->bus_loads += from->bus_loads;
	into->bus_evicts += from->bus_evicts;
	into->bus_busy += from->bus_busy;
	if (samples_merge(&into->ttft, &from->ttft) || samples_merge(&into->total, &from->total))
		return -1;
	return 0;
}

void stats_free(struct stats *s)
{
	free(s->ttft.v);
	free(s->total.v);
	memset(s, 0, sizeof(*s));
}
