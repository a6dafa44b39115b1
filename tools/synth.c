/* pinfer-model synth (synth.h). Plain models are random matrices and unit
 * norms, their rows from seeded generators (synth_item.h). The sparse
 * construction (--sparsity, --predictor) is synth_sparse.c's: it gives
 * some of the tensors listed here other roles, whose rows it makes. This
 * file checks the options, lists the tensors and writes them. */
#include "synth.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "gguf.h"
#include "gguf_writer.h"
#include "quant.h"
#include "quantize.h"
#include "rng.h"
#include "synth_item.h"
#include "synth_sparse.h"
#include "threadpool.h"

#define MAX_DIM 1000000  /* the loader's bound on any dimension */

static const struct shape {
	const char *name;
	int n_embd, n_ff, n_layer, n_head, n_head_kv;
} shapes[] = {
	{ "llama2-7b", 4096, 11008, 32, 32, 32 },
	{ "llama2-13b", 5120, 13824, 40, 40, 40 },
	{ "mistral-7b", 4096, 14336, 32, 32, 8 },
	{ "tinyllama-1.1b", 2048, 5632, 22, 32, 4 },
	{ "small", 512, 1376, 4, 8, 4 },
	{ "tiny", 128, 352, 2, 4, 2 },
};

void synth_opts_init(struct synth_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->type = PF_F16;
	o->predictor_type = PF_Q8_0;
	o->n_ctx = 4096;
	o->seed = 1;
}

int synth_set_shape(struct synth_opts *o, const char *name)
{
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		if (!strcmp(name, shapes[i].name)) {
			o->shape = shapes[i].name;
			o->n_embd = shapes[i].n_embd;
			o->n_ff = shapes[i].n_ff;
			o->n_layer = shapes[i].n_layer;
			o->n_head = shapes[i].n_head;
			o->n_head_kv = shapes[i].n_head_kv;
			return 0;
		}
	return -1;
}

void synth_shape_names(char *buf, size_t size)
{
	size_t n = 0;
	buf[0] = 0;
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]) && n < size; i++)
		n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? " " : "", shapes[i].name);
}

const char *synth_default_vocab(char *buf, size_t size)
{
	const char *shared = getenv("SHARED");
	snprintf(buf, size, "%s/models/llama-2-tiny-random/llama-2-tiny-random.gguf",
		 shared && *shared ? shared : "../shared");
	return buf;
}

uint64_t synth_splitmix64(uint64_t x)
{
	return splitmix64(x);
}

/* The factor that gives the sum of four uniform 16-bit lanes (less its
 * mean) a standard deviation std: the sum has mean 4 * 32767.5 and
 * variance 4 * (65536^2 - 1) / 12. */
float synth_lanes_scale(float std)
{
	return std / (float)sqrt((65536.0 * 65536.0 - 1.0) / 3.0);
}

/* Row `row` of a tensor seeded by key: its own generator seeded from (tensor,
 * row), so the bytes do not depend on how rows are split among threads. A
 * value is the sum of the four 16-bit lanes of one xorshift64* output: close
 * enough to normal for weights (and bounded by 3.46 std), at one multiply
 * per value. */
void synth_gen_random(uint64_t key, int64_t row, float std, int64_t n, float *dst)
{
	const float scale = synth_lanes_scale(std);
	uint64_t x = synth_splitmix64(key + (uint64_t)row) | 1;
	for (int64_t i = 0; i < n; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		uint64_t v = x * 0x2545f4914f6cdd1dull;
		int32_t s = (int32_t)(v & 0xffff) + (int32_t)(v >> 16 & 0xffff) +
			    (int32_t)(v >> 32 & 0xffff) + (int32_t)(v >> 48) - 131070;
		dst[i] = (float)s * scale;
	}
}

static void gen_row(void *arg, int64_t row, float *dst)
{
	const struct item *it = arg;
	int64_t n = (int64_t)it->ne[0];
	switch (it->role) {
	case ROLE_ONES:
		for (int64_t i = 0; i < n; i++)
			dst[i] = 1.0f;
		break;
	case ROLE_RANDOM:
		synth_gen_random(it->key, row, it->std, n, dst);
		break;
	default:
		synth_sparse_row(it, row, dst);
		break;
	}
}

static int check_shape(const struct synth_opts *o, struct pf_err *err)
{
	const int dims[] = { o->n_embd, o->n_ff, o->n_layer, o->n_head, o->n_head_kv };
	static const char *const names[] = { "dim", "ff", "layers", "heads", "kv-heads" };
	for (int i = 0; i < 5; i++)
		if (dims[i] < 1 || dims[i] > MAX_DIM)
			return pf_errf(err, -EINVAL, "--%s is %d, expected 1..%d", names[i], dims[i],
				       MAX_DIM);
	if (o->n_embd % o->n_head || (o->n_embd / o->n_head) % 2)
		return pf_errf(err, -EINVAL,
			       "--heads %d must divide --dim %d into heads of an even size (RoPE rotates pairs)",
			       o->n_head, o->n_embd);
	if (o->n_head % o->n_head_kv)
		return pf_errf(err, -EINVAL, "--kv-heads %d must divide --heads %d", o->n_head_kv,
			       o->n_head);
	if (!o->n_ctx)
		return pf_errf(err, -EINVAL, "--ctx must be positive");
	return synth_sparse_check(o, err);
}

/* A matrix whose rows do not fit the type's blocks falls back to a float
 * type the engine runs at any row length. */
static enum pf_dtype matrix_type(enum pf_dtype type, uint64_t cols)
{
	if (cols % pf_dtype_info(type)->block == 0)
		return type;
	return PF_F16;
}

static void add_item(struct item *it, const char *name, uint32_t n_dims, uint64_t cols,
		     uint64_t rows, enum pf_dtype type, uint64_t key)
{
	snprintf(it->name, sizeof(it->name), "%s", name);
	it->n_dims = n_dims;
	it->ne[0] = cols;
	it->ne[1] = rows;
	it->type = n_dims == 1 ? PF_F32 : matrix_type(type, cols);
	it->role = n_dims == 1 ? ROLE_ONES : ROLE_RANDOM;
	it->std = n_dims == 1 ? 0.0f : 1.0f / sqrtf((float)cols);
	it->key = key;
}

/* The llama tensors of a layer, and the predictor's (--predictor): fc1, fc2
 * and ffn_down_t. */
#define LAYER_ITEMS 9
#define PRED_ITEMS 3

size_t synth_layer_items(const struct synth_opts *o)
{
	return LAYER_ITEMS + (o->predictor ? PRED_ITEMS : 0);
}

/* Lists the tensors in the order a forward pass reads them (the predictor's
 * after the layer's FFN: fc2 is made from the gate as written). Returns
 * how many. */
static size_t plan(struct item *items, const struct synth_opts *o, uint64_t n_vocab)
{
	uint64_t d = (uint64_t)o->n_embd, ff = (uint64_t)o->n_ff;
	uint64_t kv = d / (uint64_t)o->n_head * (uint64_t)o->n_head_kv;
	/* Tensor i's rows are seeded from splitmix64(seed) + i, row by row, i
	 * counting the llama tensors only. */
	uint64_t key = synth_splitmix64(o->seed);
	size_t n = 0, i = 0;
	add_item(&items[n], "token_embd.weight", 2, d, n_vocab, o->type, synth_splitmix64(key + i));
	n++, i++;
	static const struct {
		const char *name;
		uint32_t n_dims;
		int cols, rows;  /* 0: dim, 1: ff, 2: kv dim */
	} layer[] = {
		{ "attn_norm", 1, 0, 0 }, { "attn_q", 2, 0, 0 },   { "attn_k", 2, 0, 2 },
		{ "attn_v", 2, 0, 2 },    { "attn_output", 2, 0, 0 }, { "ffn_norm", 1, 0, 0 },
		{ "ffn_gate", 2, 0, 1 },  { "ffn_up", 2, 0, 1 },   { "ffn_down", 2, 1, 0 },
	};
	const uint64_t size[] = { d, ff, kv };
	for (int l = 0; l < o->n_layer; l++) {
		for (size_t k = 0; k < sizeof(layer) / sizeof(layer[0]); k++) {
			char name[64];
			snprintf(name, sizeof(name), "blk.%d.%s.weight", l, layer[k].name);
			add_item(&items[n], name, layer[k].n_dims, size[layer[k].cols],
				 layer[k].n_dims == 1 ? 1 : size[layer[k].rows], o->type,
				 synth_splitmix64(key + i));
			n++, i++;
		}
		if (o->predictor) {
			/* their values come from the layer's struct lowrank and
			 * ffn_down's key */
			char name[64];
			snprintf(name, sizeof(name), "blk.%d.fc1.weight", l);
			add_item(&items[n++], name, 2, d, (uint64_t)o->predictor, o->predictor_type, 0);
			snprintf(name, sizeof(name), "blk.%d.fc2.weight", l);
			add_item(&items[n++], name, 2, (uint64_t)o->predictor, ff, o->predictor_type, 0);
			snprintf(name, sizeof(name), "blk.%d.ffn_down_t.weight", l);
			add_item(&items[n], name, 2, d, ff, o->type, items[n - 3].key);
			items[n].std = items[n - 3].std;
			n++;
		}
	}
	add_item(&items[n], "output_norm.weight", 1, d, 1, o->type, synth_splitmix64(key + i));
	n++, i++;
	add_item(&items[n], "output.weight", 2, d, n_vocab, o->type, synth_splitmix64(key + i));
	return n + 1;
}

static void set_metadata(struct gguf_writer *w, const struct synth_opts *o, const char *name)
{
	gguf_writer_set_str(w, "general.architecture", "llama");
	gguf_writer_set_str(w, "general.name", name);
	gguf_writer_set_u32(w, "general.file_type", quantize_file_type(o->type));
	if (pf_dtype_info(o->type)->block > 1)
		gguf_writer_set_u32(w, "general.quantization_version", 2);
	gguf_writer_set_u32(w, "llama.context_length", o->n_ctx);
	gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)o->n_embd);
	gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)o->n_ff);
	gguf_writer_set_u32(w, "llama.block_count", (uint32_t)o->n_layer);
	gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)o->n_head);
	gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)o->n_head_kv);
	gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)(o->n_embd / o->n_head));
	gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
	gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
	if (o->act != PINFER_ACT_AUTO)
		gguf_writer_set_str(w, "pinfer.ffn_act", pinfer_ffn_act_name(o->act));
	if (o->sparsity > 0)
		gguf_writer_set_f32(w, "pinfer.synth.sparsity", o->sparsity);
	if (o->predictor) {
		/* PowerInfer's: neuron j is predicted when fc2 . relu(fc1 . x) >
		 * it; the margin is in fc2 (docs/sparsity-synth.md) */
		gguf_writer_set_powerinfer(w);
		gguf_writer_set_f32(w, "powerinfer.sparse_threshold", 0.0f);
	}
}

/* Says which matrices fell back to F16 and why, once per row length. */
static void log_fallbacks(FILE *log, const struct item *items, size_t n, enum pf_dtype type)
{
	for (size_t i = 0; i < n; i++) {
		if (items[i].n_dims != 2 || items[i].type == type || items[i].role == ROLE_FC1 ||
		    items[i].role == ROLE_FC2)
			continue;
		bool first = true;
		for (size_t k = 0; k < i && first; k++)
			first = items[k].n_dims != 2 || items[k].type == type ||
				items[k].role == ROLE_FC1 || items[k].role == ROLE_FC2 ||
				items[k].ne[0] != items[i].ne[0];
		if (!first)
			continue;
		int count = 0;
		for (size_t k = i; k < n; k++)
			count += items[k].n_dims == 2 && items[k].type != type &&
				 items[k].role != ROLE_FC1 && items[k].role != ROLE_FC2 &&
				 items[k].ne[0] == items[i].ne[0];
		fprintf(log, "synth: %d matrices with rows of %llu (e.g. %s) written as %s: not a whole number of %s blocks of %u\n",
			count, (unsigned long long)items[i].ne[0], items[i].name,
			pf_dtype_info(items[i].type)->name, pf_dtype_info(type)->name,
			pf_dtype_info(type)->block);
	}
}

static int read_vocab(struct gguf_file **vocab, uint64_t *n_vocab, const char *path,
		      struct pf_err *err)
{
	int r = gguf_open(vocab, path, err);
	if (r)
		return pf_err_prefix(err, r, "vocabulary (--vocab-from, or $SHARED for the default)");
	const struct gguf_array *tokens = gguf_get_arr(*vocab, "tokenizer.ggml.tokens");
	if (!tokens || tokens->type != GGUF_TYPE_STRING || tokens->n == 0)
		return pf_errf(err, -EINVAL,
			       "vocabulary %s: no tokenizer.ggml.tokens string array, expected a GGUF with a tokenizer",
			       path);
	*n_vocab = tokens->n;
	return 0;
}

int synth_model(const char *out, const struct synth_opts *o, struct pf_err *err)
{
	int r;
	const struct pf_quant_ops *ops = pf_quant_ops(o->type);
	if (!ops || !ops->from_float || !ops->vec_dot)
		return pf_errf(err, -EINVAL, "%s: type %d cannot be written as weights", out,
			       (int)o->type);
	if ((r = check_shape(o, err)))
		return r;
	double t0 = now_seconds();
	struct gguf_file *vocab = NULL;
	struct gguf_writer *w = NULL;
	struct pf_pool *pool = NULL;
	struct item *items = NULL;
	struct sparse_plan sp = { 0 };
	uint64_t n_vocab = 0;
	char vocab_path[4096];
	if ((r = read_vocab(&vocab, &n_vocab,
			    o->vocab ? o->vocab : synth_default_vocab(vocab_path, sizeof(vocab_path)),
			    err)))
		goto out;
	size_t n_items = 3 + synth_layer_items(o) * (size_t)o->n_layer;
	items = calloc(n_items, sizeof(*items));
	w = gguf_writer_new();
	if (!items || !w) {
		r = pf_errf(err, -ENOMEM, "out of memory for %zu tensors", n_items);
		goto out;
	}
	int n_threads = o->n_threads > 0 ? o->n_threads : pf_cpu_count();
	if ((r = pf_pool_new(&pool, n_threads))) {
		r = pf_errf(err, r, "cannot start %d threads: %s", n_threads, strerror(-r));
		goto out;
	}
	char shape[96], name[160];
	if (o->shape)
		snprintf(shape, sizeof(shape), "%s", o->shape);
	else
		snprintf(shape, sizeof(shape), "dim%d-ff%d-l%d-h%d-kv%d", o->n_embd, o->n_ff,
			 o->n_layer, o->n_head, o->n_head_kv);
	snprintf(name, sizeof(name), "pinfer-synth %s %s", shape, pf_dtype_info(o->type)->name);
	set_metadata(w, o, name);
	gguf_writer_copy_kv(w, vocab, "tokenizer.");
	n_items = plan(items, o, n_vocab);
	if (o->sparsity > 0 && (r = synth_sparse_plan(&sp, items, o, err)))
		goto out;
	uint64_t total = 0, done = 0;
	for (size_t i = 0; i < n_items; i++) {
		int idx = gguf_writer_add_tensor(w, items[i].name, items[i].n_dims, items[i].ne,
						 items[i].type);
		total += gguf_writer_tensor_nbytes(w, idx);
	}
	if (o->log) {
		fprintf(o->log, "synth: %s, n_vocab %llu, %.1f MiB of weights to %s\n", name,
			(unsigned long long)n_vocab, total / 1048576.0, out);
		log_fallbacks(o->log, items, n_items, o->type);
		synth_sparse_log(o->log, o, &sp);
	}
	if ((r = gguf_writer_write_header(w, out, err)))
		goto out;
	for (size_t i = 0; i < n_items; i++) {
		const struct item *it = &items[i];
		if ((r = quant_write_rows(w, pool, it->type, (int64_t)it->ne[1], (int64_t)it->ne[0],
					  gen_row, (void *)it, err)))
			goto out;
		done += gguf_writer_tensor_nbytes(w, (int)i);
		/* A line per layer (after its last tensor), not per tensor: a 7B
		 * model has 291 of them. */
		bool milestone = strncmp(it->name, "blk.", 4)
					 ? it->n_dims == 2
					 : strstr(it->name, o->predictor ? ".ffn_down_t." : ".ffn_down.") != NULL;
		if (o->log && milestone)
			fprintf(o->log, "synth: %-22s %5.1f%%  %6.1f s\n", it->name,
				100.0 * (double)done / (double)total, now_seconds() - t0);
	}
	if ((r = gguf_writer_finish(w, err)))
		goto out;
	if (o->log) {
		struct stat sb;
		fprintf(o->log, "synth: wrote %s: %.1f MiB in %.1f s\n", out,
			stat(out, &sb) == 0 ? sb.st_size / 1048576.0 : 0.0, now_seconds() - t0);
	}
out:
	pf_pool_free(pool);
	gguf_writer_free(w);
	free(items);
	synth_sparse_plan_free(&sp);
	gguf_close(vocab);
	return r;
}
