/* libpinfer: the public engine API used by pinferd and the tools.
 *
 * A model (weights mapped from a GGUF file, vocabulary, hyperparameters) is
 * read-only once open and may be shared by many contexts. A context holds
 * one sequence's KV cache and scratch buffers and is used by one thread at a
 * time. A sampler turns logits into a token id and remembers recent tokens
 * for its penalties.
 *
 * Errors: calls return 0 (or a non-negative count) on success and a negative
 * errno-style code on failure; when given a struct pf_err they also describe
 * the failure in a sentence. The engine never exits the process. */
#ifndef PINFER_H
#define PINFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Only what this header declares is exported from libpinfer.so; the engine
 * is built with hidden visibility otherwise. */
#define PINFER_API __attribute__((visibility("default")))

struct pinfer_model;
struct pinfer_ctx;
struct pinfer_sampler;

enum pinfer_ffn_act {
	PINFER_ACT_AUTO = 0,  /* from metadata; SiLU when it says nothing */
	PINFER_ACT_SILU,      /* SwiGLU: silu(gate) * up */
	PINFER_ACT_RELU,      /* relu(gate) * up (ReluLLaMA, ProSparse) */
	PINFER_ACT_DRELU,     /* relu(gate) * relu(up) (TurboSparse) */
};

enum pinfer_rope_type {
	PINFER_ROPE_AUTO = 0,  /* from the architecture */
	PINFER_ROPE_NORM,      /* rotate adjacent pairs (2i, 2i+1) */
	PINFER_ROPE_NEOX,      /* rotate (i, i + d/2) */
};

/* Which FFN neurons a decode step computes (docs/sparsity.md). Prefill
 * computes every neuron and zeroes those the mode skips, so both agree. */
enum pinfer_sparsity {
	PINFER_SPARSITY_AUTO = 0,   /* gate for ReLU-family models, threshold when
				     * thresholds are known, else dense */
	PINFER_SPARSITY_DENSE,      /* every neuron: the reference */
	PINFER_SPARSITY_GATE,       /* ReLU/dReLU: the gate for all, up and down only
				     * where the activation is not zero (exact) */
	PINFER_SPARSITY_THRESHOLD,  /* SwiGLU: up and down only where |silu(gate)|
				     * exceeds the layer's calibrated threshold (CATS) */
	PINFER_SPARSITY_PREDICTOR,  /* a low-rank predictor picks the neurons */
};

struct pinfer_model_params {
	bool mlock;                    /* lock the weights in RAM */
	/* Read the weights in place in the file's mapping (shared with the
	 * page cache, 4 KiB pages) instead of copies in huge pages, which
	 * decode reads faster (docs/design.md "Weights in memory"). */
	bool mmap_weights;
	enum pinfer_ffn_act ffn_act;   /* override the FFN activation */
	enum pinfer_rope_type rope;    /* override the RoPE ordering */
	enum pinfer_sparsity sparsity;
	/* Thresholds from `pinfer-model calibrate` (threshold mode); NULL:
	 * those stored in the model, if any. */
	const char *calibration;
	/* Bundle files (`pinfer-model pack`): bytes the model may use, its
	 * contexts included, the FFN's hot neurons pinned and the others read
	 * from the file on demand (docs/offload.md); 0: all of it in memory. */
	uint64_t memory_budget;
	/* Instead of memory_budget: a neuron cache of this percentage of the
	 * FFN's bytes (1-100) on top of what the rest takes, or the smallest
	 * one (PINFER_FFN_CACHE_MIN); 0: memory_budget decides. */
	int ffn_cache_percent;
};
#define PINFER_FFN_CACHE_MIN (-1)

struct pinfer_model_info {
	char arch[32];
	char name[128];
	int n_vocab, n_embd, n_ff, n_layer, n_head, n_head_kv, head_dim, n_ctx_train, rope_dim;
	float rope_freq_base, rms_eps;
	enum pinfer_ffn_act ffn_act;
	enum pinfer_rope_type rope;
	bool tied_output;
	uint64_t n_params;
	char quant[16];                /* format of most weight bytes ("q4_0", "f16"...) */
	uint64_t weight_bytes;         /* bytes of tensor data in the file */
	uint64_t decode_bytes;         /* weight bytes one decode step reads */
	uint64_t file_bytes;
	enum pinfer_sparsity sparsity; /* the mode chosen, never AUTO */
	/* Sparse modes: weight bytes a decode step reads whatever fires (all
	 * but the up and down projections), and per neuron that fires in a
	 * layer (its up row and its neuron-major down row). */
	uint64_t sparse_base_bytes;
	uint64_t neuron_bytes;
	/* Predictor mode: of neuron_bytes, the gate row, which a neuron the
	 * predictor chose reads even when its gate then says it does not
	 * fire. */
	uint64_t gate_row_bytes;
	/* Memory the model holds beyond its mapped file: the neuron bundles a
	 * sparse mode builds at load and the copies of the weights decode
	 * reads (copied_bytes of it: those pages of the file are left to the
	 * page cache). */
	uint64_t heap_bytes;
	uint64_t copied_bytes;
};

/* An offloaded model's memory and reads (pinfer_model_params.memory_budget). */
struct pinfer_offload_stats {
	uint64_t budget, minimum;      /* bytes: the budget, the smallest accepted */
	uint64_t resident_bytes;       /* weights outside the FFN bundles (mapped) */
	uint64_t context_bytes;        /* the contexts made on the model */
	uint64_t cache_bytes;          /* the neuron cache's capacity */
	uint64_t clusters, hot_clusters, cached_clusters;
	uint64_t hits, misses;         /* cluster lookups of decode steps */
	uint64_t reads, bytes_read;
	uint64_t read_ns;              /* time decode and prefill waited for reads */
	uint64_t prefetch_reads;       /* reads started during attention, on a guess */
	uint64_t prefetch_used;        /* of those, the clusters the FFN then needed */
	bool direct;                   /* reads bypass the page cache (O_DIRECT) */
	const char *io;                /* "io_uring", or "pread" where it is unavailable */
};

PINFER_API void pinfer_model_params_default(struct pinfer_model_params *p);
PINFER_API int pinfer_model_open(struct pinfer_model **out, const char *path,
		      const struct pinfer_model_params *p, struct pf_err *err);
PINFER_API void pinfer_model_free(struct pinfer_model *m);
PINFER_API const struct pinfer_model_info *pinfer_model_info(const struct pinfer_model *m);
PINFER_API const char *pinfer_ffn_act_name(enum pinfer_ffn_act a);
/* "auto", "dense", "gate", "threshold", "predictor"; parse returns
 * -EINVAL for anything else. */
PINFER_API const char *pinfer_sparsity_name(enum pinfer_sparsity s);
PINFER_API int pinfer_sparsity_parse(const char *name, enum pinfer_sparsity *out);
/* The threshold-mode threshold of a layer (0 in other modes). */
PINFER_API float pinfer_model_threshold(const struct pinfer_model *m, int layer);
/* A size as the tools and pinferd take it: a number of bytes, decimals
 * allowed, optionally followed by K, M, G or T (powers of 1024, either
 * case) and then B or iB, or by B alone: "512M", "1.5G", "2GiB", "4096".
 * -EINVAL (*bytes untouched) for anything else, -ERANGE past 2^64 - 1. */
PINFER_API int pinfer_size_parse(const char *s, uint64_t *bytes);
/* A memory budget as the tools and pinferd take it: a size
 * (pinfer_size_parse), "N%ffn" (1-100), "min", or "0" / "none"
 * (everything in memory), into p->memory_budget and p->ffn_cache_percent.
 * -EINVAL, p untouched, for anything else. */
PINFER_API int pinfer_memory_budget_parse(const char *s, struct pinfer_model_params *p);
/* Whether the file at path is a bundle file (`pinfer-model pack`), the
 * kind a memory budget applies to; false for any other file or error. */
PINFER_API bool pinfer_is_bundle_file(const char *path);
/* false (and *out untouched) for a model that is not offloaded. */
PINFER_API bool pinfer_model_offload_stats(const struct pinfer_model *m, struct pinfer_offload_stats *out);
/* A new budget for an offloaded model, while contexts may evaluate on
 * other threads: shrinking evicts, growing reads more hot neurons. Refused
 * (-ENOMEM, the budget unchanged) below the minimum; -EINVAL for a model
 * that is not offloaded. */
PINFER_API int pinfer_model_set_memory_budget(struct pinfer_model *m, uint64_t bytes, struct pf_err *err);
/* The budget in bytes that ffn_percent (1-100, as
 * pinfer_model_params.ffn_cache_percent) gives an offloaded model now, to
 * set it in place with pinfer_model_set_memory_budget. Never waits for an
 * evaluation. */
PINFER_API int pinfer_model_percent_budget(const struct pinfer_model *m, int ffn_percent, uint64_t *bytes,
					   struct pf_err *err);

/* Vocabulary. */
PINFER_API int pinfer_tokenize(const struct pinfer_model *m, const char *text, size_t len, bool add_bos,
		    bool parse_special, int32_t *out, size_t cap);
/* Bytes of one token; control tokens give "" unless special. Returns the
 * piece's length (more than cap means truncated) or a negative error. */
PINFER_API int pinfer_token_to_piece(const struct pinfer_model *m, int32_t id, bool special, char *buf,
			  size_t cap);
/* Text of a sequence (SentencePiece's dummy-prefix space removed); same
 * return convention, no NUL written. */
PINFER_API int pinfer_detokenize(const struct pinfer_model *m, const int32_t *ids, size_t n, char *buf,
		      size_t cap);
PINFER_API int32_t pinfer_token_bos(const struct pinfer_model *m);  /* -1 when none */
PINFER_API int32_t pinfer_token_eos(const struct pinfer_model *m);
PINFER_API bool pinfer_token_is_eog(const struct pinfer_model *m, int32_t id);

/* Streaming decode of generated tokens: a token may end inside a UTF-8
 * character, so only complete characters come out and the rest waits for
 * the next token. The fields are private. */
struct pf_vocab;
struct pinfer_detok {
	const struct pf_vocab *vocab;
	bool at_start;  /* strip the dummy-prefix space of the first piece */
	char pending[8];
	int n_pending;
};
/* continuation: the stream follows prompt text, so its first piece keeps
 * its leading space; otherwise it starts right after BOS. */
PINFER_API void pinfer_detok_init(struct pinfer_detok *d, const struct pinfer_model *m, bool continuation);
/* Writes the text token id completes; returns its length, or -ENOSPC when
 * cap (which 256 bytes always satisfies) is too small, -EINVAL for a bad id. */
PINFER_API int pinfer_detok_push(struct pinfer_detok *d, int32_t id, char *buf, size_t cap);
/* The bytes of an unfinished character at the end (at most 3). */
PINFER_API int pinfer_detok_flush(struct pinfer_detok *d, char *buf, size_t cap);

/* Worker threads that several contexts may share, as long as they never
 * evaluate at the same time (a daemon interleaving sessions on one model):
 * idle workers of per-context pools would otherwise spin against the
 * active ones for the same cores. */
struct pinfer_threads;
PINFER_API int pinfer_threads_new(struct pinfer_threads **out, int n_threads);
PINFER_API void pinfer_threads_free(struct pinfer_threads *t);

/* What the KV cache keeps keys and values in. */
enum pinfer_kv_type {
	PINFER_KV_AUTO = 0, /* F32 for a model whose weights are mostly F32, else F16 */
	PINFER_KV_F32,      /* floats */
	PINFER_KV_F16,      /* half the memory, and half the bytes attention reads per token */
};

/* "auto", "f32", "f16"; parse returns -EINVAL for anything else. */
PINFER_API const char *pinfer_kv_type_name(enum pinfer_kv_type t);
PINFER_API int pinfer_kv_type_parse(const char *name, enum pinfer_kv_type *out);
/* The type a context of m keeps for t: t itself, or AUTO's choice. */
PINFER_API enum pinfer_kv_type pinfer_kv_type_for(const struct pinfer_model *m, enum pinfer_kv_type t);

struct pinfer_ctx_params {
	int n_ctx;        /* KV cache positions; 0: the model's training context, capped at 4096 */
	enum pinfer_kv_type kv_type;
	int n_batch;      /* most tokens one eval step processes at once; 0: 128 */
	int n_threads;    /* 0: online CPUs; ignored with threads */
	struct pinfer_threads *threads;  /* shared workers, or NULL for the context's own */
	bool all_logits;  /* keep logits for every evaluated token, not only the last */
};

PINFER_API void pinfer_ctx_params_default(struct pinfer_ctx_params *p);
PINFER_API int pinfer_ctx_new(struct pinfer_ctx **out, const struct pinfer_model *m,
		   const struct pinfer_ctx_params *p, struct pf_err *err);
PINFER_API void pinfer_ctx_free(struct pinfer_ctx *c);
/* Bytes pinfer_ctx_new would allocate with these parameters, to check a
 * memory budget before allocating. */
PINFER_API uint64_t pinfer_ctx_estimate_bytes(const struct pinfer_model *m,
					      const struct pinfer_ctx_params *p);
/* Bytes the context allocated (KV cache and scratch). */
PINFER_API uint64_t pinfer_ctx_bytes(const struct pinfer_ctx *c);
PINFER_API uint64_t pinfer_ctx_kv_bytes(const struct pinfer_ctx *c);

/* Appends n tokens at the current position and runs the model over them
 * (prefill when n > 1). Fails with -ENOSPC when the context is full. */
PINFER_API int pinfer_eval(struct pinfer_ctx *c, const int32_t *tokens, int n, struct pf_err *err);
/* Logits (n_vocab floats) of the i-th token of the last eval; i = -1 means
 * its last token. Only the last is kept unless all_logits was set. */
PINFER_API const float *pinfer_logits(const struct pinfer_ctx *c, int i);
PINFER_API int pinfer_ctx_pos(const struct pinfer_ctx *c);
PINFER_API int pinfer_ctx_size(const struct pinfer_ctx *c);
PINFER_API int pinfer_ctx_batch(const struct pinfer_ctx *c);
/* Forgets positions >= pos, so a shared prompt prefix can be reused. */
PINFER_API void pinfer_ctx_truncate(struct pinfer_ctx *c, int pos);

/* FFN work of a context's evaluations so far: neurons is tokens * layers *
 * n_ff, active those computed (decode) or kept (prefill). */
struct pinfer_ffn_stats {
	uint64_t tokens;
	uint64_t neurons;
	uint64_t active;
	uint64_t predicted;     /* decode, predictor mode: the neurons it chose (active or not) */
	uint64_t ffn_ns;        /* decode: time in the FFN sublayers, the predictor's included */
	uint64_t predictor_ns;  /* decode, predictor mode: time in the predictor and choosing from it */
};
PINFER_API void pinfer_ctx_ffn_stats(const struct pinfer_ctx *c, struct pinfer_ffn_stats *out);

/* Called for every layer of every evaluation, on the evaluating thread,
 * with the batch's T rows of the FFN input x (n_embd each), the gate
 * projection (n_ff each; NULL in predictor mode) and the activations that
 * go into the down projection (n_ff each; zero where skipped). For
 * profiling, calibration and fitting predictors; slows evaluation. */
typedef void (*pinfer_ffn_probe_fn)(void *data, int layer, int T, const float *x, const float *gate,
				 const float *act);
/* fn NULL removes the probe. */
PINFER_API int pinfer_ctx_set_ffn_probe(struct pinfer_ctx *c, pinfer_ffn_probe_fn fn, void *data);

#define PINFER_SEED_RANDOM UINT64_MAX  /* seed from the system's entropy */

struct pinfer_sampler_params {
	float temp;            /* <= 0: greedy */
	int top_k;             /* <= 0: off */
	float top_p;           /* >= 1: off */
	float min_p;           /* <= 0: off */
	float repeat_penalty;  /* 1: off */
	int repeat_last_n;     /* tokens the penalties look back over */
	float presence_penalty;
	float frequency_penalty;
	uint64_t seed;
};

PINFER_API void pinfer_sampler_params_default(struct pinfer_sampler_params *p);
PINFER_API int pinfer_sampler_new(struct pinfer_sampler **out, const struct pinfer_sampler_params *p,
		       int n_vocab);
PINFER_API void pinfer_sampler_free(struct pinfer_sampler *s);
/* Picks the next token from logits (n_vocab floats, left unchanged). */
PINFER_API int32_t pinfer_sampler_sample(struct pinfer_sampler *s, const float *logits);
/* Records a token (prompt or generated) for the penalties. */
PINFER_API void pinfer_sampler_accept(struct pinfer_sampler *s, int32_t id);

/* ---- Chat templates (engine/chat.c) ----
 *
 * pinfer does not run the Jinja templates that GGUF files carry in
 * tokenizer.chat_template: it recognises the well-known ones and renders
 * their format with built-in code. The rendered text never starts with the
 * BOS token's text: tokenize it with add_bos=true, which prepends BOS when
 * the vocab wants one, and parse_special=true, so that markers such as
 * "<|start_header_id|>" or "<|im_start|>" (and "<s>" between Llama 2 turns)
 * become their control tokens instead of plain text. Raw mode (the daemon's
 * prompt path) sends the prompt as it is and never renders a template. */

struct pinfer_chat_msg {
	const char *role;     /* "system", "user" or "assistant" */
	const char *content;
};

/* The model's tokenizer.chat_template (a Jinja template), or NULL when it
 * has none. Not NUL-terminated: *len bytes that live as long as the model. */
PINFER_API const char *pinfer_model_chat_template(const struct pinfer_model *m, size_t *len);
/* The built-in template that matches the model's own, or NULL when the
 * model has none or pinfer does not recognise it. */
PINFER_API const char *pinfer_chat_template_detect(const struct pinfer_model *m);
/* The canonical built-in name for name (an explicit override, validated
 * once at startup), or NULL when there is no such template. */
PINFER_API const char *pinfer_chat_template_find(const char *name);
/* Every built-in template name, space separated (for --help and errors). */
PINFER_API const char *pinfer_chat_template_names(void);
/* Renders n messages with the template called name; add_generation_prompt
 * appends the header that makes the model answer as the assistant. Writes
 * at most cap bytes, no NUL, and returns the full length (more than cap
 * means call again with a bigger buffer), or -ENOENT for an unknown
 * template, -EINVAL for a bad message (NULL field, unknown role, a system
 * message a template cannot place), -EOVERFLOW past INT_MAX bytes. */
PINFER_API int pinfer_chat_render(const char *name, const struct pinfer_chat_msg *msgs, size_t n,
		       bool add_generation_prompt, char *buf, size_t cap);

#endif
