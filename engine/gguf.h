/* GGUF v2/v3 reader.
 *
 * The file is mapped read-only; strings, arrays and tensor data point into
 * the mapping and stay valid until gguf_close(). Every count, length and
 * offset is checked against the file before it is used, so a malformed or
 * truncated file yields an error naming the field and its offset, never an
 * out-of-bounds read. All multi-byte values are little-endian and possibly
 * unaligned in the mapping: read them through the accessors below. */
#ifndef PINFER_GGUF_H
#define PINFER_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define GGUF_MAGIC "GGUF"
/* PowerInfer's variant of the format: the same layout under another magic,
 * with predictor tensors (docs/sparsity.md). */
#define GGUF_MAGIC_POWERINFER "PWRI"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

enum gguf_type {
	GGUF_TYPE_UINT8 = 0,
	GGUF_TYPE_INT8 = 1,
	GGUF_TYPE_UINT16 = 2,
	GGUF_TYPE_INT16 = 3,
	GGUF_TYPE_UINT32 = 4,
	GGUF_TYPE_INT32 = 5,
	GGUF_TYPE_FLOAT32 = 6,
	GGUF_TYPE_BOOL = 7,
	GGUF_TYPE_STRING = 8,
	GGUF_TYPE_ARRAY = 9,
	GGUF_TYPE_UINT64 = 10,
	GGUF_TYPE_INT64 = 11,
	GGUF_TYPE_FLOAT64 = 12,
	GGUF_TYPE_COUNT = 13,
};

/* Not NUL-terminated: it points into the mapping. */
struct gguf_str {
	const char *ptr;
	uint64_t len;
};

struct gguf_array {
	enum gguf_type type;  /* element type */
	uint64_t n;
	const uint8_t *data;  /* first element in the mapping */
	/* For string arrays only: n entries, allocated by the reader. */
	struct gguf_str *strs;
};

struct gguf_kv {
	struct gguf_str key;
	enum gguf_type type;
	uint64_t offset;  /* of the key in the file, for error messages */
	union {
		uint64_t u;  /* every unsigned integer type and bool */
		int64_t i;   /* every signed integer type */
		double f;    /* FLOAT32 and FLOAT64 */
		struct gguf_str str;
		struct gguf_array arr;
	} v;
};

struct gguf_tensor {
	struct gguf_str name;
	uint32_t n_dims;
	uint64_t ne[GGUF_MAX_DIMS];  /* ne[0] is the contiguous dimension; unused dims are 1 */
	uint32_t type;               /* enum pf_dtype */
	uint64_t offset;             /* relative to the data section */
	uint64_t nbytes;
	const void *data;
};

struct gguf_file {
	const uint8_t *base;
	size_t size;
	bool owns_map;
	uint32_t version;
	uint64_t n_kv;
	struct gguf_kv *kv;
	uint64_t n_tensors;
	struct gguf_tensor *tensors;
	uint64_t alignment;
	uint64_t data_offset;
	bool powerinfer;             /* magic PWRI */
	char path[256];
};

/* Maps path and parses it. On failure *out is NULL and err says why. */
int gguf_open(struct gguf_file **out, const char *path, struct pf_err *err);

/* Parses a buffer the caller keeps alive for the lifetime of the result. */
int gguf_open_buffer(struct gguf_file **out, const void *buf, size_t size,
		     const char *name, struct pf_err *err);

void gguf_close(struct gguf_file *f);

const struct gguf_kv *gguf_find(const struct gguf_file *f, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name);

bool gguf_str_eq(struct gguf_str s, const char *cstr);
/* Copies s into buf (truncating) and NUL-terminates it; returns buf. */
char *gguf_str_copy(struct gguf_str s, char *buf, size_t bufsize);

/* Typed getters: they accept any integer (or float) width and return false
 * when the key is absent or has an incompatible type or value. */
bool gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out);
bool gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out);
bool gguf_get_i64(const struct gguf_file *f, const char *key, int64_t *out);
bool gguf_get_f32(const struct gguf_file *f, const char *key, float *out);
bool gguf_get_bool(const struct gguf_file *f, const char *key, bool *out);
bool gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out);
const struct gguf_array *gguf_get_arr(const struct gguf_file *f, const char *key);

/* Element access for numeric arrays, converting from the stored width.
 * The index must be < arr->n and the element type numeric. */
int64_t gguf_arr_int(const struct gguf_array *a, uint64_t i);
double gguf_arr_float(const struct gguf_array *a, uint64_t i);

const char *gguf_type_name(enum gguf_type t);

#endif
