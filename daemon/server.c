#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"
#include "scheduler.h"

static void on_ready(struct loop *l, void *data)
{
	(void)l;
	struct server *s = data;
	/* One at a time under the lock: a worker may put a request back on
	 * the list as soon as its on_ready flag clears. */
	for (;;) {
		pthread_mutex_lock(&s->ready_lock);
		struct request *r = s->ready;
		if (r) {
			s->ready = r->ready_next;
			r->ready_next = NULL;
			r->on_ready = false;
		}
		pthread_mutex_unlock(&s->ready_lock);
		if (!r)
			break;
		server_deliver(s, r);
		request_unref(r);
	}
}

void server_status_text(struct server *s, char *buf, size_t size)
{
	int loading = 0, generating = 0;
	for (struct model_entry *e = models_first(s->models); e; e = e->next)
		loading += e->state == MODEL_LOADING;
	for (struct conn *c = s->conns; c; c = c->next)
		for (struct request *r = c->requests; r; r = r->conn_next)
			generating += r->kind == REQ_GENERATE && !r->waiting;
	int loaded = models_loaded_count(s->models);
	int n = snprintf(buf, size, "%s%d model%s loaded, %d generation%s running",
			 s->stopping ? "stopping: " : "", loaded, loaded == 1 ? "" : "s", generating,
			 generating == 1 ? "" : "s");
	if (loading && n >= 0 && (size_t)n < size)
		snprintf(buf + n, size - (size_t)n, ", %d loading", loading);
}

static void before_sleep(struct loop *l, void *data)
{
	(void)l;
	struct server *s = data;
	conn_flush_all(s);
	/* Every change of what is loaded or running passes through a loop
	 * iteration, so recomputing here keeps STATUS= current without hooks
	 * in the models and the scheduler; notify_status() drops repeats. */
	char status[128];
	server_status_text(s, status, sizeof(status));
	notify_status(status);
}

static void on_listen(struct loop *l, int fd, uint32_t events, void *data)
{
	(void)l;
	(void)fd;
	(void)events;
	conn_accept(data);
}

int server_init(struct server *s, const struct config *cfg, struct loop *l, struct pf_err *err)
{
	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	s->loop = l;
	s->listen_fd = -1;
	s->started_ms = loop_now_ms();
	pthread_mutex_init(&s->ready_lock, NULL);
	int r = loop_wake_new(l, &s->ready_wake, on_ready, s);
	if (r)
		return pf_errf(err, r, "cannot create the worker wake-up: %s", strerror(-r));
	struct models_config mc = {
		.dir = cfg->models_dir,
		.budget_bytes = cfg->memory_budget,
		.keep_alive_ms = cfg->keep_alive_ms,
		.max_loaded = cfg->max_loaded,
		.sched = { .n_slots = cfg->slots, .queue_max = cfg->queue, .n_ctx = cfg->ctx_size,
			   .n_batch = cfg->batch, .n_threads = cfg->threads },
	};
	r = models_new(&s->models, l, &mc, server_notify, s, server_load_done, s);
	if (r)
		return pf_errf(err, r, "cannot set up the model registry: %s", strerror(-r));
	if ((r = listen_open(s, err)))
		return r;
	if ((r = loop_watch(l, s->listen_fd, LOOP_READ, on_listen, s)))
		return pf_errf(err, r, "cannot watch the listening socket: %s", strerror(-r));
	loop_set_before_sleep(l, before_sleep, s);
	return 0;
}

void server_destroy(struct server *s)
{
	listen_close(s);
	/* The last Done frames were queued in the iteration that stopped the
	 * loop; hand them to the sockets before closing them. */
	conn_flush_all(s);
	while (s->conns)
		conn_close(s->conns, "the daemon is stopping");
	/* Cancels whatever still runs; the final notifications land on the
	 * ready list, which is drained below. */
	models_free(s->models);
	s->models = NULL;
	pthread_mutex_lock(&s->ready_lock);
	struct request *list = s->ready;
	s->ready = NULL;
	pthread_mutex_unlock(&s->ready_lock);
	while (list) {
		struct request *next = list->ready_next;
		request_unref(list);
		list = next;
	}
	loop_wake_free(s->ready_wake);
	s->ready_wake = NULL;
	pthread_mutex_destroy(&s->ready_lock);
}

static int active_requests(struct server *s)
{
	int n = 0;
	for (struct conn *c = s->conns; c; c = c->next)
		n += c->n_requests;
	return n;
}

static void cancel_all(struct server *s)
{
	log_info("cancelling %d requests", active_requests(s));
	for (struct conn *c = s->conns; c; c = c->next)
		for (struct request *r = c->requests; r; r = r->conn_next) {
			atomic_store(&r->cancel, true);
			if (r->kind == REQ_GENERATE && !r->waiting && r->model && r->model->sched)
				sched_cancel(r->model->sched, r);
		}
}

static void on_grace_over(struct loop *l, void *data)
{
	(void)l;
	struct server *s = data;
	s->grace_timer = 0;
	cancel_all(s);
	server_check_stopped(s);
}

void server_shutdown(struct server *s)
{
	if (s->stopping)
		return;
	s->stopping = true;
	log_info("shutting down: no new connections; %d requests may finish", active_requests(s));
	listen_close(s);
	if (s->cfg->shutdown_grace_ms) {
		s->grace_timer = loop_timer_add(s->loop, s->cfg->shutdown_grace_ms, on_grace_over, s);
	} else {
		cancel_all(s);
	}
	server_check_stopped(s);
}

void server_check_stopped(struct server *s)
{
	if (!s->stopping || active_requests(s) > 0)
		return;
	loop_timer_cancel(s->loop, s->grace_timer);
	s->grace_timer = 0;
	loop_stop(s->loop);
}
