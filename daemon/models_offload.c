/* Offloaded models' budgets in the registry (docs/offload.md, "In the
 * daemon"): the budget a load asks for, a LoadModel that changes a loaded
 * model's budget in place, and memory pressure, which shrinks budgets
 * before any model is evicted and grows them back once it is gone.
 *
 * The engine's budget change waits for the model's step in progress and,
 * growing, reads hot clusters from the file, so it runs on a thread of its
 * own, one at a time per model, and reports back through a loop wake-up as
 * loads do. While it runs it holds one use of the model (e->active), so
 * that nothing unloads the model under it. */
#include "models.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "models_internal.h"

struct resize_job {
	struct models *models;
	struct model_entry *entry;
	struct pinfer_model *model;
	uint64_t bytes;
	bool asked;        /* by LoadModel; else memory pressure or its end */
	int status;
	struct pf_err err;
	struct resize_job *next;
};

static double mib(uint64_t bytes)
{
	return (double)bytes / (1 << 20);
}

static bool same_budget(const struct models_budget *a, const struct models_budget *b)
{
	if (a->kind == BUDGET_AUTO || b->kind == BUDGET_AUTO)
		return a->kind == b->kind;
	if (a->kind != b->kind)
		return false;
	return a->kind == BUDGET_NONE || (a->bytes == b->bytes && a->ffn_percent == b->ffn_percent);
}

bool models_parse_budget(const char *s, struct models_budget *out)
{
	struct pinfer_model_params p;
	if (pinfer_memory_budget_parse(s, &p))
		return false;
	*out = (struct models_budget){
		.kind = p.memory_budget || p.ffn_cache_percent ? BUDGET_SET : BUDGET_NONE,
		.bytes = p.memory_budget,
		.ffn_percent = p.ffn_cache_percent,
	};
	return true;
}

const char *models_budget_name(const struct models_budget *b, char *buf, size_t size)
{
	if (b->kind != BUDGET_SET)
		snprintf(buf, size, "%s", b->kind == BUDGET_AUTO ? "auto" : "none");
	else if (b->ffn_percent == PINFER_FFN_CACHE_MIN)
		snprintf(buf, size, "min");
	else if (b->ffn_percent)
		snprintf(buf, size, "%d%%ffn", b->ffn_percent);
	else
		snprintf(buf, size, "%llu", (unsigned long long)b->bytes);
	return buf;
}

bool models_offload(const struct model_entry *e, struct models_offload *out)
{
	*out = (struct models_offload){ 0 };
	if (e->state != MODEL_LOADED || !e->budget_bytes)
		return false;
	if (e->resizing) {
		/* The engine's figures wait for the change, which may read
		 * for a long time: the loop does not. */
		*out = e->offload_then;
		out->budget = e->mem_bytes;
		return true;
	}
	struct pinfer_offload_stats st;
	if (!pinfer_model_offload_stats(e->model, &st))
		return false;
	out->budget = st.budget;
	out->cache_bytes = st.cache_bytes;
	out->hit_rate = st.hits + st.misses ? (double)st.hits / (double)(st.hits + st.misses) : 0.0;
	out->bytes_read_per_token = e->tokens_generated ? (double)st.bytes_read / (double)e->tokens_generated : 0.0;
	return true;
}

void models_offload_loaded(struct model_entry *e)
{
	struct pinfer_offload_stats st;
	e->budget_bytes = pinfer_model_offload_stats(e->model, &st) ? st.budget : 0;
	e->squeeze = 0;
}

bool models_budget_changing(const struct model_entry *e)
{
	return e->resize_asked;
}

/* What e->budget, a size or min, is in bytes now. */
static uint64_t budget_in_bytes(const struct model_entry *e)
{
	struct pinfer_offload_stats st;
	if (e->budget.ffn_percent != PINFER_FFN_CACHE_MIN || !pinfer_model_offload_stats(e->model, &st))
		return e->budget.bytes;
	return st.minimum;
}

/* ---- changes on a thread ---- */

static void *resize_main(void *arg)
{
	struct resize_job *job = arg;
	struct models *m = job->models;
	job->status = pinfer_model_set_memory_budget(job->model, job->bytes, &job->err);
	pthread_mutex_lock(&m->lock);
	job->next = m->resized;
	m->resized = job;
	/* Posted before this job stops counting: once resizing reaches 0,
	 * models_free may free m and its wake-up. */
	loop_wake_post(m->resize_wake);
	m->resizing--;
	pthread_cond_broadcast(&m->idle);
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

/* Starts changing e's budget to bytes; 0 or a negative errno. */
static int resize_start(struct models *m, struct model_entry *e, uint64_t bytes, bool asked)
{
	struct models_offload then;
	if (!models_offload(e, &then))
		return -EINVAL;
	struct resize_job *job = calloc(1, sizeof(*job));
	if (!job)
		return -ENOMEM;
	*job = (struct resize_job){ .models = m, .entry = e, .model = e->model, .bytes = bytes, .asked = asked };
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	pthread_mutex_lock(&m->lock);
	m->resizing++;
	int r = pthread_create(&t, &attr, resize_main, job);
	if (r)
		m->resizing--;
	pthread_mutex_unlock(&m->lock);
	pthread_attr_destroy(&attr);
	if (r) {
		free(job);
		return -r;
	}
	e->offload_then = then;
	e->resizing = true;
	/* A growing budget holds its room from now: a load meanwhile must not
	 * take it. */
	e->mem_reserved = bytes > e->mem_bytes ? bytes - e->mem_bytes : 0;
	e->active++;
	return 0;
}

/* Gives back the use the change held, without restarting the keep-alive
 * countdown of a model that was counting down: that starts anew only when
 * none runs (requests ended during the change, or it expired meanwhile). */
static void resize_release(struct models *m, struct model_entry *e)
{
	if (e->active == 1 && !e->expiry_timer && e->expires_at_unix_ms >= 0)
		models_release(m, e);
	else
		e->active--;
}

static void restore(struct models *m, struct model_entry *e);

static void resize_done(struct models *m, struct resize_job *job)
{
	struct model_entry *e = job->entry;
	char why[PF_ERR_MAX], name[32];
	snprintf(why, sizeof(why), "model %s: %s", e->name, job->err.msg);
	e->resizing = false;
	e->mem_reserved = 0;
	struct pinfer_offload_stats st;
	pinfer_model_offload_stats(e->model, &st);
	e->mem_bytes = st.budget;
	if (job->asked) {
		e->resize_asked = false;
		if (job->status) {
			e->budget = e->budget_before;
			log_error("model %s: the memory budget stays %llu bytes: %s", e->name,
				  (unsigned long long)st.budget, job->err.msg);
		} else {
			e->budget_bytes = st.budget;
			e->squeeze = 0;
			log_info("model %s: memory budget %s (%.1f MiB)", e->name,
				 models_budget_name(&e->budget, name, sizeof(name)), mib(st.budget));
		}
	} else if (job->status) {
		log_warn("model %s: the memory budget stays %llu bytes: %s", e->name, (unsigned long long)st.budget,
			 job->err.msg);
	} else if (e->squeeze) {
		log_info("model %s: memory budget %.1f MiB under memory pressure (%.1f MiB asked for)", e->name,
			 mib(st.budget), mib(e->budget_bytes));
	} else {
		log_info("model %s: memory budget grown back to %.1f MiB", e->name, mib(st.budget));
	}
	bool asked = job->asked;
	int status = job->status;
	free(job);
	resize_release(m, e);
	if (e->resize_asked) {
		/* A LoadModel came while pressure changed the budget: its turn.
		 * Its callers hold uses of the model, so it is still loaded. */
		int r = resize_start(m, e, budget_in_bytes(e), true);
		if (!r)
			return;
		e->resize_asked = false;
		e->budget = e->budget_before;
		snprintf(why, sizeof(why), "model %s: cannot change the memory budget: %s", e->name, strerror(-r));
		m->load_done(m->load_done_data, e, -ENOMEM, why);
		return;
	}
	if (e->state == MODEL_LOADED && e->squeeze && !m->restore_timer)
		restore(m, e);  /* the pressure ended while this ran */
	if (asked)
		m->load_done(m->load_done_data, e, status, status ? why : NULL);
}

static void on_resize_wake(struct loop *l, void *data)
{
	(void)l;
	struct models *m = data;
	pthread_mutex_lock(&m->lock);
	struct resize_job *done = m->resized;
	m->resized = NULL;
	pthread_mutex_unlock(&m->lock);
	while (done) {
		struct resize_job *next = done->next;
		resize_done(m, done);
		done = next;
	}
}

int models_offload_init(struct models *m)
{
	if (!m->cfg.restore_ms)
		m->cfg.restore_ms = MODELS_RESTORE_MS;
	return loop_wake_new(m->loop, &m->resize_wake, on_resize_wake, m);
}

void models_offload_free(struct models *m)
{
	while (m->resized) {
		struct resize_job *next = m->resized->next;
		free(m->resized);
		m->resized = next;
	}
	loop_timer_cancel(m->loop, m->restore_timer);
	m->restore_timer = 0;
	loop_wake_free(m->resize_wake);
	m->resize_wake = NULL;
}

/* ---- LoadModel ---- */

int models_want_budget(struct models *m, struct model_entry *e, const struct models_budget *b, char *why,
		       size_t why_size)
{
	char have[32], want[32];
	if (b->kind == BUDGET_AUTO)
		return 0;
	if (e->state == MODEL_UNLOADED) {
		e->budget = *b;
		return 0;
	}
	if (e->resize_asked) {
		if (same_budget(&e->budget, b))
			return MODELS_BUDGET_CHANGING;
		snprintf(why, why_size, "model %s is changing its memory budget to %s; ask again once that ends",
			 e->name, models_budget_name(&e->budget, have, sizeof(have)));
		return -EBUSY;
	}
	if (same_budget(&e->budget, b))
		return 0;
	models_budget_name(&e->budget, have, sizeof(have));
	models_budget_name(b, want, sizeof(want));
	if (e->state == MODEL_LOADING || !e->budget_bytes) {
		snprintf(why, why_size, "model %s is %s with memory budget %s; unload it to change that", e->name,
			 e->state == MODEL_LOADING ? "being loaded" : "loaded", have);
		return -EBUSY;
	}
	if (b->kind == BUDGET_NONE) {
		snprintf(why, why_size, "model %s is loaded with memory budget %s; none (all in memory) takes an unload",
			 e->name, have);
		return -EBUSY;
	}
	/* A change under way (memory pressure) holds the engine's figures:
	 * this one's minimum is known, and checked, when its turn comes. */
	uint64_t minimum = 0;
	struct pinfer_offload_stats st;
	if (!e->resizing && pinfer_model_offload_stats(e->model, &st))
		minimum = st.minimum;
	uint64_t bytes = b->bytes;
	if (b->ffn_percent == PINFER_FFN_CACHE_MIN)
		bytes = minimum;
	else if (b->ffn_percent && pinfer_model_percent_budget(e->model, b->ffn_percent, &bytes, NULL))
		bytes = 0;
	if (bytes < minimum) {
		snprintf(why, why_size, "model %s: a memory budget of %llu bytes is below its minimum of %llu", e->name,
			 (unsigned long long)bytes, (unsigned long long)minimum);
		return -ENOMEM;
	}
	if (bytes > e->mem_bytes && !models_make_room(m, e, bytes - e->mem_bytes, false, why, why_size))
		return -ENOMEM;
	e->budget_before = e->budget;
	e->budget = *b;
	e->resize_asked = true;
	log_info("model %s: changing the memory budget from %s to %s", e->name, have, want);
	if (e->resizing)
		return MODELS_BUDGET_CHANGING;  /* started when the running one ends */
	int r = resize_start(m, e, bytes, true);
	if (r) {
		e->resize_asked = false;
		e->budget = e->budget_before;
		snprintf(why, why_size, "model %s: cannot change the memory budget: %s", e->name, strerror(-r));
		return -ENOMEM;
	}
	return MODELS_BUDGET_CHANGING;
}

/* ---- memory pressure ---- */

/* The budget step k (1..MODELS_SQUEEZE_STEPS) of pressure sets. */
static uint64_t squeezed(uint64_t asked, uint64_t minimum, int k)
{
	if (asked <= minimum || k >= MODELS_SQUEEZE_STEPS)
		return minimum;
	return minimum + ((asked - minimum) >> k);
}

static void restore(struct models *m, struct model_entry *e)
{
	struct pinfer_offload_stats st;
	e->squeeze = 0;
	if (!pinfer_model_offload_stats(e->model, &st) || st.budget >= e->budget_bytes)
		return;
	uint64_t used = models_used_bytes(m);
	uint64_t free_bytes = m->cfg.budget_bytes > used ? m->cfg.budget_bytes - used : 0;
	uint64_t bytes = e->budget_bytes - st.budget > free_bytes ? st.budget + free_bytes : e->budget_bytes;
	if (bytes < e->budget_bytes)
		log_warn("model %s: memory budget grows back to %.1f MiB of the %.1f MiB asked for: the rest of the daemon's budget is taken",
			 e->name, mib(bytes), mib(e->budget_bytes));
	if (bytes <= st.budget)
		return;
	int r = resize_start(m, e, bytes, false);
	if (r)
		log_warn("model %s: cannot grow the memory budget back: %s", e->name, strerror(-r));
}

static void on_restore(struct loop *l, void *data)
{
	(void)l;
	struct models *m = data;
	m->restore_timer = 0;
	log_info("no memory pressure for %llu ms: growing shrunk memory budgets back",
		 (unsigned long long)m->cfg.restore_ms);
	/* One still changing is restored once its change ends. */
	for (struct model_entry *e = m->entries; e; e = e->next)
		if (e->state == MODEL_LOADED && e->squeeze && !e->resizing)
			restore(m, e);
}

void models_pressure(struct models *m, struct models_relief *out)
{
	*out = (struct models_relief){ 0 };
	for (struct model_entry *e = m->entries; e; e = e->next) {
		if (e->state != MODEL_LOADED || !e->budget_bytes)
			continue;
		if (e->resizing || e->resize_asked) {
			out->changing++;
			continue;
		}
		struct pinfer_offload_stats st;
		if (!pinfer_model_offload_stats(e->model, &st) || st.budget <= st.minimum)
			continue;
		/* The first step below what it has now (a restore that found
		 * too little room leaves it between steps). */
		int k = e->squeeze < MODELS_SQUEEZE_STEPS ? e->squeeze + 1 : MODELS_SQUEEZE_STEPS;
		while (k < MODELS_SQUEEZE_STEPS && squeezed(e->budget_bytes, st.minimum, k) >= st.budget)
			k++;
		int r = resize_start(m, e, squeezed(e->budget_bytes, st.minimum, k), false);
		if (r) {
			log_warn("model %s: cannot shrink the memory budget: %s", e->name, strerror(-r));
			continue;
		}
		e->squeeze = k;
		out->shrunk++;
	}
	if (!out->shrunk && !out->changing)
		out->evicted = models_evict_idle(m);
	loop_timer_cancel(m->loop, m->restore_timer);
	m->restore_timer = loop_timer_add(m->loop, m->cfg.restore_ms, on_restore, m);
}
