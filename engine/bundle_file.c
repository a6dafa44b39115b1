#include "bundle_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "crc32c.h"
#include "model.h"

/* Bytes read per pread: large sequential reads, well past the point where
 * the disk's throughput stops growing with the request size. */
#define READ_CHUNK (8u << 20)
#define HUGE_PAGE (2u << 20)

void pf_bundle_cluster_shape(size_t bundle_bytes, int64_t *neurons, size_t *bytes)
{
	if (bundle_bytes >= PF_BUNDLE_BLOCK) {
		*neurons = 1;
		*bytes = (bundle_bytes + PF_BUNDLE_BLOCK - 1) / PF_BUNDLE_BLOCK * PF_BUNDLE_BLOCK;
	} else {
		*neurons = (int64_t)(PF_BUNDLE_BLOCK / bundle_bytes);
		*bytes = PF_BUNDLE_BLOCK;
	}
}

bool pf_bundle_file_is(const struct gguf_file *f)
{
	return gguf_find(f, PF_BUNDLE_KEY_VERSION) != NULL;
}

bool pinfer_is_bundle_file(const char *path)
{
	struct gguf_file *f;
	if (gguf_open(&f, path, NULL))
		return false;
	bool is = pf_bundle_file_is(f);
	gguf_close(f);
	return is;
}

static uint32_t rd_u32(const void *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static bool is_clusters(const struct gguf_tensor *t)
{
	static const char suffix[] = ".ffn_clusters";
	size_t n = sizeof(suffix) - 1;
	return t->name.len > n && !memcmp(t->name.ptr + t->name.len - n, suffix, n);
}

/* Every tensor but the clusters against the checksum table. */
static int verify_resident(const struct gguf_file *f, struct pf_err *err)
{
	const struct gguf_tensor *table = gguf_find_tensor(f, PF_BUNDLE_CRC_TENSOR);
	if (!table || table->type != PF_I32 || table->n_dims != 1 || table->ne[0] != f->n_tensors)
		return pf_errf(err, -EINVAL, "%s: no checksum table %s for its %llu tensors", f->path,
			       PF_BUNDLE_CRC_TENSOR, (unsigned long long)f->n_tensors);
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const struct gguf_tensor *t = &f->tensors[i];
		if (t == table || is_clusters(t))
			continue;
		uint32_t want = rd_u32((const uint8_t *)table->data + 4 * i);
		uint32_t got = pf_crc32c(0, t->data, t->nbytes);
		if (got != want)
			return pf_errf(err, -EBADMSG,
				       "%s: tensor %.*s (%llu bytes at offset %llu): checksum 0x%08x, expected 0x%08x: the file is damaged",
				       f->path, (int)t->name.len, t->name.ptr, (unsigned long long)t->nbytes,
				       (unsigned long long)(f->data_offset + t->offset), got, want);
	}
	return 0;
}

/* Layer l's entry of a per-layer array key. */
static bool layer_value(const struct gguf_file *f, const char *key, int n_layer, int l, int64_t *out)
{
	const struct gguf_array *a = gguf_get_arr(f, key);
	if (!a || a->n != (uint64_t)n_layer)
		return false;
	*out = gguf_arr_int(a, (uint64_t)l);
	return true;
}

static int part(const struct gguf_file *f, const char *key, int n_layer, int l, int64_t cols,
		struct pf_weight *w, struct pf_err *err)
{
	int64_t t;
	uint64_t row_bytes;
	if (!layer_value(f, key, n_layer, l, &t))
		return pf_errf(err, -EINVAL, "%s: %s is missing or not an array of %d", f->path, key, n_layer);
	if (t < 0 || t >= PF_DTYPE_COUNT || !pf_quant_ops((enum pf_dtype)t) ||
	    !pf_quant_ops((enum pf_dtype)t)->axpy || !pf_dtype_bytes((enum pf_dtype)t, (uint64_t)cols, &row_bytes))
		return pf_errf(err, -EINVAL, "%s: layer %d: %s %lld is not a weight format for rows of %lld", f->path,
			       l, key, (long long)t, (long long)cols);
	*w = (struct pf_weight){ .type = (enum pf_dtype)t, .cols = cols, .row_bytes = (size_t)row_bytes,
				 .ops = pf_quant_ops((enum pf_dtype)t) };
	return 0;
}

static int bind_layer(struct pinfer_model *m, int l, bool gate, struct pf_err *err)
{
	const struct gguf_file *f = m->gguf;
	const struct pinfer_model_info *hp = &m->info;
	struct pf_layer *L = &m->layers[l];
	struct pf_weight g = { 0 }, u, d;
	int r;
	if ((gate && (r = part(f, PF_BUNDLE_KEY_GATE_TYPE, hp->n_layer, l, hp->n_embd, &g, err))) ||
	    (r = part(f, PF_BUNDLE_KEY_UP_TYPE, hp->n_layer, l, hp->n_embd, &u, err)) ||
	    (r = part(f, PF_BUNDLE_KEY_DOWN_TYPE, hp->n_layer, l, hp->n_embd, &d, err)))
		return r;
	size_t bundle = g.row_bytes + u.row_bytes + d.row_bytes;
	int64_t neurons, want_neurons;
	size_t bytes;
	int64_t want_bytes;
	pf_bundle_cluster_shape(bundle, &neurons, &bytes);
	if (!layer_value(f, PF_BUNDLE_KEY_CLUSTER_NEURONS, hp->n_layer, l, &want_neurons) ||
	    !layer_value(f, PF_BUNDLE_KEY_CLUSTER_BYTES, hp->n_layer, l, &want_bytes) ||
	    want_neurons != neurons || want_bytes != (int64_t)bytes)
		return pf_errf(err, -EINVAL, "%s: layer %d: clusters of %lld neurons in %lld bytes expected for bundles of %zu bytes",
			       f->path, l, (long long)neurons, (long long)bytes, bundle);
	int64_t n_clusters = (hp->n_ff + neurons - 1) / neurons;
	char name[64];
	snprintf(name, sizeof(name), "blk.%d.ffn_clusters", l);
	const struct gguf_tensor *t = gguf_find_tensor(f, name);
	if (!t || t->type != PF_I8 || t->n_dims != 2 || t->ne[0] != bytes || t->ne[1] != (uint64_t)n_clusters)
		return pf_errf(err, -EINVAL, "%s: %s is missing or not I8 [%zu, %lld]", f->path, name, bytes,
			       (long long)n_clusters);
	snprintf(name, sizeof(name), "blk.%d.ffn_cluster_crc", l);
	t = gguf_find_tensor(f, name);
	if (!t || t->type != PF_I32 || t->n_dims != 1 || t->ne[0] != (uint64_t)n_clusters)
		return pf_errf(err, -EINVAL, "%s: %s is missing or not I32 [%lld]", f->path, name,
			       (long long)n_clusters);
	struct pf_weight *parts[] = { gate ? &L->ffn_gate : NULL, &L->ffn_up, &L->ffn_down_t };
	const struct pf_weight *shapes[] = { &g, &u, &d };
	for (int i = 0; i < 3; i++) {
		if (!parts[i])
			continue;
		*parts[i] = *shapes[i];
		parts[i]->rows = hp->n_ff;
		/* one bundle per cluster: the clusters are the rows' spacing */
		parts[i]->stride = neurons == 1 ? bytes : bundle;
		parts[i]->group = neurons;
		parts[i]->group_bytes = bytes;
	}
	return 0;
}

int pf_bundle_file_bind(struct pinfer_model *m, struct pf_err *err)
{
	const struct gguf_file *f = m->gguf;
	uint32_t version;
	bool gate;
	if (!gguf_get_u32(f, PF_BUNDLE_KEY_VERSION, &version) || version != PF_BUNDLE_VERSION)
		return pf_errf(err, -ENOTSUP, "%s: bundle format version %u; this pinfer reads version %d", f->path,
			       version, PF_BUNDLE_VERSION);
	if (!gguf_get_bool(f, PF_BUNDLE_KEY_GATE, &gate))
		return pf_errf(err, -EINVAL, "%s: %s is missing", f->path, PF_BUNDLE_KEY_GATE);
	int r = verify_resident(f, err);
	for (int l = 0; l < m->info.n_layer && !r; l++)
		r = bind_layer(m, l, gate, err);
	return r;
}

static size_t layer_bytes(const struct pf_layer *L)
{
	const struct pf_weight *u = &L->ffn_up;
	return (size_t)((u->rows + u->group - 1) / u->group) * u->group_bytes;
}

/* Reads n bytes at offset of fd into dst in large reads. */
static int read_at(int fd, const char *path, uint8_t *dst, size_t n, uint64_t offset, struct pf_err *err)
{
	size_t done = 0;
	while (done < n) {
		size_t want = n - done < READ_CHUNK ? n - done : READ_CHUNK;
		ssize_t got = pread(fd, dst + done, want, (off_t)(offset + done));
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return pf_errf(err, -errno, "%s: read of %zu bytes at offset %llu: %s", path, want,
				       (unsigned long long)(offset + done), strerror(errno));
		if (got == 0)
			return pf_errf(err, -EIO, "%s: ends at offset %llu, %zu bytes short of the clusters' end",
				       path, (unsigned long long)(offset + done), n - done);
		done += (size_t)got;
	}
	return 0;
}

static int load_layer(struct pinfer_model *m, int fd, int l, uint8_t *dst, struct pf_err *err)
{
	const struct gguf_file *f = m->gguf;
	struct pf_layer *L = &m->layers[l];
	char name[64];
	snprintf(name, sizeof(name), "blk.%d.ffn_clusters", l);
	const struct gguf_tensor *t = gguf_find_tensor(f, name);
	snprintf(name, sizeof(name), "blk.%d.ffn_cluster_crc", l);
	const uint8_t *crcs = gguf_find_tensor(f, name)->data;
	uint64_t offset = f->data_offset + t->offset;
	int r = read_at(fd, f->path, dst, t->nbytes, offset, err);
	if (r)
		return r;
	size_t bytes = L->ffn_up.group_bytes;
	for (uint64_t k = 0; k < t->ne[1]; k++) {
		uint32_t got = pf_crc32c(0, dst + k * bytes, bytes), want = rd_u32(crcs + 4 * k);
		if (got != want)
			return pf_errf(err, -EBADMSG,
				       "%s: layer %d cluster %llu (%zu bytes at offset %llu): checksum 0x%08x, expected 0x%08x: the file is damaged",
				       f->path, l, (unsigned long long)k, bytes,
				       (unsigned long long)(offset + k * bytes), got, want);
	}
	size_t up = m->bundle_gate ? L->ffn_gate.row_bytes : 0;
	if (m->bundle_gate)
		L->ffn_gate.data = dst;
	L->ffn_up.data = dst + up;
	L->ffn_down_t.data = dst + up + L->ffn_up.row_bytes;
	return 0;
}

int pf_bundle_file_load(struct pinfer_model *m, bool lock, struct pf_err *err)
{
	int n_layer = m->info.n_layer;
	size_t total = 0;
	for (int l = 0; l < n_layer; l++)
		total += layer_bytes(&m->layers[l]);
	total = (total + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
	void *mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return pf_errf(err, -ENOMEM, "out of memory for the neuron bundles (%zu bytes)", total);
	madvise(mem, total, MADV_HUGEPAGE);
	m->bundles = (struct pf_bundles){ .mem = mem, .mem_bytes = total, .gate = m->bundle_gate };
	int fd = open(m->gguf->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pf_errf(err, -errno, "%s: %s", m->gguf->path, strerror(errno));
	int r = 0;
	uint8_t *at = mem;
	for (int l = 0; l < n_layer && !r; l++) {
		r = load_layer(m, fd, l, at, err);
		at += layer_bytes(&m->layers[l]);
	}
	close(fd);
	if (r)
		return r;
	mprotect(mem, total, PROT_READ);
	if (lock) {
		if (mlock(mem, total) < 0) {
			int e = errno;
			return pf_errf(err, -e, "mlock of %zu bytes of neuron bundles failed: %s", total, strerror(e));
		}
		m->bundles.locked = true;
	}
	m->info.heap_bytes += total;
	return 0;
}
