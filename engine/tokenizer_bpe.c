/* Byte-level BPE: pre-tokenize, then within each piece start from one
 * symbol per byte (its GPT-2 byte-level character) and apply the
 * best-ranked merge until none applies, as llama.cpp's llm_tokenizer_bpe
 * does (the leftmost pair on a tie). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"
#include "unicode.h"

struct sym {
	size_t start, len;  /* bytes of the input; len 0: merged away */
	int32_t id;         /* token, or merge product beyond n_vocab */
	int prev, next;
};

struct bigram {
	int32_t rank;
	int left, right;
	int32_t left_id, right_id;  /* to spot stale entries */
	int32_t result;
};

static bool before(const struct bigram *a, const struct bigram *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

struct work {
	struct sym *syms;
	size_t cap_syms;
	struct bigram *heap;
	size_t n_heap, cap_heap;
	char *word;  /* a piece in byte-level characters */
	size_t cap_word;
};

static int heap_push(struct work *w, struct bigram b)
{
	if (w->n_heap == w->cap_heap) {
		size_t cap = w->cap_heap ? w->cap_heap * 2 : 64;
		struct bigram *p = realloc(w->heap, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		w->heap = p;
		w->cap_heap = cap;
	}
	size_t i = w->n_heap++;
	while (i && before(&b, &w->heap[(i - 1) / 2])) {
		w->heap[i] = w->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	w->heap[i] = b;
	return 0;
}

static struct bigram heap_pop(struct work *w)
{
	struct bigram *e = w->heap;
	struct bigram top = e[0], last = e[--w->n_heap];
	size_t i = 0, n = w->n_heap;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && before(&e[c + 1], &e[c]))
			c++;
		if (!before(&e[c], &last))
			break;
		e[i] = e[c];
		i = c;
	}
	if (n)
		e[i] = last;
	return top;
}

static int try_pair(const struct pf_vocab *v, struct work *w, int left, int right)
{
	if (left < 0 || right < 0)
		return 0;
	const struct pf_merge *m = pf_vocab_merge(v, w->syms[left].id, w->syms[right].id);
	if (!m)
		return 0;
	return heap_push(w, (struct bigram){ m->rank, left, right, w->syms[left].id,
					     w->syms[right].id, m->result });
}

/* A merge product that is no token is spelled byte by byte. */
static void emit(const struct pf_vocab *v, const char *text, const struct sym *s,
		 struct pf_sink *out)
{
	if (s->id < v->n_vocab) {
		pf_sink_push(out, s->id);
		return;
	}
	for (size_t i = s->start; i < s->start + s->len; i++) {
		int32_t id = v->byte_tok[(unsigned char)text[i]];
		if (id < v->n_vocab)
			pf_sink_push(out, id);
		else if (v->unk >= 0)
			pf_sink_push(out, v->unk);
	}
}

/* HF's ignore_merges: a piece that is a token as a whole is taken as is. */
static int whole_token(const struct pf_vocab *v, struct work *w, const char *text, size_t a,
		       size_t b, int32_t *id)
{
	*id = -1;
	if (w->cap_word < 2 * (b - a)) {
		char *p = realloc(w->word, 2 * (b - a));
		if (!p)
			return -ENOMEM;
		w->word = p;
		w->cap_word = 2 * (b - a);
	}
	size_t n = 0;
	for (size_t i = a; i < b; i++) {
		size_t len;
		int32_t s = v->byte_tok[(unsigned char)text[i]];
		if (s >= v->n_vocab)
			return 0;
		const char *t = pf_tok_text(v, s, &len);
		memcpy(w->word + n, t, len);
		n += len;
	}
	*id = pf_vocab_find(v, w->word, n);
	return 0;
}

static int encode_piece(const struct pf_vocab *v, struct work *w, const char *text, size_t a,
			size_t b, struct pf_sink *out)
{
	if (v->pre.ignore_merges && b - a > 1) {
		int32_t id;
		int r = whole_token(v, w, text, a, b, &id);
		if (r)
			return r;
		if (id >= 0) {
			pf_sink_push(out, id);
			return 0;
		}
	}
	size_t n = b - a;
	if (w->cap_syms < n) {
		struct sym *p = realloc(w->syms, n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		w->syms = p;
		w->cap_syms = n;
	}
	for (size_t i = 0; i < n; i++)
		w->syms[i] = (struct sym){ a + i, 1, v->byte_tok[(unsigned char)text[a + i]],
					   (int)i - 1, i + 1 < n ? (int)i + 1 : -1 };
	w->n_heap = 0;
	int r = 0;
	for (size_t i = 1; i < n && !r; i++)
		r = try_pair(v, w, (int)i - 1, (int)i);
	while (w->n_heap && !r) {
		struct bigram g = heap_pop(w);
		struct sym *l = &w->syms[g.left], *rt = &w->syms[g.right];
		if (!l->len || !rt->len || l->id != g.left_id || rt->id != g.right_id)
			continue;
		l->id = g.result;
		l->len += rt->len;
		rt->len = 0;
		l->next = rt->next;
		if (rt->next >= 0)
			w->syms[rt->next].prev = g.left;
		r = try_pair(v, w, l->prev, g.left);
		if (!r)
			r = try_pair(v, w, g.left, l->next);
	}
	for (int i = 0; i >= 0 && !r; i = w->syms[i].next)
		emit(v, text, &w->syms[i], out);
	return r;
}

int pf_bpe_encode(const struct pf_vocab *v, const char *text, size_t len, struct pf_sink *out)
{
	struct pf_text t;
	struct pf_spans spans = { 0 };
	struct work w = { 0 };
	int r = pf_text_decode(&t, text, len);
	if (r)
		return r;
	r = pf_pretokenize(v->pre.kind, &t, &spans);
	size_t start = 0;
	for (size_t i = 0; i < spans.n && !r; i++) {
		r = encode_piece(v, &w, text, t.off[start], t.off[spans.end[i]], out);
		start = spans.end[i];
	}
	free(w.syms);
	free(w.heap);
	free(w.word);
	pf_spans_free(&spans);
	pf_text_free(&t);
	return r;
}
