/* The commands of pinfer, one function each, called by main() with the
 * global options and the command's own arguments (argv[0] is the command
 * name). Each returns the process's exit code (report.h). */
#ifndef PINFER_CLIENT_COMMANDS_H
#define PINFER_CLIENT_COMMANDS_H

#include <stdbool.h>

struct global {
	const char *socket;  /* resolved: --socket, $PINFER_SOCKET or the default */
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
int cmd_unload(struct global *g, int argc, char **argv);

#endif
