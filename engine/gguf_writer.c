#include "gguf_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ggml stores tensor names in a fixed 64-byte field. */
#define MAX_TENSOR_NAME 63

/* Fixed value sizes; 0 for the variable-size types. */
static const uint8_t type_size[GGUF_TYPE_COUNT] = {
	[GGUF_TYPE_UINT8] = 1,  [GGUF_TYPE_INT8] = 1,   [GGUF_TYPE_UINT16] = 2,
	[GGUF_TYPE_INT16] = 2,  [GGUF_TYPE_UINT32] = 4, [GGUF_TYPE_INT32] = 4,
	[GGUF_TYPE_FLOAT32] = 4, [GGUF_TYPE_BOOL] = 1,  [GGUF_TYPE_UINT64] = 8,
	[GGUF_TYPE_INT64] = 8,  [GGUF_TYPE_FLOAT64] = 8,
};

_Static_assert(sizeof(bool) == 1, "bool arrays are copied as bytes");

/* A growable byte string; allocation failure is sticky so serializers can
 * append without checking every call. */
struct bytes {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

struct wkv {
	char *key;
	size_t key_len;
	struct bytes blob;  /* key, type and value, exactly as in the file */
};

struct wtensor {
	char *name;
	uint32_t n_dims;
	uint64_t ne[GGUF_MAX_DIMS];
	uint32_t type;
	uint64_t offset;  /* in the data section */
	uint64_t nbytes;
};

struct gguf_writer {
	struct wkv *kv;
	size_t n_kv, cap_kv;
	struct wtensor *t;
	size_t n_t, cap_t;
	int build_rc;  /* first failure of a setter or add_tensor */
	struct pf_err build_err;
	uint64_t alignment;
	bool powerinfer;    /* PWRI magic */
	char *path, *tmp;
	int fd;             /* >= 0 from write_header until finish or failure */
	bool header_done;   /* never cleared: metadata is frozen once written */
	bool failed;
	uint64_t pos;       /* bytes written so far, for error messages */
	size_t cur;         /* tensor being filled */
	uint64_t cur_done;  /* bytes of it written */
};

static void put(struct bytes *b, const void *p, size_t n)
{
	if (b->oom)
		return;
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap - b->len < n) {
			if (cap > SIZE_MAX / 2) {
				b->oom = true;
				return;
			}
			cap *= 2;
		}
		uint8_t *q = realloc(b->p, cap);
		if (!q) {
			b->oom = true;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void put_le(struct bytes *b, uint64_t v, unsigned width)
{
	uint8_t le[8];
	for (unsigned i = 0; i < width; i++)
		le[i] = (uint8_t)(v >> (8 * i));
	put(b, le, width);
}

static void put_str(struct bytes *b, const char *s, size_t len)
{
	put_le(b, len, 8);
	put(b, s, len);
}

static uint64_t load_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static int fail(struct gguf_writer *w, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct gguf_writer *w, int code, const char *fmt, ...)
{
	if (!w->build_rc) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(w->build_err.msg, sizeof(w->build_err.msg), fmt, ap);
		va_end(ap);
		w->build_rc = code;
	}
	return code;
}

struct gguf_writer *gguf_writer_new(void)
{
	struct gguf_writer *w = calloc(1, sizeof(*w));
	if (w)
		w->fd = -1;
	return w;
}

/* Closes and removes the temporary file after a failure, so no half-written
 * model is left behind. */
static void discard_file(struct gguf_writer *w)
{
	if (w->fd >= 0) {
		close(w->fd);
		w->fd = -1;
		unlink(w->tmp);
	}
	w->failed = true;
}

void gguf_writer_free(struct gguf_writer *w)
{
	if (!w)
		return;
	discard_file(w);
	for (size_t i = 0; i < w->n_kv; i++) {
		free(w->kv[i].key);
		free(w->kv[i].blob.p);
	}
	for (size_t i = 0; i < w->n_t; i++)
		free(w->t[i].name);
	free(w->kv);
	free(w->t);
	free(w->path);
	free(w->tmp);
	free(w);
}

static struct wkv *find_kv(struct gguf_writer *w, const char *key, size_t len)
{
	for (size_t i = 0; i < w->n_kv; i++)
		if (w->kv[i].key_len == len && memcmp(w->kv[i].key, key, len) == 0)
			return &w->kv[i];
	return NULL;
}

/* Starts the serialized form of a key/value; false when the writer no
 * longer accepts metadata. */
static bool begin_kv(struct gguf_writer *w, struct bytes *b, const char *key, size_t key_len,
		     enum gguf_type t)
{
	memset(b, 0, sizeof(*b));
	if (!key) {
		fail(w, -EINVAL, "metadata key is NULL");
		return false;
	}
	if (w->header_done) {
		fail(w, -EINVAL, "key '%.*s' set after the header was written", (int)key_len, key);
		return false;
	}
	put_str(b, key, key_len);
	put_le(b, t, 4);
	return true;
}

/* Takes ownership of b and stores it under key, replacing an older value. */
static int commit_kv(struct gguf_writer *w, const char *key, size_t key_len, struct bytes *b)
{
	if (b->oom) {
		free(b->p);
		return fail(w, -ENOMEM, "key '%.*s': out of memory", (int)key_len, key);
	}
	struct wkv *kv = find_kv(w, key, key_len);
	if (kv) {
		free(kv->blob.p);
		kv->blob = *b;
		return 0;
	}
	if (w->n_kv == w->cap_kv) {
		size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
		struct wkv *p = realloc(w->kv, cap * sizeof(*p));
		if (!p) {
			free(b->p);
			return fail(w, -ENOMEM, "key '%.*s': out of memory", (int)key_len, key);
		}
		w->kv = p;
		w->cap_kv = cap;
	}
	char *copy = malloc(key_len + 1);
	if (!copy) {
		free(b->p);
		return fail(w, -ENOMEM, "key '%.*s': out of memory", (int)key_len, key);
	}
	memcpy(copy, key, key_len);
	copy[key_len] = 0;
	w->kv[w->n_kv++] = (struct wkv){ copy, key_len, *b };
	return 0;
}

static int set_scalar(struct gguf_writer *w, const char *key, enum gguf_type t, uint64_t bits)
{
	struct bytes b;
	if (!begin_kv(w, &b, key, key ? strlen(key) : 0, t))
		return w->build_rc;
	put_le(&b, bits, type_size[t]);
	return commit_kv(w, key, strlen(key), &b);
}

int gguf_writer_set_u8(struct gguf_writer *w, const char *key, uint8_t v)
{
	return set_scalar(w, key, GGUF_TYPE_UINT8, v);
}

int gguf_writer_set_i8(struct gguf_writer *w, const char *key, int8_t v)
{
	return set_scalar(w, key, GGUF_TYPE_INT8, (uint64_t)(int64_t)v);
}

int gguf_writer_set_u16(struct gguf_writer *w, const char *key, uint16_t v)
{
	return set_scalar(w, key, GGUF_TYPE_UINT16, v);
}

int gguf_writer_set_i16(struct gguf_writer *w, const char *key, int16_t v)
{
	return set_scalar(w, key, GGUF_TYPE_INT16, (uint64_t)(int64_t)v);
}

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
	return set_scalar(w, key, GGUF_TYPE_UINT32, v);
}

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v)
{
	return set_scalar(w, key, GGUF_TYPE_INT32, (uint64_t)(int64_t)v);
}

int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
	return set_scalar(w, key, GGUF_TYPE_UINT64, v);
}

int gguf_writer_set_i64(struct gguf_writer *w, const char *key, int64_t v)
{
	return set_scalar(w, key, GGUF_TYPE_INT64, (uint64_t)v);
}

int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v)
{
	uint32_t bits;
	memcpy(&bits, &v, 4);
	return set_scalar(w, key, GGUF_TYPE_FLOAT32, bits);
}

int gguf_writer_set_f64(struct gguf_writer *w, const char *key, double v)
{
	uint64_t bits;
	memcpy(&bits, &v, 8);
	return set_scalar(w, key, GGUF_TYPE_FLOAT64, bits);
}

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v)
{
	return set_scalar(w, key, GGUF_TYPE_BOOL, v);
}

int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *s)
{
	struct bytes b;
	if (!begin_kv(w, &b, key, key ? strlen(key) : 0, GGUF_TYPE_STRING))
		return w->build_rc;
	if (!s) {
		free(b.p);
		return fail(w, -EINVAL, "key '%s': string value is NULL", key);
	}
	put_str(&b, s, strlen(s));
	return commit_kv(w, key, strlen(key), &b);
}

int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_type elem,
			const void *data, uint64_t n)
{
	struct bytes b;
	if (!begin_kv(w, &b, key, key ? strlen(key) : 0, GGUF_TYPE_ARRAY))
		return w->build_rc;
	unsigned width = (unsigned)elem < GGUF_TYPE_COUNT ? type_size[elem] : 0;
	if (!width) {
		free(b.p);
		return fail(w, -EINVAL, "key '%s': element type %s is not a number", key,
			    gguf_type_name(elem));
	}
	if (n && !data) {
		free(b.p);
		return fail(w, -EINVAL, "key '%s': array data is NULL", key);
	}
	put_le(&b, elem, 4);
	put_le(&b, n, 8);
	const uint8_t *p = data;
	for (uint64_t i = 0; i < n && !b.oom; i++, p += width) {
		uint64_t v;
		uint8_t u8;
		uint16_t u16;
		uint32_t u32;
		switch (width) {
		case 1: memcpy(&u8, p, 1); v = u8; break;
		case 2: memcpy(&u16, p, 2); v = u16; break;
		case 4: memcpy(&u32, p, 4); v = u32; break;
		default: memcpy(&v, p, 8); break;
		}
		put_le(&b, v, width);
	}
	return commit_kv(w, key, strlen(key), &b);
}

int gguf_writer_set_arr_f32(struct gguf_writer *w, const char *key, const float *v, uint64_t n)
{
	return gguf_writer_set_arr(w, key, GGUF_TYPE_FLOAT32, v, n);
}

int gguf_writer_set_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, uint64_t n)
{
	return gguf_writer_set_arr(w, key, GGUF_TYPE_INT32, v, n);
}

int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *strs,
			    uint64_t n)
{
	struct bytes b;
	if (!begin_kv(w, &b, key, key ? strlen(key) : 0, GGUF_TYPE_ARRAY))
		return w->build_rc;
	put_le(&b, GGUF_TYPE_STRING, 4);
	put_le(&b, n, 8);
	for (uint64_t i = 0; i < n && !b.oom; i++) {
		if (!strs || !strs[i]) {
			free(b.p);
			return fail(w, -EINVAL, "key '%s': string %llu is NULL", key,
				    (unsigned long long)i);
		}
		put_str(&b, strs[i], strlen(strs[i]));
	}
	return commit_kv(w, key, strlen(key), &b);
}

/* Size of a serialized value. Only called on data gguf_open() validated, so
 * every length it meets lies inside the mapping. */
static uint64_t value_size(const uint8_t *p, enum gguf_type t)
{
	if (t == GGUF_TYPE_STRING)
		return 8 + load_le(p, 8);
	if (t != GGUF_TYPE_ARRAY)
		return type_size[t];
	enum gguf_type et = (enum gguf_type)load_le(p, 4);
	uint64_t n = load_le(p + 4, 8);
	uint64_t size = 12;
	if (type_size[et])
		return size + n * type_size[et];
	for (uint64_t i = 0; i < n; i++)
		size += value_size(p + size, et);
	return size;
}

int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_file *src, const char *prefix)
{
	size_t plen = prefix ? strlen(prefix) : 0;
	int copied = 0;
	for (uint64_t i = 0; i < src->n_kv; i++) {
		const struct gguf_kv *kv = &src->kv[i];
		if (kv->key.len < plen || (plen && memcmp(kv->key.ptr, prefix, plen) != 0))
			continue;
		struct bytes b;
		if (!begin_kv(w, &b, kv->key.ptr, kv->key.len, kv->type))
			return w->build_rc;
		/* Copying the value's bytes verbatim keeps every type, nested
		 * arrays included, without a per-type path. */
		const uint8_t *value = src->base + kv->offset + 8 + kv->key.len + 4;
		uint64_t size = value_size(value, kv->type);
		put(&b, value, size);
		int r = commit_kv(w, kv->key.ptr, kv->key.len, &b);
		if (r)
			return r;
		copied++;
	}
	return copied;
}

static struct wtensor *find_tensor(struct gguf_writer *w, const char *name)
{
	for (size_t i = 0; i < w->n_t; i++)
		if (strcmp(w->t[i].name, name) == 0)
			return &w->t[i];
	return NULL;
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, uint32_t n_dims,
			   const uint64_t *ne, enum pf_dtype type)
{
	if (!name || !*name || strlen(name) > MAX_TENSOR_NAME)
		return fail(w, -EINVAL, "tensor name '%s' is empty or longer than %d bytes",
			    name ? name : "(null)", MAX_TENSOR_NAME);
	if (w->header_done)
		return fail(w, -EINVAL, "tensor '%s' added after the header was written", name);
	if (find_tensor(w, name))
		return fail(w, -EINVAL, "tensor '%s' added twice", name);
	if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne)
		return fail(w, -EINVAL, "tensor '%s' has %u dimensions, expected 1..%d", name, n_dims,
			    GGUF_MAX_DIMS);
	const struct pf_dtype_info *ti = pf_dtype_info(type);
	if (!ti)
		return fail(w, -EINVAL, "tensor '%s' has unknown type %d", name, (int)type);
	if (ti->internal)
		return fail(w, -EINVAL, "tensor '%s' has type %s, which exists only in memory", name,
			    ti->name);
	struct wtensor t = { .n_dims = n_dims, .type = type };
	uint64_t nelem = 1;
	for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
		t.ne[d] = d < n_dims ? ne[d] : 1;
		if (t.ne[d] == 0 || t.ne[d] > INT64_MAX / nelem)
			return fail(w, -EINVAL, "tensor '%s' dimension %u is %llu: zero or overflowing",
				    name, d, (unsigned long long)t.ne[d]);
		nelem *= t.ne[d];
	}
	if (t.ne[0] % ti->block)
		return fail(w, -EINVAL, "tensor '%s' row of %llu is not a multiple of the %s block size %u",
			    name, (unsigned long long)t.ne[0], ti->name, ti->block);
	if (!pf_dtype_bytes(type, nelem, &t.nbytes))
		return fail(w, -EINVAL, "tensor '%s' size overflows", name);
	if (w->n_t == w->cap_t) {
		size_t cap = w->cap_t ? 2 * w->cap_t : 16;
		struct wtensor *p = realloc(w->t, cap * sizeof(*p));
		if (!p)
			return fail(w, -ENOMEM, "tensor '%s': out of memory", name);
		w->t = p;
		w->cap_t = cap;
	}
	if (!(t.name = strdup(name)))
		return fail(w, -ENOMEM, "tensor '%s': out of memory", name);
	w->t[w->n_t] = t;
	return (int)w->n_t++;
}

uint64_t gguf_writer_tensor_nbytes(const struct gguf_writer *w, int idx)
{
	return idx >= 0 && (size_t)idx < w->n_t ? w->t[idx].nbytes : 0;
}

static uint64_t pad_to(uint64_t n, uint64_t align)
{
	return (align - n % align) % align;
}

static int write_all(struct gguf_writer *w, const void *data, size_t n, struct pf_err *err)
{
	const uint8_t *p = data;
	while (n) {
		ssize_t k = write(w->fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			int e = k < 0 ? errno : EIO;
			discard_file(w);
			return pf_errf(err, -e, "%s: write at offset %llu failed: %s", w->tmp,
				       (unsigned long long)w->pos, strerror(e));
		}
		p += k;
		n -= (size_t)k;
		w->pos += (uint64_t)k;
	}
	return 0;
}

static int write_zeros(struct gguf_writer *w, uint64_t n, struct pf_err *err)
{
	static const uint8_t zeros[256];
	while (n) {
		size_t k = n < sizeof(zeros) ? (size_t)n : sizeof(zeros);
		int r = write_all(w, zeros, k, err);
		if (r)
			return r;
		n -= k;
	}
	return 0;
}

/* Reads general.alignment back from its serialized value, if it was set. */
static int find_alignment(struct gguf_writer *w, struct pf_err *err)
{
	static const char key[] = "general.alignment";
	struct wkv *kv = find_kv(w, key, sizeof(key) - 1);
	w->alignment = GGUF_DEFAULT_ALIGNMENT;
	if (!kv)
		return 0;
	const uint8_t *p = kv->blob.p + 8 + kv->key_len;
	uint64_t a = load_le(p + 4, 4);
	if (load_le(p, 4) != GGUF_TYPE_UINT32 || a == 0 || (a & (a - 1)))
		return pf_errf(err, -EINVAL, "%s: general.alignment must be a power-of-two uint32",
			       w->path);
	w->alignment = a;
	return 0;
}

static int header_bytes(struct gguf_writer *w, struct bytes *h, struct pf_err *err)
{
	uint64_t off = 0;
	for (size_t i = 0; i < w->n_t; i++) {
		struct wtensor *t = &w->t[i];
		uint64_t padded = t->nbytes + pad_to(t->nbytes, w->alignment);
		if (padded < t->nbytes || off > UINT64_MAX - padded)
			return pf_errf(err, -EFBIG, "%s: tensor data exceeds 2^64 bytes", w->path);
		t->offset = off;
		off += padded;
	}
	put(h, w->powerinfer ? GGUF_MAGIC_POWERINFER : GGUF_MAGIC, 4);
	put_le(h, 3, 4);
	put_le(h, w->n_t, 8);
	put_le(h, w->n_kv, 8);
	for (size_t i = 0; i < w->n_kv; i++)
		put(h, w->kv[i].blob.p, w->kv[i].blob.len);
	for (size_t i = 0; i < w->n_t; i++) {
		const struct wtensor *t = &w->t[i];
		put_str(h, t->name, strlen(t->name));
		put_le(h, t->n_dims, 4);
		for (uint32_t d = 0; d < t->n_dims; d++)
			put_le(h, t->ne[d], 8);
		put_le(h, t->type, 4);
		put_le(h, t->offset, 8);
	}
	static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT];
	for (uint64_t pad = pad_to(h->len, w->alignment); pad && !h->oom;) {
		size_t k = pad < sizeof(zeros) ? (size_t)pad : sizeof(zeros);
		put(h, zeros, k);
		pad -= k;
	}
	if (h->oom)
		return pf_errf(err, -ENOMEM, "%s: out of memory for the header", w->path);
	return 0;
}

void gguf_writer_set_powerinfer(struct gguf_writer *w)
{
	w->powerinfer = true;
}

int gguf_writer_write_header(struct gguf_writer *w, const char *path, struct pf_err *err)
{
	if (w->build_rc)
		return pf_errf(err, w->build_rc, "%s: %s", path, w->build_err.msg);
	if (w->header_done)
		return pf_errf(err, -EINVAL, "%s: header already written", path);
	w->header_done = true;
	w->failed = true;  /* until the header is on disk */
	/* The file is written beside path and renamed over it at the end,
	 * which would replace a device or a FIFO (-o /dev/null) with a
	 * regular file. */
	struct stat st;
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
		return pf_errf(err, -EINVAL, "%s exists and is not a regular file; it will not be replaced", path);
	size_t plen = strlen(path);
	w->path = strdup(path);
	w->tmp = malloc(plen + sizeof(".tmp"));
	if (!w->path || !w->tmp)
		return pf_errf(err, -ENOMEM, "%s: out of memory", path);
	memcpy(w->tmp, path, plen);
	memcpy(w->tmp + plen, ".tmp", sizeof(".tmp"));
	struct bytes h = { 0 };
	int r = find_alignment(w, err);
	if (!r)
		r = header_bytes(w, &h, err);
	if (r) {
		free(h.p);
		return r;
	}
	w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		int e = errno;
		free(h.p);
		return pf_errf(err, -e, "%s: cannot create: %s", w->tmp, strerror(e));
	}
	w->failed = false;
	r = write_all(w, h.p, h.len, err);
	free(h.p);
	return r;
}

static int check_writable(struct gguf_writer *w, struct pf_err *err)
{
	if (!w->header_done)
		return pf_errf(err, -EINVAL, "gguf writer: tensor data before the header");
	if (w->failed || w->fd < 0)
		return pf_errf(err, -EIO, "%s: writer already %s", w->path,
			       w->failed ? "failed" : "finished");
	return 0;
}

int gguf_writer_write_data(struct gguf_writer *w, const void *data, size_t n, struct pf_err *err)
{
	int r = check_writable(w, err);
	if (r)
		return r;
	if (w->cur == w->n_t) {
		if (!n)
			return 0;
		discard_file(w);
		return pf_errf(err, -EINVAL, "%s: %zu bytes of data after the last tensor", w->path, n);
	}
	const struct wtensor *t = &w->t[w->cur];
	if (n > t->nbytes - w->cur_done) {
		discard_file(w);
		return pf_errf(err, -EINVAL, "%s: %zu bytes for tensor '%s' but only %llu of its %llu remain",
			       w->path, n, t->name, (unsigned long long)(t->nbytes - w->cur_done),
			       (unsigned long long)t->nbytes);
	}
	if ((r = write_all(w, data, n, err)))
		return r;
	w->cur_done += n;
	if (w->cur_done == t->nbytes) {
		if ((r = write_zeros(w, pad_to(t->nbytes, w->alignment), err)))
			return r;
		w->cur++;
		w->cur_done = 0;
	}
	return 0;
}

int gguf_writer_write_tensor_data(struct gguf_writer *w, int idx, const void *data,
				  uint64_t nbytes, struct pf_err *err)
{
	int r = check_writable(w, err);
	if (r)
		return r;
	if (idx < 0 || (size_t)idx != w->cur || w->cur_done) {
		discard_file(w);
		return pf_errf(err, -EINVAL, "%s: tensor %d written out of order (next is %zu of %zu)",
			       w->path, idx, w->cur, w->n_t);
	}
	if (nbytes != w->t[idx].nbytes || nbytes > SIZE_MAX) {
		discard_file(w);
		return pf_errf(err, -EINVAL, "%s: tensor '%s' takes %llu bytes, %llu given", w->path,
			       w->t[idx].name, (unsigned long long)w->t[idx].nbytes,
			       (unsigned long long)nbytes);
	}
	return gguf_writer_write_data(w, data, (size_t)nbytes, err);
}

int gguf_writer_finish(struct gguf_writer *w, struct pf_err *err)
{
	int r = check_writable(w, err);
	if (r)
		return r;
	if (w->cur < w->n_t) {
		const struct wtensor *t = &w->t[w->cur];
		discard_file(w);
		return pf_errf(err, -EINVAL, "%s: tensor %zu '%s' got %llu of its %llu bytes", w->path,
			       w->cur, t->name, (unsigned long long)w->cur_done,
			       (unsigned long long)t->nbytes);
	}
	/* Sync before the rename so a crash leaves the old file or the whole
	 * new one, never a truncated model under the final name. */
	if (fsync(w->fd) < 0) {
		int e = errno;
		discard_file(w);
		return pf_errf(err, -e, "%s: fsync: %s", w->tmp, strerror(e));
	}
	r = close(w->fd);
	w->fd = -1;
	if (r < 0 || rename(w->tmp, w->path) < 0) {
		int e = errno;
		unlink(w->tmp);
		w->failed = true;
		return pf_errf(err, -e, "%s: %s: %s", w->path, r < 0 ? "close" : "rename",
			       strerror(e));
	}
	return 0;
}
