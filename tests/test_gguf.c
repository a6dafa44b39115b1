#include "testutil.h"

#include <string.h>

#include "dtype.h"
#include "gguf.h"

static void test_stories260k_header(void **state)
{
	(void)state;
	struct gguf_file *f;
	struct pf_err err = { { 0 } };
	int r = gguf_open(&f, shared_path("models/stories260K/stories260K.gguf"), &err);
	if (r)
		fail_msg("%s", err.msg);
	assert_int_equal(f->version, 3);
	struct gguf_str arch;
	assert_true(gguf_get_str(f, "general.architecture", &arch));
	assert_true(gguf_str_eq(arch, "llama"));
	uint32_t n_embd;
	assert_true(gguf_get_u32(f, "llama.embedding_length", &n_embd));
	assert_int_equal(n_embd, 64);
	const struct gguf_array *toks = gguf_get_arr(f, "tokenizer.ggml.tokens");
	assert_non_null(toks);
	assert_int_equal(toks->n, 512);
	assert_true(gguf_str_eq(toks->strs[1], "<s>"));
	const struct gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
	assert_non_null(t);
	assert_int_equal(t->type, PF_F32);
	assert_int_equal(t->ne[0], 64);
	assert_int_equal(t->ne[1], 512);
	assert_int_equal(t->nbytes, 64 * 512 * 4);
	gguf_close(f);
}

static void test_f16_model(void **state)
{
	(void)state;
	struct gguf_file *f;
	struct pf_err err = { { 0 } };
	if (gguf_open(&f, shared_path("models/llama-2-tiny-random/llama-2-tiny-random.gguf"), &err))
		fail_msg("%s", err.msg);
	const struct gguf_array *toks = gguf_get_arr(f, "tokenizer.ggml.tokens");
	assert_non_null(toks);
	assert_int_equal(toks->n, 32000);
	int n_f16 = 0;
	for (uint64_t i = 0; i < f->n_tensors; i++)
		n_f16 += f->tensors[i].type == PF_F16;
	assert_true(n_f16 > 0);
	gguf_close(f);
}

static void test_missing_file(void **state)
{
	(void)state;
	struct gguf_file *f;
	struct pf_err err = { { 0 } };
	assert_true(gguf_open(&f, "/nonexistent/model.gguf", &err) < 0);
	assert_null(f);
	assert_non_null(strstr(err.msg, "/nonexistent/model.gguf"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stories260k_header),
		cmocka_unit_test(test_f16_model),
		cmocka_unit_test(test_missing_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
