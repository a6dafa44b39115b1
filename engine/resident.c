#include "resident.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gguf.h"
#include "mapfile.h"
#include "model.h"
#include "threadpool.h"

/* Bytes one thread copies at a time. */
#define COPY_CHUNK ((size_t)1 << 21)

/* A run of the file's bytes and where its copy starts. */
struct span {
	const uint8_t *src;
	size_t n, dst;
};

struct copy_job {
	const struct span *spans;
	int n_spans;
	uint8_t *mem;
	size_t total;
	bool release, locked;
};

static const uint8_t *weight_end(const struct pf_weight *w)
{
	return pf_weight_row(w, w->rows - 1) + w->row_bytes;
}

static bool in_file(const struct pinfer_model *m, const struct pf_weight *w)
{
	return w->data && w->rows > 0 && w->data >= m->gguf->base && weight_end(w) <= m->gguf->base + m->gguf->size;
}

/* Every weight decode may read: the predictor in predictor mode only; in
 * a sparse mode, of the FFN, what it reads from the file (the gate, where
 * the bundles do not hold it): up and down come from the bundles or the
 * neuron cache, and the file's copies of them are never read. Returns how
 * many. */
static int decode_weights(struct pinfer_model *m, struct pf_weight **ws)
{
	bool sparse = m->info.sparsity != PINFER_SPARSITY_DENSE;
	int n = 0;
	ws[n++] = &m->output;
	for (int l = 0; l < m->info.n_layer; l++) {
		struct pf_layer *L = &m->layers[l];
		ws[n++] = &L->wq;
		ws[n++] = &L->wk;
		ws[n++] = &L->wv;
		ws[n++] = &L->wo;
		if (m->info.sparsity == PINFER_SPARSITY_PREDICTOR) {
			ws[n++] = &L->fc1;
			ws[n++] = &L->fc2;
		}
		if (!sparse || !m->bundles.gate)
			ws[n++] = &L->ffn_gate;
		if (!sparse) {
			ws[n++] = &L->ffn_up;
			ws[n++] = &L->ffn_down;
		}
	}
	return n;
}

static int by_src(const void *a, const void *b)
{
	const struct span *x = a, *y = b;
	return (x->src > y->src) - (x->src < y->src);
}

/* The weights' byte ranges in file order, overlapping ones (a tied output
 * head is the token embedding) merged, each placed 64-byte aligned. */
static int plan_spans(struct pinfer_model *m, struct pf_weight **ws, int n_ws, struct span *spans,
		      size_t *total)
{
	int n = 0;
	for (int i = 0; i < n_ws; i++)
		if (in_file(m, ws[i]))
			spans[n++] = (struct span){ ws[i]->data, (size_t)(weight_end(ws[i]) - ws[i]->data), 0 };
	qsort(spans, (size_t)n, sizeof(*spans), by_src);
	int k = 0;
	for (int i = 0; i < n; i++) {
		if (k > 0 && spans[i].src <= spans[k - 1].src + spans[k - 1].n) {
			const uint8_t *end = spans[i].src + spans[i].n;
			if (end > spans[k - 1].src + spans[k - 1].n)
				spans[k - 1].n = (size_t)(end - spans[k - 1].src);
			continue;
		}
		spans[k++] = spans[i];
	}
	size_t at = 0;
	for (int i = 0; i < k; i++) {
		spans[i].dst = at;
		at += (spans[i].n + 63) & ~(size_t)63;
	}
	*total = at;
	return k;
}

static void copy_chunks(void *arg, int64_t begin, int64_t end, int thread)
{
	(void)thread;
	const struct copy_job *j = arg;
	for (int64_t c = begin; c < end; c++) {
		size_t lo = (size_t)c * COPY_CHUNK, hi = lo + COPY_CHUNK < j->total ? lo + COPY_CHUNK : j->total;
		for (int s = 0; s < j->n_spans; s++) {
			const struct span *sp = &j->spans[s];
			size_t a = lo > sp->dst ? lo : sp->dst, e = hi < sp->dst + sp->n ? hi : sp->dst + sp->n;
			if (a >= e)
				continue;
			/* The file's pages mapped in one call, not a fault per 4 KiB
			 * (4.7 s of system time for a 7B model), and out again once
			 * copied, so the load never holds the weights twice. */
			const uint8_t *src = sp->src + (a - sp->dst);
			uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
			uintptr_t pa = (uintptr_t)src & ~(page - 1);
			madvise((void *)pa, (uintptr_t)(src + (e - a)) - pa, MADV_POPULATE_READ);
			memcpy(j->mem + a, src, e - a);
			if (j->release)
				pf_release_file_range(src, e - a, j->locked);
		}
	}
}

int pf_resident_copy(struct pinfer_model *m, bool lock, struct pf_err *err)
{
	/* The weights to copy, then the token embedding, which is only read a
	 * row at a time but is the output head's copy when that is tied. */
	size_t max = 2 + (size_t)m->info.n_layer * 9;
	struct pf_weight **ws = malloc(max * sizeof(*ws));
	struct span *spans = malloc(max * sizeof(*spans));
	int r = 0;
	if (!ws || !spans) {
		r = pf_errf(err, -ENOMEM, "out of memory");
		goto out;
	}
	int n_ws = decode_weights(m, ws);
	ws[n_ws] = &m->tok_embd;
	size_t total;
	int n_spans = plan_spans(m, ws, n_ws, spans, &total);
	if (total == 0)
		goto out;
	void *mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		r = pf_errf(err, -ENOMEM, "%s: out of memory for a copy of the weights (%zu bytes)",
			    m->gguf->path, total);
		goto out;
	}
	madvise(mem, total, MADV_HUGEPAGE);
	m->resident = (struct pf_resident){ .mem = mem, .mem_bytes = total };
	struct pf_pool *pool;
	if ((r = pf_pool_new(&pool, pf_cpu_count()))) {
		r = pf_errf(err, r, "cannot start threads to copy the weights");
		goto out;
	}
	struct copy_job j = { spans, n_spans, mem, total, m->gguf->owns_map, m->locked };
	pf_pool_run(pool, copy_chunks, &j, (int64_t)((total + COPY_CHUNK - 1) / COPY_CHUNK), 1);
	pf_pool_free(pool);
	mprotect(mem, total, PROT_READ);

	for (int i = 0; i <= n_ws; i++) {
		struct pf_weight *w = ws[i];
		for (int s = 0; s < n_spans; s++)
			if (w->data >= spans[s].src && w->data < spans[s].src + spans[s].n) {
				w->data = m->resident.mem + spans[s].dst + (size_t)(w->data - spans[s].src);
				break;
			}
	}
	/* The pages that straddle two chunks. */
	if (j.release)
		for (int s = 0; s < n_spans; s++)
			pf_release_file_range(spans[s].src, spans[s].n, m->locked);
	if (lock) {
		if (mlock(mem, total) < 0) {
			int e = errno;
			r = pf_errf(err, -e, "mlock of %zu bytes of weights failed: %s", total, strerror(e));
			goto out;
		}
		m->resident.locked = true;
	}
	m->info.heap_bytes += total;
	m->info.copied_bytes += total;
out:
	free(spans);
	free(ws);
	return r;
}

void pf_resident_free(struct pinfer_model *m)
{
	if (!m->resident.mem)
		return;
	if (m->resident.locked)
		munlock(m->resident.mem, m->resident.mem_bytes);
	munmap(m->resident.mem, m->resident.mem_bytes);
	m->resident = (struct pf_resident){ 0 };
}
