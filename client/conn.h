/* One connection to pinferd: connect, the Hello handshake, sending
 * requests and receiving replies, with Ctrl-C watched while blocked.
 * Every function that returns an exit code has reported its failure. */
#ifndef PINFER_CLIENT_CONN_H
#define PINFER_CLIENT_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "frame.h"

/* How long connect and the handshake may take: a daemon that accepts but
 * never answers must not hang the client. Replies to requests have no
 * limit (a generation or a model load can take long); Ctrl-C ends them. */
#define CONN_TIMEOUT_MS 10000

struct conn {
	int fd;
	const char *path;        /* for messages */
	size_t max_frame;        /* the daemon's, from HelloReply */
	struct frame_in in;
	struct proto_arena arena;
	uint64_t next_id;
	char server_version[64];
};

/* The system service's socket; pinferd on the system bus serves it. */
#define CONN_SYSTEM_PATH "/run/pinferd.sock"

/* The socket to use: path when given (--socket), else $PINFER_SOCKET, else
 * the daemon's default (daemon/config.c): $XDG_RUNTIME_DIR/pinferd.sock for
 * users, CONN_SYSTEM_PATH for root or without XDG_RUNTIME_DIR. */
const char *conn_default_path(const char *path);

/* Whether the socket was named (path, or $PINFER_SOCKET) rather than
 * defaulted. */
bool conn_path_named(const char *path);

/* Connects and completes the handshake. Returns EXIT_OK, or EXIT_NOCONN
 * (nothing listens at path), EXIT_PROTO or EXIT_FAIL after reporting;
 * c needs no conn_close() then. */
int conn_open(struct conn *c, const char *path);
void conn_close(struct conn *c);

/* A request id not used before on this connection. */
uint64_t conn_new_id(struct conn *c);

/* Sends one message. EXIT_OK or EXIT_PROTO. */
int conn_send(struct conn *c, const Pinfer__ClientMessage *m);

/* Tells the daemon to stop request id. EXIT_OK or EXIT_PROTO. */
int conn_cancel(struct conn *c, uint64_t id);

enum recv_status {
	RECV_MSG,        /* *out is the next message, valid until the next recv */
	RECV_INTR,       /* Ctrl-C was pressed (only when interruptible) */
	RECV_TIMEOUT,    /* deadline passed */
	RECV_FAILED,     /* reported: connection closed, read error, bad frame */
};

/* Monotonic milliseconds, for deadlines. */
int64_t conn_now_ms(void);

/* Waits for the next message until deadline_ms (conn_now_ms() clock; < 0:
 * no deadline). With interruptible, Ctrl-C ends the wait with RECV_INTR. */
enum recv_status conn_recv(struct conn *c, int64_t deadline_ms, bool interruptible,
			   Pinfer__ServerMessage **out);

/* Sends m (whose request id is id) and waits for its reply of type want.
 * An Error for id or for the connection is reported. Returns EXIT_OK with
 * *reply set (valid until the next recv), EXIT_INTR on Ctrl-C (closing the
 * connection cancels the request), or another exit code after reporting. */
int conn_call(struct conn *c, const Pinfer__ClientMessage *m, uint64_t id,
	      Pinfer__ServerMessage__MsgCase want, Pinfer__ServerMessage **reply);

#endif
