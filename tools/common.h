/* Option parsing and model opening shared by the pinfer-model commands. */
#ifndef PINFER_TOOLS_COMMON_H
#define PINFER_TOOLS_COMMON_H

#include <getopt.h>
#include <stdbool.h>

#include "pinfer.h"

/* Options every model-running command accepts. */
struct model_opts {
	const char *model;
	int n_threads;
	int n_ctx;
	enum pinfer_kv_type kv_type;
	struct pinfer_model_params params;
};

/* getopt_long entries for model_opts; the codes are above any short option. */
enum { OPT_MLOCK = 1000, OPT_ACT, OPT_ROPE, OPT_CTX, OPT_SPARSITY, OPT_CALIBRATION, OPT_MEMORY_BUDGET,
       OPT_KV_TYPE, OPT_MMAP };
#define MODEL_LONG_OPTS                                                   \
	DENSE_MODEL_LONG_OPTS,                                            \
	{ "sparsity", required_argument, NULL, OPT_SPARSITY },            \
	{ "calibration", required_argument, NULL, OPT_CALIBRATION },      \
	{ "memory-budget", required_argument, NULL, OPT_MEMORY_BUDGET }
/* Those of a command that always runs densely: all but --sparsity and
 * --calibration. */
#define DENSE_MODEL_LONG_OPTS                                             \
	{ "model", required_argument, NULL, 'm' },                        \
	{ "threads", required_argument, NULL, 't' },                      \
	{ "ctx-size", required_argument, NULL, 'c' },                     \
	{ "kv-type", required_argument, NULL, OPT_KV_TYPE },              \
	{ "mlock", no_argument, NULL, OPT_MLOCK },                        \
	{ "mmap", no_argument, NULL, OPT_MMAP },                          \
	{ "act", required_argument, NULL, OPT_ACT },                      \
	{ "rope", required_argument, NULL, OPT_ROPE }
/* Their help line, for every command's usage. */
#define MODEL_OPTS_HELP                                                              \
	"  -t, --threads N  -c, --ctx-size N  --kv-type auto|f32|f16  --mlock  --act silu|relu|drelu\n" \
	"  --rope norm|neox  --mmap (read the weights in place in the file's pages)\n" \
	"  --sparsity auto|dense|gate|threshold|predictor  --calibration FILE (thresholds)\n" \
	"  --memory-budget SIZE|N%%ffn|min  bundle files: bytes (K/M/G suffixes) for the model\n" \
	"                   and its context; or a neuron cache of N%% of the FFN, or the smallest\n"
#define MODEL_SHORT_OPTS "m:t:c:"

void model_opts_init(struct model_opts *o);
/* Handles opt when it is one of MODEL_LONG_OPTS. Returns 1 when handled,
 * 0 when not ours, -1 (after printing why) when the value is bad. */
int model_opts_parse(struct model_opts *o, int opt, const char *arg, const char *cmd);
/* Opens o->model, printing the error; NULL on failure. */
struct pinfer_model *model_opts_open(const struct model_opts *o, const char *cmd);
/* The model's name: its general.name, else its file's. */
const char *model_opts_name(const struct model_opts *o, const struct pinfer_model *m);
/* A context sized by the options. */
struct pinfer_ctx *model_opts_ctx(const struct model_opts *o, struct pinfer_model *m,
				  int n_batch, bool all_logits, const char *cmd);

/* A usage error: prints "cmd: " and the message, then the usage; returns
 * 2, the exit status for it. */
int usage_error(const char *cmd, void (*usage)(void), const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

bool parse_int(const char *s, long min, long max, long *out);
/* The index of the largest of n logits (the first of equals): greedy. */
int logits_argmax(const float *x, int n);
bool parse_float(const char *s, float *out);
double now_seconds(void);

/* Reads a whole file ("-" for stdin) into a NUL-terminated malloc'd buffer. */
char *slurp(const char *path, size_t *len);

#endif
