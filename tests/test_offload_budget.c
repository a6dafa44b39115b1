/* Memory budget changes on a loaded bundle file (docs/offload.md): while
 * one thread decodes greedily, another moves the budget between the
 * minimum and room for everything; the tokens stay those of the model in
 * memory, every budget the store accepts is kept within, and a budget
 * below the minimum is refused without changing anything. The process's
 * resident memory follows the budget. */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"

#define N_TOKENS 48

typedef int (*command_fn)(int, char **);

static void run_command(command_fn fn, int argc, const char *const *args)
{
	char *argv[32];
	assert_true(argc < 32);
	for (int i = 0; i < argc; i++)
		argv[i] = (char *)args[i];
	argv[argc] = NULL;
	assert_int_equal(fn(argc, argv), 0);
}

static void pack_model(char *src, char *packed, size_t size, const char *n_ff)
{
	char prof[512];
	snprintf(src, size, "%s/m.gguf", test_dir);
	snprintf(prof, sizeof(prof), "%s/m.prof", test_dir);
	snprintf(packed, size, "%s/m.pack", test_dir);
	const char *synth[] = { "synth", "--dim", "256", "--ff", n_ff, "--layers", "3", "--heads", "4", "--type",
				"q4_0", "--act", "relu", "--sparsity", "0.9", "--predictor", "64", "-o", src };
	run_command(cmd_synth, 19, synth);
	const char *profile[] = { "profile", "-m", src, "-f", shared_path("text/tinystories_val_head.txt"), "--lines",
				  "20", "-o", prof };
	run_command(cmd_profile, 9, profile);
	const char *pack[] = { "pack", "-m", src, "--profile", prof, "-o", packed };
	run_command(cmd_pack, 7, pack);
}

static void generate(struct pinfer_model *m, struct pinfer_ctx *c, int32_t *out)
{
	struct pf_err err;
	int32_t tok = pinfer_token_bos(m);
	for (int i = 0; i < N_TOKENS; i++) {
		if (pinfer_eval(c, &tok, 1, &err))
			fail_msg("token %d: %s", i, err.msg);
		tok = out[i] = test_argmax(pinfer_logits(c, -1), pinfer_model_info(m)->n_vocab);
	}
}

struct mover {
	struct pinfer_model *m;
	uint64_t low, high;
	_Atomic bool stop;
	int changes, over;
};

/* Alternates the budget, checking after each change that the plan fits. */
static void *move_budget(void *arg)
{
	struct mover *mv = arg;
	struct pf_err err;
	for (int i = 0; !atomic_load(&mv->stop); i++) {
		uint64_t b = i % 2 ? mv->high : mv->low + (uint64_t)(i % 7) * 4096;
		if (pinfer_model_set_memory_budget(mv->m, b, &err))
			continue;
		struct pinfer_offload_stats st;
		pinfer_model_offload_stats(mv->m, &st);
		if (st.budget != b || st.resident_bytes + st.context_bytes + st.cache_bytes > b)
			mv->over++;
		mv->changes++;
	}
	return NULL;
}

static void test_budget_changes(void **state)
{
	(void)state;
	char src[512], packed[512];
	pack_model(src, packed, sizeof(src), "768");
	int32_t want[N_TOKENS], got[N_TOKENS];

	struct pinfer_model *m = test_open_model(src, PINFER_SPARSITY_PREDICTOR);
	struct pinfer_ctx *c = test_new_ctx(m, 64, 2);
	generate(m, c, want);
	pinfer_ctx_free(c);
	pinfer_model_free(m);

	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	p.ffn_cache_percent = 50;
	struct pf_err err;
	if (pinfer_model_open(&m, packed, &p, &err))
		fail_msg("%s", err.msg);
	c = test_new_ctx(m, 64, 2);
	struct pinfer_offload_stats st;
	assert_true(pinfer_model_offload_stats(m, &st));

	/* a share of the FFN as a size: what opening with it planned */
	uint64_t bytes;
	assert_int_equal(pinfer_model_percent_budget(m, 50, &bytes, &err), 0);
	assert_true(bytes == st.budget);
	assert_int_equal(pinfer_model_percent_budget(m, 0, &bytes, &err), -EINVAL);
	assert_int_equal(pinfer_model_percent_budget(m, 101, &bytes, &err), -EINVAL);

	/* below the minimum: refused, nothing changed */
	uint64_t before = st.budget;
	assert_int_equal(pinfer_model_set_memory_budget(m, st.minimum - 1, &err), -ENOMEM);
	assert_non_null(strstr(err.msg, "below this model's minimum"));
	pinfer_model_offload_stats(m, &st);
	assert_true(st.budget == before);

	struct mover mv = { .m = m, .low = st.minimum, .high = st.minimum + st.clusters * 4096 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, move_budget, &mv), 0);
	generate(m, c, got);
	atomic_store(&mv.stop, true);
	pthread_join(t, NULL);
	print_message("%d budget changes during %d tokens\n", mv.changes, N_TOKENS);
	assert_true(mv.changes >= 2);
	assert_int_equal(mv.over, 0);
	assert_memory_equal(got, want, sizeof(want));
	pinfer_ctx_free(c);
	pinfer_model_free(m);
}

/* Resident memory now, in bytes. */
static uint64_t rss(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	assert_non_null(f);
	unsigned long long size, resident;
	assert_int_equal(fscanf(f, "%llu %llu", &size, &resident), 2);
	fclose(f);
	return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* What the process holds beyond what it held before the model was loaded
 * stays within the budget + 5%, whichever way the budget moved last: the
 * cache gives pages back when it shrinks. The baseline is taken after
 * the same evaluation on the model in memory, so that what that brings
 * up once (the BLAS library's buffers, the threads' stacks and heaps) is
 * in it. */
static void test_rss_within_budget(void **state)
{
	(void)state;
#if defined(__SANITIZE_THREAD__)
	/* TSan's shadow of every page touched is resident too */
	skip();
#endif
	char src[512], packed[512];
	pack_model(src, packed, sizeof(src), "8192");
	int32_t tokens[N_TOKENS];
	struct pinfer_model *m = test_open_model(src, PINFER_SPARSITY_PREDICTOR);
	struct pinfer_ctx *c = test_new_ctx(m, 64, 2);
	generate(m, c, tokens);
	pinfer_ctx_free(c);
	pinfer_model_free(m);
	uint64_t base = rss();

	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	p.ffn_cache_percent = 100;
	struct pf_err err;
	if (pinfer_model_open(&m, packed, &p, &err))
		fail_msg("%s", err.msg);
	c = test_new_ctx(m, 64, 2);
	struct pinfer_offload_stats st;
	pinfer_model_offload_stats(m, &st);
	uint64_t all = st.budget, min = st.minimum;
	const uint64_t budgets[] = { all, min, (min + all) / 2, min, all };
	uint64_t last_used = 0, last_cache = 0;
	for (size_t i = 0; i < sizeof(budgets) / sizeof(budgets[0]); i++) {
		if (pinfer_model_set_memory_budget(m, budgets[i], &err))
			fail_msg("%s", err.msg);
		pinfer_ctx_truncate(c, 0);
		generate(m, c, tokens);
		uint64_t used = rss() - base;
		pinfer_model_offload_stats(m, &st);
		print_message("budget %llu bytes: %llu bytes resident beyond the process's own (%.1f%%), cache %llu\n",
			      (unsigned long long)budgets[i], (unsigned long long)used,
			      100.0 * (double)used / (double)budgets[i], (unsigned long long)st.cache_bytes);
		assert_true(used <= budgets[i] + budgets[i] / 20);
		/* a smaller cache gave its pages back, but for the huge page
		 * its new end may fall in */
		if (i > 0 && st.cache_bytes < last_cache)
			assert_true(last_used - used + (2u << 20) >= last_cache - st.cache_bytes);
		last_used = used;
		last_cache = st.cache_bytes;
	}
	pinfer_ctx_free(c);
	pinfer_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_budget_changes),
		cmocka_unit_test(test_rss_within_budget),
	};
	return cmocka_run_group_tests(tests, test_dir_setup, test_dir_teardown);
}
