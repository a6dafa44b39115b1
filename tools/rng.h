/* splitmix64: the tools' seeded pseudo-random numbers (sampling tokens,
 * initializing weights, shuffles). Fast, and a pure function of the seed,
 * so every tool's output is reproducible. */
#ifndef PINFER_TOOLS_RNG_H
#define PINFER_TOOLS_RNG_H

#include <stdint.h>

/* The mix of x: a hash, also the stream below's step. */
static inline uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The next number of the stream whose state is *state. */
static inline uint64_t rng_next(uint64_t *state)
{
	uint64_t x = *state;
	*state += 0x9e3779b97f4a7c15ull;
	return splitmix64(x);
}

/* Uniform in (0, 1). */
static inline double rng_unit(uint64_t *state)
{
	return ((double)(rng_next(state) >> 11) + 0.5) * 0x1.0p-53;
}

#endif
