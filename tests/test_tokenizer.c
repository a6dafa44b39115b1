#include "testutil.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "pretokenize.h"
#include "tokenizer.h"
#include "unicode.h"

#define MAX_IDS 4096

/* The vocab must not depend on the GGUF file once loaded, so it is closed
 * right away. */
static struct pf_vocab *load_vocab(const char *rel)
{
	struct gguf_file *f;
	struct pf_vocab *v;
	struct pf_err err = { { 0 } };
	if (gguf_open(&f, shared_path(rel), &err))
		fail_msg("%s", err.msg);
	if (pf_vocab_load(&v, f, &err))
		fail_msg("%s", err.msg);
	gguf_close(f);
	return v;
}

static int encode(const struct pf_vocab *v, const char *s, bool bos, bool special, int32_t *ids)
{
	int n = pf_tokenize(v, s, strlen(s), bos, special, ids, MAX_IDS);
	assert_true(n >= 0 && n <= MAX_IDS);
	return n;
}

/* ---- conformance vectors: .inp strings and .out ids ---- */

struct cases {
	char *inp, *out;
	char *text[64];
	char *ids[64];
	int n;
};

static void read_cases(struct cases *c, const char *inp, const char *out)
{
	static const char sep[] = "\n__ggml_vocab_test__\n";
	memset(c, 0, sizeof(*c));
	c->inp = read_file(shared_path(inp), NULL);
	c->out = read_file(shared_path(out), NULL);
	for (char *p = c->inp, *q; (q = strstr(p, sep)); p = q + strlen(sep)) {
		assert_true(c->n < 64);
		*q = 0;
		c->text[c->n++] = p;
	}
	int lines = 0;
	for (char *p = c->out; *p && lines < c->n; lines++) {
		char *nl = strchr(p, '\n');
		if (nl)
			*nl = 0;
		c->ids[lines] = p;
		p = nl ? nl + 1 : p + strlen(p);
	}
	assert_int_equal(lines, c->n);
}

static int parse_ids(const char *s, int32_t *ids)
{
	int n = 0;
	for (char *end; *s; s = end) {
		long x = strtol(s, &end, 10);
		if (end == s)
			break;
		ids[n++] = (int32_t)x;
	}
	return n;
}

static void run_cases(const char *name, const char *vocab, const char *inp, const char *out,
		      int expect_cases)
{
	struct pf_vocab *v = load_vocab(vocab);
	struct cases c;
	read_cases(&c, inp, out);
	assert_int_equal(c.n, expect_cases);
	int enc_ok = 0, dec_ok = 0;
	int32_t *ids = malloc(MAX_IDS * sizeof(*ids)), *want = malloc(MAX_IDS * sizeof(*want));
	char *text = malloc(1 << 16);
	for (int i = 0; i < c.n; i++) {
		int n = encode(v, c.text[i], false, false, ids);
		int m = parse_ids(c.ids[i], want);
		if (n == m && memcmp(ids, want, (size_t)n * sizeof(*ids)) == 0)
			enc_ok++;
		else
			print_message("%s case %d: encode(\"%s\") differs (got %d ids, want %d)\n",
				      name, i, c.text[i], n, m);
		int len = pf_detokenize(v, want, (size_t)m, false, text, 1 << 16);
		if (len == (int)strlen(c.text[i]) && memcmp(text, c.text[i], (size_t)len) == 0)
			dec_ok++;
		else
			print_message("%s case %d: decode differs from \"%s\"\n", name, i, c.text[i]);
	}
	if (enc_ok != c.n || dec_ok != c.n)
		fail_msg("%s: encode %d/%d, decode %d/%d cases pass", name, enc_ok, c.n, dec_ok, c.n);
	free(text);
	free(want);
	free(ids);
	free(c.inp);
	free(c.out);
	pf_vocab_free(v);
}

static void test_llama_spm_vectors(void **state)
{
	(void)state;
	run_cases("llama-spm", "models/vocab/ggml-vocab-llama-spm.gguf",
		  "models/vocab/ggml-vocab-llama-spm.gguf.inp",
		  "models/vocab/ggml-vocab-llama-spm.gguf.out", 46);
}

static void test_gpt2_vectors(void **state)
{
	(void)state;
	run_cases("gpt-2", "models/vocab/ggml-vocab-gpt-2.gguf",
		  "models/vocab/ggml-vocab-gpt-2.gguf.inp",
		  "models/vocab/ggml-vocab-gpt-2.gguf.out", 46);
}

static void test_deepseek_llm_vectors(void **state)
{
	(void)state;
	run_cases("deepseek-llm", "models/vocab/ggml-vocab-deepseek-llm.gguf",
		  "models/vocab/ggml-vocab-deepseek-llm.gguf.inp",
		  "models/vocab/ggml-vocab-deepseek-llm.gguf.out", 46);
}

/* llama2.c's encoder and llama.cpp's SPM agree on these: both merge the
 * best-scoring pair leftmost-first and fall back to <0xXX> = byte + 3. */
static void test_tok512_vectors(void **state)
{
	(void)state;
	struct cases c;
	read_cases(&c, "models/stories260K/ref/tok512.inp", "models/stories260K/ref/tok512.out");
	int n = c.n;
	free(c.inp);
	free(c.out);
	assert_true(n > 0);
	run_cases("tok512", "models/stories260K/stories260K.gguf",
		  "models/stories260K/ref/tok512.inp", "models/stories260K/ref/tok512.out", n);
}

/* ---- decoding ---- */

static void check_stream(const struct pf_vocab *v, const char *s, int expect_held)
{
	int32_t ids[MAX_IDS];
	int n = encode(v, s, true, false, ids);
	struct pinfer_detok d;
	pf_detok_init(&d, v);
	char out[256], chunk[64];
	size_t len = 0;
	int held = 0;
	for (int i = 0; i < n; i++) {
		int k = pf_detok_push(&d, ids[i], chunk, sizeof(chunk));
		assert_true(k >= 0);
		assert_true(pf_utf8_valid(chunk, (size_t)k));
		held += d.n_pending > 0;
		memcpy(out + len, chunk, (size_t)k);
		len += (size_t)k;
	}
	assert_int_equal(pf_detok_flush(&d, chunk, sizeof(chunk)), 0);
	assert_int_equal(len, strlen(s));
	assert_memory_equal(out, s, len);
	assert_true(held >= expect_held);
}

static void test_stream_detok(void **state)
{
	(void)state;
	struct pf_vocab *v = load_vocab("models/stories260K/stories260K.gguf");
	/* ü and the emoji exist only as byte-fallback tokens in this vocab. */
	check_stream(v, "F\xC3\xBChrer", 1);
	check_stream(v, "I saw \xF0\x9F\x98\x81 and \xE4\xB8\x96\xE7\x95\x8C.", 3);
	/* An incomplete character at the end comes out of flush. */
	struct pinfer_detok d;
	pf_detok_init(&d, v);
	char buf[16];
	assert_int_equal(pf_detok_push(&d, 0xF0 + 3, buf, sizeof(buf)), 0);
	assert_int_equal(pf_detok_push(&d, 0x9F + 3, buf, sizeof(buf)), 0);
	assert_int_equal(pf_detok_flush(&d, buf, sizeof(buf)), 2);
	assert_memory_equal(buf, "\xF0\x9F", 2);
	/* Too small a buffer is refused without losing anything. */
	int32_t ids[16];
	int n = encode(v, "Once", false, false, ids);
	assert_int_equal(n, 1);
	pf_detok_init(&d, v);
	assert_int_equal(pf_detok_push(&d, ids[0], buf, 2), -ENOSPC);
	assert_int_equal(pf_detok_push(&d, ids[0], buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "Once", 4);
	assert_true(pf_detok_push(&d, 512, buf, sizeof(buf)) < 0);
	pf_vocab_free(v);
}

static void test_pieces(void **state)
{
	(void)state;
	struct pf_vocab *v = load_vocab("models/llama-2-tiny-random/llama-2-tiny-random.gguf");
	assert_int_equal(pf_vocab_size(v), 32000);
	char buf[32];
	assert_int_equal(pf_token_to_piece(v, 1, false, buf, sizeof(buf)), 0);
	assert_int_equal(pf_token_to_piece(v, 1, true, buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "<s>", 3);
	assert_int_equal(pf_token_to_piece(v, 3 + '\n', false, buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], '\n');
	int32_t ids[8];
	assert_int_equal(encode(v, "Hello", false, false, ids), 1);
	assert_int_equal(pf_token_to_piece(v, ids[0], false, buf, sizeof(buf)), 6);
	assert_memory_equal(buf, " Hello", 6);
	/* Short buffers get a prefix and the full length. */
	assert_int_equal(pf_token_to_piece(v, ids[0], false, buf, 2), 6);
	assert_true(pf_token_to_piece(v, 32000, false, buf, sizeof(buf)) < 0);
	assert_true(pf_token_to_piece(v, -1, false, buf, sizeof(buf)) < 0);
	/* The dummy prefix goes after BOS as at the start. */
	int n = encode(v, "Hello world", true, false, ids);
	assert_int_equal(ids[0], 1);
	char text[64];
	assert_int_equal(pf_detokenize(v, ids, (size_t)n, false, text, sizeof(text)), 11);
	assert_memory_equal(text, "Hello world", 11);
	assert_int_equal(pf_detokenize(v, ids, (size_t)n, true, text, sizeof(text)), 14);
	assert_memory_equal(text, "<s>Hello world", 14);
	assert_int_equal(pf_detokenize(v, ids, (size_t)n, false, text, 3), 11);
	pf_vocab_free(v);
}

/* ---- special tokens and BOS ---- */

static bool contains(const int32_t *ids, int n, int32_t id)
{
	for (int i = 0; i < n; i++) {
		if (ids[i] == id)
			return true;
	}
	return false;
}

static void test_special_spm(void **state)
{
	(void)state;
	struct pf_vocab *v = load_vocab("models/vocab/ggml-vocab-llama-spm.gguf");
	int32_t ids[64], plain[64];
	assert_true(pf_vocab_add_bos(v));
	assert_int_equal(pf_vocab_bos(v), 1);
	assert_int_equal(pf_vocab_eos(v), 2);
	assert_int_equal(pf_vocab_eot(v), -1);
	assert_true(pf_vocab_is_eog(v, 2));
	assert_false(pf_vocab_is_eog(v, 1));
	/* Text after a special token gets its own dummy prefix, as in llama.cpp. */
	int n = encode(v, "<s>Hello</s>", false, true, ids);
	int m = encode(v, "Hello", false, false, plain);
	assert_int_equal(n, m + 2);
	assert_int_equal(ids[0], 1);
	assert_memory_equal(ids + 1, plain, (size_t)m * sizeof(*ids));
	assert_int_equal(ids[n - 1], 2);
	n = encode(v, "<s>Hello</s>", false, false, ids);
	assert_false(contains(ids, n, 1));
	assert_false(contains(ids, n, 2));
	char text[64];
	int len = pf_detokenize(v, ids, (size_t)n, false, text, sizeof(text));
	assert_int_equal(len, 12);
	assert_memory_equal(text, "<s>Hello</s>", 12);
	/* BOS once, and only when asked. */
	n = encode(v, "Hello", true, false, ids);
	assert_int_equal(n, m + 1);
	assert_int_equal(ids[0], 1);
	assert_int_equal(encode(v, "", true, false, ids), 1);
	assert_int_equal(encode(v, "", false, false, ids), 0);
	/* The return value counts ids beyond cap. */
	assert_int_equal(pf_tokenize(v, "Hello world", 11, true, false, ids, 1), 3);
	assert_int_equal(ids[0], 1);
	pf_vocab_free(v);
}

static void test_special_bpe(void **state)
{
	(void)state;
	struct pf_vocab *v = load_vocab("models/vocab/ggml-vocab-gpt-2.gguf");
	int32_t ids[64];
	assert_false(pf_vocab_add_bos(v));
	assert_int_equal(pf_vocab_eot(v), 50256);
	assert_true(pf_vocab_is_eog(v, 50256));
	const char *s = "Hi<|endoftext|> there";
	int n = encode(v, s, true, true, ids);
	assert_int_equal(n, 3);
	assert_int_equal(ids[1], 50256);
	n = encode(v, s, true, false, ids);
	assert_true(n > 3);
	assert_false(contains(ids, n, 50256));
	char text[64];
	assert_int_equal(pf_detokenize(v, ids, (size_t)n, false, text, sizeof(text)),
			 (int)strlen(s));
	assert_memory_equal(text, s, strlen(s));
	pf_vocab_free(v);

	/* deepseek-llm asks for BOS and has user-defined tokens, which split
	 * even without parse_special. */
	v = load_vocab("models/vocab/ggml-vocab-deepseek-llm.gguf");
	assert_true(pf_vocab_add_bos(v));
	n = encode(v, "\xC3\xB6l", true, false, ids);
	assert_int_equal(ids[0], 100000);
	assert_int_equal(ids[1], 100003);
	pf_vocab_free(v);
}

/* ---- small hand-made vocabularies ---- */

struct gb {
	uint8_t *p;
	size_t n, cap;
	uint64_t n_kv;
};

static void gb_put(struct gb *b, const void *src, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->n, src, n);
	b->n += n;
}

static void gb_u32(struct gb *b, uint32_t x)
{
	gb_put(b, &x, 4);  /* the tests run on little-endian hosts */
}

static void gb_u64(struct gb *b, uint64_t x)
{
	gb_put(b, &x, 8);
}

static void gb_s(struct gb *b, const char *s)
{
	gb_u64(b, strlen(s));
	gb_put(b, s, strlen(s));
}

static void gb_key(struct gb *b, const char *key, enum gguf_type t)
{
	gb_s(b, key);
	gb_u32(b, t);
	b->n_kv++;
}

static void gb_begin(struct gb *b)
{
	memset(b, 0, sizeof(*b));
	gb_put(b, "GGUF", 4);
	gb_u32(b, 3);
	gb_u64(b, 0);  /* tensors */
	gb_u64(b, 0);  /* kv count, patched by gb_load */
}

static void gb_str(struct gb *b, const char *key, const char *val)
{
	gb_key(b, key, GGUF_TYPE_STRING);
	gb_s(b, val);
}

static void gb_int(struct gb *b, const char *key, int32_t val)
{
	gb_key(b, key, GGUF_TYPE_INT32);
	gb_u32(b, (uint32_t)val);
}

static void gb_strs(struct gb *b, const char *key, const char *const *v, size_t n)
{
	gb_key(b, key, GGUF_TYPE_ARRAY);
	gb_u32(b, GGUF_TYPE_STRING);
	gb_u64(b, n);
	for (size_t i = 0; i < n; i++)
		gb_s(b, v[i]);
}

static void gb_ints(struct gb *b, const char *key, const int32_t *v, size_t n)
{
	gb_key(b, key, GGUF_TYPE_ARRAY);
	gb_u32(b, GGUF_TYPE_INT32);
	gb_u64(b, n);
	for (size_t i = 0; i < n; i++)
		gb_u32(b, (uint32_t)v[i]);
}

static void gb_floats(struct gb *b, const char *key, const float *v, size_t n)
{
	gb_key(b, key, GGUF_TYPE_ARRAY);
	gb_u32(b, GGUF_TYPE_FLOAT32);
	gb_u64(b, n);
	gb_put(b, v, n * sizeof(*v));
}

/* Loads the vocab the buffer describes; returns the load result. */
static int gb_load(struct gb *b, struct pf_vocab **v, struct pf_err *err)
{
	struct gguf_file *f;
	memcpy(b->p + 16, &b->n_kv, 8);
	if (gguf_open_buffer(&f, b->p, b->n, "mem.gguf", err))
		fail_msg("%s", err->msg);
	int r = pf_vocab_load(v, f, err);
	gguf_close(f);
	free(b->p);
	return r;
}

static const char *const spm_toks[] = { "<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b",
					"\xE2\x96\x81" "a" };
static const float spm_scores[] = { 0, 0, 0, -1, -2, -3, -0.5f };
static const int32_t spm_types[] = { 2, 3, 3, 1, 1, 1, 1, 1 };  /* one spare */
#define N_SPM 7

enum spm_flaw { SPM_OK, SPM_MODEL, SPM_SCORES_LEN, SPM_TYPES_LEN, SPM_BOS, SPM_TYPE_VALUE,
		SPM_NO_TOKENS, SPM_TOKENS_TYPE, SPM_DUP, SPM_UTF8, SPM_BYTE, SPM_FLAG_TYPE };

static int load_spm(enum spm_flaw flaw, struct pf_vocab **v, struct pf_err *err)
{
	struct gb b;
	const char *toks[N_SPM];
	int32_t types[N_SPM + 1];
	memcpy(toks, spm_toks, sizeof(toks));
	memcpy(types, spm_types, sizeof(types));
	if (flaw == SPM_DUP)
		toks[5] = "a";
	if (flaw == SPM_UTF8)
		toks[5] = "\xC3(";
	if (flaw == SPM_BYTE)
		types[5] = 6;
	if (flaw == SPM_TYPE_VALUE)
		types[4] = 9;
	gb_begin(&b);
	gb_str(&b, "tokenizer.ggml.model", flaw == SPM_MODEL ? "t5" : "llama");
	if (flaw == SPM_TOKENS_TYPE)
		gb_ints(&b, "tokenizer.ggml.tokens", types, N_SPM);
	else if (flaw != SPM_NO_TOKENS)
		gb_strs(&b, "tokenizer.ggml.tokens", toks, N_SPM);
	gb_floats(&b, "tokenizer.ggml.scores", spm_scores, flaw == SPM_SCORES_LEN ? 5 : N_SPM);
	gb_ints(&b, "tokenizer.ggml.token_type", types, flaw == SPM_TYPES_LEN ? 8 : N_SPM);
	gb_int(&b, "tokenizer.ggml.bos_token_id", flaw == SPM_BOS ? 7 : 1);
	if (flaw == SPM_FLAG_TYPE)
		gb_int(&b, "tokenizer.ggml.add_bos_token", 1);
	return gb_load(&b, v, err);
}

static void expect_error(enum spm_flaw flaw, const char *needle)
{
	struct pf_vocab *v = (struct pf_vocab *)1;
	struct pf_err err = { { 0 } };
	assert_true(load_spm(flaw, &v, &err) < 0);
	assert_null(v);
	if (!strstr(err.msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", err.msg, needle);
}

static void test_malformed(void **state)
{
	(void)state;
	expect_error(SPM_MODEL, "\"t5\" is not supported");
	expect_error(SPM_SCORES_LEN, "tokenizer.ggml.scores has 5 entries");
	expect_error(SPM_TYPES_LEN, "tokenizer.ggml.token_type has 8 entries");
	expect_error(SPM_BOS, "bos_token_id = 7 is out of range");
	expect_error(SPM_TYPE_VALUE, "token_type[4] = 9");
	expect_error(SPM_NO_TOKENS, "tokenizer.ggml.tokens missing");
	expect_error(SPM_TOKENS_TYPE, "tokenizer.ggml.tokens must be an array of strings");
	expect_error(SPM_DUP, "ids 4 and 5 are both \"a\"");
	expect_error(SPM_UTF8, "tokens[5] is not valid UTF-8");
	expect_error(SPM_BYTE, "byte token 5");
	expect_error(SPM_FLAG_TYPE, "add_bos_token must be a bool");
}

static void test_tiny_spm(void **state)
{
	(void)state;
	struct pf_vocab *v;
	struct pf_err err = { { 0 } };
	if (load_spm(SPM_OK, &v, &err))
		fail_msg("%s", err.msg);
	int32_t ids[16];
	/* No byte tokens: what is not in the vocab becomes <unk>. */
	int n = encode(v, "ab c", false, false, ids);
	int32_t want[] = { 6, 5, 3, 0 };
	assert_int_equal(n, 4);
	assert_memory_equal(ids, want, sizeof(want));
	pf_vocab_free(v);
}

static int load_bpe(const char *merge0, bool with_merges, struct pf_vocab **v, struct pf_err *err)
{
	static const char *const toks[] = { "a", "b", "c", "abc", "<|end|>" };
	static const int32_t types[] = { 1, 1, 1, 1, 3 };
	const char *merges[] = { merge0, "ab c" };
	struct gb b;
	gb_begin(&b);
	gb_str(&b, "tokenizer.ggml.model", "gpt2");
	gb_str(&b, "tokenizer.ggml.pre", "gpt-2");
	gb_strs(&b, "tokenizer.ggml.tokens", toks, 5);
	gb_ints(&b, "tokenizer.ggml.token_type", types, 5);
	if (with_merges)
		gb_strs(&b, "tokenizer.ggml.merges", merges, 2);
	return gb_load(&b, v, err);
}

static void test_tiny_bpe(void **state)
{
	(void)state;
	struct pf_vocab *v;
	struct pf_err err = { { 0 } };
	if (load_bpe("a b", true, &v, &err))
		fail_msg("%s", err.msg);
	int32_t ids[16];
	/* "ab" is no token, but BPE passes through it to reach "abc". */
	assert_int_equal(encode(v, "abc", false, false, ids), 1);
	assert_int_equal(ids[0], 3);
	assert_int_equal(encode(v, "ab", false, false, ids), 2);
	assert_int_equal(ids[0], 0);
	assert_int_equal(ids[1], 1);
	assert_int_equal(encode(v, "c<|end|>", false, true, ids), 2);
	assert_int_equal(ids[1], 4);
	assert_int_equal(pf_vocab_eot(v), 4);
	assert_true(pf_vocab_is_eog(v, 4));
	assert_int_equal(pf_vocab_bos(v), -1);
	pf_vocab_free(v);

	v = (struct pf_vocab *)1;
	assert_true(load_bpe("abc", true, &v, &err) < 0);
	assert_null(v);
	assert_non_null(strstr(err.msg, "merges[0] = \"abc\" is not two strings"));
	assert_true(load_bpe("a b", false, &v, &err) < 0);
	assert_non_null(strstr(err.msg, "tokenizer.ggml.merges missing"));
}

/* ---- pre-tokenizers without conformance vectors here ---- */

static void check_split(enum pf_pretok kind, const char *s, const char *want)
{
	struct pf_text t;
	struct pf_spans sp = { 0 };
	assert_int_equal(pf_text_decode(&t, s, strlen(s)), 0);
	assert_int_equal(pf_pretokenize(kind, &t, &sp), 0);
	char got[256];
	size_t n = 0, start = 0;
	for (size_t i = 0; i < sp.n; i++) {
		if (i)
			got[n++] = '|';
		size_t a = t.off[start], b = t.off[sp.end[i]];
		memcpy(got + n, s + a, b - a);
		n += b - a;
		start = sp.end[i];
	}
	got[n] = 0;
	if (strcmp(got, want))
		fail_msg("pre-tokenizer %d split \"%s\" as \"%s\", want \"%s\"", kind, s, got, want);
	pf_spans_free(&sp);
	pf_text_free(&t);
}

static void test_pretokenizers(void **state)
{
	(void)state;
	check_split(PF_PRETOK_LLAMA3, "Hello world 12345 it's\n\n  x",
		    "Hello| world| |123|45| it|'s|\n\n| | x");
	check_split(PF_PRETOK_LLAMA3, "I'M here!!\r\n", "I|'M| here|!!\r\n");
	check_split(PF_PRETOK_LLAMA3, "a\tb  \xC3\xA9t\xC3\xA9", "a|\tb| | \xC3\xA9t\xC3\xA9");
	check_split(PF_PRETOK_QWEN2, "x 123", "x| |1|2|3");
	check_split(PF_PRETOK_GPT2, "Hello  world's\t!", "Hello| | world|'s|\t|!");
	check_split(PF_PRETOK_GPT2, "IT'S  ", "IT|'|S|  ");
	check_split(PF_PRETOK_DEEPSEEK_CODER, "ab12 c", "ab|1|2| c");
	check_split(PF_PRETOK_STARCODER, "ab12 c", "ab|1|2| c");
	check_split(PF_PRETOK_FALCON, "x=1234", "x|=|123|4");
	check_split(PF_PRETOK_DEFAULT, "x=1234", "x|=|123|4");
	check_split(PF_PRETOK_DEEPSEEK_LLM, "Hi 1234 ok", "Hi| |1234| ok");
	check_split(PF_PRETOK_DEEPSEEK_LLM, "a \xE4\xB8\x96\xE7\x95\x8C  ", "a| |\xE4\xB8\x96\xE7\x95\x8C|  ");
	struct pf_pretok_info info;
	assert_true(pf_pretok_lookup("llama-bpe", 9, &info));
	assert_int_equal(info.kind, PF_PRETOK_LLAMA3);
	assert_true(info.ignore_merges);
	assert_true(pf_pretok_lookup("refact", 6, &info));
	assert_int_equal(info.kind, PF_PRETOK_STARCODER);
	assert_false(pf_pretok_lookup("gpt", 3, &info));
}

/* Text decodes back to itself, broken UTF-8 included. Bytes that never
 * occur in UTF-8 (C0, C1, F5-FF) are left out: deepseek-llm's vocab has
 * their byte-level characters as user-defined tokens, which decode to the
 * characters themselves (as in llama.cpp). */
static void test_random_roundtrip(void **state)
{
	(void)state;
	static const char *const vocabs[] = {
		"models/vocab/ggml-vocab-llama-spm.gguf", "models/vocab/ggml-vocab-gpt-2.gguf",
		"models/vocab/ggml-vocab-deepseek-llm.gguf", "models/stories260K/stories260K.gguf",
	};
	static const char *const bits[] = { " ", "  ", "a", "Z", "7", "'s", "\n", "\t", "!",
					    "\xC3\xB6", "\xE4\xB8\x96", "\xF0\x9F\x98\x81",
					    "\xE2\x80\x8A", "\xC3", "\x80", "<s>" };
	uint64_t seed = 42;
	int32_t ids[MAX_IDS];
	for (size_t k = 0; k < sizeof(vocabs) / sizeof(vocabs[0]); k++) {
		struct pf_vocab *v = load_vocab(vocabs[k]);
		for (int iter = 0; iter < 200; iter++) {
			char s[256], back[512];
			size_t n = 0;
			for (int j = (int)(test_rand(&seed) % 24); j > 0; j--) {
				const char *b = bits[test_rand(&seed) % (sizeof(bits) / sizeof(bits[0]))];
				memcpy(s + n, b, strlen(b));
				n += strlen(b);
			}
			int m = pf_tokenize(v, s, n, false, false, ids, MAX_IDS);
			assert_true(m >= 0);
			int len = pf_detokenize(v, ids, (size_t)m, false, back, sizeof(back));
			if (len != (int)n || memcmp(back, s, n)) {
				char hex[3 * sizeof(s) + 1] = "";
				for (size_t i = 0; i < n; i++)
					sprintf(hex + 3 * i, " %02x", (unsigned char)s[i]);
				fail_msg("%s: round trip failed for%s", vocabs[k], hex);
			}
		}
		pf_vocab_free(v);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_llama_spm_vectors),
		cmocka_unit_test(test_gpt2_vectors),
		cmocka_unit_test(test_deepseek_llm_vectors),
		cmocka_unit_test(test_tok512_vectors),
		cmocka_unit_test(test_stream_detok),
		cmocka_unit_test(test_pieces),
		cmocka_unit_test(test_special_spm),
		cmocka_unit_test(test_special_bpe),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_tiny_spm),
		cmocka_unit_test(test_tiny_bpe),
		cmocka_unit_test(test_pretokenizers),
		cmocka_unit_test(test_random_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
