/* The D-Bus connection of pinferd and its place in the event loop: libdbus
 * tells which fds and timeouts it needs through watch and timeout
 * functions, the loop reports readiness back with dbus_watch_handle, and
 * the messages read are dispatched once per iteration, before the loop
 * sleeps. No blocking call after startup, and at startup none longer than
 * BUS_CONNECT_TIMEOUT_MS: connecting runs on a thread the daemon stops
 * waiting for. */
#include "bus_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "server.h"

/* ---- watches: libdbus may keep several on one fd (read and write) ---- */

static uint32_t watch_events(DBusWatch *w)
{
	if (!dbus_watch_get_enabled(w))
		return 0;
	unsigned flags = dbus_watch_get_flags(w);
	return (flags & DBUS_WATCH_READABLE ? LOOP_READ : 0) | (flags & DBUS_WATCH_WRITABLE ? LOOP_WRITE : 0);
}

static void on_fd(struct loop *l, int fd, uint32_t events, void *data);

/* Points the loop's watch of fd at the union of libdbus's watches on it. */
static bool update_fd(struct bus *b, int fd)
{
	struct loop *l = b->srv->loop;
	uint32_t events = 0;
	bool any = false;
	for (int i = 0; i < b->n_watches; i++)
		if (dbus_watch_get_unix_fd(b->watches[i]) == fd) {
			any = true;
			events |= watch_events(b->watches[i]);
		}
	if (!any) {
		loop_unwatch(l, fd);
		return true;
	}
	int r = loop_modify(l, fd, events);
	if (r == -ENOENT)
		r = loop_watch(l, fd, events, on_fd, b);
	if (r)
		log_error("D-Bus: cannot watch fd %d: %s", fd, strerror(-r));
	return r == 0;
}

static dbus_bool_t add_watch(DBusWatch *w, void *data)
{
	struct bus *b = data;
	if (b->n_watches == b->cap_watches) {
		int cap = b->cap_watches ? 2 * b->cap_watches : 4;
		DBusWatch **grown = realloc(b->watches, (size_t)cap * sizeof(*grown));
		if (!grown)
			return FALSE;
		b->watches = grown;
		b->cap_watches = cap;
	}
	b->watches[b->n_watches++] = w;
	if (update_fd(b, dbus_watch_get_unix_fd(w)))
		return TRUE;
	b->n_watches--;
	return FALSE;
}

static void remove_watch(DBusWatch *w, void *data)
{
	struct bus *b = data;
	for (int i = 0; i < b->n_watches; i++)
		if (b->watches[i] == w) {
			b->watches[i] = b->watches[--b->n_watches];
			update_fd(b, dbus_watch_get_unix_fd(w));
			return;
		}
}

static void toggle_watch(DBusWatch *w, void *data)
{
	update_fd(data, dbus_watch_get_unix_fd(w));
}

static bool watching(struct bus *b, DBusWatch *w)
{
	for (int i = 0; i < b->n_watches; i++)
		if (b->watches[i] == w)
			return true;
	return false;
}

static void on_fd(struct loop *l, int fd, uint32_t events, void *data)
{
	(void)l;
	struct bus *b = data;
	/* Handling one watch may add or remove others: work from a copy and
	 * skip those gone meanwhile. */
	DBusWatch *mine[8];
	int n = 0;
	for (int i = 0; i < b->n_watches && n < 8; i++)
		if (dbus_watch_get_unix_fd(b->watches[i]) == fd)
			mine[n++] = b->watches[i];
	bool hup_told = false;
	for (int i = 0; i < n; i++) {
		if (!watching(b, mine[i]))
			continue;
		unsigned flags = 0;
		if (dbus_watch_get_enabled(mine[i])) {
			unsigned want = dbus_watch_get_flags(mine[i]);
			if ((events & LOOP_READ) && (want & DBUS_WATCH_READABLE))
				flags |= DBUS_WATCH_READABLE;
			if ((events & LOOP_WRITE) && (want & DBUS_WATCH_WRITABLE))
				flags |= DBUS_WATCH_WRITABLE;
		}
		/* A hang-up is reported whatever is watched; libdbus must hear
		 * it (once), or the level-triggered loop reports it forever. */
		if ((events & LOOP_HUP) && !hup_told) {
			flags |= DBUS_WATCH_HANGUP | DBUS_WATCH_ERROR;
			hup_told = true;
		}
		if (flags)
			dbus_watch_handle(mine[i], flags);
	}
}

/* ---- timeouts: libdbus's repeat until removed or disabled ---- */

struct bus_timer {
	struct bus *bus;
	DBusTimeout *timeout;
	uint64_t id;
};

static void on_timer(struct loop *l, void *data);

static bool arm(struct bus_timer *t)
{
	t->id = loop_timer_add(t->bus->srv->loop, (uint64_t)dbus_timeout_get_interval(t->timeout),
			       on_timer, t);
	return t->id != 0;
}

static void on_timer(struct loop *l, void *data)
{
	(void)l;
	struct bus_timer *t = data;
	t->id = 0;
	/* Re-armed first: handling may remove the timeout, which cancels
	 * this, and may free t. */
	if (!arm(t))
		log_error("D-Bus: cannot re-arm a timeout: out of memory");
	dbus_timeout_handle(t->timeout);
}

static dbus_bool_t add_timeout(DBusTimeout *timeout, void *data)
{
	struct bus_timer *t = calloc(1, sizeof(*t));
	if (!t)
		return FALSE;
	t->bus = data;
	t->timeout = timeout;
	if (dbus_timeout_get_enabled(timeout) && !arm(t)) {
		free(t);
		return FALSE;
	}
	dbus_timeout_set_data(timeout, t, free);
	return TRUE;
}

static void remove_timeout(DBusTimeout *timeout, void *data)
{
	struct bus *b = data;
	struct bus_timer *t = dbus_timeout_get_data(timeout);
	if (t) {
		loop_timer_cancel(b->srv->loop, t->id);
		t->id = 0;
	}
}

static void toggle_timeout(DBusTimeout *timeout, void *data)
{
	remove_timeout(timeout, data);
	struct bus_timer *t = dbus_timeout_get_data(timeout);
	if (t && dbus_timeout_get_enabled(timeout) && !arm(t))
		log_error("D-Bus: cannot arm a timeout: out of memory");
}

/* ---- the connection ---- */

static DBusHandlerResult on_filter(DBusConnection *conn, DBusMessage *msg, void *data)
{
	(void)conn;
	struct bus *b = data;
	if (dbus_message_is_signal(msg, DBUS_INTERFACE_LOCAL, "Disconnected")) {
		log_warn("D-Bus: the bus went away; serving the socket only from now on");
		b->lost = true;
		return DBUS_HANDLER_RESULT_HANDLED;
	}
	if (dbus_message_is_signal(msg, DBUS_INTERFACE_DBUS, "NameLost")) {
		log_warn("D-Bus: lost the name %s; serving the socket only from now on", BUS_NAME);
		b->lost = true;
		b->name_lost = true;
		return DBUS_HANDLER_RESULT_HANDLED;
	}
	return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
}

static void disconnect(struct bus *b)
{
	/* Replacing the functions removes every watch and timeout from the
	 * loop before the connection goes. */
	dbus_connection_set_watch_functions(b->conn, NULL, NULL, NULL, NULL, NULL);
	dbus_connection_set_timeout_functions(b->conn, NULL, NULL, NULL, NULL, NULL);
	dbus_connection_close(b->conn);
	dbus_connection_unref(b->conn);
	b->conn = NULL;
}

/* ---- connecting, bounded ---- */

/* How long startup waits for the bus: connecting, authenticating, Hello and
 * RequestName together. A working bus answers in milliseconds, even on a
 * busy phone at boot; one that has not answered in this long is wedged,
 * and the daemon goes on without it (docs/dbus-api.md) rather than keep its
 * socket clients and the service manager waiting. */
#define BUS_CONNECT_TIMEOUT_MS 5000

/* libdbus's calls block without a bound the caller can set: connect(2)
 * waits for as long as a bus that does not accept has a full backlog, and
 * dbus_bus_get_private's Hello for 25 s. So they run on a thread of their
 * own, which the loop thread waits for with a deadline. */
struct connect_job {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;                 /* the thread is finished with the bus */
	bool abandoned;            /* the daemon stopped waiting: the thread cleans up */
	DBusBusType type;
	const char *bus_name;      /* "system" or "session", static */
	DBusConnection *conn;      /* when done: owns the name, or NULL */
	char why[384];             /* when done without conn */
};

static void job_free(struct connect_job *j)
{
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->cond);
	free(j);
}

static void close_conn(DBusConnection *conn)
{
	dbus_connection_close(conn);
	dbus_connection_unref(conn);
}

static void *connect_main(void *arg)
{
	struct connect_job *j = arg;
	char why[sizeof(j->why)] = "";
	DBusError err;
	dbus_error_init(&err);
	/* Private: nothing else in the process may share it or close it. */
	DBusConnection *conn = dbus_bus_get_private(j->type, &err);
	if (!conn) {
		snprintf(why, sizeof(why), "cannot connect to the %s bus: %s", j->bus_name, err.message);
	} else {
		dbus_connection_set_exit_on_disconnect(conn, FALSE);
		int r = dbus_bus_request_name(conn, BUS_NAME, DBUS_NAME_FLAG_DO_NOT_QUEUE, &err);
		if (r != DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER) {
			if (r < 0)
				snprintf(why, sizeof(why), "cannot own %s on the %s bus: %s", BUS_NAME, j->bus_name,
					 err.message);
			else
				snprintf(why, sizeof(why), "%s is already owned on the %s bus (another pinferd?)",
					 BUS_NAME, j->bus_name);
			close_conn(conn);
			conn = NULL;
		}
	}
	dbus_error_free(&err);
	pthread_mutex_lock(&j->lock);
	bool abandoned = j->abandoned;
	if (!abandoned) {
		j->conn = conn;
		memcpy(j->why, why, sizeof(why));
		j->done = true;
		pthread_cond_signal(&j->cond);
	}
	pthread_mutex_unlock(&j->lock);
	/* Too late: a bus that answers now is left at once (releasing the
	 * name), since the daemon already told the manager it is ready
	 * without it. */
	if (abandoned) {
		if (conn)
			close_conn(conn);
		job_free(j);
	}
	return NULL;
}

/* A private connection to the bus that owns BUS_NAME, or NULL with why
 * (and *wedged when the bus did not answer in time). */
static DBusConnection *connect_bounded(enum config_bus which, char *why, size_t why_size, bool *wedged)
{
	*wedged = false;
	const char *bus_name = config_bus_name(which);
	struct connect_job *j = calloc(1, sizeof(*j));
	if (!j) {
		snprintf(why, why_size, "out of memory");
		return NULL;
	}
	j->type = which == CONFIG_BUS_SESSION ? DBUS_BUS_SESSION : DBUS_BUS_SYSTEM;
	j->bus_name = bus_name;
	pthread_condattr_t ca;
	int r = pthread_condattr_init(&ca);
	if (r) {
		free(j);
		snprintf(why, why_size, "cannot set up the connection: %s", strerror(r));
		return NULL;
	}
	/* Monotonic: a clock set at boot must not stretch the wait. */
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&j->lock, NULL);
	r = pthread_cond_init(&j->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (r) {
		pthread_mutex_destroy(&j->lock);
		free(j);
		snprintf(why, why_size, "cannot set up the connection: %s", strerror(r));
		return NULL;
	}
	pthread_t t;
	if ((r = pthread_create(&t, NULL, connect_main, j))) {
		job_free(j);
		snprintf(why, why_size, "cannot start connecting: %s", strerror(r));
		return NULL;
	}
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += BUS_CONNECT_TIMEOUT_MS / 1000;
	deadline.tv_nsec += (long)(BUS_CONNECT_TIMEOUT_MS % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&j->lock);
	while (!j->done && pthread_cond_timedwait(&j->cond, &j->lock, &deadline) != ETIMEDOUT)
		;
	/* done is read again under the lock: the thread may have finished
	 * just as the wait timed out. */
	bool done = j->done;
	if (!done)
		j->abandoned = true;
	pthread_mutex_unlock(&j->lock);
	if (!done) {
		/* The thread may stay in connect(2) for good: it is left to end
		 * (and free j) on its own, or with the process. */
		pthread_detach(t);
		*wedged = true;
		snprintf(why, why_size,
			 "the %s bus did not answer within %d s (connecting to it and taking %s); "
			 "restart pinferd once the bus works",
			 bus_name, BUS_CONNECT_TIMEOUT_MS / 1000, BUS_NAME);
		return NULL;
	}
	pthread_join(t, NULL);
	DBusConnection *conn = j->conn;
	if (!conn)
		snprintf(why, why_size, "%s", j->why);
	job_free(j);
	return conn;
}

void bus_open(struct bus **out, struct server *s, enum config_bus which)
{
	*out = NULL;
	if (which == CONFIG_BUS_NONE)
		return;
	const char *bus_name = config_bus_name(which);
	struct bus *b = calloc(1, sizeof(*b));
	if (!b) {
		log_warn("D-Bus off: out of memory");
		return;
	}
	b->srv = s;
	char why[512];
	bool wedged;
	b->conn = connect_bounded(which, why, sizeof(why), &wedged);
	if (!b->conn) {
		/* An error, not a warning, when the bus is there but wedged: the
		 * daemon will not try again, and whoever relies on the name
		 * needs someone to look. */
		if (wedged)
			log_error("D-Bus off: %s", why);
		else
			log_warn("D-Bus off: %s", why);
		free(b);
		return;
	}
	static const DBusObjectPathVTable vtable = { .message_function = bus_handle_message };
	if (!dbus_connection_add_filter(b->conn, on_filter, b, NULL) ||
	    !dbus_connection_register_fallback(b->conn, "/", &vtable, b) ||
	    !dbus_connection_set_watch_functions(b->conn, add_watch, remove_watch, toggle_watch, b, NULL) ||
	    !dbus_connection_set_timeout_functions(b->conn, add_timeout, remove_timeout, toggle_timeout, b,
						   NULL)) {
		log_warn("D-Bus off: out of memory setting up the connection");
		disconnect(b);
		free(b->watches);
		free(b);
		return;
	}
	b->memory_budget = models_budget_bytes(s->models);
	log_info("D-Bus: %s on the %s bus", BUS_NAME, bus_name);
	*out = b;
}

/* Sends what is queued, for at most a second: at exit, a bus that stopped
 * reading must not hold the daemon up. */
static void flush_bounded(struct bus *b)
{
	uint64_t end = loop_now_ms() + 1000;
	while (dbus_connection_has_messages_to_send(b->conn) && loop_now_ms() < end &&
	       dbus_connection_read_write(b->conn, 100))
		;
}

static void fail_calls(struct bus *b, struct bus_call **list, const char *why)
{
	while (*list) {
		struct bus_call *c = *list;
		*list = c->next;
		if (c->pending)
			dbus_pending_call_cancel(c->pending);
		bus_reply_error(b, c->msg, BUS_ERROR_PREFIX "Busy", "%s", why);
		if (list == &b->loading) {
			struct model_entry *e = models_find(b->srv->models, c->name);
			if (e)
				models_release(b->srv->models, e);
		}
		bus_call_free(c);
	}
}

void bus_close(struct bus *b)
{
	if (!b)
		return;
	if (b->conn) {
		fail_calls(b, &b->asking, "the daemon is stopping");
		fail_calls(b, &b->loading, "the daemon is stopping");
		/* At exit only: the replies just queued should reach the callers. */
		flush_bounded(b);
		disconnect(b);
	}
	free(b->watches);
	free(b->objects);
	free(b);
}

void bus_before_sleep(struct bus *b)
{
	if (!b || !b->conn)
		return;
	while (!b->lost && dbus_connection_get_dispatch_status(b->conn) == DBUS_DISPATCH_DATA_REMAINS)
		dbus_connection_dispatch(b->conn);
	if (b->lost && b->name_lost) {
		/* The connection still works: the waiting callers hear why. */
		fail_calls(b, &b->asking, "the daemon left the bus");
		fail_calls(b, &b->loading, "the daemon left the bus");
		flush_bounded(b);
	}
	if (b->lost) {
		/* Nobody can be answered any more; the models they held are
		 * released. */
		for (struct bus_call *c = b->loading; c; c = c->next) {
			struct model_entry *e = models_find(b->srv->models, c->name);
			if (e)
				models_release(b->srv->models, e);
		}
		while (b->asking) {
			struct bus_call *c = b->asking;
			b->asking = c->next;
			/* A call waiting for the user database has no pending call;
			 * bus_call_free stops that wait. */
			if (c->pending)
				dbus_pending_call_cancel(c->pending);
			bus_call_free(c);
		}
		while (b->loading) {
			struct bus_call *c = b->loading;
			b->loading = c->next;
			bus_call_free(c);
		}
		disconnect(b);
		return;
	}
	bus_sync(b);
}
