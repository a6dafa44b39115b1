/* pinfer-model bench: decode and prefill speed, set against what this
 * machine can do, measured in the same run: decode against the memory
 * bandwidth roofline (a decode step must stream every weight once), prefill
 * against OpenBLAS sgemm's GFLOP/s. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_compare.h"
#include "bench_kernels.h"
#include "bench_token.h"
#include "commands.h"
#include "common.h"
#include "threadpool.h"

#define BW_BUFFER_BYTES (1ull << 30)

enum { OPT_VS = 2000, OPT_VS_SPARSITY };

struct read_job {
	const uint64_t *buf;
	uint64_t sums[64];
};

static void read_slice(void *arg, int64_t begin, int64_t end, int thread)
{
	struct read_job *j = arg;
	uint64_t a = 0, b = 0, c = 0, d = 0;
	for (int64_t i = begin; i < end; i += 4) {
		a += j->buf[i];
		b += j->buf[i + 1];
		c += j->buf[i + 2];
		d += j->buf[i + 3];
	}
	j->sums[thread & 63] += a ^ b ^ c ^ d;
}

/* Best of several passes reading a 1 GiB buffer with n threads, in GB/s. */
static double read_bandwidth(int n_threads)
{
	uint64_t n = BW_BUFFER_BYTES / sizeof(uint64_t);
	uint64_t *buf = aligned_alloc(64, BW_BUFFER_BYTES);
	struct pf_pool *pool;
	if (!buf || pf_pool_new(&pool, n_threads)) {
		free(buf);
		return 0.0;
	}
	for (uint64_t i = 0; i < n; i++)
		buf[i] = i;
	struct read_job j = { .buf = buf };
	double best = 0.0;
	for (int pass = 0; pass < 5; pass++) {
		double t0 = now_seconds();
		pf_pool_run(pool, read_slice, &j, (int64_t)n, 1024);
		double gbs = BW_BUFFER_BYTES / (now_seconds() - t0) / 1e9;
		if (gbs > best)
			best = gbs;
	}
	/* keeps the reads from being optimised away */
	if (j.sums[0] == 42)
		fprintf(stderr, " ");
	pf_pool_free(pool);
	free(buf);
	return best;
}

static double sgemm_gflops(int n_threads)
{
	const int n = 2048;
	float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
	      *c = malloc(sizeof(float) * n * n);
	double best = 0.0;
	if (a && b && c) {
		for (int i = 0; i < n * n; i++)
			a[i] = b[i] = (float)(i % 7) * 0.1f;
		openblas_set_num_threads(n_threads);
		for (int pass = 0; pass < 5; pass++) {
			double t0 = now_seconds();
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n,
				    0.0f, c, n);
			double g = 2.0 * n * n * n / (now_seconds() - t0) / 1e9;
			if (g > best)
				best = g;
		}
		openblas_set_num_threads(1);
	}
	free(a);
	free(b);
	free(c);
	return best;
}

/* A "Vm...:" line of /proc/self/status, in KiB; -1 where there is none. */
static long proc_status_kib(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	char line[256];
	long kib = -1;
	size_t n = strlen(key);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n)) {
			kib = strtol(line + n, NULL, 10);
			break;
		}
	fclose(f);
	return kib;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int cmd_bench(int argc, char **argv)
{
	static const struct option longopts[] = {
		MODEL_LONG_OPTS,
		{ "n-decode", required_argument, NULL, 'n' },
		{ "n-prompt", required_argument, NULL, 'p' },
		{ "kernels", no_argument, NULL, 'k' },
		{ "vs", required_argument, NULL, OPT_VS },
		{ "vs-sparsity", required_argument, NULL, OPT_VS_SPARSITY },
		{ 0 },
	};
	const char *vs = NULL;
	enum pinfer_sparsity vs_mode = PINFER_SPARSITY_DENSE;
	struct model_opts mo;
	model_opts_init(&mo);
	long n_decode = 32, n_prompt = 128;
	bool kernels = false;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, MODEL_SHORT_OPTS "n:p:k", longopts, NULL)) != -1) {
		int r = model_opts_parse(&mo, opt, optarg, "bench");
		if (r < 0)
			return 2;
		if (r > 0)
			continue;
		if (opt == 'k') {
			kernels = true;
			continue;
		}
		if (opt == OPT_VS) {
			vs = optarg;
			continue;
		}
		if (opt == OPT_VS_SPARSITY && !pinfer_sparsity_parse(optarg, &vs_mode))
			continue;
		if ((opt == 'n' && parse_int(optarg, 1, 1 << 20, &n_decode)) ||
		    (opt == 'p' && parse_int(optarg, 1, 1 << 20, &n_prompt)))
			continue;
		fprintf(stderr, "usage: pinfer-model bench (-m MODEL [-n DECODE] [-p PROMPT] | --kernels) [options]\n"
				"       pinfer-model bench -m MODEL --vs MODEL2 [--vs-sparsity MODE] [-n DECODE] [options]\n"
				"  --vs MODEL2       decode both in alternated rounds and print the ratio\n"
				"                    (MODEL2 in --vs-sparsity MODE, default dense)\n" MODEL_OPTS_HELP);
		return 2;
	}
	if (!mo.n_threads)
		mo.n_threads = pf_cpu_count();
	if (kernels)
		return bench_kernels(mo.n_threads);
	if (vs) {
		if (!mo.n_ctx)
			mo.n_ctx = (int)(5 * n_decode + 2);
		return bench_compare(&mo, vs, vs_mode, n_decode);
	}
	if (!mo.n_ctx)
		mo.n_ctx = (int)(n_prompt > 3 * n_decode + 1 ? n_prompt : 3 * n_decode + 1);
	/* The machine's figures first: their buffers are freed before the
	 * model loads, so a model under a memory budget (or in a memory
	 * cgroup of its size) is measured without them. */
	double bw = read_bandwidth(mo.n_threads);
	double peak = sgemm_gflops(mo.n_threads);
	struct pinfer_model *m = model_opts_open(&mo, "bench");
	if (!m)
		return 1;
	const struct pinfer_model_info *info = pinfer_model_info(m);
	int rc = 1;
	int32_t *tokens = malloc((size_t)n_prompt * sizeof(*tokens));
	double *latency = malloc(3 * (size_t)n_decode * sizeof(*latency));
	struct pinfer_ctx *c = model_opts_ctx(&mo, m, (int)n_prompt, false, "bench");
	struct pf_err err;
	if (!tokens || !latency || !c)
		goto out;

	/* decode: warm the weights into the page cache first, then time */
	int32_t tok = pinfer_token_bos(m) >= 0 ? pinfer_token_bos(m) : 0;
	if (pinfer_eval(c, &tok, 1, &err))
		goto fail;
	/* Best of three rounds, like the bandwidth it is compared with: both
	 * are what the machine does when nothing else gets in the way. */
	double decode_tps = 0.0, decode_seconds = 0.0, t0;
	struct pinfer_ffn_stats before, after;
	struct pinfer_offload_stats io0, io1;
	bool offloaded = pinfer_model_offload_stats(m, &io0);
	pinfer_ctx_ffn_stats(c, &before);
	for (int round = 0; round < 3; round++) {
		t0 = now_seconds();
		for (long i = 0; i < n_decode; i++) {
			double t1 = now_seconds();
			tok = logits_argmax(pinfer_logits(c, -1), info->n_vocab);
			if (pinfer_eval(c, &tok, 1, &err))
				goto fail;
			latency[round * n_decode + i] = now_seconds() - t1;
		}
		double dt = now_seconds() - t0;
		decode_seconds += dt;
		double tps = n_decode / dt;
		if (tps > decode_tps)
			decode_tps = tps;
	}
	pinfer_ctx_ffn_stats(c, &after);
	if (offloaded)
		pinfer_model_offload_stats(m, &io1);
	struct bench_token bt;
	bench_token_measure(info, &before, &after, 3.0 * (double)n_decode, &bt);
	double active = bt.active, step_bytes = bt.step_bytes;

	/* time to first token of a warm model: BOS alone, then one sample,
	 * the same work a daemon does for an empty prompt */
	double ttft = 1e30;
	for (int rep = 0; rep < 3; rep++) {
		int32_t bos = pinfer_token_bos(m) >= 0 ? pinfer_token_bos(m) : 0;
		pinfer_ctx_truncate(c, 0);
		t0 = now_seconds();
		if (pinfer_eval(c, &bos, 1, &err))
			goto fail;
		logits_argmax(pinfer_logits(c, -1), info->n_vocab);
		double dt = now_seconds() - t0;
		if (dt < ttft)
			ttft = dt;
	}

	/* prefill: one batch of n_prompt tokens in a fresh sequence */
	uint64_t seed = 1;
	for (long i = 0; i < n_prompt; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		tokens[i] = (int32_t)((seed >> 33) % (uint64_t)info->n_vocab);
	}
	pinfer_ctx_truncate(c, 0);
	if (pinfer_eval(c, tokens, 1, &err))  /* page in and warm up */
		goto fail;
	pinfer_ctx_truncate(c, 0);
	t0 = now_seconds();
	if (pinfer_eval(c, tokens, (int)n_prompt, &err))
		goto fail;
	double prefill_tps = n_prompt / (now_seconds() - t0);

	double roofline_tps = bw * 1e9 / step_bytes;
	/* 2 flops per weight a token is multiplied with: every layer matrix for
	 * every prompt token, the output head for the last one only (the
	 * embedding table is looked up, not multiplied; attention over a
	 * 128-token prompt adds under 1% and is left out). */
	double head = (double)info->n_vocab * info->n_embd;
	double layers = (double)info->n_params - head * (info->tied_output ? 1 : 2);
	double flops_per_token = 2.0 * (layers + head / (double)n_prompt);
	printf("model: %s, %.2f M params, %d threads\n", mo.model, info->n_params / 1e6, mo.n_threads);
	printf("sparsity: %s, %.1f%% of FFN activations zero or skipped in decode; %.1f MiB of weights read per "
	       "decoded token (dense: %.1f MiB, %.2fx)\n",
	       pinfer_sparsity_name(info->sparsity), 100.0 * (1.0 - active), step_bytes / 1048576.0,
	       info->decode_bytes / 1048576.0, info->decode_bytes / step_bytes);
	printf("memory read bandwidth: %.2f GB/s (1 GiB buffer, %d threads)\n", bw, mo.n_threads);
	printf("decode: %.2f tok/s, best of 3 x %ld tokens (roofline %.2f tok/s, %.1f%% of roofline)\n",
	       decode_tps, n_decode,
	       roofline_tps, 100.0 * decode_tps / roofline_tps);
	char share[128];
	printf("decode time: %s\n", bench_token_time(&bt, decode_seconds * 1e3 / (3.0 * (double)n_decode), share,
						       sizeof(share)));
	if (bt.predicted > 0)
		printf("predictor: chose %.1f%% of the neurons, %.1f%% of them fired\n", 100.0 * bt.predicted,
		       100.0 * bt.active / bt.predicted);
	if (offloaded) {
		double steps = 3.0 * (double)n_decode, lookups = (double)(io1.hits + io1.misses - io0.hits - io0.misses);
		printf("offload: budget %.1f MiB (minimum %.1f): resident %.1f, contexts %.1f, neuron cache %.1f MiB "
		       "(%llu of %llu clusters hot); reads by %s, %s\n",
		       io1.budget / 1048576.0, io1.minimum / 1048576.0, io1.resident_bytes / 1048576.0,
		       io1.context_bytes / 1048576.0, io1.cache_bytes / 1048576.0,
		       (unsigned long long)io1.hot_clusters, (unsigned long long)io1.clusters, io1.io,
		       io1.direct ? "O_DIRECT" : "through the page cache");
		printf("offload per decoded token: %.1f reads, %.1f KiB, cluster hit rate %.1f%%, %.2f ms waiting for them "
		       "(%.1f%% of the token)\n",
		       (io1.reads - io0.reads) / steps, (io1.bytes_read - io0.bytes_read) / steps / 1024.0,
		       lookups > 0 ? 100.0 * (double)(io1.hits - io0.hits) / lookups : 100.0,
		       (io1.read_ns - io0.read_ns) / steps / 1e6,
		       100.0 * (double)(io1.read_ns - io0.read_ns) / 1e9 / decode_seconds);
		long rss = proc_status_kib("VmRSS:"), peak = proc_status_kib("VmHWM:");
		if (rss >= 0 && peak >= 0)
			printf("memory: resident %.1f MiB now, %.1f MiB at the most (budget %.1f MiB)\n", rss / 1024.0,
			       peak / 1024.0, io1.budget / 1048576.0);
		if (io1.prefetch_reads > io0.prefetch_reads)
			printf("prefetch during attention: %.1f reads per token, %.1f%% of them needed\n",
			       (io1.prefetch_reads - io0.prefetch_reads) / steps,
			       100.0 * (double)(io1.prefetch_used - io0.prefetch_used) /
				       (double)(io1.prefetch_reads - io0.prefetch_reads));
	}
	qsort(latency, 3 * (size_t)n_decode, sizeof(*latency), by_value);
	printf("token latency: P50 %.2f ms, P99 %.2f ms (%ld decoded tokens)\n",
	       1e3 * latency[(3 * n_decode - 1) / 2], 1e3 * latency[(3 * n_decode - 1) * 99 / 100], 3 * n_decode);
	printf("first token: %.2f ms (warm model, BOS-only prompt, best of 3)\n", ttft * 1e3);
	printf("prefill: %.2f tok/s (%ld-token prompt, %.2fx decode per token)\n", prefill_tps,
	       n_prompt, prefill_tps / decode_tps);
	printf("prefill compute: %.1f GFLOP/s (sgemm peak on this machine %.1f GFLOP/s, %.1f%%)\n",
	       flops_per_token * prefill_tps / 1e9, peak,
	       100.0 * flops_per_token * prefill_tps / 1e9 / peak);
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "bench: %s\n", err.msg);
out:
	free(tokens);
	free(latency);
	pinfer_ctx_free(c);
	pinfer_model_free(m);
	return rc;
}
