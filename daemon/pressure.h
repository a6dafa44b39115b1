/* Memory-pressure watching for pinferd, over the daemon's event loop, after
 * systemd's memory pressure protocol (systemd.exec(5), "Memory Pressure
 * Handling"; sd_event_add_memory_pressure(3)).
 *
 * The source:
 * - $MEMORY_PRESSURE_WATCH set: empty or "/dev/null" turns watching off.
 *   Otherwise an absolute path to
 *   - a PSI file on procfs or cgroupfs (/proc/pressure/memory, a cgroup's
 *     memory.pressure): opened read-write, given the trigger (below), then
 *     watched for EPOLLPRI;
 *   - a FIFO: opened read-write, so that no hang-up is seen when its
 *     writers come and go, watched for reading; what is read is drained
 *     and every readable burst is one report. Nothing is written to it;
 *   - a Unix socket (stream, seqpacket or datagram): connected to, sent the
 *     decoded $MEMORY_PRESSURE_WRITE when set, watched for reading, each
 *     readable burst one report. A hang-up or EOF stops the watch with a
 *     warning. A datagram socket is autobound to an abstract address for
 *     the server to answer to, which only a server in the same network
 *     namespace can reach.
 *   Anything else (a directory, a device, a regular file off procfs and
 *   cgroupfs) is an error.
 *   A PSI file's trigger is $MEMORY_PRESSURE_WRITE, base64-decoded; unset
 *   or empty, systemd's default, "some 200000 2000000" (200 ms of stall in
 *   a 2 s window) with its terminating NUL, as systemd writes it.
 * - $MEMORY_PRESSURE_WATCH unset: /proc/pressure/memory with the default
 *   trigger. When that cannot be had (no PSI in the kernel, not allowed),
 *   there is no source, which is logged at info level and is not an error.
 *
 * Coalescing: fn runs at most once per PRESSURE_INTERVAL_MS. A report while
 * idle calls fn at once and opens an interval; reports during the interval
 * are folded into one call at its end, which opens the next interval. So a
 * steady stream of reports calls fn once per interval, and the last report
 * of a burst is never lost.
 *
 * Threads: the loop thread only, like daemon/loop.h. */
#ifndef PINFER_PRESSURE_H
#define PINFER_PRESSURE_H

#include "error.h"
#include "loop.h"

#define PRESSURE_INTERVAL_MS 1000

struct pressure;

/* Called on the loop thread when memory pressure is reported. It may call
 * pressure_close() on its own watcher. */
typedef void pressure_fn(void *data);

/* Starts watching. *out is NULL (and 0 returned) when no source is available
 * or it is turned off, which pressure_open has logged at info level; a
 * negative errno with err filled when a source is configured but unusable
 * (relative or missing path, bad base64, a file that is not PSI, FIFO or
 * socket, a refused trigger or connection). On success, the caller may log
 * pressure_source(). */
int pressure_open(struct pressure **out, struct loop *l, pressure_fn *fn, void *data,
                  struct pf_err *err);
/* Stops watching and cancels a pending call. Takes NULL. */
void pressure_close(struct pressure *p);
/* A one-line description of the source for the log, e.g.
 * "MEMORY_PRESSURE_WATCH=/sys/fs/cgroup/.../memory.pressure (PSI trigger
 * "some 200000 2000000")" or "/proc/pressure/memory (PSI trigger ...)". */
const char *pressure_source(const struct pressure *p);

#endif
