/* Conversion of a llama2.c checkpoint and tokenizer into a llama GGUF.
 *
 * The output follows llama.cpp's convert-llama2c-to-ggml: the same keys in
 * the same order, the same tensor names and order, output.weight written
 * even when the classifier is shared with the embeddings, and wq/wk stored
 * as they are (llama2.c rotates adjacent pairs, which is ggml's normal
 * RoPE, so no permutation is needed). The checkpoint's floats are copied
 * as they are, i.e. assumed little-endian like every llama2.c export. */
#ifndef PINFER_LLAMA2C_H
#define PINFER_LLAMA2C_H

#include <stdint.h>

#include "dtype.h"
#include "error.h"

struct pf_llama2c_opts {
	enum pf_dtype type;        /* PF_F32 or PF_F16 for matrices; norms stay F32 */
	uint32_t context_length;   /* llama.context_length; 0: the checkpoint's seq_len */
};

/* Converts checkpoint + tokenizer into out (written atomically). Errors name
 * the file and, for malformed input, the offset. */
int pf_llama2c_convert(const char *checkpoint, const char *tokenizer, const char *out,
		       const struct pf_llama2c_opts *opts, struct pf_err *err);

#endif
