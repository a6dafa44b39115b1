/* pinfer-model quantize: converts a GGUF model's weight matrices. */
#include <stdio.h>

#include "commands.h"
#include "common.h"
#include "quantize.h"

static int usage(FILE *f, int status)
{
	char names[256];
	quantize_type_names(names, sizeof(names));
	fprintf(f,
		"usage: pinfer-model quantize [-t N] IN.gguf OUT.gguf TYPE\n"
		"  TYPE is one of: %s\n"
		"  Matrices whose rows are a whole number of TYPE's blocks are converted;\n"
		"  other matrices keep their type, 1-D tensors (norms) become f32.\n"
		"  -t, --threads N   threads (default: online CPUs)\n",
		names);
	return status;
}

int cmd_quantize(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "threads", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct quantize_opts o = { .log = stderr };
	long v;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "t:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 't':
			if (!parse_int(optarg, 1, 1024, &v)) {
				fprintf(stderr, "quantize: --threads must be 1..1024, not '%s'\n", optarg);
				return 2;
			}
			o.n_threads = (int)v;
			break;
		case 'h':
			return usage(stdout, 0);
		default:
			return usage(stderr, 2);
		}
	}
	if (argc - optind != 3)
		return usage(stderr, 2);
	struct pf_err err = { { 0 } };
	if (quantize_parse_type(argv[optind + 2], &o.type, &err)) {
		fprintf(stderr, "quantize: %s\n", err.msg);
		return 2;
	}
	if (quantize_model(argv[optind], argv[optind + 1], &o, NULL, &err)) {
		fprintf(stderr, "quantize: %s\n", err.msg);
		return 1;
	}
	return 0;
}
