/* One protocol connection of the load tool: connect, Hello, send, and
 * receive with a deadline. Kept apart from client/conn.c because a load
 * client must never block without a deadline, must see a close as an
 * event rather than a report, and also sends bytes that are not frames.
 * Every failing call leaves a sentence in why. */
#ifndef PINFER_LOAD_WIRE_H
#define PINFER_LOAD_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "error.h"
#include "frame.h"

struct wire {
	int fd;
	size_t max_frame;  /* the daemon's, once Hello is answered */
	struct frame_in in;
	struct proto_arena arena;
};

enum wire_status {
	WIRE_MSG,      /* *out is the next message, valid until the next recv */
	WIRE_CLOSED,   /* the daemon closed the connection between frames */
	WIRE_TIMEOUT,  /* the deadline passed */
	WIRE_FAILED,   /* why says what: read error, bad frame, close mid-frame */
};

/* Monotonic milliseconds: the clock of every deadline here. */
int64_t wire_now_ms(void);

/* Connects without sending anything. 0, or -1 with why set. */
int wire_connect(struct wire *w, const char *path, struct pf_err *why);

/* wire_connect, then Hello and its reply before deadline_ms. */
int wire_open(struct wire *w, const char *path, int64_t deadline_ms, struct pf_err *why);

void wire_close(struct wire *w);

/* Sends one ClientMessage / raw bytes whole, failing once deadline_ms
 * passes. 0, or -1 with why set. */
int wire_send(struct wire *w, const Pinfer__ClientMessage *m, int64_t deadline_ms, struct pf_err *why);
int wire_send_bytes(struct wire *w, const void *buf, size_t n, int64_t deadline_ms, struct pf_err *why);

enum wire_status wire_recv(struct wire *w, int64_t deadline_ms, Pinfer__ServerMessage **out,
			   struct pf_err *why);

#endif
