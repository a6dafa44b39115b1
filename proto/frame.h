/* Framing of the pinferd protocol (docs/protocol.md), shared by the daemon
 * and the client.
 *
 * On the wire every message is a 4-byte big-endian length followed by that
 * many bytes of one serialized ClientMessage or ServerMessage. A length over
 * the peer's max_frame is a protocol violation: the stream cannot be
 * resynchronized, so the connection is closed after an error frame.
 *
 * Errors: calls return 0 (or a count, or a status) on success and a
 * negative errno code on failure, and fill an optional struct pf_err with a
 * sentence saying what failed and where. Nothing here exits, and no input
 * makes a buffer grow past max_frame + 4 bytes. */
#ifndef PINFER_PROTO_FRAME_H
#define PINFER_PROTO_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "arena.h"
#include "error.h"
#include "pinfer.pb-c.h"

/* The protocol version pinfer.proto describes. A peer whose major differs
 * is refused; minors add fields, messages or meanings (docs/protocol.md). */
#define PROTO_MAJOR 1
#define PROTO_MINOR 3

#define FRAME_HEADER 4
/* max_frame when nothing else is configured, and what a client assumes
 * until the HelloReply tells it the daemon's. */
#define FRAME_MAX_DEFAULT (1u << 20)
/* A daemon never advertises less, so a client may send any request up to
 * this size without looking at HelloReply.max_frame. */
#define FRAME_MAX_MIN (64u << 10)

/* A byte queue: data[start, end) is held, data[0, start) already consumed.
 * Shared by the input and output sides; the fields are private. */
struct frame_buf {
	uint8_t *data;
	size_t cap, start, end;
};

/* ---- Input: splitting a byte stream into frames ---- */

struct frame_in {
	struct frame_buf b;
	size_t max_frame;
};

enum frame_status {
	FRAME_NEED_MORE,  /* no complete frame held yet */
	FRAME_READY,      /* *frame, *len: the next frame's message bytes */
	FRAME_TOO_LARGE,  /* the next frame declares *len > max_frame; fatal */
};

void frame_in_init(struct frame_in *in, size_t max_frame);
void frame_in_free(struct frame_in *in);

/* Appends up to n bytes from data. Returns how many were taken, which is
 * less than n when the buffer (max_frame + 4 bytes) is full: extract the
 * complete frames with frame_in_next(), then feed the rest. Returns -ENOMEM
 * when the buffer cannot grow. */
ssize_t frame_in_feed(struct frame_in *in, const void *data, size_t n, struct pf_err *err);

/* One read() from fd into the buffer (EINTR retried). Returns the number of
 * bytes read, 0 at end of file, -EAGAIN when a non-blocking fd has nothing,
 * or another negative errno. Like feed, it may only be called again after
 * the complete frames held were extracted (-ENOBUFS otherwise). */
ssize_t frame_in_read(struct frame_in *in, int fd, struct pf_err *err);

/* Extracts the next complete frame. On FRAME_READY, *frame points into the
 * buffer and stays valid until the next feed or read; a zero-length frame
 * is READY with *len 0. On FRAME_TOO_LARGE, *len is the declared length,
 * err says it, and every later call says the same: the stream is lost. */
enum frame_status frame_in_next(struct frame_in *in, const uint8_t **frame, size_t *len,
				struct pf_err *err);

/* Bytes held that are not part of an extracted frame: non-zero at end of
 * file means the peer closed mid-frame. */
size_t frame_in_pending(const struct frame_in *in);

/* ---- Output: a queue of frames for a non-blocking socket ---- */

struct frame_out {
	struct frame_buf b;
	size_t max_frame;
	size_t max_queued;  /* bytes the queue may hold, headers included */
};

void frame_out_init(struct frame_out *q, size_t max_frame, size_t max_queued);
void frame_out_free(struct frame_out *q);

/* Appends one frame: the length and m packed (m is a ServerMessage or
 * ClientMessage, passed as &msg.base). -EMSGSIZE when the packed message is
 * over max_frame (the caller sends an error instead), -ENOBUFS when the
 * queue would go over max_queued (a peer that does not read), -ENOMEM. */
int frame_out_push(struct frame_out *q, const ProtobufCMessage *m, struct pf_err *err);

/* Sends as much of the queue as fd takes now, never blocking (fd must be a
 * socket; SIGPIPE is never raised). Returns 0 when the queue is empty, 1
 * when bytes remain (wait for EPOLLOUT), or a negative errno such as
 * -EPIPE when the peer is gone. */
int frame_out_write(struct frame_out *q, int fd, struct pf_err *err);

/* Bytes queued and not yet sent. */
size_t frame_out_pending(const struct frame_out *q);

/* ---- Blocking helpers for the client ---- */

/* Packs m and writes the whole frame to the socket fd, retrying short
 * writes and EINTR. -EMSGSIZE when m is over max_frame, -ETIMEDOUT when
 * the socket's SO_SNDTIMEO expired (or fd is non-blocking), -EPIPE etc.
 * when the peer is gone. */
int frame_write_all(int fd, const ProtobufCMessage *m, size_t max_frame, struct pf_err *err);

/* Reads from fd until one complete frame is held in `in` (bytes past it
 * stay there for the next call). Returns 1 with *frame and *len set as by
 * frame_in_next(), 0 at a clean end of file between frames, -EPROTO when
 * the peer closed mid-frame, -EMSGSIZE for a frame over in->max_frame,
 * -ETIMEDOUT when SO_RCVTIMEO expired, or another negative errno. */
int frame_read_one(int fd, struct frame_in *in, const uint8_t **frame, size_t *len,
		   struct pf_err *err);

/* ---- Decoding ---- */

/* Unpack one frame's bytes with the arena's allocator; the message lives
 * until proto_arena_reset(). -EBADMSG when the bytes are not a valid
 * message ("cannot decode ClientMessage (N bytes)"), -ENOBUFS when decoding
 * needs more memory than the arena's cap allows. */
int proto_decode_client(struct proto_arena *a, const uint8_t *buf, size_t len,
			Pinfer__ClientMessage **out, struct pf_err *err);
int proto_decode_server(struct proto_arena *a, const uint8_t *buf, size_t len,
			Pinfer__ServerMessage **out, struct pf_err *err);

/* ---- Validation ---- */

/* Whether s[0, n) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
bool proto_utf8_valid(const char *s, size_t n);

/* Checks every string field of a decoded message, submessages and repeated
 * fields included: protobuf-c does not validate proto3 strings, and other
 * peers' libraries reject invalid UTF-8. Returns 0, or -EILSEQ naming the
 * first bad field, e.g. "generate.chat.messages[1].content: invalid UTF-8
 * at byte 17". A string's text after an embedded NUL cannot be seen: C
 * receives it truncated there. */
int proto_check_utf8(const ProtobufCMessage *m, struct pf_err *err);

#endif
