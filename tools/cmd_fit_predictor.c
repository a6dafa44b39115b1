/* pinfer-model fit-predictor: trains PowerInfer-style low-rank activation
 * predictors for a ReLU or dReLU model and writes the model again in
 * PowerInfer's format (docs/sparsity.md "Fitting predictors").
 *
 * Runs the model densely over a calibration text (the perplexity
 * protocol's sequences, see commands.h) with an FFN probe that keeps a
 * uniform sample of the tokens: per layer the FFN input x and the neurons
 * that fired. Fits each layer's predictor on them (fit_predictor.c), picks
 * its threshold for the recall asked, folds it into fc2 so that one
 * threshold serves the file, measures recall and precision on held-out
 * lines, and writes the input's metadata and tensors plus blk.N.fc1,
 * blk.N.fc2 and blk.N.ffn_down_t with the magic PWRI. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"
#include "fit_predictor.h"
#include "gguf_writer.h"
#include "model.h"
#include "quant.h"
#include "threadpool.h"

enum {
	OPT_RANK = 2000, OPT_TOKENS, OPT_EVAL_FILE, OPT_EVAL_LINES, OPT_EVAL_SKIP, OPT_RECALL, OPT_EPOCHS,
	OPT_BATCH, OPT_LR, OPT_POS_WEIGHT, OPT_SEED, OPT_TYPE,
};

#define CMD "fit-predictor"
#define DEFAULT_EVAL_LINES 100

/* The training sample: per layer the x rows and the active bits of the
 * tokens kept. A token is kept or not for all layers at once, decided at
 * layer 0 (reservoir sampling, Algorithm R, seeded). */
struct record {
	int n_layer, d, n_ff, yb;
	int cap, n;
	uint64_t seen;
	float **x;
	uint8_t **y;
	int *group;  /* per row: the evaluation batch it came from (a sequence, or part of one) */
	int batches;
	int *slot;   /* per token of the current evaluation: its row, or -1 */
	int slot_cap;
	uint64_t rng;
	bool oom;
};

static uint64_t next_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void record_probe(void *data, int layer, int T, const float *x, const float *gate, const float *act)
{
	(void)gate;
	struct record *r = data;
	if (r->oom)
		return;
	if (layer == 0) {
		if (T > r->slot_cap) {
			int *s = realloc(r->slot, (size_t)T * sizeof(int));
			if (!s) {
				r->oom = true;
				return;
			}
			r->slot = s;
			r->slot_cap = T;
		}
		for (int t = 0; t < T; t++) {
			uint64_t i = r->seen + (uint64_t)t;
			if (r->n < r->cap) {
				r->slot[t] = r->n++;
			} else {
				uint64_t j = next_rand(&r->rng) % (i + 1);
				r->slot[t] = j < (uint64_t)r->cap ? (int)j : -1;
			}
		}
		r->seen += (uint64_t)T;
		for (int t = 0; t < T; t++)
			if (r->slot[t] >= 0)
				r->group[r->slot[t]] = r->batches;
		r->batches++;
	}
	for (int t = 0; t < T; t++) {
		int s = r->slot[t];
		if (s < 0)
			continue;
		memcpy(r->x[layer] + (size_t)s * r->d, x + (size_t)t * r->d, (size_t)r->d * sizeof(float));
		uint8_t *y = r->y[layer] + (size_t)s * r->yb;
		memset(y, 0, (size_t)r->yb);
		const float *a = act + (size_t)t * r->n_ff;
		for (int j = 0; j < r->n_ff; j++)
			if (a[j] != 0.0f)
				y[j >> 3] |= (uint8_t)(1u << (j & 7));
	}
}

/* Held-out evaluation: the fitted predictors' choices against the dense
 * run's active neurons, token by token. */
struct evaluation {
	int n_layer, d, n_ff, rank;
	float **w1, **w2;
	float *h, *s;
	int rows;
	uint64_t *tp, *pred, *active, tokens;
	bool oom;
};

static void eval_probe(void *data, int layer, int T, const float *x, const float *gate, const float *act)
{
	(void)gate;
	struct evaluation *e = data;
	if (e->oom)
		return;
	if (T > e->rows) {
		free(e->h);
		free(e->s);
		e->h = malloc((size_t)T * e->rank * sizeof(float));
		e->s = malloc((size_t)T * e->n_ff * sizeof(float));
		if (!e->h || !e->s) {
			e->oom = true;
			return;
		}
		e->rows = T;
	}
	fit_scores(T, e->d, e->n_ff, e->rank, x, e->w1[layer], e->w2[layer], e->h, e->s);
	uint64_t tp = 0, pred = 0, active = 0;
	for (size_t i = 0; i < (size_t)T * e->n_ff; i++) {
		int y = act[i] != 0.0f, p = e->s[i] > FIT_THRESHOLD;
		tp += (uint64_t)(y & p);
		pred += (uint64_t)p;
		active += (uint64_t)y;
	}
	e->tp[layer] += tp;
	e->pred[layer] += pred;
	e->active[layer] += active;
	if (layer == 0)
		e->tokens += (uint64_t)T;
}

static void round_f16(float *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		v[i] = pf_fp16_to_fp32(pf_fp32_to_fp16(v[i]));
}

/* A layer's matrix as floats (rows x cols). */
static bool weight_floats(const struct pf_weight *w, float *out)
{
	if (!w->ops || !w->ops->to_float_fast)
		return false;
	for (int64_t r = 0; r < w->rows; r++)
		w->ops->to_float_fast(w->data + (size_t)r * w->row_bytes, out + (size_t)r * (size_t)w->cols, w->cols);
	return true;
}

static bool predictor_tensor(const struct gguf_str name)
{
	char buf[96];
	gguf_str_copy(name, buf, sizeof(buf));
	int l, n = 0;
	char what[32];
	return sscanf(buf, "blk.%d.%31[a-z0-9_].weight%n", &l, what, &n) == 2 && n == (int)strlen(buf) &&
	       (!strcmp(what, "fc1") || !strcmp(what, "fc2") || !strcmp(what, "ffn_down_t"));
}

/* Writes the input model (opened in gate mode, so that its neuron-major
 * down matrices exist) with the predictors. */
static int write_output(const char *path, struct pinfer_model *m, int rank, enum pf_dtype type,
			float *const *w1, float *const *w2, float recall, uint64_t tokens)
{
	const struct pinfer_model_info *info = pinfer_model_info(m);
	const struct gguf_file *f = m->gguf;
	int d = info->n_embd, n_ff = info->n_ff, L = info->n_layer;
	struct gguf_writer *w = gguf_writer_new();
	uint16_t *half = malloc((size_t)n_ff * (size_t)(rank > d ? rank : d) * sizeof(uint16_t));
	struct pf_err err;
	int r = 0;
	if (!w || !half) {
		fprintf(stderr, CMD ": out of memory\n");
		r = -1;
		goto out;
	}
	gguf_writer_set_powerinfer(w);
	gguf_writer_copy_kv(w, f, "");
	gguf_writer_set_str(w, "pinfer.ffn_act", pinfer_ffn_act_name(info->ffn_act));
	gguf_writer_set_f32(w, "powerinfer.sparse_threshold", FIT_THRESHOLD);
	gguf_writer_set_u32(w, "pinfer.predictor.rank", (uint32_t)rank);
	gguf_writer_set_f32(w, "pinfer.predictor.recall", recall);
	gguf_writer_set_u64(w, "pinfer.predictor.tokens", tokens);
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const struct gguf_tensor *t = &f->tensors[i];
		if (predictor_tensor(t->name))
			continue;
		char name[96];
		gguf_str_copy(t->name, name, sizeof(name));
		gguf_writer_add_tensor(w, name, t->n_dims, t->ne, (enum pf_dtype)t->type);
	}
	for (int l = 0; l < L; l++) {
		char name[64];
		uint64_t ne1[2] = { (uint64_t)d, (uint64_t)rank }, ne2[2] = { (uint64_t)rank, (uint64_t)n_ff },
			 ne3[2] = { (uint64_t)d, (uint64_t)n_ff };
		snprintf(name, sizeof(name), "blk.%d.fc1.weight", l);
		gguf_writer_add_tensor(w, name, 2, ne1, type);
		snprintf(name, sizeof(name), "blk.%d.fc2.weight", l);
		gguf_writer_add_tensor(w, name, 2, ne2, type);
		snprintf(name, sizeof(name), "blk.%d.ffn_down_t.weight", l);
		gguf_writer_add_tensor(w, name, 2, ne3, m->layers[l].ffn_down_t.type);
	}
	if ((r = gguf_writer_write_header(w, path, &err)))
		goto fail;
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const struct gguf_tensor *t = &f->tensors[i];
		if (!predictor_tensor(t->name) && (r = gguf_writer_write_data(w, t->data, t->nbytes, &err)))
			goto fail;
	}
	for (int l = 0; l < L; l++) {
		const float *mats[2] = { w1[l], w2[l] };
		size_t counts[2] = { (size_t)rank * d, (size_t)n_ff * rank };
		for (int k = 0; k < 2; k++) {
			if (type == PF_F16) {
				for (size_t i = 0; i < counts[k]; i++)
					half[i] = pf_fp32_to_fp16(mats[k][i]);
				r = gguf_writer_write_data(w, half, counts[k] * sizeof(uint16_t), &err);
			} else {
				r = gguf_writer_write_data(w, mats[k], counts[k] * sizeof(float), &err);
			}
			if (r)
				goto fail;
		}
		const struct pf_weight *dt = &m->layers[l].ffn_down_t;
		if ((r = gguf_writer_write_data(w, dt->data, (size_t)dt->rows * dt->row_bytes, &err)))
			goto fail;
	}
	if ((r = gguf_writer_finish(w, &err)))
		goto fail;
	goto out;
fail:
	fprintf(stderr, CMD ": %s: %s\n", path, err.msg);
out:
	free(half);
	gguf_writer_free(w);
	return r ? -1 : 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: pinfer-model fit-predictor -m MODEL -f TEXT -o OUT.gguf --rank R [options]\n"
		"Trains a low-rank activation predictor per layer of a ReLU or dReLU model\n"
		"(score = fc2 relu(fc1 x), R hidden units) and writes the model again in\n"
		"PowerInfer's format (PWRI) with them, for --sparsity predictor.\n"
		"  -f, --file TEXT          calibration text: every non-empty line is one sequence\n"
		"  --lines N                train on at most N lines\n"
		"  --skip-lines K           skip the first K non-empty lines\n"
		"  -o, --output FILE        the PowerInfer-format model to write\n"
		"  --rank R                 hidden units of each predictor, 2 .. n_ff\n"
		"  --tokens N               training tokens kept, a uniform sample of the text\n"
		"                           (default 8192); memory: N * n_layer * (4 * n_embd +\n"
		"                           n_ff / 8) bytes (small models: MiBs; 7B: 4.6 GiB)\n"
		"  --recall R               recall the threshold keeps on the training tokens, per\n"
		"                           layer (default 0.99)\n"
		"  --eval-file FILE         held-out text (default: the -f text)\n"
		"  --eval-lines N           held-out lines (default 100)\n"
		"  --eval-skip-lines K      lines skipped before them (default: the lines after the\n"
		"                           training lines); must not overlap the training lines\n"
		"  --epochs N               passes over the training tokens (default 8)\n"
		"  --batch N                tokens per step (default 256)\n"
		"  --lr X                   Adam's step, decaying linearly to 0 (default 0.002)\n"
		"  --pos-weight W           loss weight of an active neuron (default: inactive/active)\n"
		"  --seed S                 initialization and sampling seed (default 1)\n"
		"  --type f16|f32           format of fc1 and fc2 (default f16)\n"
		"  -t, --threads N  -c, --ctx-size N  --mlock  --act relu|drelu  --rope norm|neox\n");
}

int cmd_fit_predictor(int argc, char **argv)
{
	static const struct option longopts[] = {
		DENSE_MODEL_LONG_OPTS,
		TEXT_LONG_OPTS,
		{ "output", required_argument, NULL, 'o' },
		{ "rank", required_argument, NULL, OPT_RANK },
		{ "tokens", required_argument, NULL, OPT_TOKENS },
		{ "eval-file", required_argument, NULL, OPT_EVAL_FILE },
		{ "eval-lines", required_argument, NULL, OPT_EVAL_LINES },
		{ "eval-skip-lines", required_argument, NULL, OPT_EVAL_SKIP },
		{ "recall", required_argument, NULL, OPT_RECALL },
		{ "epochs", required_argument, NULL, OPT_EPOCHS },
		{ "batch", required_argument, NULL, OPT_BATCH },
		{ "lr", required_argument, NULL, OPT_LR },
		{ "pos-weight", required_argument, NULL, OPT_POS_WEIGHT },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "type", required_argument, NULL, OPT_TYPE },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct model_opts mo;
	model_opts_init(&mo);
	struct text_opts to = TEXT_OPTS_INIT;
	struct text_opts eo = { .path = NULL, .skip = -1, .max = DEFAULT_EVAL_LINES };
	const char *out_path = NULL;
	long rank = 0, tokens_cap = 8192, epochs = 8, batch = 256, seed = 1;
	float recall = 0.99f, lr = 0.002f, pos_weight = 0.0f;
	enum pf_dtype type = PF_F16;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, MODEL_SHORT_OPTS TEXT_SHORT_OPTS "o:h", longopts, NULL)) != -1) {
		int r = text_cmd_opts_parse(&mo, &to, opt, optarg, CMD, usage);
		if (r < 0)
			return 2;
		if (r > 0)
			continue;
		const char *bad = NULL;
		switch (opt) {
		case 'o': out_path = optarg; break;
		case OPT_RANK:
			if (!parse_int(optarg, 2, 1 << 20, &rank))
				return usage_error(CMD, usage, "--rank is the number of hidden units, at least 2, not '%s'",
						   optarg);
			break;
		case OPT_TOKENS:
			if (!parse_int(optarg, 16, 1 << 24, &tokens_cap))
				bad = "--tokens";
			break;
		case OPT_EVAL_FILE: eo.path = optarg; break;
		case OPT_EVAL_LINES:
			if (!parse_int(optarg, 0, 1L << 40, &eo.max))
				bad = "--eval-lines";
			break;
		case OPT_EVAL_SKIP:
			if (!parse_int(optarg, 0, 1L << 40, &eo.skip))
				bad = "--eval-skip-lines";
			break;
		case OPT_RECALL:
			if (!parse_float(optarg, &recall) || !(recall > 0.0f && recall <= 1.0f))
				bad = "--recall (0 < R <= 1)";
			break;
		case OPT_EPOCHS:
			if (!parse_int(optarg, 0, 100000, &epochs))
				bad = "--epochs";
			break;
		case OPT_BATCH:
			if (!parse_int(optarg, 1, 1 << 16, &batch))
				bad = "--batch";
			break;
		case OPT_LR:
			if (!parse_float(optarg, &lr) || !(lr > 0.0f && lr < 10.0f))
				bad = "--lr";
			break;
		case OPT_POS_WEIGHT:
			if (!parse_float(optarg, &pos_weight) || !(pos_weight > 0.0f && pos_weight < 1e6f))
				bad = "--pos-weight";
			break;
		case OPT_SEED:
			if (!parse_int(optarg, 0, 1L << 62, &seed))
				bad = "--seed";
			break;
		case OPT_TYPE:
			if (!strcmp(optarg, "f16"))
				type = PF_F16;
			else if (!strcmp(optarg, "f32"))
				type = PF_F32;
			else
				bad = "--type (f16 or f32)";
			break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
		if (bad)
			return usage_error(CMD, usage, "bad value '%s' for %s", optarg, bad);
	}
	int r = text_cmd_opts_check(&mo, &to, argc, argv, CMD, usage);
	if (r)
		return r;
	if (!out_path || !rank)
		return usage_error(CMD, usage, "%s", !out_path ? "no output file given (-o OUT.gguf)"
						     : "no rank given (--rank R)");
	if (mo.params.ffn_act == PINFER_ACT_SILU)
		return usage_error(CMD, usage, "--act silu: predictors are for ReLU-family models (relu, drelu)");
	/* Held-out lines: by default the ones after the training lines. On
	 * the same file they may not overlap the training lines. */
	bool same_file = !eo.path || !strcmp(eo.path, to.path);
	if (!eo.path)
		eo.path = to.path;
	if (eo.skip >= 0 && same_file && eo.max != 0) {
		long a0 = to.skip, a1 = to.max < 0 ? -1 : to.skip + to.max;  /* -1: to the end */
		long b0 = eo.skip, b1 = eo.max < 0 ? -1 : eo.skip + eo.max;
		bool overlap = (a1 < 0 || b0 < a1) && (b1 < 0 || a0 < b1);
		if (overlap)
			return usage_error(CMD, usage,
					   "the held-out lines (--eval-skip-lines %ld, --eval-lines %ld) overlap the "
					   "training lines (--skip-lines %ld, --lines %ld): evaluate on other lines",
					   eo.skip, eo.max, to.skip, to.max);
	}
	mo.params.sparsity = PINFER_SPARSITY_DENSE;
	mo.params.calibration = NULL;

	size_t len, elen = 0;
	char *text = text_opts_read(&to, &len, CMD);
	if (!text)
		return 1;
	char *etext = NULL;
	if (!same_file && !(etext = text_opts_read(&eo, &elen, CMD))) {
		free(text);
		return 1;
	}
	struct pinfer_model *m = model_opts_open(&mo, CMD);
	if (!m) {
		free(text);
		free(etext);
		return 1;
	}
	int rc = 1;
	const struct pinfer_model_info *info = pinfer_model_info(m);
	int L = info->n_layer, d = info->n_embd, n_ff = info->n_ff, R = (int)rank;
	struct record rec = { .n_layer = L, .d = d, .n_ff = n_ff, .yb = (n_ff + 7) / 8, .cap = (int)tokens_cap,
			      .rng = (uint64_t)seed ^ 0x73616d706c65ull };
	struct evaluation ev = { .n_layer = L, .d = d, .n_ff = n_ff, .rank = R };
	struct pinfer_ctx *c = NULL;
	float **w1 = calloc((size_t)L, sizeof(float *)), **w2 = calloc((size_t)L, sizeof(float *));
	struct fit_result *res = calloc((size_t)L, sizeof(*res));
	float *init = NULL, *up = NULL;
	struct pinfer_model *gm = NULL;
	if (info->ffn_act != PINFER_ACT_RELU && info->ffn_act != PINFER_ACT_DRELU) {
		fprintf(stderr, CMD ": %s uses %s; predictors are for ReLU-family models (relu, drelu), "
				"whose inactive neurons are exact zeros (give --act relu|drelu if the "
				"model's metadata does not say)\n",
			mo.model, pinfer_ffn_act_name(info->ffn_act));
		goto out;
	}
	if (R > n_ff) {
		fprintf(stderr, CMD ": --rank %d: at most n_ff (%d) hidden units\n", R, n_ff);
		rc = 2;
		goto out;
	}
	rec.x = calloc((size_t)L, sizeof(float *));
	rec.y = calloc((size_t)L, sizeof(uint8_t *));
	rec.group = malloc((size_t)rec.cap * sizeof(int));
	if (!w1 || !w2 || !res || !rec.x || !rec.y || !rec.group)
		goto oom;
	for (int l = 0; l < L; l++)
		if (!(rec.x[l] = malloc((size_t)rec.cap * d * sizeof(float))) ||
		    !(rec.y[l] = malloc((size_t)rec.cap * rec.yb)) ||
		    !(w1[l] = malloc((size_t)R * d * sizeof(float))) ||
		    !(w2[l] = malloc((size_t)n_ff * R * sizeof(float))))
			goto oom;

	/* 1. The training sample, from a dense run. */
	double t0 = now_seconds();
	if (!(c = text_ctx(&mo, m, false, CMD)))
		goto out;
	if (pinfer_ctx_set_ffn_probe(c, record_probe, &rec))
		goto oom;
	uint64_t tokens;
	long lines = eval_text_lines(c, m, text, len, &to, &tokens, CMD);
	pinfer_ctx_free(c);
	c = NULL;
	if (lines < 0)
		goto out;
	if (rec.oom)
		goto oom;
	if (rec.n < 16) {
		fprintf(stderr, CMD ": %llu tokens to train on in %s (after %ld skipped lines): need at least 16\n",
			(unsigned long long)tokens, to.path, to.skip);
		goto out;
	}
	double t_rec = now_seconds() - t0;

	/* 2. Fit every layer. OpenBLAS may use the cores meanwhile: no context
	 * is evaluating. */
	int threads = mo.n_threads > 0 ? mo.n_threads : pf_cpu_count();
	openblas_set_num_threads(threads);
	t0 = now_seconds();
	struct fit_opts fo = { .rank = R, .epochs = (int)epochs, .batch = (int)batch, .lr = lr,
			       .pos_weight = pos_weight, .recall = recall, .power_iters = 6,
			       .val_share = 0.2f };
	if (!(init = malloc((size_t)n_ff * d * sizeof(float))) ||
	    (info->ffn_act == PINFER_ACT_DRELU && !(up = malloc((size_t)n_ff * d * sizeof(float)))))
		goto oom;
	for (int l = 0; l < L; l++) {
		const struct pf_layer *ly = &m->layers[l];
		if (!weight_floats(&ly->ffn_gate, init) || (up && !weight_floats(&ly->ffn_up, up))) {
			fprintf(stderr, CMD ": layer %d: cannot read the gate matrix as floats\n", l);
			goto out;
		}
		if (up)
			for (size_t i = 0; i < (size_t)n_ff * d; i++)
				init[i] += up[i];
		fo.seed = (uint64_t)seed + 1000003u * (uint64_t)l;
		struct fit_data fd = { .n = rec.n, .d = d, .n_ff = n_ff, .x = rec.x[l], .y = rec.y[l], .init = init,
					.group = rec.group };
		if (fit_layer(&fd, &fo, w1[l], w2[l], type == PF_F16 ? round_f16 : NULL, &res[l]))
			goto oom;
	}
	openblas_set_num_threads(1);
	double t_fit = now_seconds() - t0;
	for (int l = 0; l < L; l++) {
		free(rec.x[l]);
		free(rec.y[l]);
		rec.x[l] = NULL;
		rec.y[l] = NULL;
	}

	/* 3. Held-out recall and precision, on another dense run. */
	ev.w1 = w1;
	ev.w2 = w2;
	ev.tp = calloc((size_t)L, sizeof(uint64_t));
	ev.pred = calloc((size_t)L, sizeof(uint64_t));
	ev.active = calloc((size_t)L, sizeof(uint64_t));
	if (!ev.tp || !ev.pred || !ev.active)
		goto oom;
	if (eo.skip < 0)
		eo.skip = to.skip + lines;
	long elines = 0;
	uint64_t etokens = 0;
	if (eo.max != 0) {
		if (!(c = text_ctx(&mo, m, false, CMD)))
			goto out;
		if (pinfer_ctx_set_ffn_probe(c, eval_probe, &ev))
			goto oom;
		elines = etext ? eval_text_lines(c, m, etext, elen, &eo, &etokens, CMD)
			       : eval_text_lines(c, m, text, len, &eo, &etokens, CMD);
		pinfer_ctx_free(c);
		c = NULL;
		if (elines < 0)
			goto out;
		if (ev.oom)
			goto oom;
	}

	/* 4. The output, from the model opened again in gate mode (its
	 * neuron-major down matrices). */
	struct model_opts go = mo;
	go.params.sparsity = PINFER_SPARSITY_GATE;
	if (!(gm = model_opts_open(&go, CMD)))
		goto out;
	if (write_output(out_path, gm, R, type, w1, w2, recall, (uint64_t)rec.n))
		goto out;

	printf(CMD ": %s, %s, rank %d, %d of %llu tokens (%ld lines) sampled, recorded in %.1f s, "
	       "fitted in %.1f s (%ld epochs)\n",
	       mo.model, pinfer_ffn_act_name(info->ffn_act), R, rec.n, (unsigned long long)tokens, lines, t_rec,
	       t_fit, epochs);
	if (etokens)
		printf("held-out: %s, %ld lines from line %ld, %llu tokens\n", eo.path, elines, eo.skip + 1,
		       (unsigned long long)etokens);
	else
		printf("held-out: none (no lines after line %ld of %s; use --eval-lines/--eval-skip-lines)\n",
		       eo.skip, eo.path);
	printf("threshold rows: %d of the %d sampled tokens (whole sequences), kept out of training\n",
	       res[0].n_val, rec.n);
	printf("layer  active | threshold rows: recall  precision | held-out: recall  precision  predicted/active  predicted\n");
	for (int l = 0; l < L; l++) {
		printf("%-5d  %5.2f%% |                 %.4f  %.4f    |", l, 100.0 * res[l].active_rate,
		       res[l].recall, res[l].precision);
		if (ev.tokens && ev.active[l])
			printf("           %.4f  %.4f     %6.3f            %5.2f%%", (double)ev.tp[l] / ev.active[l],
			       ev.pred[l] ? (double)ev.tp[l] / ev.pred[l] : 1.0, (double)ev.pred[l] / ev.active[l],
			       100.0 * ev.pred[l] / ((double)ev.tokens * n_ff));
		else
			printf("           -");
		printf("%s\n", res[l].clamped ? "  (threshold clamped: recall below target)" : "");
	}
	fflush(stdout);
	fprintf(stderr, "wrote %s\n", out_path);
	rc = 0;
	goto out;
oom:
	fprintf(stderr, CMD ": out of memory\n");
out:
	pinfer_ctx_free(c);
	pinfer_model_free(gm);
	pinfer_model_free(m);
	for (int l = 0; l < L; l++) {
		if (rec.x)
			free(rec.x[l]);
		if (rec.y)
			free(rec.y[l]);
		if (w1)
			free(w1[l]);
		if (w2)
			free(w2[l]);
	}
	free(rec.x);
	free(rec.y);
	free(rec.slot);
	free(rec.group);
	free(w1);
	free(w2);
	free(res);
	free(init);
	free(up);
	free(ev.h);
	free(ev.s);
	free(ev.tp);
	free(ev.pred);
	free(ev.active);
	free(text);
	free(etext);
	return rc;
}
