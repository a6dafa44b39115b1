/* The engine's one door to OpenBLAS.
 *
 * OpenBLAS gives wrong results when several threads call sgemm at once
 * with its own threading off (OpenMathLib/OpenBLAS issues 1755, 2126; seen
 * here with 0.3.21: prefill logits off by 2-10% in about half the runs), so
 * calls are serialized. The thread that holds the lock still runs one
 * single-threaded sgemm; the others wait for their turn. */
#ifndef PINFER_BLAS_H
#define PINFER_BLAS_H

#include <stdbool.h>

/* Row-major C[m][n] = alpha * A * op(B) + beta * C, where A is m x k (lda)
 * and op(B) is B (k x n, ldb) or B transposed (B is n x k, ldb). */
void pf_sgemm(bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
	      const float *b, int ldb, float beta, float *c, int ldc);

/* Sets OpenBLAS to run each call on the calling thread only: the engine
 * parallelises around it with its own threads. */
void pf_blas_single_threaded(void);

#endif
