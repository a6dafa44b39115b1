/* pinferd's D-Bus control interface (docs/dbus-api.md): the name
 * org.pinfer.Pinfer1 with a manager object and one object per loaded model,
 * served by libdbus inside the daemon's epoll loop.
 *
 * Loop thread only. D-Bus is never needed: when the bus cannot be reached
 * or the name cannot be had, bus_open logs a warning and the daemon serves
 * its socket alone; the same when the bus goes away later. */
#ifndef PINFERD_BUS_H
#define PINFERD_BUS_H

#include "config.h"

struct bus;
struct server;
struct model_entry;

/* Connects to the bus cfg names, takes the name and exports the objects.
 * *out is NULL when D-Bus is off or unavailable; never fails otherwise. */
void bus_open(struct bus **out, struct server *s, enum config_bus which);
/* Fails the calls still waiting, releases the name. Takes NULL. */
void bus_close(struct bus *b);
/* Once per loop iteration: runs the calls that arrived and signals what
 * changed (objects added and removed, manager properties). */
void bus_before_sleep(struct bus *b);
/* A load ended: answers the LoadModel calls waiting for it. */
void bus_load_done(struct bus *b, struct model_entry *e, int status, const char *error);

#endif
