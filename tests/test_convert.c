/* llama2.c -> GGUF conversion: stories260K must come out as llama.cpp's own
 * conversion of it, synthetic checkpoints cover the shapes stories260K does
 * not (unshared classifier, odd sizes, no byte tokens), and every kind of
 * damaged input must fail with a message naming the file. */
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtype.h"
#include "gguf.h"
#include "llama2c.h"
#include "quant.h"

static char tmpdir[64];
/* Files the tests share, under tmpdir. */
static char synth_ck[128], synth_tok[128], bad_out[128], bad_tmp[128], missing[128];

typedef char path_buf[128];

static char *tmp_path(path_buf buf, const char *name)
{
	snprintf(buf, sizeof(path_buf), "%s/%s", tmpdir, name);
	return buf;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pinfer-convert-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	tmp_path(synth_ck, "synth.bin");
	tmp_path(synth_tok, "synth-tok.bin");
	tmp_path(bad_out, "bad.gguf");
	tmp_path(bad_tmp, "bad.gguf.tmp");
	tmp_path(missing, "missing.bin");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return test_rmtree(tmpdir);
}

static const char *ckpt_path(void)
{
	static char p[4096];
	snprintf(p, sizeof(p), "%s", shared_path("models/stories260K/stories260K.bin"));
	return p;
}

static const char *tok_path(void)
{
	static char p[4096];
	snprintf(p, sizeof(p), "%s", shared_path("models/stories260K/tok512.bin"));
	return p;
}

static const char *ref_path(void)
{
	static char p[4096];
	snprintf(p, sizeof(p), "%s", shared_path("models/stories260K/stories260K.gguf"));
	return p;
}

static struct gguf_file *open_ok(const char *path)
{
	struct gguf_file *f;
	struct pf_err err = { { 0 } };
	if (gguf_open(&f, path, &err))
		fail_msg("%s", err.msg);
	return f;
}

static void convert_ok(const char *ck, const char *tok, const char *out, enum pf_dtype type,
		       uint32_t ctx)
{
	struct pf_llama2c_opts o = { .type = type, .context_length = ctx };
	struct pf_err err = { { 0 } };
	if (pf_llama2c_convert(ck, tok, out, &o, &err))
		fail_msg("%s", err.msg);
	char tmp[300];
	snprintf(tmp, sizeof(tmp), "%s.tmp", out);
	assert_false(exists(tmp));
}

/* Conversion must fail, name `names` in the message and leave no output. */
static void convert_fails(const char *ck, const char *tok, const char *names)
{
	struct pf_llama2c_opts o = { .type = PF_F32 };
	struct pf_err err = { { 0 } };
	int r = pf_llama2c_convert(ck, tok, bad_out, &o, &err);
	if (r >= 0)
		fail_msg("converting %s + %s succeeded", ck, tok);
	if (!strstr(err.msg, names))
		fail_msg("error '%s' does not name %s", err.msg, names);
	assert_false(exists(bad_out));
	assert_false(exists(bad_tmp));
}

/* With the context length llama.cpp's converter used, the output is its
 * file byte for byte: same keys, order, tensors, padding and data. */
static void test_stories260k_identical(void **state)
{
	(void)state;
	path_buf out;
	tmp_path(out, "s260k-2048.gguf");
	convert_ok(ckpt_path(), tok_path(), out, PF_F32, 2048);
	size_t n_ref, n_out;
	char *ref = read_file(ref_path(), &n_ref);
	char *got = read_file(out, &n_out);
	assert_int_equal(n_out, n_ref);
	assert_memory_equal(got, ref, n_ref);
	free(ref);
	free(got);
	unlink(out);
}

static size_t elem_size(enum gguf_type t)
{
	switch (t) {
	case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
	case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
	case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
	default: return 8;
	}
}

static void assert_kv_equal(const struct gguf_kv *a, const struct gguf_kv *b)
{
	assert_int_equal(a->key.len, b->key.len);
	assert_memory_equal(a->key.ptr, b->key.ptr, a->key.len);
	assert_int_equal(a->type, b->type);
	switch (a->type) {
	case GGUF_TYPE_STRING:
		assert_int_equal(a->v.str.len, b->v.str.len);
		assert_memory_equal(a->v.str.ptr, b->v.str.ptr, a->v.str.len);
		break;
	case GGUF_TYPE_ARRAY:
		assert_int_equal(a->v.arr.type, b->v.arr.type);
		assert_int_equal(a->v.arr.n, b->v.arr.n);
		for (uint64_t i = 0; a->v.arr.type == GGUF_TYPE_STRING && i < a->v.arr.n; i++) {
			assert_int_equal(a->v.arr.strs[i].len, b->v.arr.strs[i].len);
			assert_memory_equal(a->v.arr.strs[i].ptr, b->v.arr.strs[i].ptr,
					    a->v.arr.strs[i].len);
		}
		if (a->v.arr.type != GGUF_TYPE_STRING)
			assert_memory_equal(a->v.arr.data, b->v.arr.data,
					    a->v.arr.n * elem_size(a->v.arr.type));
		break;
	case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64:
		assert_true(a->v.f == b->v.f);
		break;
	default:
		assert_int_equal(a->v.u, b->v.u);
	}
}

/* By default the context length comes from the checkpoint (seq_len 512);
 * everything else still matches llama.cpp's conversion. */
static void test_stories260k_default(void **state)
{
	(void)state;
	path_buf out;
	tmp_path(out, "s260k.gguf");
	convert_ok(ckpt_path(), tok_path(), out, PF_F32, 0);
	struct gguf_file *ref = open_ok(ref_path()), *got = open_ok(out);
	assert_int_equal(got->n_kv, ref->n_kv);
	for (uint64_t i = 0; i < ref->n_kv; i++) {
		if (gguf_str_eq(ref->kv[i].key, "llama.context_length"))
			continue;
		assert_kv_equal(&got->kv[i], &ref->kv[i]);
	}
	uint32_t ctx;
	assert_true(gguf_get_u32(got, "llama.context_length", &ctx));
	assert_int_equal(ctx, 512);
	assert_int_equal(got->n_tensors, ref->n_tensors);
	for (uint64_t i = 0; i < ref->n_tensors; i++) {
		const struct gguf_tensor *a = &got->tensors[i], *b = &ref->tensors[i];
		assert_int_equal(a->name.len, b->name.len);
		assert_memory_equal(a->name.ptr, b->name.ptr, a->name.len);
		assert_int_equal(a->type, b->type);
		assert_int_equal(a->n_dims, b->n_dims);
		assert_memory_equal(a->ne, b->ne, sizeof(a->ne));
		assert_int_equal(a->nbytes, b->nbytes);
		assert_memory_equal(a->data, b->data, a->nbytes);
	}
	gguf_close(ref);
	gguf_close(got);
	unlink(out);
}

static void test_stories260k_f16(void **state)
{
	(void)state;
	path_buf out;
	tmp_path(out, "s260k-f16.gguf");
	convert_ok(ckpt_path(), tok_path(), out, PF_F16, 0);
	struct gguf_file *ref = open_ok(ref_path()), *got = open_ok(out);
	assert_int_equal(got->n_tensors, ref->n_tensors);
	for (uint64_t i = 0; i < ref->n_tensors; i++) {
		const struct gguf_tensor *a = &got->tensors[i], *b = &ref->tensors[i];
		assert_int_equal(a->name.len, b->name.len);
		assert_memory_equal(a->name.ptr, b->name.ptr, a->name.len);
		assert_memory_equal(a->ne, b->ne, sizeof(a->ne));
		/* Norm vectors stay F32 as in llama.cpp's f16 conversions. */
		assert_int_equal(a->type, b->n_dims == 1 ? PF_F32 : PF_F16);
		uint64_t n = b->nbytes / 4;
		for (uint64_t k = 0; k < n; k++) {
			float want, have;
			memcpy(&want, (const char *)b->data + 4 * k, 4);
			if (a->type == PF_F32) {
				memcpy(&have, (const char *)a->data + 4 * k, 4);
			} else {
				uint16_t h;
				memcpy(&h, (const char *)a->data + 2 * k, 2);
				have = pf_fp16_to_fp32(h);
			}
			/* Half a unit in the last of fp16's 11 significant bits,
			 * or half the smallest subnormal. */
			if (fabsf(have - want) > fabsf(want) * 0x1p-11f + 0x1p-25f)
				fail_msg("%.*s[%llu]: %g became %g", (int)b->name.len, b->name.ptr,
					 (unsigned long long)k, want, have);
		}
	}
	gguf_close(ref);
	gguf_close(got);
	unlink(out);
}

/* A small checkpoint unlike stories260K: unshared classifier, 3:1 grouped
 * query attention, an FFN width that is no multiple of anything, and a
 * vocab without byte tokens. Weight i holds i / 8, so any misplaced slice
 * shows. */
enum { S_DIM = 24, S_HID = 37, S_LAYERS = 2, S_HEADS = 6, S_KV_HEADS = 2, S_VOCAB = 7, S_SEQ = 5 };
#define S_HS (S_DIM / S_HEADS)
#define S_KVD (S_KV_HEADS * S_HS)

static size_t synth_floats(bool shared)
{
	size_t V = S_VOCAB, D = S_DIM, H = S_HID, L = S_LAYERS;
	return V * D + L * D + L * D * D + 2 * L * S_KVD * D + L * D * D + L * D + 3 * L * H * D +
	       D + S_SEQ * S_HS + (shared ? 0 : V * D);
}

static void *synth_checkpoint(bool shared, size_t *len)
{
	size_t n = synth_floats(shared);
	*len = 28 + 4 * n;
	char *buf = malloc(*len);
	assert_non_null(buf);
	int32_t hdr[7] = { S_DIM, S_HID, S_LAYERS, S_HEADS, S_KV_HEADS,
			   shared ? S_VOCAB : -S_VOCAB, S_SEQ };
	memcpy(buf, hdr, 28);
	for (size_t i = 0; i < n; i++) {
		float v = (float)i / 8;
		memcpy(buf + 28 + 4 * i, &v, 4);
	}
	return buf;
}

static const char *const synth_tokens[S_VOCAB] = { "<unk>", "\n<s>\n", "\n</s>\n", "a b", "",
						   " the", "<0x4G>" };

static void *synth_tokenizer(size_t *len)
{
	char *buf = malloc(4096);
	assert_non_null(buf);
	int32_t max = 6;
	memcpy(buf, &max, 4);
	size_t pos = 4;
	for (int i = 0; i < S_VOCAB; i++) {
		float score = -(float)i;
		int32_t n = (int32_t)strlen(synth_tokens[i]);
		memcpy(buf + pos, &score, 4);
		memcpy(buf + pos + 4, &n, 4);
		memcpy(buf + pos + 8, synth_tokens[i], (size_t)n);
		pos += 8 + (size_t)n;
	}
	*len = pos;
	return buf;
}

static void write_synth(bool shared)
{
	size_t n;
	void *ck = synth_checkpoint(shared, &n);
	write_bytes(synth_ck, ck, n);
	free(ck);
	void *tok = synth_tokenizer(&n);
	write_bytes(synth_tok, tok, n);
	free(tok);
}

static void assert_floats(const struct gguf_file *f, const char *name, uint64_t ne0, uint64_t ne1,
			  size_t first)
{
	const struct gguf_tensor *t = gguf_find_tensor(f, name);
	if (!t)
		fail_msg("no tensor %s", name);
	assert_int_equal(t->type, PF_F32);
	assert_int_equal(t->n_dims, ne1 == 1 ? 1 : 2);
	assert_int_equal(t->ne[0], ne0);
	assert_int_equal(t->ne[1], ne1);
	for (uint64_t i = 0; i < ne0 * ne1; i++) {
		float v;
		memcpy(&v, (const char *)t->data + 4 * i, 4);
		if (v != (float)(first + i) / 8)
			fail_msg("%s[%llu] = %g, expected %g", name, (unsigned long long)i, v,
				 (float)(first + i) / 8);
	}
}

static void test_synthetic_unshared(void **state)
{
	(void)state;
	write_synth(false);
	path_buf out;
	tmp_path(out, "synth.gguf");
	convert_ok(synth_ck, synth_tok, out, PF_F32, 0);
	struct gguf_file *f = open_ok(out);
	const size_t V = S_VOCAB, D = S_DIM, H = S_HID, L = S_LAYERS, KVD = S_KVD;
	/* Offsets (in floats) of each group, in llama2.c's order. */
	size_t emb = 0, rms_att = emb + V * D, wq = rms_att + L * D, wk = wq + L * D * D;
	size_t wv = wk + L * KVD * D, wo = wv + L * KVD * D, rms_ffn = wo + L * D * D;
	size_t w1 = rms_ffn + L * D, w2 = w1 + L * H * D, w3 = w2 + L * H * D;
	size_t rms_final = w3 + L * H * D, wcls = rms_final + D + S_SEQ * S_HS;
	assert_int_equal(f->n_tensors, 3 + 9 * L);
	assert_floats(f, "token_embd.weight", D, V, emb);
	assert_floats(f, "output_norm.weight", D, 1, rms_final);
	assert_floats(f, "output.weight", D, V, wcls);
	for (size_t l = 0; l < L; l++) {
		char name[64];
#define LAYER(suffix, ne0, ne1, base)                                              \
	snprintf(name, sizeof(name), "blk.%zu." suffix ".weight", l);              \
	assert_floats(f, name, ne0, ne1, (base) + l * (ne0) * (ne1))
		LAYER("attn_norm", D, 1, rms_att);
		LAYER("attn_q", D, D, wq);
		LAYER("attn_k", D, KVD, wk);
		LAYER("attn_v", D, KVD, wv);
		LAYER("attn_output", D, D, wo);
		LAYER("ffn_norm", D, 1, rms_ffn);
		LAYER("ffn_gate", D, H, w1);
		LAYER("ffn_down", H, D, w2);
		LAYER("ffn_up", D, H, w3);
#undef LAYER
	}
	uint32_t v;
	static const struct {
		const char *key;
		uint32_t want;
	} hp[] = {
		{ "llama.context_length", S_SEQ },       { "llama.embedding_length", S_DIM },
		{ "llama.feed_forward_length", S_HID },  { "llama.attention.head_count", S_HEADS },
		{ "llama.attention.head_count_kv", S_KV_HEADS }, { "llama.block_count", S_LAYERS },
		{ "llama.rope.dimension_count", S_HS },  { "tokenizer.ggml.bos_token_id", 1 },
	};
	for (size_t i = 0; i < sizeof(hp) / sizeof(hp[0]); i++) {
		assert_true(gguf_get_u32(f, hp[i].key, &v));
		assert_int_equal(v, hp[i].want);
	}
	static const char *const text[S_VOCAB] = { "<unk>", "<s>", "</s>", "a\xe2\x96\x81" "b", "",
						   "\xe2\x96\x81the", "<0x4G>" };
	static const int32_t types[S_VOCAB] = { 2, 3, 3, 1, 3, 1, 1 };
	const struct gguf_array *toks = gguf_get_arr(f, "tokenizer.ggml.tokens");
	const struct gguf_array *scores = gguf_get_arr(f, "tokenizer.ggml.scores");
	const struct gguf_array *tt = gguf_get_arr(f, "tokenizer.ggml.token_type");
	assert_non_null(toks);
	assert_non_null(scores);
	assert_non_null(tt);
	assert_int_equal(toks->n, S_VOCAB);
	for (uint64_t i = 0; i < S_VOCAB; i++) {
		if (!gguf_str_eq(toks->strs[i], text[i]))
			fail_msg("token %llu is '%.*s', expected '%s'", (unsigned long long)i,
				 (int)toks->strs[i].len, toks->strs[i].ptr, text[i]);
		assert_true(gguf_arr_float(scores, i) == -(double)i);
		assert_int_equal(gguf_arr_int(tt, i), types[i]);
	}
	gguf_close(f);
	unlink(out);
}

/* Cut the checkpoint at every place that matters: inside the header, at
 * its end, inside the weights, just before the end; and one byte too long. */
static void test_truncated_checkpoint(void **state)
{
	(void)state;
	write_synth(true);
	size_t n;
	char *ck = synth_checkpoint(true, &n);
	const size_t cuts[] = { 0, 1, 27, 28, 29, 100, n / 2, n - 4, n - 1 };
	path_buf path;
	tmp_path(path, "cut.bin");
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		write_bytes(path, ck, cuts[i]);
		convert_fails(path, synth_tok, path);
	}
	char *longer = malloc(n + 1);
	assert_non_null(longer);
	memcpy(longer, ck, n);
	longer[n] = 0;
	write_bytes(path, longer, n + 1);
	convert_fails(path, synth_tok, path);
	/* The real model cut short names the weight it stops in. */
	size_t big;
	char *real = read_file(ckpt_path(), &big);
	write_bytes(path, real, big - 1000);
	struct pf_llama2c_opts o = { .type = PF_F32 };
	struct pf_err err = { { 0 } };
	assert_true(pf_llama2c_convert(path, tok_path(), bad_out, &o, &err) < 0);
	assert_non_null(strstr(err.msg, "truncated at offset"));
	assert_non_null(strstr(err.msg, "freq_cis"));
	free(real);
	free(longer);
	free(ck);
	unlink(path);
}

static void test_bad_checkpoint_header(void **state)
{
	(void)state;
	write_synth(true);
	size_t n;
	char *ck = synth_checkpoint(true, &n);
	path_buf path;
	tmp_path(path, "hdr.bin");
	static const struct {
		int field;
		uint32_t value;
	} bad[] = {
		{ 0, 0 }, { 0, (uint32_t)-24 }, { 0, 25 },   /* dim: zero, negative, not heads * even */
		{ 1, 0 }, { 2, 0 }, { 2, (uint32_t)-1 },     /* hidden_dim, n_layers */
		{ 3, 0 }, { 3, 5 }, { 3, 24 },               /* n_heads: zero, uneven split, odd head size */
		{ 4, 0 }, { 4, 4 }, { 4, 12 },               /* n_kv_heads: zero, not a divisor, > heads */
		{ 5, 0 }, { 5, 0x80000000u }, { 5, 2 },      /* vocab: zero, INT32_MIN, too small */
		{ 6, 0 },                                    /* seq_len */
		{ 0, 0x7ffffffe }, { 2, 0x7fffffff },        /* sizes past the file or 2^64 */
		{ 0, 0x616b3432 },                           /* llama2.c export v1+ magic */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *copy = malloc(n);
		assert_non_null(copy);
		memcpy(copy, ck, n);
		memcpy(copy + 4 * bad[i].field, &bad[i].value, 4);
		if (bad[i].field == 2 && bad[i].value == 0x7fffffff) {
			/* A huge dim with one head too, so L * dim * dim overflows. */
			uint32_t huge = 0x7ffffffe, one = 1;
			memcpy(copy, &huge, 4);
			memcpy(copy + 12, &one, 4);
			memcpy(copy + 16, &one, 4);
		}
		write_bytes(path, copy, n);
		free(copy);
		convert_fails(path, synth_tok, path);
	}
	convert_fails(ref_path(), synth_tok, "already a GGUF file");
	free(ck);
	unlink(path);
}

static void test_bad_tokenizer(void **state)
{
	(void)state;
	write_synth(true);
	size_t n;
	char *tok = synth_tokenizer(&n);
	path_buf path;
	tmp_path(path, "tok.bin");
	const size_t cuts[] = { 0, 3, 4, 8, 11, 12, n / 2, n - 1 };
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		write_bytes(path, tok, cuts[i]);
		convert_fails(synth_ck, path, path);
	}
	/* Offsets of token 3 ("a b"): 4 + the first three entries. */
	size_t t3 = 4 + 8 + 5 + 8 + 5 + 8 + 6;
	static const int32_t lens[] = { -1, 1 << 30, INT32_MIN };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		char *copy = malloc(n + 1);
		assert_non_null(copy);
		memcpy(copy, tok, n);
		memcpy(copy + t3 + 4, &lens[i], 4);
		write_bytes(path, copy, n);
		convert_fails(synth_ck, path, path);
		free(copy);
	}
	char *copy = malloc(n + 1);
	assert_non_null(copy);
	memcpy(copy, tok, n);
	copy[t3 + 9] = 0;  /* "a\0b" */
	write_bytes(path, copy, n);
	convert_fails(synth_ck, path, path);
	copy[t3 + 9] = ' ';
	copy[n] = 'x';  /* one byte more than the vocab needs */
	write_bytes(path, copy, n + 1);
	convert_fails(synth_ck, path, path);
	free(copy);
	free(tok);
	unlink(path);
	convert_fails(synth_ck, missing, missing);
	convert_fails(missing, synth_tok, missing);
	convert_fails(tmpdir, synth_tok, tmpdir);
}

static void test_bad_output(void **state)
{
	(void)state;
	write_synth(true);
	struct pf_llama2c_opts o = { .type = PF_F32 };
	struct pf_err err = { { 0 } };
	path_buf out;
	tmp_path(out, "no/such/dir/x.gguf");
	assert_true(pf_llama2c_convert(synth_ck, synth_tok, out, &o,
				       &err) < 0);
	assert_non_null(strstr(err.msg, out));
	o.type = PF_Q4_0;
	tmp_path(out, "q4.gguf");
	assert_true(pf_llama2c_convert(synth_ck, synth_tok, out, &o,
				       &err) < 0);
	assert_false(exists(out));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stories260k_identical),
		cmocka_unit_test(test_stories260k_default),
		cmocka_unit_test(test_stories260k_f16),
		cmocka_unit_test(test_synthetic_unshared),
		cmocka_unit_test(test_truncated_checkpoint),
		cmocka_unit_test(test_bad_checkpoint_header),
		cmocka_unit_test(test_bad_tokenizer),
		cmocka_unit_test(test_bad_output),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
