/* The sparse FFN modes against the dense reference (docs/sparsity.md).
 *
 * gate mode skips only neurons whose activation is exactly zero, so on a
 * ReLU or dReLU model it must give dense's logits up to summation order
 * (float weights; the quantized formats also requantize the transposed down
 * matrix, hence a looser bound there), token after token of a greedy
 * generation. threshold mode with all thresholds 0 keeps every neuron and
 * must equal dense too; with thresholds it must skip neurons and still
 * agree between its decode (sparse kernels) and prefill (dense products
 * with the skipped neurons zeroed). Mode choice and refusals are checked
 * with their messages. */
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_writer.h"

#define N_GEN 64

static const char *synth(const char *name, enum pf_dtype type, enum pinfer_ffn_act act)
{
	return test_synth(test_dir, name, 768, 3, type, act);
}

static struct pinfer_model *open_model(const char *path, enum pinfer_sparsity mode, const char *calibration)
{
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	p.sparsity = mode;
	p.calibration = calibration;
	struct pinfer_model *m;
	struct pf_err err;
	if (pinfer_model_open(&m, path, &p, &err))
		fail_msg("%s", err.msg);
	return m;
}

/* Generates N_GEN greedy tokens with the reference model after a short
 * prompt, feeding the same tokens to the other, and returns the largest
 * relative RMS difference of their logits over the steps. */
static double compare(struct pinfer_model *ref, struct pinfer_model *other, int other_threads,
		      struct pinfer_ffn_stats *ref_stats, struct pinfer_ffn_stats *other_stats)
{
	int n_vocab = pinfer_model_info(ref)->n_vocab;
	struct pinfer_ctx *a = test_new_ctx(ref, 128, 2), *b = test_new_ctx(other, 128, other_threads);
	int32_t prompt[8];
	int n = pinfer_tokenize(ref, "Once upon a time", 16, true, false, prompt, 8);
	assert_true(n > 1);
	assert_int_equal(pinfer_eval(a, prompt, n, NULL), 0);
	assert_int_equal(pinfer_eval(b, prompt, n, NULL), 0);
	double worst = 0;
	for (int step = 0; step < N_GEN; step++) {
		const float *la = pinfer_logits(a, -1), *lb = pinfer_logits(b, -1);
		double num = 0, den = 0;
		for (int v = 0; v < n_vocab; v++) {
			double d = (double)la[v] - lb[v];
			num += d * d;
			den += (double)la[v] * la[v];
		}
		double rel = sqrt(num / den);
		if (rel > worst)
			worst = rel;
		int32_t t = test_argmax(la, n_vocab);
		assert_int_equal(pinfer_eval(a, &t, 1, NULL), 0);
		assert_int_equal(pinfer_eval(b, &t, 1, NULL), 0);
	}
	pinfer_ctx_ffn_stats(a, ref_stats);
	pinfer_ctx_ffn_stats(b, other_stats);
	pinfer_ctx_free(a);
	pinfer_ctx_free(b);
	return worst;
}

static void check_gate(const char *name, enum pf_dtype type, enum pinfer_ffn_act act, double bound)
{
	const char *path = synth(name, type, act);
	struct pinfer_model *dense = open_model(path, PINFER_SPARSITY_DENSE, NULL);
	struct pinfer_model *gate = open_model(path, PINFER_SPARSITY_AUTO, NULL);
	assert_int_equal(pinfer_model_info(gate)->sparsity, PINFER_SPARSITY_GATE);
	/* One and two threads: the down projection's per-thread sums. */
	for (int threads = 1; threads <= 2; threads++) {
		struct pinfer_ffn_stats ds, gs;
		double rel = compare(dense, gate, threads, &ds, &gs);
		print_message("%s, %d thread%s: gate vs dense logits, worst relative RMS %.2e; active %.1f%%\n",
			      name, threads, threads == 1 ? "" : "s", rel, 100.0 * gs.active / gs.neurons);
		assert_true(rel < bound);
		/* The same neurons fire: the ones dense computes as non-zero. */
		assert_int_equal(ds.tokens, gs.tokens);
		assert_int_equal(ds.neurons, gs.neurons);
		assert_true(gs.active > 0 && gs.active < gs.neurons);
		double drift = fabs((double)ds.active - (double)gs.active) / (double)ds.active;
		assert_true(drift < (type == PF_F32 || type == PF_F16 ? 1e-3 : 2e-2));
	}
	pinfer_model_free(dense);
	pinfer_model_free(gate);
}

/* Float weights: only the order of the sums differs (measured ~1e-7). */
static void test_gate_relu_f32(void **state) { (void)state; check_gate("relu-f32", PF_F32, PINFER_ACT_RELU, 1e-5); }
static void test_gate_drelu_f32(void **state) { (void)state; check_gate("drelu-f32", PF_F32, PINFER_ACT_DRELU, 1e-5); }
static void test_gate_relu_f16(void **state) { (void)state; check_gate("relu-f16", PF_F16, PINFER_ACT_RELU, 1e-5); }
/* Quantized: the transposed down matrix is quantized again (in Q8_0) along
 * the other axis, and dense rounds the activations it multiplies down
 * with to 8 bits where sparse uses them as floats: measured 2e-2 for both
 * formats, the size of the 8-bit rounding alone (tests/test_prefill.c). */
static void test_gate_relu_q8_0(void **state) { (void)state; check_gate("relu-q8_0", PF_Q8_0, PINFER_ACT_RELU, 4e-2); }
static void test_gate_relu_q4_0(void **state) { (void)state; check_gate("relu-q4_0", PF_Q4_0, PINFER_ACT_RELU, 4e-2); }

static const char *write_thresholds(const char *name, const char *arch, const float *thr, int n)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s.gguf", test_dir, name);
	struct gguf_writer *w = gguf_writer_new();
	assert_non_null(w);
	struct pf_err err;
	assert_int_equal(gguf_writer_set_str(w, "general.architecture", arch), 0);
	assert_int_equal(gguf_writer_set_arr_f32(w, "pinfer.sparsity.thresholds", thr, (uint64_t)n), 0);
	if (gguf_writer_write_header(w, path, &err) || gguf_writer_finish(w, &err))
		fail_msg("%s", err.msg);
	gguf_writer_free(w);
	return path;
}

static void test_threshold(void **state)
{
	(void)state;
	const char *path = synth("silu-f32", PF_F32, PINFER_ACT_AUTO);
	char model[512];
	snprintf(model, sizeof(model), "%s", path);
	struct pinfer_model *dense = open_model(model, PINFER_SPARSITY_AUTO, NULL);
	assert_int_equal(pinfer_model_info(dense)->sparsity, PINFER_SPARSITY_DENSE);

	/* Threshold 0 keeps every neuron whose |silu| is not 0: dense. */
	float zero[3] = { 0, 0, 0 };
	struct pinfer_model *keep_all = open_model(model, PINFER_SPARSITY_AUTO, write_thresholds("zero", "llama", zero, 3));
	assert_int_equal(pinfer_model_info(keep_all)->sparsity, PINFER_SPARSITY_THRESHOLD);
	struct pinfer_ffn_stats ds, ts;
	double rel = compare(dense, keep_all, 2, &ds, &ts);
	print_message("threshold 0 vs dense: worst relative RMS %.2e\n", rel);
	assert_true(rel < 1e-5);
	assert_int_equal(ts.active, ts.neurons);
	pinfer_model_free(keep_all);

	/* Real thresholds skip neurons; decode (sparse kernels) and prefill
	 * (dense products, skipped neurons zeroed) must still agree. */
	float thr[3] = { 0.1f, 0.15f, 0.2f };
	const char *cal = write_thresholds("some", "llama", thr, 3);
	struct pinfer_model *m = open_model(model, PINFER_SPARSITY_THRESHOLD, cal);
	assert_true(pinfer_model_threshold(m, 1) == 0.15f);
	int n_vocab = pinfer_model_info(m)->n_vocab;
	int32_t toks[40];
	uint64_t seed = 5;
	for (int i = 0; i < 40; i++)
		toks[i] = (int32_t)(test_rand(&seed) % (uint64_t)n_vocab);
	struct pinfer_ctx *one = test_new_ctx(m, 128, 2), *batch = test_new_ctx(m, 128, 2);
	for (int i = 0; i < 40; i++)
		assert_int_equal(pinfer_eval(one, &toks[i], 1, NULL), 0);
	assert_int_equal(pinfer_eval(batch, toks, 40, NULL), 0);
	const float *a = pinfer_logits(one, -1), *b = pinfer_logits(batch, -1);
	double num = 0, den = 0;
	for (int v = 0; v < n_vocab; v++) {
		num += ((double)a[v] - b[v]) * ((double)a[v] - b[v]);
		den += (double)a[v] * a[v];
	}
	struct pinfer_ffn_stats s1, s2;
	pinfer_ctx_ffn_stats(one, &s1);
	pinfer_ctx_ffn_stats(batch, &s2);
	print_message("threshold decode vs prefill: relative RMS %.2e; active %.1f%% / %.1f%%\n",
		      sqrt(num / den), 100.0 * s1.active / s1.neurons, 100.0 * s2.active / s2.neurons);
	assert_true(sqrt(num / den) < 1e-4);
	assert_true(s1.active < s1.neurons * 9 / 10 && s1.active > 0);
	/* A neuron near its threshold may land on either side with a
	 * different summation order; hardly any do. */
	assert_true(fabs((double)s1.active - (double)s2.active) < 1e-3 * (double)s1.neurons);
	pinfer_ctx_free(one);
	pinfer_ctx_free(batch);
	pinfer_model_free(m);
	pinfer_model_free(dense);
}

static void expect_refusal(const char *path, enum pinfer_sparsity mode, const char *calibration, int code,
			   const char *words)
{
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	p.sparsity = mode;
	p.calibration = calibration;
	struct pinfer_model *m = NULL;
	struct pf_err err;
	assert_int_equal(pinfer_model_open(&m, path, &p, &err), code);
	assert_null(m);
	if (!strstr(err.msg, words))
		fail_msg("'%s' does not say '%s'", err.msg, words);
}

static void test_refusals(void **state)
{
	(void)state;
	char silu[512];
	snprintf(silu, sizeof(silu), "%s", synth("plain", PF_F32, PINFER_ACT_AUTO));
	expect_refusal(silu, PINFER_SPARSITY_GATE, NULL, -EINVAL, "ReLU");
	expect_refusal(silu, PINFER_SPARSITY_THRESHOLD, NULL, -EINVAL, "calibrate");
	expect_refusal(silu, PINFER_SPARSITY_PREDICTOR, NULL, -ENOTSUP, "predictor");
	float two[2] = { 0.1f, 0.1f };
	expect_refusal(silu, PINFER_SPARSITY_AUTO, write_thresholds("two", "llama", two, 2), -EINVAL,
		       "2 thresholds");
	float three[3] = { 0.1f, 0.1f, 0.1f };
	expect_refusal(silu, PINFER_SPARSITY_AUTO, write_thresholds("other", "qwen2", three, 3), -EINVAL,
		       "architecture");
	float bad[3] = { 0.1f, -1.0f, 0.1f };
	expect_refusal(silu, PINFER_SPARSITY_AUTO, write_thresholds("negative", "llama", bad, 3), -EINVAL,
		       "threshold 1");
	char missing[600];
	snprintf(missing, sizeof(missing), "%s/none.gguf", test_dir);
	expect_refusal(silu, PINFER_SPARSITY_AUTO, missing, -ENOENT, "none.gguf");

	enum pinfer_sparsity s;
	assert_int_equal(pinfer_sparsity_parse("gate", &s), 0);
	assert_int_equal(s, PINFER_SPARSITY_GATE);
	assert_int_equal(pinfer_sparsity_parse("sparse", &s), -EINVAL);
	assert_string_equal(pinfer_sparsity_name(PINFER_SPARSITY_THRESHOLD), "threshold");
}

/* A PowerInfer file of the model at path whose predictor is an oracle:
 * fc1 is the gate matrix itself and fc2 the identity, so a neuron is
 * predicted exactly when its gate is positive. */
static const char *oracle_pwri(const char *path, const char *name)
{
	static char out[512];
	snprintf(out, sizeof(out), "%s/%s.gguf", test_dir, name);
	struct gguf_file *f;
	struct pf_err err;
	if (gguf_open(&f, path, &err))
		fail_msg("%s", err.msg);
	struct gguf_writer *w = gguf_writer_new();
	assert_non_null(w);
	gguf_writer_set_powerinfer(w);
	assert_true(gguf_writer_copy_kv(w, f, "") > 0);
	int64_t n_ff = 768;
	float *eye = calloc((size_t)(n_ff * n_ff), sizeof(float));
	assert_non_null(eye);
	for (int64_t j = 0; j < n_ff; j++)
		eye[j * n_ff + j] = 1.0f;
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		char tname[64];
		gguf_str_copy(f->tensors[i].name, tname, sizeof(tname));
		assert_true(gguf_writer_add_tensor(w, tname, f->tensors[i].n_dims, f->tensors[i].ne,
						   f->tensors[i].type) >= 0);
	}
	for (int l = 0; l < 3; l++) {
		char tname[64], gname[64];
		snprintf(gname, sizeof(gname), "blk.%d.ffn_gate.weight", l);
		const struct gguf_tensor *g = gguf_find_tensor(f, gname);
		snprintf(tname, sizeof(tname), "blk.%d.fc1.weight", l);
		assert_true(gguf_writer_add_tensor(w, tname, 2, g->ne, g->type) >= 0);
		uint64_t ne[2] = { (uint64_t)n_ff, (uint64_t)n_ff };
		snprintf(tname, sizeof(tname), "blk.%d.fc2.weight", l);
		assert_true(gguf_writer_add_tensor(w, tname, 2, ne, PF_F32) >= 0);
	}
	if (gguf_writer_write_header(w, out, &err))
		fail_msg("%s", err.msg);
	for (uint64_t i = 0; i < f->n_tensors; i++)
		if (gguf_writer_write_data(w, f->tensors[i].data, f->tensors[i].nbytes, &err))
			fail_msg("%s", err.msg);
	for (int l = 0; l < 3; l++) {
		char gname[64];
		snprintf(gname, sizeof(gname), "blk.%d.ffn_gate.weight", l);
		const struct gguf_tensor *g = gguf_find_tensor(f, gname);
		if (gguf_writer_write_data(w, g->data, g->nbytes, &err) ||
		    gguf_writer_write_data(w, eye, (size_t)(n_ff * n_ff) * sizeof(float), &err))
			fail_msg("%s", err.msg);
	}
	if (gguf_writer_finish(w, &err))
		fail_msg("%s", err.msg);
	gguf_writer_free(w);
	gguf_close(f);
	free(eye);
	return out;
}

/* With an oracle predictor, predictor mode computes exactly the neurons
 * gate mode does: the same logits as dense, decode and prefill. */
static void test_predictor_oracle(void **state)
{
	(void)state;
	char model[512];
	snprintf(model, sizeof(model), "%s", synth("relu-oracle", PF_F32, PINFER_ACT_RELU));
	const char *pwri = oracle_pwri(model, "oracle");
	struct pinfer_model *dense = open_model(model, PINFER_SPARSITY_DENSE, NULL);
	struct pinfer_model *pred = open_model(pwri, PINFER_SPARSITY_AUTO, NULL);
	assert_int_equal(pinfer_model_info(pred)->sparsity, PINFER_SPARSITY_PREDICTOR);
	assert_int_equal(pinfer_model_info(pred)->ffn_act, PINFER_ACT_RELU);
	struct pinfer_ffn_stats ds, ps;
	double rel = compare(dense, pred, 2, &ds, &ps);
	print_message("oracle predictor vs dense: worst relative RMS %.2e; active %.1f%% / %.1f%%\n", rel,
		      100.0 * ds.active / ds.neurons, 100.0 * ps.active / ps.neurons);
	assert_true(rel < 1e-5);
	assert_true(fabs((double)ds.active - (double)ps.active) < 1e-3 * (double)ds.active);
	/* The oracle chooses only neurons that fire (active also counts the
	 * prompt's); time goes to the FFN in both modes and to a predictor in
	 * predictor mode only. */
	assert_true(ps.predicted > 0 && ps.predicted < ps.active);
	assert_int_equal(ds.predicted, 0);
	assert_true(ps.predictor_ns > 0 && ps.predictor_ns < ps.ffn_ns);
	assert_true(ds.ffn_ns > 0);
	assert_int_equal(ds.predictor_ns, 0);
	pinfer_model_free(pred);
	/* Without predictors, predictor mode is refused; with them, a SwiGLU
	 * activation is. */
	expect_refusal(model, PINFER_SPARSITY_PREDICTOR, NULL, -ENOTSUP, "fc1");
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	p.sparsity = PINFER_SPARSITY_PREDICTOR;
	p.ffn_act = PINFER_ACT_SILU;
	struct pinfer_model *m = NULL;
	struct pf_err err;
	assert_int_equal(pinfer_model_open(&m, pwri, &p, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "ReLU"));
	pinfer_model_free(dense);
}

struct probe_count {
	int calls[3];
	int tokens;
	int nonzero_mismatch;
};

static void probe(void *data, int layer, int T, const float *x, const float *gate, const float *act)
{
	struct probe_count *pc = data;
	assert_non_null(x);
	assert_non_null(gate);
	pc->calls[layer]++;
	if (layer == 0)
		pc->tokens += T;
	/* ReLU: a neuron is active exactly when its gate is positive. */
	for (int i = 0; i < T * 768; i++)
		pc->nonzero_mismatch += (act[i] != 0.0f) != (gate[i] > 0.0f);
}

static void test_probe(void **state)
{
	(void)state;
	const char *path = synth("probe", PF_F32, PINFER_ACT_RELU);
	for (int mode = PINFER_SPARSITY_DENSE; mode <= PINFER_SPARSITY_GATE; mode++) {
		struct pinfer_model *m = open_model(path, (enum pinfer_sparsity)mode, NULL);
		struct pinfer_ctx *c = test_new_ctx(m, 128, 2);
		struct probe_count pc = { { 0 }, 0, 0 };
		assert_int_equal(pinfer_ctx_set_ffn_probe(c, probe, &pc), 0);
		int32_t toks[6] = { 1, 300, 301, 302, 303, 304 };
		assert_int_equal(pinfer_eval(c, toks, 4, NULL), 0);
		assert_int_equal(pinfer_eval(c, toks + 4, 1, NULL), 0);
		assert_int_equal(pinfer_eval(c, toks + 5, 1, NULL), 0);
		for (int l = 0; l < 3; l++)
			assert_int_equal(pc.calls[l], 3);
		assert_int_equal(pc.tokens, 6);
		/* Up may be zero or negative where the gate is positive (dReLU
		 * would drop those); for ReLU only an exact zero up could. */
		assert_true(pc.nonzero_mismatch == 0);
		assert_int_equal(pinfer_ctx_set_ffn_probe(c, NULL, NULL), 0);
		assert_int_equal(pinfer_eval(c, toks, 1, NULL), 0);
		assert_int_equal(pc.tokens, 6);
		pinfer_ctx_free(c);
		pinfer_model_free(m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gate_relu_f32),
		cmocka_unit_test(test_gate_drelu_f32),
		cmocka_unit_test(test_gate_relu_f16),
		cmocka_unit_test(test_gate_relu_q8_0),
		cmocka_unit_test(test_gate_relu_q4_0),
		cmocka_unit_test(test_threshold),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_predictor_oracle),
		cmocka_unit_test(test_probe),
	};
	return cmocka_run_group_tests(tests, test_dir_setup, test_dir_teardown);
}
