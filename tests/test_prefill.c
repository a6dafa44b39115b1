/* Prefill (one batch of many tokens: dequantize+sgemm for large batches,
 * integer dot kernels for small ones) must compute what decode (one token
 * at a time) computes, for every weight format the paths treat differently.
 * The two differ only in how activations are rounded (8-bit for the dot
 * kernels, float for sgemm), hence a small relative tolerance. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_TOKENS 160

static struct pinfer_ctx *ctx(struct pinfer_model *m, int n_batch, bool all_logits)
{
	struct pinfer_ctx_params p;
	pinfer_ctx_params_default(&p);
	p.kv_type = PINFER_KV_F32;  /* the weights' kernels compared, not the cache's rounding */
	p.n_ctx = N_TOKENS;
	p.n_batch = n_batch;
	p.n_threads = 2;
	p.all_logits = all_logits;
	struct pinfer_ctx *c;
	struct pf_err err;
	if (pinfer_ctx_new(&c, m, &p, &err))
		fail_msg("%s", err.msg);
	return c;
}

static void check_type(enum pf_dtype type)
{
	const char *path = test_synth(test_dir, pf_dtype_info(type)->name, 512, 2, type, PINFER_ACT_AUTO);
	struct pf_err err;
	struct pinfer_model *m;
	if (pinfer_model_open(&m, path, NULL, &err))
		fail_msg("%s", err.msg);
	int n_vocab = pinfer_model_info(m)->n_vocab;

	int32_t toks[N_TOKENS];
	uint64_t seed = 3;
	for (int i = 0; i < N_TOKENS; i++)
		toks[i] = (int32_t)(test_rand(&seed) % (uint64_t)n_vocab);

	/* decode, token by token */
	struct pinfer_ctx *dc = ctx(m, 1, false);
	float *want = malloc((size_t)N_TOKENS * n_vocab * sizeof(float));
	assert_non_null(want);
	for (int i = 0; i < N_TOKENS; i++) {
		assert_int_equal(pinfer_eval(dc, &toks[i], 1, NULL), 0);
		memcpy(want + (size_t)i * n_vocab, pinfer_logits(dc, -1), n_vocab * sizeof(float));
	}
	pinfer_ctx_free(dc);

	/* prefill, all tokens in one batch */
	struct pinfer_ctx *pc = ctx(m, N_TOKENS, true);
	assert_int_equal(pinfer_eval(pc, toks, N_TOKENS, NULL), 0);
	double num = 0, den = 0;
	for (int i = 0; i < N_TOKENS; i++) {
		const float *got = pinfer_logits(pc, i);
		for (int v = 0; v < n_vocab; v++) {
			double d = got[v] - want[(size_t)i * n_vocab + v];
			num += d * d;
			den += (double)got[v] * got[v];
		}
	}
	double rel = sqrt(num / den);
	print_message("%s: prefill vs decode relative RMS difference %.2e\n",
		      pf_dtype_info(type)->name, rel);
	/* Measured: f32 and f16 1.3e-6 (float on both paths: summation order
	 * only); quantized formats 1.7e-2 to 3e-2, the 8-bit activations of
	 * the decode kernels amplified by random weights. A wrong row or
	 * token would be off by O(1). */
	bool is_float = type == PF_F32 || type == PF_F16;
	assert_true(rel < (is_float ? 1e-5 : 6e-2));
	pinfer_ctx_free(pc);
	free(want);
	pinfer_model_free(m);
}

static void test_f32(void **state) { (void)state; check_type(PF_F32); }
static void test_f16(void **state) { (void)state; check_type(PF_F16); }
static void test_q4_0(void **state) { (void)state; check_type(PF_Q4_0); }
static void test_q8_0(void **state) { (void)state; check_type(PF_Q8_0); }
static void test_q4_k(void **state) { (void)state; check_type(PF_Q4_K); }
static void test_q6_k(void **state) { (void)state; check_type(PF_Q6_K); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_f32),  cmocka_unit_test(test_f16),  cmocka_unit_test(test_q4_0),
		cmocka_unit_test(test_q8_0), cmocka_unit_test(test_q4_k), cmocka_unit_test(test_q6_k),
	};
	return cmocka_run_group_tests(tests, test_dir_setup, test_dir_teardown);
}
