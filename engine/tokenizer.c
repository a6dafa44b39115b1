/* The tokenizer's public API: encoding with special tokens split out of the
 * text first, and decoding (whole sequences and streamed). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"
#include "unicode.h"

int32_t pf_vocab_size(const struct pf_vocab *v)
{
	return v->n_vocab;
}

int32_t pf_vocab_bos(const struct pf_vocab *v)
{
	return v->bos;
}

int32_t pf_vocab_eos(const struct pf_vocab *v)
{
	return v->eos;
}

int32_t pf_vocab_eot(const struct pf_vocab *v)
{
	return v->eot;
}

bool pf_vocab_add_bos(const struct pf_vocab *v)
{
	return v->add_bos;
}

bool pf_vocab_is_eog(const struct pf_vocab *v, int32_t id)
{
	for (int i = 0; i < v->n_eog; i++) {
		if (v->eog[i] == id)
			return true;
	}
	return false;
}

/* ---- encoding ---- */

/* A stretch of the input: plain text, or one special token (id >= 0). */
struct frag {
	size_t start, len;
	int32_t id;
};

struct frags {
	struct frag *f;
	size_t n, cap;
};

static int frag_push(struct frags *fs, size_t start, size_t len, int32_t id)
{
	if (fs->n == fs->cap) {
		size_t cap = fs->cap ? fs->cap * 2 : 16;
		struct frag *p = realloc(fs->f, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		fs->f = p;
		fs->cap = cap;
	}
	fs->f[fs->n++] = (struct frag){ start, len, id };
	return 0;
}

static bool splits(const struct pf_vocab *v, int32_t id, bool parse_special)
{
	uint8_t t = v->types[id];
	return t == PF_TOK_USER_DEFINED ||
	       (parse_special && (t == PF_TOK_CONTROL || t == PF_TOK_UNKNOWN));
}

/* Cuts special tokens out of the text fragments, longest tokens first as
 * llama.cpp does. User-defined tokens are always cut (HF's added tokens);
 * control and unknown ones only with parse_special. Within one length the
 * scan is left to right, where llama.cpp goes token by token: the two only
 * differ on overlapping special tokens of equal length. */
static int split_group(const struct pf_vocab *v, const struct pf_special_group *g,
		       const char *text, bool parse_special, const struct frags *in,
		       struct frags *out)
{
	out->n = 0;
	for (size_t k = 0; k < in->n; k++) {
		struct frag f = in->f[k];
		if (f.id >= 0 || f.len < g->len) {
			if (frag_push(out, f.start, f.len, f.id))
				return -ENOMEM;
			continue;
		}
		size_t gap = f.start, end = f.start + f.len;
		for (size_t p = f.start; p + g->len <= end;) {
			unsigned char c = (unsigned char)text[p];
			int32_t id = -1;
			if (g->first_byte[c >> 3] & (1u << (c & 7)))
				id = pf_vocab_find(v, text + p, g->len);
			if (id < 0 || !splits(v, id, parse_special)) {
				p++;
				continue;
			}
			if ((p > gap && frag_push(out, gap, p - gap, -1)) || frag_push(out, p, 0, id))
				return -ENOMEM;
			p += g->len;
			gap = p;
		}
		if (gap < end && frag_push(out, gap, end - gap, -1))
			return -ENOMEM;
	}
	return 0;
}

static int split_special(const struct pf_vocab *v, const char *text, size_t len,
			 bool parse_special, struct frags *fs)
{
	fs->n = 0;
	if (len && frag_push(fs, 0, len, -1))
		return -ENOMEM;
	struct frags tmp = { 0 };
	int r = 0;
	for (uint32_t i = 0; i < v->n_groups && !r; i++) {
		const struct pf_special_group *g = &v->groups[i];
		if (!parse_special && !g->has_user_defined)
			continue;
		r = split_group(v, g, text, parse_special, fs, &tmp);
		struct frags swap = *fs;
		*fs = tmp;
		tmp = swap;
	}
	free(tmp.f);
	return r;
}

/* SentencePiece sees spaces as U+2581, with one more in front when the
 * vocab asks for a dummy prefix. */
static int spm_fragment(const struct pf_vocab *v, const char *s, size_t len, bool prefix,
			struct pf_sink *out)
{
	size_t spaces = prefix;
	for (size_t i = 0; i < len; i++)
		spaces += s[i] == ' ';
	char *buf = malloc(len + 2 * spaces + 1);
	if (!buf)
		return -ENOMEM;
	size_t n = 0;
	if (prefix) {
		memcpy(buf, "\xE2\x96\x81", 3);
		n = 3;
	}
	for (size_t i = 0; i < len; i++) {
		if (s[i] == ' ') {
			memcpy(buf + n, "\xE2\x96\x81", 3);
			n += 3;
		} else {
			buf[n++] = s[i];
		}
	}
	int r = pf_spm_encode(v, buf, n, out);
	free(buf);
	return r;
}

int pf_tokenize(const struct pf_vocab *v, const char *text, size_t len, bool add_bos,
		bool parse_special, int32_t *out, size_t cap)
{
	if (!v || (!text && len) || (!out && cap))
		return -EINVAL;
	if (len > INT_MAX / 4)
		return -EOVERFLOW;
	struct pf_sink sink = { out, cap, 0 };
	struct frags fs = { 0 };
	if (add_bos && v->add_bos)
		pf_sink_push(&sink, v->bos);
	int r = split_special(v, text, len, parse_special, &fs);
	/* llama.cpp gives every text fragment at the start or after a special
	 * token its own dummy prefix. */
	bool after_special = true;
	for (size_t i = 0; i < fs.n && !r; i++) {
		const struct frag *f = &fs.f[i];
		if (f->id >= 0) {
			pf_sink_push(&sink, f->id);
			after_special = true;
		} else if (v->kind == PF_VOCAB_SPM) {
			r = spm_fragment(v, text + f->start, f->len,
					 v->add_space_prefix && after_special, &sink);
			after_special = false;
		} else {
			r = pf_bpe_encode(v, text + f->start, f->len, &sink);
		}
	}
	free(fs.f);
	if (r)
		return r;
	return sink.n > INT_MAX ? -EOVERFLOW : (int)sink.n;
}

/* ---- decoding ---- */

static const char *piece_of(const struct pf_vocab *v, int32_t id, bool render_special,
			    size_t *len)
{
	uint8_t t = v->types[id];
	if (!render_special && (t == PF_TOK_CONTROL || t == PF_TOK_UNKNOWN)) {
		*len = 0;
		return "";
	}
	*len = v->piece_off[id + 1] - v->piece_off[id];
	return v->piece + v->piece_off[id];
}

static bool valid_id(const struct pf_vocab *v, int32_t id)
{
	return id >= 0 && id < v->n_vocab;
}

int pf_token_to_piece(const struct pf_vocab *v, int32_t id, bool render_special, char *buf,
		      size_t cap)
{
	if (!valid_id(v, id))
		return -EINVAL;
	size_t n;
	const char *p = piece_of(v, id, render_special, &n);
	if (n && cap)
		memcpy(buf, p, n < cap ? n : cap);
	return (int)n;
}

/* The dummy-prefix space goes from the first piece after any leading BOS. */
static const char *strip_prefix(const struct pf_vocab *v, int32_t id, bool *at_start,
				const char *p, size_t *n)
{
	if (!*at_start || id == v->bos)
		return p;
	*at_start = false;
	if (*n && p[0] == ' ') {
		(*n)--;
		return p + 1;
	}
	return p;
}

int pf_detokenize(const struct pf_vocab *v, const int32_t *ids, size_t n, bool render_special,
		  char *buf, size_t cap)
{
	size_t total = 0;
	bool at_start = v->add_space_prefix;
	for (size_t i = 0; i < n; i++) {
		if (!valid_id(v, ids[i]))
			return -EINVAL;
		size_t len;
		const char *p = piece_of(v, ids[i], render_special, &len);
		p = strip_prefix(v, ids[i], &at_start, p, &len);
		if (total < cap)
			memcpy(buf + total, p, len < cap - total ? len : cap - total);
		total += len;
		if (total > INT_MAX)
			return -EOVERFLOW;
	}
	return (int)total;
}

void pf_detok_init(struct pinfer_detok *d, const struct pf_vocab *v)
{
	d->vocab = v;
	d->at_start = v->add_space_prefix;
	d->n_pending = 0;
}

/* How many of the last bytes of pending+piece start a UTF-8 character
 * that is not complete yet (0 to 3). */
static int incomplete_tail(const struct pinfer_detok *d, const char *p, size_t n)
{
	size_t total = (size_t)d->n_pending + n;
	for (size_t back = 1; back <= 3 && back <= total; back++) {
		size_t i = total - back;
		unsigned char c = (unsigned char)(i < (size_t)d->n_pending ? d->pending[i]
									    : p[i - d->n_pending]);
		if ((c & 0xC0) == 0x80)
			continue;
		return c >= 0xC0 && pf_utf8_seq_len(c) > back ? (int)back : 0;
	}
	return 0;
}

int pf_detok_push(struct pinfer_detok *d, int32_t id, char *buf, size_t cap)
{
	const struct pf_vocab *v = d->vocab;
	if (!valid_id(v, id))
		return -EINVAL;
	size_t n;
	bool at_start = d->at_start;
	const char *p = piece_of(v, id, false, &n);
	p = strip_prefix(v, id, &at_start, p, &n);
	int held = incomplete_tail(d, p, n);
	size_t total = (size_t)d->n_pending + n, emit = total - (size_t)held;
	if (emit > cap || emit > INT_MAX)
		return -ENOSPC;
	char tail[4];
	for (int i = 0; i < held; i++) {
		size_t j = total - (size_t)held + (size_t)i;
		tail[i] = j < (size_t)d->n_pending ? d->pending[j] : p[j - d->n_pending];
	}
	if (emit) {
		size_t from_pending = emit < (size_t)d->n_pending ? emit : (size_t)d->n_pending;
		memcpy(buf, d->pending, from_pending);
		memcpy(buf + from_pending, p, emit - from_pending);
	}
	memcpy(d->pending, tail, (size_t)held);
	d->n_pending = held;
	d->at_start = at_start;
	return (int)emit;
}

int pf_detok_flush(struct pinfer_detok *d, char *buf, size_t cap)
{
	size_t n = (size_t)d->n_pending;
	if (n > cap)
		return -ENOSPC;
	if (n)
		memcpy(buf, d->pending, n);
	d->n_pending = 0;
	return (int)n;
}
