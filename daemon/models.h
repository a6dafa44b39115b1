/* The model registry: the GGUF files of the models directory, addressed by
 * name (file name without .gguf), loaded on first use or on request, kept
 * within a memory budget, and unloaded when their keep-alive expires or
 * when room is needed for another (least recently used idle model first).
 *
 * Loop thread only. Loads run on a thread of their own and report back
 * through a loop wake-up; the memory check happens before the KV caches
 * are allocated, so an oversized load is refused instead of OOM-killed. */
#ifndef PINFERD_MODELS_H
#define PINFERD_MODELS_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "loop.h"
#include "request.h"
#include "scheduler.h"

#define MODEL_NAME_MAX 128

enum model_state { MODEL_UNLOADED, MODEL_LOADING, MODEL_LOADED };

/* A memory budget for bundle files (docs/offload.md), as the engine takes
 * it: bytes, or a neuron cache of a percentage of the FFN
 * (PINFER_FFN_CACHE_MIN: the smallest). */
struct models_budget {
	enum { BUDGET_AUTO, BUDGET_NONE, BUDGET_SET } kind;  /* AUTO: the daemon's default */
	uint64_t bytes;
	int ffn_percent;
};

/* "2G", "1500M", bytes (K/M/G/T suffixes, powers of 1024), "N%ffn"
 * (1-100), "min", or "0"/"none" (all in memory). false for anything else. */
bool models_parse_budget(const char *s, struct models_budget *out);
/* "none", "min", "N%ffn" or bytes, into buf. */
const char *models_budget_name(const struct models_budget *b, char *buf, size_t size);

struct models_offload {
	uint64_t budget, cache_bytes;
	double hit_rate, bytes_read_per_token;
};

struct model_entry {
	char name[MODEL_NAME_MAX];
	char path[PATH_MAX];
	uint64_t file_bytes;
	enum model_state state;
	bool present;              /* seen by the last directory scan */
	struct pinfer_model *model;
	struct sched *sched;
	uint64_t mem_bytes;        /* weights + contexts, while loaded */
	int64_t keep_alive_ms;     /* < 0: forever; 0: unload when idle */
	int active;                /* requests submitted and not yet done */
	uint64_t last_used_ms;
	uint64_t expiry_timer;
	int64_t expires_at_unix_ms;  /* 0: not counting down; -1: never */
	struct request *waiters;   /* requests waiting for the load (wait_next links) */
	uint64_t max_bytes;        /* the next or current load fails above this; 0: no limit */
	enum pinfer_sparsity sparsity;  /* for the next load; AUTO: the daemon's default */
	struct models_budget budget;    /* for the next load, then what it used (never AUTO once loaded) */
	/* An offloaded model's budget (models_offload.c): */
	uint64_t budget_bytes;     /* the one asked for, in bytes: pressure shrinks from it and grows back to it */
	int squeeze;               /* pressure steps taken below budget_bytes; 0: none */
	bool resizing;             /* a change runs on a thread (holding one use, see active) */
	uint64_t mem_reserved;     /* what a growing budget takes beyond mem_bytes meanwhile */
	bool resize_asked;         /* LoadModel callers wait for a change to budget (running, or next) */
	struct models_budget budget_before;  /* budget again if that fails */
	struct models_offload offload_then;  /* the figures when the change began, reported while it runs */
	/* Of the current load: */
	uint64_t load_seq;         /* numbers the daemon's loads from 1 */
	int64_t loaded_at_unix_us;
	uint64_t tokens_generated; /* by generations that ended */
	uint64_t decode_ns;        /* their decode time */
	uint64_t ffn_neurons, ffn_active;  /* their FFN work (pinfer_ffn_stats) */
	struct models *owner;
	struct model_entry *next;
};

/* What to do with requests once a load ends: submit them (status 0) or
 * fail them with the load's error. */
typedef void models_load_done_fn(void *data, struct model_entry *e, int status, const char *error);

struct models_config {
	const char *dir;
	uint64_t budget_bytes;     /* 0: 80% of physical memory */
	int64_t keep_alive_ms;     /* default for requests that say nothing */
	int max_loaded;            /* 0: no limit but the budget */
	enum pinfer_sparsity sparsity;  /* models load in this mode unless asked otherwise */
	/* Bundle files load under this budget unless asked otherwise (AUTO or
	 * NONE: all in memory); other files ignore it. */
	struct models_budget offload_budget;
	bool mmap_weights;         /* pinfer_model_params.mmap_weights */
	/* Budgets shrunk under memory pressure grow back once no pressure was
	 * reported for this long (0: MODELS_RESTORE_MS). */
	uint64_t restore_ms;
	struct sched_config sched;
};

#define MODELS_RESTORE_MS 30000

struct models;

int models_new(struct models **out, struct loop *l, const struct models_config *c,
	       sched_notify_fn notify, void *notify_data, models_load_done_fn *load_done,
	       void *load_done_data);
/* Unloads everything (waiting for running loads to end). */
void models_free(struct models *m);

/* Rereads the directory: new files appear; entries of deleted files go
 * once unloaded. */
int models_scan(struct models *m);
struct model_entry *models_find(struct models *m, const char *name);
struct model_entry *models_first(struct models *m);

/* A request for e begins: stops its expiry countdown and applies the
 * request's keep-alive. has_keep_alive false keeps the current one. */
void models_use(struct models *m, struct model_entry *e, bool has_keep_alive, int64_t keep_alive_ms);
/* A request for e is done: with no requests left, the keep-alive countdown
 * starts (or the model unloads now for keep-alive 0). */
void models_release(struct models *m, struct model_entry *e);

/* Starts loading e unless it is loaded or loading; load_done follows.
 * Returns 0, or a negative errno when the load cannot even start. */
int models_load(struct models *m, struct model_entry *e);
/* Unloads e now; -EBUSY while requests use it or it is loading. */
int models_unload(struct models *m, struct model_entry *e);

/* A model NAME.gguf runs in threshold mode with the thresholds of
 * NAME.thresholds beside it (pinfer-model calibrate), when that exists. */
#define MODELS_THRESHOLDS_SUFFIX ".thresholds"

/* A keep-alive a client asked for: negative, or beyond a year, is forever
 * (which also keeps unix-time arithmetic far from overflow). */
int64_t models_clamp_keep_alive(int64_t ms);

/* A load asks for sparsity mode s (AUTO: whatever the model has or gets):
 * recorded for the next load of a model not in memory; -EBUSY when the
 * model is loaded or loading in another mode, which only an unload
 * changes. */
int models_want_sparsity(struct model_entry *e, enum pinfer_sparsity s);

/* The same for a memory budget (BUDGET_AUTO: whatever the model has or
 * gets), except that a loaded offloaded model asked for another size or
 * `min` changes its budget in place: then MODELS_BUDGET_CHANGING is
 * returned, and load_done follows once the change ends (with -ENOMEM when
 * the engine refuses the budget), for the caller to wait for like a load;
 * models_budget_changing() is true meanwhile. Idle models may be evicted
 * for a budget that grows. Errors, with why filled: -EBUSY when only an
 * unload can give the model that budget (loading with another, in memory,
 * `none` or `N%ffn` for a loaded one, another change in progress); -ENOMEM
 * below the model's minimum or when the growth does not fit the daemon's
 * budget. */
#define MODELS_BUDGET_CHANGING 1
int models_want_budget(struct models *m, struct model_entry *e, const struct models_budget *b, char *why,
		       size_t why_size);
bool models_budget_changing(const struct model_entry *e);

/* An offloaded model's figures (0 for the others): its budget, neuron
 * cache bytes, cache hit rate of decode steps (0..1), and bytes read from
 * the file since the load per token generated. While its budget changes,
 * those of when the change began with the budget it takes meanwhile in
 * the daemon's accounting: the engine's figures wait for the change. */
bool models_offload(const struct model_entry *e, struct models_offload *out);

/* What e's finished generations measured since its load: the share of
 * FFN neurons skipped, and the mean decode speed (0 before any). */
double models_measured_sparsity(const struct model_entry *e);
double models_decode_tps(const struct model_entry *e);

/* Unloads every loaded model that no request uses; returns how many. */
int models_evict_idle(struct models *m);

/* Memory pressure was reported. Offloaded models give memory back first,
 * used or idle: each report shrinks each one's budget a step toward its
 * minimum (half of what it has above the minimum, then a quarter, then
 * the minimum). Only a report that finds no budget left to shrink, and
 * none changing, evicts the idle models. Once no report came for
 * restore_ms, shrunk budgets grow back to what was asked, as far as the
 * daemon's budget allows. */
struct models_relief {
	int shrunk;     /* budgets this report shrinks */
	int changing;   /* budget changes still running */
	int evicted;    /* idle models unloaded */
};
#define MODELS_SQUEEZE_STEPS 3
void models_pressure(struct models *m, struct models_relief *out);

/* SIGHUP changed the default keep-alive: models found from now on and
 * those not loaded or loading take it; one in memory keeps its own, which
 * a running request may have chosen. */
void models_set_default_keep_alive(struct models *m, int64_t keep_alive_ms);

uint64_t models_used_bytes(struct models *m);
uint64_t models_budget_bytes(struct models *m);
int models_loaded_count(struct models *m);
int models_loading_count(struct models *m);

#endif
