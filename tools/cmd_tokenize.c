/* pinfer-model tokenize / detokenize. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"

enum { OPT_NO_BOS = 2000, OPT_SPECIAL };

int cmd_tokenize(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "no-bos", no_argument, NULL, OPT_NO_BOS },
		{ "special", no_argument, NULL, OPT_SPECIAL },
		{ 0 },
	};
	struct model_opts mo;
	model_opts_init(&mo);
	bool verbose = false, add_bos = true, special = false;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "m:v", longopts, NULL)) != -1) {
		switch (opt) {
		case 'm': mo.model = optarg; break;
		case 'v': verbose = true; break;
		case OPT_NO_BOS: add_bos = false; break;
		case OPT_SPECIAL: special = true; break;
		default:
			fprintf(stderr, "usage: pinfer-model tokenize -m MODEL [-v] [--no-bos] [--special] [TEXT]\n");
			return 2;
		}
	}
	char *text;
	size_t len;
	if (optind < argc) {
		text = strdup(argv[optind]);
		len = text ? strlen(text) : 0;
	} else {
		text = slurp("-", &len);
	}
	if (!text) {
		fprintf(stderr, "tokenize: cannot read the text\n");
		return 1;
	}
	mo.params.mmap_weights = true;  /* nothing is decoded: no copies */
	struct pinfer_model *m = model_opts_open(&mo, "tokenize");
	int32_t *ids = malloc((len + 2) * sizeof(*ids));
	int rc = 1;
	if (!m || !ids)
		goto out;
	int n = pinfer_tokenize(m, text, len, add_bos, special, ids, len + 2);
	if (n < 0 || (size_t)n > len + 2) {
		fprintf(stderr, "tokenize: failed (%d)\n", n);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		if (verbose) {
			char piece[256];
			int k = pinfer_token_to_piece(m, ids[i], true, piece, sizeof(piece) - 1);
			piece[k < 0 ? 0 : k < (int)sizeof(piece) - 1 ? k : (int)sizeof(piece) - 1] = 0;
			printf("%6d '%s'\n", ids[i], piece);
		} else {
			printf("%s%d", i ? " " : "", ids[i]);
		}
	}
	if (!verbose)
		printf("\n");
	rc = 0;
out:
	free(ids);
	free(text);
	pinfer_model_free(m);
	return rc;
}

int cmd_detokenize(int argc, char **argv)
{
	struct model_opts mo;
	model_opts_init(&mo);
	int opt;
	optind = 1;
	while ((opt = getopt(argc, argv, "m:")) != -1) {
		if (opt != 'm') {
			fprintf(stderr, "usage: pinfer-model detokenize -m MODEL [IDS...]\n");
			return 2;
		}
		mo.model = optarg;
	}
	char *input = NULL;
	size_t len = 0;
	if (optind == argc && !(input = slurp("-", &len))) {
		fprintf(stderr, "detokenize: cannot read stdin\n");
		return 1;
	}
	size_t cap = (size_t)argc + len / 2 + 1;
	int32_t *ids = malloc(cap * sizeof(*ids));
	mo.params.mmap_weights = true;
	struct pinfer_model *m = model_opts_open(&mo, "detokenize");
	size_t n = 0;
	int rc = 1;
	char *out = NULL;
	if (!ids || !m)
		goto done;
	if (input) {
		for (char *tok = strtok(input, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
			long v;
			if (!parse_int(tok, 0, INT32_MAX, &v)) {
				fprintf(stderr, "detokenize: '%s' is not a token id\n", tok);
				goto done;
			}
			ids[n++] = (int32_t)v;
		}
	} else {
		for (int i = optind; i < argc; i++) {
			long v;
			if (!parse_int(argv[i], 0, INT32_MAX, &v)) {
				fprintf(stderr, "detokenize: '%s' is not a token id\n", argv[i]);
				goto done;
			}
			ids[n++] = (int32_t)v;
		}
	}
	int need = pinfer_detokenize(m, ids, n, NULL, 0);
	if (need < 0) {
		fprintf(stderr, "detokenize: bad token id\n");
		goto done;
	}
	out = malloc((size_t)need + 1);
	if (!out)
		goto done;
	pinfer_detokenize(m, ids, n, out, (size_t)need);
	fwrite(out, 1, (size_t)need, stdout);
	printf("\n");
	rc = 0;
done:
	free(out);
	free(input);
	free(ids);
	pinfer_model_free(m);
	return rc;
}
