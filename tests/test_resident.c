/* The weights decode reads, copied out of the file's mapping at load
 * (engine/resident.h): after the load none of them points into the
 * mapping, the model's memory counts the copy, and the copies give the
 * logits that reading in place (mmap_weights) gives, bit for bit, in the
 * dense mode and in the sparse modes, which copy only what they read from
 * the file (the predictor and, in gate mode, the gate). */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "model.h"
#include "synth.h"

#define N_DECODE 16

static bool in_mapping(const struct pinfer_model *m, const struct pf_weight *w)
{
	return w->data >= m->gguf->base && w->data < m->gguf->base + m->gguf->size;
}

/* Which of a layer's weights the mode reads from the file (else from its
 * bundles). */
static void check_layer(const struct pinfer_model *m, const struct pf_layer *L, bool predictor)
{
	const struct pf_weight *always[] = { &L->wq, &L->wk, &L->wv, &L->wo };
	for (size_t i = 0; i < sizeof(always) / sizeof(always[0]); i++)
		assert_false(in_mapping(m, always[i]));
	enum pinfer_sparsity mode = m->info.sparsity;
	if (mode == PINFER_SPARSITY_DENSE) {
		assert_false(in_mapping(m, &L->ffn_gate));
		assert_false(in_mapping(m, &L->ffn_up));
		assert_false(in_mapping(m, &L->ffn_down));
	} else {
		/* Never read in a sparse mode: left in the file. */
		if (L->ffn_down.data)
			assert_true(in_mapping(m, &L->ffn_down));
		if (mode == PINFER_SPARSITY_GATE)
			assert_false(in_mapping(m, &L->ffn_gate));
	}
	if (predictor) {
		/* read in predictor mode only */
		bool read = mode == PINFER_SPARSITY_PREDICTOR;
		assert_true(in_mapping(m, &L->fc1) == !read);
		assert_true(in_mapping(m, &L->fc2) == !read);
	}
}

static struct pinfer_model *open_model(const char *path, enum pinfer_sparsity mode, bool mmap_weights)
{
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	p.sparsity = mode;
	p.mmap_weights = mmap_weights;
	struct pinfer_model *m;
	struct pf_err err;
	if (pinfer_model_open(&m, path, &p, &err))
		fail_msg("%s", err.msg);
	return m;
}

/* A prefill, then N_DECODE greedy steps on both models: the same logits
 * every time. On one thread: the sparse modes' threads take chunks of
 * neurons as they come, so two threads' float sums differ run to run. */
static void same_logits(struct pinfer_model *a, struct pinfer_model *b)
{
	int n_vocab = pinfer_model_info(a)->n_vocab;
	struct pinfer_ctx *ca = test_new_ctx(a, 64, 1), *cb = test_new_ctx(b, 64, 1);
	int32_t prompt[16];
	int n = pinfer_tokenize(a, "Once upon a time there was", 26, true, false, prompt, 16);
	assert_true(n > 1);
	assert_int_equal(pinfer_eval(ca, prompt, n, NULL), 0);
	assert_int_equal(pinfer_eval(cb, prompt, n, NULL), 0);
	for (int step = 0; step < N_DECODE; step++) {
		const float *la = pinfer_logits(ca, -1), *lb = pinfer_logits(cb, -1);
		assert_memory_equal(la, lb, (size_t)n_vocab * sizeof(float));
		int32_t t = test_argmax(la, n_vocab);
		assert_int_equal(pinfer_eval(ca, &t, 1, NULL), 0);
		assert_int_equal(pinfer_eval(cb, &t, 1, NULL), 0);
	}
	pinfer_ctx_free(ca);
	pinfer_ctx_free(cb);
}

static void check(const char *path, enum pinfer_sparsity mode, bool predictor)
{
	struct pinfer_model *mapped = open_model(path, mode, true);
	struct pinfer_model *copied = open_model(path, mode, false);
	const struct pinfer_model_info *mi = pinfer_model_info(mapped), *ci = pinfer_model_info(copied);
	print_message("%s (%s): %.1f KiB of weights copied, %.1f KiB of bundles\n", path,
		      pinfer_sparsity_name(ci->sparsity), ci->copied_bytes / 1024.0, mi->heap_bytes / 1024.0);
	assert_int_equal(mi->copied_bytes, 0);
	assert_true(ci->copied_bytes > 0);
	assert_int_equal(ci->heap_bytes, mi->heap_bytes + ci->copied_bytes);
	assert_false(in_mapping(copied, &copied->output));
	for (int l = 0; l < ci->n_layer; l++) {
		check_layer(copied, &copied->layers[l], predictor);
		assert_true(in_mapping(mapped, &mapped->layers[l].wq));
	}
	same_logits(mapped, copied);
	pinfer_model_free(copied);
	pinfer_model_free(mapped);
}

static void test_dense_stories(void **state)
{
	(void)state;
	check(shared_path("models/stories260K/stories260K.gguf"), PINFER_SPARSITY_AUTO, false);
}

/* A PowerInfer file with predictors: every mode. */
static const char *predictor_model(void)
{
	static char path[512];
	if (path[0])
		return path;
	struct synth_opts o;
	synth_opts_init(&o);
	o.n_embd = 256;
	o.n_ff = 768;
	o.n_layer = 3;
	o.n_head = 4;
	o.n_head_kv = 2;
	o.type = PF_Q4_0;
	o.act = PINFER_ACT_RELU;
	o.sparsity = 0.9f;
	o.predictor = 32;
	o.n_threads = 2;
	o.n_ctx = 256;
	o.vocab = shared_path("models/llama-2-tiny-random/llama-2-tiny-random.gguf");
	snprintf(path, sizeof(path), "%s/pred.gguf", test_dir);
	test_synth_or_fail(path, &o);
	return path;
}

static void test_dense_predictor_file(void **state)
{
	(void)state;
	check(predictor_model(), PINFER_SPARSITY_DENSE, true);
}

static void test_gate(void **state)
{
	(void)state;
	check(predictor_model(), PINFER_SPARSITY_GATE, true);
}

static void test_predictor(void **state)
{
	(void)state;
	check(predictor_model(), PINFER_SPARSITY_PREDICTOR, true);
}

/* With mlock the copies are what is locked; where locking is not allowed
 * the load says so. */
static void test_mlock(void **state)
{
	(void)state;
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	p.mlock = true;
	struct pinfer_model *m;
	struct pf_err err;
	int r = pinfer_model_open(&m, predictor_model(), &p, &err);
	if (r) {
		assert_true(r == -ENOMEM || r == -EPERM);
		assert_non_null(strstr(err.msg, "mlock"));
		skip();
	}
	assert_true(m->resident.locked);
	assert_true(pinfer_model_info(m)->copied_bytes > 0);
	struct pinfer_model *mapped = open_model(predictor_model(), PINFER_SPARSITY_AUTO, true);
	same_logits(mapped, m);
	pinfer_model_free(mapped);
	pinfer_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dense_stories),
		cmocka_unit_test(test_dense_predictor_file),
		cmocka_unit_test(test_gate),
		cmocka_unit_test(test_predictor),
		cmocka_unit_test(test_mlock),
	};
	return cmocka_run_group_tests(tests, test_dir_setup, test_dir_teardown);
}
