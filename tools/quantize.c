#include "quantize.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "gguf.h"
#include "quant.h"

/* Output bytes converted per pool job: large enough that thread wake-ups
 * and write() calls are negligible, small enough to stay in memory. */
#define CHUNK_BYTES (4u << 20)

/* A type is a target when the engine can both write it and multiply by it;
 * Q8_1 and Q8_K have quantizers but exist only for activations. */
static bool is_target(int t)
{
	const struct pf_quant_ops *ops = t >= 0 ? pf_quant_ops((enum pf_dtype)t) : NULL;
	return ops && ops->from_float && ops->vec_dot;
}

void quantize_type_names(char *buf, size_t size)
{
	size_t n = 0;
	buf[0] = 0;
	for (int t = 0; t < PF_DTYPE_COUNT && n < size; t++)
		if (is_target(t))
			n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? " " : "",
					      pf_dtype_info((uint32_t)t)->name);
}

int quantize_parse_type(const char *name, enum pf_dtype *out, struct pf_err *err)
{
	char names[256];
	quantize_type_names(names, sizeof(names));
	int t = pf_dtype_from_name(name);
	if (t < 0)
		return pf_errf(err, -EINVAL, "unknown type '%s' (expected one of: %s)", name, names);
	if (!is_target(t))
		return pf_errf(err, -ENOTSUP,
			       "type %s cannot be produced: the engine cannot both quantize to it and run it (expected one of: %s)",
			       pf_dtype_info((uint32_t)t)->name, names);
	*out = (enum pf_dtype)t;
	return 0;
}

uint32_t quantize_file_type(enum pf_dtype t)
{
	switch (t) {
	case PF_F16: return 1;
	case PF_Q4_0: return 2;
	case PF_Q4_1: return 3;
	case PF_Q8_0: return 7;
	case PF_Q5_0: return 8;
	case PF_Q5_1: return 9;
	/* Every matrix gets the one type, which is llama.cpp's _S mix. */
	case PF_Q4_K: return 14;
	case PF_Q5_K: return 16;
	case PF_Q6_K: return 18;
	case PF_BF16: return 32;
	default: return 0;
	}
}

struct rows_job {
	quant_row_fn fn;
	void *arg;
	pf_from_float_fn from_float;
	int64_t first, cols;
	uint64_t row_bytes;
	uint8_t *out;
	float *scratch;  /* cols floats per thread */
};

static void rows_task(void *arg, int64_t begin, int64_t end, int thread)
{
	const struct rows_job *j = arg;
	float *x = j->scratch + (int64_t)thread * j->cols;
	for (int64_t r = begin; r < end; r++) {
		j->fn(j->arg, j->first + r, x);
		j->from_float(x, j->out + (uint64_t)r * j->row_bytes, j->cols);
	}
}

int quant_write_rows(struct gguf_writer *w, struct pf_pool *pool, enum pf_dtype type,
		     int64_t rows, int64_t cols, quant_row_fn fn, void *arg, struct pf_err *err)
{
	const struct pf_quant_ops *ops = pf_quant_ops(type);
	uint64_t row_bytes;
	if (!ops || !ops->from_float || cols < 1 ||
	    !pf_dtype_bytes(type, (uint64_t)cols, &row_bytes))
		return pf_errf(err, -EINVAL, "cannot write rows of %lld elements as %s",
			       (long long)cols, pf_dtype_info(type) ? pf_dtype_info(type)->name : "?");
	int64_t chunk = (int64_t)(CHUNK_BYTES / row_bytes);
	if (chunk < 1)
		chunk = 1;
	if (chunk > rows && rows > 0)
		chunk = rows;
	struct rows_job j = {
		.fn = fn, .arg = arg, .from_float = ops->from_float, .cols = cols,
		.row_bytes = row_bytes,
		.out = malloc((size_t)(chunk * row_bytes)),
		.scratch = malloc((size_t)pf_pool_threads(pool) * (size_t)cols * sizeof(float)),
	};
	int r = 0;
	if (!j.out || !j.scratch)
		r = pf_errf(err, -ENOMEM, "out of memory for %lld rows of %lld elements",
			    (long long)chunk, (long long)cols);
	for (j.first = 0; !r && j.first < rows; j.first += chunk) {
		int64_t n = rows - j.first < chunk ? rows - j.first : chunk;
		pf_pool_run(pool, rows_task, &j, n, 1);
		r = gguf_writer_write_data(w, j.out, (size_t)((uint64_t)n * row_bytes), err);
	}
	free(j.out);
	free(j.scratch);
	return r;
}

/* What becomes of one input tensor. */
struct plan {
	enum pf_dtype type;
	bool convert;      /* dequantize and requantize; else copy the bytes */
	const char *note;  /* why a matrix was left as it was */
};

struct src_rows {
	const uint8_t *data;
	uint64_t row_bytes;
	int64_t cols;
	pf_to_float_fn to_float;
};

static void dequant_row(void *arg, int64_t row, float *dst)
{
	const struct src_rows *s = arg;
	s->to_float(s->data + (uint64_t)row * s->row_bytes, dst, s->cols);
}

static struct plan plan_tensor(const struct gguf_tensor *t, enum pf_dtype target)
{
	const struct pf_quant_ops *ops = pf_quant_ops(t->type);
	bool readable = ops && ops->to_float;
	struct plan p = { .type = (enum pf_dtype)t->type };
	if (t->n_dims == 1) {
		/* Norms are tiny and read on every token: full precision. */
		if (t->type != PF_F32 && readable)
			p = (struct plan){ .type = PF_F32, .convert = true };
	} else if (t->n_dims == 2 && t->type != target) {
		if (!readable)
			p.note = "its type has no dequantizer";
		else if (t->ne[0] % pf_dtype_info(target)->block)
			p.note = "its rows are not a whole number of blocks";
		else
			p = (struct plan){ .type = target, .convert = true };
	}
	return p;
}

static uint64_t tensor_elems(const struct gguf_tensor *t)
{
	uint64_t n = 1;
	for (uint32_t d = 0; d < t->n_dims; d++)
		n *= t->ne[d];
	return n;
}

static int write_tensor(struct gguf_writer *w, struct pf_pool *pool, int idx,
			const struct gguf_tensor *t, const struct plan *p, struct pf_err *err)
{
	if (!p->convert)
		return gguf_writer_write_tensor_data(w, idx, t->data, t->nbytes, err);
	int64_t cols = (int64_t)t->ne[0], rows = (int64_t)(tensor_elems(t) / t->ne[0]);
	struct src_rows s = {
		.data = t->data, .row_bytes = t->nbytes / (uint64_t)rows, .cols = cols,
		.to_float = pf_quant_ops(t->type)->to_float,
	};
	return quant_write_rows(w, pool, p->type, rows, cols, dequant_row, &s, err);
}

static void log_tensor(FILE *log, uint64_t i, const struct gguf_file *f, const struct plan *p,
		       uint64_t out_bytes, enum pf_dtype target)
{
	const struct gguf_tensor *t = &f->tensors[i];
	char name[64], shape[64];
	gguf_str_copy(t->name, name, sizeof(name));
	int n = snprintf(shape, sizeof(shape), "[%llu", (unsigned long long)t->ne[0]);
	for (uint32_t d = 1; d < t->n_dims; d++)
		n += snprintf(shape + n, sizeof(shape) - (size_t)n, " x %llu",
			      (unsigned long long)t->ne[d]);
	snprintf(shape + n, sizeof(shape) - (size_t)n, "]");
	fprintf(log, "[%4llu/%4llu] %-28s %-18s %5s -> %-5s %9.2f -> %9.2f MiB\n",
		(unsigned long long)i + 1, (unsigned long long)f->n_tensors, name, shape,
		pf_dtype_info(t->type)->name, pf_dtype_info(p->type)->name,
		t->nbytes / 1048576.0, out_bytes / 1048576.0);
	if (p->note)
		fprintf(log, "            kept as %s: %s (%llu elements, %s's block is %u)\n",
			pf_dtype_info(t->type)->name, p->note, (unsigned long long)t->ne[0],
			pf_dtype_info(target)->name, pf_dtype_info(target)->block);
}

int quantize_model(const char *in, const char *out, const struct quantize_opts *o,
		   struct quantize_stats *st, struct pf_err *err)
{
	struct quantize_stats stats = { 0 };
	enum pf_dtype target = o->type;
	if (!is_target(target))
		return pf_errf(err, -EINVAL, "%s: type %d cannot be produced", out, (int)target);
	double t0 = now_seconds();
	struct gguf_file *f = NULL;
	struct gguf_writer *w = NULL;
	struct pf_pool *pool = NULL;
	struct plan *plans = NULL;
	int r = gguf_open(&f, in, err);
	if (r)
		return r;
	plans = calloc(f->n_tensors ? f->n_tensors : 1, sizeof(*plans));
	w = gguf_writer_new();
	if (!plans || !w) {
		r = pf_errf(err, -ENOMEM, "out of memory for %llu tensors",
			    (unsigned long long)f->n_tensors);
		goto out;
	}
	int n_threads = o->n_threads > 0 ? o->n_threads : pf_cpu_count();
	if ((r = pf_pool_new(&pool, n_threads))) {
		r = pf_errf(err, r, "cannot start %d threads: %s", n_threads, strerror(-r));
		goto out;
	}
	gguf_writer_copy_kv(w, f, "");
	gguf_writer_set_u32(w, "general.file_type", quantize_file_type(target));
	if (pf_dtype_info(target)->block > 1)
		gguf_writer_set_u32(w, "general.quantization_version", 2);
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const struct gguf_tensor *t = &f->tensors[i];
		char name[256];
		gguf_str_copy(t->name, name, sizeof(name));
		plans[i] = plan_tensor(t, target);
		gguf_writer_add_tensor(w, name, t->n_dims, t->ne, plans[i].type);
		if (t->n_dims == 2) {
			stats.n_quantized += plans[i].type == target;
			stats.n_kept += plans[i].type != target;
		}
	}
	if ((r = gguf_writer_write_header(w, out, err)))
		goto out;
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		if (o->log)
			log_tensor(o->log, i, f, &plans[i], gguf_writer_tensor_nbytes(w, (int)i), target);
		if ((r = write_tensor(w, pool, (int)i, &f->tensors[i], &plans[i], err)))
			goto out;
	}
	if ((r = gguf_writer_finish(w, err)))
		goto out;
	struct stat sb;
	stats.in_bytes = f->size;
	stats.out_bytes = stat(out, &sb) == 0 ? (uint64_t)sb.st_size : 0;
	if (o->log) {
		fprintf(o->log, "quantized %d matrices to %s", stats.n_quantized,
			pf_dtype_info(target)->name);
		if (stats.n_kept)
			fprintf(o->log, "; %d kept their type (see 'kept as' above)", stats.n_kept);
		fprintf(o->log, "\n%s: %.2f MiB -> %s: %.2f MiB in %.1f s\n", in,
			stats.in_bytes / 1048576.0, out, stats.out_bytes / 1048576.0,
			now_seconds() - t0);
	}
	if (st)
		*st = stats;
out:
	pf_pool_free(pool);
	gguf_writer_free(w);
	free(plans);
	gguf_close(f);
	return r;
}
