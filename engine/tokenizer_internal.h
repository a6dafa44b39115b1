/* Vocabulary layout shared by the tokenizer's files. Not a public header. */
#ifndef PINFER_TOKENIZER_INTERNAL_H
#define PINFER_TOKENIZER_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pretokenize.h"
#include "tokenizer.h"

enum pf_vocab_kind { PF_VOCAB_SPM, PF_VOCAB_BPE };

/* tokenizer.ggml.token_type values (0 is "undefined" in gguf-py). */
enum {
	PF_TOK_UNDEFINED = 0,
	PF_TOK_NORMAL = 1,
	PF_TOK_UNKNOWN = 2,
	PF_TOK_CONTROL = 3,
	PF_TOK_USER_DEFINED = 4,
	PF_TOK_UNUSED = 5,
	PF_TOK_BYTE = 6,
};

/* Special tokens of one length, for splitting them out of the text. */
struct pf_special_group {
	size_t len;
	uint32_t first;        /* index into pf_vocab.special */
	uint32_t n;
	bool has_user_defined; /* user-defined tokens split even without parse_special */
	uint8_t first_byte[32];  /* bitmap of the tokens' first bytes */
};

/* A BPE merge: the pair (left, right) of symbol ids becomes result. Symbol
 * ids below n_vocab are tokens; higher ones stand for merge products that
 * are not tokens themselves, which BPE must still track as llama.cpp does. */
struct pf_merge {
	uint64_t key;  /* left << 32 | right; UINT64_MAX for an empty slot */
	int32_t rank;
	int32_t result;
};

struct pf_vocab {
	enum pf_vocab_kind kind;
	int32_t n_vocab;

	char *text;           /* token strings, back to back */
	uint32_t *text_off;   /* n_vocab + 1 offsets into text */
	float *scores;
	uint8_t *types;

	char *piece;          /* decoded bytes of each token */
	uint32_t *piece_off;  /* n_vocab + 1 offsets into piece */

	int32_t *map;         /* string -> id, open addressing, -1 empty */
	uint32_t map_mask;

	struct pf_merge *merges;
	uint32_t merge_mask;
	int32_t n_symbols;    /* tokens plus merge products (BPE) */

	/* SPM: byte-fallback token of each byte, -1 if none. BPE: symbol id of
	 * each byte's byte-level character. */
	int32_t byte_tok[256];

	int32_t bos, eos, eot, unk, pad;
	int32_t eog[8];
	int n_eog;
	bool add_bos, add_space_prefix;
	struct pf_pretok_info pre;

	int32_t *special;     /* sorted by length, longest first */
	uint32_t n_special;
	struct pf_special_group *groups;
	uint32_t n_groups;
};

/* Where encoders put ids: writes the first cap, counts them all. */
struct pf_sink {
	int32_t *out;
	size_t cap;
	size_t n;
};

static inline void pf_sink_push(struct pf_sink *s, int32_t id)
{
	if (s->n < s->cap)
		s->out[s->n] = id;
	s->n++;
}

static inline const char *pf_tok_text(const struct pf_vocab *v, int32_t id, size_t *len)
{
	*len = v->text_off[id + 1] - v->text_off[id];
	return v->text + v->text_off[id];
}

uint64_t pf_hash_bytes(const char *s, size_t len);

/* Token id of exactly s[0..len), or -1. */
int32_t pf_vocab_find(const struct pf_vocab *v, const char *s, size_t len);

/* Merge of the symbol pair, or NULL. */
const struct pf_merge *pf_vocab_merge(const struct pf_vocab *v, int32_t left, int32_t right);

/* Encoders for one stretch of plain text (no special tokens in it). SPM
 * text already has its spaces escaped and any dummy prefix added. They
 * return 0 or -ENOMEM. */
int pf_spm_encode(const struct pf_vocab *v, const char *text, size_t len, struct pf_sink *out);
int pf_bpe_encode(const struct pf_vocab *v, const char *text, size_t len, struct pf_sink *out);

#endif
