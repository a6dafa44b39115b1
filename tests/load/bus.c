#include "bus.h"

#include <dbus/dbus.h>
#include <string.h>
#include <time.h>

#include "wire.h"

#define NAME "org.pinfer.Pinfer1"
#define PATH "/org/pinfer/Pinfer1"
#define IFACE "org.pinfer.Pinfer1.Manager"

/* Calls method(name[, {}]) and waits for the reply. Returns 0, 1 for an
 * Error.Busy reply, or -1 after counting a failure. */
static int call(struct bus_churn *b, DBusConnection *conn, const char *method, bool options)
{
	const char *model = b->cfg->second_model;
	DBusMessage *msg = dbus_message_new_method_call(NAME, PATH, IFACE, method);
	if (!msg) {
		stats_fail(&b->st, "D-Bus %s: out of memory", method);
		return -1;
	}
	DBusMessageIter it, dict;
	dbus_message_iter_init_append(msg, &it);
	bool ok = dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &model);
	if (ok && options)
		ok = dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict) &&
		     dbus_message_iter_close_container(&it, &dict);
	if (!ok) {
		dbus_message_unref(msg);
		stats_fail(&b->st, "D-Bus %s: out of memory", method);
		return -1;
	}
	DBusError err;
	dbus_error_init(&err);
	DBusMessage *reply = dbus_connection_send_with_reply_and_block(conn, msg, b->cfg->timeout_ms, &err);
	dbus_message_unref(msg);
	if (reply) {
		dbus_message_unref(reply);
		return 0;
	}
	int r = -1;
	if (!strcmp(err.name, "org.pinfer.Pinfer1.Error.Busy"))
		r = 1;
	else
		stats_fail(&b->st, "D-Bus %s(%s): %s: %s", method, model, err.name, err.message);
	dbus_error_free(&err);
	return r;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

void *bus_churn_run(void *arg)
{
	struct bus_churn *b = arg;
	DBusError err;
	dbus_error_init(&err);
	DBusConnection *conn = dbus_connection_open_private(b->cfg->bus, &err);
	if (!conn || !dbus_bus_register(conn, &err)) {
		stats_fail(&b->st, "cannot connect to the bus at %s: %s", b->cfg->bus, err.message);
		dbus_error_free(&err);
		if (conn) {
			dbus_connection_close(conn);
			dbus_connection_unref(conn);
		}
		return NULL;
	}
	while (wire_now_ms() < b->cfg->end_ms && !atomic_load(&b->cfg->daemon_gone)) {
		if (call(b, conn, "LoadModel", true) == 0)
			b->st.bus_loads++;
		sleep_ms(b->cfg->bus_period_ms);
		atomic_store(&b->cfg->second_draining, true);
		int64_t give_up = wire_now_ms() + b->cfg->timeout_ms;
		int r;
		while ((r = call(b, conn, "EvictModel", false)) == 1 && wire_now_ms() < give_up) {
			b->st.bus_busy++;
			sleep_ms(20);
		}
		if (r == 0)
			b->st.bus_evicts++;
		else if (r == 1)
			stats_fail(&b->st, "D-Bus EvictModel(%s): still busy %d s after the clients left it",
				   b->cfg->second_model, b->cfg->timeout_ms / 1000);
		atomic_store(&b->cfg->second_draining, false);
		sleep_ms(b->cfg->bus_period_ms);
	}
	dbus_connection_close(conn);
	dbus_connection_unref(conn);
	return NULL;
}
