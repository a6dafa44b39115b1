/* pinfer-model synth: a random-weight llama GGUF of any shape and type. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "commands.h"
#include "common.h"
#include "quantize.h"
#include "synth.h"

enum {
	OPT_SHAPE = 2000, OPT_DIM, OPT_FF, OPT_LAYERS, OPT_HEADS, OPT_KV_HEADS, OPT_VOCAB,
	OPT_TYPE, OPT_SYNTH_ACT, OPT_SYNTH_SPARSITY, OPT_SYNTH_CTX, OPT_SEED, OPT_PREDICTOR,
	OPT_PREDICTOR_TYPE,
};

static int usage(FILE *f, int status)
{
	char shapes[256], types[256], vocab[4096];
	synth_shape_names(shapes, sizeof(shapes));
	quantize_type_names(types, sizeof(types));
	fprintf(f,
		"usage: pinfer-model synth (--shape NAME | --dim D --ff F --layers L --heads H [--kv-heads K])\n"
		"                          [options] -o OUT.gguf\n"
		"Writes a llama model with random weights (approx. normal, std 1/sqrt(row length),\n"
		"norms 1) and a real vocabulary, for speed measurements.\n"
		"  --shape NAME        one of: %s\n"
		"                      (--dim etc. given with --shape override its values)\n"
		"  --dim D --ff F --layers L --heads H --kv-heads K (default: H when --heads is given)\n"
		"  --vocab-from FILE   GGUF whose tokenizer.* keys are copied; n_vocab is its size\n"
		"                      (default: %s,\n"
		"                      i.e. $SHARED/models/..., SHARED defaulting to ../shared)\n"
		"  --type TYPE         weight type (default f16): %s\n"
		"                      matrices whose rows do not fit TYPE's blocks are written as f16\n"
		"  --act silu|relu|drelu  write pinfer.ffn_act (default: not written, i.e. silu)\n"
		"  --sparsity S        with --act relu or drelu: build the model so that about a\n"
		"                      fraction S (0 < S < 1) of its FFN activations are exactly 0\n"
		"                      for each token, with a few hot neurons firing most often\n"
		"                      (a bias channel in dimension 0; docs/sparsity-synth.md)\n"
		"  --predictor R       with --sparsity: also write a low-rank activation predictor\n"
		"                      of R hidden units per layer (R even, 2..--dim; e.g. 512 for\n"
		"                      7B) and the transposed down projection, in PowerInfer's\n"
		"                      format (magic PWRI): blk.N.fc1/fc2/ffn_down_t.weight and\n"
		"                      powerinfer.sparse_threshold. The gates are made low-rank\n"
		"                      plus noise so that it finds ~99.5%% of the active neurons\n"
		"  --predictor-type TYPE  fc1 and fc2's type (default q8_0); the margin covers\n"
		"                      its rounding (q4_0 halves the bytes read per token for\n"
		"                      a few more neurons predicted)\n"
		"  --ctx N             llama.context_length (default 4096)\n"
		"  --seed S            weights are a function of S alone (default 1)\n"
		"  -t, --threads N     threads (default: online CPUs)\n"
		"  -o, --output FILE   output GGUF\n",
		shapes, synth_default_vocab(vocab, sizeof(vocab)), types);
	return status;
}

static const char *opt_name(const struct option *opts, int val)
{
	for (; opts->name; opts++)
		if (opts->val == val)
			return opts->name;
	return "?";
}

int cmd_synth(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "shape", required_argument, NULL, OPT_SHAPE },
		{ "dim", required_argument, NULL, OPT_DIM },
		{ "ff", required_argument, NULL, OPT_FF },
		{ "layers", required_argument, NULL, OPT_LAYERS },
		{ "heads", required_argument, NULL, OPT_HEADS },
		{ "kv-heads", required_argument, NULL, OPT_KV_HEADS },
		{ "vocab-from", required_argument, NULL, OPT_VOCAB },
		{ "type", required_argument, NULL, OPT_TYPE },
		{ "act", required_argument, NULL, OPT_SYNTH_ACT },
		{ "sparsity", required_argument, NULL, OPT_SYNTH_SPARSITY },
		{ "ctx", required_argument, NULL, OPT_SYNTH_CTX },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "predictor", required_argument, NULL, OPT_PREDICTOR },
		{ "predictor-type", required_argument, NULL, OPT_PREDICTOR_TYPE },
		{ "threads", required_argument, NULL, 't' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct synth_opts o;
	synth_opts_init(&o);
	o.log = stderr;
	/* Dimensions given explicitly, applied over --shape's whatever the order. */
	int dims[OPT_KV_HEADS - OPT_DIM + 1] = { 0 };
	const char *shape = NULL, *out = NULL;
	struct pf_err err = { { 0 } };
	long v;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "t:o:h", longopts, NULL)) != -1) {
		bool ok = true;
		switch (opt) {
		case OPT_SHAPE: shape = optarg; break;
		case OPT_DIM: case OPT_FF: case OPT_LAYERS: case OPT_HEADS: case OPT_KV_HEADS:
			ok = parse_int(optarg, 1, 1000000, &v);
			dims[opt - OPT_DIM] = (int)v;
			break;
		case OPT_VOCAB: o.vocab = optarg; break;
		case OPT_TYPE:
			if (quantize_parse_type(optarg, &o.type, &err)) {
				fprintf(stderr, "synth: --type: %s\n", err.msg);
				return 2;
			}
			break;
		case OPT_SYNTH_ACT:
			ok = false;
			for (int a = PINFER_ACT_SILU; a <= PINFER_ACT_DRELU; a++)
				if (!strcasecmp(optarg, pinfer_ffn_act_name((enum pinfer_ffn_act)a))) {
					o.act = (enum pinfer_ffn_act)a;
					ok = true;
				}
			break;
		case OPT_SYNTH_SPARSITY:
			ok = parse_float(optarg, &o.sparsity) && o.sparsity > 0 && o.sparsity < 1;
			break;
		case OPT_SYNTH_CTX:
			ok = parse_int(optarg, 1, 1 << 30, &v);
			o.n_ctx = (uint32_t)v;
			break;
		case OPT_PREDICTOR:
			ok = parse_int(optarg, 2, 1000000, &v) && v % 2 == 0;
			o.predictor = (int)v;
			break;
		case OPT_PREDICTOR_TYPE:
			if (quantize_parse_type(optarg, &o.predictor_type, &err)) {
				fprintf(stderr, "synth: --predictor-type: %s\n", err.msg);
				return 2;
			}
			break;
		case OPT_SEED:
			ok = parse_int(optarg, 0, __LONG_MAX__, &v);
			o.seed = (uint64_t)v;
			break;
		case 't':
			ok = parse_int(optarg, 1, 1024, &v);
			o.n_threads = (int)v;
			break;
		case 'o': out = optarg; break;
		case 'h': return usage(stdout, 0);
		default: return usage(stderr, 2);
		}
		if (!ok) {
			fprintf(stderr, "synth: bad value '%s' for --%s (see --help)\n", optarg,
				opt_name(longopts, opt));
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "synth: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!out) {
		fprintf(stderr, "synth: no output file (-o OUT.gguf)\n");
		return 2;
	}
	if (shape && synth_set_shape(&o, shape)) {
		char names[256];
		synth_shape_names(names, sizeof(names));
		fprintf(stderr, "synth: unknown shape '%s' (expected one of: %s)\n", shape, names);
		return 2;
	}
	int *fields[] = { &o.n_embd, &o.n_ff, &o.n_layer, &o.n_head, &o.n_head_kv };
	for (int i = 0; i < 5; i++)
		if (dims[i]) {
			*fields[i] = dims[i];
			o.shape = NULL;  /* no longer the named shape */
		}
	if (dims[OPT_HEADS - OPT_DIM] && !dims[OPT_KV_HEADS - OPT_DIM])
		o.n_head_kv = o.n_head;
	if (o.sparsity > 0 && o.act != PINFER_ACT_RELU && o.act != PINFER_ACT_DRELU) {
		fprintf(stderr, "synth: --sparsity needs --act relu or drelu (SiLU has no exact zeros)\n");
		return 2;
	}
	if (o.predictor && o.sparsity == 0) {
		fprintf(stderr, "synth: --predictor needs --sparsity S (and --act relu or drelu)\n");
		return 2;
	}
	if (!o.n_embd || !o.n_ff || !o.n_layer || !o.n_head) {
		fprintf(stderr, "synth: give --shape NAME, or --dim, --ff, --layers and --heads\n");
		return 2;
	}
	if (o.predictor > o.n_embd) {
		fprintf(stderr, "synth: --predictor %d: at most --dim (%d) hidden units\n", o.predictor,
			o.n_embd);
		return 2;
	}
	if (synth_model(out, &o, &err)) {
		fprintf(stderr, "synth: %s\n", err.msg);
		return 1;
	}
	return 0;
}
