/* pinferd: serves language models over a Unix socket. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "server.h"

static void on_stop_signal(struct loop *l, int signo, void *data)
{
	(void)l;
	log_info("%s received", strsignal(signo));
	server_shutdown(data);
}

int main(int argc, char **argv)
{
	struct config cfg;
	struct pf_err err;
	log_init();
	int r = config_load(&cfg, argc, argv, &err);
	if (r > 0)
		return 0;
	if (r < 0) {
		fprintf(stderr, "pinferd: %s\n", err.msg);
		return 2;
	}
	log_set_level(cfg.log_level);
	/* A client that hangs up mid-write must cost an EPIPE, not the daemon. */
	signal(SIGPIPE, SIG_IGN);

	struct loop *loop;
	if ((r = loop_new(&loop))) {
		log_error("cannot create the event loop: %s", strerror(-r));
		return 1;
	}
	struct server srv;
	/* Routed before anything can arrive that the loop should handle. */
	if ((r = loop_signal(loop, SIGTERM, on_stop_signal, &srv)) ||
	    (r = loop_signal(loop, SIGINT, on_stop_signal, &srv))) {
		log_error("cannot route signals: %s", strerror(-r));
		loop_free(loop);
		return 1;
	}
	int status = 0;
	if (server_init(&srv, &cfg, loop, &err)) {
		log_error("%s", err.msg);
		status = 1;
	} else {
		log_info("pinferd %s ready: models in %s, %d slots per model", PINFERD_VERSION,
			 cfg.models_dir, cfg.slots);
		if ((r = loop_run(loop))) {
			log_error("event loop failed: %s", strerror(-r));
			status = 1;
		}
	}
	server_destroy(&srv);
	loop_free(loop);
	log_info("pinferd stopped");
	return status;
}
