/* Acceptance: resident memory after loading a model and evaluating with it
 * is the mapped file plus the KV cache plus less than 64 MiB; --mlock locks
 * the weights or says why it cannot. */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "pinfer.h"

#define OVERHEAD_LIMIT (64ull << 20)

static uint64_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	assert_non_null(f);
	unsigned long size, resident;
	assert_int_equal(fscanf(f, "%lu %lu", &size, &resident), 2);
	fclose(f);
	return (uint64_t)resident * 4096;
}

static void check_model(const char *rel, int n_ctx)
{
	uint64_t before = rss_bytes();
	struct pinfer_model *m;
	struct pf_err err;
	if (pinfer_model_open(&m, shared_path(rel), NULL, &err))
		fail_msg("%s", err.msg);
	struct pinfer_ctx_params p;
	pinfer_ctx_params_default(&p);
	p.n_ctx = n_ctx;
	p.n_threads = 2;
	struct pinfer_ctx *c;
	if (pinfer_ctx_new(&c, m, &p, &err))
		fail_msg("%s", err.msg);
	int32_t toks[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	assert_int_equal(pinfer_eval(c, toks, 8, &err), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(pinfer_eval(c, &toks[i], 1, &err), 0);
	uint64_t grown = rss_bytes() - before;
	uint64_t file = pinfer_model_info(m)->file_bytes;
	uint64_t kv = pinfer_ctx_kv_bytes(c);
	print_message("%s: rss grew %.1f MiB = file %.1f + kv %.1f + other %.1f MiB\n", rel,
		      grown / 1048576.0, file / 1048576.0, kv / 1048576.0,
		      ((double)grown - (double)file - (double)kv) / 1048576.0);
	assert_true(grown < file + kv + OVERHEAD_LIMIT);
	pinfer_ctx_free(c);
	pinfer_model_free(m);
}

static void test_rss_stories(void **state)
{
	(void)state;
	check_model("models/stories260K/stories260K.gguf", 512);
}

static void test_rss_full_vocab(void **state)
{
	(void)state;
	check_model("models/llama-2-tiny-random/llama-2-tiny-random.gguf", 2048);
}

/* The estimate a daemon checks its budget with is what a context takes. */
static void test_estimate_matches(void **state)
{
	(void)state;
	struct pinfer_model *m;
	assert_int_equal(pinfer_model_open(&m, shared_path("models/stories260K/stories260K.gguf"), NULL,
					   NULL), 0);
	const struct { int n_ctx, n_batch, n_threads; bool all_logits; enum pinfer_kv_type kv; } cases[] = {
		{ 0, 0, 0, false, PINFER_KV_F32 }, { 512, 1, 1, false, PINFER_KV_F32 },
		{ 256, 64, 2, true, PINFER_KV_F32 }, { 100, 7, 3, false, PINFER_KV_F32 },
		{ 256, 64, 2, true, PINFER_KV_F16 }, { 101, 7, 3, false, PINFER_KV_F16 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pinfer_ctx_params p;
		pinfer_ctx_params_default(&p);
		p.n_ctx = cases[i].n_ctx;
		p.n_batch = cases[i].n_batch;
		p.n_threads = cases[i].n_threads;
		p.all_logits = cases[i].all_logits;
		p.kv_type = cases[i].kv;
		struct pinfer_ctx *c;
		assert_int_equal(pinfer_ctx_new(&c, m, &p, NULL), 0);
		assert_int_equal(pinfer_ctx_estimate_bytes(m, &p), pinfer_ctx_bytes(c));
		pinfer_ctx_free(c);
	}
	pinfer_model_free(m);
}

/* The default KV type: F32 for a model in F32 (stories260K), F16 for one
 * in F16 (llama-2-tiny-random); an explicit type is kept. A default
 * context's cache takes that type's bytes. */
static void test_kv_auto(void **state)
{
	(void)state;
	const struct { const char *model; enum pinfer_kv_type kv; size_t elem; } cases[] = {
		{ "models/stories260K/stories260K.gguf", PINFER_KV_F32, 4 },
		{ "models/llama-2-tiny-random/llama-2-tiny-random.gguf", PINFER_KV_F16, 2 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pinfer_model *m;
		assert_int_equal(pinfer_model_open(&m, shared_path(cases[i].model), NULL, NULL), 0);
		assert_int_equal(pinfer_kv_type_for(m, PINFER_KV_AUTO), cases[i].kv);
		assert_int_equal(pinfer_kv_type_for(m, PINFER_KV_F32), PINFER_KV_F32);
		assert_int_equal(pinfer_kv_type_for(m, PINFER_KV_F16), PINFER_KV_F16);
		struct pinfer_ctx_params p;
		pinfer_ctx_params_default(&p);
		assert_int_equal(p.kv_type, PINFER_KV_AUTO);
		p.n_ctx = 64;
		p.n_threads = 1;
		struct pinfer_ctx *c;
		assert_int_equal(pinfer_ctx_new(&c, m, &p, NULL), 0);
		const struct pinfer_model_info *hp = pinfer_model_info(m);
		assert_int_equal(pinfer_ctx_kv_bytes(c),
				 2 * (uint64_t)hp->n_layer * 64 * hp->n_head_kv * hp->head_dim * cases[i].elem);
		assert_int_equal(pinfer_ctx_estimate_bytes(m, &p), pinfer_ctx_bytes(c));
		pinfer_ctx_free(c);
		pinfer_model_free(m);
	}
	enum pinfer_kv_type t;
	assert_int_equal(pinfer_kv_type_parse("auto", &t), 0);
	assert_int_equal(t, PINFER_KV_AUTO);
	assert_string_equal(pinfer_kv_type_name(PINFER_KV_AUTO), "auto");
	assert_int_equal(pinfer_kv_type_parse("bf16", &t), -EINVAL);
}

static void test_mlock(void **state)
{
	(void)state;
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	p.mlock = true;
	struct pinfer_model *m;
	struct pf_err err;
	int r = pinfer_model_open(&m, shared_path("models/stories260K/stories260K.gguf"), &p, &err);
	if (r == 0) {
		pinfer_model_free(m);
	} else {
		/* An unprivileged run may not lock: the error must say how to fix it. */
		assert_true(r == -EPERM || r == -ENOMEM || r == -EAGAIN);
		assert_non_null(strstr(err.msg, "mlock"));
	}
	/* With no lockable memory at all the failure is clean, not a crash. */
	struct rlimit old, none = { 0, 0 };
	getrlimit(RLIMIT_MEMLOCK, &old);
	if (geteuid() != 0 && setrlimit(RLIMIT_MEMLOCK, &none) == 0) {
		r = pinfer_model_open(&m, shared_path("models/stories260K/stories260K.gguf"), &p, &err);
		assert_true(r < 0);
		assert_non_null(strstr(err.msg, "RLIMIT_MEMLOCK"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rss_stories),
		cmocka_unit_test(test_rss_full_vocab),
		cmocka_unit_test(test_estimate_matches),
		cmocka_unit_test(test_kv_auto),
		cmocka_unit_test(test_mlock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
