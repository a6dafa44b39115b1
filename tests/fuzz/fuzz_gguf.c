/* The GGUF reader, twice per input: over the fuzzer's own buffer (so that
 * ASan sees a read even one byte past the end, which a page-rounded
 * mapping would hide), then, when the bytes parse, as a model file through
 * the public loader (mapping, hyperparameters, tensor binding, vocabulary),
 * and one token through a model that loads. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "gguf.h"
#include "pinfer.h"
#include "tokenizer.h"

/* Every element through the getters: their bounds are the reader's
 * promise that nothing it returns points outside the file. */
static uint64_t walk(const struct gguf_file *f)
{
	uint64_t sum = 0;
	char key[256];
	for (uint64_t i = 0; i < f->n_kv; i++) {
		const struct gguf_kv *kv = &f->kv[i];
		gguf_str_copy(kv->key, key, sizeof(key));
		uint64_t u;
		int64_t s;
		float x;
		bool b;
		struct gguf_str str;
		sum += gguf_get_u64(f, key, &u) + gguf_get_i64(f, key, &s) + gguf_get_f32(f, key, &x) +
		       gguf_get_bool(f, key, &b) + gguf_get_str(f, key, &str);
		const struct gguf_array *a = gguf_get_arr(f, key);
		if (!a)
			continue;
		for (uint64_t k = 0; k < a->n; k++) {
			if (a->type == GGUF_TYPE_STRING)
				sum += a->strs[k].len ? (uint8_t)a->strs[k].ptr[a->strs[k].len - 1] : 0;
			else if (a->type == GGUF_TYPE_FLOAT32 || a->type == GGUF_TYPE_FLOAT64)
				sum += gguf_arr_float(a, k) > 0;
			else if (a->type != GGUF_TYPE_ARRAY)
				sum += (uint64_t)gguf_arr_int(a, k);
		}
	}
	char name[256];
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const struct gguf_tensor *t = &f->tensors[i];
		sum += gguf_find_tensor(f, gguf_str_copy(t->name, name, sizeof(name))) != NULL;
		if (t->nbytes)
			sum += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
	}
	return sum;
}

static void run_model(const char *path)
{
	struct pinfer_model *m;
	struct pf_err err = { { 0 } };
	int r = pinfer_model_open(&m, path, NULL, &err);
	fuzz_check_err(r, &err, "pinfer_model_open");
	if (r)
		return;
	int32_t ids[16];
	int n = pinfer_tokenize(m, "Once upon a time", 16, true, false, ids, 16);
	struct pinfer_ctx_params cp;
	pinfer_ctx_params_default(&cp);
	cp.n_ctx = 8;
	cp.n_threads = 1;
	struct pinfer_ctx *c;
	if (n > 0 && !pinfer_ctx_new(&c, m, &cp, &err)) {
		r = pinfer_eval(c, ids, n < 4 ? n : 4, &err);
		fuzz_check_err(r, &err, "pinfer_eval");
		pinfer_ctx_free(c);
	}
	pinfer_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gguf_file *f;
	struct pf_err err = { { 0 } };
	int r = gguf_open_buffer(&f, data, size, "input", &err);
	fuzz_check_err(r, &err, "gguf_open_buffer");
	if (r)
		return 0;
	volatile uint64_t sum = walk(f);
	(void)sum;
	struct pf_vocab *v;
	memset(&err, 0, sizeof(err));
	r = pf_vocab_load(&v, f, &err);
	fuzz_check_err(r, &err, "pf_vocab_load");
	if (!r)
		pf_vocab_free(v);
	gguf_close(f);

	char path[64];
	int fd = fuzz_memfile(data, size, path, sizeof(path));
	if (fd < 0)
		abort();
	run_model(path);
	close(fd);
	return 0;
}
