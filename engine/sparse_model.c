/* The load-time half of activation sparsity (docs/sparsity.md): which mode
 * a model runs in, its threshold-mode thresholds, and the down projection
 * laid out neuron-major, so that one neuron's down weights are one
 * contiguous row (an axpy) instead of a column scattered over n_embd rows. */
#include "sparse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "threadpool.h"

static const char *const sparsity_names[] = {
	[PINFER_SPARSITY_AUTO] = "auto",
	[PINFER_SPARSITY_DENSE] = "dense",
	[PINFER_SPARSITY_GATE] = "gate",
	[PINFER_SPARSITY_THRESHOLD] = "threshold",
	[PINFER_SPARSITY_PREDICTOR] = "predictor",
};

const char *pinfer_sparsity_name(enum pinfer_sparsity s)
{
	return (unsigned)s < sizeof(sparsity_names) / sizeof(sparsity_names[0]) ? sparsity_names[s] : "?";
}

int pinfer_sparsity_parse(const char *name, enum pinfer_sparsity *out)
{
	for (size_t i = 0; i < sizeof(sparsity_names) / sizeof(sparsity_names[0]); i++)
		if (!strcmp(name, sparsity_names[i])) {
			*out = (enum pinfer_sparsity)i;
			return 0;
		}
	return -EINVAL;
}

float pinfer_model_threshold(const struct pinfer_model *m, int layer)
{
	return m->thresholds && layer >= 0 && layer < m->info.n_layer ? m->thresholds[layer] : 0.0f;
}

/* Reads PF_THRESHOLDS_KEY of f (the model or a calibration file) into
 * m->thresholds. 0 when found, 1 when f has none. */
static int read_thresholds(struct pinfer_model *m, const struct gguf_file *f, struct pf_err *err)
{
	const struct gguf_array *a = gguf_get_arr(f, PF_THRESHOLDS_KEY);
	if (!a)
		return 1;
	int n_layer = m->info.n_layer;
	if (a->n != (uint64_t)n_layer)
		return pf_errf(err, -EINVAL, "%s: %s has %llu thresholds, the model has %d layers", f->path,
			       PF_THRESHOLDS_KEY, (unsigned long long)a->n, n_layer);
	m->thresholds = malloc((size_t)n_layer * sizeof(float));
	if (!m->thresholds)
		return pf_errf(err, -ENOMEM, "out of memory");
	for (int l = 0; l < n_layer; l++) {
		double v = gguf_arr_float(a, (uint64_t)l);
		if (!(v >= 0.0) || v > 1e30) {
			free(m->thresholds);
			m->thresholds = NULL;
			return pf_errf(err, -EINVAL, "%s: threshold %d of %s is %g, not a finite value >= 0",
				       f->path, l, PF_THRESHOLDS_KEY, v);
		}
		m->thresholds[l] = (float)v;
	}
	return 0;
}

static int load_calibration(struct pinfer_model *m, const char *path, struct pf_err *err)
{
	struct gguf_file *f;
	int r = gguf_open(&f, path, err);
	if (r)
		return r;
	struct gguf_str arch;
	if (gguf_get_str(f, "general.architecture", &arch) &&
	    (arch.len != strlen(m->info.arch) || memcmp(arch.ptr, m->info.arch, arch.len))) {
		r = pf_errf(err, -EINVAL, "%s: thresholds for architecture '%.*s', the model is '%s'", path,
			    (int)arch.len, arch.ptr, m->info.arch);
	} else {
		r = read_thresholds(m, f, err);
		if (r == 1)
			r = pf_errf(err, -EINVAL, "%s: no %s (write one with pinfer-model calibrate)", path,
				    PF_THRESHOLDS_KEY);
	}
	gguf_close(f);
	return r;
}

/* The format of the transposed down rows. Float formats transpose
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

/* Neurons transposed at once: their columns of every down row are
 * dequantized into a float block, which is then written out row by row. */
#define NEURON_CHUNK 256
/* Down rows dequantized together, so the block is written a cache line of
 * floats at a time instead of one float per line. */
#define ROW_GROUP 16

struct transpose_job {
	struct pinfer_model *m;
	_Atomic int failed_layer;  /* -1, or a layer out of memory */
};

/* The format and row size of layer l's neuron-major down matrix. */
static bool down_t_layout(const struct pf_weight *down, enum pf_dtype *t, uint64_t *row_bytes)
{
	*t = down_t_type(down);
	return pf_dtype_bytes(*t, (uint64_t)down->rows, row_bytes);
}

static bool transpose_layer(struct pf_layer *L)
{
	const struct pf_weight *down = &L->ffn_down;
	int64_t n_embd = down->rows, n_ff = down->cols;
	enum pf_dtype t;
	uint64_t row_bytes;
	down_t_layout(down, &t, &row_bytes);
	const struct pf_quant_ops *ops = pf_quant_ops(t);
	const struct pf_dtype_info *src = pf_dtype_info(down->type);
	int64_t chunk = n_ff % NEURON_CHUNK == 0 ? NEURON_CHUNK : (int64_t)src->block;
	uint8_t *mem = aligned_alloc(64, ((size_t)n_ff * row_bytes + 63) / 64 * 64);
	float *block = malloc((size_t)chunk * (size_t)n_embd * sizeof(float));
	float *seg = malloc((size_t)ROW_GROUP * (size_t)chunk * sizeof(float));
	if (!mem || !block || !seg) {
		free(mem);
		free(block);
		free(seg);
		return false;
	}
	for (int64_t j0 = 0; j0 < n_ff; j0 += chunk) {
		size_t offset = (size_t)(j0 / src->block) * src->size;
		for (int64_t i0 = 0; i0 < n_embd; i0 += ROW_GROUP) {
			int64_t ni = n_embd - i0 < ROW_GROUP ? n_embd - i0 : ROW_GROUP;
			for (int64_t i = 0; i < ni; i++)
				down->ops->to_float_fast(down->data + (size_t)(i0 + i) * down->row_bytes + offset,
							 seg + i * chunk, chunk);
			for (int64_t jj = 0; jj < chunk; jj++)
				for (int64_t i = 0; i < ni; i++)
					block[jj * n_embd + i0 + i] = seg[i * chunk + jj];
		}
		for (int64_t jj = 0; jj < chunk; jj++)
			ops->from_float(block + jj * n_embd, mem + (size_t)(j0 + jj) * row_bytes, n_embd);
	}
	free(block);
	free(seg);
	L->ffn_down_t = (struct pf_weight){ .data = mem, .type = t, .rows = n_ff, .cols = n_embd,
					    .row_bytes = (size_t)row_bytes, .ops = ops };
	L->down_t_mem = mem;
	return true;
}

static void transpose_layers(void *arg, int64_t begin, int64_t end, int thread)
{
	(void)thread;
	struct transpose_job *j = arg;
	for (int64_t l = begin; l < end; l++)
		if (!transpose_layer(&j->m->layers[l]))
			j->failed_layer = (int)l;
}

/* Every layer's neuron-major down matrix, layers spread over the CPUs: a
 * 7B model's 32 layers take seconds on one core. */
static int transpose_down(struct pinfer_model *m, struct pf_err *err)
{
	int n_layer = m->info.n_layer;
	for (int l = 0; l < n_layer; l++) {
		enum pf_dtype t;
		uint64_t row_bytes;
		if (!down_t_layout(&m->layers[l].ffn_down, &t, &row_bytes))
			return pf_errf(err, -EINVAL, "layer %d: %lld is not a whole number of %s blocks", l,
				       (long long)m->layers[l].ffn_down.rows, pf_dtype_info(t)->name);
	}
	struct pf_pool *pool;
	int r = pf_pool_new(&pool, pf_cpu_count());
	if (r)
		return pf_errf(err, r, "cannot start threads to transpose the down projections");
	struct transpose_job j = { m, -1 };
	pf_pool_run(pool, transpose_layers, &j, n_layer, 1);
	pf_pool_free(pool);
	if (j.failed_layer >= 0)
		return pf_errf(err, -ENOMEM, "layer %d: out of memory for the transposed down projection",
			       j.failed_layer);
	for (int l = 0; l < n_layer; l++) {
		const struct pf_weight *t = &m->layers[l].ffn_down_t;
		m->info.heap_bytes += (uint64_t)t->rows * t->row_bytes;
	}
	return 0;
}

/* PowerInfer's predictors (blk.N.fc1, blk.N.fc2, in every layer or in
 * none) and threshold. */
static int bind_predictors(struct pinfer_model *m, struct pf_err *err)
{
	const struct gguf_tensor *t = gguf_find_tensor(m->gguf, "blk.0.fc1.weight");
	if (!t)
		return 0;
	const struct pinfer_model_info *hp = &m->info;
	int64_t rank = t->n_dims == 2 ? (int64_t)t->ne[1] : 0;
	if (rank <= 0 || rank > hp->n_ff)
		return pf_errf(err, -EINVAL, "%s: blk.0.fc1.weight has %u dimensions and %lld rows, not a predictor",
			       m->gguf->path, t->n_dims, (long long)rank);
	char name[64];
	int r;
	for (int l = 0; l < hp->n_layer; l++) {
		struct pf_layer *L = &m->layers[l];
		snprintf(name, sizeof(name), "blk.%d.fc1.weight", l);
		if ((r = pf_bind_weight(m, &L->fc1, name, rank, hp->n_embd, err)))
			return r;
		snprintf(name, sizeof(name), "blk.%d.fc2.weight", l);
		if ((r = pf_bind_weight(m, &L->fc2, name, hp->n_ff, rank, err)))
			return r;
	}
	m->pred_rank = (int)rank;
	if (!gguf_get_f32(m->gguf, "powerinfer.sparse_threshold", &m->pred_threshold))
		m->pred_threshold = 0.0f;
	return 0;
}

/* The neuron-major down matrices a PowerInfer file carries
 * (blk.N.ffn_down_t); 1 when bound, 0 when the file has none. */
static int bind_down_t(struct pinfer_model *m, struct pf_err *err)
{
	if (!gguf_find_tensor(m->gguf, "blk.0.ffn_down_t.weight"))
		return 0;
	const struct pinfer_model_info *hp = &m->info;
	char name[64];
	for (int l = 0; l < hp->n_layer; l++) {
		snprintf(name, sizeof(name), "blk.%d.ffn_down_t.weight", l);
		int r = pf_bind_weight(m, &m->layers[l].ffn_down_t, name, hp->n_ff, hp->n_embd, err);
		if (r)
			return r;
		if (!m->layers[l].ffn_down_t.ops->axpy)
			return pf_errf(err, -ENOTSUP, "%s: %s has no axpy kernel", m->gguf->path, name);
	}
	return 1;
}

static bool relu_family(enum pinfer_ffn_act a)
{
	return a == PINFER_ACT_RELU || a == PINFER_ACT_DRELU;
}

int pf_sparse_setup(struct pinfer_model *m, const struct pinfer_model_params *p, struct pf_err *err)
{
	struct pinfer_model_info *hp = &m->info;
	int r = p->calibration ? load_calibration(m, p->calibration, err) : read_thresholds(m, m->gguf, err);
	if (r < 0)
		return r;
	if ((r = bind_predictors(m, err)))
		return r;
	enum pinfer_sparsity mode = p->sparsity;
	if (mode == PINFER_SPARSITY_AUTO)
		mode = m->pred_rank && relu_family(hp->ffn_act) ? PINFER_SPARSITY_PREDICTOR
		       : relu_family(hp->ffn_act)             ? PINFER_SPARSITY_GATE
		       : m->thresholds                        ? PINFER_SPARSITY_THRESHOLD
							      : PINFER_SPARSITY_DENSE;
	switch (mode) {
	case PINFER_SPARSITY_GATE:
		if (!relu_family(hp->ffn_act))
			return pf_errf(err, -EINVAL,
				       "%s: gate sparsity needs a ReLU or dReLU model; this one uses %s (try threshold)",
				       m->gguf->path, pinfer_ffn_act_name(hp->ffn_act));
		break;
	case PINFER_SPARSITY_THRESHOLD:
		if (!m->thresholds)
			return pf_errf(err, -EINVAL,
				       "%s: threshold sparsity needs thresholds (pinfer-model calibrate, then --calibration)",
				       m->gguf->path);
		break;
	case PINFER_SPARSITY_PREDICTOR:
		if (!m->pred_rank)
			return pf_errf(err, -ENOTSUP,
				       "%s: predictor sparsity needs predictor tensors (blk.N.fc1, blk.N.fc2), which this model lacks",
				       m->gguf->path);
		if (!relu_family(hp->ffn_act))
			return pf_errf(err, -EINVAL, "%s: predictor sparsity needs a ReLU or dReLU model; this one uses %s",
				       m->gguf->path, pinfer_ffn_act_name(hp->ffn_act));
		break;
	default:
		break;
	}
	hp->sparsity = mode;
	if (mode == PINFER_SPARSITY_DENSE)
		return 0;
	if ((r = bind_down_t(m, err)) < 0 || (r == 0 && (r = transpose_down(m, err))))
		return r;
	/* What a decode step reads whatever fires: in predictor mode the
	 * predictor instead of the gate, which becomes per neuron too. */
	bool pred = mode == PINFER_SPARSITY_PREDICTOR;
	hp->sparse_base_bytes = hp->decode_bytes;
	for (int l = 0; l < hp->n_layer; l++) {
		const struct pf_layer *L = &m->layers[l];
		hp->sparse_base_bytes -= (uint64_t)(L->ffn_up.rows * L->ffn_up.row_bytes) +
					 (uint64_t)(L->ffn_down.rows * L->ffn_down.row_bytes);
		if (pred)
			hp->sparse_base_bytes += (uint64_t)(L->fc1.rows * L->fc1.row_bytes) +
						 (uint64_t)(L->fc2.rows * L->fc2.row_bytes) -
						 (uint64_t)(L->ffn_gate.rows * L->ffn_gate.row_bytes);
	}
	const struct pf_layer *L0 = &m->layers[0];
	hp->neuron_bytes = (uint64_t)(L0->ffn_up.row_bytes + L0->ffn_down_t.row_bytes +
				      (pred ? L0->ffn_gate.row_bytes : 0));
	return 0;
}

void pf_sparse_free(struct pinfer_model *m)
{
	if (m->layers)
		for (int l = 0; l < m->info.n_layer; l++)
			free(m->layers[l].down_t_mem);
	free(m->thresholds);
	m->thresholds = NULL;
}
