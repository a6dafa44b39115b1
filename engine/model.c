/* Loads a llama-family GGUF: reads hyperparameters from metadata, checks
 * every tensor's shape and type, and points weight views into the mapping.
 * Norm vectors are small and read on every token, so they are converted to
 * float once here; matrices stay in the file's format. */
#include "model.h"
#include "bundle_file.h"
#include "sparse.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

#define MAX_DIM 1000000  /* bound on any dimension, far above real models */

static const char *const act_names[] = {
	[PINFER_ACT_AUTO] = "auto",
	[PINFER_ACT_SILU] = "silu",
	[PINFER_ACT_RELU] = "relu",
	[PINFER_ACT_DRELU] = "drelu",
};

const char *pinfer_ffn_act_name(enum pinfer_ffn_act a)
{
	return (unsigned)a < sizeof(act_names) / sizeof(act_names[0]) ? act_names[a] : "?";
}

void pinfer_model_params_default(struct pinfer_model_params *p)
{
	memset(p, 0, sizeof(*p));
}

int pinfer_size_parse(const char *s, uint64_t *bytes)
{
	if (*s < '0' || *s > '9')
		return -EINVAL;
	uint64_t whole = 0;
	for (; *s >= '0' && *s <= '9'; s++) {
		uint64_t d = (uint64_t)(*s - '0');
		if (whole > (UINT64_MAX - d) / 10)
			return -ERANGE;
		whole = whole * 10 + d;
	}
	double frac = 0.0;
	if (*s == '.') {
		if (s[1] < '0' || s[1] > '9')
			return -EINVAL;
		double place = 0.1;
		for (s++; *s >= '0' && *s <= '9'; s++, place /= 10.0)
			frac += (*s - '0') * place;
	}
	int shift = 0;
	const char *units = "KMGT", *u = *s ? strchr(units, toupper((unsigned char)*s)) : NULL;
	if (u) {
		shift = 10 * (int)(u - units + 1);
		s++;
		if (*s && strcasecmp(s, "b") && strcasecmp(s, "ib"))
			return -EINVAL;
	} else if (*s && strcasecmp(s, "b")) {
		return -EINVAL;
	}
	if (whole > (UINT64_MAX >> shift))
		return -ERANGE;
	uint64_t b = whole << shift, f = (uint64_t)(frac * (double)(1ull << shift));
	if (b > UINT64_MAX - f)
		return -ERANGE;
	*bytes = b + f;
	return 0;
}

int pinfer_memory_budget_parse(const char *s, struct pinfer_model_params *p)
{
	uint64_t bytes = 0;
	int percent = 0;
	size_t len = strlen(s);
	if (!strcmp(s, "min")) {
		percent = PINFER_FFN_CACHE_MIN;
	} else if (len > 4 && !strcmp(s + len - 4, "%ffn")) {
		int v = 0;
		for (size_t i = 0; i < len - 4; i++) {
			if (s[i] < '0' || s[i] > '9' || v > 100)
				return -EINVAL;
			v = v * 10 + (s[i] - '0');
		}
		if (v < 1 || v > 100)
			return -EINVAL;
		percent = v;
	} else if (strcmp(s, "none") && pinfer_size_parse(s, &bytes)) {
		return -EINVAL;
	}
	p->memory_budget = bytes;
	p->ffn_cache_percent = percent;
	return 0;
}

static int get_dim(const struct gguf_file *f, const char *arch, const char *key, bool required,
		   int fallback, int *out, struct pf_err *err)
{
	char full[128];
	snprintf(full, sizeof(full), "%s.%s", arch, key);
	uint32_t v;
	if (!gguf_get_u32(f, full, &v)) {
		if (gguf_find(f, full))
			return pf_errf(err, -EINVAL, "%s: metadata %s is not an unsigned integer",
				       f->path, full);
		if (required)
			return pf_errf(err, -EINVAL, "%s: metadata %s is missing", f->path, full);
		*out = fallback;
		return 0;
	}
	if (v == 0 || v > MAX_DIM)
		return pf_errf(err, -EINVAL, "%s: metadata %s = %u is out of range 1..%d", f->path,
			       full, v, MAX_DIM);
	*out = (int)v;
	return 0;
}

/* The activation can be named explicitly (pinfer.ffn_act, written by our
 * tools) or recognised from the model name, because the ReLU-family sparse
 * models are published under the plain "llama" architecture. */
static enum pinfer_ffn_act detect_act(const struct gguf_file *f)
{
	struct gguf_str s;
	char buf[128];
	if (gguf_get_str(f, "pinfer.ffn_act", &s)) {
		gguf_str_copy(s, buf, sizeof(buf));
		for (int a = PINFER_ACT_SILU; a <= PINFER_ACT_DRELU; a++)
			if (strcasecmp(buf, act_names[a]) == 0)
				return (enum pinfer_ffn_act)a;
	}
	if (gguf_get_str(f, "general.name", &s)) {
		gguf_str_copy(s, buf, sizeof(buf));
		if (strcasestr(buf, "turbosparse"))
			return PINFER_ACT_DRELU;
		if (strcasestr(buf, "relu") || strcasestr(buf, "prosparse"))
			return PINFER_ACT_RELU;
	}
	/* PowerInfer's format only exists for ReLU-family models. */
	return f->powerinfer ? PINFER_ACT_RELU : PINFER_ACT_SILU;
}

static int read_hparams(struct pinfer_model *m, const struct pinfer_model_params *p,
			struct pf_err *err)
{
	const struct gguf_file *f = m->gguf;
	struct pinfer_model_info *hp = &m->info;
	struct gguf_str s;
	int r;
	if (!gguf_get_str(f, "general.architecture", &s))
		return pf_errf(err, -EINVAL, "%s: metadata general.architecture is missing", f->path);
	gguf_str_copy(s, hp->arch, sizeof(hp->arch));
	if (strcmp(hp->arch, "llama") != 0)
		return pf_errf(err, -ENOTSUP, "%s: architecture '%s' is not supported (supported: llama)",
			       f->path, hp->arch);
	if (gguf_get_str(f, "general.name", &s))
		gguf_str_copy(s, hp->name, sizeof(hp->name));
	const char *a = hp->arch;
	if ((r = get_dim(f, a, "embedding_length", true, 0, &hp->n_embd, err)) ||
	    (r = get_dim(f, a, "feed_forward_length", true, 0, &hp->n_ff, err)) ||
	    (r = get_dim(f, a, "block_count", true, 0, &hp->n_layer, err)) ||
	    (r = get_dim(f, a, "attention.head_count", true, 0, &hp->n_head, err)) ||
	    (r = get_dim(f, a, "attention.head_count_kv", false, hp->n_head, &hp->n_head_kv, err)) ||
	    (r = get_dim(f, a, "context_length", false, 2048, &hp->n_ctx_train, err)))
		return r;
	if (hp->n_embd % hp->n_head || hp->n_head % hp->n_head_kv)
		return pf_errf(err, -EINVAL,
			       "%s: %d heads (%d KV heads) do not divide embedding length %d evenly",
			       f->path, hp->n_head, hp->n_head_kv, hp->n_embd);
	hp->head_dim = hp->n_embd / hp->n_head;
	if ((r = get_dim(f, a, "rope.dimension_count", false, hp->head_dim, &hp->rope_dim, err)))
		return r;
	if (hp->rope_dim > hp->head_dim || hp->rope_dim % 2)
		return pf_errf(err, -EINVAL, "%s: rope.dimension_count %d must be even and <= head size %d",
			       f->path, hp->rope_dim, hp->head_dim);
	char key[128];
	snprintf(key, sizeof(key), "%s.rope.freq_base", a);
	if (!gguf_get_f32(f, key, &hp->rope_freq_base))
		hp->rope_freq_base = 10000.0f;
	snprintf(key, sizeof(key), "%s.attention.layer_norm_rms_epsilon", a);
	if (!gguf_get_f32(f, key, &hp->rms_eps))
		hp->rms_eps = 1e-5f;
	if (!(hp->rope_freq_base > 0) || !(hp->rms_eps > 0))
		return pf_errf(err, -EINVAL, "%s: rope.freq_base and rms epsilon must be positive",
			       f->path);
	hp->ffn_act = p->ffn_act != PINFER_ACT_AUTO ? p->ffn_act : detect_act(f);
	hp->rope = p->rope != PINFER_ROPE_AUTO ? p->rope : PINFER_ROPE_NORM;
	return 0;
}

int pf_bind_weight(struct pinfer_model *m, struct pf_weight *w, const char *name,
		       int64_t rows, int64_t cols, struct pf_err *err)
{
	const struct gguf_file *f = m->gguf;
	const struct gguf_tensor *t = gguf_find_tensor(f, name);
	if (!t)
		return pf_errf(err, -EINVAL, "%s: tensor %s is missing", f->path, name);
	if (t->n_dims != 2 || (int64_t)t->ne[0] != cols || (int64_t)t->ne[1] != rows)
		return pf_errf(err, -EINVAL,
			       "%s: tensor %s has shape [%llu, %llu, %llu], expected [%lld, %lld]",
			       f->path, name, (unsigned long long)t->ne[0],
			       (unsigned long long)t->ne[1], (unsigned long long)t->ne[2],
			       (long long)cols, (long long)rows);
	w->ops = pf_quant_ops(t->type);
	if (!w->ops)
		return pf_errf(err, -ENOTSUP, "%s: tensor %s has type %s, which has no kernels",
			       f->path, name, pf_dtype_info(t->type)->name);
	w->data = t->data;
	w->type = t->type;
	w->rows = rows;
	w->cols = cols;
	w->row_bytes = t->nbytes / (uint64_t)rows;
	w->stride = w->row_bytes;
	return 0;
}

static int load_norm(struct pinfer_model *m, float **out, const char *name, int64_t n,
		     struct pf_err *err)
{
	struct pf_weight w;
	int r = pf_bind_weight(m, &w, name, 1, n, err);
	if (r == -EINVAL && gguf_find_tensor(m->gguf, name)) {
		/* Norms are usually stored 1-D. */
		const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
		if (t->n_dims == 1 && (int64_t)t->ne[0] == n && (w.ops = pf_quant_ops(t->type))) {
			w.data = t->data;
			r = 0;
		}
	}
	if (r)
		return r;
	*out = malloc((size_t)n * sizeof(float));
	if (!*out)
		return pf_errf(err, -ENOMEM, "out of memory for %s", name);
	w.ops->to_float(w.data, *out, n);
	return 0;
}

static int bind_layer(struct pinfer_model *m, int l, struct pf_err *err)
{
	const struct pinfer_model_info *hp = &m->info;
	struct pf_layer *L = &m->layers[l];
	int64_t q_dim = (int64_t)hp->n_head * hp->head_dim;
	int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
	char name[96];
	int r;
#define BIND(field, tname, rows, cols)                                      \
	snprintf(name, sizeof(name), "blk.%d." tname ".weight", l);          \
	if ((r = pf_bind_weight(m, &L->field, name, rows, cols, err)))          \
		return r;
	BIND(wq, "attn_q", q_dim, hp->n_embd)
	BIND(wk, "attn_k", kv_dim, hp->n_embd)
	BIND(wv, "attn_v", kv_dim, hp->n_embd)
	BIND(wo, "attn_output", hp->n_embd, q_dim)
	/* A bundle file has the FFN in its bundles, except a gate that every
	 * token reads whole (bundle_file.h). */
	if (!m->bundle_gate) {
		BIND(ffn_gate, "ffn_gate", hp->n_ff, hp->n_embd)
	}
	if (!m->bundle_file) {
		BIND(ffn_up, "ffn_up", hp->n_ff, hp->n_embd)
		BIND(ffn_down, "ffn_down", hp->n_embd, hp->n_ff)
	}
#undef BIND
	snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l);
	if ((r = load_norm(m, &L->attn_norm, name, hp->n_embd, err)))
		return r;
	snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l);
	return load_norm(m, &L->ffn_norm, name, hp->n_embd, err);
}

static int load(struct pinfer_model *m, const char *path, const struct pinfer_model_params *p,
		struct pf_err *err)
{
	int r;
	if ((r = gguf_open(&m->gguf, path, err)) || (r = read_hparams(m, p, err)) ||
	    (r = pf_vocab_load(&m->vocab, m->gguf, err)))
		return r;
	m->bundle_file = pf_bundle_file_is(m->gguf);
	if (m->bundle_file)
		gguf_get_bool(m->gguf, PF_BUNDLE_KEY_GATE, &m->bundle_gate);
	struct pinfer_model_info *hp = &m->info;
	hp->n_vocab = pf_vocab_size(m->vocab);
	hp->file_bytes = m->gguf->size;
	if ((r = pf_bind_weight(m, &m->tok_embd, "token_embd.weight", hp->n_vocab, hp->n_embd, err)) ||
	    (r = load_norm(m, &m->output_norm, "output_norm.weight", hp->n_embd, err)))
		return r;
	if (gguf_find_tensor(m->gguf, "output.weight")) {
		if ((r = pf_bind_weight(m, &m->output, "output.weight", hp->n_vocab, hp->n_embd, err)))
			return r;
	} else {
		m->output = m->tok_embd;
		hp->tied_output = true;
	}
	m->layers = calloc((size_t)hp->n_layer, sizeof(*m->layers));
	if (!m->layers)
		return pf_errf(err, -ENOMEM, "out of memory");
	hp->decode_bytes = m->output.rows * m->output.row_bytes;
	for (int l = 0; l < hp->n_layer; l++)
		if ((r = bind_layer(m, l, err)))
			return r;
	if (m->bundle_file && (r = pf_bundle_file_bind(m, err)))
		return r;
	for (int l = 0; l < hp->n_layer; l++) {
		const struct pf_layer *L = &m->layers[l];
		const struct pf_weight *ws[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_gate, &L->ffn_up,
						 m->bundle_file ? &L->ffn_down_t : &L->ffn_down };
		for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]); i++)
			hp->decode_bytes += ws[i]->rows * ws[i]->row_bytes;
	}
	uint64_t bytes_by_type[PF_DTYPE_COUNT] = { 0 };
	int dominant = PF_F32;
	for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
		const struct gguf_tensor *t = &m->gguf->tensors[i];
		bytes_by_type[t->type] += t->nbytes;
		if (bytes_by_type[t->type] > bytes_by_type[dominant])
			dominant = (int)t->type;
		hp->weight_bytes += t->nbytes;
		uint64_t n = 1;
		for (int d = 0; d < GGUF_MAX_DIMS; d++)
			n *= t->ne[d];
		hp->n_params += n;
	}
	snprintf(hp->quant, sizeof(hp->quant), "%s", pf_dtype_info((uint32_t)dominant)->name);
	if (p->mlock) {
		if (mlock(m->gguf->base, m->gguf->size) < 0) {
			int e = errno;
			return pf_errf(err, -e, "%s: mlock of %zu bytes failed: %s%s", path,
				       m->gguf->size, strerror(e),
				       e == ENOMEM || e == EPERM ? " (raise RLIMIT_MEMLOCK / LimitMEMLOCK=)" : "");
		}
		m->locked = true;
	}
	if ((r = pf_sparse_setup(m, p, err)) || p->mmap_weights)
		return r;
	return pf_resident_copy(m, m->locked, err);
}

int pinfer_model_open(struct pinfer_model **out, const char *path,
		      const struct pinfer_model_params *p, struct pf_err *err)
{
	struct pinfer_model_params defaults;
	if (!p) {
		pinfer_model_params_default(&defaults);
		p = &defaults;
	}
	*out = NULL;
	struct pinfer_model *m = calloc(1, sizeof(*m));
	if (!m)
		return pf_errf(err, -ENOMEM, "out of memory");
	int r = load(m, path, p, err);
	if (r) {
		pinfer_model_free(m);
		return r;
	}
	*out = m;
	return 0;
}

void pinfer_model_free(struct pinfer_model *m)
{
	if (!m)
		return;
	if (m->layers)
		for (int l = 0; l < m->info.n_layer; l++) {
			free(m->layers[l].attn_norm);
			free(m->layers[l].ffn_norm);
		}
	pf_sparse_free(m);
	pf_resident_free(m);
	free(m->layers);
	free(m->output_norm);
	if (m->locked)
		munlock(m->gguf->base, m->gguf->size);
	pf_vocab_free(m->vocab);
	gguf_close(m->gguf);
	free(m);
}

const struct pinfer_model_info *pinfer_model_info(const struct pinfer_model *m)
{
	return &m->info;
}

int pinfer_tokenize(const struct pinfer_model *m, const char *text, size_t len, bool add_bos,
		    bool parse_special, int32_t *out, size_t cap)
{
	return pf_tokenize(m->vocab, text, len, add_bos, parse_special, out, cap);
}

int pinfer_token_to_piece(const struct pinfer_model *m, int32_t id, bool special, char *buf,
			  size_t cap)
{
	return pf_token_to_piece(m->vocab, id, special, buf, cap);
}

int pinfer_detokenize(const struct pinfer_model *m, const int32_t *ids, size_t n, char *buf,
		      size_t cap)
{
	return pf_detokenize(m->vocab, ids, n, false, buf, cap);
}

int32_t pinfer_token_bos(const struct pinfer_model *m)
{
	return pf_vocab_bos(m->vocab);
}

int32_t pinfer_token_eos(const struct pinfer_model *m)
{
	return pf_vocab_eos(m->vocab);
}

bool pinfer_token_is_eog(const struct pinfer_model *m, int32_t id)
{
	return pf_vocab_is_eog(m->vocab, id);
}

void pinfer_detok_init(struct pinfer_detok *d, const struct pinfer_model *m, bool continuation)
{
	pf_detok_init(d, m->vocab);
	if (continuation)
		d->at_start = false;
}

int pinfer_detok_push(struct pinfer_detok *d, int32_t id, char *buf, size_t cap)
{
	return pf_detok_push(d, id, buf, cap);
}

int pinfer_detok_flush(struct pinfer_detok *d, char *buf, size_t cap)
{
	return pf_detok_flush(d, buf, cap);
}

const char *pinfer_model_chat_template(const struct pinfer_model *m, size_t *len)
{
	struct gguf_str s;
	if (!gguf_get_str(m->gguf, "tokenizer.chat_template", &s))
		return NULL;
	*len = s.len;
	return s.ptr;
}
