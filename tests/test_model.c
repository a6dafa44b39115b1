/* Model loading refuses what it cannot run, with a message that names the
 * problem: each case rewrites stories260K.gguf with one thing wrong. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "pinfer.h"

static char dir[] = "/tmp/pinfer-test-model-XXXXXX";
static struct gguf_file *src;

struct variant {
	const char *arch;        /* replaces general.architecture */
	const char *drop;        /* tensor left out */
	const char *reshape;     /* tensor written with its dimensions swapped */
	const char *key;         /* u32 metadata key to set ... */
	uint32_t value;          /* ... to this */
	const char *act;         /* pinfer.ffn_act */
	const char *name;        /* general.name */
};

static const char *write_variant(const struct variant *v)
{
	static char path[256];
	static int n;
	snprintf(path, sizeof(path), "%s/v%d.gguf", dir, n++);
	struct gguf_writer *w = gguf_writer_new();
	assert_non_null(w);
	assert_true(gguf_writer_copy_kv(w, src, "") > 0);
	if (v->arch)
		gguf_writer_set_str(w, "general.architecture", v->arch);
	if (v->key)
		gguf_writer_set_u32(w, v->key, v->value);
	if (v->act)
		gguf_writer_set_str(w, "pinfer.ffn_act", v->act);
	if (v->name)
		gguf_writer_set_str(w, "general.name", v->name);
	const struct gguf_tensor *kept[64];
	int n_kept = 0;
	for (uint64_t i = 0; i < src->n_tensors; i++) {
		const struct gguf_tensor *t = &src->tensors[i];
		char name[96];
		gguf_str_copy(t->name, name, sizeof(name));
		if (v->drop && !strcmp(name, v->drop))
			continue;
		uint64_t ne[4] = { t->ne[0], t->ne[1], t->ne[2], t->ne[3] };
		if (v->reshape && !strcmp(name, v->reshape) && t->n_dims == 2) {
			ne[0] = t->ne[1];
			ne[1] = t->ne[0];
		}
		assert_true(gguf_writer_add_tensor(w, name, t->n_dims, ne, t->type) >= 0);
		kept[n_kept++] = t;
	}
	struct pf_err err;
	if (gguf_writer_write_header(w, path, &err))
		fail_msg("%s", err.msg);
	for (int i = 0; i < n_kept; i++)
		assert_int_equal(gguf_writer_write_tensor_data(w, i, kept[i]->data, kept[i]->nbytes, &err), 0);
	assert_int_equal(gguf_writer_finish(w, &err), 0);
	gguf_writer_free(w);
	return path;
}

static void expect_refused(const struct variant *v, const char *words)
{
	struct pinfer_model *m;
	struct pf_err err = { { 0 } };
	assert_true(pinfer_model_open(&m, write_variant(v), NULL, &err) < 0);
	assert_null(m);
	if (!strstr(err.msg, words))
		fail_msg("error '%s' does not say '%s'", err.msg, words);
}

static int setup(void **state)
{
	(void)state;
	struct pf_err err;
	if (!mkdtemp(dir) || gguf_open(&src, shared_path("models/stories260K/stories260K.gguf"), &err))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	gguf_close(src);
	return test_rmtree(dir);
}

static void test_unknown_architecture(void **state)
{
	(void)state;
	expect_refused(&(struct variant){ .arch = "mamba" }, "architecture 'mamba' is not supported");
}

static void test_missing_tensor(void **state)
{
	(void)state;
	expect_refused(&(struct variant){ .drop = "blk.3.ffn_up.weight" },
		       "tensor blk.3.ffn_up.weight is missing");
}

static void test_wrong_shape(void **state)
{
	(void)state;
	expect_refused(&(struct variant){ .reshape = "blk.0.ffn_gate.weight" },
		       "blk.0.ffn_gate.weight has shape [172, 64");
}

static void test_bad_heads(void **state)
{
	(void)state;
	expect_refused(&(struct variant){ .key = "llama.attention.head_count", .value = 7 },
		       "do not divide");
	expect_refused(&(struct variant){ .key = "llama.attention.head_count_kv", .value = 3 },
		       "do not divide");
	expect_refused(&(struct variant){ .key = "llama.rope.dimension_count", .value = 9 },
		       "rope.dimension_count");
	expect_refused(&(struct variant){ .key = "llama.embedding_length", .value = 0 },
		       "out of range");
}

static enum pinfer_ffn_act act_of(const struct variant *v)
{
	struct pinfer_model *m;
	struct pf_err err;
	if (pinfer_model_open(&m, write_variant(v), NULL, &err))
		fail_msg("%s", err.msg);
	enum pinfer_ffn_act a = pinfer_model_info(m)->ffn_act;
	pinfer_model_free(m);
	return a;
}

static void test_activation_from_metadata(void **state)
{
	(void)state;
	assert_int_equal(act_of(&(struct variant){ 0 }), PINFER_ACT_SILU);
	assert_int_equal(act_of(&(struct variant){ .act = "relu" }), PINFER_ACT_RELU);
	assert_int_equal(act_of(&(struct variant){ .act = "drelu" }), PINFER_ACT_DRELU);
	assert_int_equal(act_of(&(struct variant){ .name = "ReluLLaMA-7B" }), PINFER_ACT_RELU);
	assert_int_equal(act_of(&(struct variant){ .name = "TurboSparse-Mistral" }), PINFER_ACT_DRELU);
}

/* The override wins over metadata, and a ReLU model really computes ReLU:
 * the same weights give different logits. */
static void test_activation_override(void **state)
{
	(void)state;
	const char *path = write_variant(&(struct variant){ .act = "relu" });
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	float last[2][512];
	for (int k = 0; k < 2; k++) {
		p.ffn_act = k ? PINFER_ACT_SILU : PINFER_ACT_AUTO;
		struct pinfer_model *m;
		struct pinfer_ctx *c;
		assert_int_equal(pinfer_model_open(&m, path, &p, NULL), 0);
		assert_int_equal(pinfer_model_info(m)->ffn_act, k ? PINFER_ACT_SILU : PINFER_ACT_RELU);
		assert_int_equal(pinfer_ctx_new(&c, m, NULL, NULL), 0);
		int32_t toks[3] = { 1, 403, 407 };
		assert_int_equal(pinfer_eval(c, toks, 3, NULL), 0);
		memcpy(last[k], pinfer_logits(c, -1), sizeof(last[k]));
		pinfer_ctx_free(c);
		pinfer_model_free(m);
	}
	assert_memory_not_equal(last[0], last[1], sizeof(last[0]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_architecture),
		cmocka_unit_test(test_missing_tensor),
		cmocka_unit_test(test_wrong_shape),
		cmocka_unit_test(test_bad_heads),
		cmocka_unit_test(test_activation_from_metadata),
		cmocka_unit_test(test_activation_override),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
