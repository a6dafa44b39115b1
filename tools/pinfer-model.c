/* pinfer-model: model tooling that runs the engine in-process. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} commands[] = {
	{ "info", cmd_info, "info MODEL: architecture, shapes, tensor types, vocab, memory" },
	{ "tokenize", cmd_tokenize, "tokenize -m MODEL [-v] [--no-bos] [TEXT]: token ids of TEXT or stdin" },
	{ "detokenize", cmd_detokenize, "detokenize -m MODEL [IDS...]: text of ids (or stdin)" },
	{ "run", cmd_run, "run -m MODEL -p PROMPT -n N [sampling flags]: generate text" },
	{ "perplexity", cmd_perplexity, "perplexity -m MODEL -f TEXT [--lines N] [--skip-lines K]: per-line perplexity" },
	{ "profile", cmd_profile, "profile -m MODEL -f TEXT -o PROFILE [--lines N] [--skip-lines K]: neuron activation counts" },
	{ "calibrate", cmd_calibrate, "calibrate -m MODEL -f TEXT --sparsity S -o FILE [--lines N] [--skip-lines K]: threshold-mode thresholds" },
	{ "fit-predictor", cmd_fit_predictor, "fit-predictor -m MODEL -f TEXT -o OUT.gguf --rank R: train activation predictors (ReLU/dReLU; PowerInfer format)" },
	{ "pack", cmd_pack, "pack -m MODEL --profile PROFILE -o OUT: bundle file for flash offload (neuron-major, hottest first)" },
	{ "plan", cmd_plan, "plan -m MODEL --memory-budget SIZE: how a bundle file's memory budget is spent" },
	{ "convert", cmd_convert, "convert CHECKPOINT.bin TOKENIZER.bin -o OUT.gguf [--type f32|f16]: llama2.c -> GGUF" },
	{ "quantize", cmd_quantize, "quantize IN.gguf OUT.gguf TYPE: convert weight matrices (q4_0, q8_0, q4_k...)" },
	{ "synth", cmd_synth, "synth (--shape NAME | --dim D --ff F --layers L --heads H) -o OUT.gguf: random-weight model" },
	{ "bench", cmd_bench, "bench -m MODEL [-t N] [-n N] [-p N]: decode/prefill speed and roofline;\n        bench --kernels [-t N]: matrix-product speed per format and batch size" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: pinfer-model COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %s\n", commands[i].help);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "pinfer-model: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
