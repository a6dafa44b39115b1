/* Matrix products of weights with a batch of activation rows.
 *
 * y[t][r] = dot(W row r, x[t]) for T tokens. Several weights that read the
 * same input (Q, K and V; gate and up) go in one call, so the input is
 * converted to the kernels' activation format once and the threads are
 * woken once. T = 1 is the decode path (bandwidth bound: stream each weight
 * row once); T > 1 is prefill (each weight row is reused across the batch
 * while it is in cache). */
#ifndef PINFER_MATMUL_H
#define PINFER_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "threadpool.h"

#define PF_MATMUL_MAX_OUTS 3

struct pf_matmul_out {
	const struct pf_weight *w;
	float *y;  /* T rows of w->rows floats */
};

/* Scratch the caller owns: room for the converted activations of up to
 * max_tokens rows, in one format per output at most. */
struct pf_matmul_scratch {
	uint8_t *buf[PF_MATMUL_MAX_OUTS];
	size_t size;         /* bytes of each buf */
	float *tiles;        /* per thread: dequantized weight rows for sgemm */
	size_t tile_floats;  /* floats of one thread's tile */
	size_t bytes;        /* all of the above */
};

/* What pf_matmul_scratch_init allocates for these limits. */
uint64_t pf_matmul_scratch_bytes(int64_t max_cols, int max_tokens, int n_threads);
/* max_cols: the longest weight row any call will use. */
int pf_matmul_scratch_init(struct pf_matmul_scratch *s, int64_t max_cols, int max_tokens,
			   int n_threads);
void pf_matmul_scratch_free(struct pf_matmul_scratch *s);

/* At most PF_MATMUL_MAX_OUTS outputs, all with the same w->cols; x is T
 * rows of that many floats. */
void pf_matmul(struct pf_pool *pool, struct pf_matmul_scratch *s, const struct pf_matmul_out *outs,
	       int n_outs, const float *x, int64_t T);

/* The same with the prefill method forced, for benchmarks that measure
 * where one overtakes the other (T > 1 only; decode always uses the dot
 * kernels). */
enum pf_matmul_kind {
	PF_MATMUL_AUTO,
	PF_MATMUL_DOT,    /* integer dot kernels, weight rows reused across tokens */
	PF_MATMUL_SGEMM,  /* dequantize a tile of rows, then sgemm */
};
void pf_matmul_with(struct pf_pool *pool, struct pf_matmul_scratch *s,
		    const struct pf_matmul_out *outs, int n_outs, const float *x, int64_t T,
		    enum pf_matmul_kind kind);

#endif
