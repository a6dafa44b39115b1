/* pinfer-model convert: llama2.c checkpoint + tokenizer -> llama GGUF. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "common.h"
#include "llama2c.h"

enum { OPT_TYPE = 2000, OPT_CONTEXT_LENGTH };

static int usage(FILE *f, int status)
{
	fprintf(f, "usage: pinfer-model convert CHECKPOINT.bin TOKENIZER.bin -o OUT.gguf "
			"[--type f32|f16] [--context-length N]\n");
	return status;
}

int cmd_convert(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "type", required_argument, NULL, OPT_TYPE },
		{ "context-length", required_argument, NULL, OPT_CONTEXT_LENGTH },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct pf_llama2c_opts opts = { .type = PF_F32 };
	const char *out = NULL;
	long v;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'o':
			out = optarg;
			break;
		case OPT_TYPE:
			if (strcmp(optarg, "f32") && strcmp(optarg, "f16")) {
				fprintf(stderr, "convert: --type must be f32 or f16\n");
				return 2;
			}
			opts.type = optarg[1] == '3' ? PF_F32 : PF_F16;
			break;
		case OPT_CONTEXT_LENGTH:
			if (!parse_int(optarg, 1, INT32_MAX, &v)) {
				fprintf(stderr, "convert: --context-length must be a positive integer\n");
				return 2;
			}
			opts.context_length = (uint32_t)v;
			break;
		case 'h':
			return usage(stdout, 0);
		default:
			return usage(stderr, 2);
		}
	}
	if (argc - optind != 2 || !out)
		return usage(stderr, 2);
	struct pf_err err = { { 0 } };
	if (pf_llama2c_convert(argv[optind], argv[optind + 1], out, &opts, &err)) {
		fprintf(stderr, "convert: %s\n", err.msg);
		return 1;
	}
	printf("wrote %s\n", out);
	return 0;
}
