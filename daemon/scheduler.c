#include "scheduler.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"

struct sched {
	const struct pinfer_model *model;
	struct sched_config cfg;
	struct pinfer_threads *threads;
	struct slot *slots;
	sched_notify_fn notify;
	void *notify_data;
	pthread_t worker;
	bool worker_started;

	pthread_mutex_t lock;   /* guards the fields below and slot->gen pointers */
	pthread_cond_t work;
	struct request *queue_head, *queue_tail;
	int queued;
	int busy;
	bool stopping;
	int next;               /* slot the round-robin visits next */
};

/* Under the lock: the idle slot whose cache shares the longest prefix with
 * the request's tokens (ties: the lowest index), or -1. */
static int pick_slot(struct sched *s, const int32_t *tokens, int n)
{
	int best = -1, best_len = -1;
	for (int i = 0; i < s->cfg.n_slots; i++) {
		if (s->slots[i].gen)
			continue;
		int len = gen_shared_prefix(&s->slots[i], tokens, n);
		if (len > best_len) {
			best = i;
			best_len = len;
		}
	}
	return best;
}

/* Moves queued requests into idle slots; called and returns with the
 * lock held. Tokenizing happens here, on the worker, and without the lock,
 * so a long prompt never stalls the event loop (which takes the lock to
 * submit, cancel and report). Only the worker changes slots, so an idle
 * slot picked stays idle. Requests that fail to start are collected for
 * notification. */
static void fill_slots(struct sched *s, struct request **failed)
{
	while (s->queue_head && s->busy < s->cfg.n_slots) {
		struct request *r = s->queue_head;
		s->queue_head = r->queue_next;
		if (!s->queue_head)
			s->queue_tail = NULL;
		s->queued--;
		r->queue_next = NULL;
		s->busy++;  /* reserved, so submissions still see the slot taken */
		pthread_mutex_unlock(&s->lock);
		int32_t *tokens;
		int n = gen_tokenize(s->model, r, &tokens);
		bool started = false;
		if (n > 0) {
			pthread_mutex_lock(&s->lock);
			int slot = pick_slot(s, tokens, n);
			pthread_mutex_unlock(&s->lock);
			started = gen_start(&s->slots[slot], s->model, r, tokens, n) == 0;
		}
		pthread_mutex_lock(&s->lock);
		if (started) {
			request_unref(r);  /* the generation holds its own reference */
			continue;
		}
		s->busy--;
		r->queue_next = *failed;
		*failed = r;
	}
}

static void notify_list(struct sched *s, struct request *list)
{
	while (list) {
		struct request *next = list->queue_next;
		list->queue_next = NULL;
		s->notify(s->notify_data, list);
		request_unref(list);
		list = next;
	}
}

static void *worker_main(void *arg)
{
	struct sched *s = arg;
	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct request *failed = NULL;
		fill_slots(s, &failed);
		if (failed) {
			pthread_mutex_unlock(&s->lock);
			notify_list(s, failed);
			pthread_mutex_lock(&s->lock);
			continue;
		}
		if (s->stopping && s->busy == 0)
			break;
		if (s->busy == 0) {
			pthread_cond_wait(&s->work, &s->lock);
			continue;
		}
		int i = s->next;
		while (!s->slots[i].gen)
			i = (i + 1) % s->cfg.n_slots;
		s->next = (i + 1) % s->cfg.n_slots;
		struct slot *slot = &s->slots[i];
		struct request *r = slot->gen->req;
		request_ref(r);
		if (s->stopping)
			atomic_store(&r->cancel, true);
		/* Only the worker changes a busy slot, so it runs unlocked. */
		pthread_mutex_unlock(&s->lock);
		bool finished = gen_step(slot);
		/* The slot counts as free before the client hears the request
		 * is done, so a Status it sends next never sees it busy. */
		if (finished) {
			pthread_mutex_lock(&s->lock);
			s->busy--;
			pthread_mutex_unlock(&s->lock);
		}
		s->notify(s->notify_data, r);
		request_unref(r);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void ctx_params(const struct sched_config *c, struct pinfer_threads *threads,
		       struct pinfer_ctx_params *cp)
{
	pinfer_ctx_params_default(cp);
	cp->n_ctx = c->n_ctx;
	cp->kv_type = c->kv_type;
	cp->n_batch = c->n_batch;
	cp->n_threads = c->n_threads;
	cp->threads = threads;
}

uint64_t sched_estimate_bytes(const struct pinfer_model *m, const struct sched_config *c)
{
	struct pinfer_ctx_params cp;
	ctx_params(c, NULL, &cp);
	/* a slot also keeps the list of the tokens its cache holds: at most
	 * the training context */
	uint64_t n_ctx = (uint64_t)pinfer_model_info(m)->n_ctx_train;
	return (uint64_t)c->n_slots * (pinfer_ctx_estimate_bytes(m, &cp) + n_ctx * sizeof(int32_t));
}

int sched_new(struct sched **out, const struct pinfer_model *m, const struct sched_config *c,
	      sched_notify_fn notify, void *data, struct pf_err *err)
{
	*out = NULL;
	if (c->n_slots < 1 || c->queue_max < 0)
		return pf_errf(err, -EINVAL, "a model needs at least one slot");
	struct sched *s = calloc(1, sizeof(*s));
	if (!s)
		return pf_errf(err, -ENOMEM, "out of memory");
	s->model = m;
	s->cfg = *c;
	s->notify = notify;
	s->notify_data = data;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->work, NULL);
	int r = pinfer_threads_new(&s->threads, c->n_threads);
	if (r) {
		pf_errf(err, r, "cannot start compute threads");
		goto fail;
	}
	s->slots = calloc((size_t)c->n_slots, sizeof(*s->slots));
	if (!s->slots) {
		r = pf_errf(err, -ENOMEM, "out of memory");
		goto fail;
	}
	struct pinfer_ctx_params cp;
	ctx_params(c, s->threads, &cp);
	for (int i = 0; i < c->n_slots; i++) {
		struct slot *slot = &s->slots[i];
		slot->notify = notify;
		slot->notify_data = data;
		if ((r = pinfer_ctx_new(&slot->ctx, m, &cp, err)))
			goto fail;
		slot->cached = malloc((size_t)pinfer_ctx_size(slot->ctx) * sizeof(int32_t));
		if (!slot->cached) {
			r = pf_errf(err, -ENOMEM, "out of memory");
			goto fail;
		}
	}
	if ((r = -pthread_create(&s->worker, NULL, worker_main, s))) {
		pf_errf(err, r, "cannot start the model's worker thread");
		goto fail;
	}
	s->worker_started = true;
	*out = s;
	return 0;
fail:
	sched_free(s);
	return r;
}

void sched_free(struct sched *s)
{
	if (!s)
		return;
	if (s->worker_started) {
		pthread_mutex_lock(&s->lock);
		s->stopping = true;
		struct request *queued = s->queue_head;
		s->queue_head = s->queue_tail = NULL;
		s->queued = 0;
		/* Running generations are not touched here: the worker owns
		 * them and cancels each at its next step once it sees stopping. */
		pthread_cond_signal(&s->work);
		pthread_mutex_unlock(&s->lock);
		for (struct request *r = queued; r; r = r->queue_next)
			request_finish(r, DONE_CANCELLED, NULL, NULL);
		notify_list(s, queued);
		pthread_join(s->worker, NULL);
	}
	if (s->slots)
		for (int i = 0; i < s->cfg.n_slots; i++) {
			pinfer_ctx_free(s->slots[i].ctx);
			free(s->slots[i].cached);
		}
	free(s->slots);
	pinfer_threads_free(s->threads);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->work);
	free(s);
}

int sched_submit(struct sched *s, struct request *r)
{
	pthread_mutex_lock(&s->lock);
	if (s->stopping || s->busy + s->queued >= s->cfg.n_slots + s->cfg.queue_max) {
		pthread_mutex_unlock(&s->lock);
		return -EBUSY;
	}
	request_ref(r);
	r->queue_next = NULL;
	if (s->queue_tail)
		s->queue_tail->queue_next = r;
	else
		s->queue_head = r;
	s->queue_tail = r;
	s->queued++;
	pthread_cond_signal(&s->work);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void sched_cancel(struct sched *s, struct request *r)
{
	atomic_store(&r->cancel, true);
	pthread_mutex_lock(&s->lock);
	struct request **p = &s->queue_head, *prev = NULL;
	while (*p && *p != r) {
		prev = *p;
		p = &(*p)->queue_next;
	}
	bool was_queued = *p == r;
	if (was_queued) {
		*p = r->queue_next;
		if (s->queue_tail == r)
			s->queue_tail = prev;
		r->queue_next = NULL;
		s->queued--;
	}
	pthread_mutex_unlock(&s->lock);
	if (was_queued) {
		request_finish(r, DONE_CANCELLED, NULL, NULL);
		s->notify(s->notify_data, r);
		request_unref(r);
	}
}

void sched_stats(struct sched *s, struct sched_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&s->lock);
	out->slots = s->cfg.n_slots;
	out->n_ctx = pinfer_ctx_size(s->slots[0].ctx);
	out->busy = s->busy;
	out->queued = s->queued;
	pthread_mutex_unlock(&s->lock);
}
