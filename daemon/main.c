/* pinferd: serves language models over a Unix socket. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "access.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "notify.h"
#include "server.h"

/* What the signal handlers need: SIGHUP rereads the configuration the way
 * startup read it, from the same command line. */
struct daemon {
	struct config cfg;
	struct server srv;
	int argc;
	char **argv;
	uint64_t watchdog_ms;      /* 0: no watchdog */
};

static void on_stop_signal(struct loop *l, int signo, void *data)
{
	(void)l;
	struct daemon *d = data;
	log_info("%s received", strsignal(signo));
	notify_stopping();
	server_shutdown(&d->srv);
}

/* Applies what can change without a restart: the log level and the default
 * keep-alive (docs/systemd.md). The file is reread under the same flags, so
 * a flag still wins over the file; a bad file keeps every setting as it
 * was. */
static void on_reload(struct loop *l, int signo, void *data)
{
	(void)l;
	(void)signo;
	struct daemon *d = data;
	if (d->srv.stopping) {
		log_info("SIGHUP ignored: the daemon is stopping");
		return;
	}
	notify_reloading();
	struct config fresh;
	struct pf_err err;
	if (config_load(&fresh, d->argc, d->argv, &err)) {
		log_error("reload failed, keeping the current settings: %s", err.msg);
	} else {
		d->cfg.log_level = fresh.log_level;
		d->cfg.keep_alive_ms = fresh.keep_alive_ms;
		log_set_level(fresh.log_level);
		models_set_default_keep_alive(d->srv.models, fresh.keep_alive_ms);
		log_info("reloaded %s: log level %s, default keep-alive %lld ms", d->cfg.config_file,
			 log_level_name(fresh.log_level), (long long)fresh.keep_alive_ms);
	}
	/* Whatever the file said: an administrator who changed a user's
	 * groups reloads to have them count now, not when the cached
	 * answer expires. */
	access_forget(d->srv.access);
	char status[128];
	server_status_text(&d->srv, status, sizeof(status));
	notify_ready(status);
}

/* Pings from the loop itself, so a loop that hangs stops them and the
 * manager restarts the daemon. */
static void on_watchdog(struct loop *l, void *data)
{
	struct daemon *d = data;
	notify_watchdog();
	if (!loop_timer_add(l, d->watchdog_ms, on_watchdog, d))
		log_error("cannot re-arm the watchdog timer: out of memory");
}

int main(int argc, char **argv)
{
	/* Static: the daemon's state lives as long as the process, and the
	 * server is large for a stack. */
	static struct daemon d;
	struct pf_err err;
	log_init();
	d.argc = argc;
	d.argv = argv;
	int r = config_load(&d.cfg, argc, argv, &err);
	if (r > 0)
		return 0;
	if (r < 0) {
		fprintf(stderr, "pinferd: %s\n", err.msg);
		return 2;
	}
	log_set_level(d.cfg.log_level);
	/* A client that hangs up mid-write must cost an EPIPE, not the daemon. */
	signal(SIGPIPE, SIG_IGN);

	struct loop *loop;
	if ((r = loop_new(&loop))) {
		log_error("cannot create the event loop: %s", strerror(-r));
		return 1;
	}
	/* Routed before anything can arrive that the loop should handle. */
	if ((r = loop_signal(loop, SIGTERM, on_stop_signal, &d)) ||
	    (r = loop_signal(loop, SIGINT, on_stop_signal, &d)) ||
	    (r = loop_signal(loop, SIGHUP, on_reload, &d))) {
		log_error("cannot route signals: %s", strerror(-r));
		loop_free(loop);
		return 1;
	}
	int status = 0;
	if (server_init(&d.srv, &d.cfg, loop, &err)) {
		log_error("%s", err.msg);
		status = 1;
	} else {
		/* Half the interval, as sd_watchdog_enabled(3) advises, leaves a
		 * busy iteration room before the manager gives up. */
		uint64_t usec = notify_watchdog_usec();
		d.watchdog_ms = usec ? (usec / 2000 ? usec / 2000 : 1) : 0;
		if (d.watchdog_ms && !loop_timer_add(loop, d.watchdog_ms, on_watchdog, &d)) {
			log_error("cannot start the watchdog timer: out of memory");
			status = 1;
		}
	}
	if (!status) {
		log_info("pinferd %s ready: models in %s, %d slots per model", PINFERD_VERSION,
			 d.cfg.models_dir, d.cfg.slots);
		/* The socket is up. Anything else clients reach the daemon by
		 * (a D-Bus name) must be acquired above this line: READY=1 is
		 * what units ordered After= pinferd wait for. */
		char text[128];
		server_status_text(&d.srv, text, sizeof(text));
		notify_ready(text);
		if ((r = loop_run(loop))) {
			log_error("event loop failed: %s", strerror(-r));
			status = 1;
		}
	}
	server_destroy(&d.srv);
	loop_free(loop);
	log_info("pinferd stopped");
	return status;
}
