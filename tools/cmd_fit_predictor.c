/* pinfer-model fit-predictor: trains PowerInfer-style low-rank activation
 * predictors for a ReLU or dReLU model and writes the model again in
 * PowerInfer's format (docs/sparsity.md "Fitting predictors").
 *
 * Runs the model densely over a calibration text (the perplexity
 * protocol's sequences, see commands.h), then lets it write continuations
 * of the text's lines, with an FFN probe that keeps a uniform sample of
 * all these tokens: per layer the FFN input x and the neurons that fired,
 * with how far each moves the layer's output. Fits each layer's predictor
 * on them (fit_predictor.c), picks its threshold for the recall and the
 * output share asked, folds it into fc2 so that one threshold serves the
 * file, measures recall, precision and the output missed on held-out
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
#include "rng.h"
#include "threadpool.h"

enum {
	OPT_RANK = 2000, OPT_TOKENS, OPT_EVAL_FILE, OPT_EVAL_LINES, OPT_EVAL_SKIP, OPT_RECALL, OPT_EPOCHS,
	OPT_BATCH, OPT_LR, OPT_POS_WEIGHT, OPT_CONTRIB, OPT_MISSED, OPT_GEN_TOKENS, OPT_SEED, OPT_TYPE,
};

#define CMD "fit-predictor"
#define DEFAULT_EVAL_LINES 100
#define DEFAULT_CONTRIB 0.5f
#define DEFAULT_MISSED 0.005f
#define DEFAULT_GEN_TOKENS 2048

/* The training sample: per layer the x rows and the active neurons' output
 * contributions (fit_code, 0 for inactive ones) of the tokens kept. A
 * token is kept or not for all layers at once, decided at layer 0
 * (reservoir sampling, Algorithm R, seeded). */
struct record {
	int n_layer, d, n_ff;
	int cap, n;
	float *const *dnorm;  /* per layer: the norms of ffn_down's columns */
	uint64_t seen;
	float **x;
	uint8_t **y;
	int *group;  /* per row: the evaluation batch it came from (a sequence, or part of one) */
	uint8_t *generated;  /* per row: 1 for a generated token */
	int batches;
	int gen_group; /* >= 0: the group of every token evaluated (a generated continuation) */
	bool paused;   /* evaluations not to record (a continuation's prompt) */
	int *slot;   /* per token of the current evaluation: its row, or -1 */
	int slot_cap;
	uint64_t rng;
	bool oom;
};

static void record_probe(void *data, int layer, int T, const float *x, const float *gate, const float *act)
{
	(void)gate;
	struct record *r = data;
	if (r->oom || r->paused)
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
				uint64_t j = rng_next(&r->rng) % (i + 1);
				r->slot[t] = j < (uint64_t)r->cap ? (int)j : -1;
			}
		}
		r->seen += (uint64_t)T;
		int g = r->gen_group >= 0 ? r->gen_group : r->batches++;
		for (int t = 0; t < T; t++)
			if (r->slot[t] >= 0) {
				r->group[r->slot[t]] = g;
				r->generated[r->slot[t]] = r->gen_group >= 0;
			}
	}
	for (int t = 0; t < T; t++) {
		int s = r->slot[t];
		if (s < 0)
			continue;
		memcpy(r->x[layer] + (size_t)s * r->d, x + (size_t)t * r->d, (size_t)r->d * sizeof(float));
		uint8_t *y = r->y[layer] + (size_t)s * r->n_ff;
		const float *a = act + (size_t)t * r->n_ff, *dn = r->dnorm[layer];
		for (int j = 0; j < r->n_ff; j++)
			y[j] = a[j] != 0.0f ? fit_code(fabsf(a[j]) * dn[j]) : 0;
	}
}

/* Generated continuations: GEN_PROMPT tokens of a training line (after
 * BOS), then up to GEN_LENGTH tokens sampled as `run` samples by default. */
#define GEN_PROMPT 4
#define GEN_LENGTH 64

/* One continuation of tokens[0 .. np) into the record, one group; adds
 * the tokens generated to *done, up to want. Returns 0, or -1 after
 * printing why. */
static int continue_line(struct pinfer_ctx *c, const struct pinfer_model *m, struct record *rec,
			 const int32_t *tokens, int np, uint64_t seed, uint64_t want, uint64_t *done)
{
	struct pinfer_sampler_params sp;
	pinfer_sampler_params_default(&sp);
	sp.seed = seed;
	struct pinfer_sampler *s;
	if (pinfer_sampler_new(&s, &sp, pinfer_model_info(m)->n_vocab)) {
		fprintf(stderr, CMD ": cannot create a sampler\n");
		return -1;
	}
	struct pf_err err;
	int r = 0;
	pinfer_ctx_truncate(c, 0);
	rec->paused = true;
	if (pinfer_eval(c, tokens, np, &err)) {
		fprintf(stderr, CMD ": generating: %s\n", err.msg);
		r = -1;
	}
	rec->paused = false;
	for (int i = 0; i < np; i++)
		pinfer_sampler_accept(s, tokens[i]);
	rec->gen_group = rec->batches++;
	for (int k = 0; !r && k < GEN_LENGTH && *done < want && pinfer_ctx_pos(c) < pinfer_ctx_size(c); k++) {
		int32_t id = pinfer_sampler_sample(s, pinfer_logits(c, -1));
		if (pinfer_token_is_eog(m, id))
			break;
		pinfer_sampler_accept(s, id);
		if (pinfer_eval(c, &id, 1, &err)) {
			fprintf(stderr, CMD ": generating: %s\n", err.msg);
			r = -1;
		}
		(*done)++;
	}
	rec->gen_group = -1;
	pinfer_sampler_free(s);
	return r;
}

/* Continuations the model writes itself, want tokens in all, from the
 * training lines in turn (again from the first when they run out), into
 * the record: the predictor runs on what the model writes, which text alone
 * may not show (a random synthetic model writes random tokens). Returns
 * the tokens generated, or -1 after printing why. */
static long long generate(struct pinfer_ctx *c, const struct pinfer_model *m, struct record *rec, char *text,
			  const struct text_opts *to, uint64_t want, uint64_t seed)
{
	int32_t *tokens = NULL;
	size_t cap = 0;
	uint64_t done = 0;
	struct text_lines it;
	text_lines_init(&it, text, to->skip, to->max);
	/* Each attempt adds a continuation; one that yields nothing (EOG
	 * first) still counts, so that the loop ends. */
	for (uint64_t attempt = 0; done < want && attempt < want; attempt++) {
		const char *line;
		size_t n;
		if (!text_lines_next(&it, &line, &n)) {
			if (it.n == 0)
				break;  /* no lines at all */
			text_lines_init(&it, text, to->skip, to->max);
			if (!text_lines_next(&it, &line, &n))
				break;
		}
		if (n + 2 > cap) {
			int32_t *t = realloc(tokens, (n + 2) * sizeof(*tokens));
			if (!t) {
				fprintf(stderr, CMD ": out of memory\n");
				free(tokens);
				return -1;
			}
			tokens = t;
			cap = n + 2;
		}
		int nt = tokenize_line(m, line, n, pinfer_ctx_size(c), tokens, to->skip + it.n, CMD);
		if (nt < 0 || (nt > 0 && continue_line(c, m, rec, tokens, nt < 1 + GEN_PROMPT ? nt : 1 + GEN_PROMPT,
							seed + attempt, want, &done))) {
			free(tokens);
			return -1;
		}
	}
	free(tokens);
	return (long long)done;
}

/* Held-out evaluation: the fitted predictors' choices against the dense
 * run's active neurons, token by token. */
struct evaluation {
	int n_layer, d, n_ff, rank;
	float **w1, **w2;
	float *h, *s;
	int rows;
	uint64_t *tp, *pred, *active, tokens;
	float *const *dnorm;  /* per layer: the norms of ffn_down's columns */
	double *e_miss, *e_all; /* per layer: sum of (act_j |down_j|)^2, missed and all */
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
	double em = 0.0, ea = 0.0;
	const float *dn = e->dnorm[layer];
	for (size_t t = 0; t < (size_t)T; t++)
		for (int j = 0; j < e->n_ff; j++) {
			size_t i = t * (size_t)e->n_ff + (size_t)j;
			int y = act[i] != 0.0f, p = e->s[i] > FIT_THRESHOLD;
			tp += (uint64_t)(y & p);
			pred += (uint64_t)p;
			active += (uint64_t)y;
			double c = (double)act[i] * dn[j];
			ea += c * c;
			if (!p)
				em += c * c;
		}
	e->e_miss[layer] += em;
	e->e_all[layer] += ea;
	e->tp[layer] += tp;
	e->pred[layer] += pred;
	e->active[layer] += active;
	if (layer == 0)
		e->tokens += (uint64_t)T;
}

/* Per layer: the threshold rows' figures (fit_layer's) and the held-out
 * ones. "missed" is the share of the FFN output the predictor loses,
 * sqrt(sum of the missed neurons' (act |down column|)^2 / the same over
 * all active neurons). */
static void print_table(const struct fit_result *res, const struct evaluation *ev, int L, int n_ff)
{
	printf("layer  active | threshold rows: recall  precision  missed | "
	       "held-out: recall  precision  predicted/active  predicted  missed\n");
	for (int l = 0; l < L; l++) {
		const struct fit_result *r = &res[l];
		printf("%-5d  %5.2f%% |                 %.4f  %.4f    %5.2f%% |", l, 100.0 * r->active_rate, r->recall,
		       r->precision, 100.0 * r->missed);
		if (ev->tokens && ev->active[l])
			printf("           %.4f  %.4f     %6.3f            %5.2f%%     %5.2f%%",
			       (double)ev->tp[l] / ev->active[l], ev->pred[l] ? (double)ev->tp[l] / ev->pred[l] : 1.0,
			       (double)ev->pred[l] / ev->active[l], 100.0 * ev->pred[l] / ((double)ev->tokens * n_ff),
			       ev->e_all[l] > 0 ? 100.0 * sqrt(ev->e_miss[l] / ev->e_all[l]) : 0.0);
		else
			printf("           -");
		printf("%s%s\n", r->by_output ? "  (threshold lowered for --output-missed)" : "",
		       r->clamped ? "  (threshold clamped above 0: the targets are not met)" : "");
	}
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
		w->ops->to_float_fast(pf_weight_row(w, r), out + (size_t)r * (size_t)w->cols, w->cols);
	return true;
}

/* The norms of a layer's ffn_down columns (n_embd rows of n_ff): how far
 * one unit of neuron j's activation moves the layer's output. Returns 0,
 * -ENOTSUP when the matrix cannot be read as floats, or -ENOMEM. */
static int down_norms(const struct pf_weight *w, float *out)
{
	if (!w->ops || !w->ops->to_float_fast)
		return -ENOTSUP;
	int64_t n_ff = w->cols;
	double *acc = calloc((size_t)n_ff, sizeof(double));
	float *row = malloc((size_t)n_ff * sizeof(float));
	if (!acc || !row) {
		free(acc);
		free(row);
		return -ENOMEM;
	}
	for (int64_t r = 0; r < w->rows; r++) {
		w->ops->to_float_fast(pf_weight_row(w, r), row, n_ff);
		for (int64_t j = 0; j < n_ff; j++)
			acc[j] += (double)row[j] * row[j];
	}
	for (int64_t j = 0; j < n_ff; j++)
		out[j] = (float)sqrt(acc[j]);
	free(acc);
	free(row);
	return 0;
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
		/* rows apart by the bundle size (bundle.h), written one by one */
		const struct pf_weight *dt = &m->layers[l].ffn_down_t;
		for (int64_t j = 0; j < dt->rows && !r; j++)
			r = gguf_writer_write_data(w, pf_weight_row(dt, j), dt->row_bytes, &err);
		if (r)
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
		"  --tokens N               training tokens kept, a uniform sample of the text's and\n"
		"                           the generated ones (default 8192); memory: N * n_layer *\n"
		"                           (4 * n_embd + n_ff) bytes (small models: MiBs; 7B: 6.7 GiB)\n"
		"  --gen-tokens N           tokens the model writes itself, continuing the first 4\n"
		"                           tokens of the training lines (64 at most each, sampled\n"
		"                           as run does by default), recorded with the text\n"
		"                           (default 2048, 0: none)\n"
		"  --recall R               recall the threshold keeps on the held-back tokens, the\n"
		"                           text's and the generated ones each, per layer (default 0.99)\n"
		"  --output-missed X        and the share of the FFN output it may miss there:\n"
		"                           sqrt(sum over missed neurons of (act |down column|)^2 /\n"
		"                           the same over all active ones) (default 0.005, 0: no limit)\n"
		"  --eval-file FILE         held-out text (default: the -f text)\n"
		"  --eval-lines N           held-out lines (default 100)\n"
		"  --eval-skip-lines K      lines skipped before them (default: the lines after the\n"
		"                           training lines); must not overlap the training lines\n"
		"  --epochs N               passes over the training tokens (default 8)\n"
		"  --batch N                tokens per step (default 256)\n"
		"  --lr X                   Adam's step, decaying linearly to 0 (default 0.002)\n"
		"  --pos-weight W           mean loss weight of an active neuron (default:\n"
		"                           inactive/active)\n"
		"  --contrib-weight A       share of an active neuron's weight that follows its output\n"
		"                           contribution act |down column| (default 0.5)\n"
		"  --seed S                 initialization and sampling seed (default 1)\n"
		"  --type f16|f32           format of fc1 and fc2 (default f16)\n"
		"  -t, --threads N  -c, --ctx-size N  --mlock  --mmap  --act relu|drelu  --rope norm|neox\n");
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
		{ "contrib-weight", required_argument, NULL, OPT_CONTRIB },
		{ "output-missed", required_argument, NULL, OPT_MISSED },
		{ "gen-tokens", required_argument, NULL, OPT_GEN_TOKENS },
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
	long rank = 0, tokens_cap = 8192, epochs = 8, batch = 256, seed = 1, gen_tokens = DEFAULT_GEN_TOKENS;
	float recall = 0.99f, lr = 0.002f, pos_weight = 0.0f, contrib = DEFAULT_CONTRIB, missed = DEFAULT_MISSED;
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
		case OPT_CONTRIB:
			if (!parse_float(optarg, &contrib) || !(contrib >= 0.0f && contrib <= 1.0f))
				bad = "--contrib-weight (0 <= A <= 1)";
			break;
		case OPT_MISSED:
			if (!parse_float(optarg, &missed) || !(missed >= 0.0f && missed <= 1.0f))
				bad = "--output-missed (0 <= X <= 1)";
			break;
		case OPT_GEN_TOKENS:
			if (!parse_int(optarg, 0, 1 << 24, &gen_tokens))
				bad = "--gen-tokens";
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
	float **dnorm = calloc((size_t)L, sizeof(float *));
	struct record rec = { .n_layer = L, .dnorm = dnorm, .gen_group = -1, .d = d, .n_ff = n_ff, .cap = (int)tokens_cap,
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
	rec.generated = malloc((size_t)rec.cap);
	if (!w1 || !w2 || !res || !dnorm || !rec.x || !rec.y || !rec.group || !rec.generated)
		goto oom;
	for (int l = 0; l < L; l++)
		if (!(dnorm[l] = malloc((size_t)n_ff * sizeof(float))) ||
		    !(rec.x[l] = malloc((size_t)rec.cap * d * sizeof(float))) ||
		    !(rec.y[l] = malloc((size_t)rec.cap * n_ff)) ||
		    !(w1[l] = malloc((size_t)R * d * sizeof(float))) ||
		    !(w2[l] = malloc((size_t)n_ff * R * sizeof(float))))
			goto oom;

	/* A neuron's output contribution is its activation times the norm of
	 * its down column. */
	for (int l = 0; l < L; l++) {
		int e = down_norms(&m->layers[l].ffn_down, dnorm[l]);
		if (e == -ENOMEM)
			goto oom;
		if (e) {
			fprintf(stderr, CMD ": layer %d: cannot read the down matrix as floats\n", l);
			goto out;
		}
	}

	/* 1. The training sample, from a dense run. */
	double t0 = now_seconds();
	if (!(c = text_ctx(&mo, m, false, CMD)))
		goto out;
	if (pinfer_ctx_set_ffn_probe(c, record_probe, &rec))
		goto oom;
	uint64_t tokens;
	long lines = eval_text_lines(c, m, text, len, &to, &tokens, CMD);
	double t_gen = now_seconds();
	long long generated = 0;
	if (lines >= 0 && !rec.oom && gen_tokens > 0)
		generated = generate(c, m, &rec, text, &to, (uint64_t)gen_tokens, (uint64_t)seed * 0x9e3779b9u);
	t_gen = now_seconds() - t_gen;
	pinfer_ctx_free(c);
	c = NULL;
	if (lines < 0 || generated < 0)
		goto out;
	if (rec.oom)
		goto oom;
	tokens += (uint64_t)generated;
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
			       .pos_weight = pos_weight, .contrib = contrib, .recall = recall, .missed = missed,
			       .power_iters = 6,
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
					.group = rec.group, .generated = rec.generated };
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
	ev.dnorm = dnorm;
	ev.e_miss = calloc((size_t)L, sizeof(double));
	ev.e_all = calloc((size_t)L, sizeof(double));
	if (!ev.tp || !ev.pred || !ev.active || !ev.e_miss || !ev.e_all)
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

	printf(CMD ": %s, %s, rank %d, %d of %llu tokens (%ld lines, %lld generated) sampled, recorded in %.1f s "
	       "(generating %.1f s), fitted in %.1f s (%ld epochs)\n",
	       mo.model, pinfer_ffn_act_name(info->ffn_act), R, rec.n, (unsigned long long)tokens, lines, generated,
	       t_rec, t_gen, t_fit, epochs);
	if (etokens)
		printf("held-out: %s, %ld lines from line %ld, %llu tokens\n", eo.path, elines, eo.skip + 1,
		       (unsigned long long)etokens);
	else
		printf("held-out: none (no lines after line %ld of %s; use --eval-lines/--eval-skip-lines)\n",
		       eo.skip, eo.path);
	printf("threshold rows: %d of the %d sampled tokens (whole sequences, %d generated), kept out of training\n",
	       res[0].n_val, rec.n, res[0].n_val_generated);
	print_table(res, &ev, L, n_ff);
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
		if (dnorm)
			free(dnorm[l]);
	}
	free(dnorm);
	free(ev.e_miss);
	free(ev.e_all);
	free(rec.x);
	free(rec.y);
	free(rec.slot);
	free(rec.group);
	free(rec.generated);
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
