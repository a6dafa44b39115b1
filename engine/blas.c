#include "blas.h"

#include <cblas.h>
#include <pthread.h>

static pthread_mutex_t sgemm_lock = PTHREAD_MUTEX_INITIALIZER;

void pf_sgemm(bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
	      const float *b, int ldb, float beta, float *c, int ldc)
{
	pthread_mutex_lock(&sgemm_lock);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha,
		    a, lda, b, ldb, beta, c, ldc);
	pthread_mutex_unlock(&sgemm_lock);
}

void pf_blas_single_threaded(void)
{
	openblas_set_num_threads(1);
}
