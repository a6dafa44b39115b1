/* How pinfer reports failure: the exit codes documented in docs/client.md
 * and the "pinfer: ..." lines on stderr.
 *
 * Convention: a client function that returns an exit code has already
 * printed why it failed, so callers only pass the code up. */
#ifndef PINFER_CLIENT_REPORT_H
#define PINFER_CLIENT_REPORT_H

#include "pinfer.pb-c.h"

#define PINFER_CLIENT_VERSION "0.1.0"

enum exit_code {
	EXIT_OK = 0,
	EXIT_FAIL = 1,      /* the daemon refused or failed the request */
	EXIT_USAGE = 2,     /* bad command line */
	EXIT_NOCONN = 3,    /* cannot connect: pinferd is not running */
	EXIT_PROTO = 4,     /* the conversation with pinferd broke */
	EXIT_INTR = 130,    /* cancelled with Ctrl-C (128 + SIGINT, as shells do) */
};

/* Prints "pinfer: <message>\n" on stderr. */
void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints a daemon Error as "pinfer: <message> (<code name>)" and returns the
 * exit code it maps to: EXIT_PROTO for codes that mean the conversation
 * itself went wrong (version, framing, handshake), EXIT_FAIL otherwise. */
int report_daemon_error(const Pinfer__Error *e);

/* "not found" for ERR_NOT_FOUND: the enum name, readable. Codes this client
 * does not know read as ERR_INTERNAL, as docs/protocol.md asks. */
const char *error_code_text(int code, char *buf, size_t size);

#endif
