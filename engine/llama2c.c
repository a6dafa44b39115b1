#include "llama2c.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_writer.h"
#include "mapfile.h"
#include "quant.h"

/* llama2.c's export.py --version 1/2 files start with this magic; only the
 * legacy (version 0) layout is described by the bare 7-int header. */
#define LLAMA2C_MAGIC 0x616b3432u
#define HEADER_BYTES 28

/* llama.cpp's tokenizer types. */
enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_BYTE = 6 };

/* Weight groups in checkpoint order. */
enum seg { EMB, RMS_ATT, WQ, WK, WV, WO, RMS_FFN, W1, W2, W3, RMS_FINAL, FREQ, WCLS, N_SEG };

static const char *const seg_name[N_SEG] = {
	"token_embedding_table", "rms_att_weight", "wq", "wk", "wv", "wo", "rms_ffn_weight",
	"w1", "w2", "w3", "rms_final_weight", "freq_cis", "wcls",
};

struct checkpoint {
	int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
	bool shared;     /* the classifier is the embedding table */
	uint64_t kv_dim, head_size;
	uint64_t off[N_SEG + 1];  /* start of each group, in floats after the header */
	const float *w;           /* first weight */
};

/* One output tensor: where its floats are and what shape to give them. */
struct item {
	char name[64];
	const float *src;
	uint32_t n_dims;
	uint64_t ne[2];
	enum pf_dtype type;
};

static int32_t load_i32(const uint8_t *p)
{
	uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	int32_t v;
	memcpy(&v, &u, 4);
	return v;
}

static bool mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
	if (b && a > UINT64_MAX / b)
		return false;
	*out = a * b;
	return true;
}

static int parse_checkpoint(struct checkpoint *c, const struct pf_mapped *m, struct pf_err *err)
{
	if (m->size < HEADER_BYTES)
		return pf_errf(err, -EINVAL, "%s: truncated at offset %zu reading the header: need %d bytes",
			       m->path, m->size, HEADER_BYTES);
	if (memcmp(m->data, GGUF_MAGIC, 4) == 0)
		return pf_errf(err, -EINVAL, "%s: already a GGUF file, not a llama2.c checkpoint", m->path);
	if ((uint32_t)load_i32(m->data) == LLAMA2C_MAGIC)
		return pf_errf(err, -ENOTSUP, "%s: llama2.c export version %d is not supported: export with --version 0",
			       m->path, load_i32(m->data + 4));
	int32_t *fields[] = { &c->dim, &c->hidden_dim, &c->n_layers, &c->n_heads, &c->n_kv_heads,
			      &c->vocab_size, &c->seq_len };
	static const char *const names[] = { "dim", "hidden_dim", "n_layers", "n_heads",
					      "n_kv_heads", "vocab_size", "seq_len" };
	for (int i = 0; i < 7; i++) {
		*fields[i] = load_i32(m->data + 4 * i);
		/* A negative vocab_size only flags an unshared classifier. */
		bool ok = i == 5 ? *fields[i] != 0 && *fields[i] != INT32_MIN : *fields[i] > 0;
		if (!ok)
			return pf_errf(err, -EINVAL, "%s: header field %s at offset %d is %d",
				       m->path, names[i], 4 * i, *fields[i]);
	}
	c->shared = c->vocab_size > 0;
	if (c->vocab_size < 0)
		c->vocab_size = -c->vocab_size;
	if (c->dim % c->n_heads || (c->dim / c->n_heads) % 2 || c->n_heads % c->n_kv_heads)
		return pf_errf(err, -EINVAL,
			       "%s: dim %d, n_heads %d, n_kv_heads %d: the head size must be even and the heads a multiple of the KV heads",
			       m->path, c->dim, c->n_heads, c->n_kv_heads);
	if (c->vocab_size < 3)
		return pf_errf(err, -EINVAL, "%s: vocab_size %d leaves no room for <unk>, <s> and </s>",
			       m->path, c->vocab_size);
	c->head_size = (uint64_t)c->dim / (uint64_t)c->n_heads;
	c->kv_dim = c->head_size * (uint64_t)c->n_kv_heads;
	uint64_t dim = (uint64_t)c->dim, hid = (uint64_t)c->hidden_dim, L = (uint64_t)c->n_layers;
	uint64_t V = (uint64_t)c->vocab_size;
	/* Each group is rows * cols floats repeated `reps` times. */
	const uint64_t shape[N_SEG][3] = {
		[EMB] = { 1, V, dim },         [RMS_ATT] = { L, 1, dim },
		[WQ] = { L, dim, dim },        [WK] = { L, c->kv_dim, dim },
		[WV] = { L, c->kv_dim, dim },  [WO] = { L, dim, dim },
		[RMS_FFN] = { L, 1, dim },     [W1] = { L, hid, dim },
		[W2] = { L, dim, hid },        [W3] = { L, hid, dim },
		[RMS_FINAL] = { 1, 1, dim },   [FREQ] = { 1, (uint64_t)c->seq_len, c->head_size },
		[WCLS] = { c->shared ? 0 : 1, V, dim },
	};
	uint64_t total = 0;
	for (int s = 0; s < N_SEG; s++) {
		uint64_t n;
		c->off[s] = total;
		if (!mul_ok(shape[s][0], shape[s][1], &n) || !mul_ok(n, shape[s][2], &n) ||
		    n > (UINT64_MAX - HEADER_BYTES) / 4 - total)
			return pf_errf(err, -EINVAL, "%s: header (dim %d, hidden_dim %d, n_layers %d) describes more than 2^64 bytes",
				       m->path, c->dim, c->hidden_dim, c->n_layers);
		total += n;
	}
	c->off[N_SEG] = total;
	uint64_t expect = HEADER_BYTES + 4 * total;
	if (m->size < expect) {
		int s = 0;
		while (HEADER_BYTES + 4 * c->off[s + 1] <= m->size)
			s++;
		return pf_errf(err, -EINVAL,
			       "%s: truncated at offset %zu inside %s: the header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d) needs %llu bytes",
			       m->path, m->size, seg_name[s], c->dim, c->hidden_dim, c->n_layers,
			       c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len,
			       (unsigned long long)expect);
	}
	if (m->size > expect)
		return pf_errf(err, -EINVAL,
			       "%s: %llu unexpected bytes after offset %llu, where the weights the header describes end",
			       m->path, (unsigned long long)(m->size - expect), (unsigned long long)expect);
	/* The header is 7 ints, so the floats after it are 4-byte aligned. */
	c->w = (const float *)(const void *)(m->data + HEADER_BYTES);
	return 0;
}

struct vocab {
	char **text;     /* n pointers into buf */
	char *buf;
	float *score;
	int32_t *type;
	uint32_t n;
};

static void vocab_free(struct vocab *v)
{
	free(v->text);
	free(v->buf);
	free(v->score);
	free(v->type);
}

static bool is_byte_token(const uint8_t *s, int32_t len)
{
	return len == 6 && memcmp(s, "<0x", 3) == 0 && isxdigit(s[3]) && isxdigit(s[4]) &&
	       s[5] == '>';
}

/* Reads n tokens the way llama.cpp's converter does: the first three get
 * their canonical names, spaces become U+2581 as SentencePiece writes them,
 * and each token is typed from its text. */
static int parse_tokenizer(struct vocab *v, const struct pf_mapped *m, uint32_t n, struct pf_err *err)
{
	if (m->size < 4)
		return pf_errf(err, -EINVAL, "%s: truncated at offset 0 reading max_token_length",
			       m->path);
	v->n = n;
	v->text = calloc(n, sizeof(*v->text));
	v->score = calloc(n, sizeof(*v->score));
	v->type = calloc(n, sizeof(*v->type));
	/* A space grows into 3 bytes; every token also gets a NUL. */
	v->buf = m->size < SIZE_MAX / 4 - n ? malloc(3 * m->size + n + 16) : NULL;
	if (!v->text || !v->score || !v->type || !v->buf)
		return pf_errf(err, -ENOMEM, "%s: out of memory for %u tokens", m->path, n);
	size_t pos = 4;
	char *out = v->buf;
	for (uint32_t i = 0; i < n; i++) {
		if (m->size - pos < 8)
			return pf_errf(err, -EINVAL,
				       "%s: truncated at offset %zu reading token %u of %u (the checkpoint's vocab_size)",
				       m->path, pos, i, n);
		uint32_t bits = (uint32_t)load_i32(m->data + pos);
		memcpy(&v->score[i], &bits, 4);
		int32_t len = load_i32(m->data + pos + 4);
		const uint8_t *s = m->data + pos + 8;
		if (len < 0 || (size_t)len > m->size - pos - 8)
			return pf_errf(err, -EINVAL,
				       "%s: token %u at offset %zu has length %d but %zu bytes remain",
				       m->path, i, pos, len, m->size - pos - 8);
		if (memchr(s, 0, (size_t)len))
			return pf_errf(err, -EINVAL, "%s: token %u at offset %zu contains a NUL byte",
				       m->path, i, pos);
		pos += 8 + (size_t)len;
		v->text[i] = out;
		static const char *const special[] = { "<unk>", "<s>", "</s>" };
		if (i < 3) {
			out = stpcpy(out, special[i]) + 1;
			v->type[i] = i == 0 ? TOK_UNKNOWN : TOK_CONTROL;
			continue;
		}
		v->type[i] = len == 0 ? TOK_CONTROL : is_byte_token(s, len) ? TOK_BYTE : TOK_NORMAL;
		for (int32_t k = 0; k < len; k++) {
			if (s[k] == ' ')
				out = stpcpy(out, "\xe2\x96\x81");
			else
				*out++ = (char)s[k];
		}
		*out++ = 0;
	}
	if (pos != m->size)
		return pf_errf(err, -EINVAL,
			       "%s: %zu bytes left at offset %zu after %u tokens: is it the tokenizer of this checkpoint?",
			       m->path, m->size - pos, pos, n);
	return 0;
}

static void set_metadata(struct gguf_writer *w, const struct checkpoint *c, const struct vocab *v,
			 uint32_t context_length)
{
	gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->text, v->n);
	gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", v->score, v->n);
	gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", v->type, v->n);
	gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
	gguf_writer_set_str(w, "general.architecture", "llama");
	gguf_writer_set_str(w, "general.name", "llama");
	gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
	gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
	gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
	/* "None" as llama.cpp's converter writes it (and misspells it), kept so
	 * the output matches its files byte for byte. */
	gguf_writer_set_u32(w, "tokenizer.ggml.seperator_token_id", UINT32_MAX);
	gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", UINT32_MAX);
	gguf_writer_set_u32(w, "llama.context_length", context_length ? context_length : (uint32_t)c->seq_len);
	gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)c->dim);
	gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden_dim);
	gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads);
	gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
	gguf_writer_set_u32(w, "llama.block_count", (uint32_t)c->n_layers);
	gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_size);
	gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
}

/* Lists the output tensors in llama.cpp's order: 3 + 9 per layer. */
static void plan_tensors(struct item *it, const struct checkpoint *c, enum pf_dtype mtype)
{
	uint64_t dim = (uint64_t)c->dim, hid = (uint64_t)c->hidden_dim, V = (uint64_t)c->vocab_size;
	struct item *t = it;
	*t++ = (struct item){ "token_embd.weight", c->w + c->off[EMB], 2, { dim, V }, mtype };
	*t++ = (struct item){ "output_norm.weight", c->w + c->off[RMS_FINAL], 1, { dim, 1 }, PF_F32 };
	*t++ = (struct item){ "output.weight", c->w + c->off[c->shared ? EMB : WCLS], 2, { dim, V }, mtype };
	static const struct {
		const char *name;
		enum seg seg;
		bool matrix;
	} layer[] = {
		{ "attn_q", WQ, true },     { "attn_k", WK, true },       { "attn_v", WV, true },
		{ "attn_output", WO, true }, { "attn_norm", RMS_ATT, false },
		{ "ffn_gate", W1, true },   { "ffn_down", W2, true },     { "ffn_up", W3, true },
		{ "ffn_norm", RMS_FFN, false },
	};
	for (uint64_t l = 0; l < (uint64_t)c->n_layers; l++)
		for (size_t k = 0; k < sizeof(layer) / sizeof(layer[0]); k++, t++) {
			enum seg s = layer[k].seg;
			uint64_t rows = s == WK || s == WV ? c->kv_dim : s == W1 || s == W3 ? hid : dim;
			uint64_t cols = s == W2 ? hid : dim;
			snprintf(t->name, sizeof(t->name), "blk.%llu.%s.weight", (unsigned long long)l,
				 layer[k].name);
			t->n_dims = layer[k].matrix ? 2 : 1;
			t->ne[0] = cols;
			t->ne[1] = layer[k].matrix ? rows : 1;
			t->src = c->w + c->off[s] + l * t->ne[0] * t->ne[1];
			t->type = layer[k].matrix ? mtype : PF_F32;
		}
}

static int write_item(struct gguf_writer *w, int idx, const struct item *t, struct pf_err *err)
{
	uint64_t n = t->ne[0] * t->ne[1];
	if (t->type == PF_F32)
		return gguf_writer_write_tensor_data(w, idx, t->src, n * 4, err);
	uint16_t buf[8192];
	for (uint64_t i = 0; i < n;) {
		size_t k = n - i < 8192 ? (size_t)(n - i) : 8192;
		for (size_t j = 0; j < k; j++)
			buf[j] = pf_fp32_to_fp16(t->src[i + j]);
		int r = gguf_writer_write_data(w, buf, 2 * k, err);
		if (r)
			return r;
		i += k;
	}
	return 0;
}

int pf_llama2c_convert(const char *checkpoint, const char *tokenizer, const char *out,
		       const struct pf_llama2c_opts *opts, struct pf_err *err)
{
	if (opts->type != PF_F32 && opts->type != PF_F16)
		return pf_errf(err, -EINVAL, "%s: output type must be f32 or f16", out);
	struct pf_mapped ck = { 0 }, tk = { 0 };
	struct checkpoint c = { 0 };
	struct vocab v = { 0 };
	struct item *items = NULL;
	struct gguf_writer *w = NULL;
	int r;
	if ((r = pf_map_file(&ck, checkpoint, err)) || (r = parse_checkpoint(&c, &ck, err)) ||
	    (r = pf_map_file(&tk, tokenizer, err)) ||
	    (r = parse_tokenizer(&v, &tk, (uint32_t)c.vocab_size, err)))
		goto out;
	/* The checkpoint was sized from n_layers, so this count is bounded. */
	size_t n_items = 3 + 9 * (size_t)c.n_layers;
	items = calloc(n_items, sizeof(*items));
	w = gguf_writer_new();
	if (!items || !w) {
		r = pf_errf(err, -ENOMEM, "%s: out of memory", out);
		goto out;
	}
	set_metadata(w, &c, &v, opts->context_length);
	plan_tensors(items, &c, opts->type);
	for (size_t i = 0; i < n_items; i++)
		gguf_writer_add_tensor(w, items[i].name, items[i].n_dims, items[i].ne, items[i].type);
	if ((r = gguf_writer_write_header(w, out, err)))
		goto out;
	for (size_t i = 0; i < n_items; i++)
		if ((r = write_item(w, (int)i, &items[i], err)))
			goto out;
	r = gguf_writer_finish(w, err);
out:
	gguf_writer_free(w);
	free(items);
	vocab_free(&v);
	pf_unmap_file(&tk);
	pf_unmap_file(&ck);
	return r;
}
