#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "frame.h"
#include "models.h"

enum kind { K_PATH, K_INT, K_DURATION, K_SIZE, K_LOGLEVEL, K_BUS, K_SPARSITY, K_OFFLOAD, K_KV_TYPE, K_BOOL };

struct option_spec {
	const char *name;
	enum kind kind;
	size_t offset;
	long min, max;     /* K_INT */
	const char *help;
};

#define FIELD(f) offsetof(struct config, f)

static const struct option_spec specs[] = {
	{ "socket", K_PATH, FIELD(socket_path), 0, 0, "Unix socket to listen on" },
	{ "models", K_PATH, FIELD(models_dir), 0, 0, "directory of GGUF models" },
	{ "memory-budget", K_SIZE, FIELD(memory_budget), 0, 0,
	  "memory for loaded models, e.g. 6G (default: 80% of RAM)" },
	{ "keep-alive", K_DURATION, FIELD(keep_alive_ms), 0, 0,
	  "how long an idle model stays loaded (default 5m; -1: forever; 0: unload when idle)" },
	{ "max-loaded", K_INT, FIELD(max_loaded), 0, 1024, "most models loaded at once (0: budget only)" },
	{ "slots", K_INT, FIELD(slots), 1, 256, "concurrent generations per model (default 4)" },
	{ "queue", K_INT, FIELD(queue), 0, 1 << 20, "requests waiting per model beyond the slots (default 16)" },
	{ "ctx-size", K_INT, FIELD(ctx_size), 0, 1 << 20, "context per slot (default: the model's, at most 4096)" },
	{ "kv-type", K_KV_TYPE, FIELD(kv_type), 0, 0,
	  "what KV caches keep keys and values in: auto (default: f32 for f32 models, else f16), f32 or f16" },
	{ "batch", K_INT, FIELD(batch), 1, 4096, "prompt tokens evaluated per step (default 128)" },
	{ "threads", K_INT, FIELD(threads), 0, 1024, "compute threads per model (default: online CPUs)" },
	{ "max-connections", K_INT, FIELD(max_connections), 1, 1 << 20, "default 64" },
	{ "max-requests", K_INT, FIELD(max_requests_per_connection), 1, 1 << 16,
	  "unfinished requests per connection (default 16)" },
	{ "max-prompt-tokens", K_INT, FIELD(max_prompt_tokens), 1, 1 << 24, "default 8192" },
	{ "max-predict", K_INT, FIELD(max_predict), 1, 1 << 24, "ceiling and default of n_predict (default 4096)" },
	{ "max-frame", K_SIZE, FIELD(max_frame), 0, 0, "largest protocol frame (default 1M)" },
	{ "handshake-timeout", K_DURATION, FIELD(handshake_timeout_ms), 0, 0, "default 5s" },
	{ "idle-timeout", K_DURATION, FIELD(idle_timeout_ms), 0, 0, "idle connections close after this (default 10m)" },
	{ "max-queued-output", K_SIZE, FIELD(max_queued_output), 0, 0,
	  "output a slow client may leave unread before it is cancelled (default 4M)" },
	{ "shutdown-grace", K_DURATION, FIELD(shutdown_grace_ms), 0, 0,
	  "time running generations get to finish on SIGTERM (default 5s)" },
	{ "log-level", K_LOGLEVEL, FIELD(log_level), 0, 0, "error, warn, info or debug" },
	{ "sparsity", K_SPARSITY, FIELD(sparsity), 0, 0,
	  "FFN sparsity of loaded models: auto (default), dense, gate, threshold or predictor" },
	{ "offload-budget", K_OFFLOAD, FIELD(offload_budget), 0, 0,
	  "memory each bundle file (pinfer-model pack) loads under: a size (2G), N%ffn, min or none (default)" },
	{ "mmap", K_BOOL, FIELD(mmap_weights), 0, 0,
	  "read models' weights in place in their files' pages (faster load; the kernel may drop them "
	  "under memory pressure) instead of copies in huge pages (faster decode): yes or no (default)" },
	{ "bus", K_BUS, FIELD(bus), 0, 0, "D-Bus control interface on the system bus (default), session bus, or none" },
};

#define N_SPECS (sizeof(specs) / sizeof(specs[0]))

int config_parse_duration(const char *s, int64_t *ms)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s)
		return -EINVAL;
	double scale;
	if (!*end || !strcmp(end, "s"))
		scale = 1000;
	else if (!strcmp(end, "ms"))
		scale = 1;
	else if (!strcmp(end, "m"))
		scale = 60000;
	else if (!strcmp(end, "h"))
		scale = 3600000;
	else
		return -EINVAL;
	if (v < 0) {
		*ms = -1;
		return 0;
	}
	if (v * scale > 9e15)
		return -ERANGE;
	*ms = (int64_t)(v * scale);
	return 0;
}

static int apply(struct config *c, const struct option_spec *o, const char *value)
{
	void *field = (char *)c + o->offset;
	int64_t ms;
	uint64_t bytes;
	char *end;
	long v;
	switch (o->kind) {
	case K_PATH:
		/* Paths are reported over the protocol and D-Bus: UTF-8 only. */
		if (!*value || strlen(value) >= PATH_MAX || !proto_utf8_valid(value, strlen(value)))
			return -EINVAL;
		snprintf(field, PATH_MAX, "%s", value);
		return 0;
	case K_INT:
		errno = 0;
		v = strtol(value, &end, 10);
		if (errno || end == value || *end || v < o->min || v > o->max)
			return -EINVAL;
		*(int *)field = (int)v;
		return 0;
	case K_DURATION:
		if (config_parse_duration(value, &ms))
			return -EINVAL;
		if (o->offset == FIELD(keep_alive_ms))
			*(int64_t *)field = ms;
		else if (ms < 0)
			return -EINVAL;
		else
			*(uint64_t *)field = (uint64_t)ms;
		return 0;
	case K_SIZE:
		if (pinfer_size_parse(value, &bytes))
			return -EINVAL;
		if (o->offset == FIELD(max_frame)) {
			if (bytes < 65536 || bytes > (256u << 20))
				return -EINVAL;
			c->max_frame = (uint32_t)bytes;
		} else if (o->offset == FIELD(max_queued_output)) {
			c->max_queued_output = (size_t)bytes;
		} else {
			*(uint64_t *)field = bytes;
		}
		return 0;
	case K_LOGLEVEL:
		return log_level_parse(value, field);
	case K_SPARSITY:
		return pinfer_sparsity_parse(value, field);
	case K_KV_TYPE:
		return pinfer_kv_type_parse(value, field);
	case K_BOOL:
		if (!strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "1"))
			*(bool *)field = true;
		else if (!strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "0"))
			*(bool *)field = false;
		else
			return -EINVAL;
		return 0;
	case K_OFFLOAD: {
		struct models_budget b;
		if (strlen(value) >= sizeof(c->offload_budget) || !models_parse_budget(value, &b))
			return -EINVAL;
		snprintf(field, sizeof(c->offload_budget), "%s", value);
		return 0;
	}
	case K_BUS:
		for (int b = 0; b < 3; b++)
			if (!strcmp(value, config_bus_name((enum config_bus)b))) {
				*(enum config_bus *)field = (enum config_bus)b;
				return 0;
			}
		return -EINVAL;
	}
	return -EINVAL;
}

const char *config_bus_name(enum config_bus b)
{
	static const char *const names[] = { "system", "session", "none" };
	return b >= 0 && b < 3 ? names[b] : "?";
}

static const struct option_spec *find_spec(const char *name)
{
	for (size_t i = 0; i < N_SPECS; i++)
		if (!strcmp(specs[i].name, name))
			return &specs[i];
	return NULL;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	char *e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = 0;
	return s;
}

static int read_file(struct config *c, const char *path, bool must_exist, struct pf_err *err)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		if (errno == ENOENT && !must_exist)
			return 0;
		return pf_errf(err, -errno, "%s: %s", path, strerror(errno));
	}
	char line[PATH_MAX + 64];
	int lineno = 0, r = 0;
	while (!r && fgets(line, sizeof(line), f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *s = trim(line);
		if (!*s)
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			r = pf_errf(err, -EINVAL, "%s:%d: expected 'key = value'", path, lineno);
			break;
		}
		*eq = 0;
		char *key = trim(s), *value = trim(eq + 1);
		const struct option_spec *o = find_spec(key);
		if (!o || !strcmp(key, "config"))
			r = pf_errf(err, -EINVAL, "%s:%d: unknown setting '%s'", path, lineno, key);
		else if (apply(c, o, value))
			r = pf_errf(err, -EINVAL, "%s:%d: bad value '%s' for %s", path, lineno, value, key);
	}
	fclose(f);
	return r;
}

static void defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	const char *runtime = getenv("XDG_RUNTIME_DIR");
	bool user = getuid() != 0;
	if (user && runtime && *runtime)
		snprintf(c->socket_path, sizeof(c->socket_path), "%s/pinferd.sock", runtime);
	else
		snprintf(c->socket_path, sizeof(c->socket_path), "/run/pinferd.sock");
	const char *data = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
	if (user && data && *data)
		snprintf(c->models_dir, sizeof(c->models_dir), "%s/pinfer/models", data);
	else if (user && home && *home)
		snprintf(c->models_dir, sizeof(c->models_dir), "%s/.local/share/pinfer/models", home);
	else
		snprintf(c->models_dir, sizeof(c->models_dir), "/var/lib/pinfer/models");
	c->keep_alive_ms = 5 * 60 * 1000;
	c->slots = 4;
	c->queue = 16;
	c->batch = 128;
	c->max_connections = 64;
	c->max_requests_per_connection = 16;
	c->max_prompt_tokens = 8192;
	c->max_predict = 4096;
	c->max_frame = 1u << 20;
	c->handshake_timeout_ms = 5000;
	c->idle_timeout_ms = 10 * 60 * 1000;
	c->max_queued_output = 4u << 20;
	c->shutdown_grace_ms = 5000;
	c->log_level = LOG_LEVEL_INFO;
}

static void usage(void)
{
	printf("usage: pinferd [--config FILE] [--OPTION VALUE]...\n\n"
	       "Serves language models over a Unix socket (protocol: docs/protocol.md).\n"
	       "Settings come from %s (or --config FILE), then from these flags:\n\n",
	       CONFIG_DEFAULT_FILE);
	for (size_t i = 0; i < N_SPECS; i++)
		printf("  --%-20s %s\n", specs[i].name, specs[i].help);
	printf("  --%-20s %s\n  --%-20s %s\n  --%-20s %s\n  --%-20s %s\n", "session-bus",
	       "the same as --bus session", "config FILE", "read settings from FILE", "help",
	       "print this and exit", "version", "print the version and exit");
}

int config_load(struct config *c, int argc, char **argv, struct pf_err *err)
{
	defaults(c);
	struct option longopts[N_SPECS + 5];
	for (size_t i = 0; i < N_SPECS; i++)
		longopts[i] = (struct option){ specs[i].name, required_argument, NULL, (int)(1000 + i) };
	longopts[N_SPECS] = (struct option){ "config", required_argument, NULL, 'c' };
	longopts[N_SPECS + 1] = (struct option){ "help", no_argument, NULL, 'h' };
	longopts[N_SPECS + 2] = (struct option){ "version", no_argument, NULL, 'V' };
	longopts[N_SPECS + 3] = (struct option){ "session-bus", no_argument, NULL, 's' };
	longopts[N_SPECS + 4] = (struct option){ 0 };

	/* First pass: only --config, --help and --version, so the file can be
	 * read before the flags that override it. */
	const char *file = NULL;
	int opt;
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return 1;
		}
		if (opt == 'V') {
			printf("pinferd %s\n", PINFERD_VERSION);
			return 1;
		}
		if (opt == 'c')
			file = optarg;
		if (opt == '?')
			return pf_errf(err, -EINVAL, "unknown or incomplete option '%s'", argv[optind - 1]);
	}
	if (optind < argc)
		return pf_errf(err, -EINVAL, "unexpected argument '%s'", argv[optind]);
	snprintf(c->config_file, sizeof(c->config_file), "%s", file ? file : CONFIG_DEFAULT_FILE);
	int r = read_file(c, c->config_file, file != NULL, err);
	if (r)
		return r;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (opt == 's')
			c->bus = CONFIG_BUS_SESSION;
		if (opt < 1000)
			continue;
		const struct option_spec *o = &specs[opt - 1000];
		if (apply(c, o, optarg))
			return pf_errf(err, -EINVAL, "bad value '%s' for --%s", optarg, o->name);
	}
	return 0;
}
