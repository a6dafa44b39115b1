/* pinfer-model info: what a model is and what running it costs. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "common.h"
#include "dtype.h"
#include "gguf.h"
#include "quant.h"

static void print_tensor_types(const struct gguf_file *f)
{
	uint64_t count[PF_DTYPE_COUNT] = { 0 }, bytes[PF_DTYPE_COUNT] = { 0 };
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		count[f->tensors[i].type]++;
		bytes[f->tensors[i].type] += f->tensors[i].nbytes;
	}
	printf("tensor types:");
	for (int t = 0; t < PF_DTYPE_COUNT; t++)
		if (count[t])
			printf(" %s x%llu (%.1f MiB)", pf_dtype_info((uint32_t)t)->name,
			       (unsigned long long)count[t], bytes[t] / 1048576.0);
	printf("\n");
}

int cmd_info(int argc, char **argv)
{
	bool verbose = argc > 1 && !strcmp(argv[1], "-v");
	if (argc != 2 + verbose) {
		fprintf(stderr, "usage: pinfer-model info [-v] MODEL\n");
		return 2;
	}
	struct model_opts mo;
	model_opts_init(&mo);
	mo.model = argv[1 + verbose];
	mo.params.mmap_weights = true;  /* nothing is decoded: no copies */
	struct pinfer_model *m = model_opts_open(&mo, "info");
	if (!m)
		return 1;
	const struct pinfer_model_info *i = pinfer_model_info(m);
	struct gguf_file *f;
	struct pf_err err;
	if (gguf_open(&f, mo.model, &err)) {
		fprintf(stderr, "info: %s\n", err.msg);
		pinfer_model_free(m);
		return 1;
	}
	printf("file: %s (%.1f MiB, GGUF v%u, %llu tensors, %llu metadata keys)\n", mo.model,
	       i->file_bytes / 1048576.0, f->version, (unsigned long long)f->n_tensors,
	       (unsigned long long)f->n_kv);
	printf("name: %s\narchitecture: %s\n", i->name[0] ? i->name : "(none)", i->arch);
	printf("params: %.2f M\n", i->n_params / 1e6);
	printf("n_embd %d, n_ff %d, n_layer %d, n_head %d, n_head_kv %d, head_dim %d\n", i->n_embd,
	       i->n_ff, i->n_layer, i->n_head, i->n_head_kv, i->head_dim);
	printf("context %d, rope %s dim %d base %g, rms eps %g\n", i->n_ctx_train,
	       i->rope == PINFER_ROPE_NEOX ? "neox" : "norm", i->rope_dim, i->rope_freq_base,
	       i->rms_eps);
	printf("ffn activation: %s\noutput head: %s\n", pinfer_ffn_act_name(i->ffn_act),
	       i->tied_output ? "tied to token_embd" : "separate");
	printf("vocab: %d tokens, bos %d, eos %d\n", i->n_vocab, pinfer_token_bos(m), pinfer_token_eos(m));
	print_tensor_types(f);
	enum pinfer_kv_type kv = pinfer_kv_type_for(m, PINFER_KV_AUTO);
	uint64_t kv_per_token = 2ull * i->n_layer * i->n_head_kv * i->head_dim * (kv == PINFER_KV_F16 ? 2 : 4);
	int n_ctx = i->n_ctx_train < 4096 ? i->n_ctx_train : 4096;
	printf("memory: weights %.1f MiB + KV cache (%s) %.1f MiB at %d tokens (%.1f KiB/token)\n",
	       i->weight_bytes / 1048576.0, pinfer_kv_type_name(kv), kv_per_token * n_ctx / 1048576.0, n_ctx,
	       kv_per_token / 1024.0);
	printf("kernels: %s\n", pf_quant_isa());
	if (verbose)
		for (uint64_t t = 0; t < f->n_tensors; t++) {
			const struct gguf_tensor *ti = &f->tensors[t];
			char name[128];
			printf("  %-32s %-5s [%llu, %llu, %llu, %llu]\n",
			       gguf_str_copy(ti->name, name, sizeof(name)), pf_dtype_info(ti->type)->name,
			       (unsigned long long)ti->ne[0], (unsigned long long)ti->ne[1],
			       (unsigned long long)ti->ne[2], (unsigned long long)ti->ne[3]);
		}
	gguf_close(f);
	pinfer_model_free(m);
	return 0;
}
