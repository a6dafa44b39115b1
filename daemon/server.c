#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "log.h"
#include "notify.h"
#include "pressure.h"
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
	bus_before_sleep(s->bus);
	conn_flush_all(s);
	/* Every change of what is loaded or running passes through a loop
	 * iteration, so recomputing here keeps STATUS= current without hooks
	 * in the models and the scheduler; notify_status() drops repeats. */
	char status[128];
	server_status_text(s, status, sizeof(status));
	notify_status(status);
}

/* The system runs short of memory: offloaded models' budgets shrink, then
 * what no request uses goes, before the kernel picks a process to kill,
 * likely this one, the largest. */
static void on_pressure(void *data)
{
	struct server *s = data;
	struct models_relief r;
	models_pressure(s->models, &r);
	if (r.shrunk || r.changing)
		log_info("memory pressure (%s): %d memory budget%s shrinking, %d still changing",
			 pressure_source(s->pressure), r.shrunk, r.shrunk == 1 ? "" : "s", r.changing);
	else
		log_info("memory pressure (%s): %d idle model%s evicted", pressure_source(s->pressure), r.evicted,
			 r.evicted == 1 ? "" : "s");
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
	if ((r = access_new(&s->access, l, NULL)))
		return pf_errf(err, r, "cannot set up access checks: %s", strerror(-r));
	struct models_config mc = {
		.dir = cfg->models_dir,
		.budget_bytes = cfg->memory_budget,
		.keep_alive_ms = cfg->keep_alive_ms,
		.max_loaded = cfg->max_loaded,
		.sparsity = cfg->sparsity,
		.mmap_weights = cfg->mmap_weights,
		.sched = { .n_slots = cfg->slots, .queue_max = cfg->queue, .n_ctx = cfg->ctx_size,
			   .kv_type = cfg->kv_type, .n_batch = cfg->batch, .n_threads = cfg->threads },
	};
	if (cfg->offload_budget[0])
		models_parse_budget(cfg->offload_budget, &mc.offload_budget);  /* checked by config_load */
	r = models_new(&s->models, l, &mc, server_notify, s, server_load_done, s);
	if (r)
		return pf_errf(err, r, "cannot set up the model registry: %s", strerror(-r));
	if ((r = listen_open(s, err)))
		return r;
	if ((r = loop_watch(l, s->listen_fd, LOOP_READ, on_listen, s)))
		return pf_errf(err, r, "cannot watch the listening socket: %s", strerror(-r));
	/* After the socket, before READY=1 (main.c): both ways in are up
	 * when the manager hears the daemon is ready. */
	bus_open(&s->bus, s, cfg->bus);
	struct pf_err perr;
	if (pressure_open(&s->pressure, l, on_pressure, s, &perr))
		log_warn("not watching memory pressure: %s", perr.msg);
	else if (s->pressure)
		log_info("watching memory pressure: %s", pressure_source(s->pressure));
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
	bus_close(s->bus);
	s->bus = NULL;
	/* After the connections and the bus: nothing waits for an answer. */
	access_free(s->access);
	s->access = NULL;
	pressure_close(s->pressure);
	s->pressure = NULL;
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
	return s->requests_in_flight;
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

/* How often the manager hears that stopping goes on, and how much more
 * time each message asks for: a load cannot be cut short, and a phone's
 * flash may take longer than TimeoutStopSec= to deliver a big model. */
#define EXTEND_EVERY_MS 5000
#define EXTEND_BY_USEC 15000000

static void on_extend(struct loop *l, void *data)
{
	struct server *s = data;
	s->extend_timer = 0;
	int loading = models_loading_count(s->models);
	log_info("still stopping: %d request%s, %d load%s to finish", active_requests(s),
		 active_requests(s) == 1 ? "" : "s", loading, loading == 1 ? "" : "s");
	notify_extend_timeout(EXTEND_BY_USEC);
	s->extend_timer = loop_timer_add(l, EXTEND_EVERY_MS, on_extend, s);
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
	/* At once, then periodically, unless nothing is left to wait for. */
	s->extend_timer = loop_timer_add(s->loop, 0, on_extend, s);
	server_check_stopped(s);
}

void server_check_stopped(struct server *s)
{
	if (!s->stopping || active_requests(s) > 0 || models_loading_count(s->models) > 0)
		return;
	loop_timer_cancel(s->loop, s->grace_timer);
	s->grace_timer = 0;
	loop_timer_cancel(s->loop, s->extend_timer);
	s->extend_timer = 0;
	loop_stop(s->loop);
}
