/* Bundle files (`pinfer-model pack`, docs/format.md) through the public
 * loader: the input is the file. Loaded all in memory (every cluster read
 * and checked) and, when that works, again under the smallest memory
 * budget, which plans the hot set and serves cold clusters from the file,
 * with a token evaluated through the neuron cache. Most mutations fail a
 * checksum: the checks before them (layout keys, per-layer shapes, the
 * checksum table) are what this mostly explores. */
#include <stdlib.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "pinfer.h"

static int open_model(struct pinfer_model **m, const char *path, int ffn_cache_percent)
{
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	p.ffn_cache_percent = ffn_cache_percent;
	struct pf_err err = { { 0 } };
	int r = pinfer_model_open(m, path, &p, &err);
	fuzz_check_err(r, &err, "pinfer_model_open");
	return r;
}

static void decode_one(struct pinfer_model *m)
{
	struct pinfer_ctx_params cp;
	pinfer_ctx_params_default(&cp);
	cp.n_ctx = 4;
	cp.n_threads = 1;
	struct pinfer_ctx *c;
	struct pf_err err = { { 0 } };
	if (pinfer_ctx_new(&c, m, &cp, &err))
		return;
	int32_t tok = pinfer_token_bos(m) >= 0 ? pinfer_token_bos(m) : 0;
	int r = pinfer_eval(c, &tok, 1, &err);
	fuzz_check_err(r, &err, "pinfer_eval");
	pinfer_ctx_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int fd = fuzz_memfile(data, size, path, sizeof(path));
	if (fd < 0)
		abort();
	struct pinfer_model *m;
	if (!open_model(&m, path, 0)) {
		pinfer_model_free(m);
		if (pinfer_is_bundle_file(path) && !open_model(&m, path, PINFER_FFN_CACHE_MIN)) {
			decode_one(m);
			pinfer_model_free(m);
		}
	}
	close(fd);
	return 0;
}
