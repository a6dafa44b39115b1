/* The methods that change what is loaded (LoadModel, EvictModel and
 * Model.Evict) and ListModels. Each replies exactly once, when its work is
 * done: LoadModel after the load. Those that change anything first ask the
 * bus who is calling (GetConnectionUnixUser), then whether that user may
 * (access.h), neither blocking the loop. */
#include "bus_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "frame.h"
#include "log.h"
#include "server.h"

void bus_send(struct bus *b, DBusMessage *m)
{
	if (!m || !dbus_connection_send(b->conn, m, NULL))
		log_error("D-Bus: out of memory sending a message");
	if (m)
		dbus_message_unref(m);
}

void bus_send_reply(struct bus *b, DBusMessage *msg, DBusMessage *reply, bool complete)
{
	if (complete) {
		bus_send(b, reply);
		return;
	}
	if (reply)
		dbus_message_unref(reply);
	bus_reply_error(b, msg, DBUS_ERROR_NO_MEMORY, "out of memory building the reply");
}

void bus_reply_error(struct bus *b, DBusMessage *msg, const char *name, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	/* libdbus aborts the process on a string that is not UTF-8, and the
	 * text may quote a caller's bytes or be cut inside a character: such
	 * bytes become '?'. */
	for (size_t i = 0; text[i];) {
		size_t n = 1;
		while (n < 4 && text[i + n] && !proto_utf8_valid(text + i, n))
			n++;
		if (proto_utf8_valid(text + i, n)) {
			i += n;
		} else {
			text[i] = '?';
			i++;
		}
	}
	if (!dbus_message_get_no_reply(msg))
		bus_send(b, dbus_message_new_error(msg, name, text));
}

#define ERR(what) BUS_ERROR_PREFIX what

void bus_call_free(struct bus_call *c)
{
	if (!c)
		return;
	/* However the call ends, its answer from the user database, if any
	 * is awaited, must not come back to it. */
	access_cancel(&c->access_wait);
	if (c->pending)
		dbus_pending_call_unref(c->pending);
	dbus_message_unref(c->msg);
	free(c);
}

static void unlink_call(struct bus_call **list, struct bus_call *c)
{
	for (struct bus_call **p = list; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			return;
		}
}

static void reply_path(struct bus *b, DBusMessage *msg, uint64_t seq)
{
	char path[96];
	bus_object_path(path, sizeof(path), seq);
	const char *p = path;
	DBusMessage *r = dbus_message_new_method_return(msg);
	if (r && !dbus_message_append_args(r, DBUS_TYPE_OBJECT_PATH, &p, DBUS_TYPE_INVALID)) {
		dbus_message_unref(r);
		r = NULL;
	}
	bus_send(b, r);
}

static void reply_empty(struct bus *b, DBusMessage *msg)
{
	bus_send(b, dbus_message_new_method_return(msg));
}

/* The model of that name (rescanning the directory for new files), or NULL
 * after replying NotFound. */
static struct model_entry *find_model(struct bus *b, DBusMessage *msg, const char *name)
{
	struct models *models = b->srv->models;
	struct model_entry *e = models_find(models, name);
	if (!e) {
		models_scan(models);
		e = models_find(models, name);
	}
	if (!e)
		bus_reply_error(b, msg, ERR("NotFound"), "no model named '%s' in %s", name,
				b->srv->cfg->models_dir);
	return e;
}

static void finish_load_call(struct bus *b, struct bus_call *c, struct model_entry *e, int status,
			     const char *error)
{
	if (status) {
		bus_reply_error(b, c->msg, status == -ENOMEM ? ERR("OutOfMemory") : ERR("LoadFailed"), "%s",
				error ? error : "the model could not be loaded");
	} else if (c->max_bytes && e->mem_bytes > c->max_bytes) {
		/* A load this call joined, started without its limit. */
		bus_reply_error(b, c->msg, ERR("OutOfMemory"), "model %s takes %llu bytes, more than the %llu asked for",
				e->name, (unsigned long long)e->mem_bytes, (unsigned long long)c->max_bytes);
	} else {
		/* InterfacesAdded before the reply. */
		bus_sync(b);
		reply_path(b, c->msg, e->load_seq);
	}
	models_release(b->srv->models, e);
	bus_call_free(c);
}

void bus_load_done(struct bus *b, struct model_entry *e, int status, const char *error)
{
	if (!b || !b->conn)
		return;
	for (struct bus_call **p = &b->loading; *p;) {
		struct bus_call *c = *p;
		if (strcmp(c->name, e->name)) {
			p = &c->next;
			continue;
		}
		*p = c->next;
		finish_load_call(b, c, e, status, error);
	}
}

/* LoadModel, once the caller is known to be allowed. Keeps c or frees it. */
static void run_load(struct bus *b, struct bus_call *c)
{
	struct models *models = b->srv->models;
	if (b->srv->stopping) {
		bus_reply_error(b, c->msg, ERR("Busy"), "the daemon is shutting down");
		bus_call_free(c);
		return;
	}
	struct model_entry *e = find_model(b, c->msg, c->name);
	if (!e) {
		bus_call_free(c);
		return;
	}
	if (models_want_sparsity(e, c->sparsity)) {
		bus_reply_error(b, c->msg, ERR("Busy"), "model %s is %s with sparsity %s; evict it to change that",
				e->name, e->state == MODEL_LOADED ? "loaded" : "being loaded",
				pinfer_sparsity_name(e->state == MODEL_LOADED ? pinfer_model_info(e->model)->sparsity
									      : e->sparsity));
		bus_call_free(c);
		return;
	}
	/* A loaded model's budget may start changing now (after the sparsity,
	 * which then refuses nothing more); the call waits for that as for a
	 * load, and max-memory is checked against the new budget when it
	 * ends. */
	char why[PF_ERR_MAX];
	int r = models_want_budget(models, e, &c->budget, why, sizeof(why));
	if (r < 0) {
		bus_reply_error(b, c->msg, r == -ENOMEM ? ERR("OutOfMemory") : ERR("Busy"), "%s", why);
		bus_call_free(c);
		return;
	}
	if (c->max_bytes && e->state == MODEL_LOADED && !models_budget_changing(e) && e->mem_bytes > c->max_bytes) {
		bus_reply_error(b, c->msg, ERR("OutOfMemory"), "model %s takes %llu bytes, more than the %llu asked for",
				e->name, (unsigned long long)e->mem_bytes, (unsigned long long)c->max_bytes);
		bus_call_free(c);
		return;
	}
	models_use(models, e, c->has_keep_alive, c->keep_alive_ms);
	if (e->state == MODEL_LOADED && !models_budget_changing(e)) {
		finish_load_call(b, c, e, 0, NULL);
		return;
	}
	if (c->max_bytes && e->state == MODEL_UNLOADED)
		e->max_bytes = c->max_bytes;
	c->next = b->loading;
	b->loading = c;
	r = models_load(models, e);
	if (r) {
		unlink_call(&b->loading, c);
		snprintf(why, sizeof(why), "cannot start loading %s: %s", e->name, strerror(-r));
		finish_load_call(b, c, e, r == -ENOMEM ? -ENOMEM : -EIO, why);
	}
}

static void run_evict(struct bus *b, struct bus_call *c)
{
	struct model_entry *e = find_model(b, c->msg, c->name);
	if (!e) {
		bus_call_free(c);
		return;
	}
	if (c->seq && (e->state != MODEL_LOADED || e->load_seq != c->seq)) {
		/* Model.Evict of an object whose load is over (while the bus said
		 * who was calling): not a later load of the same model. */
		bus_reply_error(b, c->msg, DBUS_ERROR_UNKNOWN_OBJECT, "no object %s", dbus_message_get_path(c->msg));
	} else if (e->state == MODEL_LOADING) {
		bus_reply_error(b, c->msg, ERR("Busy"), "model %s is being loaded", e->name);
	} else if (e->active > 0) {
		bus_reply_error(b, c->msg, ERR("Busy"), "model %s is in use by %d request%s", e->name, e->active,
				e->active == 1 ? "" : "s");
	} else {
		models_unload(b->srv->models, e);
		/* InterfacesRemoved before the reply. */
		bus_sync(b);
		reply_empty(b, c->msg);
	}
	bus_call_free(c);
}

/* Goes on with c once the caller's access is known. Takes c. */
static void authorized(struct bus *b, struct bus_call *c, enum access_answer answer)
{
	if (answer != ACCESS_ALLOWED) {
		log_info("D-Bus: %s refused to uid %u (%s)%s", dbus_message_get_member(c->msg), (unsigned)c->uid,
			 dbus_message_get_sender(c->msg),
			 answer == ACCESS_UNKNOWN ? ": its groups are unknown" : "");
		if (answer == ACCESS_UNKNOWN)
			bus_reply_error(b, c->msg, ERR("PermissionDenied"),
					"cannot tell whether uid %u is in the daemon's group: the user database failed or did not answer in time",
					(unsigned)c->uid);
		else
			bus_reply_error(b, c->msg, ERR("PermissionDenied"),
					"loading and evicting models is for root and the daemon's user or group");
		bus_call_free(c);
		return;
	}
	if (c->kind == CALL_LOAD)
		run_load(b, c);
	else
		run_evict(b, c);
}

static void on_access_known(void *data, enum access_answer answer)
{
	struct bus_call *c = data;
	unlink_call(&c->bus->asking, c);
	authorized(c->bus, c, answer);
}

static void on_caller_known(DBusPendingCall *pending, void *data)
{
	struct bus_call *c = data;
	struct bus *b = c->bus;
	unlink_call(&b->asking, c);
	DBusMessage *reply = dbus_pending_call_steal_reply(pending);
	dbus_uint32_t uid = 0;
	DBusError err;
	dbus_error_init(&err);
	bool known = reply && !dbus_set_error_from_message(&err, reply) &&
		     dbus_message_get_args(reply, &err, DBUS_TYPE_UINT32, &uid, DBUS_TYPE_INVALID);
	if (reply)
		dbus_message_unref(reply);
	if (!known) {
		bus_reply_error(b, c->msg, DBUS_ERROR_FAILED, "cannot learn who is calling: %s",
				dbus_error_is_set(&err) ? err.message : "no reply from the bus");
		dbus_error_free(&err);
		bus_call_free(c);
		return;
	}
	dbus_pending_call_unref(c->pending);
	c->pending = NULL;
	c->uid = (uid_t)uid;
	enum access_answer answer = access_check(b->srv->access, c->uid, (gid_t)-1, &c->access_wait,
						 on_access_known, c);
	if (answer == ACCESS_PENDING) {
		c->next = b->asking;
		b->asking = c;
		return;
	}
	authorized(b, c, answer);
}

/* Takes c: asks the bus for the caller's uid, then goes on in
 * on_caller_known. */
static void check_caller(struct bus *b, struct bus_call *c)
{
	const char *sender = dbus_message_get_sender(c->msg);
	DBusMessage *q = dbus_message_new_method_call(DBUS_SERVICE_DBUS, DBUS_PATH_DBUS, DBUS_INTERFACE_DBUS,
						      "GetConnectionUnixUser");
	bool ok = sender && q &&
		  dbus_message_append_args(q, DBUS_TYPE_STRING, &sender, DBUS_TYPE_INVALID) &&
		  dbus_connection_send_with_reply(b->conn, q, &c->pending, DBUS_TIMEOUT_USE_DEFAULT) &&
		  c->pending &&
		  dbus_pending_call_set_notify(c->pending, on_caller_known, c, NULL);
	if (q)
		dbus_message_unref(q);
	if (!ok) {
		if (c->pending)
			dbus_pending_call_cancel(c->pending);
		bus_reply_error(b, c->msg, DBUS_ERROR_NO_MEMORY, "cannot ask the bus who is calling");
		bus_call_free(c);
		return;
	}
	c->next = b->asking;
	b->asking = c;
}

static bool is_model_name(const char *name)
{
	return *name && strlen(name) < MODEL_NAME_MAX && !strchr(name, '/');
}

static struct bus_call *new_call(struct bus *b, DBusMessage *msg, int kind, const char *name)
{
	if (!is_model_name(name)) {
		bus_reply_error(b, msg, ERR("InvalidArgument"), "'%s' is not a model name", name);
		return NULL;
	}
	struct bus_call *c = calloc(1, sizeof(*c));
	if (!c) {
		bus_reply_error(b, msg, DBUS_ERROR_NO_MEMORY, "out of memory");
		return NULL;
	}
	c->bus = b;
	c->msg = dbus_message_ref(msg);
	c->kind = kind;
	snprintf(c->name, sizeof(c->name), "%s", name);
	return c;
}

bool bus_load_args(DBusMessage *msg, struct bus_call *c, const char **error, char *why, size_t size)
{
	*error = ERR("InvalidArgument");
	if (!dbus_message_has_signature(msg, "sa{sv}")) {
		*error = DBUS_ERROR_INVALID_ARGS;
		snprintf(why, size, "LoadModel takes (sa{sv}), not (%s)", dbus_message_get_signature(msg));
		return false;
	}
	const char *name;
	dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &name, DBUS_TYPE_INVALID);
	if (!is_model_name(name)) {
		snprintf(why, size, "'%s' is not a model name", name);
		return false;
	}
	snprintf(c->name, sizeof(c->name), "%s", name);
	DBusMessageIter it, dict;
	dbus_message_iter_init(msg, &it);
	dbus_message_iter_next(&it);
	dbus_message_iter_recurse(&it, &dict);
	for (; dbus_message_iter_get_arg_type(&dict) == DBUS_TYPE_DICT_ENTRY; dbus_message_iter_next(&dict)) {
		DBusMessageIter entry, var;
		const char *key;
		dbus_message_iter_recurse(&dict, &entry);
		dbus_message_iter_get_basic(&entry, &key);
		dbus_message_iter_next(&entry);
		dbus_message_iter_recurse(&entry, &var);
		int type = dbus_message_iter_get_arg_type(&var);
		if (!strcmp(key, "keep-alive-ms") && type == DBUS_TYPE_INT64) {
			dbus_int64_t ms;
			dbus_message_iter_get_basic(&var, &ms);
			c->has_keep_alive = true;
			c->keep_alive_ms = models_clamp_keep_alive(ms);
		} else if (!strcmp(key, "max-memory") && type == DBUS_TYPE_UINT64) {
			dbus_uint64_t bytes;
			dbus_message_iter_get_basic(&var, &bytes);
			c->max_bytes = bytes;
		} else if (!strcmp(key, "sparsity") && type == DBUS_TYPE_STRING) {
			const char *mode;
			dbus_message_iter_get_basic(&var, &mode);
			if (pinfer_sparsity_parse(mode, &c->sparsity)) {
				snprintf(why, size, "sparsity '%s' is not auto, dense, gate, threshold or predictor", mode);
				return false;
			}
		} else if (!strcmp(key, "memory-budget") && type == DBUS_TYPE_STRING) {
			const char *budget;
			dbus_message_iter_get_basic(&var, &budget);
			if (!models_parse_budget(budget, &c->budget)) {
				snprintf(why, size,
					 "memory-budget '%s' is not a size (2G, 1500M, bytes), N%%ffn (1-100), min or none",
					 budget);
				return false;
			}
		} else {
			snprintf(why, size,
				 "unknown option '%s' of type '%c' (keep-alive-ms: x, max-memory: t, sparsity: s, memory-budget: s)",
				 key, type);
			return false;
		}
	}
	return true;
}

void bus_method_load_model(struct bus *b, DBusMessage *msg)
{
	struct bus_call *c = calloc(1, sizeof(*c));
	if (!c) {
		bus_reply_error(b, msg, DBUS_ERROR_NO_MEMORY, "out of memory");
		return;
	}
	const char *error;
	char why[512];
	if (!bus_load_args(msg, c, &error, why, sizeof(why))) {
		bus_reply_error(b, msg, error, "%s", why);
		free(c);
		return;
	}
	c->bus = b;
	c->msg = dbus_message_ref(msg);
	c->kind = CALL_LOAD;
	check_caller(b, c);
}

void bus_method_evict(struct bus *b, DBusMessage *msg, const char *name, uint64_t seq)
{
	struct bus_call *c = new_call(b, msg, CALL_EVICT, name);
	if (c) {
		c->seq = seq;
		check_caller(b, c);
	}
}

static int by_name(const void *x, const void *y)
{
	const struct model_entry *const *a = x, *const *b = y;
	return strcmp((*a)->name, (*b)->name);
}

static bool append_model_row(DBusMessageIter *arr, struct model_entry *e)
{
	static const char *const states[] = { "unloaded", "loading", "loaded" };
	char path[96] = "/";
	if (e->state == MODEL_LOADED)
		bus_object_path(path, sizeof(path), e->load_seq);
	const char *name = e->name, *file = e->path, *state = states[e->state], *p = path;
	dbus_uint64_t size = e->file_bytes, mem = e->mem_bytes;
	DBusMessageIter st;
	if (!dbus_message_iter_open_container(arr, DBUS_TYPE_STRUCT, NULL, &st))
		return false;
	if (!dbus_message_iter_append_basic(&st, DBUS_TYPE_STRING, &name) ||
	    !dbus_message_iter_append_basic(&st, DBUS_TYPE_STRING, &file) ||
	    !dbus_message_iter_append_basic(&st, DBUS_TYPE_STRING, &state) ||
	    !dbus_message_iter_append_basic(&st, DBUS_TYPE_UINT64, &size) ||
	    !dbus_message_iter_append_basic(&st, DBUS_TYPE_UINT64, &mem) ||
	    !dbus_message_iter_append_basic(&st, DBUS_TYPE_OBJECT_PATH, &p)) {
		dbus_message_iter_abandon_container(arr, &st);
		return false;
	}
	return dbus_message_iter_close_container(arr, &st);
}

void bus_method_list_models(struct bus *b, DBusMessage *msg)
{
	struct models *models = b->srv->models;
	models_scan(models);
	size_t n = 0;
	for (struct model_entry *e = models_first(models); e; e = e->next)
		n++;
	struct model_entry **sorted = malloc((n ? n : 1) * sizeof(*sorted));
	DBusMessage *r = sorted ? dbus_message_new_method_return(msg) : NULL;
	bool ok = r;
	if (ok) {
		n = 0;
		for (struct model_entry *e = models_first(models); e; e = e->next)
			sorted[n++] = e;
		qsort(sorted, n, sizeof(*sorted), by_name);
		DBusMessageIter it, arr;
		dbus_message_iter_init_append(r, &it);
		ok = dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "(ssstto)", &arr);
		for (size_t i = 0; ok && i < n; i++)
			if (!append_model_row(&arr, sorted[i])) {
				dbus_message_iter_abandon_container(&it, &arr);
				ok = false;
			}
		ok = ok && dbus_message_iter_close_container(&it, &arr);
	}
	free(sorted);
	bus_send_reply(b, msg, r, ok);
}

