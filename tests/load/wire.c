#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* What one decoded reply may allocate, as in the client. */
#define ARENA_FACTOR 4

int64_t wire_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(struct pf_err *why, const char *fmt, const char *what)
{
	snprintf(why->msg, sizeof(why->msg), fmt, what);
	return -1;
}

/* Milliseconds left for poll(), 0 once the deadline is past. */
static int left_ms(int64_t deadline_ms)
{
	int64_t left = deadline_ms - wire_now_ms();
	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

int wire_connect(struct wire *w, const char *path, struct pf_err *why)
{
	memset(w, 0, sizeof(*w));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		w->fd = -1;
		return fail(why, "socket path %s is too long", path);
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	/* Blocking connect: a Unix socket's connect only waits while the
	 * backlog is full, and a full backlog is what a load test is after. */
	w->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (w->fd < 0)
		return fail(why, "socket: %s", strerror(errno));
	if (connect(w->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    fcntl(w->fd, F_SETFL, O_NONBLOCK) < 0) {
		int e = errno;
		close(w->fd);
		w->fd = -1;
		snprintf(why->msg, sizeof(why->msg), "cannot connect to %s: %s", path, strerror(e));
		return -1;
	}
	w->max_frame = FRAME_MAX_MIN;
	frame_in_init(&w->in, FRAME_MAX_DEFAULT);
	proto_arena_init(&w->arena, ARENA_FACTOR * FRAME_MAX_DEFAULT);
	return 0;
}

void wire_close(struct wire *w)
{
	if (w->fd < 0)
		return;
	close(w->fd);
	w->fd = -1;
	frame_in_free(&w->in);
	proto_arena_destroy(&w->arena);
}

int wire_send_bytes(struct wire *w, const void *buf, size_t n, int64_t deadline_ms, struct pf_err *why)
{
	const uint8_t *p = buf;
	while (n > 0) {
		ssize_t r = send(w->fd, p, n, MSG_NOSIGNAL);
		if (r > 0) {
			p += r;
			n -= (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno != EAGAIN)
			return fail(why, "send: %s", strerror(errno));
		int t = left_ms(deadline_ms);
		if (t == 0)
			return fail(why, "send: %s", "the daemon did not take the bytes before the deadline");
		struct pollfd pfd = { .fd = w->fd, .events = POLLOUT };
		if (poll(&pfd, 1, t) < 0 && errno != EINTR)
			return fail(why, "poll: %s", strerror(errno));
	}
	return 0;
}

int wire_send(struct wire *w, const Pinfer__ClientMessage *m, int64_t deadline_ms, struct pf_err *why)
{
	size_t n = protobuf_c_message_get_packed_size(&m->base);
	if (n > w->max_frame) {
		snprintf(why->msg, sizeof(why->msg), "a %zu-byte request is over max_frame %zu", n, w->max_frame);
		return -1;
	}
	uint8_t *buf = malloc(FRAME_HEADER + n);
	if (!buf)
		return fail(why, "%s", "out of memory packing a request");
	buf[0] = (uint8_t)(n >> 24);
	buf[1] = (uint8_t)(n >> 16);
	buf[2] = (uint8_t)(n >> 8);
	buf[3] = (uint8_t)n;
	protobuf_c_message_pack(&m->base, buf + FRAME_HEADER);
	int r = wire_send_bytes(w, buf, FRAME_HEADER + n, deadline_ms, why);
	free(buf);
	return r;
}

enum wire_status wire_recv(struct wire *w, int64_t deadline_ms, Pinfer__ServerMessage **out,
			   struct pf_err *why)
{
	for (;;) {
		const uint8_t *frame;
		size_t len;
		switch (frame_in_next(&w->in, &frame, &len, why)) {
		case FRAME_READY:
			proto_arena_reset(&w->arena);
			return proto_decode_server(&w->arena, frame, len, out, why) < 0 ? WIRE_FAILED : WIRE_MSG;
		case FRAME_TOO_LARGE:
			return WIRE_FAILED;
		case FRAME_NEED_MORE:
			break;
		}
		ssize_t r = frame_in_read(&w->in, w->fd, why);
		if (r == 0) {
			size_t held = frame_in_pending(&w->in);
			if (!held)
				return WIRE_CLOSED;
			snprintf(why->msg, sizeof(why->msg),
				 "the daemon closed the connection in the middle of a frame (%zu bytes held)", held);
			return WIRE_FAILED;
		}
		if (r > 0)
			continue;
		if (r != -EAGAIN)
			return WIRE_FAILED;
		int t = left_ms(deadline_ms);
		if (t == 0)
			return WIRE_TIMEOUT;
		struct pollfd pfd = { .fd = w->fd, .events = POLLIN };
		if (poll(&pfd, 1, t) < 0 && errno != EINTR) {
			fail(why, "poll: %s", strerror(errno));
			return WIRE_FAILED;
		}
	}
}

int wire_open(struct wire *w, const char *path, int64_t deadline_ms, struct pf_err *why)
{
	if (wire_connect(w, path, why))
		return -1;
	Pinfer__Hello hello = PINFER__HELLO__INIT;
	hello.protocol_major = PROTO_MAJOR;
	hello.protocol_minor = PROTO_MINOR;
	hello.client_name = "pinfer-load";
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_HELLO;
	m.hello = &hello;
	Pinfer__ServerMessage *reply;
	enum wire_status st = WIRE_FAILED;
	if (wire_send(w, &m, deadline_ms, why) == 0)
		st = wire_recv(w, deadline_ms, &reply, why);
	if (st == WIRE_MSG && reply->msg_case == PINFER__SERVER_MESSAGE__MSG_HELLO_REPLY) {
		w->max_frame = reply->hello_reply->max_frame;
		return 0;
	}
	if (st == WIRE_MSG && reply->msg_case == PINFER__SERVER_MESSAGE__MSG_ERROR)
		snprintf(why->msg, sizeof(why->msg), "Hello refused: %s", reply->error->message);
	else if (st == WIRE_MSG)
		fail(why, "%s", "Hello answered with something other than HelloReply");
	else if (st == WIRE_CLOSED)
		fail(why, "%s", "the daemon closed the connection before answering Hello");
	else if (st == WIRE_TIMEOUT)
		fail(why, "%s", "no answer to Hello before the deadline");
	wire_close(w);
	return -1;
}

