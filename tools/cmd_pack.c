/* pinfer-model pack: a model rewritten as a bundle file for flash offload
 * (engine/bundle_file.h, docs/format.md).
 *
 * The model is opened in its sparse mode, so its neuron bundles are built
 * exactly as an in-memory run builds them (down rows transposed, or taken
 * from a PowerInfer file), and written out per layer in the order of the
 * profile's activation counts, hottest first, in clusters padded to 4 KiB.
 * The resident tensors are copied, the predictor's fc2 rows and a
 * resident gate's rows permuted to the same order. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle_file.h"
#include "commands.h"
#include "common.h"
#include "crc32c.h"
#include "gguf_writer.h"
#include "model.h"
#include "sparse.h"

enum { OPT_PROFILE = 2000 };

#define CMD "pack"

static void usage(void)
{
	fprintf(stderr,
		"usage: pinfer-model pack -m MODEL --profile PROFILE -o OUT [options]\n"
		"  --profile PROFILE        neuron activation counts (pinfer-model profile)\n"
		"  -o, --output OUT         the bundle file (docs/format.md)\n"
		MODEL_OPTS_HELP
		"The model must run in a sparse mode (gate, threshold or predictor).\n");
}

/* What a layer's FFN becomes. */
struct layer_pack {
	int32_t *order;   /* the neuron at each position */
	int32_t *count;   /* its activation count */
	size_t gate_bytes, up_bytes, down_bytes, bundle_bytes;
	int64_t cluster_neurons, n_clusters;
	size_t cluster_bytes;
	uint32_t *crc;    /* per cluster */
};

struct pack {
	const struct pinfer_model *m;
	const struct gguf_file *src;
	int n_layer;
	int64_t n_ff;
	bool gate;        /* gate rows in the bundles */
	struct layer_pack *layers;
	uint64_t profile_tokens;
};

static const int32_t *sort_counts;

static int by_count(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	if (sort_counts[x] != sort_counts[y])
		return sort_counts[x] > sort_counts[y] ? -1 : 1;
	return (x > y) - (x < y);
}

static int read_profile(struct pack *p, const char *path)
{
	struct gguf_file *f;
	struct pf_err err;
	if (gguf_open(&f, path, &err)) {
		fprintf(stderr, CMD ": %s\n", err.msg);
		return -1;
	}
	int r = -1;
	struct gguf_str arch;
	const char *want = pinfer_model_info(p->m)->arch;
	if (!gguf_get_u64(f, "pinfer.profile.tokens", &p->profile_tokens) || !gguf_get_str(f, "general.architecture", &arch)) {
		fprintf(stderr, CMD ": %s: not a profile (pinfer-model profile writes them)\n", path);
		goto out;
	}
	if (!gguf_str_eq(arch, want)) {
		fprintf(stderr, CMD ": %s: a profile of a '%.*s' model, this one is '%s'\n", path, (int)arch.len,
			arch.ptr, want);
		goto out;
	}
	for (int l = 0; l < p->n_layer; l++) {
		char name[64];
		snprintf(name, sizeof(name), "blk.%d.ffn_act_count", l);
		const struct gguf_tensor *t = gguf_find_tensor(f, name);
		if (!t || t->type != PF_I32 || t->n_dims != 1 || t->ne[0] != (uint64_t)p->n_ff) {
			fprintf(stderr, CMD ": %s: %s is missing or not I32 [%lld]: a profile of another model?\n", path,
				name, (long long)p->n_ff);
			goto out;
		}
		struct layer_pack *lp = &p->layers[l];
		memcpy(lp->count, t->data, (size_t)p->n_ff * sizeof(int32_t));
		for (int64_t j = 0; j < p->n_ff; j++)
			lp->order[j] = (int32_t)j;
		sort_counts = lp->count;
		qsort(lp->order, (size_t)p->n_ff, sizeof(int32_t), by_count);
		/* the counts in position order, as the file stores them */
		int32_t *sorted = malloc((size_t)p->n_ff * sizeof(int32_t));
		if (!sorted) {
			fprintf(stderr, CMD ": out of memory\n");
			goto out;
		}
		for (int64_t j = 0; j < p->n_ff; j++)
			sorted[j] = lp->count[lp->order[j]];
		memcpy(lp->count, sorted, (size_t)p->n_ff * sizeof(int32_t));
		free(sorted);
	}
	r = 0;
out:
	gguf_close(f);
	return r;
}

static int plan(struct pack *p)
{
	for (int l = 0; l < p->n_layer; l++) {
		const struct pf_layer *L = &p->m->layers[l];
		struct layer_pack *lp = &p->layers[l];
		lp->gate_bytes = p->gate ? L->ffn_gate.row_bytes : 0;
		lp->up_bytes = L->ffn_up.row_bytes;
		lp->down_bytes = L->ffn_down_t.row_bytes;
		lp->bundle_bytes = lp->gate_bytes + lp->up_bytes + lp->down_bytes;
		pf_bundle_cluster_shape(lp->bundle_bytes, &lp->cluster_neurons, &lp->cluster_bytes);
		lp->n_clusters = (p->n_ff + lp->cluster_neurons - 1) / lp->cluster_neurons;
		lp->crc = calloc((size_t)lp->n_clusters, sizeof(uint32_t));
		if (!lp->crc)
			return -1;
	}
	return 0;
}

/* The FFN tensors of the source that the bundles replace. */
static bool replaced(const struct pack *p, const struct gguf_tensor *t)
{
	char name[96];
	gguf_str_copy(t->name, name, sizeof(name));
	int l, n = 0;
	char what[64];
	if (sscanf(name, "blk.%d.%63[a-z_0-9].weight%n", &l, what, &n) != 2 || name[n] != '\0')
		return false;
	return !strcmp(what, "ffn_up") || !strcmp(what, "ffn_down") || !strcmp(what, "ffn_down_t") ||
	       (p->gate && !strcmp(what, "ffn_gate"));
}

/* The layer whose neurons index t's rows (the predictor's fc2, a resident
 * gate), or -1 for a tensor copied as it is. */
static int permuted_layer(const struct pack *p, const struct gguf_tensor *t)
{
	char name[96];
	gguf_str_copy(t->name, name, sizeof(name));
	int l, n = 0;
	char what[64];
	if (sscanf(name, "blk.%d.%63[a-z_0-9].weight%n", &l, what, &n) != 2 || name[n] != '\0' || l < 0 ||
	    l >= p->n_layer)
		return -1;
	return !strcmp(what, "fc2") || (!p->gate && !strcmp(what, "ffn_gate")) ? l : -1;
}

/* The per-layer layout keys; -1 when out of memory. */
static int set_layer_keys(struct gguf_writer *w, const struct pack *p)
{
	uint32_t *u32 = malloc((size_t)p->n_layer * sizeof(uint32_t));
	uint64_t *u64 = malloc((size_t)p->n_layer * sizeof(uint64_t));
	if (!u32 || !u64) {
		free(u32);
		free(u64);
		return -1;
	}
	uint64_t n = (uint64_t)p->n_layer;
	for (int l = 0; l < p->n_layer; l++)
		u32[l] = (uint32_t)p->m->layers[l].ffn_up.type;
	gguf_writer_set_arr(w, PF_BUNDLE_KEY_UP_TYPE, GGUF_TYPE_UINT32, u32, n);
	for (int l = 0; l < p->n_layer; l++)
		u32[l] = (uint32_t)p->m->layers[l].ffn_down_t.type;
	gguf_writer_set_arr(w, PF_BUNDLE_KEY_DOWN_TYPE, GGUF_TYPE_UINT32, u32, n);
	if (p->gate) {
		for (int l = 0; l < p->n_layer; l++)
			u32[l] = (uint32_t)p->m->layers[l].ffn_gate.type;
		gguf_writer_set_arr(w, PF_BUNDLE_KEY_GATE_TYPE, GGUF_TYPE_UINT32, u32, n);
	}
	for (int l = 0; l < p->n_layer; l++)
		u32[l] = (uint32_t)p->layers[l].cluster_neurons;
	gguf_writer_set_arr(w, PF_BUNDLE_KEY_CLUSTER_NEURONS, GGUF_TYPE_UINT32, u32, n);
	for (int l = 0; l < p->n_layer; l++)
		u64[l] = p->layers[l].cluster_bytes;
	gguf_writer_set_arr(w, PF_BUNDLE_KEY_CLUSTER_BYTES, GGUF_TYPE_UINT64, u64, n);
	free(u32);
	free(u64);
	return 0;
}

/* Declares every tensor of the output, in file order (docs/format.md). */
static void declare(struct gguf_writer *w, const struct pack *p)
{
	const struct gguf_file *f = p->src;
	char name[96];
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const struct gguf_tensor *t = &f->tensors[i];
		if (replaced(p, t))
			continue;
		gguf_str_copy(t->name, name, sizeof(name));
		gguf_writer_add_tensor(w, name, t->n_dims, t->ne, (enum pf_dtype)t->type);
	}
	uint64_t ne_ff[1] = { (uint64_t)p->n_ff };
	for (int l = 0; l < p->n_layer; l++) {
		snprintf(name, sizeof(name), "blk.%d.ffn_order", l);
		gguf_writer_add_tensor(w, name, 1, ne_ff, PF_I32);
		snprintf(name, sizeof(name), "blk.%d.ffn_count", l);
		gguf_writer_add_tensor(w, name, 1, ne_ff, PF_I32);
	}
	for (int l = 0; l < p->n_layer; l++) {
		uint64_t ne[2] = { p->layers[l].cluster_bytes, (uint64_t)p->layers[l].n_clusters };
		snprintf(name, sizeof(name), "blk.%d.ffn_clusters", l);
		gguf_writer_add_tensor(w, name, 2, ne, PF_I8);
	}
	for (int l = 0; l < p->n_layer; l++) {
		uint64_t ne[1] = { (uint64_t)p->layers[l].n_clusters };
		snprintf(name, sizeof(name), "blk.%d.ffn_cluster_crc", l);
		gguf_writer_add_tensor(w, name, 1, ne, PF_I32);
	}
}

/* Writes the next tensor from buf, its checksum into the table. */
static int put(struct gguf_writer *w, const void *buf, size_t n, uint32_t *crc, struct pf_err *err)
{
	if (crc)
		*crc = pf_crc32c(0, buf, n);
	return gguf_writer_write_data(w, buf, n, err);
}

static int write_resident(struct gguf_writer *w, const struct pack *p, uint32_t *crcs, int *next,
			  struct pf_err *err)
{
	const struct gguf_file *f = p->src;
	int r = 0;
	for (uint64_t i = 0; i < f->n_tensors && !r; i++) {
		const struct gguf_tensor *t = &f->tensors[i];
		if (replaced(p, t))
			continue;
		int l = permuted_layer(p, t);
		if (l < 0) {
			r = put(w, t->data, t->nbytes, &crcs[(*next)++], err);
			continue;
		}
		size_t row = t->nbytes / (uint64_t)p->n_ff;
		uint8_t *buf = malloc(t->nbytes);
		if (!buf)
			return pf_errf(err, -ENOMEM, "out of memory");
		for (int64_t j = 0; j < p->n_ff; j++)
			memcpy(buf + (size_t)j * row, (const uint8_t *)t->data + (size_t)p->layers[l].order[j] * row, row);
		r = put(w, buf, t->nbytes, &crcs[(*next)++], err);
		free(buf);
	}
	for (int l = 0; l < p->n_layer && !r; l++) {
		size_t n = (size_t)p->n_ff * sizeof(int32_t);
		if (!(r = put(w, p->layers[l].order, n, &crcs[(*next)++], err)))
			r = put(w, p->layers[l].count, n, &crcs[(*next)++], err);
	}
	return r;
}

/* A layer's clusters: bundle j of cluster k is position k * neurons + j,
 * the rest of the cluster zeros. */
static int write_clusters(struct gguf_writer *w, const struct pack *p, int l, struct pf_err *err)
{
	const struct pf_layer *L = &p->m->layers[l];
	struct layer_pack *lp = &p->layers[l];
	uint8_t *buf = malloc(lp->cluster_bytes);
	if (!buf)
		return pf_errf(err, -ENOMEM, "out of memory");
	int r = 0;
	for (int64_t k = 0; k < lp->n_clusters && !r; k++) {
		memset(buf, 0, lp->cluster_bytes);
		for (int64_t j = 0; j < lp->cluster_neurons; j++) {
			int64_t pos = k * lp->cluster_neurons + j;
			if (pos >= p->n_ff)
				break;
			int32_t id = lp->order[pos];
			uint8_t *b = buf + (size_t)j * lp->bundle_bytes;
			if (p->gate)
				memcpy(b, pf_weight_row(&L->ffn_gate, id), lp->gate_bytes);
			memcpy(b + lp->gate_bytes, pf_weight_row(&L->ffn_up, id), lp->up_bytes);
			memcpy(b + lp->gate_bytes + lp->up_bytes, pf_weight_row(&L->ffn_down_t, id), lp->down_bytes);
		}
		r = put(w, buf, lp->cluster_bytes, &lp->crc[k], err);
	}
	free(buf);
	return r;
}

static int write_file(const struct pack *p, const char *in_path, const char *out_path)
{
	struct gguf_writer *w = gguf_writer_new();
	if (!w) {
		fprintf(stderr, CMD ": out of memory\n");
		return -1;
	}
	struct pf_err err = { 0 };
	int r = -ENOMEM;
	const char *base = strrchr(in_path, '/');
	gguf_writer_copy_kv(w, p->src, "");
	gguf_writer_set_u32(w, "general.alignment", PF_BUNDLE_BLOCK);
	gguf_writer_set_u32(w, PF_BUNDLE_KEY_VERSION, PF_BUNDLE_VERSION);
	gguf_writer_set_bool(w, PF_BUNDLE_KEY_GATE, p->gate);
	gguf_writer_set_str(w, PF_BUNDLE_KEY_SOURCE, base ? base + 1 : in_path);
	gguf_writer_set_u64(w, PF_BUNDLE_KEY_PROFILE_TOKENS, p->profile_tokens);
	if (set_layer_keys(w, p))
		goto fail_oom;
	/* thresholds given with --calibration travel with the file */
	if (p->m->thresholds)
		gguf_writer_set_arr_f32(w, PF_THRESHOLDS_KEY, p->m->thresholds, (uint64_t)p->n_layer);
	declare(w, p);
	int n_tensors = 0;
	for (uint64_t i = 0; i < p->src->n_tensors; i++)
		n_tensors += !replaced(p, &p->src->tensors[i]);
	n_tensors += 4 * p->n_layer + 1;
	uint64_t ne[1] = { (uint64_t)n_tensors };
	gguf_writer_add_tensor(w, PF_BUNDLE_CRC_TENSOR, 1, ne, PF_I32);
	uint32_t *crcs = calloc((size_t)n_tensors, sizeof(uint32_t));
	if (!crcs)
		goto fail_oom;
	if ((r = gguf_writer_write_header(w, out_path, &err)))
		goto fail;
	int next = 0;
	r = write_resident(w, p, crcs, &next, &err);
	for (int l = 0; l < p->n_layer && !r; l++, next++)
		r = write_clusters(w, p, l, &err);
	for (int l = 0; l < p->n_layer && !r; l++)
		r = put(w, p->layers[l].crc, (size_t)p->layers[l].n_clusters * sizeof(uint32_t), &crcs[next++], &err);
	if (!r)
		r = put(w, crcs, (size_t)n_tensors * sizeof(uint32_t), NULL, &err);
	if (!r)
		r = gguf_writer_finish(w, &err);
fail:
	free(crcs);
	if (r)
		fprintf(stderr, CMD ": %s: %s\n", out_path, err.msg);
	gguf_writer_free(w);
	return r ? -1 : 0;
fail_oom:
	fprintf(stderr, CMD ": out of memory\n");
	gguf_writer_free(w);
	return -1;
}

static void print_summary(const struct pack *p, const char *out_path)
{
	uint64_t ffn = 0, bundles = 0;
	for (int l = 0; l < p->n_layer; l++) {
		const struct layer_pack *lp = &p->layers[l];
		ffn += (uint64_t)lp->n_clusters * lp->cluster_bytes;
		bundles += (uint64_t)p->n_ff * lp->bundle_bytes;
	}
	const struct layer_pack *l0 = &p->layers[0];
	printf("%s: %d layers x %lld neurons, bundles of %zu bytes (%s%s + %s down), %lld per %zu-byte cluster\n",
	       out_path, p->n_layer, (long long)p->n_ff, l0->bundle_bytes, p->gate ? "gate + " : "",
	       pf_dtype_info(p->m->layers[0].ffn_up.type)->name, pf_dtype_info(p->m->layers[0].ffn_down_t.type)->name,
	       (long long)l0->cluster_neurons, l0->cluster_bytes);
	printf("FFN: %.1f MiB in clusters (%.1f MiB of bundles, %.1f%% padding); order from %llu profiled tokens\n",
	       (double)ffn / (1 << 20), (double)bundles / (1 << 20), 100.0 * (double)(ffn - bundles) / (double)ffn,
	       (unsigned long long)p->profile_tokens);
}

int cmd_pack(int argc, char **argv)
{
	static const struct option longopts[] = {
		MODEL_LONG_OPTS,
		{ "profile", required_argument, NULL, OPT_PROFILE },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct model_opts mo;
	model_opts_init(&mo);
	const char *profile = NULL, *out_path = NULL;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, MODEL_SHORT_OPTS "o:h", longopts, NULL)) != -1) {
		int r = model_opts_parse(&mo, opt, optarg, CMD);
		if (r < 0)
			return 2;
		if (r > 0)
			continue;
		switch (opt) {
		case OPT_PROFILE: profile = optarg; break;
		case 'o': out_path = optarg; break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	if (optind < argc)
		return usage_error(CMD, usage, "unexpected argument '%s'", argv[optind]);
	if (!mo.model)
		return usage_error(CMD, usage, "no model given (-m MODEL)");
	if (!profile)
		return usage_error(CMD, usage, "no profile given (--profile PROFILE; pinfer-model profile writes one)");
	if (!out_path)
		return usage_error(CMD, usage, "no output file given (-o OUT)");
	mo.params.mmap_weights = true;  /* nothing is decoded: no copies */
	struct pinfer_model *m = model_opts_open(&mo, CMD);
	if (!m)
		return 1;
	int rc = 1;
	const struct pinfer_model_info *info = pinfer_model_info(m);
	struct pack p = { .m = m, .src = m->gguf, .n_layer = info->n_layer, .n_ff = info->n_ff,
			  .gate = m->bundles.gate };
	if (m->bundle_file) {
		fprintf(stderr, CMD ": %s is already a bundle file\n", mo.model);
		goto out;
	}
	if (info->sparsity == PINFER_SPARSITY_DENSE) {
		fprintf(stderr, CMD ": %s runs densely; pack needs a sparse mode (a ReLU model, or thresholds from pinfer-model calibrate with --calibration)\n",
			mo.model);
		goto out;
	}
	p.layers = calloc((size_t)p.n_layer, sizeof(*p.layers));
	if (!p.layers)
		goto oom;
	for (int l = 0; l < p.n_layer; l++) {
		p.layers[l].order = malloc((size_t)p.n_ff * sizeof(int32_t));
		p.layers[l].count = malloc((size_t)p.n_ff * sizeof(int32_t));
		if (!p.layers[l].order || !p.layers[l].count)
			goto oom;
	}
	if (read_profile(&p, profile))
		goto out;
	if (plan(&p))
		goto oom;
	if (write_file(&p, mo.model, out_path))
		goto out;
	print_summary(&p, out_path);
	rc = 0;
	goto out;
oom:
	fprintf(stderr, CMD ": out of memory\n");
out:
	if (p.layers)
		for (int l = 0; l < p.n_layer; l++) {
			free(p.layers[l].order);
			free(p.layers[l].count);
			free(p.layers[l].crc);
		}
	free(p.layers);
	pinfer_model_free(m);
	return rc;
}
