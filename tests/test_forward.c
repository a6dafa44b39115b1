/* The forward pass against llama2.c's float32 reference on stories260K:
 * greedy tokens, logits, and agreement between the decode and prefill paths
 * and between thread counts. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pinfer.h"

#define N_GREEDY 200

static struct pinfer_model *model;
static int32_t ref_ids[N_GREEDY];
static float ref_logits[4][512];

static void load_refs(void)
{
	char *text = read_file(shared_path("models/stories260K/ref/greedy_n200.tokens"), NULL);
	int n = 0;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == '#')
			continue;
		for (char *tok = strtok(line, " "); tok && n < N_GREEDY; tok = strtok(NULL, " "))
			ref_ids[n++] = atoi(tok);
		break;
	}
	free(text);
	assert_int_equal(n, N_GREEDY);

	text = read_file(shared_path("models/stories260K/ref/logits_pos0-3.txt"), NULL);
	char *p = text;
	for (int pos = 0; pos < 4; pos++) {
		p = strchr(p, ':');
		assert_non_null(p);
		p++;
		for (int i = 0; i < 512; i++)
			ref_logits[pos][i] = strtof(p, &p);
	}
	free(text);
}

static int setup(void **state)
{
	(void)state;
	struct pf_err err;
	if (pinfer_model_open(&model, shared_path("models/stories260K/stories260K.gguf"), NULL, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	load_refs();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	pinfer_model_free(model);
	return 0;
}

static struct pinfer_ctx *new_ctx_kv(int n_threads, int n_batch, bool all_logits, enum pinfer_kv_type kv)
{
	struct pinfer_ctx_params p;
	pinfer_ctx_params_default(&p);
	p.kv_type = kv;
	p.n_threads = n_threads;
	p.n_batch = n_batch;
	p.all_logits = all_logits;
	struct pinfer_ctx *c;
	struct pf_err err;
	if (pinfer_ctx_new(&c, model, &p, &err))
		fail_msg("%s", err.msg);
	return c;
}

static struct pinfer_ctx *new_ctx(int n_threads, int n_batch, bool all_logits)
{
	return new_ctx_kv(n_threads, n_batch, all_logits, PINFER_KV_F32);
}

static void greedy(int n_threads, int32_t *out)
{
	struct pinfer_ctx *c = new_ctx(n_threads, 0, false);
	int32_t tok = pinfer_token_bos(model);
	assert_int_equal(tok, 1);
	for (int i = 0; i < N_GREEDY; i++) {
		assert_int_equal(pinfer_eval(c, &tok, 1, NULL), 0);
		tok = test_argmax(pinfer_logits(c, -1), 512);
		out[i] = tok;
	}
	pinfer_ctx_free(c);
}

static void test_greedy_matches_llama2c(void **state)
{
	(void)state;
	int32_t ids[N_GREEDY];
	greedy(1, ids);
	for (int i = 0; i < N_GREEDY; i++)
		if (ids[i] != ref_ids[i])
			fail_msg("token %d: got %d, llama2.c %d", i, ids[i], ref_ids[i]);
}

static void test_greedy_two_threads(void **state)
{
	(void)state;
	int32_t ids[N_GREEDY];
	greedy(2, ids);
	assert_memory_equal(ids, ref_ids, sizeof(ids));
}

static void check_logits(const float *got, int pos)
{
	for (int i = 0; i < 512; i++)
		if (fabsf(got[i] - ref_logits[pos][i]) > 1e-4f)
			fail_msg("pos %d logit %d: got %.6f, llama2.c %.6f", pos, i, got[i],
				 ref_logits[pos][i]);
}

static void test_logits_decode(void **state)
{
	(void)state;
	struct pinfer_ctx *c = new_ctx(2, 0, false);
	int32_t seq[4] = { 1, ref_ids[0], ref_ids[1], ref_ids[2] };
	for (int pos = 0; pos < 4; pos++) {
		assert_int_equal(pinfer_eval(c, &seq[pos], 1, NULL), 0);
		check_logits(pinfer_logits(c, -1), pos);
	}
	pinfer_ctx_free(c);
}

static void test_logits_prefill(void **state)
{
	(void)state;
	struct pinfer_ctx *c = new_ctx(2, 16, true);
	int32_t seq[4] = { 1, ref_ids[0], ref_ids[1], ref_ids[2] };
	assert_int_equal(pinfer_eval(c, seq, 4, NULL), 0);
	for (int pos = 0; pos < 4; pos++)
		check_logits(pinfer_logits(c, pos), pos);
	assert_null(pinfer_logits(c, 4));
	pinfer_ctx_free(c);
}

/* A long prompt in uneven batches continues exactly like the greedy run. */
static void test_chunked_prefill_then_decode(void **state)
{
	(void)state;
	struct pinfer_ctx *c = new_ctx(2, 7, false);
	int32_t seq[101];
	seq[0] = 1;
	memcpy(seq + 1, ref_ids, 100 * sizeof(int32_t));
	assert_int_equal(pinfer_eval(c, seq, 101, NULL), 0);
	assert_int_equal(pinfer_ctx_pos(c), 101);
	int32_t tok = test_argmax(pinfer_logits(c, -1), 512);
	assert_int_equal(tok, ref_ids[100]);
	for (int i = 101; i < N_GREEDY; i++) {
		assert_int_equal(pinfer_eval(c, &tok, 1, NULL), 0);
		tok = test_argmax(pinfer_logits(c, -1), 512);
		assert_int_equal(tok, ref_ids[i]);
	}
	pinfer_ctx_free(c);
}

static void test_truncate_and_reuse(void **state)
{
	(void)state;
	struct pinfer_ctx *c = new_ctx(1, 0, false);
	int32_t seq[4] = { 1, ref_ids[0], ref_ids[1], ref_ids[2] };
	int32_t other[2] = { 300, 301 };
	assert_int_equal(pinfer_eval(c, seq, 2, NULL), 0);
	assert_int_equal(pinfer_eval(c, other, 2, NULL), 0);
	pinfer_ctx_truncate(c, 2);
	assert_int_equal(pinfer_eval(c, seq + 2, 2, NULL), 0);
	check_logits(pinfer_logits(c, -1), 3);
	pinfer_ctx_free(c);
}

/* Two sequences interleaved token by token on shared threads each follow
 * the reference as if alone. */
/* An F16 cache: half the bytes; keys and values rounded to half precision
 * move the logits by at most KV_F16_TOL (measured: 7.6e-3 on logits of up
 * to about 15, half precision's step there), and a long prompt in uneven
 * batches (prefill converts the cache back to floats for sgemm) then
 * decode still give llama2.c's greedy tokens. */
#define KV_F16_TOL 2e-2f

static void test_kv_f16(void **state)
{
	(void)state;
	struct pinfer_ctx *c32 = new_ctx(1, 0, false), *c = new_ctx_kv(2, 0, false, PINFER_KV_F16);
	assert_int_equal(pinfer_ctx_kv_bytes(c) * 2, pinfer_ctx_kv_bytes(c32));
	pinfer_ctx_free(c32);
	int32_t seq[4] = { 1, ref_ids[0], ref_ids[1], ref_ids[2] };
	float worst = 0.0f;
	for (int pos = 0; pos < 4; pos++) {
		assert_int_equal(pinfer_eval(c, &seq[pos], 1, NULL), 0);
		const float *got = pinfer_logits(c, -1);
		for (int i = 0; i < 512; i++) {
			float e = fabsf(got[i] - ref_logits[pos][i]);
			if (!(e <= KV_F16_TOL))
				fail_msg("f16 cache, pos %d logit %d: got %.6f, llama2.c %.6f", pos, i, got[i],
					 ref_logits[pos][i]);
			worst = fmaxf(worst, e);
		}
	}
	print_message("f16 cache: logits within %.2g of llama2.c's (bound %.0e)\n", (double)worst,
		      (double)KV_F16_TOL);
	pinfer_ctx_free(c);

	c = new_ctx_kv(2, 7, false, PINFER_KV_F16);
	int32_t prompt[101];
	prompt[0] = 1;
	memcpy(prompt + 1, ref_ids, 100 * sizeof(int32_t));
	assert_int_equal(pinfer_eval(c, prompt, 101, NULL), 0);
	int32_t tok = test_argmax(pinfer_logits(c, -1), 512);
	assert_int_equal(tok, ref_ids[100]);
	for (int i = 101; i < N_GREEDY; i++) {
		assert_int_equal(pinfer_eval(c, &tok, 1, NULL), 0);
		tok = test_argmax(pinfer_logits(c, -1), 512);
		if (tok != ref_ids[i])
			fail_msg("f16 cache, token %d: got %d, llama2.c %d", i, tok, ref_ids[i]);
	}
	pinfer_ctx_free(c);
}

static void test_shared_threads_interleaved(void **state)
{
	(void)state;
	struct pinfer_threads *th;
	assert_int_equal(pinfer_threads_new(&th, 2), 0);
	struct pinfer_ctx_params p;
	pinfer_ctx_params_default(&p);
	p.threads = th;
	struct pinfer_ctx *c[2];
	for (int k = 0; k < 2; k++)
		assert_int_equal(pinfer_ctx_new(&c[k], model, &p, NULL), 0);
	int32_t tok[2] = { 1, 1 };
	/* the second sequence starts 10 tokens later */
	for (int i = 0; i < 60; i++)
		for (int k = 0; k < 2; k++) {
			int at = i - 10 * k;
			if (at < 0)
				continue;
			assert_int_equal(pinfer_eval(c[k], &tok[k], 1, NULL), 0);
			tok[k] = test_argmax(pinfer_logits(c[k], -1), 512);
			assert_int_equal(tok[k], ref_ids[at]);
		}
	for (int k = 0; k < 2; k++)
		pinfer_ctx_free(c[k]);
	pinfer_threads_free(th);
}

static void test_eval_errors(void **state)
{
	(void)state;
	struct pinfer_ctx_params p;
	pinfer_ctx_params_default(&p);
	p.n_ctx = 4;
	struct pinfer_ctx *c;
	struct pf_err err;
	assert_int_equal(pinfer_ctx_new(&c, model, &p, &err), 0);
	int32_t bad = 512;
	assert_true(pinfer_eval(c, &bad, 1, &err) < 0);
	assert_non_null(strstr(err.msg, "outside the vocabulary"));
	int32_t seq[5] = { 1, 2, 3, 4, 5 };
	assert_true(pinfer_eval(c, seq, 5, &err) < 0);
	assert_non_null(strstr(err.msg, "context full"));
	assert_int_equal(pinfer_ctx_pos(c), 0);
	assert_int_equal(pinfer_eval(c, seq, 4, &err), 0);
	assert_true(pinfer_eval(c, seq, 1, &err) < 0);
	pinfer_ctx_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greedy_matches_llama2c),
		cmocka_unit_test(test_greedy_two_threads),
		cmocka_unit_test(test_logits_decode),
		cmocka_unit_test(test_logits_prefill),
		cmocka_unit_test(test_chunked_prefill_then_decode),
		cmocka_unit_test(test_truncate_and_reuse),
		cmocka_unit_test(test_kv_f16),
		cmocka_unit_test(test_shared_threads_interleaved),
		cmocka_unit_test(test_eval_errors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
