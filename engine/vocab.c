/* Loading a tokenizer vocabulary from GGUF metadata, with every field
 * checked, plus the hash tables tokenization looks strings and merges up
 * in. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"
#include "unicode.h"

/* Strings llama.cpp recognises as end-of-turn when the file names no EOT
 * token, in order of preference. */
static const char *const eot_texts[] = {
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
	"<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",
};

uint64_t pf_hash_bytes(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;  /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return h ^ h >> 29;
}

static uint64_t hash_pair(uint64_t key)
{
	key *= 0x9E3779B97F4A7C15ull;
	return key ^ key >> 31;
}

static uint32_t table_size(uint64_t n)
{
	uint32_t cap = 16;
	while (cap < 2 * n)
		cap *= 2;
	return cap;
}

int32_t pf_vocab_find(const struct pf_vocab *v, const char *s, size_t len)
{
	for (uint32_t i = (uint32_t)pf_hash_bytes(s, len) & v->map_mask;; i = (i + 1) & v->map_mask) {
		int32_t id = v->map[i];
		if (id < 0)
			return -1;
		size_t n;
		const char *t = pf_tok_text(v, id, &n);
		if (n == len && memcmp(t, s, len) == 0)
			return id;
	}
}

const struct pf_merge *pf_vocab_merge(const struct pf_vocab *v, int32_t left, int32_t right)
{
	if (!v->merges)
		return NULL;
	uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
	for (uint32_t i = (uint32_t)hash_pair(key) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
		const struct pf_merge *m = &v->merges[i];
		if (m->key == key)
			return m;
		if (m->key == UINT64_MAX)
			return NULL;
	}
}

void pf_vocab_free(struct pf_vocab *v)
{
	if (!v)
		return;
	free(v->text);
	free(v->text_off);
	free(v->scores);
	free(v->types);
	free(v->piece);
	free(v->piece_off);
	free(v->map);
	free(v->merges);
	free(v->special);
	free(v->groups);
	free(v);
}

/* ---- metadata access ---- */

static bool is_int_type(enum gguf_type t)
{
	return t <= GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

static bool is_num_type(enum gguf_type t)
{
	return is_int_type(t) || t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64;
}

/* An array key whose element type passes ok(); NULL (and *res = 0) when it
 * is absent and optional. */
static const struct gguf_array *get_array(const struct gguf_file *f, const char *key,
					  bool required, bool (*ok)(enum gguf_type),
					  const char *what, struct pf_err *err, int *res)
{
	const struct gguf_kv *kv = gguf_find(f, key);
	*res = 0;
	if (!kv) {
		if (required)
			*res = pf_errf(err, -EINVAL, "%s missing", key);
		return NULL;
	}
	if (kv->type != GGUF_TYPE_ARRAY || !ok(kv->v.arr.type)) {
		*res = pf_errf(err, -EINVAL, "%s must be an array of %s, found %s of %s", key, what,
			       gguf_type_name(kv->type),
			       kv->type == GGUF_TYPE_ARRAY ? gguf_type_name(kv->v.arr.type) : "-");
		return NULL;
	}
	return &kv->v.arr;
}

static bool is_str_type(enum gguf_type t)
{
	return t == GGUF_TYPE_STRING;
}

static int get_bool(const struct gguf_file *f, const char *key, bool *out, struct pf_err *err)
{
	const struct gguf_kv *kv = gguf_find(f, key);
	if (kv && !gguf_get_bool(f, key, out))
		return pf_errf(err, -EINVAL, "%s must be a bool, found %s", key,
			       gguf_type_name(kv->type));
	return 0;
}

/* A token id key; absent keeps *id, and -1 (any width) means "none". */
static int get_id(const struct gguf_file *f, const struct pf_vocab *v, const char *key,
		  int32_t *id, struct pf_err *err)
{
	const struct gguf_kv *kv = gguf_find(f, key);
	if (!kv)
		return 0;
	if (!is_int_type(kv->type))
		return pf_errf(err, -EINVAL, "%s must be an integer, found %s", key,
			       gguf_type_name(kv->type));
	int64_t x;
	bool is_signed = kv->type == GGUF_TYPE_INT8 || kv->type == GGUF_TYPE_INT16 ||
			 kv->type == GGUF_TYPE_INT32 || kv->type == GGUF_TYPE_INT64;
	if (is_signed) {
		x = kv->v.i;
	} else {
		bool all_ones = kv->v.u == UINT64_MAX ||
				(kv->type == GGUF_TYPE_UINT32 && kv->v.u == UINT32_MAX);
		x = all_ones ? -1 : kv->v.u > INT32_MAX ? INT64_MAX : (int64_t)kv->v.u;
	}
	if (x == -1) {
		*id = -1;
		return 0;
	}
	if (x < 0 || x >= v->n_vocab)
		return pf_errf(err, -EINVAL, "%s = %lld is out of range for %d tokens", key,
			       (long long)x, v->n_vocab);
	*id = (int32_t)x;
	return 0;
}

/* ---- building ---- */

static int load_tokens(struct pf_vocab *v, const struct gguf_array *toks, struct pf_err *err)
{
	const char *key = "tokenizer.ggml.tokens";
	if (toks->n == 0 || toks->n > (1u << 28))
		return pf_errf(err, -EINVAL, "%s has %llu entries", key,
			       (unsigned long long)toks->n);
	v->n_vocab = (int32_t)toks->n;
	uint64_t total = 0;
	for (uint64_t i = 0; i < toks->n; i++) {
		struct gguf_str s = toks->strs[i];
		if (!pf_utf8_valid(s.ptr, s.len))
			return pf_errf(err, -EINVAL, "%s[%llu] is not valid UTF-8", key,
				       (unsigned long long)i);
		total += s.len;
	}
	if (total > UINT32_MAX / 2)
		return pf_errf(err, -EINVAL, "%s: %llu bytes of text is too much", key,
			       (unsigned long long)total);
	v->text = malloc(total ? total : 1);
	v->text_off = malloc(((size_t)toks->n + 1) * sizeof(*v->text_off));
	v->map_mask = table_size(toks->n) - 1;
	v->map = malloc(((size_t)v->map_mask + 1) * sizeof(*v->map));
	if (!v->text || !v->text_off || !v->map)
		return pf_errf(err, -ENOMEM, "out of memory for %llu tokens",
			       (unsigned long long)toks->n);
	memset(v->map, 0xFF, ((size_t)v->map_mask + 1) * sizeof(*v->map));
	uint32_t off = 0;
	for (int32_t id = 0; id < v->n_vocab; id++) {
		struct gguf_str s = toks->strs[id];
		memcpy(v->text + off, s.ptr, s.len);
		v->text_off[id] = off;
		off += (uint32_t)s.len;
		/* Empty tokens (llama.cpp renames them) can never match text. */
		if (s.len == 0)
			continue;
		uint32_t i = (uint32_t)pf_hash_bytes(s.ptr, s.len) & v->map_mask;
		for (; v->map[i] >= 0; i = (i + 1) & v->map_mask) {
			size_t n;
			const char *t = pf_tok_text(v, v->map[i], &n);
			if (n == s.len && memcmp(t, s.ptr, n) == 0)
				return pf_errf(err, -EINVAL, "%s: ids %d and %d are both \"%.*s\"",
					       key, v->map[i], id, (int)n, t);
		}
		v->map[i] = id;
	}
	v->text_off[v->n_vocab] = off;
	return 0;
}

static int load_scores_types(struct pf_vocab *v, const struct gguf_file *f, struct pf_err *err)
{
	int r;
	const struct gguf_array *sc = get_array(f, "tokenizer.ggml.scores", false, is_num_type,
						"numbers", err, &r);
	if (r)
		return r;
	const struct gguf_array *ty = get_array(f, "tokenizer.ggml.token_type", false,
						is_int_type, "integers", err, &r);
	if (r)
		return r;
	if (sc && sc->n != (uint64_t)v->n_vocab)
		return pf_errf(err, -EINVAL, "tokenizer.ggml.scores has %llu entries, tokens %d",
			       (unsigned long long)sc->n, v->n_vocab);
	if (ty && ty->n != (uint64_t)v->n_vocab)
		return pf_errf(err, -EINVAL,
			       "tokenizer.ggml.token_type has %llu entries, tokens %d",
			       (unsigned long long)ty->n, v->n_vocab);
	v->scores = malloc((size_t)v->n_vocab * sizeof(*v->scores));
	v->types = malloc((size_t)v->n_vocab);
	if (!v->scores || !v->types)
		return pf_errf(err, -ENOMEM, "out of memory for token scores");
	for (int32_t id = 0; id < v->n_vocab; id++) {
		v->scores[id] = sc ? (float)gguf_arr_float(sc, (uint64_t)id) : 0.0f;
		int64_t t = ty ? gguf_arr_int(ty, (uint64_t)id) : PF_TOK_NORMAL;
		if (t < PF_TOK_UNDEFINED || t > PF_TOK_BYTE)
			return pf_errf(err, -EINVAL, "tokenizer.ggml.token_type[%d] = %lld is not a "
				       "token type (0-6)", id, (long long)t);
		v->types[id] = (uint8_t)t;
	}
	return 0;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* GPT-2's byte-level alphabet: printable Latin-1 bytes stand for
 * themselves, the others for U+0100 onwards in byte order. */
static bool byte_is_printable(unsigned b)
{
	return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

#define N_BYTE_CPS 324  /* 256 + the 68 non-printable bytes */

static void byte_level_maps(uint32_t fwd[256], int16_t inv[N_BYTE_CPS])
{
	uint32_t next = 256;
	for (unsigned i = 0; i < N_BYTE_CPS; i++)
		inv[i] = -1;
	for (unsigned b = 0; b < 256; b++) {
		fwd[b] = byte_is_printable(b) ? b : next++;
		inv[fwd[b]] = (int16_t)b;
	}
}

/* Decoded bytes of every token, so decoding is a lookup. */
static int build_pieces(struct pf_vocab *v, struct pf_err *err)
{
	uint32_t fwd[256];
	int16_t inv[N_BYTE_CPS];
	byte_level_maps(fwd, inv);
	uint32_t total = v->text_off[v->n_vocab];
	v->piece = malloc(total ? total : 1);
	v->piece_off = malloc(((size_t)v->n_vocab + 1) * sizeof(*v->piece_off));
	if (!v->piece || !v->piece_off)
		return pf_errf(err, -ENOMEM, "out of memory for token pieces");
	uint32_t o = 0;
	for (int32_t id = 0; id < v->n_vocab; id++) {
		size_t n;
		const char *t = pf_tok_text(v, id, &n);
		uint8_t type = v->types[id];
		v->piece_off[id] = o;
		if (type == PF_TOK_UNDEFINED || type == PF_TOK_UNUSED)
			continue;
		if (type != PF_TOK_NORMAL && type != PF_TOK_BYTE) {
			memcpy(v->piece + o, t, n);
			o += (uint32_t)n;
		} else if (v->kind == PF_VOCAB_SPM && type == PF_TOK_BYTE) {
			int hi = n == 6 ? hex_digit(t[3]) : -1, lo = n == 6 ? hex_digit(t[4]) : -1;
			if (hi < 0 || lo < 0 || memcmp(t, "<0x", 3) != 0 || t[5] != '>')
				return pf_errf(err, -EINVAL, "byte token %d is \"%.*s\", not <0xXX>", id,
					       (int)n, t);
			v->piece[o++] = (char)(hi << 4 | lo);
		} else if (v->kind == PF_VOCAB_SPM) {
			for (size_t i = 0; i < n; i++) {
				if (i + 3 <= n && memcmp(t + i, "\xE2\x96\x81", 3) == 0) {
					v->piece[o++] = ' ';
					i += 2;
				} else {
					v->piece[o++] = t[i];
				}
			}
		} else {
			for (size_t i = 0; i < n;) {
				uint32_t cp;
				size_t k = pf_utf8_decode(t + i, n - i, &cp);
				/* A character outside the byte alphabet is kept as it is. */
				if (cp < N_BYTE_CPS && inv[cp] >= 0) {
					v->piece[o++] = (char)inv[cp];
				} else {
					memcpy(v->piece + o, t + i, k);
					o += (uint32_t)k;
				}
				i += k;
			}
		}
	}
	v->piece_off[v->n_vocab] = o;
	return 0;
}

static void find_byte_tokens(struct pf_vocab *v)
{
	static const char hex[] = "0123456789ABCDEF";
	for (unsigned b = 0; b < 256; b++) {
		char name[6] = { '<', '0', 'x', hex[b >> 4], hex[b & 15], '>' };
		char raw = (char)b;
		int32_t id = pf_vocab_find(v, name, sizeof(name));
		v->byte_tok[b] = id >= 0 ? id : pf_vocab_find(v, &raw, 1);
	}
}

/* Merge products that are not tokens, numbered from n_vocab on. Needed only
 * while the merge table is built. */
struct extra_syms {
	char *text;
	size_t len, cap;
	uint32_t *off;  /* n + 1 entries */
	uint32_t n, cap_n;
	int32_t *map;   /* index into off, -1 empty */
	uint32_t mask;
};

static void extra_free(struct extra_syms *x)
{
	free(x->text);
	free(x->off);
	free(x->map);
}

/* Symbol id of s, creating a merge product id when it is no token. */
static int32_t symbol_id(struct pf_vocab *v, struct extra_syms *x, const char *s, size_t len)
{
	int32_t id = pf_vocab_find(v, s, len);
	if (id >= 0)
		return id;
	uint32_t i = (uint32_t)pf_hash_bytes(s, len) & x->mask;
	for (; x->map[i] >= 0; i = (i + 1) & x->mask) {
		uint32_t k = (uint32_t)x->map[i];
		if (x->off[k + 1] - x->off[k] == len && memcmp(x->text + x->off[k], s, len) == 0)
			return v->n_vocab + (int32_t)k;
	}
	if (x->len + len > x->cap) {
		size_t cap = (x->cap + len) * 2;
		char *p = realloc(x->text, cap);
		if (!p)
			return -1;
		x->text = p;
		x->cap = cap;
	}
	if (x->n + 2 > x->cap_n) {
		uint32_t cap = x->cap_n * 2 + 256;
		uint32_t *p = realloc(x->off, cap * sizeof(*p));
		if (!p)
			return -1;
		x->off = p;
		x->cap_n = cap;
	}
	memcpy(x->text + x->len, s, len);
	x->off[x->n] = (uint32_t)x->len;
	x->len += len;
	x->off[x->n + 1] = (uint32_t)x->len;
	x->map[i] = (int32_t)x->n;
	return v->n_vocab + (int32_t)x->n++;
}

static int load_merges(struct pf_vocab *v, const struct gguf_array *mg, struct pf_err *err)
{
	const char *key = "tokenizer.ggml.merges";
	if (mg->n > (1u << 26))
		return pf_errf(err, -EINVAL, "%s has %llu entries", key, (unsigned long long)mg->n);
	uint32_t fwd[256];
	int16_t inv[N_BYTE_CPS];
	byte_level_maps(fwd, inv);
	struct extra_syms x = { 0 };
	/* Each merge adds at most three new strings; the table never fills. */
	x.mask = table_size(3 * mg->n + 256) - 1;
	x.map = malloc(((size_t)x.mask + 1) * sizeof(*x.map));
	v->merge_mask = table_size(mg->n) - 1;
	v->merges = malloc(((size_t)v->merge_mask + 1) * sizeof(*v->merges));
	size_t max_len = 8;
	for (uint64_t i = 0; i < mg->n; i++)
		max_len = mg->strs[i].len > max_len ? mg->strs[i].len : max_len;
	char *joined = malloc(max_len);
	int r = 0;
	if (!x.map || !v->merges || !joined) {
		r = pf_errf(err, -ENOMEM, "out of memory for %llu merges", (unsigned long long)mg->n);
		goto out;
	}
	memset(x.map, 0xFF, ((size_t)x.mask + 1) * sizeof(*x.map));
	for (uint32_t i = 0; i <= v->merge_mask; i++)
		v->merges[i].key = UINT64_MAX;
	for (unsigned b = 0; b < 256; b++) {
		char ch[4];
		size_t n = pf_utf8_encode(fwd[b], ch);
		if ((v->byte_tok[b] = symbol_id(v, &x, ch, n)) < 0)
			goto oom;
	}
	for (uint64_t i = 0; i < mg->n; i++) {
		struct gguf_str s = mg->strs[i];
		const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
		if (!sp || sp == s.ptr + s.len - 1 || !pf_utf8_valid(s.ptr, s.len)) {
			r = pf_errf(err, -EINVAL, "%s[%llu] = \"%.*s\" is not two strings joined by a "
				    "space", key, (unsigned long long)i, (int)(s.len > 64 ? 64 : s.len),
				    s.ptr);
			goto out;
		}
		size_t ln = (size_t)(sp - s.ptr), rn = s.len - ln - 1;
		memcpy(joined, s.ptr, ln);
		memcpy(joined + ln, sp + 1, rn);
		int32_t l = symbol_id(v, &x, s.ptr, ln);
		int32_t rt = l < 0 ? -1 : symbol_id(v, &x, sp + 1, rn);
		int32_t res = rt < 0 ? -1 : symbol_id(v, &x, joined, ln + rn);
		if (res < 0)
			goto oom;
		uint64_t k = (uint64_t)(uint32_t)l << 32 | (uint32_t)rt;
		uint32_t j = (uint32_t)hash_pair(k) & v->merge_mask;
		while (v->merges[j].key != UINT64_MAX && v->merges[j].key != k)
			j = (j + 1) & v->merge_mask;
		/* A repeated pair keeps its first (best) rank, as in llama.cpp. */
		if (v->merges[j].key == UINT64_MAX)
			v->merges[j] = (struct pf_merge){ k, (int32_t)i, res };
	}
	v->n_symbols = v->n_vocab + (int32_t)x.n;
	goto out;
oom:
	r = pf_errf(err, -ENOMEM, "out of memory for %llu merges", (unsigned long long)mg->n);
out:
	free(joined);
	extra_free(&x);
	return r;
}

static int cmp_special(const void *a, const void *b, void *arg)
{
	const struct pf_vocab *v = arg;
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	uint32_t lx = v->text_off[x + 1] - v->text_off[x], ly = v->text_off[y + 1] - v->text_off[y];
	if (lx != ly)
		return lx > ly ? -1 : 1;
	return x < y ? -1 : x > y;
}

static bool is_special_type(uint8_t t)
{
	return t == PF_TOK_CONTROL || t == PF_TOK_USER_DEFINED || t == PF_TOK_UNKNOWN;
}

static int index_special(struct pf_vocab *v, struct pf_err *err)
{
	uint32_t n = 0;
	for (int32_t id = 0; id < v->n_vocab; id++)
		n += is_special_type(v->types[id]) && v->text_off[id + 1] > v->text_off[id];
	if (!n)
		return 0;
	v->special = malloc(n * sizeof(*v->special));
	v->groups = calloc(n, sizeof(*v->groups));
	if (!v->special || !v->groups)
		return pf_errf(err, -ENOMEM, "out of memory for special tokens");
	for (int32_t id = 0; id < v->n_vocab; id++) {
		if (is_special_type(v->types[id]) && v->text_off[id + 1] > v->text_off[id])
			v->special[v->n_special++] = id;
	}
	qsort_r(v->special, n, sizeof(*v->special), cmp_special, v);
	for (uint32_t i = 0; i < n; i++) {
		size_t len;
		const char *t = pf_tok_text(v, v->special[i], &len);
		struct pf_special_group *g = &v->groups[v->n_groups ? v->n_groups - 1 : 0];
		if (!v->n_groups || g->len != len) {
			g = &v->groups[v->n_groups++];
			g->len = len;
			g->first = i;
		}
		g->n++;
		g->has_user_defined |= v->types[v->special[i]] == PF_TOK_USER_DEFINED;
		g->first_byte[(unsigned char)t[0] >> 3] |= (uint8_t)(1u << (t[0] & 7));
	}
	return 0;
}

static void add_eog(struct pf_vocab *v, int32_t id)
{
	if (id < 0 || v->n_eog == (int)(sizeof(v->eog) / sizeof(v->eog[0])))
		return;
	for (int i = 0; i < v->n_eog; i++) {
		if (v->eog[i] == id)
			return;
	}
	v->eog[v->n_eog++] = id;
}

static int load_special_ids(struct pf_vocab *v, const struct gguf_file *f, struct pf_err *err)
{
	bool spm = v->kind == PF_VOCAB_SPM && v->n_vocab > 2;
	v->bos = spm ? 1 : -1;  /* llama.cpp's defaults for SentencePiece */
	v->eos = spm ? 2 : -1;
	v->unk = spm ? 0 : -1;
	v->eot = v->pad = -1;
	int r;
	if ((r = get_id(f, v, "tokenizer.ggml.bos_token_id", &v->bos, err)) ||
	    (r = get_id(f, v, "tokenizer.ggml.eos_token_id", &v->eos, err)) ||
	    (r = get_id(f, v, "tokenizer.ggml.eot_token_id", &v->eot, err)) ||
	    (r = get_id(f, v, "tokenizer.ggml.unknown_token_id", &v->unk, err)) ||
	    (r = get_id(f, v, "tokenizer.ggml.padding_token_id", &v->pad, err)))
		return r;
	bool explicit_bos = gguf_find(f, "tokenizer.ggml.add_bos_token") != NULL;
	bool add_eos;  /* checked only: pf_tokenize has no way to ask for EOS */
	v->add_bos = v->kind == PF_VOCAB_SPM;
	v->add_space_prefix = v->kind == PF_VOCAB_SPM;
	if ((r = get_bool(f, "tokenizer.ggml.add_bos_token", &v->add_bos, err)) ||
	    (r = get_bool(f, "tokenizer.ggml.add_eos_token", &add_eos, err)) ||
	    (r = get_bool(f, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err)))
		return r;
	if (v->add_bos && v->bos < 0) {
		if (explicit_bos)
			return pf_errf(err, -EINVAL, "tokenizer.ggml.add_bos_token is set but the "
				       "vocab has no BOS token");
		v->add_bos = false;
	}
	for (size_t i = 0; i < sizeof(eot_texts) / sizeof(eot_texts[0]); i++) {
		int32_t id = pf_vocab_find(v, eot_texts[i], strlen(eot_texts[i]));
		if (id < 0 || v->types[id] != PF_TOK_CONTROL)
			continue;
		if (v->eot < 0)
			v->eot = id;
		add_eog(v, id);
	}
	add_eog(v, v->eos);
	add_eog(v, v->eot);
	return 0;
}

static int load_kind(struct pf_vocab *v, const struct gguf_file *f, struct pf_err *err)
{
	const char *key = "tokenizer.ggml.model";
	const struct gguf_kv *kv = gguf_find(f, key);
	struct gguf_str s;
	if (!kv)
		return pf_errf(err, -EINVAL, "%s missing", key);
	if (!gguf_get_str(f, key, &s))
		return pf_errf(err, -EINVAL, "%s must be a string, found %s", key,
			       gguf_type_name(kv->type));
	if (gguf_str_eq(s, "llama"))
		v->kind = PF_VOCAB_SPM;
	else if (gguf_str_eq(s, "gpt2"))
		v->kind = PF_VOCAB_BPE;
	else
		return pf_errf(err, -EINVAL, "%s \"%.*s\" is not supported (only \"llama\" and "
			       "\"gpt2\")", key, (int)(s.len > 64 ? 64 : s.len), s.ptr);

	key = "tokenizer.ggml.pre";
	kv = gguf_find(f, key);
	v->pre = (struct pf_pretok_info){ PF_PRETOK_DEFAULT, false };
	if (kv && !gguf_get_str(f, key, &s))
		return pf_errf(err, -EINVAL, "%s must be a string, found %s", key,
			       gguf_type_name(kv->type));
	/* llama.cpp refuses names it does not know; we split those like GPT-2,
	 * the pattern most BPE vocabularies descend from, and say nothing. */
	if (kv && !pf_pretok_lookup(s.ptr, s.len, &v->pre))
		v->pre = (struct pf_pretok_info){ PF_PRETOK_GPT2, false };
	return 0;
}

int pf_vocab_load(struct pf_vocab **out, const struct gguf_file *f, struct pf_err *err)
{
	*out = NULL;
	struct pf_vocab *v = calloc(1, sizeof(*v));
	if (!v)
		return pf_errf(err, -ENOMEM, "out of memory for the vocab");
	int r;
	const struct gguf_array *toks, *mg = NULL;
	if ((r = load_kind(v, f, err)))
		goto fail;
	toks = get_array(f, "tokenizer.ggml.tokens", true, is_str_type, "strings", err, &r);
	if (r || (r = load_tokens(v, toks, err)) || (r = load_scores_types(v, f, err)))
		goto fail;
	if (v->kind == PF_VOCAB_BPE) {
		mg = get_array(f, "tokenizer.ggml.merges", true, is_str_type, "strings", err, &r);
		if (r || (r = load_merges(v, mg, err)))
			goto fail;
	} else {
		find_byte_tokens(v);
	}
	if ((r = build_pieces(v, err)) || (r = index_special(v, err)) ||
	    (r = load_special_ids(v, f, err)))
		goto fail;
	*out = v;
	return 0;
fail:
	pf_vocab_free(v);
	return pf_err_prefix(err, r, "%s: vocab", f->path[0] ? f->path : "gguf");
}
