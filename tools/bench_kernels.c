#include "bench_kernels.h"

#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "matmul.h"

#define ROWS 4096
#define COLS 4096

static const enum pf_dtype types[] = { PF_F32, PF_F16, PF_Q8_0, PF_Q4_0, PF_Q4_K, PF_Q6_K };
static const int batches[] = { 1, 4, 16, 32, 64, 128 };

/* Best of five, in GFLOP/s. */
static double measure(struct pf_pool *pool, struct pf_matmul_scratch *s,
		      const struct pf_matmul_out *o, const float *x, int T, enum pf_matmul_kind kind)
{
	double best = 1e30;
	for (int rep = 0; rep < 6; rep++) {
		double t0 = now_seconds();
		pf_matmul_with(pool, s, o, 1, x, T, kind);
		double dt = now_seconds() - t0;
		if (rep > 0 && dt < best)  /* the first run warms caches and pages */
			best = dt;
	}
	return 2.0 * ROWS * COLS * T / best / 1e9;
}

int bench_kernels(int n_threads)
{
	int max_t = batches[sizeof(batches) / sizeof(batches[0]) - 1];
	struct pf_pool *pool = NULL;
	struct pf_matmul_scratch s = { 0 };
	float *x = malloc(sizeof(float) * (size_t)max_t * COLS);
	float *y = malloc(sizeof(float) * (size_t)max_t * ROWS);
	float *row = malloc(sizeof(float) * COLS);
	uint8_t *w = malloc((size_t)ROWS * COLS * 4);
	int rc = 1;
	if (!x || !y || !row || !w || pf_pool_new(&pool, n_threads) ||
	    pf_matmul_scratch_init(&s, COLS, max_t, n_threads)) {
		fprintf(stderr, "bench: out of memory\n");
		goto out;
	}
	uint64_t seed = 42;
	for (size_t i = 0; i < (size_t)max_t * COLS; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		x[i] = (float)((seed >> 40) & 0xffff) / 65536.0f - 0.5f;
	}
	printf("matrix %dx%d, %d threads, GFLOP/s (dot = integer/float dot kernels, sgemm = dequantize + sgemm)\n",
	       ROWS, COLS, n_threads);
	printf("%-6s", "type");
	for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++)
		printf("  T=%-3d dot / sgemm", batches[b]);
	printf("\n");
	for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++) {
		const struct pf_quant_ops *ops = pf_quant_ops(types[ti]);
		uint64_t row_bytes;
		pf_dtype_bytes(types[ti], COLS, &row_bytes);
		for (int r = 0; r < ROWS; r++) {
			for (int i = 0; i < COLS; i++) {
				seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
				row[i] = ((float)((seed >> 40) & 0xffff) / 65536.0f - 0.5f) * 0.03f;
			}
			ops->from_float(row, w + (size_t)r * row_bytes, COLS);
		}
		struct pf_weight wt = { w, types[ti], ROWS, COLS, (size_t)row_bytes, ops };
		struct pf_matmul_out o = { &wt, y };
		printf("%-6s", pf_dtype_info(types[ti])->name);
		for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++) {
			int T = batches[b];
			double dot = measure(pool, &s, &o, x, T, PF_MATMUL_DOT);
			if (T == 1)
				printf("  %7.1f /    -    ", dot);
			else
				printf("  %7.1f / %7.1f", dot, measure(pool, &s, &o, x, T, PF_MATMUL_SGEMM));
		}
		printf("\n");
	}
	rc = 0;
out:
	pf_matmul_scratch_free(&s);
	pf_pool_free(pool);
	free(x);
	free(y);
	free(row);
	free(w);
	return rc;
}
