#include "models.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"
#include "models_internal.h"

struct load_job {
	struct models *models;
	struct model_entry *entry;
	char path[PATH_MAX];
	char calibration[PATH_MAX];  /* "" when there is none */
	enum pinfer_sparsity sparsity;
	struct models_budget budget;         /* asked for (AUTO: the default, for bundle files) */
	struct models_budget default_budget;
	struct pinfer_model *model;
	uint64_t estimate;
	int status;
	struct pf_err err;
	struct load_job *next;
};

static int64_t unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void unload(struct models *m, struct model_entry *e)
{
	loop_timer_cancel(m->loop, e->expiry_timer);
	e->expiry_timer = 0;
	sched_free(e->sched);
	e->sched = NULL;
	pinfer_model_free(e->model);
	e->model = NULL;
	e->state = MODEL_UNLOADED;
	e->mem_bytes = 0;
	e->expires_at_unix_ms = 0;
	e->max_bytes = 0;
	e->sparsity = PINFER_SPARSITY_AUTO;
	e->budget.kind = BUDGET_AUTO;
	e->budget_bytes = 0;
	e->squeeze = 0;
	log_info("model %s unloaded", e->name);
}

uint64_t models_used_bytes(struct models *m)
{
	uint64_t used = 0;
	for (struct model_entry *e = m->entries; e; e = e->next)
		used += e->mem_bytes + e->mem_reserved;
	return used;
}

void models_set_default_keep_alive(struct models *m, int64_t keep_alive_ms)
{
	m->cfg.keep_alive_ms = keep_alive_ms;
	for (struct model_entry *e = m->entries; e; e = e->next)
		if (e->state == MODEL_UNLOADED)
			e->keep_alive_ms = keep_alive_ms;
}

uint64_t models_budget_bytes(struct models *m)
{
	return m->cfg.budget_bytes;
}

int models_loaded_count(struct models *m)
{
	int n = 0;
	for (struct model_entry *e = m->entries; e; e = e->next)
		n += e->state == MODEL_LOADED;
	return n;
}

int models_loading_count(struct models *m)
{
	int n = 0;
	for (struct model_entry *e = m->entries; e; e = e->next)
		n += e->state == MODEL_LOADING;
	return n;
}

/* The idle loaded model used longest ago, other than keep. */
static struct model_entry *lru_idle(struct models *m, const struct model_entry *keep)
{
	struct model_entry *best = NULL;
	for (struct model_entry *e = m->entries; e; e = e->next)
		if (e != keep && e->state == MODEL_LOADED && e->active == 0 &&
		    (!best || e->last_used_ms < best->last_used_ms))
			best = e;
	return best;
}

bool models_make_room(struct models *m, struct model_entry *for_e, uint64_t need, bool one_more, char *why,
		      size_t why_size)
{
	for (;;) {
		uint64_t used = models_used_bytes(m);
		bool count_ok = !one_more || !m->cfg.max_loaded || models_loaded_count(m) < m->cfg.max_loaded;
		if (count_ok && used + need <= m->cfg.budget_bytes)
			return true;
		struct model_entry *victim = lru_idle(m, for_e);
		if (!victim) {
			if (!count_ok)
				snprintf(why, why_size, "%d models are loaded and busy (limit %d)",
					 models_loaded_count(m), m->cfg.max_loaded);
			else
				snprintf(why, why_size,
					 "model %s needs %llu MiB but only %llu MiB of the %llu MiB budget are free, and the other loaded models are busy",
					 for_e->name, (unsigned long long)(need >> 20),
					 (unsigned long long)((m->cfg.budget_bytes > used ? m->cfg.budget_bytes - used : 0) >> 20),
					 (unsigned long long)(m->cfg.budget_bytes >> 20));
			return false;
		}
		log_info("evicting idle model %s to make room for %s", victim->name, for_e->name);
		unload(m, victim);
	}
}

static void finish_load(struct models *m, struct load_job *job)
{
	struct model_entry *e = job->entry;
	int status = job->status;
	char why[PF_ERR_MAX];
	snprintf(why, sizeof(why), "%s", job->err.msg);
	if (!status && job->estimate > m->cfg.budget_bytes) {
		snprintf(why, sizeof(why), "model %s needs %llu MiB, more than the whole %llu MiB budget",
			 e->name, (unsigned long long)(job->estimate >> 20),
			 (unsigned long long)(m->cfg.budget_bytes >> 20));
		status = -ENOMEM;
	} else if (!status && e->max_bytes && job->estimate > e->max_bytes) {
		snprintf(why, sizeof(why), "model %s needs %llu bytes, more than the %llu asked for",
			 e->name, (unsigned long long)job->estimate, (unsigned long long)e->max_bytes);
		status = -ENOMEM;
	} else if (!status && !models_make_room(m, e, job->estimate, true, why, sizeof(why))) {
		status = -ENOMEM;
	}
	if (!status) {
		struct pf_err err;
		status = sched_new(&e->sched, job->model, &m->cfg.sched, m->notify, m->notify_data, &err);
		if (status)
			snprintf(why, sizeof(why), "model %s: %s", e->name, err.msg);
	}
	if (status) {
		pinfer_model_free(job->model);
		e->state = MODEL_UNLOADED;
		e->max_bytes = 0;
		e->sparsity = PINFER_SPARSITY_AUTO;
		e->budget.kind = BUDGET_AUTO;
		log_error("cannot load %s: %s", e->name, why);
	} else {
		e->model = job->model;
		e->mem_bytes = job->estimate;
		e->budget = job->budget;
		/* An offloaded model's contexts are inside its budget now. */
		struct pinfer_offload_stats st;
		char reads[32] = "";
		if (pinfer_model_offload_stats(e->model, &st)) {
			e->mem_bytes = st.budget;
			snprintf(reads, sizeof(reads), ", reads by %s", st.io);
		}
		models_offload_loaded(e);
		e->state = MODEL_LOADED;
		e->last_used_ms = loop_now_ms();
		e->load_seq = ++m->loads;
		e->loaded_at_unix_us = unix_ms() * 1000;
		e->tokens_generated = 0;
		e->decode_ns = 0;
		e->ffn_neurons = 0;
		e->ffn_active = 0;
		char bname[32], weights[48] = "weights read in place";
		uint64_t copied = pinfer_model_info(e->model)->copied_bytes;
		if (copied)
			snprintf(weights, sizeof(weights), "%llu MiB of weights copied",
				 (unsigned long long)(copied >> 20));
		log_info("model %s loaded (%llu MiB with %d slots, %s KV caches, sparsity %s, %s, memory budget %s%s)",
			 e->name, (unsigned long long)(e->mem_bytes >> 20), m->cfg.sched.n_slots,
			 pinfer_kv_type_name(pinfer_kv_type_for(e->model, m->cfg.sched.kv_type)),
			 pinfer_sparsity_name(pinfer_model_info(e->model)->sparsity), weights,
			 models_budget_name(&e->budget, bname, sizeof(bname)), reads);
	}
	free(job);
	m->load_done(m->load_done_data, e, status, status ? why : NULL);
	/* A model loaded for nobody (explicit load) starts its countdown now. */
	if (!status && e->active == 0)
		models_release(m, e);
}

static void on_wake(struct loop *l, void *data)
{
	(void)l;
	struct models *m = data;
	pthread_mutex_lock(&m->lock);
	struct load_job *done = m->finished;
	m->finished = NULL;
	pthread_mutex_unlock(&m->lock);
	while (done) {
		struct load_job *next = done->next;
		finish_load(m, done);
		done = next;
	}
}

static void *load_main(void *arg)
{
	struct load_job *job = arg;
	struct models *m = job->models;
	struct pinfer_model_params params;
	pinfer_model_params_default(&params);
	params.sparsity = job->sparsity;
	params.mmap_weights = m->cfg.mmap_weights;
	params.calibration = job->calibration[0] ? job->calibration : NULL;
	if (job->budget.kind == BUDGET_AUTO)
		job->budget.kind = BUDGET_NONE;
	if (job->budget.kind == BUDGET_NONE && job->default_budget.kind == BUDGET_SET && pinfer_is_bundle_file(job->path))
		job->budget = job->default_budget;
	if (job->budget.kind == BUDGET_SET) {
		params.memory_budget = job->budget.bytes;
		params.ffn_cache_percent = job->budget.ffn_percent;
	}
	job->status = pinfer_model_open(&job->model, job->path, &params, &job->err);
	struct pinfer_offload_stats st;
	if (job->status) {
	} else if (pinfer_model_offload_stats(job->model, &st)) {
		/* Everything the model uses is inside its budget, contexts
		 * included, except for a percentage or the minimum, which grow
		 * by the contexts once they are made. */
		job->estimate = st.budget;
		if (job->budget.bytes == 0)
			job->estimate += sched_estimate_bytes(job->model, &m->cfg.sched);
	} else {
		/* The copied weights' pages of the file are left to the page
		 * cache: counted once, in heap_bytes. */
		const struct pinfer_model_info *info = pinfer_model_info(job->model);
		job->estimate = info->file_bytes - info->copied_bytes + info->heap_bytes +
				sched_estimate_bytes(job->model, &m->cfg.sched);
	}
	pthread_mutex_lock(&m->lock);
	job->next = m->finished;
	m->finished = job;
	/* Posted before this load stops counting: once loading reaches 0,
	 * models_free may free m and its wake-up. */
	loop_wake_post(m->wake);
	m->loading--;
	pthread_cond_broadcast(&m->idle);
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

int models_load(struct models *m, struct model_entry *e)
{
	if (e->state != MODEL_UNLOADED)
		return 0;
	struct load_job *job = calloc(1, sizeof(*job));
	if (!job) {
		e->sparsity = PINFER_SPARSITY_AUTO;
		e->budget.kind = BUDGET_AUTO;
		return -ENOMEM;
	}
	job->models = m;
	job->entry = e;
	snprintf(job->path, sizeof(job->path), "%s", e->path);
	job->sparsity = e->sparsity != PINFER_SPARSITY_AUTO ? e->sparsity : m->cfg.sparsity;
	job->budget = e->budget;
	job->default_budget = m->cfg.offload_budget;
	char cal[PATH_MAX];
	struct stat st;
	if (snprintf(cal, sizeof(cal), "%s/%s" MODELS_THRESHOLDS_SUFFIX, m->cfg.dir, e->name) < (int)sizeof(cal) &&
	    stat(cal, &st) == 0 && S_ISREG(st.st_mode))
		snprintf(job->calibration, sizeof(job->calibration), "%s", cal);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	pthread_mutex_lock(&m->lock);
	m->loading++;
	int r = pthread_create(&t, &attr, load_main, job);
	if (r)
		m->loading--;
	pthread_mutex_unlock(&m->lock);
	pthread_attr_destroy(&attr);
	if (r) {
		free(job);
		e->sparsity = PINFER_SPARSITY_AUTO;  /* asked for a load that never began */
		e->budget.kind = BUDGET_AUTO;
		return -r;
	}
	/* What the load runs in, so a later request can be told apart. */
	e->sparsity = job->sparsity;
	e->state = MODEL_LOADING;
	log_info("loading model %s from %s", e->name, e->path);
	return 0;
}

int models_unload(struct models *m, struct model_entry *e)
{
	if (e->state == MODEL_LOADING || e->active > 0)
		return -EBUSY;
	if (e->state == MODEL_LOADED)
		unload(m, e);
	return 0;
}

#define MAX_KEEP_ALIVE_MS (366LL * 24 * 3600 * 1000)

int64_t models_clamp_keep_alive(int64_t ms)
{
	return ms < 0 || ms > MAX_KEEP_ALIVE_MS ? -1 : ms;
}

int models_want_sparsity(struct model_entry *e, enum pinfer_sparsity s)
{
	if (s == PINFER_SPARSITY_AUTO)
		return 0;
	if (e->state == MODEL_LOADED)
		return pinfer_model_info(e->model)->sparsity == s ? 0 : -EBUSY;
	if (e->state == MODEL_LOADING)
		return e->sparsity == s ? 0 : -EBUSY;
	e->sparsity = s;
	return 0;
}

double models_measured_sparsity(const struct model_entry *e)
{
	return e->ffn_neurons ? 1.0 - (double)e->ffn_active / (double)e->ffn_neurons : 0.0;
}

double models_decode_tps(const struct model_entry *e)
{
	return e->decode_ns ? (double)e->tokens_generated * 1e9 / (double)e->decode_ns : 0.0;
}

int models_evict_idle(struct models *m)
{
	int n = 0;
	for (struct model_entry *e = m->entries; e; e = e->next)
		if (e->state == MODEL_LOADED && e->active == 0) {
			unload(m, e);
			n++;
		}
	return n;
}

static void on_expiry(struct loop *l, void *data)
{
	(void)l;
	struct model_entry *e = data;
	e->expiry_timer = 0;
	if (e->state == MODEL_LOADED && e->active == 0) {
		log_info("model %s: keep-alive expired", e->name);
		unload(e->owner, e);
	}
}

void models_use(struct models *m, struct model_entry *e, bool has_keep_alive, int64_t keep_alive_ms)
{
	loop_timer_cancel(m->loop, e->expiry_timer);
	e->expiry_timer = 0;
	e->expires_at_unix_ms = 0;
	if (has_keep_alive)
		e->keep_alive_ms = keep_alive_ms;
	e->active++;
	e->last_used_ms = loop_now_ms();
}

void models_release(struct models *m, struct model_entry *e)
{
	if (e->active > 0)
		e->active--;
	e->last_used_ms = loop_now_ms();
	if (e->active > 0 || e->state != MODEL_LOADED)
		return;
	if (e->keep_alive_ms == 0) {
		unload(m, e);
		return;
	}
	if (e->keep_alive_ms < 0) {
		e->expires_at_unix_ms = -1;
		return;
	}
	loop_timer_cancel(m->loop, e->expiry_timer);
	e->expiry_timer = loop_timer_add(m->loop, (uint64_t)e->keep_alive_ms, on_expiry, e);
	e->expires_at_unix_ms = unix_ms() + e->keep_alive_ms;
}

/* Model names travel in protocol strings and D-Bus messages, which must be
 * UTF-8: a file whose name is not is left out. */
static bool is_model_file(const char *name, size_t *stem)
{
	size_t n = strlen(name);
	if (n <= 5 || strcmp(name + n - 5, ".gguf") != 0 || name[0] == '.' || n - 5 >= MODEL_NAME_MAX ||
	    !proto_utf8_valid(name, n))
		return false;
	*stem = n - 5;
	return true;
}

int models_scan(struct models *m)
{
	DIR *d = opendir(m->cfg.dir);
	if (!d) {
		int e = errno;
		log_warn("cannot read the models directory %s: %s", m->cfg.dir, strerror(e));
		return -e;
	}
	for (struct model_entry *e = m->entries; e; e = e->next)
		e->present = false;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t stem;
		if (!is_model_file(de->d_name, &stem))
			continue;
		char path[PATH_MAX];
		struct stat st;
		if (snprintf(path, sizeof(path), "%s/%s", m->cfg.dir, de->d_name) >= (int)sizeof(path) ||
		    stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		char name[MODEL_NAME_MAX];
		memcpy(name, de->d_name, stem);
		name[stem] = 0;
		struct model_entry *e = models_find(m, name);
		if (!e) {
			e = calloc(1, sizeof(*e));
			if (!e)
				break;
			snprintf(e->name, sizeof(e->name), "%s", name);
			e->owner = m;
			e->keep_alive_ms = m->cfg.keep_alive_ms;
			e->next = m->entries;
			m->entries = e;
		}
		if (e->state == MODEL_UNLOADED) {
			snprintf(e->path, sizeof(e->path), "%s", path);
			e->file_bytes = (uint64_t)st.st_size;
		}
		e->present = true;
	}
	closedir(d);
	for (struct model_entry **p = &m->entries; *p;) {
		struct model_entry *e = *p;
		if (!e->present && e->state == MODEL_UNLOADED && !e->waiters && e->active == 0) {
			*p = e->next;
			free(e);
		} else {
			p = &e->next;
		}
	}
	return 0;
}

struct model_entry *models_find(struct models *m, const char *name)
{
	for (struct model_entry *e = m->entries; e; e = e->next)
		if (!strcmp(e->name, name))
			return e;
	return NULL;
}

struct model_entry *models_first(struct models *m)
{
	return m->entries;
}

static uint64_t default_budget(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	if (pages <= 0 || page <= 0)
		return 4ull << 30;
	return (uint64_t)pages * (uint64_t)page / 10 * 8;
}

int models_new(struct models **out, struct loop *l, const struct models_config *c,
	       sched_notify_fn notify, void *notify_data, models_load_done_fn *load_done,
	       void *load_done_data)
{
	*out = NULL;
	struct models *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->loop = l;
	m->cfg = *c;
	if (!m->cfg.budget_bytes)
		m->cfg.budget_bytes = default_budget();
	m->notify = notify;
	m->notify_data = notify_data;
	m->load_done = load_done;
	m->load_done_data = load_done_data;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->idle, NULL);
	int r = loop_wake_new(l, &m->wake, on_wake, m);
	if (!r && (r = models_offload_init(m)))
		loop_wake_free(m->wake);
	if (r) {
		pthread_mutex_destroy(&m->lock);
		pthread_cond_destroy(&m->idle);
		free(m);
		return r;
	}
	models_scan(m);
	*out = m;
	return 0;
}

void models_free(struct models *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	while (m->loading > 0 || m->resizing > 0)
		pthread_cond_wait(&m->idle, &m->lock);
	struct load_job *done = m->finished;
	m->finished = NULL;
	pthread_mutex_unlock(&m->lock);
	while (done) {
		struct load_job *next = done->next;
		pinfer_model_free(done->model);
		done->entry->state = MODEL_UNLOADED;
		free(done);
		done = next;
	}
	while (m->entries) {
		struct model_entry *e = m->entries;
		m->entries = e->next;
		if (e->state == MODEL_LOADED)
			unload(m, e);
		free(e);
	}
	models_offload_free(m);
	loop_wake_free(m->wake);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->idle);
	free(m);
}
