/* The load-time half of activation sparsity (docs/sparsity.md): which mode
 * a model runs in, its threshold-mode thresholds and predictors, and the
 * neuron bundles its decode reads (bundle.c). */
#include "sparse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle_file.h"
#include "ffn_store.h"
#include "gguf.h"

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

bool pinfer_model_offload_stats(const struct pinfer_model *m, struct pinfer_offload_stats *out)
{
	if (!m->store)
		return false;
	pf_ffn_store_stats(m->store, out);
	return true;
}

int pinfer_model_set_memory_budget(struct pinfer_model *m, uint64_t bytes, struct pf_err *err)
{
	if (!m->store)
		return pf_errf(err, -EINVAL, "%s: not an offloaded model (a bundle file opened with a memory budget)",
			       m->gguf->path);
	return pf_ffn_store_set_budget(m->store, bytes, err);
}

int pinfer_model_percent_budget(const struct pinfer_model *m, int ffn_percent, uint64_t *bytes, struct pf_err *err)
{
	if (!m->store)
		return pf_errf(err, -EINVAL, "%s: not an offloaded model (a bundle file opened with a memory budget)",
			       m->gguf->path);
	if (ffn_percent < 1 || ffn_percent > 100)
		return pf_errf(err, -EINVAL, "a share of the FFN of %d%% is not 1-100%%", ffn_percent);
	*bytes = pf_ffn_store_percent_budget(m->store, ffn_percent);
	return 0;
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
	bool budget = p->memory_budget || p->ffn_cache_percent;
	if (budget && !m->bundle_file)
		return pf_errf(err, -EINVAL, "%s: a memory budget needs a bundle file (pinfer-model pack)", m->gguf->path);
	if (mode == PINFER_SPARSITY_DENSE && m->bundle_file)
		return pf_errf(err, -EINVAL, "%s: packed for sparse inference (pinfer-model pack); dense mode needs the model it was packed from",
			       m->gguf->path);
	hp->sparsity = mode;
	if (mode == PINFER_SPARSITY_DENSE)
		return 0;
	bool pred = mode == PINFER_SPARSITY_PREDICTOR;
	if (m->bundle_file && budget) {
		m->bundles.gate = m->bundle_gate;
		r = pf_ffn_store_open(&m->store, m, p->memory_budget, p->ffn_cache_percent, err);
	}
	else if (m->bundle_file)
		r = pf_bundle_file_load(m, m->locked, err);
	else if ((r = bind_down_t(m, err)) >= 0)
		r = pf_bundles_build(m, pred, m->locked, err);
	if (r)
		return r;
	/* What a decode step reads whatever fires: in predictor mode the
	 * predictor instead of the gate, which becomes per neuron too. */
	hp->sparse_base_bytes = hp->decode_bytes;
	for (int l = 0; l < hp->n_layer; l++) {
		const struct pf_layer *L = &m->layers[l];
		hp->sparse_base_bytes -= (uint64_t)(L->ffn_up.rows * L->ffn_up.row_bytes) +
					 (uint64_t)(L->ffn_down_t.rows * L->ffn_down_t.row_bytes);
		if (pred)
			hp->sparse_base_bytes += (uint64_t)(L->fc1.rows * L->fc1.row_bytes) +
						 (uint64_t)(L->fc2.rows * L->fc2.row_bytes) -
						 (uint64_t)(L->ffn_gate.rows * L->ffn_gate.row_bytes);
	}
	const struct pf_layer *L0 = &m->layers[0];
	hp->gate_row_bytes = pred ? (uint64_t)L0->ffn_gate.row_bytes : 0;
	hp->neuron_bytes = (uint64_t)(L0->ffn_up.row_bytes + L0->ffn_down_t.row_bytes) + hp->gate_row_bytes;
	return 0;
}

void pf_sparse_free(struct pinfer_model *m)
{
	pf_bundles_free(m);
	pf_ffn_store_free(m->store);
	m->store = NULL;
	free(m->thresholds);
	m->thresholds = NULL;
}
