/* Memory budget changes on a loaded bundle file (docs/offload.md): while
 * one thread decodes greedily, another moves the budget between the
 * minimum and room for everything; the tokens stay those of the model in
 * memory, every budget the store accepts is kept within, and a budget
 * below the minimum is refused without changing anything. */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void pack_model(char *src, char *packed, size_t size)
{
	char prof[512];
	snprintf(src, size, "%s/m.gguf", test_dir);
	snprintf(prof, sizeof(prof), "%s/m.prof", test_dir);
	snprintf(packed, size, "%s/m.pack", test_dir);
	const char *synth[] = { "synth", "--dim", "256", "--ff", "768", "--layers", "3", "--heads", "4", "--type",
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
	pack_model(src, packed, sizeof(src));
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_budget_changes),
	};
	return cmocka_run_group_tests(tests, test_dir_setup, test_dir_teardown);
}
