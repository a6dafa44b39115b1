#include "testutil.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"
#include "synth.h"

char test_dir[256];

const char *shared_path(const char *rel)
{
	static char buf[4096];
	const char *root = getenv("SHARED");
	snprintf(buf, sizeof(buf), "%s/%s", root ? root : "../shared", rel);
	return buf;
}

char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = 0;
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

bool test_same_file(const char *a, const char *b)
{
	size_t na, nb;
	char *x = read_file(a, &na), *y = read_file(b, &nb);
	bool same = na == nb && !memcmp(x, y, na);
	free(x);
	free(y);
	return same;
}

const char *test_synth(const char *dir, const char *name, int n_ff, int n_layer, enum pf_dtype type,
		       enum pinfer_ffn_act act)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s.gguf", dir, name);
	struct synth_opts o;
	synth_opts_init(&o);
	o.n_embd = 256;
	o.n_ff = n_ff;
	o.n_layer = n_layer;
	o.n_head = 4;
	o.n_head_kv = 2;
	o.type = type;
	o.act = act;
	o.n_threads = 2;
	struct pf_err err;
	if (synth_model(path, &o, &err))
		fail_msg("%s", err.msg);
	return path;
}

void test_synth_or_fail(const char *path, const struct synth_opts *o)
{
	struct pf_err err;
	if (synth_model(path, o, &err))
		fail_msg("synth %s: %s", path, err.msg);
}

void test_synth_is_pure(const struct synth_opts *o, const struct synth_opts *other)
{
	char a[512], b[512], c[512];
	snprintf(a, sizeof(a), "%s/det-a.gguf", test_dir);
	snprintf(b, sizeof(b), "%s/det-b.gguf", test_dir);
	snprintf(c, sizeof(c), "%s/det-c.gguf", test_dir);
	struct synth_opts x = *o;
	x.n_threads = 1;
	test_synth_or_fail(a, &x);
	x.n_threads = 2;
	test_synth_or_fail(b, &x);
	assert_true(test_same_file(a, b));
	x.n_threads = 3;
	test_synth_or_fail(b, &x);
	assert_true(test_same_file(a, b));
	x.seed = o->seed + 1;
	test_synth_or_fail(c, &x);
	assert_false(test_same_file(a, c));
	test_synth_or_fail(c, other);
	assert_false(test_same_file(a, c));
	remove(a);
	remove(b);
	remove(c);
}

int test_synth_cli(int argc, const char *const *args)
{
	char *argv[32];
	assert_true(argc < 32);
	for (int i = 0; i < argc; i++)
		argv[i] = (char *)args[i];
	argv[argc] = NULL;
	return cmd_synth(argc, argv);
}

struct pinfer_model *test_open_model(const char *path, enum pinfer_sparsity mode)
{
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	p.sparsity = mode;
	struct pinfer_model *m;
	struct pf_err err;
	if (pinfer_model_open(&m, path, &p, &err))
		fail_msg("%s", err.msg);
	return m;
}

struct pinfer_ctx *test_new_ctx(struct pinfer_model *m, int n_ctx, int n_threads)
{
	struct pinfer_ctx_params p;
	pinfer_ctx_params_default(&p);
	p.kv_type = PINFER_KV_F32;
	p.n_ctx = n_ctx;
	p.n_threads = n_threads;
	struct pinfer_ctx *c;
	struct pf_err err;
	if (pinfer_ctx_new(&c, m, &p, &err))
		fail_msg("%s", err.msg);
	return c;
}

int32_t test_argmax(const float *v, int n)
{
	return logits_argmax(v, n);
}

static const char story[] =
	"Once upon a time, there was a little girl named Lily. She loved to play outside "
	"in the sunshine with her dog.";

void test_probe_run(const char *path, enum pinfer_sparsity mode, const struct test_probe *probe, int n,
		    int32_t *toks, struct pinfer_ffn_stats *stats)
{
	struct pinfer_model *m = test_open_model(path, mode);
	const struct pinfer_model_info *hp = pinfer_model_info(m);
	assert_int_equal(hp->n_embd, probe->n_embd);
	assert_int_equal(hp->n_ff, probe->n_ff);
	assert_int_equal(hp->n_layer, probe->n_layer);
	struct pinfer_ctx *ctx = test_new_ctx(m, n + 8, 2);
	assert_int_equal(pinfer_ctx_set_ffn_probe(ctx, probe->fn, probe->data), 0);
	int32_t *own = toks ? NULL : malloc((size_t)n * sizeof(*own));
	if (!toks)
		assert_non_null(toks = own);
	int i = pinfer_tokenize(m, story, strlen(story), true, false, toks, n);
	assert_true(i > 16 && i < n);
	assert_int_equal(pinfer_eval(ctx, toks, i, NULL), 0);
	for (; i < n; i++) {
		toks[i] = test_argmax(pinfer_logits(ctx, -1), hp->n_vocab);
		assert_int_equal(pinfer_eval(ctx, &toks[i], 1, NULL), 0);
	}
	if (stats)
		pinfer_ctx_ffn_stats(ctx, stats);
	free(own);
	pinfer_ctx_free(ctx);
	pinfer_model_free(m);
}

int test_dir_setup(void **state)
{
	(void)state;
	snprintf(test_dir, sizeof(test_dir), "/tmp/pinfer-%s-XXXXXX", program_invocation_short_name);
	for (char *c = test_dir + strlen("/tmp/pinfer-"); *c; c++)
		if (*c == '_')
			*c = '-';
	return mkdtemp(test_dir) ? 0 : -1;
}

int test_dir_teardown(void **state)
{
	(void)state;
	return test_rmtree(test_dir);
}

uint64_t test_rand(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

float test_randf(uint64_t *state)
{
	return (float)(test_rand(state) >> 40) / (float)(1 << 23) - 1.0f;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

int test_rmtree(const char *dir)
{
	/* Depth first and without following links: a symlink to a shared
	 * model is removed, never what it points to. */
	return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}
