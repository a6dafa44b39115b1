#include "pretokenize.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

/* What a matcher sees: one piece of the text, [.., end). */
struct mctx {
	const uint32_t *cp;
	const uint8_t *fl;
	size_t end;
};

/* Returns the length of the match that starts at pos, or 0. On 0 it may
 * raise *skip (preset to 1) to how many positions are known not to match,
 * which keeps patterns like \s+$ linear on long runs. */
typedef size_t (*matcher_fn)(const struct mctx *m, size_t pos, size_t *skip);

#define MAX_STAGES 6

struct pretok_def {
	const char *names[14];
	enum pf_pretok kind;
	bool ignore_merges;
};

/* Aliases as llama.cpp groups them; the regexes are in the stage lists
 * below. */
static const struct pretok_def pretok_defs[] = {
	{ { "default" }, PF_PRETOK_DEFAULT, false },
	{ { "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en", "jina-v2-es",
	    "jina-v2-de", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais" },
	  PF_PRETOK_GPT2, false },
	{ { "llama3", "llama-v3", "llama-bpe", "falcon3" }, PF_PRETOK_LLAMA3, true },
	{ { "dbrx", "smaug-bpe" }, PF_PRETOK_LLAMA3, false },
	{ { "qwen2", "stablelm2", "megrez", "deepseek-r1-qwen" }, PF_PRETOK_QWEN2, false },
	{ { "deepseek-llm" }, PF_PRETOK_DEEPSEEK_LLM, false },
	{ { "deepseek-coder" }, PF_PRETOK_DEEPSEEK_CODER, false },
	{ { "falcon" }, PF_PRETOK_FALCON, false },
	{ { "starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b" },
	  PF_PRETOK_STARCODER, false },
};

bool pf_pretok_lookup(const char *name, size_t len, struct pf_pretok_info *out)
{
	for (size_t i = 0; i < sizeof(pretok_defs) / sizeof(pretok_defs[0]); i++) {
		for (const char *const *n = pretok_defs[i].names; *n; n++) {
			if (strlen(*n) == len && memcmp(*n, name, len) == 0) {
				out->kind = pretok_defs[i].kind;
				out->ignore_merges = pretok_defs[i].ignore_merges;
				return true;
			}
		}
	}
	return false;
}

/* ---- character classes ---- */

static bool is_ws(const struct mctx *m, size_t i)
{
	return m->fl[i] & PF_UC_WHITESPACE;
}

static bool is_nl(uint32_t c)
{
	return c == '\r' || c == '\n';
}

/* [^\s\p{L}\p{N}] */
static bool is_other(const struct mctx *m, size_t i)
{
	return !(m->fl[i] & (PF_UC_WHITESPACE | PF_UC_LETTER | PF_UC_NUMBER));
}

static size_t run_flags(const struct mctx *m, size_t i, unsigned flags)
{
	while (i < m->end && (m->fl[i] & flags))
		i++;
	return i;
}

static size_t run_other(const struct mctx *m, size_t i)
{
	while (i < m->end && is_other(m, i))
		i++;
	return i;
}

static uint32_t ascii_lower(uint32_t c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 's 't 're 've 'm 'll 'd, optionally ASCII case-insensitive. */
static size_t contraction(const struct mctx *m, size_t pos, bool icase)
{
	if (m->cp[pos] != '\'' || pos + 1 >= m->end)
		return 0;
	uint32_t a = m->cp[pos + 1], b = pos + 2 < m->end ? m->cp[pos + 2] : 0;
	if (icase) {
		a = ascii_lower(a);
		b = ascii_lower(b);
	}
	if (a == 's' || a == 't' || a == 'm' || a == 'd')
		return 2;
	if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
		return 3;
	return 0;
}

/* \s+(?!\S)|\s+ at a whitespace character: a run that a non-space follows
 * leaves its last character to prefix the next word. */
static size_t ws_run(const struct mctx *m, size_t pos)
{
	size_t e = run_flags(m, pos, PF_UC_WHITESPACE);
	if (e == m->end || e - pos == 1)
		return e - pos;
	return e - pos - 1;
}

/* ---- whole regexes ---- */

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * llama.cpp lists it without the final \s+, but a lone whitespace character
 * left unmatched becomes a piece of its own anyway, so the two agree. */
static size_t match_gpt2(const struct mctx *m, size_t pos, size_t *skip)
{
	(void)skip;
	size_t n = contraction(m, pos, false);
	if (n)
		return n;
	size_t s = pos + (m->cp[pos] == ' ' && pos + 1 < m->end);
	if (m->fl[s] & PF_UC_LETTER)
		return run_flags(m, s, PF_UC_LETTER) - pos;
	if (m->fl[s] & PF_UC_NUMBER)
		return run_flags(m, s, PF_UC_NUMBER) - pos;
	if (is_other(m, s))
		return run_other(m, s) - pos;
	return ws_run(m, pos);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max}
 * | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t match_llama3_digits(const struct mctx *m, size_t pos, size_t max_digits)
{
	size_t n = contraction(m, pos, true);
	if (n)
		return n;
	uint32_t c = m->cp[pos];
	unsigned f = m->fl[pos];
	if (f & PF_UC_LETTER)
		return run_flags(m, pos, PF_UC_LETTER) - pos;
	if (!is_nl(c) && !(f & PF_UC_NUMBER) && pos + 1 < m->end &&
	    (m->fl[pos + 1] & PF_UC_LETTER))
		return run_flags(m, pos + 1, PF_UC_LETTER) - pos;
	if (f & PF_UC_NUMBER) {
		size_t e = pos;
		while (e < m->end && e - pos < max_digits && (m->fl[e] & PF_UC_NUMBER))
			e++;
		return e - pos;
	}
	size_t s = pos + (c == ' ' && pos + 1 < m->end);
	if (is_other(m, s)) {
		size_t e = run_other(m, s);
		while (e < m->end && is_nl(m->cp[e]))
			e++;
		return e - pos;
	}
	/* Whitespace: up to the run's last newline if it has one. */
	size_t e = run_flags(m, pos, PF_UC_WHITESPACE);
	for (size_t i = e; i > pos; i--) {
		if (is_nl(m->cp[i - 1]))
			return i - pos;
	}
	return ws_run(m, pos);
}

static size_t match_llama3(const struct mctx *m, size_t pos, size_t *skip)
{
	(void)skip;
	return match_llama3_digits(m, pos, 3);
}

static size_t match_qwen2(const struct mctx *m, size_t pos, size_t *skip)
{
	(void)skip;
	return match_llama3_digits(m, pos, 1);
}

/* [\r\n] */
static size_t match_newline(const struct mctx *m, size_t pos, size_t *skip)
{
	(void)skip;
	return is_nl(m->cp[pos]);
}

/* \p{N} and \p{N}+ */
static size_t match_digit(const struct mctx *m, size_t pos, size_t *skip)
{
	(void)skip;
	return (m->fl[pos] & PF_UC_NUMBER) != 0;
}

static size_t match_digits(const struct mctx *m, size_t pos, size_t *skip)
{
	(void)skip;
	return run_flags(m, pos, PF_UC_NUMBER) - pos;
}

/* [0-9][0-9][0-9] */
static size_t match_ascii_3digits(const struct mctx *m, size_t pos, size_t *skip)
{
	(void)skip;
	if (m->end - pos < 3)
		return 0;
	for (size_t i = pos; i < pos + 3; i++) {
		if (m->cp[i] < '0' || m->cp[i] > '9')
			return 0;
	}
	return 3;
}

/* [\p{P}\$\+<=>\^~\|`]+ (falcon) and the same without the backtick
 * (llama.cpp's default). */
static size_t punct_run(const struct mctx *m, size_t pos, const char *extra)
{
	size_t e = pos;
	while (e < m->end && ((m->fl[e] & PF_UC_PUNCT) ||
			      (m->cp[e] && m->cp[e] < 0x80 && strchr(extra, (int)m->cp[e]))))
		e++;
	return e - pos;
}

static size_t match_punct_falcon(const struct mctx *m, size_t pos, size_t *skip)
{
	(void)skip;
	return punct_run(m, pos, "$+<=>^~|`");
}

static size_t match_punct_default(const struct mctx *m, size_t pos, size_t *skip)
{
	(void)skip;
	return punct_run(m, pos, "$+<=>^~|");
}

/* \s?\p{L}+ and \s?\p{P}+ (deepseek-coder) */
static size_t ws_opt_flag_run(const struct mctx *m, size_t pos, unsigned flag)
{
	size_t s = pos;
	if (is_ws(m, pos) && pos + 1 < m->end && (m->fl[pos + 1] & flag))
		s = pos + 1;
	return run_flags(m, s, flag) - pos;
}

static size_t match_ws_letters(const struct mctx *m, size_t pos, size_t *skip)
{
	(void)skip;
	return ws_opt_flag_run(m, pos, PF_UC_LETTER);
}

static size_t match_ws_punct(const struct mctx *m, size_t pos, size_t *skip)
{
	(void)skip;
	return ws_opt_flag_run(m, pos, PF_UC_PUNCT);
}

/* The deepseek regexes spell out explicit code-point classes. llama.cpp
 * matches those with std::wregex after replacing every non-ASCII whitespace
 * character by U+000B, so such characters never fall inside a class even
 * when their code point does (U+3000 in the punctuation class, say). */
struct cp_range {
	uint32_t lo, hi;
};

/* The cased letters of DeepSeek LLM's pre-tokenizer, ranges merged. */
static const struct cp_range ds_letters[] = {
	{ 0x0041, 0x005A }, { 0x0061, 0x007A }, { 0x00B5, 0x00B5 }, { 0x00C0, 0x00D6 },
	{ 0x00D8, 0x00F6 }, { 0x00F8, 0x01BA }, { 0x01BC, 0x01BF }, { 0x01C4, 0x0293 },
	{ 0x0295, 0x02AF }, { 0x0370, 0x0373 }, { 0x0376, 0x0377 }, { 0x037B, 0x037D },
	{ 0x037F, 0x037F }, { 0x0386, 0x0386 }, { 0x0388, 0x038A }, { 0x038C, 0x038C },
	{ 0x038E, 0x03A1 }, { 0x03A3, 0x03F5 }, { 0x03F7, 0x0481 }, { 0x048A, 0x052F },
	{ 0x0531, 0x0556 }, { 0x10A0, 0x10C5 }, { 0x13A0, 0x13F5 }, { 0x13F8, 0x13FD },
	{ 0x1C90, 0x1CBA }, { 0x1CBD, 0x1CBF }, { 0x1D00, 0x1D2B }, { 0x1D6B, 0x1D77 },
	{ 0x1D79, 0x1D9A }, { 0x1E00, 0x1F15 }, { 0x1F18, 0x1F1D }, { 0x1F20, 0x1F45 },
	{ 0x1F48, 0x1F4D }, { 0x1F50, 0x1F57 }, { 0x1F59, 0x1F59 }, { 0x1F5B, 0x1F5B },
	{ 0x1F5D, 0x1F5D }, { 0x1F5F, 0x1F7D }, { 0x1F80, 0x1FB4 }, { 0x1FB6, 0x1FBC },
	{ 0x1FBE, 0x1FBE }, { 0x1FC2, 0x1FC4 }, { 0x1FC6, 0x1FCC }, { 0x1FD0, 0x1FD3 },
	{ 0x1FD6, 0x1FDB }, { 0x1FE0, 0x1FEC }, { 0x1FF2, 0x1FF4 }, { 0x1FF6, 0x1FFC },
	{ 0x2102, 0x2102 }, { 0x2107, 0x2107 }, { 0x210A, 0x2113 }, { 0x2115, 0x2115 },
	{ 0x2119, 0x211D }, { 0x2124, 0x2124 }, { 0x2126, 0x2126 }, { 0x2128, 0x2128 },
	{ 0x212A, 0x212D }, { 0x212F, 0x2134 }, { 0x2139, 0x2139 }, { 0x213C, 0x213F },
	{ 0x2145, 0x2149 }, { 0x214E, 0x214E }, { 0x2183, 0x2184 }, { 0x2C00, 0x2C7B },
	{ 0x2C7E, 0x2CE4 }, { 0x2CEB, 0x2CEE }, { 0x2CF2, 0x2CF3 }, { 0xA640, 0xA66D },
	{ 0xA680, 0xA69B }, { 0xA722, 0xA76F }, { 0xA771, 0xA787 }, { 0xA78B, 0xA78E },
	{ 0xAB70, 0xABBF }, { 0xFB00, 0xFB06 }, { 0xFB13, 0xFB17 }, { 0xFF21, 0xFF3A },
	{ 0xFF41, 0xFF5A }, { 0x10400, 0x1044F }, { 0x104B0, 0x104D3 }, { 0x104D8, 0x104FB },
	{ 0x10C80, 0x10CB2 }, { 0x10CC0, 0x10CF2 }, { 0x118A0, 0x118DF }, { 0x1E900, 0x1E943 },
};

/* [!-/:-~！-／：-～‘-‟　-。] */
static const struct cp_range ds_punct[] = {
	{ 0x0021, 0x002F }, { 0x003A, 0x007E }, { 0x2018, 0x201F },
	{ 0x3000, 0x3002 }, { 0xFF01, 0xFF0F }, { 0xFF1A, 0xFF5E },
};

/* [一-龥ࠀ-一가-퟿] */
static const struct cp_range ds_cjk[] = {
	{ 0x0800, 0x9FA5 }, { 0xAC00, 0xD7FF },
};

static bool in_ranges(const struct mctx *m, size_t i, const struct cp_range *r, size_t n)
{
	uint32_t c = m->cp[i];
	if (c > 0x7F && is_ws(m, i))
		return false;
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c < r[mid].lo)
			hi = mid;
		else if (c > r[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

#define N_RANGES(a) (sizeof(a) / sizeof((a)[0]))

/* \s?[class]+ */
static size_t ws_opt_class_run(const struct mctx *m, size_t pos, const struct cp_range *r,
			       size_t n)
{
	size_t s = pos;
	if (is_ws(m, pos) && pos + 1 < m->end && in_ranges(m, pos + 1, r, n))
		s = pos + 1;
	while (s < m->end && in_ranges(m, s, r, n))
		s++;
	return s - pos;
}

static size_t match_ds_letters(const struct mctx *m, size_t pos, size_t *skip)
{
	(void)skip;
	return ws_opt_class_run(m, pos, ds_letters, N_RANGES(ds_letters));
}

static size_t match_ds_punct(const struct mctx *m, size_t pos, size_t *skip)
{
	(void)skip;
	return ws_opt_class_run(m, pos, ds_punct, N_RANGES(ds_punct));
}

static size_t match_ds_cjk(const struct mctx *m, size_t pos, size_t *skip)
{
	(void)skip;
	size_t e = pos;
	while (e < m->end && in_ranges(m, e, ds_cjk, N_RANGES(ds_cjk)))
		e++;
	return e - pos;
}

/* \s+$ : only the whitespace that ends the piece. */
static size_t match_trailing_ws(const struct mctx *m, size_t pos, size_t *skip)
{
	if (!is_ws(m, pos))
		return 0;
	size_t e = run_flags(m, pos, PF_UC_WHITESPACE);
	if (e == m->end)
		return e - pos;
	*skip = e - pos;
	return 0;
}

static const matcher_fn stages[][MAX_STAGES] = {
	[PF_PRETOK_DEFAULT] = { match_punct_default, match_gpt2, match_digits,
				match_ascii_3digits },
	[PF_PRETOK_GPT2] = { match_gpt2 },
	[PF_PRETOK_LLAMA3] = { match_llama3 },
	[PF_PRETOK_QWEN2] = { match_qwen2 },
	[PF_PRETOK_DEEPSEEK_LLM] = { match_newline, match_ds_letters, match_ds_punct,
				     match_trailing_ws, match_ds_cjk, match_digits },
	[PF_PRETOK_DEEPSEEK_CODER] = { match_newline, match_ws_letters, match_ws_punct,
				       match_ds_cjk, match_digit },
	[PF_PRETOK_FALCON] = { match_punct_falcon, match_gpt2, match_ascii_3digits },
	[PF_PRETOK_STARCODER] = { match_digit, match_gpt2 },
};

/* ---- driver ---- */

int pf_text_decode(struct pf_text *t, const char *s, size_t len)
{
	memset(t, 0, sizeof(*t));
	t->cp = malloc((len ? len : 1) * sizeof(*t->cp));
	t->flags = malloc(len ? len : 1);
	t->off = malloc((len + 1) * sizeof(*t->off));
	if (!t->cp || !t->flags || !t->off) {
		pf_text_free(t);
		return -ENOMEM;
	}
	size_t i = 0, n = 0;
	while (i < len) {
		uint32_t c;
		size_t k = pf_utf8_decode(s + i, len - i, &c);
		t->cp[n] = c;
		t->flags[n] = (uint8_t)pf_unicode_flags(c);
		t->off[n++] = i;
		i += k;
	}
	t->off[n] = len;
	t->n = n;
	return 0;
}

void pf_text_free(struct pf_text *t)
{
	free(t->cp);
	free(t->flags);
	free(t->off);
	memset(t, 0, sizeof(*t));
}

void pf_spans_free(struct pf_spans *s)
{
	free(s->end);
	memset(s, 0, sizeof(*s));
}

static int spans_push(struct pf_spans *s, size_t end)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		size_t *p = realloc(s->end, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		s->end = p;
		s->cap = cap;
	}
	s->end[s->n++] = end;
	return 0;
}

/* Regex-search semantics: the leftmost match wins, unmatched stretches
 * between matches are pieces too. */
static int split_stage(matcher_fn match, const struct pf_text *t, const struct pf_spans *in,
		       struct pf_spans *out)
{
	out->n = 0;
	size_t start = 0;
	for (size_t k = 0; k < in->n; k++) {
		struct mctx m = { t->cp, t->flags, in->end[k] };
		size_t gap = start, pos = start;
		while (pos < m.end) {
			size_t skip = 1;
			size_t len = match(&m, pos, &skip);
			if (!len) {
				pos += skip;
				continue;
			}
			if (gap < pos && spans_push(out, pos))
				return -ENOMEM;
			pos += len;
			if (spans_push(out, pos))
				return -ENOMEM;
			gap = pos;
		}
		if (gap < m.end && spans_push(out, m.end))
			return -ENOMEM;
		start = m.end;
	}
	return 0;
}

int pf_pretokenize(enum pf_pretok kind, const struct pf_text *t, struct pf_spans *out)
{
	out->n = 0;
	if (t->n == 0)
		return 0;
	if (spans_push(out, t->n))
		return -ENOMEM;
	struct pf_spans tmp = { 0 };
	int r = 0;
	for (int s = 0; s < MAX_STAGES && stages[kind][s]; s++) {
		r = split_stage(stages[kind][s], t, out, &tmp);
		if (r)
			break;
		struct pf_spans swap = *out;
		*out = tmp;
		tmp = swap;
	}
	pf_spans_free(&tmp);
	return r;
}
