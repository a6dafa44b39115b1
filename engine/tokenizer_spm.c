/* SentencePiece-style encoding as llama.cpp's llm_tokenizer_spm does it:
 * start from UTF-8 characters and keep merging the adjacent pair whose
 * concatenation is the best-scoring token (the leftmost pair on a tie),
 * then spell what never became a token with byte-fallback tokens. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"
#include "unicode.h"

struct sym {
	size_t start, len;  /* len 0: merged into its left neighbour */
	int prev, next;
};

struct bigram {
	float score;
	int left, right;
	size_t len;  /* of the pair when queued, to spot stale entries */
};

/* Max-heap order: higher score first, then the leftmost pair. */
static bool before(const struct bigram *a, const struct bigram *b)
{
	return a->score > b->score || (a->score == b->score && a->left < b->left);
}

struct heap {
	struct bigram *e;
	size_t n, cap;
};

static int heap_push(struct heap *h, struct bigram b)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct bigram *p = realloc(h->e, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		h->e = p;
		h->cap = cap;
	}
	size_t i = h->n++;
	while (i && before(&b, &h->e[(i - 1) / 2])) {
		h->e[i] = h->e[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->e[i] = b;
	return 0;
}

static struct bigram heap_pop(struct heap *h)
{
	struct bigram top = h->e[0], last = h->e[--h->n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && before(&h->e[c + 1], &h->e[c]))
			c++;
		if (!before(&h->e[c], &last))
			break;
		h->e[i] = h->e[c];
		i = c;
	}
	if (h->n)
		h->e[i] = last;
	return top;
}

static int try_pair(const struct pf_vocab *v, const char *text, const struct sym *syms,
		    struct heap *h, int left, int right)
{
	if (left < 0 || right < 0)
		return 0;
	size_t len = syms[left].len + syms[right].len;
	int32_t id = pf_vocab_find(v, text + syms[left].start, len);
	if (id < 0)
		return 0;
	return heap_push(h, (struct bigram){ v->scores[id], left, right, len });
}

/* A final symbol is a token or a single character (every merge forms a
 * token), so llama.cpp's re-segmentation reduces to byte fallback. */
static void emit(const struct pf_vocab *v, const char *s, size_t len, struct pf_sink *out)
{
	int32_t id = pf_vocab_find(v, s, len);
	if (id >= 0) {
		pf_sink_push(out, id);
		return;
	}
	bool bytes = true;
	for (size_t i = 0; i < len; i++)
		bytes &= v->byte_tok[(unsigned char)s[i]] >= 0;
	if (bytes) {
		for (size_t i = 0; i < len; i++)
			pf_sink_push(out, v->byte_tok[(unsigned char)s[i]]);
	} else if (v->unk >= 0) {
		pf_sink_push(out, v->unk);
	}
}

int pf_spm_encode(const struct pf_vocab *v, const char *text, size_t len, struct pf_sink *out)
{
	if (!len)
		return 0;
	struct sym *syms = malloc(len * sizeof(*syms));
	struct heap h = { 0 };
	int r = 0;
	if (!syms)
		return -ENOMEM;
	int n = 0;
	/* An invalid byte is a symbol of its own; llama.cpp trusts the lead
	 * byte and can swallow the first bytes of an escaped space with it. */
	for (size_t i = 0; i < len; n++) {
		uint32_t cp;
		size_t k = pf_utf8_decode(text + i, len - i, &cp);
		syms[n] = (struct sym){ i, k, n - 1, n + 1 };
		i += k;
	}
	syms[n - 1].next = -1;
	for (int i = 1; i < n && !r; i++)
		r = try_pair(v, text, syms, &h, i - 1, i);
	while (h.n && !r) {
		struct bigram b = heap_pop(&h);
		struct sym *l = &syms[b.left], *rt = &syms[b.right];
		if (!l->len || !rt->len || l->len + rt->len != b.len)
			continue;
		l->len += rt->len;
		rt->len = 0;
		l->next = rt->next;
		if (rt->next >= 0)
			syms[rt->next].prev = b.left;
		r = try_pair(v, text, syms, &h, l->prev, b.left);
		if (!r)
			r = try_pair(v, text, syms, &h, b.left, l->next);
	}
	for (int i = 0; i >= 0 && !r; i = syms[i].next)
		emit(v, text + syms[i].start, syms[i].len, out);
	free(h.e);
	free(syms);
	return r;
}
