/* Helpers shared by the unit tests. Tests are cmocka programs; they find the
 * read-only data in $SHARED (set by `make check`, default ../shared). */
#ifndef PINFER_TESTUTIL_H
#define PINFER_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dtype.h"
#include "pinfer.h"

/* Path of a file under the shared data directory, in a static buffer. */
const char *shared_path(const char *rel);

/* Reads a whole file into a malloc'd, NUL-terminated buffer; fails the test
 * when it cannot. */
char *read_file(const char *path, size_t *len);

/* Removes dir and everything below it (the temporary directories tests
 * make with mkdtemp). 0, or -1 when something could not be removed. */
int test_rmtree(const char *dir);

/* Writes a small synthetic model to dir/name.gguf and returns its path (a
 * static buffer): dim 256, 4 heads (2 for K and V), n_layer layers of n_ff
 * neurons, weights of type, activation act (PINFER_ACT_AUTO: not written),
 * the default vocabulary, 2 threads. Fails the test when it cannot. */
const char *test_synth(const char *dir, const char *name, int n_ff, int n_layer, enum pf_dtype type,
		       enum pinfer_ffn_act act);

/* Deterministic pseudo-random numbers for tests (xorshift64*). */
uint64_t test_rand(uint64_t *state);
float test_randf(uint64_t *state);  /* uniform in [-1, 1) */

#endif
