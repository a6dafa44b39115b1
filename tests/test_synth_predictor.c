/* pinfer-model synth --sparsity S --predictor R: the file is in PowerInfer's
 * format (magic PWRI) with, per layer, a low-rank activation predictor
 * (blk.N.fc1, blk.N.fc2) and the down projection transposed
 * (blk.N.ffn_down_t), and the predictor must find the neurons the model's
 * own forward pass fires (docs/sparsity-synth.md, "Predictors").
 *
 * The predictor is evaluated here, independently of the engine's
 * predictor mode: the model runs densely over a real prompt (one prefill)
 * and greedy decode, 64 tokens in all, and an FFN probe computes, for every
 * token and layer, s = fc2 . relu(fc1 . x) from the file's tensors and
 * compares {j : s_j > powerinfer.sparse_threshold} with the neurons whose
 * activation is not zero. Models are small: dim 256, ff 1024, 4 layers,
 * R = 64. */
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "gguf.h"
#include "quant.h"
#include "synth.h"

#define N_TOKENS 64
#define N_LAYER 4
#define N_EMBD 256
#define N_FF 1024
#define R_HIDDEN 64

static void opts(struct synth_opts *o, enum pinfer_ffn_act act, enum pf_dtype type, uint64_t seed)
{
	synth_opts_init(o);
	o->predictor_type = PF_Q8_0;
	o->n_embd = N_EMBD;
	o->n_ff = N_FF;
	o->n_layer = N_LAYER;
	o->n_head = 4;
	o->n_head_kv = 4;
	o->type = type;
	o->act = act;
	o->sparsity = 0.9f;
	o->predictor = R_HIDDEN;
	o->seed = seed;
	o->n_threads = 2;
	o->n_ctx = 256;
	o->vocab = shared_path("models/llama-2-tiny-random/llama-2-tiny-random.gguf");
}

static struct gguf_file *open_or_fail(const char *path)
{
	struct gguf_file *f;
	struct pf_err err;
	if (gguf_open(&f, path, &err))
		fail_msg("%s", err.msg);
	return f;
}

/* A matrix of the file as floats, rows x cols (GGUF ne[1] x ne[0]). */
static float *read_matrix(const struct gguf_file *f, const char *name, uint64_t cols,
			  uint64_t rows)
{
	const struct gguf_tensor *t = gguf_find_tensor(f, name);
	if (!t)
		fail_msg("%s: no tensor %s", f->path, name);
	assert_int_equal(t->n_dims, 2);
	assert_int_equal(t->ne[0], cols);
	assert_int_equal(t->ne[1], rows);
	const struct pf_quant_ops *ops = pf_quant_ops(t->type);
	assert_non_null(ops);
	assert_non_null(ops->to_float);
	uint64_t row_bytes;
	assert_true(pf_dtype_bytes(t->type, cols, &row_bytes));
	float *m = malloc(rows * cols * sizeof(float));
	assert_non_null(m);
	for (uint64_t r = 0; r < rows; r++)
		ops->to_float((const uint8_t *)t->data + r * row_bytes, m + r * cols, (int64_t)cols);
	return m;
}

/* The file's predictors, and what the probe counts: per layer, the (token,
 * neuron) pairs active, predicted and both, and gate - s in units of the
 * gate's noise-free standard deviation sigma N (sigma = 1/sqrt(dim), N the
 * norm of x[1..]): its mean over the neurons (minus the margin) and its
 * variance (the noise the predictor does not see), summed over the
 * tokens. */
struct pred {
	float *fc1[N_LAYER], *fc2[N_LAYER];
	float theta;
	float shift;  /* added to theta: a control */
	uint64_t rows[N_LAYER], active[N_LAYER], predicted[N_LAYER], hit[N_LAYER];
	double offset[N_LAYER], noise2[N_LAYER];
};

static void pred_load(struct pred *p, const char *path)
{
	memset(p, 0, sizeof(*p));
	struct gguf_file *f = open_or_fail(path);
	assert_true(f->powerinfer);
	assert_true(gguf_get_f32(f, "powerinfer.sparse_threshold", &p->theta));
	for (int l = 0; l < N_LAYER; l++) {
		char name[64];
		snprintf(name, sizeof(name), "blk.%d.fc1.weight", l);
		p->fc1[l] = read_matrix(f, name, N_EMBD, R_HIDDEN);
		snprintf(name, sizeof(name), "blk.%d.fc2.weight", l);
		p->fc2[l] = read_matrix(f, name, R_HIDDEN, N_FF);
	}
	gguf_close(f);
}

static void pred_free(struct pred *p)
{
	for (int l = 0; l < N_LAYER; l++) {
		free(p->fc1[l]);
		free(p->fc2[l]);
	}
}

static void pred_reset(struct pred *p)
{
	memset(p->rows, 0, sizeof(p->rows));
	memset(p->active, 0, sizeof(p->active));
	memset(p->predicted, 0, sizeof(p->predicted));
	memset(p->hit, 0, sizeof(p->hit));
	memset(p->offset, 0, sizeof(p->offset));
	memset(p->noise2, 0, sizeof(p->noise2));
}

static void probe(void *data, int layer, int T, const float *x, const float *gate, const float *act)
{
	struct pred *p = data;
	for (int t = 0; t < T; t++) {
		const float *xt = x + (size_t)t * N_EMBD;
		float h[R_HIDDEN];
		double norm2 = 0, sum = 0, sum2 = 0;
		for (int i = 1; i < N_EMBD; i++)
			norm2 += (double)xt[i] * xt[i];
		double sigma_n = sqrt(norm2 / N_EMBD);
		for (int k = 0; k < R_HIDDEN; k++) {
			const float *w = p->fc1[layer] + (size_t)k * N_EMBD;
			double s = 0;
			for (int i = 0; i < N_EMBD; i++)
				s += (double)w[i] * xt[i];
			h[k] = s > 0 ? (float)s : 0.0f;
		}
		for (int j = 0; j < N_FF; j++) {
			const float *w = p->fc2[layer] + (size_t)j * R_HIDDEN;
			double s = 0;
			for (int k = 0; k < R_HIDDEN; k++)
				s += (double)w[k] * h[k];
			bool pred = s > p->theta + p->shift;
			bool on = act[(size_t)t * N_FF + j] != 0.0f;
			p->active[layer] += on;
			p->predicted[layer] += pred;
			p->hit[layer] += on && pred;
			if (gate) {
				double r = (gate[(size_t)t * N_FF + j] - s) / sigma_n;
				sum += r;
				sum2 += r * r;
			}
		}
		p->offset[layer] += sum / N_FF;
		p->noise2[layer] += sum2 / N_FF - (sum / N_FF) * (sum / N_FF);
		p->rows[layer]++;
	}
}

/* Runs the model at path in the given mode over a story (one prefill)
 * and greedy decode up to N_TOKENS tokens, with the predictor p probing;
 * the tokens go to toks. */
static void run(const char *path, enum pinfer_sparsity mode, struct pred *p, int32_t *toks)
{
	const struct test_probe tp = { probe, p, N_EMBD, N_FF, N_LAYER };
	pred_reset(p);
	test_probe_run(path, mode, &tp, N_TOKENS, toks, NULL);
	for (int l = 0; l < N_LAYER; l++)
		assert_int_equal(p->rows[l], N_TOKENS);
}

/* Feeds toks (N_TOKENS) one at a time (decode steps) in the given mode and
 * writes the greedy choice after each to best. Returns -1 when the model
 * does not open in that mode, else 0. */
static int forced(const char *path, enum pinfer_sparsity mode, const int32_t *toks, int32_t *best)
{
	struct pinfer_model_params mp;
	pinfer_model_params_default(&mp);
	mp.sparsity = mode;
	struct pinfer_model *m;
	struct pf_err err;
	if (pinfer_model_open(&m, path, &mp, &err)) {
		print_message("%s mode does not open: %s\n", pinfer_sparsity_name(mode), err.msg);
		return -1;
	}
	struct pinfer_ctx *ctx = test_new_ctx(m, N_TOKENS + 8, 2);
	for (int i = 0; i < N_TOKENS; i++) {
		assert_int_equal(pinfer_eval(ctx, &toks[i], 1, NULL), 0);
		best[i] = test_argmax(pinfer_logits(ctx, -1), pinfer_model_info(m)->n_vocab);
	}
	pinfer_ctx_free(ctx);
	pinfer_model_free(m);
	return 0;
}

/* Measured with this protocol over seeds 1-3 x relu/drelu x f32/q8_0 (see
 * docs/sparsity-synth.md): recall 0.9923-0.9971 per layer, predicted/active
 * 1.095-1.149 (the margin is chosen for a recall of 0.995; dReLU's needs
 * less), sparsity 0.895-0.904, the noise 0.099-0.102 (the construction's
 * is 0.1, q8_0 adds 0.006). */
#define MIN_RECALL 0.99
#define MAX_RATIO 1.5
#define TOL_LAYER 0.06
#define NOISE_MIN 0.07
#define NOISE_MAX 0.14
/* With fc1 and fc2 in q4_0 their rounding adds 0.14 at this size. */
#define NOISE_MAX_Q4_0 0.2

struct result {
	double min_recall, max_ratio;
};

static struct result check_layers(const struct pred *p, const char *what, bool strict, double noise_max)
{
	struct result res = { 1.0, 0.0 };
	print_message("%s: per layer recall / predicted over active / sparsity / noise / offset:",
		      what);
	for (int l = 0; l < N_LAYER; l++) {
		double recall = p->active[l] ? (double)p->hit[l] / (double)p->active[l] : 1.0;
		double ratio = p->active[l] ? (double)p->predicted[l] / (double)p->active[l] : 0.0;
		double sparsity = 1.0 - (double)p->active[l] / ((double)N_TOKENS * N_FF);
		double noise = sqrt(p->noise2[l] / (double)p->rows[l]);
		double offset = p->offset[l] / (double)p->rows[l];
		print_message(" %.4f/%.3f/%.3f/%.3f/%.3f", recall, ratio, sparsity, noise, offset);
		if (recall < res.min_recall)
			res.min_recall = recall;
		if (ratio > res.max_ratio)
			res.max_ratio = ratio;
		if (strict) {
			assert_true(fabs(sparsity - 0.9) <= TOL_LAYER);
			/* fc2 . relu(fc1 . x) is the gate without its noise
			 * (and with the margin) */
			assert_true(noise > NOISE_MIN && noise < noise_max);
		}
	}
	print_message("\n");
	if (strict) {
		assert_true(res.min_recall >= MIN_RECALL);
		assert_true(res.max_ratio <= MAX_RATIO);
	}
	return res;
}

static void path_of(char *path, size_t size, enum pinfer_ffn_act act, enum pf_dtype type,
		    enum pf_dtype pred_type, uint64_t seed)
{
	snprintf(path, size, "%s/%s-%s-%s-%llu.gguf", test_dir, pinfer_ffn_act_name(act),
		 pf_dtype_info(type)->name, pf_dtype_info(pred_type)->name, (unsigned long long)seed);
}

/* The predictor against the model's dense forward pass; then, when the
 * engine runs predictor mode on the file, its greedy choices, step by step
 * along the dense run's tokens (so that one near-tie of a random model's
 * logits does not send the rest elsewhere), against gate mode's (every
 * neuron that fires, and the same ffn_down_t) and dense mode's. In a
 * quantized file ffn_down_t is rounded along its own rows, which alone
 * moves a few of a random model's near-ties (gate mode's choices differ
 * from dense's in up to 4 of 64 steps with q8_0), so the check against
 * dense is looser there. */
static void check(enum pinfer_ffn_act act, enum pf_dtype type, enum pf_dtype pred_type, uint64_t seed)
{
	char path[512], what[128];
	path_of(path, sizeof(path), act, type, pred_type, seed);
	struct synth_opts o;
	opts(&o, act, type, seed);
	o.predictor_type = pred_type;
	test_synth_or_fail(path, &o);
	static struct pred p;
	pred_load(&p, path);
	assert_true(p.theta == 0.0f);
	int32_t toks[N_TOKENS], dense[N_TOKENS], gate[N_TOKENS], sparse[N_TOKENS];
	run(path, PINFER_SPARSITY_DENSE, &p, toks);
	snprintf(what, sizeof(what), "%s %s (predictor %s) seed %llu", pinfer_ffn_act_name(act),
		 pf_dtype_info(type)->name, pf_dtype_info(pred_type)->name, (unsigned long long)seed);
	check_layers(&p, what, true, pred_type == PF_Q4_0 ? NOISE_MAX_Q4_0 : NOISE_MAX);
	pred_free(&p);

	if (forced(path, PINFER_SPARSITY_PREDICTOR, toks, sparse) == 0) {
		assert_int_equal(forced(path, PINFER_SPARSITY_DENSE, toks, dense), 0);
		assert_int_equal(forced(path, PINFER_SPARSITY_GATE, toks, gate), 0);
		int as_dense = 0, as_gate = 0;
		for (int i = 0; i < N_TOKENS; i++) {
			as_dense += dense[i] == sparse[i];
			as_gate += gate[i] == sparse[i];
		}
		print_message("%s: predictor mode picks gate mode's token in %d of %d steps, dense's in %d\n",
			      what, as_gate, N_TOKENS, as_dense);
		assert_true(as_gate >= N_TOKENS * 95 / 100);
		assert_true(as_dense >= N_TOKENS * (type == PF_F32 ? 95 : 90) / 100);
	}
	remove(path);
}

static void check_seeds(enum pinfer_ffn_act act, enum pf_dtype type, enum pf_dtype pred_type)
{
	for (uint64_t seed = 1; seed <= 3; seed++)
		check(act, type, pred_type, seed);
}

static void test_relu_f32(void **state) { (void)state; check_seeds(PINFER_ACT_RELU, PF_F32, PF_Q8_0); }
static void test_relu_q8_0(void **state) { (void)state; check_seeds(PINFER_ACT_RELU, PF_Q8_0, PF_Q8_0); }
static void test_drelu_f32(void **state) { (void)state; check_seeds(PINFER_ACT_DRELU, PF_F32, PF_Q8_0); }
static void test_drelu_q8_0(void **state) { (void)state; check_seeds(PINFER_ACT_DRELU, PF_Q8_0, PF_Q8_0); }

/* A q4_0 predictor: its margin covers its own rounding (without that,
 * recall fell to 0.97 at this size). */
static void test_relu_pred_q4_0(void **state) { (void)state; check_seeds(PINFER_ACT_RELU, PF_Q8_0, PF_Q4_0); }
static void test_drelu_pred_q4_0(void **state) { (void)state; check_seeds(PINFER_ACT_DRELU, PF_Q8_0, PF_Q4_0); }

/* The checks can fail: another seed's predictor on a model finds neither
 * its neurons nor few enough, and the model's own without its margin
 * (theta raised by it) misses more than 1%. */
static void test_controls(void **state)
{
	(void)state;
	char a[512], b[512];
	path_of(a, sizeof(a), PINFER_ACT_RELU, PF_Q8_0, PF_Q8_0, 11);
	path_of(b, sizeof(b), PINFER_ACT_RELU, PF_Q8_0, PF_Q8_0, 12);
	struct synth_opts o;
	opts(&o, PINFER_ACT_RELU, PF_Q8_0, 11);
	test_synth_or_fail(a, &o);
	opts(&o, PINFER_ACT_RELU, PF_Q8_0, 12);
	test_synth_or_fail(b, &o);
	static struct pred p;
	int32_t toks[N_TOKENS];

	pred_load(&p, b);
	run(a, PINFER_SPARSITY_DENSE, &p, toks);
	struct result other = check_layers(&p, "another seed's predictor", false, NOISE_MAX);
	assert_true(other.min_recall < 0.9);
	pred_free(&p);

	pred_load(&p, a);
	run(a, PINFER_SPARSITY_DENSE, &p, toks);
	struct result own = check_layers(&p, "own predictor", false, NOISE_MAX);
	assert_true(own.min_recall >= MIN_RECALL);
	/* the margin: gate - s is -margin on average, in units of sigma N
	 * (about 1 here: sigma = 1/sqrt(dim), N about sqrt(dim)) */
	double margin = 0;
	for (int l = 0; l < N_LAYER; l++)
		margin -= p.offset[l] / (double)p.rows[l] / N_LAYER;
	print_message("margin %.3f\n", margin);
	assert_true(margin > 0.1 && margin < 0.2);
	p.shift = (float)margin;
	run(a, PINFER_SPARSITY_DENSE, &p, toks);
	struct result no_margin = check_layers(&p, "own predictor without its margin", false, NOISE_MAX);
	assert_true(no_margin.min_recall < MIN_RECALL);
	assert_true(no_margin.max_ratio < own.max_ratio);
	pred_free(&p);
	remove(a);
	remove(b);
}

/* ffn_down_t is ffn_down transposed: exactly for f32, within a rounding of
 * either for q8_0 (each quantized along its own rows). */
static void test_down_t(void **state)
{
	(void)state;
	const enum pf_dtype types[] = { PF_F32, PF_Q8_0 };
	for (size_t k = 0; k < 2; k++) {
		char path[512];
		path_of(path, sizeof(path), PINFER_ACT_DRELU, types[k], PF_Q8_0, 7);
		struct synth_opts o;
		opts(&o, PINFER_ACT_DRELU, types[k], 7);
		o.n_layer = 2;
		test_synth_or_fail(path, &o);
		struct gguf_file *f = open_or_fail(path);
		for (int l = 0; l < 2; l++) {
			char name[64];
			snprintf(name, sizeof(name), "blk.%d.ffn_down.weight", l);
			float *down = read_matrix(f, name, N_FF, N_EMBD);
			snprintf(name, sizeof(name), "blk.%d.ffn_down_t.weight", l);
			assert_int_equal(gguf_find_tensor(f, name)->type, types[k]);
			float *down_t = read_matrix(f, name, N_EMBD, N_FF);
			double max_abs = 0, max_diff = 0;
			for (int i = 0; i < N_EMBD; i++)
				for (int j = 0; j < N_FF; j++) {
					float x = down[(size_t)i * N_FF + j], y = down_t[(size_t)j * N_EMBD + i];
					if (types[k] == PF_F32 && x != y)
						fail_msg("layer %d: down[%d][%d] = %g, down_t[%d][%d] = %g", l,
							 i, j, (double)x, j, i, (double)y);
					max_abs = fmax(max_abs, fabs(x));
					max_diff = fmax(max_diff, fabs(x - y));
				}
			/* row 0 writes the bias channel: zero */
			for (int j = 0; j < N_FF; j++)
				assert_true(down_t[(size_t)j * N_EMBD] == 0.0f);
			assert_true(max_abs > 0);
			assert_true(max_diff <= max_abs / 100);
			free(down);
			free(down_t);
		}
		gguf_close(f);
		remove(path);
	}
}

static void test_format(void **state)
{
	(void)state;
	char path[512];
	path_of(path, sizeof(path), PINFER_ACT_RELU, PF_Q4_0, PF_Q8_0, 1);
	struct synth_opts o;
	opts(&o, PINFER_ACT_RELU, PF_Q4_0, 1);
	o.n_layer = 2;
	test_synth_or_fail(path, &o);
	size_t len;
	char *bytes = read_file(path, &len);
	assert_true(len > 8);
	assert_memory_equal(bytes, "PWRI", 4);
	free(bytes);
	struct gguf_file *f = open_or_fail(path);
	assert_true(f->powerinfer);
	float v = 1;
	assert_true(gguf_get_f32(f, "powerinfer.sparse_threshold", &v));
	assert_true(v == 0.0f);
	assert_true(gguf_get_f32(f, "pinfer.synth.sparsity", &v));
	assert_true(v == 0.9f);
	struct gguf_str s;
	assert_true(gguf_get_str(f, "pinfer.ffn_act", &s));
	assert_true(gguf_str_eq(s, "relu"));
	/* 3 + 12 tensors per layer */
	assert_int_equal(f->n_tensors, 3 + 12 * 2);
	for (int l = 0; l < 2; l++) {
		char name[64];
		snprintf(name, sizeof(name), "blk.%d.fc1.weight", l);
		const struct gguf_tensor *t = gguf_find_tensor(f, name);
		assert_non_null(t);
		assert_int_equal(t->type, PF_Q8_0);
		assert_int_equal(t->ne[0], N_EMBD);
		assert_int_equal(t->ne[1], R_HIDDEN);
		snprintf(name, sizeof(name), "blk.%d.fc2.weight", l);
		assert_non_null(t = gguf_find_tensor(f, name));
		assert_int_equal(t->type, PF_Q8_0);
		assert_int_equal(t->ne[0], R_HIDDEN);
		assert_int_equal(t->ne[1], N_FF);
		snprintf(name, sizeof(name), "blk.%d.ffn_down_t.weight", l);
		assert_non_null(t = gguf_find_tensor(f, name));
		assert_int_equal(t->type, PF_Q4_0);
		assert_int_equal(t->ne[0], N_EMBD);
		assert_int_equal(t->ne[1], N_FF);
	}
	gguf_close(f);

	/* without --predictor: GGUF, none of them */
	o.predictor = 0;
	test_synth_or_fail(path, &o);
	bytes = read_file(path, &len);
	assert_memory_equal(bytes, "GGUF", 4);
	free(bytes);
	f = open_or_fail(path);
	assert_false(f->powerinfer);
	assert_false(gguf_get_f32(f, "powerinfer.sparse_threshold", &v));
	assert_null(gguf_find_tensor(f, "blk.0.fc1.weight"));
	assert_null(gguf_find_tensor(f, "blk.0.ffn_down_t.weight"));
	assert_int_equal(f->n_tensors, 3 + 9 * 2);
	gguf_close(f);
	remove(path);
}

/* Same seed, any thread count: the same bytes; another seed or another R:
 * others. */
static void test_deterministic(void **state)
{
	(void)state;
	const enum pinfer_ffn_act acts[] = { PINFER_ACT_RELU, PINFER_ACT_DRELU };
	for (size_t k = 0; k < 2; k++) {
		struct synth_opts o, other;
		opts(&o, acts[k], PF_Q4_0, 5);
		o.n_layer = 2;
		other = o;
		other.predictor = 32;
		test_synth_is_pure(&o, &other);
	}
}

static void test_bad_options(void **state)
{
	(void)state;
	char path[512];
	snprintf(path, sizeof(path), "%s/bad.gguf", test_dir);
	struct synth_opts o;
	struct pf_err err;
	/* no sparsity */
	opts(&o, PINFER_ACT_RELU, PF_Q8_0, 1);
	o.sparsity = 0;
	assert_int_equal(synth_model(path, &o, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "--predictor needs --sparsity"));
	/* odd, too small, wider than the model */
	const int bad[] = { 63, 1, -2, N_EMBD + 2, 1000001 };
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		opts(&o, PINFER_ACT_RELU, PF_Q8_0, 1);
		o.predictor = bad[k];
		assert_int_equal(synth_model(path, &o, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "--predictor"));
	}
	/* a SiLU model has no sparsity to predict */
	opts(&o, PINFER_ACT_SILU, PF_Q8_0, 1);
	assert_int_equal(synth_model(path, &o, &err), -EINVAL);

	const char *vocab = shared_path("models/llama-2-tiny-random/llama-2-tiny-random.gguf");
	const char *no_sparsity[] = { "synth", "--shape", "tiny", "--vocab-from", vocab, "--act",
				      "relu", "--predictor", "16", "-o", path };
	assert_int_equal(test_synth_cli(11, no_sparsity), 2);
	const char *odd[] = { "synth", "--shape", "tiny", "--vocab-from", vocab, "--act", "relu",
			      "--sparsity", "0.9", "--predictor", "15", "-o", path };
	assert_int_equal(test_synth_cli(13, odd), 2);
	const char *zero[] = { "synth", "--shape", "tiny", "--vocab-from", vocab, "--act", "relu",
			       "--sparsity", "0.9", "--predictor", "0", "-o", path };
	assert_int_equal(test_synth_cli(13, zero), 2);
	const char *junk[] = { "synth", "--shape", "tiny", "--vocab-from", vocab, "--act", "relu",
			       "--sparsity", "0.9", "--predictor", "16x", "-o", path };
	assert_int_equal(test_synth_cli(13, junk), 2);
	/* tiny has dim 128 */
	const char *wide[] = { "synth", "--shape", "tiny", "--vocab-from", vocab, "--act", "relu",
			       "--sparsity", "0.9", "--predictor", "130", "-o", path };
	assert_int_equal(test_synth_cli(13, wide), 2);
	const char *ok[] = { "synth", "--shape", "tiny", "--vocab-from", vocab, "--act", "drelu",
			     "--sparsity", "0.9", "--predictor", "128", "-t", "2", "-o", path };
	assert_int_equal(test_synth_cli(15, ok), 0);
	struct gguf_file *f = open_or_fail(path);
	assert_true(f->powerinfer);
	gguf_close(f);
	const char *two[] = { "synth", "--shape", "tiny", "--vocab-from", vocab, "--act", "relu",
			      "--sparsity", "0.9", "--predictor", "2", "-t", "2", "-o", path };
	assert_int_equal(test_synth_cli(15, two), 0);
	remove(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_relu_f32),
		cmocka_unit_test(test_relu_q8_0),
		cmocka_unit_test(test_drelu_f32),
		cmocka_unit_test(test_drelu_q8_0),
		cmocka_unit_test(test_relu_pred_q4_0),
		cmocka_unit_test(test_drelu_pred_q4_0),
		cmocka_unit_test(test_controls),
		cmocka_unit_test(test_down_t),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_bad_options),
	};
	return cmocka_run_group_tests(tests, test_dir_setup, test_dir_teardown);
}
