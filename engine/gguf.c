#include "gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "mapfile.h"

/* Nested arrays are legal GGUF but nothing uses more than one level; the
 * limit only stops a hostile file from recursing the parser's stack away. */
#define MAX_ARRAY_DEPTH 4

struct cursor {
	const uint8_t *base;
	uint64_t size;
	uint64_t pos;
	const char *path;
	struct pf_err *err;
};

static const struct {
	const char *name;
	uint32_t size;  /* 0 for variable-size types */
} gguf_types[GGUF_TYPE_COUNT] = {
	[GGUF_TYPE_UINT8] = { "uint8", 1 },   [GGUF_TYPE_INT8] = { "int8", 1 },
	[GGUF_TYPE_UINT16] = { "uint16", 2 }, [GGUF_TYPE_INT16] = { "int16", 2 },
	[GGUF_TYPE_UINT32] = { "uint32", 4 }, [GGUF_TYPE_INT32] = { "int32", 4 },
	[GGUF_TYPE_FLOAT32] = { "float32", 4 }, [GGUF_TYPE_BOOL] = { "bool", 1 },
	[GGUF_TYPE_STRING] = { "string", 0 }, [GGUF_TYPE_ARRAY] = { "array", 0 },
	[GGUF_TYPE_UINT64] = { "uint64", 8 }, [GGUF_TYPE_INT64] = { "int64", 8 },
	[GGUF_TYPE_FLOAT64] = { "float64", 8 },
};

const char *gguf_type_name(enum gguf_type t)
{
	return (unsigned)t < GGUF_TYPE_COUNT ? gguf_types[t].name : "invalid";
}

static uint64_t load_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static int need(struct cursor *c, uint64_t n, const char *field)
{
	if (c->size - c->pos < n)
		return pf_errf(c->err, -EINVAL,
			       "%s: truncated at offset %llu reading %s: need %llu bytes, %llu left",
			       c->path, (unsigned long long)c->pos, field,
			       (unsigned long long)n, (unsigned long long)(c->size - c->pos));
	return 0;
}

static int read_uint(struct cursor *c, unsigned width, const char *field, uint64_t *out)
{
	int r = need(c, width, field);
	if (r)
		return r;
	*out = load_le(c->base + c->pos, width);
	c->pos += width;
	return 0;
}

static int read_u32(struct cursor *c, const char *field, uint32_t *out)
{
	uint64_t v = 0;
	int r = read_uint(c, 4, field, &v);
	*out = (uint32_t)v;
	return r;
}

static int read_str(struct cursor *c, const char *field, struct gguf_str *out)
{
	uint64_t at = c->pos;
	uint64_t len;
	int r = read_uint(c, 8, field, &len);
	if (r)
		return r;
	if (len > c->size - c->pos)
		return pf_errf(c->err, -EINVAL,
			       "%s: %s at offset %llu has length %llu but only %llu bytes remain",
			       c->path, field, (unsigned long long)at, (unsigned long long)len,
			       (unsigned long long)(c->size - c->pos));
	out->ptr = (const char *)c->base + c->pos;
	out->len = len;
	c->pos += len;
	return 0;
}

static int read_type(struct cursor *c, const char *field, enum gguf_type *out)
{
	uint64_t at = c->pos;
	uint32_t t;
	int r = read_u32(c, field, &t);
	if (r)
		return r;
	if (t >= GGUF_TYPE_COUNT)
		return pf_errf(c->err, -EINVAL, "%s: %s at offset %llu is %u, expected 0..%d",
			       c->path, field, (unsigned long long)at, t, GGUF_TYPE_COUNT - 1);
	*out = (enum gguf_type)t;
	return 0;
}

static int read_array(struct cursor *c, struct gguf_array *arr, int depth, bool keep_strings);

/* Skips over one value of a variable-size type inside an array. */
static int skip_value(struct cursor *c, enum gguf_type t, int depth)
{
	if (t == GGUF_TYPE_STRING) {
		struct gguf_str s;
		return read_str(c, "array string element", &s);
	}
	struct gguf_array nested;
	return read_array(c, &nested, depth + 1, false);
}

static int read_array(struct cursor *c, struct gguf_array *arr, int depth, bool keep_strings)
{
	uint64_t at = c->pos;
	int r;
	memset(arr, 0, sizeof(*arr));
	if (depth > MAX_ARRAY_DEPTH)
		return pf_errf(c->err, -EINVAL, "%s: arrays nested deeper than %d at offset %llu",
			       c->path, MAX_ARRAY_DEPTH, (unsigned long long)at);
	if ((r = read_type(c, "array element type", &arr->type)) ||
	    (r = read_uint(c, 8, "array length", &arr->n)))
		return r;
	arr->data = c->base + c->pos;
	uint32_t esize = gguf_types[arr->type].size;
	uint64_t left = c->size - c->pos;
	/* Each element takes at least 8 bytes (a string length or an array
	 * header) when variable-sized, so the count is bounded by what is left
	 * before anything is allocated. */
	uint64_t min_size = esize ? esize : 8;
	if (arr->n > left / min_size)
		return pf_errf(c->err, -EINVAL,
			       "%s: array at offset %llu claims %llu %s elements but only %llu bytes remain",
			       c->path, (unsigned long long)at, (unsigned long long)arr->n,
			       gguf_types[arr->type].name, (unsigned long long)left);
	if (esize) {
		c->pos += arr->n * esize;
		return 0;
	}
	if (arr->type == GGUF_TYPE_STRING && keep_strings) {
		arr->strs = calloc(arr->n ? arr->n : 1, sizeof(*arr->strs));
		if (!arr->strs)
			return pf_errf(c->err, -ENOMEM, "%s: out of memory for %llu strings",
				       c->path, (unsigned long long)arr->n);
		for (uint64_t i = 0; i < arr->n; i++)
			if ((r = read_str(c, "array string element", &arr->strs[i])))
				return r;
		return 0;
	}
	for (uint64_t i = 0; i < arr->n; i++)
		if ((r = skip_value(c, arr->type, depth)))
			return r;
	return 0;
}

static int read_kv(struct cursor *c, struct gguf_kv *kv)
{
	int r;
	kv->offset = c->pos;
	if ((r = read_str(c, "metadata key", &kv->key)) ||
	    (r = read_type(c, "metadata value type", &kv->type)))
		return r;
	uint64_t raw;
	switch (kv->type) {
	case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
		return read_uint(c, gguf_types[kv->type].size, "metadata value", &kv->v.u);
	case GGUF_TYPE_BOOL:
		if ((r = read_uint(c, 1, "metadata value", &kv->v.u)))
			return r;
		if (kv->v.u > 1)
			return pf_errf(c->err, -EINVAL, "%s: bool at offset %llu is %llu, expected 0 or 1",
				       c->path, (unsigned long long)(c->pos - 1),
				       (unsigned long long)kv->v.u);
		return 0;
	case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64: {
		unsigned w = gguf_types[kv->type].size;
		if ((r = read_uint(c, w, "metadata value", &raw)))
			return r;
		unsigned shift = 64 - 8 * w;
		kv->v.i = (int64_t)(raw << shift) >> shift;
		return 0;
	}
	case GGUF_TYPE_FLOAT32: {
		if ((r = read_uint(c, 4, "metadata value", &raw)))
			return r;
		uint32_t bits = (uint32_t)raw;
		float f;
		memcpy(&f, &bits, 4);
		kv->v.f = f;
		return 0;
	}
	case GGUF_TYPE_FLOAT64:
		if ((r = read_uint(c, 8, "metadata value", &raw)))
			return r;
		memcpy(&kv->v.f, &raw, 8);
		return 0;
	case GGUF_TYPE_STRING:
		return read_str(c, "metadata string value", &kv->v.str);
	case GGUF_TYPE_ARRAY:
		return read_array(c, &kv->v.arr, 0, true);
	default:
		return pf_errf(c->err, -EINVAL, "%s: bad value type at offset %llu", c->path,
			       (unsigned long long)kv->offset);
	}
}

static int cmp_str_ptr(const void *a, const void *b)
{
	const struct gguf_str *x = *(const struct gguf_str *const *)a;
	const struct gguf_str *y = *(const struct gguf_str *const *)b;
	uint64_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->ptr, y->ptr, n);
	return c ? c : x->len < y->len ? -1 : x->len > y->len;
}

/* Sorting finds a repeated name in O(n log n): a hostile file with millions
 * of keys must not make the check quadratic. The strings are `stride` bytes
 * apart starting at first. Sets *dup to one of a duplicate pair, or NULL;
 * -ENOMEM when it cannot check (a file is not taken unchecked). */
static int find_duplicate(const struct gguf_str *first, uint64_t n, size_t stride,
			  const struct gguf_str **dup)
{
	*dup = NULL;
	if (n < 2)
		return 0;
	const struct gguf_str **v = malloc(n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++)
		v[i] = (const struct gguf_str *)(const void *)((const char *)first + i * stride);
	qsort(v, n, sizeof(*v), cmp_str_ptr);
	for (uint64_t i = 1; i < n && !*dup; i++)
		if (cmp_str_ptr(&v[i - 1], &v[i]) == 0)
			*dup = v[i];
	free(v);
	return 0;
}

bool gguf_str_eq(struct gguf_str s, const char *cstr)
{
	size_t n = strlen(cstr);
	return s.len == n && memcmp(s.ptr, cstr, n) == 0;
}

char *gguf_str_copy(struct gguf_str s, char *buf, size_t bufsize)
{
	if (bufsize == 0)
		return buf;
	size_t n = s.len < bufsize - 1 ? (size_t)s.len : bufsize - 1;
	memcpy(buf, s.ptr, n);
	buf[n] = 0;
	return buf;
}

static int read_tensor_info(struct cursor *c, struct gguf_tensor *t)
{
	uint64_t at = c->pos;
	int r;
	char name[96];
	if ((r = read_str(c, "tensor name", &t->name)) ||
	    (r = read_u32(c, "tensor n_dims", &t->n_dims)))
		return r;
	gguf_str_copy(t->name, name, sizeof(name));
	if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
		return pf_errf(c->err, -EINVAL, "%s: tensor '%s' at offset %llu has %u dimensions, expected 1..%d",
			       c->path, name, (unsigned long long)at, t->n_dims, GGUF_MAX_DIMS);
	uint64_t nelem = 1;
	for (int d = 0; d < GGUF_MAX_DIMS; d++) {
		t->ne[d] = 1;
		if ((uint32_t)d >= t->n_dims)
			continue;
		if ((r = read_uint(c, 8, "tensor dimension", &t->ne[d])))
			return r;
		if (t->ne[d] == 0 || t->ne[d] > INT64_MAX / nelem)
			return pf_errf(c->err, -EINVAL, "%s: tensor '%s' dimension %d is %llu: zero or overflowing",
				       c->path, name, d, (unsigned long long)t->ne[d]);
		nelem *= t->ne[d];
	}
	if ((r = read_u32(c, "tensor type", &t->type)) ||
	    (r = read_uint(c, 8, "tensor offset", &t->offset)))
		return r;
	/* Internal types are the engine's own in-memory formats, not GGUF's. */
	const struct pf_dtype_info *ti = pf_dtype_info(t->type);
	if (!ti || ti->internal)
		return pf_errf(c->err, -ENOTSUP, "%s: tensor '%s' has unsupported type %u",
			       c->path, name, t->type);
	if (t->ne[0] % ti->block)
		return pf_errf(c->err, -EINVAL, "%s: tensor '%s' row of %llu is not a multiple of the %s block size %u",
			       c->path, name, (unsigned long long)t->ne[0], ti->name, ti->block);
	if (!pf_dtype_bytes(t->type, nelem, &t->nbytes))
		return pf_errf(c->err, -EINVAL, "%s: tensor '%s' size overflows", c->path, name);
	return 0;
}

static int cmp_by_offset(const void *a, const void *b)
{
	const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a;
	const struct gguf_tensor *y = *(const struct gguf_tensor *const *)b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int check_tensor_layout(struct gguf_file *f, struct pf_err *err)
{
	if (f->n_tensors == 0)
		return 0;
	if (f->data_offset > f->size)
		return pf_errf(err, -EINVAL, "%s: data section starts at %llu, past the end of the %zu-byte file",
			       f->path, (unsigned long long)f->data_offset, f->size);
	uint64_t data_size = f->size - f->data_offset;
	const struct gguf_tensor **sorted = malloc(f->n_tensors * sizeof(*sorted));
	if (!sorted)
		return pf_errf(err, -ENOMEM, "%s: out of memory", f->path);
	int r = 0;
	char name[96], other[96];
	for (uint64_t i = 0; i < f->n_tensors && !r; i++) {
		struct gguf_tensor *t = &f->tensors[i];
		sorted[i] = t;
		gguf_str_copy(t->name, name, sizeof(name));
		if (t->offset % f->alignment)
			r = pf_errf(err, -EINVAL, "%s: tensor '%s' offset %llu is not a multiple of the alignment %llu",
				    f->path, name, (unsigned long long)t->offset,
				    (unsigned long long)f->alignment);
		else if (t->offset > data_size || t->nbytes > data_size - t->offset)
			r = pf_errf(err, -EINVAL, "%s: tensor '%s' [%llu, +%llu) lies outside the %llu-byte data section",
				    f->path, name, (unsigned long long)t->offset,
				    (unsigned long long)t->nbytes, (unsigned long long)data_size);
		else
			t->data = f->base + f->data_offset + t->offset;
	}
	if (!r) {
		qsort(sorted, f->n_tensors, sizeof(*sorted), cmp_by_offset);
		for (uint64_t i = 1; i < f->n_tensors && !r; i++) {
			const struct gguf_tensor *a = sorted[i - 1], *b = sorted[i];
			if (a->offset + a->nbytes > b->offset)
				r = pf_errf(err, -EINVAL, "%s: tensors '%s' and '%s' overlap at data offset %llu",
					    f->path, gguf_str_copy(a->name, name, sizeof(name)),
					    gguf_str_copy(b->name, other, sizeof(other)),
					    (unsigned long long)b->offset);
		}
	}
	free(sorted);
	return r;
}

static int parse(struct gguf_file *f, struct pf_err *err)
{
	struct cursor c = { f->base, f->size, 0, f->path, err };
	int r;
	uint64_t n;
	if ((r = need(&c, 4, "magic")))
		return r;
	f->powerinfer = memcmp(f->base, GGUF_MAGIC_POWERINFER, 4) == 0;
	if (memcmp(f->base, GGUF_MAGIC, 4) != 0 && !f->powerinfer)
		return pf_errf(err, -EINVAL,
			       "%s: not a GGUF file (magic %02x%02x%02x%02x, expected \"GGUF\" or PowerInfer's \"PWRI\")",
			       f->path, f->base[0], f->base[1], f->base[2], f->base[3]);
	c.pos = 4;
	if ((r = read_u32(&c, "version", &f->version)))
		return r;
	if (f->version != 2 && f->version != 3)
		return pf_errf(err, -ENOTSUP, "%s: GGUF version %u%s, expected 2 or 3", f->path, f->version,
			       f->version && (f->version & 0xffff) == 0 ? " (a big-endian file?)" : "");
	if ((r = read_uint(&c, 8, "tensor count", &f->n_tensors)) ||
	    (r = read_uint(&c, 8, "metadata count", &n)))
		return r;
	/* A key/value takes >= 13 bytes and a tensor info >= 32, so counts that
	 * could not fit in the file are refused before allocating for them. */
	if (n > (c.size - c.pos) / 13)
		return pf_errf(err, -EINVAL, "%s: metadata count %llu cannot fit in the file",
			       f->path, (unsigned long long)n);
	if (f->n_tensors > (c.size - c.pos) / 32)
		return pf_errf(err, -EINVAL, "%s: tensor count %llu cannot fit in the file",
			       f->path, (unsigned long long)f->n_tensors);
	f->kv = calloc(n + 1, sizeof(*f->kv));  /* +1: see gguf_close() */
	f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof(*f->tensors));
	if (!f->kv || !f->tensors)
		return pf_errf(err, -ENOMEM, "%s: out of memory", f->path);
	for (f->n_kv = 0; f->n_kv < n; f->n_kv++) {
		struct gguf_kv *kv = &f->kv[f->n_kv];
		if ((r = read_kv(&c, kv)))
			return r;
	}
	const struct gguf_str *dup;
	if (find_duplicate(&f->kv[0].key, f->n_kv, sizeof(*f->kv), &dup))
		return pf_errf(err, -ENOMEM, "%s: out of memory checking the metadata keys", f->path);
	if (dup) {
		char key[96];
		return pf_errf(err, -EINVAL, "%s: duplicate metadata key '%s'", f->path,
			       gguf_str_copy(*dup, key, sizeof(key)));
	}
	f->alignment = GGUF_DEFAULT_ALIGNMENT;
	const struct gguf_kv *al = gguf_find(f, "general.alignment");
	if (al) {
		if (al->type != GGUF_TYPE_UINT32 || al->v.u == 0 || (al->v.u & (al->v.u - 1)))
			return pf_errf(err, -EINVAL, "%s: general.alignment must be a power-of-two uint32",
				       f->path);
		f->alignment = al->v.u;
	}
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		if ((r = read_tensor_info(&c, &f->tensors[i])))
			return r;
	}
	if (find_duplicate(&f->tensors[0].name, f->n_tensors, sizeof(*f->tensors), &dup))
		return pf_errf(err, -ENOMEM, "%s: out of memory checking the tensor names", f->path);
	if (dup) {
		char name[96];
		return pf_errf(err, -EINVAL, "%s: duplicate tensor name '%s'", f->path,
			       gguf_str_copy(*dup, name, sizeof(name)));
	}
	f->data_offset = (c.pos + f->alignment - 1) / f->alignment * f->alignment;
	return check_tensor_layout(f, err);
}

static int open_common(struct gguf_file **out, struct gguf_file *f, struct pf_err *err)
{
	int r = parse(f, err);
	if (r) {
		gguf_close(f);
		*out = NULL;
		return r;
	}
	*out = f;
	return 0;
}

int gguf_open_buffer(struct gguf_file **out, const void *buf, size_t size, const char *name,
		     struct pf_err *err)
{
	struct gguf_file *f = calloc(1, sizeof(*f));
	*out = NULL;
	if (!f)
		return pf_errf(err, -ENOMEM, "%s: out of memory", name);
	f->base = buf;
	f->size = size;
	snprintf(f->path, sizeof(f->path), "%s", name);
	return open_common(out, f, err);
}

int gguf_open(struct gguf_file **out, const char *path, struct pf_err *err)
{
	*out = NULL;
	struct pf_mapped map;
	int r = pf_map_file(&map, path, err);
	if (r)
		return r;
	if (map.size == 0)
		return pf_errf(err, -EINVAL, "%s: empty file", path);
	struct gguf_file *f = calloc(1, sizeof(*f));
	if (!f) {
		pf_unmap_file(&map);
		return pf_errf(err, -ENOMEM, "%s: out of memory", path);
	}
	f->base = map.data;
	f->size = map.size;
	f->owns_map = true;
	snprintf(f->path, sizeof(f->path), "%s", path);
	return open_common(out, f, err);
}

void gguf_close(struct gguf_file *f)
{
	if (!f)
		return;
	if (f->kv)
		for (uint64_t i = 0; i < f->n_kv; i++)
			if (f->kv[i].type == GGUF_TYPE_ARRAY)
				free(f->kv[i].v.arr.strs);
	/* parse() may fail half-way through a key: the failing entry is at
	 * index n_kv and may already own its string table. */
	if (f->kv && f->kv[f->n_kv].type == GGUF_TYPE_ARRAY)
		free(f->kv[f->n_kv].v.arr.strs);
	free(f->kv);
	free(f->tensors);
	if (f->owns_map) {
		struct pf_mapped map = { f->path, f->base, f->size };
		pf_unmap_file(&map);
	}
	free(f);
}

const struct gguf_kv *gguf_find(const struct gguf_file *f, const char *key)
{
	for (uint64_t i = 0; i < f->n_kv; i++)
		if (gguf_str_eq(f->kv[i].key, key))
			return &f->kv[i];
	return NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name)
{
	for (uint64_t i = 0; i < f->n_tensors; i++)
		if (gguf_str_eq(f->tensors[i].name, name))
			return &f->tensors[i];
	return NULL;
}

static bool is_unsigned(enum gguf_type t)
{
	return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 ||
	       t == GGUF_TYPE_UINT64;
}

static bool is_signed(enum gguf_type t)
{
	return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
	       t == GGUF_TYPE_INT64;
}

bool gguf_get_i64(const struct gguf_file *f, const char *key, int64_t *out)
{
	const struct gguf_kv *kv = gguf_find(f, key);
	if (!kv)
		return false;
	if (is_signed(kv->type)) {
		*out = kv->v.i;
		return true;
	}
	if (is_unsigned(kv->type) && kv->v.u <= INT64_MAX) {
		*out = (int64_t)kv->v.u;
		return true;
	}
	return false;
}

bool gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out)
{
	int64_t v;
	const struct gguf_kv *kv = gguf_find(f, key);
	if (kv && is_unsigned(kv->type)) {
		*out = kv->v.u;
		return true;
	}
	if (!gguf_get_i64(f, key, &v) || v < 0)
		return false;
	*out = (uint64_t)v;
	return true;
}

bool gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out)
{
	uint64_t v;
	if (!gguf_get_u64(f, key, &v) || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

bool gguf_get_f32(const struct gguf_file *f, const char *key, float *out)
{
	const struct gguf_kv *kv = gguf_find(f, key);
	int64_t v;
	if (kv && (kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64)) {
		*out = (float)kv->v.f;
		return true;
	}
	if (!gguf_get_i64(f, key, &v))
		return false;
	*out = (float)v;
	return true;
}

bool gguf_get_bool(const struct gguf_file *f, const char *key, bool *out)
{
	const struct gguf_kv *kv = gguf_find(f, key);
	if (!kv || kv->type != GGUF_TYPE_BOOL)
		return false;
	*out = kv->v.u != 0;
	return true;
}

bool gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out)
{
	const struct gguf_kv *kv = gguf_find(f, key);
	if (!kv || kv->type != GGUF_TYPE_STRING)
		return false;
	*out = kv->v.str;
	return true;
}

const struct gguf_array *gguf_get_arr(const struct gguf_file *f, const char *key)
{
	const struct gguf_kv *kv = gguf_find(f, key);
	return kv && kv->type == GGUF_TYPE_ARRAY ? &kv->v.arr : NULL;
}

int64_t gguf_arr_int(const struct gguf_array *a, uint64_t i)
{
	unsigned w = gguf_types[a->type].size;
	uint64_t raw = load_le(a->data + i * w, w);
	if (is_signed(a->type)) {
		unsigned shift = 64 - 8 * w;
		return (int64_t)(raw << shift) >> shift;
	}
	if (a->type == GGUF_TYPE_FLOAT32 || a->type == GGUF_TYPE_FLOAT64) {
		double d = gguf_arr_float(a, i);
		return d != d ? 0 : d >= 0x1p63 ? INT64_MAX : d < -0x1p63 ? INT64_MIN : (int64_t)d;
	}
	return (int64_t)raw;
}

double gguf_arr_float(const struct gguf_array *a, uint64_t i)
{
	if (a->type == GGUF_TYPE_FLOAT32) {
		uint32_t bits = (uint32_t)load_le(a->data + i * 4, 4);
		float f;
		memcpy(&f, &bits, 4);
		return f;
	}
	if (a->type == GGUF_TYPE_FLOAT64) {
		uint64_t bits = load_le(a->data + i * 8, 8);
		double d;
		memcpy(&d, &bits, 8);
		return d;
	}
	return (double)gguf_arr_int(a, i);
}
