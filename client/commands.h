/* The commands of pinfer, one function each, called by main() with the
 * global options and the command's own arguments (argv[0] is the command
 * name). Each returns the process's exit code (report.h). */
#ifndef PINFER_CLIENT_COMMANDS_H
#define PINFER_CLIENT_COMMANDS_H

#include <stdbool.h>

/* Where load, evict and ps look for pinferd first (--bus, $PINFER_BUS);
 * "auto" is resolved by main() to one of these. */
enum bus_choice {
	BUS_NONE,     /* the socket only */
	BUS_SYSTEM,   /* the system bus, then the socket */
	BUS_SESSION,  /* the session bus, then the socket */
};

struct global {
	const char *socket;  /* resolved: --socket, $PINFER_SOCKET or the default */
	enum bus_choice bus; /* resolved: --bus, $PINFER_BUS or auto */
	bool json;           /* --json: machine-readable output */
	bool verbose;        /* -v */
};

int cmd_run(struct global *g, int argc, char **argv);
int cmd_chat(struct global *g, int argc, char **argv);
int cmd_list(struct global *g, int argc, char **argv);
int cmd_ps(struct global *g, int argc, char **argv);
int cmd_status(struct global *g, int argc, char **argv);
int cmd_ping(struct global *g, int argc, char **argv);
int cmd_tokenize(struct global *g, int argc, char **argv);
int cmd_load(struct global *g, int argc, char **argv);
int cmd_evict(struct global *g, int argc, char **argv);  /* also "unload" */

#endif
