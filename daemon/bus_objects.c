/* The objects pinferd exports on D-Bus (docs/dbus-api.md): the manager at
 * /org/pinfer/Pinfer1 with its ObjectManager, one object per loaded model,
 * their introspection (built from the shipped interface files) and the
 * routing of method calls to them. */
#include "bus_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_xml.h"
#include "log.h"
#include "server.h"

/* The loaded model behind a model object path, or NULL. */
struct model_entry *bus_object_model(struct bus *b, const char *path)
{
	if (strncmp(path, BUS_MODEL_PREFIX, strlen(BUS_MODEL_PREFIX)))
		return NULL;
	const char *num = path + strlen(BUS_MODEL_PREFIX);
	char *end;
	unsigned long long seq = strtoull(num, &end, 10);
	if (!*num || *end || *num == '0')
		return NULL;
	for (int i = 0; i < b->n_objects; i++)
		if (b->objects[i].seq == seq) {
			struct model_entry *e = models_find(b->srv->models, b->objects[i].name);
			return e && e->state == MODEL_LOADED && e->load_seq == seq ? e : NULL;
		}
	return NULL;
}

static bool exported(struct bus *b, uint64_t seq)
{
	for (int i = 0; i < b->n_objects; i++)
		if (b->objects[i].seq == seq)
			return true;
	return false;
}

static void emit_removed(struct bus *b, uint64_t seq)
{
	char path[96];
	bus_object_path(path, sizeof(path), seq);
	DBusMessage *sig = dbus_message_new_signal(BUS_PATH, DBUS_INTERFACE_OBJECT_MANAGER, "InterfacesRemoved");
	const char *p = path, *iface = BUS_IFACE_MODEL;
	DBusMessageIter it, arr;
	bool ok = sig;
	if (ok) {
		dbus_message_iter_init_append(sig, &it);
		ok = dbus_message_iter_append_basic(&it, DBUS_TYPE_OBJECT_PATH, &p) &&
		     dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "s", &arr);
		if (ok && !(dbus_message_iter_append_basic(&arr, DBUS_TYPE_STRING, &iface) &&
			    dbus_message_iter_close_container(&it, &arr))) {
			dbus_message_iter_abandon_container(&it, &arr);
			ok = false;
		}
	}
	if (!ok && sig) {
		dbus_message_unref(sig);
		sig = NULL;
	}
	bus_send(b, sig);
}

/* Appends {s a{sv}} for the model interface of e. */
static bool append_interfaces(struct bus *b, struct model_entry *e, DBusMessageIter *it)
{
	DBusMessageIter ifaces, entry;
	const char *iface = BUS_IFACE_MODEL;
	if (!dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "{sa{sv}}", &ifaces))
		return false;
	if (!dbus_message_iter_open_container(&ifaces, DBUS_TYPE_DICT_ENTRY, NULL, &entry)) {
		dbus_message_iter_abandon_container(it, &ifaces);
		return false;
	}
	if (!dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &iface) ||
	    !bus_append_props(b, e, bus_model_props, NULL, &entry)) {
		dbus_message_iter_abandon_container(&ifaces, &entry);
		dbus_message_iter_abandon_container(it, &ifaces);
		return false;
	}
	if (!dbus_message_iter_close_container(&ifaces, &entry)) {
		dbus_message_iter_abandon_container(it, &ifaces);
		return false;
	}
	return dbus_message_iter_close_container(it, &ifaces);
}

static void emit_added(struct bus *b, struct model_entry *e)
{
	char path[96];
	bus_object_path(path, sizeof(path), e->load_seq);
	const char *p = path;
	DBusMessage *sig = dbus_message_new_signal(BUS_PATH, DBUS_INTERFACE_OBJECT_MANAGER, "InterfacesAdded");
	DBusMessageIter it;
	if (sig) {
		dbus_message_iter_init_append(sig, &it);
		if (!dbus_message_iter_append_basic(&it, DBUS_TYPE_OBJECT_PATH, &p) ||
		    !append_interfaces(b, e, &it)) {
			dbus_message_unref(sig);
			sig = NULL;
		}
	}
	bus_send(b, sig);
}

static void emit_manager_changed(struct bus *b, const char *const *names)
{
	DBusMessage *sig = dbus_message_new_signal(BUS_PATH, DBUS_INTERFACE_PROPERTIES, "PropertiesChanged");
	const char *iface = BUS_IFACE_MANAGER;
	DBusMessageIter it, none;
	if (sig) {
		dbus_message_iter_init_append(sig, &it);
		bool ok = dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &iface) &&
			  bus_append_props(b, NULL, bus_manager_props, names, &it) &&
			  dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "s", &none) &&
			  dbus_message_iter_close_container(&it, &none);
		if (!ok) {
			dbus_message_unref(sig);
			sig = NULL;
		}
	}
	bus_send(b, sig);
}

static int by_seq(const void *x, const void *y)
{
	const struct bus_object *a = x, *b = y;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

void bus_sync(struct bus *b)
{
	struct models *models = b->srv->models;
	for (int i = 0; i < b->n_objects;) {
		struct model_entry *e = models_find(models, b->objects[i].name);
		if (e && e->state == MODEL_LOADED && e->load_seq == b->objects[i].seq) {
			i++;
			continue;
		}
		emit_removed(b, b->objects[i].seq);
		memmove(&b->objects[i], &b->objects[i + 1], (size_t)(b->n_objects - i - 1) * sizeof(b->objects[0]));
		b->n_objects--;
		b->objects_changed = true;
	}
	bool added = false;
	for (struct model_entry *e = models_first(models); e; e = e->next) {
		if (e->state != MODEL_LOADED || exported(b, e->load_seq))
			continue;
		if (b->n_objects == b->cap_objects) {
			int cap = b->cap_objects ? 2 * b->cap_objects : 8;
			struct bus_object *grown = realloc(b->objects, (size_t)cap * sizeof(*grown));
			if (!grown) {
				log_error("D-Bus: out of memory exporting model %s", e->name);
				break;
			}
			b->objects = grown;
			b->cap_objects = cap;
		}
		struct bus_object *o = &b->objects[b->n_objects++];
		o->seq = e->load_seq;
		snprintf(o->name, sizeof(o->name), "%s", e->name);
		emit_added(b, e);
		added = true;
	}
	if (added) {
		qsort(b->objects, (size_t)b->n_objects, sizeof(b->objects[0]), by_seq);
		b->objects_changed = true;
	}
	const char *changed[5];
	int n = 0;
	if (b->stopping != b->srv->stopping) {
		b->stopping = b->srv->stopping;
		changed[n++] = "State";
	}
	if (b->objects_changed) {
		b->objects_changed = false;
		changed[n++] = "LoadedModels";
	}
	uint64_t used = models_used_bytes(models), budget = models_budget_bytes(models);
	if (used != b->memory_used) {
		b->memory_used = used;
		changed[n++] = "MemoryUsed";
	}
	if (budget != b->memory_budget) {
		b->memory_budget = budget;
		changed[n++] = "MemoryBudget";
	}
	changed[n] = NULL;
	if (n)
		emit_manager_changed(b, changed);
}

/* ---- introspection ---- */

static const char xml_standard[] =
	"  <interface name=\"org.freedesktop.DBus.Peer\">\n"
	"    <method name=\"Ping\"/>\n"
	"    <method name=\"GetMachineId\">\n"
	"      <arg name=\"machine_uuid\" type=\"s\" direction=\"out\"/>\n"
	"    </method>\n"
	"  </interface>\n"
	"  <interface name=\"org.freedesktop.DBus.Introspectable\">\n"
	"    <method name=\"Introspect\">\n"
	"      <arg name=\"xml_data\" type=\"s\" direction=\"out\"/>\n"
	"    </method>\n"
	"  </interface>\n";

static const char xml_properties[] =
	"  <interface name=\"org.freedesktop.DBus.Properties\">\n"
	"    <method name=\"Get\">\n"
	"      <arg name=\"interface_name\" type=\"s\" direction=\"in\"/>\n"
	"      <arg name=\"property_name\" type=\"s\" direction=\"in\"/>\n"
	"      <arg name=\"value\" type=\"v\" direction=\"out\"/>\n"
	"    </method>\n"
	"    <method name=\"GetAll\">\n"
	"      <arg name=\"interface_name\" type=\"s\" direction=\"in\"/>\n"
	"      <arg name=\"properties\" type=\"a{sv}\" direction=\"out\"/>\n"
	"    </method>\n"
	"    <method name=\"Set\">\n"
	"      <arg name=\"interface_name\" type=\"s\" direction=\"in\"/>\n"
	"      <arg name=\"property_name\" type=\"s\" direction=\"in\"/>\n"
	"      <arg name=\"value\" type=\"v\" direction=\"in\"/>\n"
	"    </method>\n"
	"    <signal name=\"PropertiesChanged\">\n"
	"      <arg name=\"interface_name\" type=\"s\"/>\n"
	"      <arg name=\"changed_properties\" type=\"a{sv}\"/>\n"
	"      <arg name=\"invalidated_properties\" type=\"as\"/>\n"
	"    </signal>\n"
	"  </interface>\n";

static const char xml_object_manager[] =
	"  <interface name=\"org.freedesktop.DBus.ObjectManager\">\n"
	"    <method name=\"GetManagedObjects\">\n"
	"      <arg name=\"objects\" type=\"a{oa{sa{sv}}}\" direction=\"out\"/>\n"
	"    </method>\n"
	"    <signal name=\"InterfacesAdded\">\n"
	"      <arg name=\"object_path\" type=\"o\"/>\n"
	"      <arg name=\"interfaces_and_properties\" type=\"a{sa{sv}}\"/>\n"
	"    </signal>\n"
	"    <signal name=\"InterfacesRemoved\">\n"
	"      <arg name=\"object_path\" type=\"o\"/>\n"
	"      <arg name=\"interfaces\" type=\"as\"/>\n"
	"    </signal>\n"
	"  </interface>\n";

/* The introspection document of path, or NULL when nothing lives there
 * (or out of memory). Caller frees. */
static char *introspect(struct bus *b, const char *path)
{
	char *doc = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&doc, &len);
	if (!f)
		return NULL;
	fputs(DBUS_INTROSPECT_1_0_XML_DOCTYPE_DECL_NODE "<node>\n", f);
	bool found = true;
	if (!strcmp(path, "/") || !strcmp(path, "/org") || !strcmp(path, "/org/pinfer")) {
		const char *child = !strcmp(path, "/") ? "org" : !strcmp(path, "/org") ? "pinfer" : "Pinfer1";
		fprintf(f, "%s  <node name=\"%s\"/>\n", xml_standard, child);
	} else if (!strcmp(path, BUS_PATH)) {
		fprintf(f, "%s%s%s%s", xml_standard, xml_properties, xml_object_manager, bus_xml_Manager);
		if (b->n_objects)
			fputs("  <node name=\"Model\"/>\n", f);
	} else if (!strcmp(path, BUS_PATH "/Model")) {
		fputs(xml_standard, f);
		for (int i = 0; i < b->n_objects; i++)
			fprintf(f, "  <node name=\"%llu\"/>\n", (unsigned long long)b->objects[i].seq);
	} else if (bus_object_model(b, path)) {
		fprintf(f, "%s%s%s", xml_standard, xml_properties, bus_xml_Model);
	} else {
		found = false;
	}
	fputs("</node>\n", f);
	bool ok = !ferror(f);
	if (fclose(f) || !ok || !found) {
		free(doc);
		return NULL;
	}
	return doc;
}

static void m_get_managed_objects(struct bus *b, DBusMessage *msg)
{
	DBusMessage *r = dbus_message_new_method_return(msg);
	DBusMessageIter it, arr;
	bool ok = r;
	if (ok) {
		dbus_message_iter_init_append(r, &it);
		ok = dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{oa{sa{sv}}}", &arr);
	}
	for (int i = 0; ok && i < b->n_objects; i++) {
		char path[96];
		bus_object_path(path, sizeof(path), b->objects[i].seq);
		struct model_entry *e = bus_object_model(b, path);
		if (!e)
			continue;
		const char *p = path;
		DBusMessageIter entry;
		ok = dbus_message_iter_open_container(&arr, DBUS_TYPE_DICT_ENTRY, NULL, &entry);
		if (ok && !(dbus_message_iter_append_basic(&entry, DBUS_TYPE_OBJECT_PATH, &p) &&
			    append_interfaces(b, e, &entry))) {
			dbus_message_iter_abandon_container(&arr, &entry);
			ok = false;
		}
		ok = ok && dbus_message_iter_close_container(&arr, &entry);
		if (!ok)
			dbus_message_iter_abandon_container(&it, &arr);
	}
	ok = ok && dbus_message_iter_close_container(&it, &arr);
	bus_send_reply(b, msg, r, ok);
}

/* Properties.Get/GetAll/Set on an object with interface iface_name and
 * properties props (e: the model, for a model object). */
static void m_properties(struct bus *b, DBusMessage *msg, const char *iface_name, const struct bus_prop *props,
			 struct model_entry *e)
{
	const char *member = dbus_message_get_member(msg), *iface = NULL, *name = NULL;
	bool get = !strcmp(member, "Get"), get_all = !strcmp(member, "GetAll"), set = !strcmp(member, "Set");
	const char *sig = get ? "ss" : get_all ? "s" : set ? "ssv" : NULL;
	if (!sig) {
		bus_reply_error(b, msg, DBUS_ERROR_UNKNOWN_METHOD, "no method %s in %s", member,
				DBUS_INTERFACE_PROPERTIES);
		return;
	}
	if (!dbus_message_has_signature(msg, sig)) {
		bus_reply_error(b, msg, DBUS_ERROR_INVALID_ARGS, "%s takes (%s)", member, sig);
		return;
	}
	DBusMessageIter args;
	dbus_message_iter_init(msg, &args);
	dbus_message_iter_get_basic(&args, &iface);
	if (!get_all) {
		dbus_message_iter_next(&args);
		dbus_message_iter_get_basic(&args, &name);
	}
	if (strcmp(iface, iface_name)) {
		bus_reply_error(b, msg, DBUS_ERROR_UNKNOWN_INTERFACE, "no interface %s with properties here", iface);
		return;
	}
	const struct bus_prop *p = NULL;
	if (!get_all) {
		for (p = props; p->name && strcmp(p->name, name); p++)
			;
		if (!p->name) {
			bus_reply_error(b, msg, DBUS_ERROR_UNKNOWN_PROPERTY, "no property %s in %s", name, iface);
			return;
		}
		if (set) {
			bus_reply_error(b, msg, DBUS_ERROR_PROPERTY_READ_ONLY, "%s is read-only", name);
			return;
		}
	}
	DBusMessage *r = dbus_message_new_method_return(msg);
	DBusMessageIter it;
	bool ok = r;
	if (ok) {
		dbus_message_iter_init_append(r, &it);
		ok = get ? bus_append_value(b, e, p, &it) : bus_append_props(b, e, props, NULL, &it);
	}
	bus_send_reply(b, msg, r, ok);
}

static void m_introspect(struct bus *b, DBusMessage *msg, const char *path)
{
	char *doc = introspect(b, path);
	if (!doc) {
		bus_reply_error(b, msg, DBUS_ERROR_UNKNOWN_OBJECT, "no object %s", path);
		return;
	}
	DBusMessage *r = dbus_message_new_method_return(msg);
	const char *d = doc;
	if (r && !dbus_message_append_args(r, DBUS_TYPE_STRING, &d, DBUS_TYPE_INVALID)) {
		dbus_message_unref(r);
		r = NULL;
	}
	free(doc);
	bus_send(b, r);
}

static bool is_call(DBusMessage *msg, const char *iface, const char *member)
{
	const char *i = dbus_message_get_interface(msg);
	/* A call without an interface matches by member alone, as the
	 * specification allows. */
	return (!i || !strcmp(i, iface)) && !strcmp(dbus_message_get_member(msg), member);
}

static void handle_manager(struct bus *b, DBusMessage *msg)
{
	const char *iface = dbus_message_get_interface(msg);
	if (iface && !strcmp(iface, DBUS_INTERFACE_PROPERTIES))
		m_properties(b, msg, BUS_IFACE_MANAGER, bus_manager_props, NULL);
	else if (is_call(msg, BUS_IFACE_MANAGER, "LoadModel"))
		bus_method_load_model(b, msg);
	else if (is_call(msg, BUS_IFACE_MANAGER, "EvictModel")) {
		const char *name;
		if (dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &name, DBUS_TYPE_INVALID) &&
		    dbus_message_has_signature(msg, "s"))
			bus_method_evict(b, msg, name, 0);
		else
			bus_reply_error(b, msg, DBUS_ERROR_INVALID_ARGS, "EvictModel takes (s)");
	} else if (is_call(msg, BUS_IFACE_MANAGER, "ListModels"))
		bus_method_list_models(b, msg);
	else if (is_call(msg, DBUS_INTERFACE_OBJECT_MANAGER, "GetManagedObjects"))
		m_get_managed_objects(b, msg);
	else
		bus_reply_error(b, msg, DBUS_ERROR_UNKNOWN_METHOD, "no method %s.%s on %s", iface ? iface : "",
				dbus_message_get_member(msg), BUS_PATH);
}

static void handle_model(struct bus *b, DBusMessage *msg, struct model_entry *e)
{
	const char *iface = dbus_message_get_interface(msg);
	if (iface && !strcmp(iface, DBUS_INTERFACE_PROPERTIES))
		m_properties(b, msg, BUS_IFACE_MODEL, bus_model_props, e);
	else if (is_call(msg, BUS_IFACE_MODEL, "Evict"))
		bus_method_evict(b, msg, e->name, e->load_seq);
	else
		bus_reply_error(b, msg, DBUS_ERROR_UNKNOWN_METHOD, "no method %s.%s on %s", iface ? iface : "",
				dbus_message_get_member(msg), dbus_message_get_path(msg));
}

DBusHandlerResult bus_handle_message(DBusConnection *conn, DBusMessage *msg, void *data)
{
	(void)conn;
	struct bus *b = data;
	if (dbus_message_get_type(msg) != DBUS_MESSAGE_TYPE_METHOD_CALL)
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	const char *path = dbus_message_get_path(msg);
	log_debug("D-Bus: %s.%s on %s from %s", dbus_message_get_interface(msg) ? dbus_message_get_interface(msg) : "",
		  dbus_message_get_member(msg), path, dbus_message_get_sender(msg));
	struct model_entry *e;
	if (is_call(msg, DBUS_INTERFACE_INTROSPECTABLE, "Introspect"))
		m_introspect(b, msg, path);
	else if (!strcmp(path, BUS_PATH))
		handle_manager(b, msg);
	else if ((e = bus_object_model(b, path)))
		handle_model(b, msg, e);
	else
		bus_reply_error(b, msg, DBUS_ERROR_UNKNOWN_OBJECT, "no object %s", path);
	return DBUS_HANDLER_RESULT_HANDLED;
}

