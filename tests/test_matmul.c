/* The two prefill methods (dot kernels with 8-bit activations, and
 * dequantize + sgemm with float activations) and decode's per-token
 * products agree for every weight format, whichever the thresholds pick. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "matmul.h"

#define ROWS 96
#define COLS 512
#define T 37
#define STRIDE(row_bytes) ((size_t)(row_bytes) + 64)

static const enum pf_dtype types[] = { PF_F32, PF_F16, PF_BF16, PF_Q8_0, PF_Q4_0, PF_Q4_1,
				       PF_Q5_0, PF_Q5_1, PF_Q4_K, PF_Q5_K, PF_Q6_K };

static double rel_rms(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
		den += (double)b[i] * b[i];
	}
	return sqrt(num / den);
}

static void test_methods_agree(void **state)
{
	(void)state;
	struct pf_pool *pool;
	assert_int_equal(pf_pool_new(&pool, 2), 0);
	struct pf_matmul_scratch s;
	assert_int_equal(pf_matmul_scratch_init(&s, COLS, T, 2), 0);
	float *x = malloc(sizeof(float) * T * COLS), *row = malloc(sizeof(float) * COLS);
	float *dot = malloc(sizeof(float) * T * ROWS), *gemm = malloc(sizeof(float) * T * ROWS);
	float *one = malloc(sizeof(float) * ROWS);
	uint8_t *w = malloc((size_t)ROWS * STRIDE(COLS * 4));
	uint64_t seed = 9;
	for (size_t i = 0; i < (size_t)T * COLS; i++)
		x[i] = test_randf(&seed);
	for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
		const struct pf_quant_ops *ops = pf_quant_ops(types[k]);
		uint64_t rb;
		assert_true(pf_dtype_bytes(types[k], COLS, &rb));
		for (int r = 0; r < ROWS; r++) {
			for (int i = 0; i < COLS; i++)
				row[i] = test_randf(&seed) * 0.05f;
			ops->from_float(row, w + (size_t)r * STRIDE(rb), COLS);
		}
		/* rows apart by more than their size, as in neuron bundles */
		struct pf_weight wt = { .data = w, .type = types[k], .rows = ROWS, .cols = COLS,
					.row_bytes = (size_t)rb, .stride = STRIDE(rb), .ops = ops };
		struct pf_matmul_out o = { .w = &wt, .y = dot };
		pf_matmul_with(pool, &s, &o, 1, x, T, PF_MATMUL_DOT);
		o.y = gemm;
		pf_matmul_with(pool, &s, &o, 1, x, T, PF_MATMUL_SGEMM);
		double d = rel_rms(dot, gemm, (size_t)T * ROWS);
		bool is_float = types[k] == PF_F32 || types[k] == PF_F16 || types[k] == PF_BF16;
		/* float formats differ only in summation order; the others by the
		 * dot kernels' 8-bit activations (measured below 1e-2) */
		if (d > (is_float ? 1e-5 : 2e-2))
			fail_msg("%s: dot and sgemm differ by %.2e", pf_dtype_info(types[k])->name, d);
		/* decode: one token at a time, as the batched dot path computes it */
		o.y = one;
		for (int t = 0; t < T; t += 9) {
			pf_matmul(pool, &s, &o, 1, x + (size_t)t * COLS, 1);
			for (int r = 0; r < ROWS; r++)
				if (one[r] != dot[(size_t)t * ROWS + r])
					fail_msg("%s: token %d row %d: decode %g, batched %g",
						 pf_dtype_info(types[k])->name, t, r, one[r],
						 dot[(size_t)t * ROWS + r]);
		}
	}
	free(x);
	free(row);
	free(dot);
	free(gemm);
	free(one);
	free(w);
	pf_matmul_scratch_free(&s);
	pf_pool_free(pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_methods_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
