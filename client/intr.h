/* Ctrl-C while blocked. SIGINT writes a byte into a pipe that the client
 * polls next to the socket (the self-pipe trick): a flag checked before a
 * blocking read could be set just after the check, and the read would then
 * sleep through the interrupt. */
#ifndef PINFER_CLIENT_INTR_H
#define PINFER_CLIENT_INTR_H

#include <stdbool.h>

/* Creates the pipe and installs the SIGINT handler. Returns an exit code
 * (EXIT_OK, or EXIT_FAIL after reporting). */
int intr_install(void);

/* The pipe's read end, to poll for POLLIN; -1 before intr_install(). */
int intr_fd(void);

/* Whether Ctrl-C was pressed since the last call; empties the pipe. */
bool intr_take(void);

#endif
