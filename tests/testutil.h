/* Helpers shared by the unit tests. Tests are cmocka programs; they find the
 * read-only data in $SHARED (set by `make check`, default ../shared). */
#ifndef PINFER_TESTUTIL_H
#define PINFER_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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

/* Whether two files hold the same bytes; fails the test when either
 * cannot be read. */
bool test_same_file(const char *a, const char *b);

/* Removes dir and everything below it (the temporary directories tests
 * make with mkdtemp). 0, or -1 when something could not be removed. */
int test_rmtree(const char *dir);

/* The temporary directory of a test program that keeps its files in one:
 * test_dir_setup, as the program's cmocka group setup, makes it
 * (/tmp/pinfer-NAME-XXXXXX, NAME the program's name with '-' for '_'),
 * test_dir_teardown, as its group teardown, removes it and everything
 * below. */
extern char test_dir[];
int test_dir_setup(void **state);
int test_dir_teardown(void **state);

/* Writes a small synthetic model to dir/name.gguf and returns its path (a
 * static buffer): dim 256, 4 heads (2 for K and V), n_layer layers of n_ff
 * neurons, weights of type, activation act (PINFER_ACT_AUTO: not written),
 * the default vocabulary, 2 threads. Fails the test when it cannot. */
const char *test_synth(const char *dir, const char *name, int n_ff, int n_layer, enum pf_dtype type,
		       enum pinfer_ffn_act act);

/* Writes the synthetic model o describes to path; fails the test when it
 * cannot. */
struct synth_opts;
void test_synth_or_fail(const char *path, const struct synth_opts *o);

/* Checks that the file o writes is a pure function of its options: the
 * same bytes with 1, 2 and 3 threads, others with the next seed and with
 * the options other (o changed in one other way). Writes in test_dir. */
void test_synth_is_pure(const struct synth_opts *o, const struct synth_opts *other);

/* Runs pinfer-model synth (cmd_synth) with the argc arguments args
 * (args[0] "synth"); returns its exit status. */
int test_synth_cli(int argc, const char *const *args);

/* Opens the model at path in sparsity mode; fails the test when it does
 * not open. */
struct pinfer_model *test_open_model(const char *path, enum pinfer_sparsity mode);

/* A context for m of n_ctx positions on n_threads threads, with an F32 KV
 * cache (what these contexts serve, comparisons of FFN modes and kernels,
 * would be blurred by an F16 cache's rounding); fails the test when it
 * cannot be made. */
struct pinfer_ctx *test_new_ctx(struct pinfer_model *m, int n_ctx, int n_threads);

/* The index of the largest of the n values (the first of equals): the
 * greedy choice among logits. */
int32_t test_argmax(const float *v, int n);

/* An FFN probe with the shape of the model it expects (its arrays). */
struct test_probe {
	pinfer_ffn_probe_fn fn;
	void *data;
	int n_embd, n_ff, n_layer;
};

/* Runs the model at path in sparsity mode over a short story's opening
 * (one prefill of 17 to n - 1 tokens) and greedy decode up to n tokens in
 * all, on 2 threads, with probe set on the context: the test fails,
 * before any evaluation, when the model's shape is not the probe's. The
 * tokens go to toks and the context's FFN statistics to stats, where not
 * NULL. */
void test_probe_run(const char *path, enum pinfer_sparsity mode, const struct test_probe *probe, int n,
		    int32_t *toks, struct pinfer_ffn_stats *stats);

/* Deterministic pseudo-random numbers for tests (xorshift64*). */
uint64_t test_rand(uint64_t *state);
float test_randf(uint64_t *state);  /* uniform in [-1, 1) */

#endif
