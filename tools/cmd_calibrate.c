/* pinfer-model calibrate: threshold-mode thresholds for a SwiGLU model
 * (docs/sparsity.md).
 *
 * Runs the model densely over a calibration text (the perplexity protocol's
 * sequences, see commands.h) with an FFN probe that samples, per layer,
 * |silu(gate)| of every (token, neuron) pair together with the neuron's
 * activation, and picks per layer the threshold below which a fraction S of
 * them fall (CATS). Threshold mode keeps a neuron where |silu(gate)| is
 * above its layer's threshold. Writes a GGUF with no tensors that
 * --calibration FILE reads.
 *
 * --sparsity here is the target fraction S, not the mode: this command
 * parses its own options and takes no mode. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"
#include "gguf_writer.h"
#include "rng.h"

enum { OPT_TARGET = 2000, OPT_SAMPLES, OPT_METHOD };

/* One (token, neuron) pair: what the threshold compares and the energy
 * of the activation a threshold there would drop. */
struct sample {
	float mag;   /* |silu(gate)| */
	float act2;  /* (silu(gate) * up)^2 */
};

struct reservoir {
	struct sample *s;
	size_t n;       /* held, at most cap */
	uint64_t seen;  /* offered */
	uint64_t next;  /* index of the next offered pair to hold once full */
	double w;       /* Algorithm L's running weight */
};

struct calib {
	int n_layer, n_ff;
	size_t cap;
	struct reservoir *res;
	uint64_t rng;
};

static inline float silu(float g)
{
	return g / (1.0f + expf(-g));
}

/* Algorithm L's step: the weight shrinks, and the next pair held follows
 * a geometric skip, so a full reservoir costs nothing per pair passed. */
static void skip_ahead(struct calib *c, struct reservoir *r)
{
	r->w *= exp(log(rng_unit(&c->rng)) / (double)c->cap);
	double skip = floor(log(rng_unit(&c->rng)) / log1p(-r->w));
	r->next += 1 + (skip < 1e18 ? (uint64_t)skip : (uint64_t)1e18);
}

/* Reservoir sampling (Li's Algorithm L): every (token, neuron) pair
 * offered ends up held with the same probability cap / seen. */
static void probe(void *data, int layer, int T, const float *x, const float *gate, const float *act)
{
	(void)x;
	struct calib *c = data;
	struct reservoir *r = &c->res[layer];
	uint64_t n = (uint64_t)T * (uint64_t)c->n_ff;
	uint64_t i = 0;
	for (; i < n && r->n < c->cap; i++) {
		r->s[r->n++] = (struct sample){ fabsf(silu(gate[i])), act[i] * act[i] };
		if (r->n == c->cap) {
			r->w = 1.0;
			r->next = r->seen + i;
			skip_ahead(c, r);
		}
	}
	for (; r->n == c->cap && r->next < r->seen + n;) {
		uint64_t j = r->next - r->seen;
		size_t slot = (size_t)(rng_next(&c->rng) % c->cap);
		r->s[slot] = (struct sample){ fabsf(silu(gate[j])), act[j] * act[j] };
		skip_ahead(c, r);
	}
	r->seen += n;
}

static int cmp_mag(const void *a, const void *b)
{
	float x = ((const struct sample *)a)->mag, y = ((const struct sample *)b)->mag;
	return (x > y) - (x < y);
}

/* The threshold that drops the k smallest of n sorted samples: between
 * the k-th and the next, so that both sit on the right side of `>`. */
static float threshold_at(const struct sample *s, size_t n, size_t k)
{
	if (k == 0)
		return 0.0f;
	if (k >= n)
		return s[n - 1].mag;
	return s[k - 1].mag + 0.5f * (s[k].mag - s[k - 1].mag);
}

/* Plain CATS: the same fraction of every layer below its threshold. */
static void method_quantile(struct calib *c, float target, size_t *drop)
{
	for (int l = 0; l < c->n_layer; l++) {
		size_t n = c->res[l].n;
		size_t k = (size_t)((double)target * (double)n + 0.5);
		drop[l] = k > n ? n : k;
	}
}

/* For each layer the most samples whose dropping removes at most a share
 * e of the layer's activation energy; cum holds the layers' prefix sums. */
static double drops_for_energy(struct calib *c, double *const *cum, double e, size_t *drop)
{
	double mean = 0.0;
	for (int l = 0; l < c->n_layer; l++) {
		size_t n = c->res[l].n;
		double limit = e * cum[l][n];
		size_t lo = 0, hi = n;  /* largest k with cum[k] <= limit */
		while (lo < hi) {
			size_t mid = lo + (hi - lo + 1) / 2;
			if (cum[l][mid] <= limit)
				lo = mid;
			else
				hi = mid - 1;
		}
		drop[l] = lo;
		mean += n ? (double)lo / (double)n : 0.0;
	}
	return mean / c->n_layer;
}

/* Equal error: every layer drops the same share of its activation energy
 * (sum of squared activations, a proxy for the error added to the FFN
 * output), that share chosen so the mean sparsity over the layers is the
 * target. Layers whose small activations carry little energy get sparser. */
static int method_energy(struct calib *c, float target, size_t *drop)
{
	double **cum = calloc((size_t)c->n_layer, sizeof(*cum));
	if (!cum)
		return -1;
	int r = 0;
	for (int l = 0; l < c->n_layer && !r; l++) {
		size_t n = c->res[l].n;
		cum[l] = malloc((n + 1) * sizeof(double));
		if (!cum[l]) {
			r = -1;
			break;
		}
		cum[l][0] = 0.0;
		for (size_t i = 0; i < n; i++)
			cum[l][i + 1] = cum[l][i] + c->res[l].s[i].act2;
	}
	if (!r) {
		double lo = 0.0, hi = 1.0;
		for (int it = 0; it < 60; it++) {
			double mid = 0.5 * (lo + hi);
			if (drops_for_energy(c, cum, mid, drop) < target)
				lo = mid;
			else
				hi = mid;
		}
		drops_for_energy(c, cum, hi, drop);
	}
	for (int l = 0; l < c->n_layer; l++)
		free(cum[l]);
	free(cum);
	return r;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: pinfer-model calibrate -m MODEL -f TEXT --sparsity S -o FILE [options]\n"
		"  -f, --file TEXT          calibration text: every non-empty line is one sequence;\n"
		"                           keep it disjoint from the evaluation text\n"
		"  --sparsity S             target fraction of neurons skipped, 0 < S < 1\n"
		"  -o, --output FILE        GGUF file for the thresholds (use with --calibration FILE)\n"
		"  --lines N                calibrate on at most N lines\n"
		"  --skip-lines K           skip the first K non-empty lines (e.g. the evaluation lines)\n"
		"  --samples N              pairs sampled per layer (default 262144)\n"
		"  --method quantile|energy quantile: S of every layer (CATS, default); energy: every\n"
		"                           layer drops the same share of its activation energy\n"
		"  -t, --threads N  -c, --ctx-size N  --mlock  --mmap  --act silu|relu|drelu  --rope norm|neox\n");
}

int cmd_calibrate(int argc, char **argv)
{
	/* The model options minus --sparsity (the target here) and
	 * --calibration: calibration always runs densely. */
	static const struct option longopts[] = {
		DENSE_MODEL_LONG_OPTS,
		{ "sparsity", required_argument, NULL, OPT_TARGET },
		TEXT_LONG_OPTS,
		{ "output", required_argument, NULL, 'o' },
		{ "samples", required_argument, NULL, OPT_SAMPLES },
		{ "method", required_argument, NULL, OPT_METHOD },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct model_opts mo;
	model_opts_init(&mo);
	struct text_opts to = TEXT_OPTS_INIT;
	const char *out_path = NULL, *method = "quantile";
	long samples = 1 << 18;
	float target = -1.0f;
	bool have_target = false;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, MODEL_SHORT_OPTS TEXT_SHORT_OPTS "o:h", longopts, NULL)) != -1) {
		int r = text_cmd_opts_parse(&mo, &to, opt, optarg, "calibrate", usage);
		if (r < 0)
			return 2;
		if (r > 0)
			continue;
		const char *bad = NULL;
		switch (opt) {
		case 'o': out_path = optarg; break;
		case OPT_TARGET:
			have_target = true;
			if (!parse_float(optarg, &target) || !(target > 0.0f && target < 1.0f))
				return usage_error("calibrate", usage,
						   "--sparsity is the target fraction of neurons to skip, "
						   "a number between 0 and 1 (exclusive), not '%s'", optarg);
			break;
		case OPT_SAMPLES:
			if (!parse_int(optarg, 1, 1L << 30, &samples))
				bad = "--samples";
			break;
		case OPT_METHOD:
			if (strcmp(optarg, "quantile") && strcmp(optarg, "energy"))
				bad = "--method";
			method = optarg;
			break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
		if (bad)
			return usage_error("calibrate", usage, "bad value '%s' for %s", optarg, bad);
	}
	int r = text_cmd_opts_check(&mo, &to, argc, argv, "calibrate", usage);
	if (r)
		return r;
	if (!out_path || !have_target)
		return usage_error("calibrate", usage, "%s", !out_path ? "no output file given (-o FILE)"
							   : "no target given (--sparsity S, 0 < S < 1)");
	mo.params.sparsity = PINFER_SPARSITY_DENSE;
	mo.params.calibration = NULL;

	size_t len;
	char *text = text_opts_read(&to, &len, "calibrate");
	if (!text)
		return 1;
	struct pinfer_model *m = model_opts_open(&mo, "calibrate");
	if (!m) {
		free(text);
		return 1;
	}
	int rc = 1;
	const struct pinfer_model_info *info = pinfer_model_info(m);
	struct calib cal = { .n_layer = info->n_layer, .n_ff = info->n_ff, .cap = (size_t)samples,
			     .rng = 0x70696e666572ull };
	struct pinfer_ctx *c = NULL;
	size_t *drop = NULL;
	float *thr = NULL;
	struct gguf_writer *w = NULL;
	if (info->ffn_act != PINFER_ACT_SILU) {
		fprintf(stderr, "calibrate: %s uses %s; thresholds are for SwiGLU (silu) models "
				"(ReLU-family models run in gate mode, exactly)\n",
			mo.model, pinfer_ffn_act_name(info->ffn_act));
		goto out;
	}
	cal.res = calloc((size_t)info->n_layer, sizeof(*cal.res));
	drop = calloc((size_t)info->n_layer, sizeof(*drop));
	thr = calloc((size_t)info->n_layer, sizeof(*thr));
	if (!cal.res || !drop || !thr)
		goto oom;
	for (int l = 0; l < info->n_layer; l++)
		if (!(cal.res[l].s = malloc(cal.cap * sizeof(struct sample))))
			goto oom;
	if (!(c = text_ctx(&mo, m, false, "calibrate")))
		goto out;
	if (pinfer_ctx_set_ffn_probe(c, probe, &cal))
		goto oom;
	uint64_t tokens;
	double t0 = now_seconds();
	long lines = eval_text_lines(c, m, text, len, &to, &tokens, "calibrate");
	if (lines < 0)
		goto out;
	if (tokens == 0) {
		fprintf(stderr, "calibrate: no tokens to calibrate on in %s (after %ld skipped lines)\n", to.path,
			to.skip);
		goto out;
	}
	for (int l = 0; l < info->n_layer; l++)
		qsort(cal.res[l].s, cal.res[l].n, sizeof(struct sample), cmp_mag);
	if (!strcmp(method, "energy")) {
		if (method_energy(&cal, target, drop))
			goto oom;

	} else {
		method_quantile(&cal, target, drop);
	}
	for (int l = 0; l < info->n_layer; l++)
		thr[l] = threshold_at(cal.res[l].s, cal.res[l].n, drop[l]);
	double dt = now_seconds() - t0;

	if (!(w = gguf_writer_new()))
		goto oom;
	gguf_writer_set_str(w, "general.architecture", info->arch);
	gguf_writer_set_str(w, "pinfer.sparsity.model", model_opts_name(&mo, m));
	gguf_writer_set_f32(w, "pinfer.sparsity.target", target);
	gguf_writer_set_str(w, "pinfer.sparsity.method", method);
	gguf_writer_set_u64(w, "pinfer.sparsity.tokens", tokens);
	gguf_writer_set_arr_f32(w, "pinfer.sparsity.thresholds", thr, (uint64_t)info->n_layer);
	struct pf_err err;
	if (gguf_writer_write_header(w, out_path, &err) || gguf_writer_finish(w, &err)) {
		fprintf(stderr, "calibrate: %s: %s\n", out_path, err.msg);
		goto out;
	}
	printf("calibrate: %s, %ld lines, %llu tokens, target sparsity %.4g (%s), %.1f s\n",
	       mo.model, lines, (unsigned long long)tokens, target, method, dt);
	printf("layer  threshold      sampled  below\n");
	for (int l = 0; l < info->n_layer; l++) {
		size_t n = cal.res[l].n;
		printf("%-5d  %-12.6g  %7zu  %6.2f%%\n", l, thr[l], n, n ? 100.0 * (double)drop[l] / (double)n : 0.0);
	}
	fprintf(stderr, "wrote %s\n", out_path);
	rc = 0;
	goto out;
oom:
	fprintf(stderr, "calibrate: out of memory\n");
out:
	gguf_writer_free(w);
	pinfer_ctx_free(c);
	pinfer_model_free(m);
	if (cal.res)
		for (int l = 0; l < cal.n_layer; l++)
			free(cal.res[l].s);
	free(cal.res);
	free(drop);
	free(thr);
	free(text);
	return rc;
}
