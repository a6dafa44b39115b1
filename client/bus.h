/* pinferd's D-Bus interface (docs/dbus-api.md) from the client's side: a
 * private, blocking libdbus connection, the Manager's methods, the Model
 * objects' properties read into the protocol's ModelInfo (so that the
 * socket's printers print them), and the D-Bus error names mapped to
 * messages and exit codes.
 *
 * Every function that returns an int returns EXIT_OK, an exit code after
 * reporting, or BUS_FALLBACK: pinferd is not on this bus (no bus, or no
 * owner of org.pinfer.Pinfer1 and none activatable). Nothing was reported
 * then and b->why says why; the caller uses the socket instead. Only the
 * first call to pinferd falls back: once it has answered, its leaving the
 * bus is an error like the socket closing. */
#ifndef PINFER_CLIENT_BUS_H
#define PINFER_CLIENT_BUS_H

#include <dbus/dbus.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "commands.h"
#include "report.h"

#define BUS_NAME "org.pinfer.Pinfer1"
#define BUS_MANAGER_PATH "/org/pinfer/Pinfer1"
#define BUS_MANAGER_IFACE "org.pinfer.Pinfer1.Manager"
#define BUS_MODEL_IFACE "org.pinfer.Pinfer1.Model"

/* LoadModel replies after the load, which may read gigabytes from flash;
 * every other call answers at once. */
#define BUS_LOAD_TIMEOUT_MS (10 * 60 * 1000)
#define BUS_CALL_TIMEOUT_MS 25000

#define BUS_FALLBACK (-1)

struct bus_conn {
	DBusConnection *conn;
	enum bus_choice kind;
	bool verbose;      /* -v: the bus's own wording of a refusal too */
	bool reached;      /* pinferd answered: no falling back any more */
	char why[512];     /* after BUS_FALLBACK */
};

/* "system", "session"; NULL for BUS_NONE. */
const char *bus_choice_name(enum bus_choice kind);

/* Connects to the system or session bus. A session bus is only used when
 * DBUS_SESSION_BUS_ADDRESS or $XDG_RUNTIME_DIR/bus names one: libdbus
 * would otherwise try to start one (X11 autolaunch), where pinferd cannot
 * be. EXIT_OK or BUS_FALLBACK; b needs bus_close() either way. */
int bus_open(struct bus_conn *b, enum bus_choice kind, bool verbose);
void bus_close(struct bus_conn *b);

/* A model as the bus describes it: mi filled as the socket's ListModels
 * would (chat_template NULL: the bus does not tell), its strings valid
 * until bus_model_free(). object: its Model object, "" when not loaded. */
struct bus_model {
	Pinfer__ModelInfo mi;
	char object[128];
	DBusMessage *props;  /* the reply that mi's strings point into */
};
void bus_model_free(struct bus_model *m);

/* Manager.LoadModel(name, {keep-alive-ms, sparsity, memory-budget})
 * (has_keep_alive: that option is sent; sparsity, memory_budget NULL: not
 * sent), then the new object's
 * properties into *m. A model unloaded again before they are read
 * (keep-alive 0) is described by ListModels, as not loaded. */
int bus_load_model(struct bus_conn *b, const char *name, bool has_keep_alive,
		   int64_t keep_alive_ms, const char *sparsity, const char *memory_budget,
		   struct bus_model *m);

/* Manager.EvictModel(name); *was_loaded: ListModels said it was loaded
 * just before. */
int bus_evict_model(struct bus_conn *b, const char *name, bool *was_loaded);

/* Manager.LoadedModels, then each object's properties, sorted by name. An
 * object that goes between the two (an unload) is left out. *models is an
 * array of *n to free with bus_models_free(). */
int bus_loaded_models(struct bus_conn *b, struct bus_model **models, size_t *n);
void bus_models_free(struct bus_model *models, size_t n);

#endif
