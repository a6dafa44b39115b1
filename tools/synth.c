/* pinfer-model synth (synth.h). Plain models are random matrices and unit
 * norms. Sparse models (--sparsity S with --act relu|drelu) are built so
 * that their own forward pass leaves about S of the FFN activations at
 * exactly zero for every token (docs/sparsity-synth.md):
 *
 *   - a bias channel: every token embedding has the constant BIAS_CHANNEL
 *     in dimension 0, and the matrices that write the residual stream
 *     (attn_output, ffn_down) have row 0 zero, so x[0] never changes;
 *   - ffn_norm's weight of dimension 0 (the layer's "gain") scales it so
 *     that after rmsnorm it is BIAS_GAIN times the norm N of the other
 *     dimensions, from an analytic prediction of N at that layer;
 *   - column 0 of ffn_gate (and of ffn_up for dReLU) is then a bias: row
 *     j's rest is normalized, so gate_j = sigma (mu_j + z) with z ~ N(0, 1)
 *     (over the neurons for one token; over the tokens for one neuron),
 *     and neuron j fires with probability Phi(mu_j);
 *   - the mu_j of a layer are the normal quantiles m + SPREAD eps_j, so a
 *     few neurons fire often and most rarely, and the mean is 1 - S;
 *   - attn_q, attn_k, attn_v (and ReLU's ffn_up) have column 0 zero, and
 *     attn_q is QUERY_GAIN x attn_k, so that each head attends mostly to
 *     its own token and the energy attention adds is known. */
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
#include "threadpool.h"

#define MAX_DIM 1000000  /* the loader's bound on any dimension */

/* The sparse construction's constants (docs/sparsity-synth.md). */
#define BIAS_CHANNEL 4.0f  /* x[0] of every token, in embedding standard deviations */
#define BIAS_GAIN 0.5f     /* the FFN input's x[0] over the norm of its other dimensions */
#define QUERY_GAIN 2.0f    /* attn_q = QUERY_GAIN attn_k: each head attends to its own token */
#define SPREAD 1.4         /* std of the neurons' probit biases: how heavy the hot head is */

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

/* How a tensor's rows are made. Plain synthesis uses the first two; the
 * sparse construction (see the comment at the top of synth.h and
 * docs/sparsity-synth.md) the others. */
enum role {
	ROLE_RANDOM,     /* approximately normal, std */
	ROLE_ONES,       /* a norm: all ones */
	ROLE_EMBD,       /* bias channel in column 0, the rest of norm exactly std sqrt(cols - 1) */
	ROLE_READ,       /* random with column 0 zero: blind to the bias channel */
	ROLE_QUERY,      /* QUERY_GAIN x the attn_k row it meets in the score: heads attend to their own token */
	ROLE_WRITE,      /* random with row 0 zero: never writes the bias channel */
	ROLE_BIASED,     /* column 0 a neuron's bias, the rest of norm exactly std sqrt(cols - 1) */
	ROLE_FFN_NORM,   /* ones, but the bias channel's gain in column 0 */
};

/* One tensor to write. */
struct item {
	char name[64];
	uint32_t n_dims;
	uint64_t ne[2];
	enum pf_dtype type;
	enum role role;
	float std;
	uint64_t key;        /* seeds its rows */
	/* sparse roles only */
	const float *mu;     /* ROLE_BIASED: each row's bias in noise standard deviations */
	float gain;          /* ROLE_FFN_NORM: the weight of column 0 */
	uint64_t src_key;    /* ROLE_QUERY: attn_k's key */
	int head_dim, group; /* ROLE_QUERY: row r copies attn_k row (r / head_dim / group) * head_dim + r % head_dim */
};

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Row `row` of a tensor seeded by key: its own generator seeded from (tensor,
 * row), so the bytes do not depend on how rows are split among threads. A
 * value is the sum of the four 16-bit lanes of one xorshift64* output: close
 * enough to normal for weights (and bounded by 3.46 std), at one multiply
 * per value. */
static void gen_random(uint64_t key, int64_t row, float std, int64_t n, float *dst)
{
	/* The lanes' sum has mean 4 * 32767.5 and variance 4 * (65536^2 - 1) / 12. */
	const float scale = std / (float)sqrt((65536.0 * 65536.0 - 1.0) / 3.0);
	uint64_t x = splitmix64(key + (uint64_t)row) | 1;
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

/* Scales dst[1..n-1] to norm std sqrt(n - 1) exactly. */
static void normalize_tail(float *dst, int64_t n, float std)
{
	double ss = 0;
	for (int64_t i = 1; i < n; i++)
		ss += (double)dst[i] * dst[i];
	if (ss <= 0)
		return;
	float s = (float)((double)std * sqrt((double)(n - 1) / ss));
	for (int64_t i = 1; i < n; i++)
		dst[i] *= s;
}

static void gen_row(void *arg, int64_t row, float *dst)
{
	const struct item *it = arg;
	int64_t n = (int64_t)it->ne[0];
	switch (it->role) {
	case ROLE_ONES:
	case ROLE_FFN_NORM:
		for (int64_t i = 0; i < n; i++)
			dst[i] = 1.0f;
		if (it->role == ROLE_FFN_NORM)
			dst[0] = it->gain;
		break;
	case ROLE_RANDOM:
		gen_random(it->key, row, it->std, n, dst);
		break;
	case ROLE_EMBD:
		gen_random(it->key, row, it->std, n, dst);
		normalize_tail(dst, n, it->std);
		/* The channel stays the largest value of its block, which the
		 * block formats then store exactly. */
		for (int64_t i = 1; i < n; i++)
			dst[i] = fminf(fmaxf(dst[i], -0.9f * BIAS_CHANNEL * it->std),
				       0.9f * BIAS_CHANNEL * it->std);
		dst[0] = BIAS_CHANNEL * it->std;
		break;
	case ROLE_READ:
		gen_random(it->key, row, it->std, n, dst);
		dst[0] = 0.0f;
		break;
	case ROLE_QUERY: {
		/* attn_k's std is attn_q's: both have rows of n_embd */
		int64_t hd = it->head_dim;
		int64_t src = row / hd / it->group * hd + row % hd;
		gen_random(it->src_key, src, it->std, n, dst);
		dst[0] = 0.0f;
		for (int64_t i = 1; i < n; i++)
			dst[i] *= QUERY_GAIN;
		break;
	}
	case ROLE_WRITE:
		if (row == 0)
			memset(dst, 0, (size_t)n * sizeof(float));
		else
			gen_random(it->key, row, it->std, n, dst);
		break;
	case ROLE_BIASED:
		/* The rest's dot product with an input whose dimensions 1.. have
		 * norm N has std `std N`; column 0 meets BIAS_GAIN N. */
		gen_random(it->key, row, it->std, n, dst);
		normalize_tail(dst, n, it->std);
		dst[0] = it->mu[row] * it->std / BIAS_GAIN;
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
	if (o->sparsity != 0 && !(o->sparsity > 0 && o->sparsity < 1))
		return pf_errf(err, -EINVAL, "--sparsity %g: expected a fraction strictly between 0 and 1",
			       (double)o->sparsity);
	if (o->sparsity != 0 && o->act != PINFER_ACT_RELU && o->act != PINFER_ACT_DRELU)
		return pf_errf(err, -EINVAL,
			       "--sparsity needs --act relu or drelu: a SiLU model has no exact zeros");
	return 0;
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

/* Lists the tensors in the order a forward pass reads them. Returns how
 * many. */
static size_t plan(struct item *items, const struct synth_opts *o, uint64_t n_vocab)
{
	uint64_t d = (uint64_t)o->n_embd, ff = (uint64_t)o->n_ff;
	uint64_t kv = d / (uint64_t)o->n_head * (uint64_t)o->n_head_kv;
	/* Tensor i's rows are seeded from splitmix64(seed) + i, row by row. */
	uint64_t key = splitmix64(o->seed);
	size_t n = 0;
	add_item(&items[n], "token_embd.weight", 2, d, n_vocab, o->type, splitmix64(key + n));
	n++;
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
	for (int l = 0; l < o->n_layer; l++)
		for (size_t k = 0; k < sizeof(layer) / sizeof(layer[0]); k++) {
			char name[64];
			snprintf(name, sizeof(name), "blk.%d.%s.weight", l, layer[k].name);
			add_item(&items[n], name, layer[k].n_dims, size[layer[k].cols],
				 layer[k].n_dims == 1 ? 1 : size[layer[k].rows], o->type,
				 splitmix64(key + n));
			n++;
		}
	add_item(&items[n], "output_norm.weight", 1, d, 1, o->type, splitmix64(key + n));
	n++;
	add_item(&items[n], "output.weight", 2, d, n_vocab, o->type, splitmix64(key + n));
	return n + 1;
}

/* ---- The sparse construction (--sparsity) ---- */

static double norm_cdf(double x)
{
	return 0.5 * erfc(-x / M_SQRT2);
}

/* E[relu(mu + z)^2] for z ~ N(0, 1). */
static double relu_sq_mean(double mu)
{
	return (mu * mu + 1.0) * norm_cdf(mu) + mu * exp(-0.5 * mu * mu) / sqrt(2.0 * M_PI);
}

/* The inverse of norm_cdf for 0 < p < 1: Acklam's rational approximation
 * (relative error 1.2e-9), polished by one Halley step. */
static double norm_quantile(double p)
{
	static const double a[] = { -3.969683028665376e+01, 2.209460984245205e+02,
				    -2.759285104469687e+02, 1.383577518672690e+02,
				    -3.066479806614716e+01, 2.506628277459239e+00 };
	static const double b[] = { -5.447609879822406e+01, 1.615858368580409e+02,
				    -1.556989798598866e+02, 6.680131188771972e+01,
				    -1.328068155288572e+01 };
	static const double c[] = { -7.784894002430293e-03, -3.223964580411365e-01,
				    -2.400758277161838e+00, -2.549732539343734e+00,
				    4.374664141464968e+00, 2.938163982698783e+00 };
	static const double d[] = { 7.784695709041462e-03, 3.224671290700398e-01,
				    2.445134137142996e+00, 3.754408661907416e+00 };
	double x;
	if (p < 0.02425 || p > 1 - 0.02425) {
		double q = sqrt(-2.0 * log(p < 0.5 ? p : 1.0 - p));
		x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
		    ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
		if (p > 0.5)
			x = -x;
	} else {
		double q = p - 0.5, r = q * q;
		x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
		    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
	}
	double e = norm_cdf(x) - p;
	double u = e * sqrt(2.0 * M_PI) * exp(0.5 * x * x);
	return x - u / (1.0 + 0.5 * x * u);
}

/* The x with norm_cdf(x)^2 = norm_cdf(t): dReLU splits a neuron's firing
 * probability evenly between gate and up. The upper tail is computed from
 * 1 - norm_cdf(t), which keeps its precision where norm_cdf(t) rounds to 1. */
static double split_sqrt(double t)
{
	if (t < 0)
		return norm_quantile(sqrt(norm_cdf(t)));
	return -norm_quantile(norm_cdf(-t) / (1.0 + sqrt(norm_cdf(t))));
}

struct sparse_plan {
	float *mu;    /* n_layer * n_ff: gate's standardized bias of each neuron */
	float *nu;    /* the same for up (dReLU; NULL for ReLU) */
	float *gain;  /* n_layer: ffn_norm's weight of the bias channel */
};

static void sparse_plan_free(struct sparse_plan *sp)
{
	free(sp->mu);
	free(sp->nu);
	free(sp->gain);
}

/* Layer l's neurons: each gets a standardized bias t = m + SPREAD * eps,
 * eps the normal quantile of its rank under a random permutation (so the
 * biases are stratified, their distribution exact, and the hot neurons
 * scattered over the layer), m such that the mean of norm_cdf(t) over
 * eps ~ N(0, 1) is 1 - sparsity. Returns the layer's sum of E[act^2] in
 * units of the gate and up noise variances. */
static double layer_biases(const struct synth_opts *o, int l, uint32_t *perm, float *mu,
			   float *nu)
{
	int ff = o->n_ff;
	double m = norm_quantile(1.0 - o->sparsity) * sqrt(1.0 + SPREAD * SPREAD);
	uint64_t x = splitmix64(splitmix64(o->seed ^ 0x5ba75e5ba75e5ba7ull) + (uint64_t)l);
	for (int j = 0; j < ff; j++)
		perm[j] = (uint32_t)j;
	for (int j = ff - 1; j > 0; j--) {
		x = splitmix64(x);
		int r = (int)(x % (uint64_t)(j + 1));
		uint32_t t = perm[j];
		perm[j] = perm[r];
		perm[r] = t;
	}
	double energy = 0;
	for (int j = 0; j < ff; j++) {
		double t = m + SPREAD * norm_quantile((perm[j] + 0.5) / ff);
		t = fmin(fmax(t, -30.0), 30.0);
		if (nu) {
			double s = split_sqrt(t);
			mu[j] = nu[j] = (float)s;
			energy += relu_sq_mean(s) * relu_sq_mean(s);
		} else {
			mu[j] = (float)t;
			energy += relu_sq_mean(t);
		}
	}
	return energy;
}

/* The biases of every layer, and the bias channel's gain at every FFN
 * input from the predicted norm of the residual stream's other dimensions
 * (docs/sparsity-synth.md):
 *   R^2 of the embeddings            d - 1 (normalized rows, std 1)
 *   N^2 = |rmsnorm(x)[1..]|^2        R^2 d / (C^2 + R^2)
 *   attention adds                   (d - 1) / d N^2 (each head sees its own token's v)
 *   the FFN adds                     (d - 1) / n_ff (N^2 / d)^2 sum_j E[act_j^2 / noise^2]
 * and gain = BIAS_GAIN R / C makes the FFN input's bias channel BIAS_GAIN N. */
static int sparse_plan_make(struct sparse_plan *sp, const struct synth_opts *o,
			    struct pf_err *err)
{
	size_t nl = (size_t)o->n_layer, ff = (size_t)o->n_ff;
	bool drelu = o->act == PINFER_ACT_DRELU;
	uint32_t *perm = malloc(ff * sizeof(*perm));
	sp->mu = malloc(nl * ff * sizeof(float));
	sp->nu = drelu ? malloc(nl * ff * sizeof(float)) : NULL;
	sp->gain = malloc(nl * sizeof(float));
	if (!perm || !sp->mu || (drelu && !sp->nu) || !sp->gain) {
		free(perm);
		return pf_errf(err, -ENOMEM, "out of memory for the biases of %zu neurons", nl * ff);
	}
	double d = o->n_embd, C = BIAS_CHANNEL, R2 = d - 1.0;
	for (size_t l = 0; l < nl; l++) {
		double energy = layer_biases(o, (int)l, perm, sp->mu + l * ff,
					     drelu ? sp->nu + l * ff : NULL);
		double N2 = R2 * d / (C * C + R2);
		R2 += (d - 1.0) / d * N2;
		sp->gain[l] = (float)(BIAS_GAIN * sqrt(R2) / C);
		N2 = R2 * d / (C * C + R2);
		R2 += (d - 1.0) / (double)ff * (N2 / d) * (N2 / d) * energy;
	}
	free(perm);
	return 0;
}

/* Gives the tensors of plan() their sparse roles; the embeddings get std 1
 * (instead of 1/sqrt(d)), so that the token stays a visible part of the
 * residual stream next to what the layers add. */
static void sparse_roles(struct item *items, const struct synth_opts *o,
			 const struct sparse_plan *sp)
{
	size_t ff = (size_t)o->n_ff;
	items[0].role = ROLE_EMBD;
	items[0].std = 1.0f;
	for (int l = 0; l < o->n_layer; l++) {
		struct item *it = &items[1 + 9 * (size_t)l];  /* attn_norm .. ffn_down */
		it[1].role = ROLE_QUERY;
		it[1].src_key = it[2].key;
		it[1].head_dim = o->n_embd / o->n_head;
		it[1].group = o->n_head / o->n_head_kv;
		it[2].role = it[3].role = ROLE_READ;
		it[4].role = it[8].role = ROLE_WRITE;
		it[5].role = ROLE_FFN_NORM;
		it[5].gain = sp->gain[l];
		it[6].role = ROLE_BIASED;
		it[6].mu = sp->mu + (size_t)l * ff;
		if (sp->nu) {
			it[7].role = ROLE_BIASED;
			it[7].mu = sp->nu + (size_t)l * ff;
		} else {
			it[7].role = ROLE_READ;
		}
	}
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
}

/* Says which matrices fell back to F16 and why, once per row length. */
static void log_fallbacks(FILE *log, const struct item *items, size_t n, enum pf_dtype type)
{
	for (size_t i = 0; i < n; i++) {
		if (items[i].n_dims != 2 || items[i].type == type)
			continue;
		bool first = true;
		for (size_t k = 0; k < i && first; k++)
			first = items[k].n_dims != 2 || items[k].type == type ||
				items[k].ne[0] != items[i].ne[0];
		if (!first)
			continue;
		int count = 0;
		for (size_t k = i; k < n; k++)
			count += items[k].n_dims == 2 && items[k].type != type &&
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
	size_t n_items = 3 + 9 * (size_t)o->n_layer;
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
	if (o->sparsity > 0) {
		if ((r = sparse_plan_make(&sp, o, err)))
			goto out;
		sparse_roles(items, o, &sp);
	}
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
		if (o->sparsity > 0)
			fprintf(o->log, "synth: %s FFN built to be %.3g sparse; bias channel gain %.3g (layer 0) to %.3g (layer %d)\n",
				pinfer_ffn_act_name(o->act), (double)o->sparsity, (double)sp.gain[0],
				(double)sp.gain[o->n_layer - 1], o->n_layer - 1);
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
		bool milestone = strncmp(it->name, "blk.", 4) ? it->n_dims == 2
							      : strstr(it->name, ".ffn_down.") != NULL;
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
	sparse_plan_free(&sp);
	gguf_close(vocab);
	return r;
}
