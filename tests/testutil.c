#include "testutil.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#include "synth.h"

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
