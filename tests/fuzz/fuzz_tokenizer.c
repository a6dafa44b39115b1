/* The tokenizers on arbitrary bytes: encoding any text, and decoding any
 * id sequence (whole, piece by piece and streamed), for each kind the
 * engine has: SentencePiece with byte fallback (stories260K, llama), and
 * byte-level BPE with two pre-tokenizers (gpt-2, deepseek-llm). The
 * vocabularies load once per process, from $SHARED or the build's.
 *
 * The first input byte chooses: bits 0-1 the vocabulary, bit 2 add_bos,
 * bit 3 parse_special (encode) or render_special (decode), bit 4 decode
 * (the rest as little-endian 32-bit ids) instead of encode (the rest as
 * text). Beyond memory errors it checks what the header promises: ids in
 * range, the length convention of a short buffer, and that decoding gives
 * back the text (valid UTF-8 without control tokens parsed), in one call
 * and streamed alike. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "gguf.h"
#include "tokenizer.h"
#include "unicode.h"

static const char *const vocab_files[4] = {
	"models/stories260K/stories260K.gguf",
	"models/vocab/ggml-vocab-llama-spm.gguf",
	"models/vocab/ggml-vocab-gpt-2.gguf",
	"models/vocab/ggml-vocab-deepseek-llm.gguf",
};
static struct pf_vocab *vocabs[4];

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_tokenizer: %s\n", what);
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	for (int i = 0; i < 4; i++) {
		char path[4096];
		struct gguf_file *f;
		struct pf_err err = { { 0 } };
		if (gguf_open(&f, fuzz_shared_path(vocab_files[i], path, sizeof(path)), &err) ||
		    pf_vocab_load(&vocabs[i], f, &err)) {
			fprintf(stderr, "fuzz_tokenizer: %s (set SHARED to the tests' data directory)\n", err.msg);
			exit(1);
		}
		gguf_close(f);
	}
	return 0;
}

/* The whole sequence's text, in a buffer first too short by one byte when
 * there is any: the call must say the full length and write no more. */
static char *detokenize(const struct pf_vocab *v, const int32_t *ids, size_t n, bool special, int *len)
{
	int need = pf_detokenize(v, ids, n, special, NULL, 0);
	if (need < 0)
		return NULL;
	char *out = malloc((size_t)need + 1);
	if (!out)
		fail("out of memory");
	if (need > 0 && pf_detokenize(v, ids, n, special, out, (size_t)need - 1) != need)
		fail("pf_detokenize gave another length for a short buffer");
	if (pf_detokenize(v, ids, n, special, out, (size_t)need) != need)
		fail("pf_detokenize gave another length the second time");
	*len = need;
	return out;
}

/* Streamed decode of ids (all valid) into out, which has room for the
 * whole text; returns its length. */
static size_t stream(const struct pf_vocab *v, const int32_t *ids, size_t n, char *out)
{
	struct pinfer_detok d;
	pf_detok_init(&d, v);
	size_t len = 0;
	char chunk[256];
	for (size_t i = 0; i < n; i++) {
		int k = pf_detok_push(&d, ids[i], chunk, sizeof(chunk));
		if (k < 0)
			fail("pf_detok_push refused a valid id with 256 bytes of room");
		memcpy(out + len, chunk, (size_t)k);
		len += (size_t)k;
	}
	int k = pf_detok_flush(&d, chunk, sizeof(chunk));
	if (k < 0 || k > 3)
		fail("pf_detok_flush held more than a character's bytes");
	memcpy(out + len, chunk, (size_t)k);
	return len + (size_t)k;
}

static void encode(const struct pf_vocab *v, bool spm, const char *text, size_t len, bool bos, bool special)
{
	size_t cap = len / 2;
	int32_t *ids = malloc((cap ? cap : 1) * sizeof(*ids));
	if (!ids)
		fail("out of memory");
	int n = pf_tokenize(v, text, len, bos, special, ids, cap);
	if (n < 0)
		fail("pf_tokenize failed");
	if ((size_t)n > cap) {
		free(ids);
		if (!(ids = malloc((size_t)n * sizeof(*ids))))
			fail("out of memory");
		if (pf_tokenize(v, text, len, bos, special, ids, (size_t)n) != n)
			fail("pf_tokenize gave another count with room for all");
	}
	for (int i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= pf_vocab_size(v))
			fail("pf_tokenize made an id outside the vocabulary");
	int out_len;
	char *out = detokenize(v, ids, (size_t)n, false, &out_len);
	if (!out)
		fail("pf_detokenize refused what pf_tokenize made");
	/* SentencePiece writes spaces as U+2581 and decodes U+2581 as a space,
	 * so that text does not come back. */
	bool plain = !special && pf_utf8_valid(text, len) && !(spm && memmem(text, len, "\xE2\x96\x81", 3));
	if (plain && ((size_t)out_len != len || memcmp(out, text, len)))
		fail("decoding the encoded text does not give it back");
	char *streamed = malloc((size_t)out_len + 3 * (size_t)n + 4);
	if (!streamed)
		fail("out of memory");
	size_t s = stream(v, ids, (size_t)n, streamed);
	if (plain && (s != len || memcmp(streamed, text, len)))
		fail("streamed decoding does not give the text back");
	free(streamed);
	free(out);
	free(ids);
}

static void decode(const struct pf_vocab *v, const uint8_t *data, size_t size, bool special)
{
	size_t n = size / 4;
	int32_t *ids = malloc((n ? n : 1) * sizeof(*ids));
	if (!ids)
		fail("out of memory");
	/* Mostly valid ids, and the two just outside. */
	uint32_t range = (uint32_t)pf_vocab_size(v) + 2;
	bool all_valid = true;
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, data + 4 * i, 4);
		ids[i] = (int32_t)(u % range) - 1;
		all_valid &= ids[i] >= 0 && ids[i] < pf_vocab_size(v);
	}
	int len;
	char *out = detokenize(v, ids, n, special, &len);
	if (!out != !all_valid)
		fail(all_valid ? "pf_detokenize refused valid ids" : "pf_detokenize took an invalid id");
	char piece[8];
	for (size_t i = 0; i < n; i++) {
		int k = pf_token_to_piece(v, ids[i], special, piece, sizeof(piece));
		if ((k < 0) != (ids[i] < 0 || ids[i] >= pf_vocab_size(v)))
			fail("pf_token_to_piece and the vocabulary's size disagree");
	}
	if (all_valid) {
		char *streamed = malloc((size_t)len + 3 * n + 4);
		if (!streamed)
			fail("out of memory");
		stream(v, ids, n, streamed);
		free(streamed);
	}
	free(out);
	free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const struct pf_vocab *v = vocabs[data[0] & 3];
	bool bos = data[0] & 4, special = data[0] & 8;
	if (data[0] & 16)
		decode(v, data + 1, size - 1, special);
	else
		encode(v, (data[0] & 3) < 2, (const char *)data + 1, size - 1, bos, special);
	return 0;
}
