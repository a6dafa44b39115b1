/* pinferd's side of the service manager protocol (sd_notify(3)): READY,
 * RELOADING, STOPPING, STATUS and the watchdog keep-alive.
 *
 * Every call is a no-op when no service manager listens ($NOTIFY_SOCKET
 * unset), and when pinferd is built with WITH_SYSTEMD=0, where the stubs
 * below let callers stay free of #ifs. Loop thread only. */
#ifndef PINFERD_NOTIFY_H
#define PINFERD_NOTIFY_H

#include <stdint.h>

#if WITH_SYSTEMD

/* The daemon serves requests. status: the STATUS= text sent with it. */
void notify_ready(const char *status);
/* SIGHUP: the configuration is being reread; notify_ready() ends it. */
void notify_reloading(void);
void notify_stopping(void);
/* STATUS= text for `systemctl status`; repeats of the last text are not
 * sent again, so callers may call it as often as they like. */
void notify_status(const char *status);
/* The watchdog interval the service manager asked for, in microseconds, or
 * 0 when it asked for none (or for another process). */
uint64_t notify_watchdog_usec(void);
void notify_watchdog(void);
/* Stopping takes longer than planned (a load that cannot be cut short):
 * the manager waits usec more from now, whatever its stop timeout. */
void notify_extend_timeout(uint64_t usec);

#else

static inline void notify_ready(const char *status) { (void)status; }
static inline void notify_reloading(void) {}
static inline void notify_stopping(void) {}
static inline void notify_status(const char *status) { (void)status; }
static inline uint64_t notify_watchdog_usec(void) { return 0; }
static inline void notify_watchdog(void) {}
static inline void notify_extend_timeout(uint64_t usec) { (void)usec; }

#endif

#endif
