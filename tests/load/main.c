/* pinfer-load: a load and soak tool for pinferd. Runs --clients client
 * threads for --duration seconds against --socket (ops.h lists the mix),
 * a thread loading and evicting --second-model over D-Bus when --bus is
 * given, and samples the RSS of --pid. Prints what was answered, refused
 * and failed, latency percentiles and the RSS over time; exits 1 on any
 * failure, when the daemon died, or when its RSS grew more than
 * --max-rss-growth MiB (rss.h says how growth is judged). */
#include <dbus/dbus.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "load.h"
#include "ops.h"
#include "rss.h"
#include "stats.h"
#include "wire.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: pinfer-load --socket PATH --pid PID [--clients N] [--duration SECONDS]\n"
		   "                   [--model NAME] [--second-model NAME] [--bus ADDRESS]\n"
		   "                   [--n-predict N] [--max-rss-growth MIB] [--timeout SECONDS]\n"
		   "                   [--bus-period MS] [--rss-period MS] [--seed N]\n");
}

/* The options that take a whole number, with their ranges. */
static const struct int_opt {
	int key;
	const char *name;
	long min, max;
} int_opts[] = {
	{ 'p', "pid", 1, 1 << 30 },         { 'c', "clients", 1, 4096 },
	{ 'd', "duration", 1, 7 * 86400 },  { 'n', "n-predict", 1, 1 << 20 },
	{ 'g', "max-rss-growth", 0, 1 << 20 }, { 't', "timeout", 1, 86400 },
	{ 'B', "bus-period", 1, 3600000 },  { 'R', "rss-period", 1, 3600000 },
	{ 'S', "seed", 0, 1L << 30 },
};

/* Parses optarg when key is a whole-number option. 0, or -1 after
 * saying what is wrong. */
static int parse_int(int key, long *out)
{
	for (size_t i = 0; i < sizeof(int_opts) / sizeof(int_opts[0]); i++) {
		const struct int_opt *o = &int_opts[i];
		if (o->key != key)
			continue;
		char *end;
		errno = 0;
		long v = strtol(optarg, &end, 10);
		if (errno || end == optarg || *end || v < o->min || v > o->max) {
			fprintf(stderr, "pinfer-load: --%s wants a whole number from %ld to %ld, not '%s'\n",
				o->name, o->min, o->max, optarg);
			return -1;
		}
		*out = v;
	}
	return 0;
}

static int parse_args(struct load_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },     { "pid", required_argument, NULL, 'p' },
		{ "clients", required_argument, NULL, 'c' },    { "duration", required_argument, NULL, 'd' },
		{ "model", required_argument, NULL, 'm' },      { "second-model", required_argument, NULL, 'M' },
		{ "bus", required_argument, NULL, 'b' },        { "n-predict", required_argument, NULL, 'n' },
		{ "max-rss-growth", required_argument, NULL, 'g' }, { "timeout", required_argument, NULL, 't' },
		{ "bus-period", required_argument, NULL, 'B' }, { "rss-period", required_argument, NULL, 'R' },
		{ "seed", required_argument, NULL, 'S' },       { "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	*cfg = (struct load_config){ .model = "stories260K", .clients = 16, .duration_s = 20, .n_predict = 24,
				     .timeout_ms = 120000, .bus_period_ms = 250, .rss_period_ms = 200,
				     .max_rss_growth_mib = 64, .seed = 1 };
	int opt;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		long v = 0;
		if (parse_int(opt, &v))
			return -1;
		switch (opt) {
		case 's': cfg->socket = optarg; break;
		case 'm': cfg->model = optarg; break;
		case 'M': cfg->second_model = optarg; break;
		case 'b': cfg->bus = optarg; break;
		case 'p': cfg->pid = (pid_t)v; break;
		case 'c': cfg->clients = (int)v; break;
		case 'd': cfg->duration_s = (int)v; break;
		case 'n': cfg->n_predict = (int)v; break;
		case 'g': cfg->max_rss_growth_mib = (double)v; break;
		case 't': cfg->timeout_ms = (int)v * 1000; break;
		case 'B': cfg->bus_period_ms = (int)v; break;
		case 'R': cfg->rss_period_ms = (int)v; break;
		case 'S': cfg->seed = (uint64_t)v; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind < argc || !cfg->socket || !cfg->pid) {
		fprintf(stderr, "pinfer-load: --socket and --pid are needed, and nothing else\n");
		usage(stderr);
		return -1;
	}
	if (cfg->bus && !cfg->second_model) {
		fprintf(stderr, "pinfer-load: --bus loads and evicts --second-model: name it\n");
		return -1;
	}
	return 0;
}

static void print_report(const struct load_config *cfg, struct stats *s, const struct rss_log *rss,
			 double seconds)
{
	printf("pinfer-load: %d clients for %.1f s on %s%s%s%s\n", cfg->clients, seconds, cfg->model,
	       cfg->second_model ? " and " : "", cfg->second_model ? cfg->second_model : "",
	       cfg->bus ? " (loaded and evicted over D-Bus)" : "");
	printf("generations: answered %llu, refused (BUSY) %llu, failed %llu\n", (unsigned long long)s->answered,
	       (unsigned long long)s->refused, (unsigned long long)s->failed);
	printf("mid-stream: cancelled %llu, hung up %llu; malformed: garbage %llu, oversized length %llu, "
	       "truncated %llu\n",
	       (unsigned long long)s->cancelled, (unsigned long long)s->disconnected,
	       (unsigned long long)s->garbage, (unsigned long long)s->oversized,
	       (unsigned long long)s->truncated);
	if (cfg->bus)
		printf("D-Bus: loads %llu, evicts %llu, evicts answered Busy (retried) %llu\n",
		       (unsigned long long)s->bus_loads, (unsigned long long)s->bus_evicts,
		       (unsigned long long)s->bus_busy);
	printf("throughput: %.1f generations/s, %.0f tokens/s\n", (double)s->answered / seconds,
	       (double)s->tokens / seconds);
	printf("latency ms: first token P50 %.0f P90 %.0f P99 %.0f; total P50 %.0f P90 %.0f P99 %.0f\n",
	       samples_percentile(&s->ttft, 50), samples_percentile(&s->ttft, 90),
	       samples_percentile(&s->ttft, 99), samples_percentile(&s->total, 50),
	       samples_percentile(&s->total, 90), samples_percentile(&s->total, 99));
	/* About twenty points over the run, whatever its length. */
	printf("rss MiB over time:");
	int64_t step = rss->n ? rss->v[rss->n - 1].t_ms / 20 : 0, next = 0;
	for (size_t i = 0; i < rss->n; i++)
		if (rss->v[i].t_ms >= next || i == rss->n - 1) {
			printf(" %llds:%.1f", (long long)(rss->v[i].t_ms / 1000), rss->v[i].mib);
			next = rss->v[i].t_ms + (step > 0 ? step : 1);
		}
	printf("\n");
}

int main(int argc, char **argv)
{
	struct load_config cfg;
	if (parse_args(&cfg, argc, argv))
		return 2;
	char why[128];
	if (rss_read(cfg.pid, why, sizeof(why)) < 0) {
		fprintf(stderr, "pinfer-load: %s\n", why);
		return 1;
	}
	if (!dbus_threads_init_default()) {
		fprintf(stderr, "pinfer-load: cannot make libdbus thread-safe: out of memory\n");
		return 1;
	}
	int64_t start = wire_now_ms();
	cfg.end_ms = start + (int64_t)cfg.duration_s * 1000;
	struct rss_log rss = { .cfg = &cfg, .start_ms = start };
	struct bus_churn churn = { .cfg = &cfg };
	struct client *clients = calloc((size_t)cfg.clients, sizeof(*clients));
	pthread_t *threads = calloc((size_t)cfg.clients, sizeof(*threads));
	pthread_t rss_thread, bus_thread;
	if (!clients || !threads || pthread_create(&rss_thread, NULL, rss_run, &rss)) {
		fprintf(stderr, "pinfer-load: cannot start: out of memory or threads\n");
		free(clients);
		free(threads);
		return 1;
	}
	struct stats total = { 0 };
	bool bus_started = cfg.bus && !pthread_create(&bus_thread, NULL, bus_churn_run, &churn);
	if (cfg.bus && !bus_started)
		stats_fail(&total, "cannot start the D-Bus thread");
	int started = 0;
	for (; started < cfg.clients; started++) {
		clients[started] = (struct client){ .index = started, .cfg = &cfg,
						    .rng = cfg.seed * 1000003u + (uint64_t)started };
		if (pthread_create(&threads[started], NULL, client_run, &clients[started])) {
			stats_fail(&total, "could start only %d of %d client threads", started, cfg.clients);
			break;
		}
	}
	for (int i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	if (bus_started)
		pthread_join(bus_thread, NULL);
	double seconds = (double)(wire_now_ms() - start) / 1000.0;
	/* One last look: the daemon must have outlived the run. */
	rss_stop();
	pthread_join(rss_thread, NULL);
	bool alive = !rss.gone && rss_read(cfg.pid, rss.why, sizeof(rss.why)) >= 0;

	for (int i = 0; i < started; i++) {
		if (stats_merge(&total, &clients[i].st))
			stats_fail(&total, "out of memory merging the figures");
		stats_free(&clients[i].st);
	}
	if (stats_merge(&total, &churn.st))
		stats_fail(&total, "out of memory merging the figures");
	stats_free(&churn.st);
	free(clients);
	free(threads);

	print_report(&cfg, &total, &rss, seconds);
	double early, late;
	rss_peaks(&rss, &early, &late);
	printf("rss peaks: first quarter %.1f MiB, last quarter %.1f MiB, growth %.1f MiB (bound %.0f)\n", early,
	       late, late - early, cfg.max_rss_growth_mib);
	bool ok = true;
	if (!alive) {
		printf("FAIL: pinferd died during the run: %s\n", rss.why);
		ok = false;
	} else if (rss.why[0]) {
		printf("FAIL: RSS sampling stopped: %s\n", rss.why);
		ok = false;
	}
	if (total.failed) {
		printf("FAIL: %llu failures (the first are on stderr)\n", (unsigned long long)total.failed);
		ok = false;
	}
	if (late - early > cfg.max_rss_growth_mib) {
		printf("FAIL: pinferd's RSS grew by %.1f MiB, more than %.0f\n", late - early, cfg.max_rss_growth_mib);
		ok = false;
	}
	if (!total.answered) {
		printf("FAIL: no generation was answered\n");
		ok = false;
	}
	printf("%s\n", ok ? "ok" : "FAIL");
	rss_free(&rss);
	stats_free(&total);
	return ok ? 0 : 1;
}
