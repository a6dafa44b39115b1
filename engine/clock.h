/* The monotonic clock in nanoseconds, for the figures the engine keeps
 * (decode steps, FFN and predictor time, waits for reads). */
#ifndef PINFER_CLOCK_H
#define PINFER_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t pf_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
