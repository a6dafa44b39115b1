/* Tokenizers read from GGUF metadata: SentencePiece-style ("llama": scores,
 * byte fallback, dummy prefix) and byte-level BPE ("gpt2": merges and the
 * pre-tokenizer named by tokenizer.ggml.pre). */
#ifndef PINFER_TOKENIZER_H
#define PINFER_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"
#include "pinfer.h"

struct pf_vocab;

int pf_vocab_load(struct pf_vocab **out, const struct gguf_file *f, struct pf_err *err);
void pf_vocab_free(struct pf_vocab *v);

int32_t pf_vocab_size(const struct pf_vocab *v);
int32_t pf_vocab_bos(const struct pf_vocab *v);  /* -1 when the vocab has none */
int32_t pf_vocab_eos(const struct pf_vocab *v);
int32_t pf_vocab_eot(const struct pf_vocab *v);
bool pf_vocab_add_bos(const struct pf_vocab *v);  /* tokenizer.ggml.add_bos_token */
/* True for tokens that end a generation (EOS, EOT, and the like). */
bool pf_vocab_is_eog(const struct pf_vocab *v, int32_t id);

/* Encodes text[0..len). add_bos prepends BOS when the vocab wants one;
 * parse_special lets control tokens written in the text ("<|eot_id|>")
 * become their ids instead of being tokenized as plain text. Writes at most
 * cap ids and returns how many the full encoding has (so a return > cap
 * means "call again with a bigger buffer"), or a negative error. */
int pf_tokenize(const struct pf_vocab *v, const char *text, size_t len, bool add_bos,
		bool parse_special, int32_t *out, size_t cap);

/* Bytes one token stands for (byte-fallback and byte-level tokens decoded,
 * SentencePiece's U+2581 turned into a space). Control tokens give ""
 * unless render_special. Returns the piece length (which may exceed cap:
 * then only cap bytes were written), or a negative error for a bad id. */
int pf_token_to_piece(const struct pf_vocab *v, int32_t id, bool render_special, char *buf,
		      size_t cap);

/* Decodes a whole sequence: the inverse of pf_tokenize for text that
 * contains no control tokens (including SentencePiece's dummy-prefix space,
 * removed after a leading BOS or at the start). Same return convention as
 * pf_token_to_piece; no NUL is written. */
int pf_detokenize(const struct pf_vocab *v, const int32_t *ids, size_t n, bool render_special,
		  char *buf, size_t cap);

/* Streaming decode for generation: tokens arrive one at a time and a piece
 * may end inside a UTF-8 character; pf_detok_push returns only complete
 * characters and keeps the rest for the next token (state: struct
 * pinfer_detok in pinfer.h). Control tokens give "".
 * pf_detok_init sets at_start for SentencePiece vocabs, so the first piece
 * after any BOS loses its dummy-prefix space; clear it when the stream
 * continues text that was decoded elsewhere. */
void pf_detok_init(struct pinfer_detok *d, const struct pf_vocab *v);
/* Appends the text that token id completes to buf; returns its length
 * (bytes written, at most cap) or a negative error: -EINVAL for a bad id,
 * -ENOSPC when cap cannot hold it (then nothing is consumed; the longest
 * token piece plus 3 bytes always fits). */
int pf_detok_push(struct pinfer_detok *d, int32_t id, char *buf, size_t cap);
/* Flushes bytes of an unfinished character at the end of a generation
 * (at most 3; -ENOSPC when cap is smaller). */
int pf_detok_flush(struct pinfer_detok *d, char *buf, size_t cap);

#endif
