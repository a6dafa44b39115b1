/* Pre-tokenizers for byte-level BPE vocabularies: they cut text into the
 * pieces BPE merges within, as the regular expressions that
 * tokenizer.ggml.pre names do (llama.cpp's list of them). Each regex is a
 * hand-written matcher over Unicode categories; a pre-tokenizer is a
 * sequence of them, each splitting every piece the previous ones left into
 * its matches and the text between them. */
#ifndef PINFER_PRETOKENIZE_H
#define PINFER_PRETOKENIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pf_pretok {
	PF_PRETOK_DEFAULT,        /* llama.cpp's fallback when "pre" is absent or "default" */
	PF_PRETOK_GPT2,
	PF_PRETOK_LLAMA3,
	PF_PRETOK_QWEN2,
	PF_PRETOK_DEEPSEEK_LLM,
	PF_PRETOK_DEEPSEEK_CODER,
	PF_PRETOK_FALCON,
	PF_PRETOK_STARCODER,
};

struct pf_pretok_info {
	enum pf_pretok kind;
	/* Words that are whole tokens skip BPE (HF "ignore_merges"). */
	bool ignore_merges;
};

/* Resolves a tokenizer.ggml.pre value (llama.cpp's aliases included).
 * Returns false for names it does not know. */
bool pf_pretok_lookup(const char *name, size_t len, struct pf_pretok_info *out);

/* Text decoded for pre-tokenization: code points with their category flags
 * and byte offsets, so pieces map back to the exact input bytes (invalid
 * UTF-8 is matched as U+FFFD but keeps its original byte). */
struct pf_text {
	size_t n;          /* code points */
	uint32_t *cp;
	uint8_t *flags;    /* PF_UC_* */
	size_t *off;       /* n + 1 entries: byte offset of each code point */
};

int pf_text_decode(struct pf_text *t, const char *s, size_t len);
void pf_text_free(struct pf_text *t);

/* Piece i covers code points [end[i-1], end[i]) (end[-1] being 0). */
struct pf_spans {
	size_t *end;
	size_t n, cap;
};

/* Splits t into pieces; out is reset first. Returns 0 or -ENOMEM. */
int pf_pretokenize(enum pf_pretok kind, const struct pf_text *t, struct pf_spans *out);
void pf_spans_free(struct pf_spans *s);

#endif
