/* pinferd's configuration: built-in defaults, then the config file
 * (/etc/pinfer/pinferd.conf, or --config FILE), then command-line flags,
 * which win. The file holds `key = value` lines whose keys are the long
 * flag names (`slots = 4`, `keep-alive = 10m`); '#' starts a comment. */
#ifndef PINFERD_CONFIG_H
#define PINFERD_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "log.h"
#include "pinfer.h"

#define PINFERD_VERSION "0.1.0"
#define CONFIG_DEFAULT_FILE "/etc/pinfer/pinferd.conf"

/* Where the D-Bus control interface lives (docs/dbus-api.md). */
enum config_bus { CONFIG_BUS_SYSTEM, CONFIG_BUS_SESSION, CONFIG_BUS_NONE };

struct config {
	char socket_path[PATH_MAX];
	char models_dir[PATH_MAX];
	char config_file[PATH_MAX];
	uint64_t memory_budget;       /* bytes; 0: 80% of physical memory */
	int64_t keep_alive_ms;        /* < 0: forever */
	int max_loaded;               /* 0: as many as the budget allows */
	int slots;                    /* per model */
	int queue;                    /* waiting requests per model beyond the slots */
	int ctx_size;                 /* per slot; 0: the model's, capped at 4096 */
	enum pinfer_kv_type kv_type;  /* what the slots' KV caches keep */
	int batch;                    /* prompt tokens per step */
	int threads;                  /* compute threads per model; 0: online CPUs */
	int max_connections;
	int max_requests_per_connection;
	int max_prompt_tokens;
	int max_predict;              /* ceiling on n_predict (and the default) */
	uint32_t max_frame;
	uint64_t handshake_timeout_ms;
	uint64_t idle_timeout_ms;     /* a connection with no request in flight */
	size_t max_queued_output;     /* per connection, bytes */
	uint64_t shutdown_grace_ms;
	enum log_level log_level;
	enum config_bus bus;
	enum pinfer_sparsity sparsity; /* models' mode unless a load asks for another */
	char offload_budget[32];      /* bundle files' memory budget (models_parse_budget); "": none */
	bool mmap_weights;            /* pinfer_model_params.mmap_weights */
};

/* Fills defaults, reads the config file and applies the flags. Returns 0,
 * 1 when --help or --version printed what was asked (exit 0), or a
 * negative errno with err describing the bad flag, value or file line. */
int config_load(struct config *c, int argc, char **argv, struct pf_err *err);

const char *config_bus_name(enum config_bus b);

/* "250ms", "30s", "5m", "2h", a bare number of seconds, or a negative
 * number (forever) into milliseconds. */
int config_parse_duration(const char *s, int64_t *ms);

#endif
