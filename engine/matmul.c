#include "matmul.h"

#include <errno.h>
#include <stdlib.h>

#include "blas.h"

/* Weight rows processed together in prefill: their bytes stay in L1/L2 while
 * every token of the batch is multiplied with them (PF_DOT_MULTI_MAX tokens
 * per pass over a row where the format has a multi-token kernel). */
#define PREFILL_ROW_BLOCK 16
/* Floats of weights dequantized at once for one sgemm call (4 MiB): sgemm
 * needs wide tiles to reach its speed (32 rows of 4096 ran at 60% of what
 * 256 rows do). */
#define SGEMM_TILE_FLOATS (1 << 20)

struct job {
	struct pf_matmul_scratch *scratch;
	const struct pf_matmul_out *outs;
	int n_outs;
	int64_t first_row[PF_MATMUL_MAX_OUTS + 1];  /* prefix sums of rows over outs */
	bool sgemm[PF_MATMUL_MAX_OUTS];             /* dequantize+sgemm, else dot kernels */
	const void *xq[PF_MATMUL_MAX_OUTS];         /* x in each output's vec_dot_type */
	size_t xq_stride[PF_MATMUL_MAX_OUTS];       /* bytes between tokens in xq */
	const float *x;
	int64_t T;
};

static size_t act_row_bytes(enum pf_dtype t, int64_t cols)
{
	uint64_t b = 0;
	pf_dtype_bytes(t, (uint64_t)cols, &b);
	return (size_t)b;
}

/* Bytes of one converted-activation buffer, and floats of one thread's
 * sgemm tile (0 when batches of one token never need it). */
static void scratch_plan(int64_t max_cols, int max_tokens, size_t *buf_size, size_t *tile_floats)
{
	size_t widest = 0;
	for (int t = 0; t < PF_DTYPE_COUNT; t++) {
		const struct pf_quant_ops *ops = pf_quant_ops((enum pf_dtype)t);
		if (!ops || ops->vec_dot_type == PF_F32)
			continue;
		int64_t cols = max_cols;
		const struct pf_dtype_info *vi = pf_dtype_info(ops->vec_dot_type);
		cols = (cols + vi->block - 1) / vi->block * vi->block;
		size_t b = act_row_bytes(ops->vec_dot_type, cols);
		if (b > widest)
			widest = b;
	}
	*buf_size = (widest * (size_t)max_tokens + 63) / 64 * 64;
	*tile_floats = max_tokens < 2 ? 0 : SGEMM_TILE_FLOATS > max_cols ? SGEMM_TILE_FLOATS : (size_t)max_cols;
}

uint64_t pf_matmul_scratch_bytes(int64_t max_cols, int max_tokens, int n_threads)
{
	size_t buf_size, tile_floats;
	scratch_plan(max_cols, max_tokens, &buf_size, &tile_floats);
	return (uint64_t)buf_size * PF_MATMUL_MAX_OUTS + (uint64_t)tile_floats * sizeof(float) * n_threads;
}

int pf_matmul_scratch_init(struct pf_matmul_scratch *s, int64_t max_cols, int max_tokens,
			   int n_threads)
{
	/* The sgemm calls run inside our own pool, one per thread; OpenBLAS
	 * threads of its own would compete with them for the cores. */
	pf_blas_single_threaded();
	scratch_plan(max_cols, max_tokens, &s->size, &s->tile_floats);
	for (int i = 0; i < PF_MATMUL_MAX_OUTS; i++) {
		s->buf[i] = aligned_alloc(64, s->size);
		if (!s->buf[i]) {
			pf_matmul_scratch_free(s);
			return -ENOMEM;
		}
	}
	s->tiles = s->tile_floats ? aligned_alloc(64, s->tile_floats * sizeof(float) * (size_t)n_threads)
				  : NULL;
	if (s->tile_floats && !s->tiles) {
		pf_matmul_scratch_free(s);
		return -ENOMEM;
	}
	s->bytes = pf_matmul_scratch_bytes(max_cols, max_tokens, n_threads);
	return 0;
}

void pf_matmul_scratch_free(struct pf_matmul_scratch *s)
{
	for (int i = 0; i < PF_MATMUL_MAX_OUTS; i++) {
		free(s->buf[i]);
		s->buf[i] = NULL;
	}
	free(s->tiles);
	s->tiles = NULL;
}

struct convert_job {
	pf_from_float_fn from_float;
	const float *x;
	uint8_t *dst;
	int64_t cols;
	size_t stride;
};

static void convert_rows(void *arg, int64_t begin, int64_t end, int thread)
{
	(void)thread;
	struct convert_job *cj = arg;
	for (int64_t t = begin; t < end; t++)
		cj->from_float(cj->x + t * cj->cols, cj->dst + (size_t)t * cj->stride, cj->cols);
}

/* Converts x into every activation format the outputs need, sharing a
 * conversion between outputs of the same format. */
static void prepare_inputs(struct pf_pool *pool, struct pf_matmul_scratch *s, struct job *j)
{
	enum pf_dtype done_type[PF_MATMUL_MAX_OUTS];
	int n_done = 0;
	int64_t cols = j->outs[0].w->cols;
	for (int i = 0; i < j->n_outs; i++) {
		enum pf_dtype vt = j->outs[i].w->ops->vec_dot_type;
		j->xq_stride[i] = act_row_bytes(vt, cols);
		if (vt == PF_F32 || j->sgemm[i]) {
			j->xq[i] = j->x;
			continue;
		}
		int k;
		for (k = 0; k < n_done && done_type[k] != vt; k++)
			;
		if (k == n_done) {
			struct convert_job cj = { pf_quant_ops(vt)->from_float, j->x, s->buf[k], cols,
						  j->xq_stride[i] };
			pf_pool_run(pool, convert_rows, &cj, j->T, 1);
			done_type[n_done++] = vt;
		}
		j->xq[i] = s->buf[k];
	}
}

/* wf: rows r0..r1 of float weights, ld floats apart. */
static void sgemm(const struct job *j, int o, const float *wf, int64_t ld, int64_t r0, int64_t r1)
{
	const struct pf_weight *w = j->outs[o].w;
	pf_sgemm(true, (int)j->T, (int)(r1 - r0), (int)w->cols, 1.0f, j->x, (int)w->cols, wf,
		 (int)ld, 0.0f, j->outs[o].y + r0, (int)w->rows);
}

/* F32 weights go to sgemm as they are (rows evenly apart); other formats,
 * and rows in groups, are dequantized a tile of rows at a time into this
 * thread's scratch first. */
static void sgemm_rows(const struct job *j, int o, int64_t r0, int64_t r1, int thread)
{
	const struct pf_weight *w = j->outs[o].w;
	if (w->type == PF_F32 && w->group <= 1) {
		sgemm(j, o, (const float *)(const void *)pf_weight_row(w, r0), (int64_t)(w->stride / sizeof(float)),
		      r0, r1);
		return;
	}
	float *tile = j->scratch->tiles + (size_t)thread * j->scratch->tile_floats;
	int64_t tile_rows = (int64_t)j->scratch->tile_floats / w->cols;
	for (int64_t rb = r0; rb < r1; rb += tile_rows) {
		int64_t re = rb + tile_rows < r1 ? rb + tile_rows : r1;
		for (int64_t r = rb; r < re; r++)
			w->ops->to_float_fast(pf_weight_row(w, r), tile + (r - rb) * w->cols,
					 w->cols);
		sgemm(j, o, tile, w->cols, rb, re);
	}
}

/* Batch size from which dequantize+sgemm beats the dot kernels, per weight
 * format, measured with `pinfer-model bench --kernels` on 4096x4096 with 2
 * threads (Zen 2; docs/benchmarks.md). sgemm calls are serialized (blas.h),
 * so that path runs at one core's sgemm speed, 20 GFLOP/s at 4 tokens to
 * 72-84 at 128, while the dot kernels use both cores: about 50 for F32, 74
 * for F16, 82 for Q8_0, and 145-170 for the formats with a multi-token
 * kernel, which sgemm never catches. Formats not listed have no multi-token
 * kernel and behave like Q8_0. */
#define SGEMM_NEVER INT16_MAX
static const int16_t sgemm_min_tokens[PF_DTYPE_COUNT] = {
	[PF_F32] = 32, [PF_F16] = 128, [PF_BF16] = 128, [PF_Q8_0] = 256,
	[PF_Q4_0] = SGEMM_NEVER, [PF_Q4_K] = SGEMM_NEVER, [PF_Q6_K] = SGEMM_NEVER,
};

static bool prefill_uses_sgemm(enum pf_dtype t, int64_t T)
{
	int min = sgemm_min_tokens[t] ? sgemm_min_tokens[t] : 256;
	return T >= min;
}

static void dot_rows(const struct job *j, int o, int64_t r0, int64_t r1)
{
	const struct pf_weight *w = j->outs[o].w;
	pf_vec_dot_fn dot = w->ops->vec_dot;
	float *y = j->outs[o].y;
	const uint8_t *xq = j->xq[o];
	int n = (int)w->cols;
	if (j->T == 1) {
		for (int64_t r = r0; r < r1; r++)
			dot(n, &y[r], pf_weight_row(w, r), xq);
		return;
	}
	pf_vec_dot_multi_fn multi = w->ops->vec_dot_multi;
	size_t xs = j->xq_stride[o];
	for (int64_t rb = r0; rb < r1; rb += PREFILL_ROW_BLOCK) {
		int64_t re = rb + PREFILL_ROW_BLOCK < r1 ? rb + PREFILL_ROW_BLOCK : r1;
		int64_t t = 0;
		/* Groups of tokens share each pass over a weight row; the group's
		 * activations stay in L1/L2 across the row block. */
		if (multi)
			for (; t < j->T; t += PF_DOT_MULTI_MAX) {
				int nx = j->T - t < PF_DOT_MULTI_MAX ? (int)(j->T - t) : PF_DOT_MULTI_MAX;
				for (int64_t r = rb; r < re; r++)
					multi(n, &y[t * w->rows + r], (size_t)w->rows,
					      pf_weight_row(w, r), xq + (size_t)t * xs, xs, nx);
			}
		for (; t < j->T; t++)
			for (int64_t r = rb; r < re; r++)
				dot(n, &y[t * w->rows + r], pf_weight_row(w, r),
				    xq + (size_t)t * xs);
	}
}

static void run_rows(void *arg, int64_t begin, int64_t end, int thread)
{
	const struct job *j = arg;
	for (int o = 0; o < j->n_outs; o++) {
		int64_t lo = j->first_row[o], hi = j->first_row[o + 1];
		int64_t b = begin > lo ? begin : lo, e = end < hi ? end : hi;
		if (b >= e)
			continue;
		if (j->sgemm[o])
			sgemm_rows(j, o, b - lo, e - lo, thread);
		else
			dot_rows(j, o, b - lo, e - lo);
	}
}

void pf_matmul_with(struct pf_pool *pool, struct pf_matmul_scratch *s,
		    const struct pf_matmul_out *outs, int n_outs, const float *x, int64_t T,
		    enum pf_matmul_kind kind)
{
	struct job j = { .scratch = s, .outs = outs, .n_outs = n_outs, .x = x, .T = T };
	j.first_row[0] = 0;
	for (int i = 0; i < n_outs; i++) {
		j.first_row[i + 1] = j.first_row[i] + outs[i].w->rows;
		j.sgemm[i] = T > 1 && s->tiles &&
			     (kind == PF_MATMUL_SGEMM ||
			      (kind == PF_MATMUL_AUTO && prefill_uses_sgemm(outs[i].w->type, T)));
	}
	prepare_inputs(pool, s, &j);
	pf_pool_run(pool, run_rows, &j, j.first_row[n_outs], 16);
}

void pf_matmul(struct pf_pool *pool, struct pf_matmul_scratch *s, const struct pf_matmul_out *outs,
	       int n_outs, const float *x, int64_t T)
{
	pf_matmul_with(pool, s, outs, n_outs, x, T, PF_MATMUL_AUTO);
}
