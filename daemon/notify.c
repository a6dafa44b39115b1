/* Built only for WITH_SYSTEMD=1; notify.h has the stubs otherwise. */
#include "notify.h"

#if WITH_SYSTEMD

#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"

/* The last STATUS= sent: status lines are recomputed every loop iteration
 * and most iterations change nothing. */
static char last_status[256];

/* Failures are logged, not returned: the daemon serves the same whether
 * or not the manager heard it, and a manager that lost a READY=1 times the
 * start out on its own. Logged when they start, not for every status
 * line while they last. */
static void notify_send(const char *state)
{
	static int last_error;
	int r = sd_notify(0, state);
	if (r < 0 && r != last_error)
		log_warn("cannot notify the service manager: %s", strerror(-r));
	last_error = r < 0 ? r : 0;
}

void notify_status(const char *status)
{
	if (!strcmp(status, last_status))
		return;
	snprintf(last_status, sizeof(last_status), "%s", status);
	char msg[sizeof(last_status) + 8];
	snprintf(msg, sizeof(msg), "STATUS=%s", last_status);
	notify_send(msg);
}

void notify_ready(const char *status)
{
	snprintf(last_status, sizeof(last_status), "%s", status);
	char msg[sizeof(last_status) + 32];
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", last_status);
	notify_send(msg);
}

void notify_reloading(void)
{
	/* MONOTONIC_USEC is what systemd 253's Type=notify-reload requires
	 * with RELOADING=1; older managers ignore it. */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	char msg[96];
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
	notify_send(msg);
}

void notify_stopping(void)
{
	notify_send("STOPPING=1");
}

uint64_t notify_watchdog_usec(void)
{
	uint64_t usec = 0;
	int r = sd_watchdog_enabled(0, &usec);
	if (r < 0)
		log_warn("ignoring the watchdog settings: %s", strerror(-r));
	return r > 0 ? usec : 0;
}

void notify_watchdog(void)
{
	notify_send("WATCHDOG=1");
}

void notify_extend_timeout(uint64_t usec)
{
	char msg[64];
	snprintf(msg, sizeof(msg), "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
	notify_send(msg);
}

#endif
