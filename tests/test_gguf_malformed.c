/* The GGUF reader against damaged input, and the GGUF writer.
 *
 * A small valid file is written with gguf_writer; every malformation starts
 * from a copy of it with one field changed, opened from an exactly-sized heap
 * buffer so that ASan catches any read past the end. A malformed file must
 * be refused with a message; randomly damaged ones must never crash. */
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <unistd.h>

#include "dtype.h"
#include "gguf.h"
#include "gguf_writer.h"

static char tmpdir[64];
typedef char path_buf[128];

static uint8_t *valid;  /* the sample file, read back */
static size_t valid_len;

static char *tmp_path(path_buf buf, const char *name)
{
	snprintf(buf, sizeof(path_buf), "%s/%s", tmpdir, name);
	return buf;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static void store_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- the sample file ---- */

static const char *const arr_str[] = { "a", "bc", "", "d\xc3\xa9" "f" };
static const float arr_f32[] = { 1.5f, -2.0f, 0.0f };
static const int32_t arr_i32[] = { -1, 0, INT32_MAX };
static const uint8_t arr_u8[] = { 0, 1, 255, 7, 9 };
static const uint64_t arr_u64[] = { UINT64_MAX, 0 };
static const bool arr_bool[] = { true, false, true };
static const double arr_f64[] = { 1e300, -0.5 };

#define N_SAMPLE_KV 23

/* Tensor names share a length so one can be overwritten with another. */
static const struct {
	const char *name;
	uint32_t n_dims;
	uint64_t ne[2];
	enum pf_dtype type;
	uint64_t nbytes;
} sample_t[3] = {
	{ "tensor.a", 2, { 8, 4 }, PF_F32, 128 },
	{ "tensor.b", 2, { 64, 2 }, PF_Q4_0, 72 },
	{ "tensor.c", 1, { 5, 1 }, PF_F16, 10 },
};

static uint8_t sample_byte(int t, uint64_t i)
{
	return (uint8_t)(31 * t + 7 * i + 1);
}

static void sample_data(int t, uint8_t *out)
{
	for (uint64_t i = 0; i < sample_t[t].nbytes; i++)
		out[i] = sample_byte(t, i);
}

static void set_sample_kv(struct gguf_writer *w, uint32_t alignment)
{
	gguf_writer_set_str(w, "general.architecture", "test");
	gguf_writer_set_u32(w, "general.alignment", alignment);
	gguf_writer_set_u8(w, "t.u8", 200);
	gguf_writer_set_i8(w, "t.i8", -5);
	gguf_writer_set_u16(w, "t.u16", 60000);
	gguf_writer_set_i16(w, "t.i16", -3000);
	gguf_writer_set_u32(w, "t.u32", 4000000000u);
	gguf_writer_set_i32(w, "t.i32", -2000000000);
	gguf_writer_set_u64(w, "t.u64", (1ull << 63) + 5);
	gguf_writer_set_i64(w, "t.i64", -(1ll << 62));
	gguf_writer_set_f32(w, "t.f32", 1.5f);
	gguf_writer_set_f64(w, "t.f64", -2.25);
	gguf_writer_set_bool(w, "t.bool", true);
	gguf_writer_set_str(w, "t.str", "h\xc3\xa9llo");
	gguf_writer_set_arr_str(w, "t.arr_str", arr_str, 4);
	gguf_writer_set_arr_f32(w, "t.arr_f32", arr_f32, 3);
	gguf_writer_set_arr_i32(w, "t.arr_i32", arr_i32, 3);
	gguf_writer_set_arr(w, "t.arr_u8", GGUF_TYPE_UINT8, arr_u8, 5);
	gguf_writer_set_arr(w, "t.arr_u64", GGUF_TYPE_UINT64, arr_u64, 2);
	gguf_writer_set_arr(w, "t.arr_bool", GGUF_TYPE_BOOL, arr_bool, 3);
	gguf_writer_set_arr(w, "t.arr_f64", GGUF_TYPE_FLOAT64, arr_f64, 2);
	gguf_writer_set_arr(w, "dup.aaaa", GGUF_TYPE_INT16, NULL, 0);
	gguf_writer_set_u32(w, "dup.bbbb", 2);
}

/* Writes the sample; chunk > 0 streams the data in pieces of that size. */
static void write_sample(const char *path, uint32_t alignment, size_t chunk)
{
	struct gguf_writer *w = gguf_writer_new();
	struct pf_err err = { { 0 } };
	assert_non_null(w);
	set_sample_kv(w, alignment);
	for (int t = 0; t < 3; t++)
		assert_int_equal(gguf_writer_add_tensor(w, sample_t[t].name, sample_t[t].n_dims,
							sample_t[t].ne, sample_t[t].type), t);
	if (gguf_writer_write_header(w, path, &err))
		fail_msg("%s", err.msg);
	for (int t = 0; t < 3; t++) {
		uint8_t data[128];
		sample_data(t, data);
		assert_int_equal(gguf_writer_tensor_nbytes(w, t), sample_t[t].nbytes);
		int r = 0;
		if (!chunk)
			r = gguf_writer_write_tensor_data(w, t, data, sample_t[t].nbytes, &err);
		for (size_t i = 0; chunk && !r && i < sample_t[t].nbytes; i += chunk) {
			size_t n = sample_t[t].nbytes - i < chunk ? sample_t[t].nbytes - i : chunk;
			r = gguf_writer_write_data(w, data + i, n, &err);
		}
		if (r)
			fail_msg("%s", err.msg);
	}
	if (gguf_writer_finish(w, &err))
		fail_msg("%s", err.msg);
	gguf_writer_free(w);
}

static void check_sample(const struct gguf_file *f, uint32_t alignment)
{
	uint64_t u;
	int64_t i;
	float x;
	bool b;
	struct gguf_str s;
	assert_int_equal(f->version, 3);
	assert_int_equal(f->n_kv, N_SAMPLE_KV);
	assert_int_equal(f->alignment, alignment);
	assert_true(gguf_get_str(f, "general.architecture", &s) && gguf_str_eq(s, "test"));
	static const struct {
		const char *key;
		enum gguf_type type;
		int64_t v;
	} ints[] = {
		{ "t.u8", GGUF_TYPE_UINT8, 200 },          { "t.i8", GGUF_TYPE_INT8, -5 },
		{ "t.u16", GGUF_TYPE_UINT16, 60000 },      { "t.i16", GGUF_TYPE_INT16, -3000 },
		{ "t.u32", GGUF_TYPE_UINT32, 4000000000 }, { "t.i32", GGUF_TYPE_INT32, -2000000000 },
		{ "t.i64", GGUF_TYPE_INT64, -(1ll << 62) }, { "dup.bbbb", GGUF_TYPE_UINT32, 2 },
	};
	for (size_t k = 0; k < sizeof(ints) / sizeof(ints[0]); k++) {
		assert_int_equal(gguf_find(f, ints[k].key)->type, ints[k].type);
		assert_true(gguf_get_i64(f, ints[k].key, &i));
		assert_int_equal(i, ints[k].v);
	}
	assert_true(gguf_get_u64(f, "t.u64", &u));
	assert_int_equal(u, (1ull << 63) + 5);
	assert_true(gguf_get_f32(f, "t.f32", &x) && x == 1.5f);
	assert_true(gguf_find(f, "t.f64")->type == GGUF_TYPE_FLOAT64 && gguf_find(f, "t.f64")->v.f == -2.25);
	assert_true(gguf_get_bool(f, "t.bool", &b) && b);
	assert_true(gguf_get_str(f, "t.str", &s) && gguf_str_eq(s, "h\xc3\xa9llo"));
	const struct gguf_array *a = gguf_get_arr(f, "t.arr_str");
	assert_true(a && a->type == GGUF_TYPE_STRING && a->n == 4);
	for (int k = 0; k < 4; k++)
		assert_true(gguf_str_eq(a->strs[k], arr_str[k]));
	a = gguf_get_arr(f, "t.arr_f32");
	assert_true(a && a->type == GGUF_TYPE_FLOAT32 && a->n == 3);
	for (int k = 0; k < 3; k++)
		assert_true(gguf_arr_float(a, k) == arr_f32[k]);
	a = gguf_get_arr(f, "t.arr_i32");
	assert_true(a && a->type == GGUF_TYPE_INT32 && a->n == 3);
	for (int k = 0; k < 3; k++)
		assert_int_equal(gguf_arr_int(a, k), arr_i32[k]);
	a = gguf_get_arr(f, "t.arr_u8");
	assert_true(a && a->type == GGUF_TYPE_UINT8 && a->n == 5);
	assert_memory_equal(a->data, arr_u8, 5);
	a = gguf_get_arr(f, "t.arr_u64");
	assert_true(a && a->type == GGUF_TYPE_UINT64 && a->n == 2);
	assert_true((uint64_t)gguf_arr_int(a, 0) == UINT64_MAX && gguf_arr_int(a, 1) == 0);
	a = gguf_get_arr(f, "t.arr_bool");
	assert_true(a && a->type == GGUF_TYPE_BOOL && a->n == 3);
	for (int k = 0; k < 3; k++)
		assert_int_equal(gguf_arr_int(a, k), arr_bool[k]);
	a = gguf_get_arr(f, "t.arr_f64");
	assert_true(a && a->type == GGUF_TYPE_FLOAT64 && a->n == 2);
	for (int k = 0; k < 2; k++)
		assert_true(gguf_arr_float(a, k) == arr_f64[k]);
	a = gguf_get_arr(f, "dup.aaaa");
	assert_true(a && a->type == GGUF_TYPE_INT16 && a->n == 0);
	assert_int_equal(f->n_tensors, 3);
	assert_int_equal(f->data_offset % alignment, 0);
	for (int t = 0; t < 3; t++) {
		const struct gguf_tensor *ti = &f->tensors[t];
		assert_true(gguf_str_eq(ti->name, sample_t[t].name));
		assert_int_equal(ti->n_dims, sample_t[t].n_dims);
		assert_int_equal(ti->ne[0], sample_t[t].ne[0]);
		assert_int_equal(ti->ne[1], sample_t[t].ne[1]);
		assert_int_equal(ti->ne[2], 1);
		assert_int_equal(ti->type, sample_t[t].type);
		assert_int_equal(ti->nbytes, sample_t[t].nbytes);
		assert_int_equal(ti->offset % alignment, 0);
		uint8_t want[128];
		sample_data(t, want);
		assert_memory_equal(ti->data, want, ti->nbytes);
	}
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pinfer-gguf-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	path_buf p;
	write_sample(tmp_path(p, "sample.gguf"), 32, 0);
	valid = (uint8_t *)read_file(p, &valid_len);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(valid);
	return test_rmtree(tmpdir);
}

/* ---- opening damaged buffers ---- */

/* Reads everything the reader hands out, so a pointer or length it failed
 * to bound shows up under ASan. */
static uint64_t touch(const struct gguf_file *f)
{
	uint64_t sum = f->alignment;
	for (uint64_t k = 0; k < f->n_kv; k++) {
		const struct gguf_kv *kv = &f->kv[k];
		for (uint64_t j = 0; j < kv->key.len; j++)
			sum += (uint8_t)kv->key.ptr[j];
		if (kv->type == GGUF_TYPE_STRING)
			for (uint64_t j = 0; j < kv->v.str.len; j++)
				sum += (uint8_t)kv->v.str.ptr[j];
		if (kv->type != GGUF_TYPE_ARRAY)
			continue;
		const struct gguf_array *a = &kv->v.arr;
		for (uint64_t j = 0; j < a->n; j++) {
			if (a->type == GGUF_TYPE_STRING)
				for (uint64_t c = 0; c < a->strs[j].len; c++)
					sum += (uint8_t)a->strs[j].ptr[c];
			else if (a->type == GGUF_TYPE_FLOAT32 || a->type == GGUF_TYPE_FLOAT64)
				sum += gguf_arr_float(a, j) > 0;
			else if (a->type != GGUF_TYPE_ARRAY)
				sum += (uint64_t)gguf_arr_int(a, j);
		}
	}
	for (uint64_t t = 0; t < f->n_tensors; t++) {
		const struct gguf_tensor *ti = &f->tensors[t];
		for (uint64_t j = 0; j < ti->name.len; j++)
			sum += (uint8_t)ti->name.ptr[j];
		for (uint64_t j = 0; j < ti->nbytes; j++)
			sum += ((const uint8_t *)ti->data)[j];
	}
	return sum;
}

/* Opens a private, exactly-sized copy; returns the reader's result. */
static int open_copy(const uint8_t *buf, size_t len, struct pf_err *err)
{
	uint8_t *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, buf, len);
	struct gguf_file *f = (struct gguf_file *)(uintptr_t)1;
	int r = gguf_open_buffer(&f, copy, len, "bad.gguf", err);
	if (r == 0) {
		assert_non_null(f);
		touch(f);
		gguf_close(f);
	} else {
		assert_true(r < 0);
		assert_null(f);
	}
	free(copy);
	return r;
}

static void expect_reject(const uint8_t *buf, size_t len, const char *what, const char *needle)
{
	struct pf_err err = { { 0 } };
	if (open_copy(buf, len, &err) == 0)
		fail_msg("%s: accepted", what);
	if (!strstr(err.msg, "bad.gguf"))
		fail_msg("%s: error '%s' does not name the file", what, err.msg);
	if (needle && !strstr(err.msg, needle))
		fail_msg("%s: error '%s' does not mention '%s'", what, err.msg, needle);
}

static void expect_accept(const uint8_t *buf, size_t len, const char *what)
{
	struct pf_err err = { { 0 } };
	if (open_copy(buf, len, &err))
		fail_msg("%s: %s", what, err.msg);
}

/* Where fields of the sample file are. */
static uint64_t key_at(const char *key)
{
	struct gguf_file *f;
	struct pf_err err;
	assert_int_equal(gguf_open_buffer(&f, valid, valid_len, "sample", &err), 0);
	const struct gguf_kv *kv = gguf_find(f, key);
	assert_non_null(kv);
	uint64_t at = kv->offset;
	gguf_close(f);
	return at;
}

static uint64_t type_at(const char *key)
{
	return key_at(key) + 8 + strlen(key);
}

static uint64_t value_at(const char *key)
{
	return type_at(key) + 4;
}

enum tfield { T_NAME, T_NDIMS, T_NE0, T_NE1, T_TYPE, T_OFFSET };

static uint64_t tensor_at(int t, enum tfield field)
{
	uint8_t pat[16];
	store_le(pat, 8, 8);
	memcpy(pat + 8, sample_t[t].name, 8);
	const uint8_t *p = memmem(valid, valid_len, pat, sizeof(pat));
	assert_non_null(p);
	uint64_t at = (uint64_t)(p - valid), nd = sample_t[t].n_dims;
	switch (field) {
	case T_NAME: return at;
	case T_NDIMS: return at + 16;
	case T_NE0: return at + 20;
	case T_NE1: return at + 28;
	case T_TYPE: return at + 20 + 8 * nd;
	default: return at + 24 + 8 * nd;
	}
}

static uint64_t tensor_offset(int t)
{
	uint64_t v = 0, at = tensor_at(t, T_OFFSET);
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)valid[at + i] << (8 * i);
	return v;
}

static void reject_patch(uint64_t at, uint64_t v, unsigned width, const char *what,
			 const char *needle)
{
	uint8_t *b = malloc(valid_len);
	assert_non_null(b);
	memcpy(b, valid, valid_len);
	store_le(b + at, v, width);
	expect_reject(b, valid_len, what, needle);
	free(b);
}

static void test_round_trip(void **state)
{
	(void)state;
	path_buf p;
	struct gguf_file *f;
	struct pf_err err = { { 0 } };
	if (gguf_open(&f, tmp_path(p, "sample.gguf"), &err))
		fail_msg("%s", err.msg);
	check_sample(f, 32);
	gguf_close(f);
	expect_accept(valid, valid_len, "the sample");
	/* A bigger alignment moves every offset; streamed data in 7-byte
	 * pieces gives the same file as whole tensors. */
	write_sample(tmp_path(p, "align64.gguf"), 64, 7);
	if (gguf_open(&f, p, &err))
		fail_msg("%s", err.msg);
	check_sample(f, 64);
	gguf_close(f);
	write_sample(tmp_path(p, "chunked.gguf"), 32, 7);
	size_t n;
	char *chunked = read_file(p, &n);
	assert_int_equal(n, valid_len);
	assert_memory_equal(chunked, valid, n);
	free(chunked);
}

static void test_truncation(void **state)
{
	(void)state;
	struct gguf_file *f;
	struct pf_err err;
	assert_int_equal(gguf_open_buffer(&f, valid, valid_len, "sample", &err), 0);
	const struct gguf_tensor *last = &f->tensors[2];
	size_t data_end = (size_t)(f->data_offset + last->offset + last->nbytes);
	gguf_close(f);
	/* Every cut before the last tensor's last byte loses something the
	 * file needs; only the final padding may go. */
	for (size_t len = 0; len < valid_len; len++) {
		char what[32];
		snprintf(what, sizeof(what), "cut at %zu", len);
		if (len < data_end)
			expect_reject(valid, len, what, NULL);
		else
			expect_accept(valid, len, what);
	}
}

static void test_magic_and_version(void **state)
{
	(void)state;
	reject_patch(0, 0x47554746, 4, "magic FGUG", "not a GGUF file");
	reject_patch(3, 'G' + 1, 1, "magic GGUH", "not a GGUF file");
	reject_patch(4, 1, 4, "version 1", "version 1");
	reject_patch(4, 4, 4, "version 4", "version 4");
	reject_patch(4, 0x03000000, 4, "byte-swapped version", "big-endian");
	reject_patch(4, 0, 4, "version 0", "version");
}

static void test_huge_counts(void **state)
{
	(void)state;
	static const uint64_t huge[] = { 1ull << 63, UINT64_MAX, 1ull << 32, 100000 };
	for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
		reject_patch(8, huge[i], 8, "tensor count", "tensor count");
		reject_patch(16, huge[i], 8, "metadata count", "metadata count");
		/* Element counts of every shape of array, and string lengths:
		 * keys, values, array elements, tensor names. */
		reject_patch(value_at("t.arr_str") + 4, huge[i], 8, "string array length", NULL);
		reject_patch(value_at("t.arr_f32") + 4, huge[i], 8, "f32 array length", NULL);
		reject_patch(value_at("t.arr_u64") + 4, huge[i], 8, "u64 array length", NULL);
		reject_patch(value_at("dup.aaaa") + 4, huge[i], 8, "empty array length", NULL);
		reject_patch(key_at("t.u8"), huge[i], 8, "key length", NULL);
		reject_patch(value_at("t.str"), huge[i], 8, "string length", NULL);
		reject_patch(value_at("t.arr_str") + 12, huge[i], 8, "array string length", NULL);
		reject_patch(tensor_at(1, T_NAME), huge[i], 8, "tensor name length", NULL);
	}
	/* Counts whose byte size wraps around 2^64. */
	reject_patch(value_at("t.arr_f32") + 4, 1ull << 62, 8, "f32 array length * 4 wraps", NULL);
	reject_patch(value_at("t.arr_u64") + 4, 1ull << 61, 8, "u64 array length * 8 wraps", NULL);
	reject_patch(value_at("t.arr_str") + 4, 1ull << 61, 8, "string array * 8 wraps", NULL);
	reject_patch(value_at("t.str"), UINT64_MAX - 10, 8, "string end wraps", NULL);
}

static void test_bad_types(void **state)
{
	(void)state;
	static const uint32_t bad[] = { GGUF_TYPE_COUNT, 100, 0x80000000u, UINT32_MAX };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		reject_patch(type_at("t.u8"), bad[i], 4, "value type", "type");
		reject_patch(type_at("t.arr_str"), bad[i], 4, "array value type", "type");
		reject_patch(value_at("t.arr_f32"), bad[i], 4, "array element type", "element type");
		reject_patch(value_at("t.arr_str"), bad[i], 4, "string array element type", "element type");
	}
}

/* A file with one key holding `levels` arrays nested in each other, the
 * innermost holding one element of type inner. */
static uint8_t *nested(int levels, enum gguf_type inner, size_t *len)
{
	uint8_t *p = malloc(64 + 12 * (size_t)levels), *q = p;
	assert_non_null(p);
	memcpy(q, "GGUF", 4);
	store_le(q + 4, 3, 4);
	store_le(q + 8, 0, 8);
	store_le(q + 16, 1, 8);
	store_le(q + 24, 4, 8);
	memcpy(q + 32, "nest", 4);
	store_le(q + 36, GGUF_TYPE_ARRAY, 4);
	q += 40;
	for (int i = 0; i < levels - 1; i++, q += 12) {
		store_le(q, GGUF_TYPE_ARRAY, 4);
		store_le(q + 4, 1, 8);
	}
	store_le(q, inner, 4);
	store_le(q + 4, 1, 8);
	q += 12;
	if (inner == GGUF_TYPE_STRING) {
		store_le(q, 2, 8);
		memcpy(q + 8, "xy", 2);
		q += 10;
	} else {
		*q++ = 42;
	}
	*len = (size_t)(q - p);
	return p;
}

static void test_nested_arrays(void **state)
{
	(void)state;
	size_t len;
	uint8_t *b = nested(5, GGUF_TYPE_UINT8, &len);
	expect_accept(b, len, "arrays nested 5 deep");
	for (size_t cut = 0; cut < len; cut++)
		expect_reject(b, cut, "cut nested arrays", NULL);
	free(b);
	b = nested(3, GGUF_TYPE_STRING, &len);
	expect_accept(b, len, "strings in nested arrays");
	for (size_t cut = 0; cut < len; cut++)
		expect_reject(b, cut, "cut nested strings", NULL);
	free(b);
	b = nested(6, GGUF_TYPE_UINT8, &len);
	expect_reject(b, len, "arrays nested 6 deep", "nested");
	free(b);
	b = nested(100000, GGUF_TYPE_UINT8, &len);
	expect_reject(b, len, "arrays nested 100000 deep", "nested");
	free(b);
}

static void test_bad_dims(void **state)
{
	(void)state;
	reject_patch(tensor_at(0, T_NDIMS), 0, 4, "n_dims 0", "dimensions");
	reject_patch(tensor_at(0, T_NDIMS), 5, 4, "n_dims 5", "dimensions");
	reject_patch(tensor_at(2, T_NDIMS), UINT32_MAX, 4, "n_dims 2^32-1", "dimensions");
	reject_patch(tensor_at(0, T_NE0), 0, 8, "ne[0] 0", "dimension 0");
	reject_patch(tensor_at(0, T_NE1), 0, 8, "ne[1] 0", "dimension 1");
	reject_patch(tensor_at(2, T_NE0), 1ull << 63, 8, "ne[0] 2^63", "overflowing");
	reject_patch(tensor_at(0, T_NE1), 1ull << 62, 8, "ne[0] * ne[1] > 2^63", "overflowing");
	/* Fits int64 as a count, not as bytes. */
	reject_patch(tensor_at(2, T_NE0), (1ull << 63) - 1, 8, "2^63-1 halves", NULL);
	reject_patch(tensor_at(0, T_NE0), 1ull << 40, 8, "tensor bigger than the file", "outside");
}

static void test_bad_tensor_type(void **state)
{
	(void)state;
	/* PF_Q8_S is a type the engine knows, but only as an in-memory format. */
	static const uint32_t bad[] = { 4, 5, 16, 29, PF_Q8_S, PF_DTYPE_COUNT, 1000, UINT32_MAX };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		reject_patch(tensor_at(0, T_TYPE), bad[i], 4, "tensor type", "type");
	/* q4_0 rows come in blocks of 32. */
	reject_patch(tensor_at(1, T_NE0), 48, 8, "q4_0 row of 48", "block size");
	reject_patch(tensor_at(1, T_NE0), 1, 8, "q4_0 row of 1", "block size");
	reject_patch(tensor_at(0, T_TYPE), PF_Q4_K, 4, "f32 [8] as q4_k", "block size");
	/* 32 elements make whole q8_s blocks: only its being internal refuses it. */
	reject_patch(tensor_at(0, T_TYPE), PF_Q8_S, 4, "f32 [8, 4] as the internal q8_s", "unsupported");
}

static void test_bad_offsets(void **state)
{
	(void)state;
	uint64_t off_b = tensor_offset(1), off_c = tensor_offset(2);
	reject_patch(tensor_at(1, T_OFFSET), off_b + 1, 8, "offset +1", "alignment");
	reject_patch(tensor_at(1, T_OFFSET), off_b + 16, 8, "offset +16", "alignment");
	reject_patch(tensor_at(2, T_OFFSET), off_c + 32, 8, "past the end", "outside");
	reject_patch(tensor_at(2, T_OFFSET), 1ull << 40, 8, "far past the end", "outside");
	reject_patch(tensor_at(2, T_OFFSET), UINT64_MAX - 31, 8, "offset + size wraps", "outside");
	reject_patch(tensor_at(1, T_OFFSET), 0, 8, "b on a", "overlap");
	reject_patch(tensor_at(2, T_OFFSET), off_b + 32, 8, "c inside b", "overlap");
}

static void test_duplicates(void **state)
{
	(void)state;
	uint8_t *b = malloc(valid_len);
	assert_non_null(b);
	memcpy(b, valid, valid_len);
	memcpy(b + key_at("dup.bbbb") + 8, "dup.aaaa", 8);
	expect_reject(b, valid_len, "duplicate key", "duplicate metadata key 'dup.aaaa'");
	memcpy(b, valid, valid_len);
	memcpy(b + tensor_at(2, T_NAME) + 8, "tensor.a", 8);
	expect_reject(b, valid_len, "duplicate tensor", "duplicate tensor name 'tensor.a'");
	free(b);
}

static void test_bad_alignment(void **state)
{
	(void)state;
	uint64_t at = value_at("general.alignment");
	reject_patch(at, 0, 4, "alignment 0", "alignment");
	reject_patch(at, 3, 4, "alignment 3", "alignment");
	reject_patch(at, 48, 4, "alignment 48", "alignment");
	reject_patch(at, 0x80000000u, 4, "alignment 2^31", NULL);
	/* A valid alignment the offsets do not follow. */
	reject_patch(at, 64, 4, "alignment 64", "alignment");
	reject_patch(type_at("general.alignment"), GGUF_TYPE_INT32, 4, "int32 alignment", "alignment");
	reject_patch(type_at("general.alignment"), GGUF_TYPE_FLOAT32, 4, "float alignment", "alignment");
}

/* Random damage, mostly to the header where the parser's decisions are. */
static void test_random_mutations(void **state)
{
	(void)state;
	struct gguf_file *f;
	struct pf_err err;
	assert_int_equal(gguf_open_buffer(&f, valid, valid_len, "sample", &err), 0);
	size_t header = (size_t)f->data_offset;
	gguf_close(f);
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	uint8_t *b = malloc(valid_len);
	assert_non_null(b);
	int accepted = 0;
	for (int iter = 0; iter < 5000; iter++) {
		memcpy(b, valid, valid_len);
		int flips = 1 + (int)(test_rand(&rng) % 4);
		for (int k = 0; k < flips; k++) {
			size_t span = test_rand(&rng) % 8 ? header : valid_len;
			size_t at = (size_t)(test_rand(&rng) % span);
			/* Half the time a whole new byte, else one flipped bit:
			 * small changes to lengths are the sneaky ones. */
			if (test_rand(&rng) & 1)
				b[at] = (uint8_t)test_rand(&rng);
			else
				b[at] ^= (uint8_t)(1u << (test_rand(&rng) % 8));
		}
		accepted += open_copy(b, valid_len, &err) == 0;
	}
	free(b);
	/* Some damage is harmless (tensor data, string contents). */
	assert_true(accepted > 0 && accepted < 5000);
}

/* ---- writer ---- */

static void expect_header_fails(struct gguf_writer *w, const char *needle)
{
	path_buf p, tmp;
	struct pf_err err = { { 0 } };
	tmp_path(p, "fail.gguf");
	tmp_path(tmp, "fail.gguf.tmp");
	if (gguf_writer_write_header(w, p, &err) == 0)
		fail_msg("header written despite: %s", needle);
	if (!strstr(err.msg, p) || !strstr(err.msg, needle))
		fail_msg("error '%s' does not name the file and '%s'", err.msg, needle);
	assert_false(exists(p));
	assert_false(exists(tmp));
	gguf_writer_free(w);
}

static void test_writer_bad_input(void **state)
{
	(void)state;
	const uint64_t ne[4] = { 32, 2, 0, 1 };
	struct gguf_writer *w = gguf_writer_new();
	assert_true(gguf_writer_add_tensor(w, "x", 0, ne, PF_F32) < 0);
	expect_header_fails(w, "dimensions");
	w = gguf_writer_new();
	assert_true(gguf_writer_add_tensor(w, "x", 5, ne, PF_F32) < 0);
	expect_header_fails(w, "dimensions");
	w = gguf_writer_new();
	assert_true(gguf_writer_add_tensor(w, "x", 3, ne, PF_F32) < 0);
	expect_header_fails(w, "dimension 2 is 0");
	w = gguf_writer_new();
	assert_true(gguf_writer_add_tensor(w, "x", 1, (const uint64_t[]){ 33 }, PF_Q4_0) < 0);
	expect_header_fails(w, "block size");
	w = gguf_writer_new();
	assert_true(gguf_writer_add_tensor(w, "x", 1, ne, (enum pf_dtype)4) < 0);
	expect_header_fails(w, "unknown type");
	w = gguf_writer_new();
	assert_true(gguf_writer_add_tensor(w, "x", 1, ne, PF_Q8_S) < 0);
	expect_header_fails(w, "only in memory");
	w = gguf_writer_new();
	assert_int_equal(gguf_writer_add_tensor(w, "x", 1, ne, PF_F32), 0);
	assert_true(gguf_writer_add_tensor(w, "x", 1, ne, PF_F32) < 0);
	expect_header_fails(w, "added twice");
	char long_name[65];
	memset(long_name, 'n', 64);
	long_name[64] = 0;
	w = gguf_writer_new();
	assert_true(gguf_writer_add_tensor(w, long_name, 1, ne, PF_F32) < 0);
	expect_header_fails(w, "longer than 63");
	w = gguf_writer_new();
	assert_true(gguf_writer_set_arr(w, "k", GGUF_TYPE_STRING, arr_str, 1) < 0);
	expect_header_fails(w, "'k'");
	w = gguf_writer_new();
	assert_true(gguf_writer_set_str(w, "k", NULL) < 0);
	expect_header_fails(w, "'k'");
	w = gguf_writer_new();
	gguf_writer_set_i32(w, "general.alignment", 64);
	expect_header_fails(w, "general.alignment");
	w = gguf_writer_new();
	gguf_writer_set_u32(w, "general.alignment", 48);
	expect_header_fails(w, "general.alignment");
}

/* Starts a writer with one 64-byte tensor, header written. */
static struct gguf_writer *one_tensor_writer(const char *path)
{
	struct gguf_writer *w = gguf_writer_new();
	struct pf_err err = { { 0 } };
	assert_int_equal(gguf_writer_add_tensor(w, "a", 1, (const uint64_t[]){ 16 }, PF_F32), 0);
	assert_int_equal(gguf_writer_add_tensor(w, "b", 1, (const uint64_t[]){ 16 }, PF_F32), 1);
	if (gguf_writer_write_header(w, path, &err))
		fail_msg("%s", err.msg);
	return w;
}

static void test_writer_misuse(void **state)
{
	(void)state;
	path_buf p, tmp;
	tmp_path(p, "misuse.gguf");
	tmp_path(tmp, "misuse.gguf.tmp");
	uint8_t data[128] = { 0 };
	struct pf_err err = { { 0 } };
	struct gguf_writer *w = one_tensor_writer(p);
	assert_true(exists(tmp));
	assert_true(gguf_writer_set_u32(w, "late", 1) < 0);
	assert_true(gguf_writer_add_tensor(w, "late", 1, (const uint64_t[]){ 1 }, PF_F32) < 0);
	assert_true(gguf_writer_write_tensor_data(w, 1, data, 64, &err) < 0);
	assert_non_null(strstr(err.msg, "out of order"));
	assert_false(exists(tmp));
	assert_true(gguf_writer_finish(w, &err) < 0);
	assert_false(exists(p));
	gguf_writer_free(w);

	w = one_tensor_writer(p);
	assert_true(gguf_writer_write_tensor_data(w, 0, data, 63, &err) < 0);
	assert_non_null(strstr(err.msg, "takes 64 bytes"));
	gguf_writer_free(w);

	w = one_tensor_writer(p);
	assert_int_equal(gguf_writer_write_data(w, data, 60, &err), 0);
	assert_true(gguf_writer_write_data(w, data, 8, &err) < 0);
	assert_non_null(strstr(err.msg, "only 4 of its 64 remain"));
	gguf_writer_free(w);

	w = one_tensor_writer(p);
	assert_int_equal(gguf_writer_write_tensor_data(w, 0, data, 64, &err), 0);
	assert_true(gguf_writer_finish(w, &err) < 0);
	assert_non_null(strstr(err.msg, "tensor 1 'b' got 0 of its 64 bytes"));
	assert_false(exists(tmp));
	assert_false(exists(p));
	gguf_writer_free(w);

	/* Freeing an unfinished writer leaves nothing behind. */
	w = one_tensor_writer(p);
	assert_int_equal(gguf_writer_write_tensor_data(w, 0, data, 64, &err), 0);
	gguf_writer_free(w);
	assert_false(exists(tmp));
	assert_false(exists(p));
}

/* A write that fails half-way (here: the file size limit, standing in for a
 * full disk) reports the file and offset and removes the temporary file. */
static void test_writer_io_error(void **state)
{
	(void)state;
	path_buf p, tmp;
	tmp_path(p, "big.gguf");
	tmp_path(tmp, "big.gguf.tmp");
	struct gguf_writer *w = gguf_writer_new();
	struct pf_err err = { { 0 } };
	assert_int_equal(gguf_writer_add_tensor(w, "big", 1, (const uint64_t[]){ 16384 }, PF_F32), 0);
	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 4096;
	void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	float *data = calloc(16384, sizeof(float));
	int r = gguf_writer_write_header(w, p, &err);
	if (!r)
		r = gguf_writer_write_tensor_data(w, 0, data, 16384 * sizeof(float), &err);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);
	free(data);
	assert_int_equal(r, -EFBIG);
	assert_non_null(strstr(err.msg, tmp));
	assert_non_null(strstr(err.msg, "offset 4096"));
	assert_false(exists(tmp));
	assert_true(gguf_writer_finish(w, &err) < 0);
	assert_false(exists(p));
	gguf_writer_free(w);

	w = gguf_writer_new();
	tmp_path(p, "no/such/dir.gguf");
	assert_true(gguf_writer_write_header(w, p, &err) < 0);
	assert_non_null(strstr(err.msg, p));
	gguf_writer_free(w);

	/* A path that is not a regular file (-o /dev/null) is refused, not
	 * replaced by the rename at the end. */
	w = gguf_writer_new();
	tmp_path(p, "fifo.gguf");
	assert_int_equal(mkfifo(p, 0600), 0);
	assert_int_equal(gguf_writer_write_header(w, p, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not a regular file"));
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	gguf_writer_free(w);
	unlink(p);
}

static void assert_same_kv(const struct gguf_file *a, const struct gguf_kv *x,
			   const struct gguf_file *b, const struct gguf_kv *y)
{
	assert_int_equal(x->key.len, y->key.len);
	assert_memory_equal(x->key.ptr, y->key.ptr, x->key.len);
	assert_int_equal(x->type, y->type);
	/* Values are compared as the bytes between this key and the next. */
	uint64_t xe = x + 1 < a->kv + a->n_kv ? (x + 1)->offset : x->offset;
	uint64_t ye = y + 1 < b->kv + b->n_kv ? (y + 1)->offset : y->offset;
	if (xe > x->offset && ye > y->offset) {
		assert_int_equal(xe - x->offset, ye - y->offset);
		assert_memory_equal(a->base + x->offset, b->base + y->offset, xe - x->offset);
	}
}

static void test_writer_kv_copy_and_replace(void **state)
{
	(void)state;
	struct gguf_file *src, *got;
	struct pf_err err = { { 0 } };
	if (gguf_open(&src, shared_path("models/stories260K/stories260K.gguf"), &err))
		fail_msg("%s", err.msg);
	path_buf p;
	tmp_path(p, "copied.gguf");
	struct gguf_writer *w = gguf_writer_new();
	gguf_writer_set_str(w, "general.name", "first");
	gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 99);  /* replaced by the copy */
	assert_int_equal(gguf_writer_copy_kv(w, src, "tokenizer."), 9);
	gguf_writer_set_u32(w, "general.name", 7);  /* replaced, keeping its place */
	gguf_writer_set_str(w, "zz.last", "end");
	if (gguf_writer_write_header(w, p, &err) || gguf_writer_finish(w, &err))
		fail_msg("%s", err.msg);
	gguf_writer_free(w);
	if (gguf_open(&got, p, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(got->n_kv, 11);
	assert_true(gguf_str_eq(got->kv[0].key, "general.name"));
	uint32_t v;
	assert_true(gguf_get_u32(got, "general.name", &v) && v == 7);
	assert_true(gguf_get_u32(got, "tokenizer.ggml.bos_token_id", &v) && v == 1);
	for (uint64_t i = 0; i < src->n_kv; i++) {
		const struct gguf_kv *x = &src->kv[i];
		if (x->key.len < 10 || memcmp(x->key.ptr, "tokenizer.", 10))
			continue;
		char key[96];
		const struct gguf_kv *y = gguf_find(got, gguf_str_copy(x->key, key, sizeof(key)));
		assert_non_null(y);
		assert_same_kv(src, x, got, y);
	}
	gguf_close(got);
	gguf_close(src);

	/* Nested arrays are copied verbatim too. */
	size_t len;
	uint8_t *nest = nested(4, GGUF_TYPE_STRING, &len);
	assert_int_equal(gguf_open_buffer(&src, nest, len, "nest", &err), 0);
	w = gguf_writer_new();
	assert_int_equal(gguf_writer_copy_kv(w, src, ""), 1);
	if (gguf_writer_write_header(w, p, &err) || gguf_writer_finish(w, &err))
		fail_msg("%s", err.msg);
	gguf_writer_free(w);
	size_t n;
	char *copy = read_file(p, &n);
	assert_true(n >= len);
	assert_memory_equal(copy, nest, len);
	free(copy);
	gguf_close(src);
	free(nest);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_magic_and_version),
		cmocka_unit_test(test_huge_counts),
		cmocka_unit_test(test_bad_types),
		cmocka_unit_test(test_nested_arrays),
		cmocka_unit_test(test_bad_dims),
		cmocka_unit_test(test_bad_tensor_type),
		cmocka_unit_test(test_bad_offsets),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_bad_alignment),
		cmocka_unit_test(test_random_mutations),
		cmocka_unit_test(test_writer_bad_input),
		cmocka_unit_test(test_writer_misuse),
		cmocka_unit_test(test_writer_io_error),
		cmocka_unit_test(test_writer_kv_copy_and_replace),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
