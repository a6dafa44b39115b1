/* Shared by bus.c (the connection and its place in the event loop) and
 * bus_objects.c (the objects, methods and properties). Not for the rest of
 * the daemon: bus.h is its interface. */
#ifndef PINFERD_BUS_INTERNAL_H
#define PINFERD_BUS_INTERNAL_H

#include <dbus/dbus.h>
#include <stdbool.h>
#include <stdint.h>

#include "access.h"
#include "bus.h"
#include "models.h"

#define BUS_NAME "org.pinfer.Pinfer1"
#define BUS_PATH "/org/pinfer/Pinfer1"
#define BUS_MODEL_PREFIX "/org/pinfer/Pinfer1/Model/"
#define BUS_IFACE_MANAGER "org.pinfer.Pinfer1.Manager"
#define BUS_IFACE_MODEL "org.pinfer.Pinfer1.Model"
#define BUS_ERROR_PREFIX "org.pinfer.Pinfer1.Error."
/* libdbus names the other standard interfaces, not this one. */
#define DBUS_INTERFACE_OBJECT_MANAGER "org.freedesktop.DBus.ObjectManager"

/* A method call that waits: for the bus to say who sent it, maybe for the
 * user database to say whether that user may (access.h), then (LoadModel)
 * for the load. Holds a reference to the call and, while it waits for a
 * load, one use of the model (models_use). */
struct bus_call {
	struct bus *bus;
	DBusMessage *msg;
	enum { CALL_LOAD, CALL_EVICT } kind;
	char name[MODEL_NAME_MAX];
	bool has_keep_alive;
	int64_t keep_alive_ms;
	uint64_t max_bytes;
	enum pinfer_sparsity sparsity;
	struct models_budget budget;  /* BUDGET_AUTO (0) unless asked */
	uint64_t seq;              /* Model.Evict: the load its object stands for */
	DBusPendingCall *pending;  /* GetConnectionUnixUser, while asked */
	uid_t uid;                 /* the caller's, once the bus said */
	struct access_wait access_wait;  /* then, while its groups are looked up */
	struct bus_call *next;     /* in bus.asking (either wait) or bus.loading */
};

/* A model object: the load it stands for. */
struct bus_object {
	uint64_t seq;
	char name[MODEL_NAME_MAX];
};

struct bus {
	struct server *srv;
	DBusConnection *conn;
	bool lost;                 /* disconnected: close at the next iteration */
	bool name_lost;            /* ... because the name went, on a working connection */
	DBusWatch **watches;
	int n_watches, cap_watches;
	struct bus_object *objects;  /* exported, by seq */
	int n_objects, cap_objects;
	bool objects_changed;      /* LoadedModels to signal */
	/* Manager properties as last signalled. */
	bool stopping;
	uint64_t memory_used, memory_budget;
	struct bus_call *asking;
	struct bus_call *loading;
};

/* bus_props.c: a property's value (type DBUS_TYPE_ARRAY: LoadedModels,
 * appended specially). */
struct bus_value {
	int type;                  /* DBUS_TYPE_* */
	union {
		const char *s;
		uint64_t t;
		int64_t x;
		uint32_t u;
		double d;
	};
};

struct bus_prop {
	const char *name;
	void (*get)(struct bus *b, struct model_entry *e, struct bus_value *v);
};
extern const struct bus_prop bus_manager_props[], bus_model_props[];  /* end: name NULL */
void bus_object_path(char *buf, size_t size, uint64_t seq);
/* Appends p's value as a variant (e: the model, NULL for the manager). */
bool bus_append_value(struct bus *b, struct model_entry *e, const struct bus_prop *p, DBusMessageIter *it);
/* Appends a{sv} of props, or of those named in only (NULL-terminated). */
bool bus_append_props(struct bus *b, struct model_entry *e, const struct bus_prop *props,
		      const char *const *only, DBusMessageIter *it);

/* bus_objects.c */
DBusHandlerResult bus_handle_message(DBusConnection *conn, DBusMessage *msg, void *data);
/* The loaded model behind a model object path, or NULL. */
struct model_entry *bus_object_model(struct bus *b, const char *path);
/* Signals objects added and removed and manager properties that changed
 * since the last call; methods call it before replying so a caller sees
 * the signals first. */
void bus_sync(struct bus *b);

/* bus_methods.c */
void bus_method_load_model(struct bus *b, DBusMessage *msg);
/* LoadModel's arguments (sa{sv}: a model name and options) checked and
 * read into c's name and options, nothing else touched (the D-Bus fuzz
 * target calls it alone); false with the error's D-Bus name and text. */
bool bus_load_args(DBusMessage *msg, struct bus_call *c, const char **error, char *why, size_t size);
/* seq: Model.Evict of that load's object; 0: Manager.EvictModel. */
void bus_method_evict(struct bus *b, DBusMessage *msg, const char *name, uint64_t seq);
void bus_method_list_models(struct bus *b, DBusMessage *msg);
void bus_call_free(struct bus_call *c);
/* Sends m and drops it (NULL: out of memory, logged). */
void bus_send(struct bus *b, DBusMessage *m);
/* Sends reply to msg when complete; otherwise (reply NULL or half built
 * when memory ran out) drops it and replies NoMemory. */
void bus_send_reply(struct bus *b, DBusMessage *msg, DBusMessage *reply, bool complete);
void bus_reply_error(struct bus *b, DBusMessage *msg, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
