#include "bundle.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mapfile.h"
#include "model.h"
#include "threadpool.h"

/* Huge pages for the bundles where the kernel offers them (THP in
 * "madvise" mode): a decode step touches a few hundred bundles per layer
 * spread over tens of megabytes, one TLB miss each with 4 KiB pages. */
#define HUGE_PAGE (2u << 20)

/* The format of down rows transposed at load. Float formats transpose
 * exactly. A quantized matrix must be quantized again along the other
 * axis, which adds a second rounding; in Q8_0 it stays small. On a random
 * Q4_0 model (tests/test_sparsity.c) Q4_0 rows moved the logits by 1.5e-1
 * (relative RMS), Q8_0 rows by 2e-2, as much as the dense path's own 8-bit
 * rounding of the activations it multiplies down with. Q8_0 costs 1.9x a
 * Q4_0 row per active neuron: at 10% active, about 4% of a token's reads. */
static enum pf_dtype down_t_type(const struct pf_weight *down)
{
	if (down->type == PF_F32 || down->type == PF_F16 || down->type == PF_BF16)
		return down->type;
	return down->rows % (int64_t)pf_dtype_info(PF_Q8_0)->block == 0 ? PF_Q8_0 : PF_F16;
}

/* Where layer l's bundles sit and how they are cut. */
struct layer_plan {
	size_t offset;  /* from the start of the mapping */
	size_t stride;  /* bytes per bundle, a multiple of 64 */
	size_t gate_bytes, up_bytes, down_bytes;
	enum pf_dtype down_type;
	const uint8_t *file_down_t;  /* the file's neuron-major rows, or NULL */
};

/* Neurons transposed at once: their columns of every down row are
 * dequantized into a float block, which is then written out row by row. */
#define NEURON_CHUNK 256
/* Down rows dequantized together, so the block is written a cache line of
 * floats at a time instead of one float per line. */
#define ROW_GROUP 16

/* Writes down's columns as rows of format t, row j at dst + j * stride. */
static bool transpose_into(const struct pf_weight *down, enum pf_dtype t, uint8_t *dst, size_t stride)
{
	int64_t n_embd = down->rows, n_ff = down->cols;
	const struct pf_quant_ops *ops = pf_quant_ops(t);
	const struct pf_dtype_info *src = pf_dtype_info(down->type);
	int64_t chunk = n_ff % NEURON_CHUNK == 0 ? NEURON_CHUNK : (int64_t)src->block;
	float *block = malloc((size_t)chunk * (size_t)n_embd * sizeof(float));
	float *seg = malloc((size_t)ROW_GROUP * (size_t)chunk * sizeof(float));
	if (!block || !seg) {
		free(block);
		free(seg);
		return false;
	}
	for (int64_t j0 = 0; j0 < n_ff; j0 += chunk) {
		size_t offset = (size_t)(j0 / src->block) * src->size;
		for (int64_t i0 = 0; i0 < n_embd; i0 += ROW_GROUP) {
			int64_t ni = n_embd - i0 < ROW_GROUP ? n_embd - i0 : ROW_GROUP;
			for (int64_t i = 0; i < ni; i++)
				down->ops->to_float_fast(pf_weight_row(down, i0 + i) + offset, seg + i * chunk, chunk);
			for (int64_t jj = 0; jj < chunk; jj++)
				for (int64_t i = 0; i < ni; i++)
					block[jj * n_embd + i0 + i] = seg[i * chunk + jj];
		}
		for (int64_t jj = 0; jj < chunk; jj++)
			ops->from_float(block + jj * n_embd, dst + (size_t)(j0 + jj) * stride, n_embd);
	}
	free(block);
	free(seg);
	return true;
}

struct build_job {
	struct pinfer_model *m;
	const struct layer_plan *plan;
	bool with_gate;
	_Atomic int failed_layer;  /* -1, or a layer whose transposition found no memory */
};

static struct pf_weight in_bundle(const struct pf_weight *w, const uint8_t *data, size_t stride)
{
	struct pf_weight b = *w;
	b.data = data;
	b.stride = stride;
	return b;
}

static bool fill_layer(const struct build_job *j, int l)
{
	struct pf_layer *L = &j->m->layers[l];
	const struct layer_plan *p = &j->plan[l];
	uint8_t *base = j->m->bundles.mem + p->offset;
	uint8_t *up = base + p->gate_bytes, *down = up + p->up_bytes;
	for (int64_t i = 0; i < L->ffn_up.rows; i++) {
		size_t at = (size_t)i * p->stride;
		if (j->with_gate)
			memcpy(base + at, pf_weight_row(&L->ffn_gate, i), p->gate_bytes);
		memcpy(up + at, pf_weight_row(&L->ffn_up, i), p->up_bytes);
		if (p->file_down_t)
			memcpy(down + at, pf_weight_row(&L->ffn_down_t, i), p->down_bytes);
	}
	if (!p->file_down_t && !transpose_into(&L->ffn_down, p->down_type, down, p->stride))
		return false;
	if (j->with_gate)
		L->ffn_gate = in_bundle(&L->ffn_gate, base, p->stride);
	L->ffn_up = in_bundle(&L->ffn_up, up, p->stride);
	L->ffn_down_t = (struct pf_weight){
		.data = down, .type = p->down_type, .rows = L->ffn_up.rows, .cols = L->ffn_down.rows,
		.row_bytes = p->down_bytes, .stride = p->stride, .ops = pf_quant_ops(p->down_type),
	};
	return true;
}

static void fill_layers(void *arg, int64_t begin, int64_t end, int thread)
{
	(void)thread;
	struct build_job *j = arg;
	for (int64_t l = begin; l < end; l++)
		if (!fill_layer(j, (int)l))
			j->failed_layer = (int)l;
}

static int plan_layers(const struct pinfer_model *m, bool with_gate, struct layer_plan *plan,
		       size_t *total, struct pf_err *err)
{
	size_t offset = 0;
	for (int l = 0; l < m->info.n_layer; l++) {
		const struct pf_layer *L = &m->layers[l];
		struct layer_plan *p = &plan[l];
		p->gate_bytes = with_gate ? L->ffn_gate.row_bytes : 0;
		p->up_bytes = L->ffn_up.row_bytes;
		p->file_down_t = L->ffn_down_t.data;
		if (p->file_down_t) {
			p->down_type = L->ffn_down_t.type;
			p->down_bytes = L->ffn_down_t.row_bytes;
		} else {
			uint64_t b;
			p->down_type = down_t_type(&L->ffn_down);
			if (!pf_dtype_bytes(p->down_type, (uint64_t)L->ffn_down.rows, &b))
				return pf_errf(err, -EINVAL, "layer %d: %lld is not a whole number of %s blocks", l,
					       (long long)L->ffn_down.rows, pf_dtype_info(p->down_type)->name);
			p->down_bytes = (size_t)b;
		}
		p->stride = (p->gate_bytes + p->up_bytes + p->down_bytes + 63) / 64 * 64;
		p->offset = offset;
		offset += (size_t)L->ffn_up.rows * p->stride;
	}
	*total = (offset + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
	return 0;
}

int pf_bundles_build(struct pinfer_model *m, bool with_gate, bool lock, struct pf_err *err)
{
	int n_layer = m->info.n_layer;
	struct layer_plan *plan = calloc((size_t)n_layer, sizeof(*plan));
	if (!plan)
		return pf_errf(err, -ENOMEM, "out of memory");
	size_t total = 0;
	int r = plan_layers(m, with_gate, plan, &total, err);
	if (r)
		goto out;
	void *mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		r = pf_errf(err, -ENOMEM, "out of memory for the neuron bundles (%zu bytes)", total);
		goto out;
	}
	madvise(mem, total, MADV_HUGEPAGE);
	m->bundles = (struct pf_bundles){ .mem = mem, .mem_bytes = total, .gate = with_gate };

	/* The file's rows are read (and, for down, transposed) on every CPU:
	 * a 7B model's layers take seconds on one core. */
	struct pf_pool *pool;
	if ((r = pf_pool_new(&pool, pf_cpu_count()))) {
		r = pf_errf(err, r, "cannot start threads to build the neuron bundles");
		goto out;
	}
	/* The file's FFN matrices, which nothing reads once the bundles exist
	 * (prefill too computes from them). */
	struct pf_weight *before = malloc((size_t)n_layer * 4 * sizeof(*before));
	if (!before) {
		pf_pool_free(pool);
		r = pf_errf(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (int l = 0; l < n_layer; l++) {
		before[4 * l] = m->layers[l].ffn_gate;
		before[4 * l + 1] = m->layers[l].ffn_up;
		before[4 * l + 2] = m->layers[l].ffn_down_t;
		before[4 * l + 3] = m->layers[l].ffn_down;
	}
	struct build_job j = { .m = m, .plan = plan, .with_gate = with_gate, .failed_layer = -1 };
	pf_pool_run(pool, fill_layers, &j, n_layer, 1);
	pf_pool_free(pool);
	if (j.failed_layer >= 0) {
		free(before);
		r = pf_errf(err, -ENOMEM, "layer %d: out of memory for the transposed down projection",
			    j.failed_layer);
		goto out;
	}
	for (int i = 0; i < 4 * n_layer; i++)
		if (before[i].data && (i % 4 != 0 || with_gate))
			pf_release_file_range(before[i].data, (size_t)before[i].rows * before[i].stride, m->locked);
	free(before);
	mprotect(mem, total, PROT_READ);
	if (lock) {
		if (mlock(mem, total) < 0) {
			int e = errno;
			r = pf_errf(err, -e, "mlock of %zu bytes of neuron bundles failed: %s", total, strerror(e));
			goto out;
		}
		m->bundles.locked = true;
	}
	m->info.heap_bytes += total;
out:
	free(plan);
	return r;
}

void pf_bundles_free(struct pinfer_model *m)
{
	if (!m->bundles.mem)
		return;
	if (m->bundles.locked)
		munlock(m->bundles.mem, m->bundles.mem_bytes);
	munmap(m->bundles.mem, m->bundles.mem_bytes);
	m->bundles = (struct pf_bundles){ 0 };
}
