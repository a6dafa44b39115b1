/* pinfer-model quantize: converts a GGUF model's weight matrices to another
 * weight type, one tensor at a time, so a model of any size needs only a
 * few MiB of memory beyond the mapped input. Also the streaming row writer
 * that pinfer-model synth shares. */
#ifndef PINFER_TOOLS_QUANTIZE_H
#define PINFER_TOOLS_QUANTIZE_H

#include <stdint.h>
#include <stdio.h>

#include "dtype.h"
#include "error.h"
#include "gguf_writer.h"
#include "threadpool.h"

struct quantize_opts {
	enum pf_dtype type;  /* target type of the weight matrices */
	int n_threads;       /* 0: online CPUs */
	FILE *log;           /* progress, fallbacks and the summary; NULL: silent */
};

struct quantize_stats {
	uint64_t in_bytes, out_bytes;  /* file sizes */
	int n_quantized;               /* matrices written in the target type */
	int n_kept;                    /* matrices left as they were: rows do not fit the blocks */
};

/* Looks up a weight type the engine can both produce and run ("q4_0",
 * "F16"...). On failure err names the type and lists those that work. */
int quantize_parse_type(const char *name, enum pf_dtype *out, struct pf_err *err);
/* The type names quantize_parse_type accepts, space separated. */
void quantize_type_names(char *buf, size_t size);

/* llama.cpp's general.file_type (enum llama_ftype) of a model whose
 * matrices are mostly of type t. */
uint32_t quantize_file_type(enum pf_dtype t);

/* Writes IN's metadata and tensors to OUT: matrices whose rows are a whole
 * number of o->type's blocks in that type, other matrices unchanged, 1-D
 * tensors (norms) as F32. st may be NULL. */
int quantize_model(const char *in, const char *out, const struct quantize_opts *o,
		   struct quantize_stats *st, struct pf_err *err);

/* Produces row `row` (cols floats) of the tensor being written. Called from
 * several threads at once, each with its own dst. */
typedef void (*quant_row_fn)(void *arg, int64_t row, float *dst);

/* Fills the next tensor of w, rows x cols elements of type (cols a multiple
 * of its block): rows are made by fn and converted by the type's from_float
 * across pool's threads a few MiB at a time, and appended to the file. */
int quant_write_rows(struct gguf_writer *w, struct pf_pool *pool, enum pf_dtype type,
		     int64_t rows, int64_t cols, quant_row_fn fn, void *arg, struct pf_err *err);

#endif
