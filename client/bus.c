#include "bus.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conn.h"
#include "intr.h"

#define PINFER_ERROR_PREFIX "org.pinfer.Pinfer1.Error."
#define SPAWN_ERROR_PREFIX "org.freedesktop.DBus.Error.Spawn."

const char *bus_choice_name(enum bus_choice kind)
{
	switch (kind) {
	case BUS_SYSTEM: return "system";
	case BUS_SESSION: return "session";
	default: return NULL;
	}
}

/* ---- Connecting ---- */

/* Whether a session bus is named: libdbus would otherwise autolaunch one
 * (dbus-launch, with $DISPLAY), and no pinferd is on a bus just started. */
static bool session_bus_named(struct bus_conn *b)
{
	const char *addr = getenv("DBUS_SESSION_BUS_ADDRESS");
	if (addr && *addr)
		return true;
	const char *runtime = getenv("XDG_RUNTIME_DIR");
	char path[PATH_MAX];
	struct stat st;
	if (runtime && *runtime &&
	    snprintf(path, sizeof(path), "%s/bus", runtime) < (int)sizeof(path) &&
	    stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		return true;
	snprintf(b->why, sizeof(b->why),
		 "no session bus: DBUS_SESSION_BUS_ADDRESS is not set and there is no "
		 "$XDG_RUNTIME_DIR/bus");
	return false;
}

int bus_open(struct bus_conn *b, enum bus_choice kind, bool verbose)
{
	memset(b, 0, sizeof(*b));
	b->kind = kind;
	b->verbose = verbose;
	if (kind == BUS_NONE) {
		snprintf(b->why, sizeof(b->why), "D-Bus not asked for");
		return BUS_FALLBACK;
	}
	if (kind == BUS_SESSION && !session_bus_named(b))
		return BUS_FALLBACK;
	/* As on the socket, a vanished peer must not turn SIGPIPE off for
	 * the whole process (libdbus ignores it by default): a write to a
	 * closed stdout keeps ending pinfer as it does elsewhere. */
	dbus_connection_set_change_sigpipe(FALSE);
	DBusError err;
	dbus_error_init(&err);
	b->conn = dbus_bus_get_private(kind == BUS_SYSTEM ? DBUS_BUS_SYSTEM : DBUS_BUS_SESSION, &err);
	if (!b->conn) {
		snprintf(b->why, sizeof(b->why), "cannot connect to the %s bus: %s",
			 bus_choice_name(kind), dbus_error_is_set(&err) ? err.message : "no reason given");
		dbus_error_free(&err);
		return BUS_FALLBACK;
	}
	/* libdbus's default for a bus connection is _exit(1) when it drops. */
	dbus_connection_set_exit_on_disconnect(b->conn, FALSE);
	/* From here on Ctrl-C ends a wait for a reply (before, it ends the
	 * process, as SIGINT does by default). */
	if (intr_fd() < 0 && intr_install())
		return EXIT_FAIL;
	return EXIT_OK;
}

void bus_close(struct bus_conn *b)
{
	if (b->conn) {
		dbus_connection_close(b->conn);
		dbus_connection_unref(b->conn);
	}
	b->conn = NULL;
}

/* ---- Calls and their errors ---- */

/* "NotFound" -> "not found": a pinfer error's name, in words like the
 * socket's error codes. */
static const char *error_words(const char *name, char *buf, size_t size)
{
	size_t o = 0;
	for (const char *p = name; *p && o + 2 < size; p++) {
		if (isupper((unsigned char)*p) && p != name)
			buf[o++] = ' ';
		buf[o++] = (char)tolower((unsigned char)*p);
	}
	buf[o] = '\0';
	return buf;
}

static bool has_prefix(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

/* Reports err from method (a call to pinferd) and frees it. Returns the
 * exit code, or BUS_FALLBACK when pinferd is not on the bus and has not
 * answered yet. */
static int call_failed(struct bus_conn *b, DBusError *err, const char *method, int timeout_ms)
{
	const char *name = err->name, *msg = err->message && *err->message ? err->message : "no message";
	const char *bus = bus_choice_name(b->kind);
	int r = EXIT_FAIL;
	char words[64];
	if (has_prefix(name, PINFER_ERROR_PREFIX)) {
		b->reached = true;
		report("%s (%s)", msg,
		       error_words(name + strlen(PINFER_ERROR_PREFIX), words, sizeof(words)));
	} else if (!strcmp(name, DBUS_ERROR_ACCESS_DENIED)) {
		report("the %s bus's policy does not let this user call %s (access denied): "
		       "only root and the pinfer group may load and evict models", bus, method);
		if (b->verbose)
			report("the bus said: %s", msg);
	} else if (!strcmp(name, DBUS_ERROR_SERVICE_UNKNOWN) ||
		   !strcmp(name, DBUS_ERROR_NAME_HAS_NO_OWNER) || has_prefix(name, SPAWN_ERROR_PREFIX) ||
		   !strcmp(name, DBUS_ERROR_DISCONNECTED)) {
		if (!b->reached) {
			snprintf(b->why, sizeof(b->why), "no pinferd on the %s bus: %s (%s)", bus, msg,
				 name);
			r = BUS_FALLBACK;
		} else {
			report("%s: pinferd left the %s bus: %s", method, bus, msg);
			r = EXIT_PROTO;
		}
	} else if (!strcmp(name, DBUS_ERROR_TIMEOUT)) {
		/* call()'s own deadline. */
		report("%s: no reply from pinferd on the %s bus within %d s", method, bus,
		       timeout_ms / 1000);
		r = EXIT_PROTO;
	} else if (!strcmp(name, DBUS_ERROR_NO_REPLY) || !strcmp(name, DBUS_ERROR_TIMED_OUT)) {
		report("%s: no reply from pinferd on the %s bus: %s", method, bus, msg);
		r = EXIT_PROTO;
	} else if (!strcmp(name, DBUS_ERROR_NO_MEMORY)) {
		report("%s: out of memory", method);
	} else if (!strcmp(name, DBUS_ERROR_UNKNOWN_METHOD) ||
		   !strcmp(name, DBUS_ERROR_UNKNOWN_INTERFACE) ||
		   !strcmp(name, DBUS_ERROR_UNKNOWN_OBJECT) ||
		   !strcmp(name, DBUS_ERROR_UNKNOWN_PROPERTY) || !strcmp(name, DBUS_ERROR_INVALID_ARGS) ||
		   !strcmp(name, DBUS_ERROR_INVALID_SIGNATURE)) {
		report("%s: the %s of pinferd on the %s bus is not the one this pinfer knows: %s (%s)",
		       method, BUS_NAME, bus, msg, name);
		r = EXIT_PROTO;
	} else {
		report("%s: %s (%s)", method, msg, name);
	}
	dbus_error_free(err);
	return r;
}

/* What call() returns besides EXIT_OK and EXIT_INTR. */
#define CALL_ERROR 1

/* Waits for pending's reply until deadline_ms (conn_now_ms() clock),
 * watching the bus and Ctrl-C: libdbus's own blocking wait cannot be
 * interrupted. EXIT_OK (completed), EXIT_INTR, or CALL_ERROR with err
 * set (no reply in time, or the bus went away). */
static int wait_reply(struct bus_conn *b, DBusPendingCall *pending, int64_t deadline_ms,
		      DBusError *err)
{
	int fd = -1;
	dbus_connection_flush(b->conn);
	if (!dbus_connection_get_unix_fd(b->conn, &fd))
		fd = -1;
	for (;;) {
		/* Whatever has arrived: a reply completes its pending call
		 * when dispatched. */
		bool open = dbus_connection_read_write(b->conn, 0);
		while (dbus_connection_dispatch(b->conn) == DBUS_DISPATCH_DATA_REMAINS)
			;
		if (dbus_pending_call_get_completed(pending))
			return EXIT_OK;
		if (!open || fd < 0) {
			dbus_set_error_const(err, DBUS_ERROR_DISCONNECTED,
					     "the bus closed the connection");
			return CALL_ERROR;
		}
		int64_t left = deadline_ms - conn_now_ms();
		if (left <= 0) {
			dbus_set_error_const(err, DBUS_ERROR_TIMEOUT, "no reply in time");
			return CALL_ERROR;
		}
		struct pollfd p[2] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = intr_fd(), .events = POLLIN },
		};
		int n = poll(p, 2, left > INT_MAX ? INT_MAX : (int)left);
		if (n < 0 && errno != EINTR) {
			dbus_set_error(err, DBUS_ERROR_FAILED, "poll: %s", strerror(errno));
			return CALL_ERROR;
		}
		if ((p[1].revents & POLLIN) && intr_take())
			return EXIT_INTR;
	}
}

/* Sends m (taken; NULL: it could not be built) to pinferd and waits up to
 * timeout_ms for the reply. EXIT_OK with *reply, EXIT_INTR on Ctrl-C
 * (the call is dropped), or CALL_ERROR with err set; nothing reported. */
static int call(struct bus_conn *b, DBusMessage *m, int timeout_ms, DBusMessage **reply,
		DBusError *err)
{
	*reply = NULL;
	DBusPendingCall *pending = NULL;
	if (!m || !dbus_connection_send_with_reply(b->conn, m, &pending, timeout_ms)) {
		if (m)
			dbus_message_unref(m);
		dbus_set_error_const(err, DBUS_ERROR_NO_MEMORY, "out of memory");
		return CALL_ERROR;
	}
	dbus_message_unref(m);
	if (!pending) {
		dbus_set_error_const(err, DBUS_ERROR_DISCONNECTED, "the bus closed the connection");
		return CALL_ERROR;
	}
	int r = wait_reply(b, pending, conn_now_ms() + timeout_ms, err);
	if (r) {
		dbus_pending_call_cancel(pending);
		dbus_pending_call_unref(pending);
		return r;
	}
	*reply = dbus_pending_call_steal_reply(pending);
	dbus_pending_call_unref(pending);
	if (!*reply) {
		dbus_set_error_const(err, DBUS_ERROR_NO_REPLY, "no reply");
		return CALL_ERROR;
	}
	if (dbus_set_error_from_message(err, *reply)) {
		dbus_message_unref(*reply);
		*reply = NULL;
		return CALL_ERROR;
	}
	b->reached = true;
	return EXIT_OK;
}

/* call(), reporting its error (call_failed()) as from what. */
static int call_reported(struct bus_conn *b, DBusMessage *m, int timeout_ms, const char *what,
			 DBusMessage **reply)
{
	DBusError err;
	dbus_error_init(&err);
	int c = call(b, m, timeout_ms, reply, &err);
	return c == CALL_ERROR ? call_failed(b, &err, what, timeout_ms) : c;
}

/* A call to pinferd with the arguments dbus_message_append_args() takes,
 * DBUS_TYPE_INVALID after them. NULL when out of memory: call() reports
 * that. */
static DBusMessage *method(const char *path, const char *iface, const char *member, int first_type,
			   ...)
{
	DBusMessage *m = dbus_message_new_method_call(BUS_NAME, path, iface, member);
	va_list ap;
	va_start(ap, first_type);
	if (m && !dbus_message_append_args_valist(m, first_type, ap)) {
		dbus_message_unref(m);
		m = NULL;
	}
	va_end(ap);
	return m;
}

static int bad_reply(struct bus_conn *b, const char *what, const char *want)
{
	report("%s: pinferd's reply on the %s bus is not %s", what, bus_choice_name(b->kind), want);
	return EXIT_PROTO;
}

/* ---- Models ---- */

void bus_model_free(struct bus_model *m)
{
	if (m->props)
		dbus_message_unref(m->props);
	m->props = NULL;
}

void bus_models_free(struct bus_model *models, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bus_model_free(&models[i]);
	free(models);
}

/* Whether err says the object (or the model) is gone: an unload came
 * between learning its path and reading it. */
static bool object_gone(const DBusError *err)
{
	return dbus_error_has_name(err, DBUS_ERROR_UNKNOWN_OBJECT) ||
	       dbus_error_has_name(err, PINFER_ERROR_PREFIX "NotFound");
}

/* The Model properties behind the ModelInfo fields. */
enum {
	P_NAME, P_PATH, P_SIZE, P_ARCH, P_QUANT, P_PARAMS, P_CTX, P_SLOTS, P_MEMORY, P_EXPIRES,
	P_ACTIVE, P_SPARSITY, P_MEASURED, P_TOKENS, P_SPEED,
	P_REQUIRED,  /* those before it are; the offload figures after it may be missing */
	P_BUDGET = P_REQUIRED, P_CACHE, P_HIT, P_READ, P_COUNT
};
static const struct {
	const char *name;
	int type;
} model_props[P_COUNT] = {
	[P_NAME] = { "Name", DBUS_TYPE_STRING },
	[P_PATH] = { "Path", DBUS_TYPE_STRING },
	[P_SIZE] = { "Size", DBUS_TYPE_UINT64 },
	[P_ARCH] = { "Architecture", DBUS_TYPE_STRING },
	[P_QUANT] = { "Quantization", DBUS_TYPE_STRING },
	[P_PARAMS] = { "Parameters", DBUS_TYPE_UINT64 },
	[P_CTX] = { "ContextLength", DBUS_TYPE_UINT32 },
	[P_SLOTS] = { "Slots", DBUS_TYPE_UINT32 },
	[P_MEMORY] = { "MemoryBytes", DBUS_TYPE_UINT64 },
	[P_EXPIRES] = { "ExpiresAt", DBUS_TYPE_INT64 },
	[P_ACTIVE] = { "ActiveSessions", DBUS_TYPE_UINT32 },
	[P_SPARSITY] = { "SparsityMode", DBUS_TYPE_STRING },
	[P_MEASURED] = { "MeasuredSparsity", DBUS_TYPE_DOUBLE },
	[P_TOKENS] = { "TokensGenerated", DBUS_TYPE_UINT64 },
	[P_SPEED] = { "DecodeTokensPerSecond", DBUS_TYPE_DOUBLE },
	[P_BUDGET] = { "MemoryBudget", DBUS_TYPE_UINT64 },
	[P_CACHE] = { "NeuronCacheBytes", DBUS_TYPE_UINT64 },
	[P_HIT] = { "NeuronCacheHitRate", DBUS_TYPE_DOUBLE },
	[P_READ] = { "BytesReadPerToken", DBUS_TYPE_DOUBLE },
};

/* Reads GetAll's a{sv} into m->mi. EXIT_OK or EXIT_PROTO after reporting. */
static int parse_model(struct bus_conn *b, DBusMessage *reply, const char *object,
		       struct bus_model *m)
{
	Pinfer__ModelInfo *mi = &m->mi;
	int64_t expires_us = 0;
	void *dst[P_COUNT] = {
		[P_NAME] = &mi->name, [P_PATH] = &mi->path, [P_SIZE] = &mi->size_bytes,
		[P_ARCH] = &mi->arch, [P_QUANT] = &mi->quant, [P_PARAMS] = &mi->n_params,
		[P_CTX] = &mi->context_length, [P_SLOTS] = &mi->slots_total,
		[P_MEMORY] = &mi->memory_bytes, [P_EXPIRES] = &expires_us,
		[P_ACTIVE] = &mi->slots_busy, [P_SPARSITY] = &mi->sparsity,
		[P_MEASURED] = &mi->measured_sparsity, [P_TOKENS] = &mi->tokens_generated,
		[P_SPEED] = &mi->decode_tokens_per_second, [P_BUDGET] = &mi->memory_budget,
		[P_CACHE] = &mi->neuron_cache_bytes, [P_HIT] = &mi->neuron_cache_hit_rate,
		[P_READ] = &mi->bytes_read_per_token,
	};
	unsigned seen = 0;
	DBusMessageIter it, dict;
	if (!dbus_message_iter_init(reply, &it) || dbus_message_iter_get_arg_type(&it) != DBUS_TYPE_ARRAY ||
	    dbus_message_iter_get_element_type(&it) != DBUS_TYPE_DICT_ENTRY)
		return bad_reply(b, "GetAll", "a{sv}");
	dbus_message_iter_recurse(&it, &dict);
	for (; dbus_message_iter_get_arg_type(&dict) == DBUS_TYPE_DICT_ENTRY;
	     dbus_message_iter_next(&dict)) {
		DBusMessageIter entry, var;
		const char *key;
		dbus_message_iter_recurse(&dict, &entry);
		dbus_message_iter_get_basic(&entry, &key);
		dbus_message_iter_next(&entry);
		dbus_message_iter_recurse(&entry, &var);
		for (int p = 0; p < P_COUNT; p++) {
			if (strcmp(key, model_props[p].name))
				continue;
			if (dbus_message_iter_get_arg_type(&var) != model_props[p].type) {
				report("%s: property %s has type '%c', not '%c' (docs/dbus-api.md)", object,
				       key, dbus_message_iter_get_arg_type(&var), model_props[p].type);
				return EXIT_PROTO;
			}
			dbus_message_iter_get_basic(&var, dst[p]);
			seen |= 1u << p;
		}
	}
	for (int p = 0; p < P_REQUIRED; p++)
		if (!(seen & (1u << p))) {
			report("%s: pinferd does not give the property %s of %s", object,
			       model_props[p].name, BUS_MODEL_IFACE);
			return EXIT_PROTO;
		}
	mi->loaded = true;
	/* µs on the bus, ms in ModelInfo; 0 (in use) and -1 (never) alike. */
	mi->expires_at_ms = expires_us > 0 ? expires_us / 1000 : expires_us;
	mi->chat_template = NULL;
	snprintf(m->object, sizeof(m->object), "%s", object);
	return EXIT_OK;
}

/* GetAll of the Model object into *m. *gone: the object went (nothing
 * reported, m untouched). */
static int read_model(struct bus_conn *b, const char *object, struct bus_model *m, bool *gone)
{
	*gone = false;
	const char *iface = BUS_MODEL_IFACE;
	DBusMessage *q = method(object, DBUS_INTERFACE_PROPERTIES, "GetAll", DBUS_TYPE_STRING, &iface,
				DBUS_TYPE_INVALID);
	DBusMessage *reply;
	DBusError err;
	dbus_error_init(&err);
	int c = call(b, q, BUS_CALL_TIMEOUT_MS, &reply, &err);
	if (c == EXIT_INTR)
		return c;
	if (c) {
		if (b->reached && object_gone(&err)) {
			dbus_error_free(&err);
			*gone = true;
			return EXIT_OK;
		}
		return call_failed(b, &err, "GetAll", BUS_CALL_TIMEOUT_MS);
	}
	struct bus_model tmp;
	memset(&tmp, 0, sizeof(tmp));
	pinfer__model_info__init(&tmp.mi);
	int r = parse_model(b, reply, object, &tmp);
	if (r) {
		dbus_message_unref(reply);
		return r;
	}
	tmp.props = reply;
	*m = tmp;
	return EXIT_OK;
}

/* ListModels' row for name into *m (not loaded: its object is "/"), for a
 * model that has no object to read. *found: the row was there. */
static int list_row(struct bus_conn *b, const char *name, struct bus_model *m, bool *found)
{
	*found = false;
	DBusMessage *q = method(BUS_MANAGER_PATH, BUS_MANAGER_IFACE, "ListModels", DBUS_TYPE_INVALID);
	DBusMessage *reply;
	int c = call_reported(b, q, BUS_CALL_TIMEOUT_MS, "ListModels", &reply);
	if (c)
		return c;
	if (!dbus_message_has_signature(reply, "a(ssstto)")) {
		dbus_message_unref(reply);
		return bad_reply(b, "ListModels", "a(ssstto)");
	}
	DBusMessageIter it, arr;
	dbus_message_iter_init(reply, &it);
	dbus_message_iter_recurse(&it, &arr);
	for (; dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_STRUCT; dbus_message_iter_next(&arr)) {
		DBusMessageIter st;
		const char *row_name, *path, *state, *object;
		dbus_uint64_t size, memory;
		dbus_message_iter_recurse(&arr, &st);
		dbus_message_iter_get_basic(&st, &row_name);
		if (strcmp(row_name, name))
			continue;
		dbus_message_iter_next(&st);
		dbus_message_iter_get_basic(&st, &path);
		dbus_message_iter_next(&st);
		dbus_message_iter_get_basic(&st, &state);
		dbus_message_iter_next(&st);
		dbus_message_iter_get_basic(&st, &size);
		dbus_message_iter_next(&st);
		dbus_message_iter_get_basic(&st, &memory);
		dbus_message_iter_next(&st);
		dbus_message_iter_get_basic(&st, &object);
		memset(m, 0, sizeof(*m));
		pinfer__model_info__init(&m->mi);
		m->mi.name = (char *)row_name;
		m->mi.path = (char *)path;
		m->mi.size_bytes = size;
		m->mi.loaded = !strcmp(state, "loaded");
		m->mi.memory_bytes = memory;
		/* As the socket describes a model that is not loaded. */
		static char empty[1];
		m->mi.arch = m->mi.quant = empty;
		m->mi.chat_template = NULL;
		if (m->mi.loaded)
			snprintf(m->object, sizeof(m->object), "%s", object);
		m->props = reply;
		*found = true;
		return EXIT_OK;
	}
	dbus_message_unref(reply);
	return EXIT_OK;
}

/* Appends one {sv} entry of a basic type to an a{sv} being built. */
static bool append_option(DBusMessageIter *dict, const char *key, int type, const void *value)
{
	DBusMessageIter entry, var;
	char sig[2] = { (char)type, 0 };
	return dbus_message_iter_open_container(dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry) &&
	       dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &key) &&
	       dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, sig, &var) &&
	       dbus_message_iter_append_basic(&var, type, value) &&
	       dbus_message_iter_close_container(&entry, &var) &&
	       dbus_message_iter_close_container(dict, &entry);
}

int bus_load_model(struct bus_conn *b, const char *name, bool has_keep_alive,
		   int64_t keep_alive_ms, const char *sparsity, const char *memory_budget,
		   struct bus_model *m)
{
	DBusMessage *q = method(BUS_MANAGER_PATH, BUS_MANAGER_IFACE, "LoadModel", DBUS_TYPE_INVALID);
	DBusMessageIter it, dict;
	dbus_int64_t ms = keep_alive_ms;
	bool ok = q;
	if (ok) {
		dbus_message_iter_init_append(q, &it);
		ok = dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &name) &&
		     dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict);
	}
	if (ok && has_keep_alive)
		ok = append_option(&dict, "keep-alive-ms", DBUS_TYPE_INT64, &ms);
	if (ok && sparsity)
		ok = append_option(&dict, "sparsity", DBUS_TYPE_STRING, &sparsity);
	if (ok && memory_budget)
		ok = append_option(&dict, "memory-budget", DBUS_TYPE_STRING, &memory_budget);
	ok = ok && dbus_message_iter_close_container(&it, &dict);
	if (!ok && q) {
		/* Out of memory half-way: the message is dropped whole. */
		dbus_message_unref(q);
		q = NULL;
	}
	DBusMessage *reply;
	int c = call_reported(b, q, BUS_LOAD_TIMEOUT_MS, "LoadModel", &reply);
	if (c)
		return c;
	const char *object;
	if (!dbus_message_get_args(reply, NULL, DBUS_TYPE_OBJECT_PATH, &object, DBUS_TYPE_INVALID)) {
		dbus_message_unref(reply);
		return bad_reply(b, "LoadModel", "an object path");
	}
	bool gone;
	int r = read_model(b, object, m, &gone);
	dbus_message_unref(reply);
	if (r || !gone)
		return r;
	/* Unloaded at once (keep-alive 0, or evicted by someone else): the
	 * socket's LoadModelReply says "not loaded" then too. */
	bool found;
	r = list_row(b, name, m, &found);
	if (!r && !found) {
		report("%s was loaded, then removed from the models directory", name);
		r = EXIT_FAIL;
	}
	return r;
}

int bus_evict_model(struct bus_conn *b, const char *name, bool *was_loaded)
{
	/* EvictModel says nothing of what it did: ListModels before it does.
	 * A model missing from the list is EvictModel's NotFound to report. */
	struct bus_model row;
	bool found;
	int r = list_row(b, name, &row, &found);
	if (r)
		return r;
	*was_loaded = found && row.mi.loaded;
	if (found)
		bus_model_free(&row);
	DBusMessage *q = method(BUS_MANAGER_PATH, BUS_MANAGER_IFACE, "EvictModel", DBUS_TYPE_STRING, &name,
				DBUS_TYPE_INVALID);
	DBusMessage *reply;
	DBusError err;
	dbus_error_init(&err);
	int c = call(b, q, BUS_CALL_TIMEOUT_MS, &reply, &err);
	if (c == EXIT_OK)
		dbus_message_unref(reply);
	if (c != CALL_ERROR)
		return c;
	if (dbus_error_has_name(&err, PINFER_ERROR_PREFIX "Busy")) {
		report("%s (busy): over D-Bus a model is evicted only while no generation uses it; "
		       "'pinfer --bus none unload %s' unloads it when they end",
		       err.message, name);
		dbus_error_free(&err);
		return EXIT_FAIL;
	}
	return call_failed(b, &err, "EvictModel", BUS_CALL_TIMEOUT_MS);
}

static int by_name(const void *x, const void *y)
{
	const struct bus_model *a = x, *b = y;
	return strcmp(a->mi.name, b->mi.name);
}

int bus_loaded_models(struct bus_conn *b, struct bus_model **models, size_t *n)
{
	*models = NULL;
	*n = 0;
	const char *iface = BUS_MANAGER_IFACE, *prop = "LoadedModels";
	DBusMessage *q = method(BUS_MANAGER_PATH, DBUS_INTERFACE_PROPERTIES, "Get", DBUS_TYPE_STRING, &iface,
				DBUS_TYPE_STRING, &prop, DBUS_TYPE_INVALID);
	DBusMessage *reply;
	int c = call_reported(b, q, BUS_CALL_TIMEOUT_MS, "Get LoadedModels", &reply);
	if (c)
		return c;
	DBusMessageIter it, var, arr;
	if (!dbus_message_has_signature(reply, "v") || !dbus_message_iter_init(reply, &it)) {
		dbus_message_unref(reply);
		return bad_reply(b, "LoadedModels", "a variant");
	}
	dbus_message_iter_recurse(&it, &var);
	if (dbus_message_iter_get_arg_type(&var) != DBUS_TYPE_ARRAY ||
	    dbus_message_iter_get_element_type(&var) != DBUS_TYPE_OBJECT_PATH) {
		dbus_message_unref(reply);
		return bad_reply(b, "LoadedModels", "ao");
	}
	int count = dbus_message_iter_get_element_count(&var);
	struct bus_model *out = calloc(count > 0 ? (size_t)count : 1, sizeof(*out));
	if (!out) {
		dbus_message_unref(reply);
		report("out of memory");
		return EXIT_FAIL;
	}
	size_t got = 0;
	int r = EXIT_OK;
	dbus_message_iter_recurse(&var, &arr);
	for (; !r && (int)got < count && dbus_message_iter_get_arg_type(&arr) == DBUS_TYPE_OBJECT_PATH;
	     dbus_message_iter_next(&arr)) {
		const char *object;
		bool gone;
		dbus_message_iter_get_basic(&arr, &object);
		r = read_model(b, object, &out[got], &gone);
		if (!r && !gone)
			got++;
	}
	dbus_message_unref(reply);
	if (r) {
		bus_models_free(out, got);
		return r;
	}
	qsort(out, got, sizeof(*out), by_name);
	*models = out;
	*n = got;
	return EXIT_OK;
}
