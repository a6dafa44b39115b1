/* GGUF v3 writer.
 *
 * Build the metadata and the tensor list in memory, then stream the file:
 *
 *     struct gguf_writer *w = gguf_writer_new();
 *     gguf_writer_set_str(w, "general.architecture", "llama");
 *     gguf_writer_set_u32(w, "llama.block_count", 32);
 *     int t = gguf_writer_add_tensor(w, "token_embd.weight", 2, ne, PF_F16);
 *     if (gguf_writer_write_header(w, path, err) ||
 *         gguf_writer_write_tensor_data(w, t, data, nbytes, err) ||
 *         gguf_writer_finish(w, err))
 *             ...
 *     gguf_writer_free(w);
 *
 * Tensor data is written in the order the tensors were added, each padded to
 * general.alignment (32 unless that key is set as a uint32), so a tensor of
 * any size can be produced piecewise with gguf_writer_write_data() without
 * holding the model in memory.
 *
 * The setters and gguf_writer_add_tensor() never take a struct pf_err: the
 * first thing that fails (out of memory, a bad shape, a duplicate tensor) is
 * remembered and reported by gguf_writer_write_header(), so building code
 * may ignore their return values. Setting a key that already exists replaces
 * its value in place.
 *
 * The file is written to PATH.tmp and renamed to PATH by gguf_writer_finish();
 * any failure, or freeing the writer before finishing, removes the temporary
 * file. Numbers given to the setters are in host order and written
 * little-endian; tensor data is written byte for byte. */
#ifndef PINFER_GGUF_WRITER_H
#define PINFER_GGUF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "error.h"
#include "gguf.h"

struct gguf_writer;

/* NULL when out of memory. */
struct gguf_writer *gguf_writer_new(void);
void gguf_writer_free(struct gguf_writer *w);

/* Metadata. Each returns 0 or a negative errno (also remembered, see above). */
int gguf_writer_set_u8(struct gguf_writer *w, const char *key, uint8_t v);
int gguf_writer_set_i8(struct gguf_writer *w, const char *key, int8_t v);
int gguf_writer_set_u16(struct gguf_writer *w, const char *key, uint16_t v);
int gguf_writer_set_i16(struct gguf_writer *w, const char *key, int16_t v);
int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_i64(struct gguf_writer *w, const char *key, int64_t v);
int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_set_f64(struct gguf_writer *w, const char *key, double v);
int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *s);
/* An array of n numbers (or bools) of type elem, laid out as a C array of
 * the matching type (uint8_t, int16_t, float, bool...). */
int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_type elem,
			const void *data, uint64_t n);
int gguf_writer_set_arr_f32(struct gguf_writer *w, const char *key, const float *v, uint64_t n);
int gguf_writer_set_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *strs,
			    uint64_t n);

/* Copies every key of src that starts with prefix ("" for all), values of
 * any type included, in src's order. Returns how many were copied. */
int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_file *src, const char *prefix);

/* Declares the next tensor: ne[0] is the contiguous dimension. Returns its
 * index (0, 1, ...) or a negative errno. Names are limited to 63 bytes, as
 * in ggml. */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, uint32_t n_dims,
			   const uint64_t *ne, enum pf_dtype type);
/* Bytes tensor idx takes in the file, without padding; 0 for a bad index. */
uint64_t gguf_writer_tensor_nbytes(const struct gguf_writer *w, int idx);

/* Writes PowerInfer's magic (PWRI) instead of GGUF's; before the header. */
void gguf_writer_set_powerinfer(struct gguf_writer *w);
/* Creates PATH.tmp and writes the header, metadata and tensor infos. */
int gguf_writer_write_header(struct gguf_writer *w, const char *path, struct pf_err *err);
/* Appends n bytes to the tensor being filled (tensors fill in order; n may
 * not run past the end of the current one). */
int gguf_writer_write_data(struct gguf_writer *w, const void *data, size_t n,
			   struct pf_err *err);
/* Writes tensor idx whole; it must be the next one to fill. */
int gguf_writer_write_tensor_data(struct gguf_writer *w, int idx, const void *data,
				  uint64_t nbytes, struct pf_err *err);
/* Checks that every tensor was filled, syncs and renames PATH.tmp to PATH. */
int gguf_writer_finish(struct gguf_writer *w, struct pf_err *err);

#endif
