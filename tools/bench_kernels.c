#include "bench_kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "matmul.h"

#define ROWS 4096
#define COLS 4096

static const enum pf_dtype types[] = { PF_F32, PF_F16, PF_Q8_0, PF_Q4_0, PF_Q4_K, PF_Q6_K };
static const int batches[] = { 1, 4, 16, 32, 64, 128 };

/* The axpy and single-thread dot columns stream this many bytes of rows,
 * the matrix repeated: past the last-level cache of most CPUs, so both
 * read the weights from memory, as decode does. */
#define STREAM_BYTES ((size_t)ROWS * COLS * 4)

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

/* One thread over n_rows rows of w, best of five passes, in GB/s of weight
 * bytes: y += a_r * row r (axpy, as the sparse FFN's down projection adds
 * the neurons that fired), or a dot of every row with x (xq: x in the
 * type's vec_dot_type). y stays in L1. */
static double measure_stream(const struct pf_quant_ops *ops, const uint8_t *w, size_t row_bytes,
			     size_t n_rows, const float *x, const void *xq, float *y, int axpy)
{
	double best = 1e30;
	float sink = 0.0f;
	for (int rep = 0; rep < 6; rep++) {
		for (int i = 0; i < COLS; i++)
			y[i] = 0.0f;
		double t0 = now_seconds();
		if (axpy) {
			for (size_t r = 0; r < n_rows; r++)
				ops->axpy(COLS, 0.01f * x[r % COLS], w + r * row_bytes, y);
		} else {
			for (size_t r = 0; r < n_rows; r++) {
				float d;
				ops->vec_dot(COLS, &d, w + r * row_bytes, xq);
				sink += d;
			}
		}
		double dt = now_seconds() - t0;
		if (rep > 0 && dt < best)
			best = dt;
	}
	/* Keeps the results live. */
	if (sink == 12345.0f || y[0] == 12345.0f)
		printf(" ");
	return (double)n_rows * row_bytes / best / 1e9;
}

int bench_kernels(int n_threads)
{
	int max_t = batches[sizeof(batches) / sizeof(batches[0]) - 1];
	struct pf_pool *pool = NULL;
	struct pf_matmul_scratch s = { 0 };
	float *x = malloc(sizeof(float) * (size_t)max_t * COLS);
	float *y = malloc(sizeof(float) * (size_t)max_t * ROWS);
	float *row = malloc(sizeof(float) * COLS);
	uint8_t *w = malloc(STREAM_BYTES);
	/* Activations in any vec_dot_type: at most 4 bytes per element. */
	void *xq = malloc((size_t)COLS * 4);
	/* 64-byte aligned like the engine's activations: y += a * row at an
	 * address that splits vectors across cache lines runs slower. */
	float *acc = aligned_alloc(64, sizeof(float) * COLS);
	int rc = 1;
	if (!x || !y || !row || !w || !xq || !acc || pf_pool_new(&pool, n_threads) ||
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
	printf("1t axpy / dot: 1 thread, GB/s of weight bytes, %d-element rows streamed from %zu MiB "
	       "(y += a * row; a dot per row)\n", COLS, STREAM_BYTES >> 20);
	printf("%-6s", "type");
	for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++)
		printf("  T=%-3d dot / sgemm", batches[b]);
	printf("  1t axpy / dot\n");
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
		struct pf_weight wt = { .data = w, .type = types[ti], .rows = ROWS, .cols = COLS,
				       .row_bytes = (size_t)row_bytes, .stride = (size_t)row_bytes, .ops = ops };
		struct pf_matmul_out o = { .w = &wt, .y = y };
		printf("%-6s", pf_dtype_info(types[ti])->name);
		for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++) {
			int T = batches[b];
			double dot = measure(pool, &s, &o, x, T, PF_MATMUL_DOT);
			if (T == 1)
				printf("  %7.1f /    -    ", dot);
			else
				printf("  %7.1f / %7.1f", dot, measure(pool, &s, &o, x, T, PF_MATMUL_SGEMM));
		}
		size_t n_rows = STREAM_BYTES / row_bytes;
		for (size_t r = ROWS; r < n_rows; r++)
			memcpy(w + r * row_bytes, w + (r % ROWS) * row_bytes, row_bytes);
		pf_quant_ops(ops->vec_dot_type)->from_float(x, xq, COLS);
		printf("  %5.1f / %5.1f\n", measure_stream(ops, w, row_bytes, n_rows, x, xq, acc, 1),
		       measure_stream(ops, w, row_bytes, n_rows, x, xq, acc, 0));
	}
	rc = 0;
out:
	pf_matmul_scratch_free(&s);
	pf_pool_free(pool);
	free(x);
	free(y);
	free(row);
	free(w);
	free(xq);
	free(acc);
	return rc;
}
