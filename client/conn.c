#include "conn.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "intr.h"
#include "message.h"
#include "report.h"

/* What one decoded reply may allocate, as in the daemon: a full frame of
 * strings and repeated fields unpacks to a few times its size. */
#define ARENA_FACTOR 4

bool conn_path_named(const char *path)
{
	const char *env = getenv("PINFER_SOCKET");
	return path || (env && *env);
}

const char *conn_default_path(const char *path)
{
	static char user_path[PATH_MAX];
	if (path)
		return path;
	const char *env = getenv("PINFER_SOCKET");
	if (env && *env)
		return env;
	const char *runtime = getenv("XDG_RUNTIME_DIR");
	if (getuid() != 0 && runtime && *runtime) {
		snprintf(user_path, sizeof(user_path), "%s/pinferd.sock", runtime);
		return user_path;
	}
	return CONN_SYSTEM_PATH;
}

int64_t conn_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t conn_new_id(struct conn *c)
{
	return c->next_id++;
}

/* The reply's field name in ServerMessage ("hello_reply"), for messages. */
static const char *msg_name(const Pinfer__ServerMessage *m)
{
	const ProtobufCFieldDescriptor *f =
		protobuf_c_message_descriptor_get_field(&pinfer__server_message__descriptor,
							 (unsigned)m->msg_case);
	return f ? f->name : "an empty message";
}

int conn_send(struct conn *c, const Pinfer__ClientMessage *m)
{
	struct pf_err err;
	int r = frame_write_all(c->fd, &m->base, c->max_frame, &err);
	if (r == 0)
		return EXIT_OK;
	report("%s: cannot send a request: %s", c->path, err.msg);
	/* Too big is this request's fault; anything else lost the daemon. */
	return r == -EMSGSIZE ? EXIT_FAIL : EXIT_PROTO;
}

int conn_cancel(struct conn *c, uint64_t id)
{
	Pinfer__Cancel cancel = PINFER__CANCEL__INIT;
	cancel.request_id = id;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_CANCEL;
	m.cancel = &cancel;
	return conn_send(c, &m);
}

enum recv_status conn_recv(struct conn *c, int64_t deadline_ms, bool interruptible,
			   Pinfer__ServerMessage **out)
{
	struct pf_err err;
	for (;;) {
		const uint8_t *frame;
		size_t len;
		switch (frame_in_next(&c->in, &frame, &len, &err)) {
		case FRAME_READY:
			/* The previous reply's memory goes: callers were told it
			 * lives until the next recv. */
			proto_arena_reset(&c->arena);
			if (proto_decode_server(&c->arena, frame, len, out, &err) < 0) {
				report("%s: bad reply from pinferd: %s", c->path, err.msg);
				return RECV_FAILED;
			}
			return RECV_MSG;
		case FRAME_TOO_LARGE:
			report("%s: bad reply from pinferd: %s", c->path, err.msg);
			return RECV_FAILED;
		case FRAME_NEED_MORE:
			break;
		}
		int timeout = -1;
		if (deadline_ms >= 0) {
			int64_t left = deadline_ms - conn_now_ms();
			if (left <= 0)
				return RECV_TIMEOUT;
			timeout = left > INT_MAX ? INT_MAX : (int)left;
		}
		/* A negative fd is skipped by poll: without intr_install()
		 * there is nothing to watch. */
		struct pollfd p[2] = {
			{ .fd = c->fd, .events = POLLIN },
			{ .fd = interruptible ? intr_fd() : -1, .events = POLLIN },
		};
		int n = poll(p, 2, timeout);
		if (n < 0 && errno != EINTR) {
			report("%s: poll: %s", c->path, strerror(errno));
			return RECV_FAILED;
		}
		if (n <= 0)
			continue;  /* the deadline is checked above */
		if ((p[1].revents & POLLIN) && intr_take())
			return RECV_INTR;
		if (!p[0].revents)
			continue;
		ssize_t r = frame_in_read(&c->in, c->fd, &err);
		if (r == -EAGAIN)
			continue;
		if (r < 0) {
			report("%s: %s", c->path, err.msg);
			return RECV_FAILED;
		}
		if (r == 0) {
			size_t held = frame_in_pending(&c->in);
			if (held)
				report("%s: pinferd closed the connection in the middle of a frame "
				       "(%zu bytes received)", c->path, held);
			else
				report("%s: pinferd closed the connection", c->path);
			return RECV_FAILED;
		}
	}
}

int conn_call(struct conn *c, const Pinfer__ClientMessage *m, uint64_t id,
	      Pinfer__ServerMessage__MsgCase want, Pinfer__ServerMessage **reply)
{
	int r = conn_send(c, m);
	if (r)
		return r;
	for (;;) {
		Pinfer__ServerMessage *msg;
		switch (conn_recv(c, -1, true, &msg)) {
		case RECV_MSG:
			break;
		case RECV_INTR:
			return EXIT_INTR;
		case RECV_TIMEOUT:  /* no deadline was given */
		case RECV_FAILED:
			return EXIT_PROTO;
		}
		uint64_t rid = proto_reply_id(msg);
		if (msg->msg_case == PINFER__SERVER_MESSAGE__MSG_ERROR && (rid == id || rid == 0))
			return report_daemon_error(msg->error);
		if (rid != id)
			continue;  /* not ours: this connection has one request in flight */
		if (msg->msg_case != want) {
			report("%s: pinferd answered with %s, expected %s", c->path, msg_name(msg),
			       protobuf_c_message_descriptor_get_field(
				       &pinfer__server_message__descriptor, (unsigned)want)->name);
			return EXIT_PROTO;
		}
		*reply = msg;
		return EXIT_OK;
	}
}

static int handshake(struct conn *c)
{
	Pinfer__Hello hello = PINFER__HELLO__INIT;
	hello.protocol_major = PROTO_MAJOR;
	hello.protocol_minor = PROTO_MINOR;
	hello.client_name = "pinfer " PINFER_CLIENT_VERSION;
	Pinfer__ClientMessage m = PINFER__CLIENT_MESSAGE__INIT;
	m.msg_case = PINFER__CLIENT_MESSAGE__MSG_HELLO;
	m.hello = &hello;
	int r = conn_send(c, &m);
	if (r)
		return r;
	Pinfer__ServerMessage *msg;
	switch (conn_recv(c, conn_now_ms() + CONN_TIMEOUT_MS, true, &msg)) {
	case RECV_MSG:
		break;
	case RECV_INTR:
		return EXIT_INTR;
	case RECV_TIMEOUT:
		report("%s: no answer to Hello within %d s", c->path, CONN_TIMEOUT_MS / 1000);
		return EXIT_PROTO;
	case RECV_FAILED:
		return EXIT_PROTO;
	}
	if (msg->msg_case == PINFER__SERVER_MESSAGE__MSG_ERROR)
		return report_daemon_error(msg->error);
	if (msg->msg_case != PINFER__SERVER_MESSAGE__MSG_HELLO_REPLY) {
		report("%s: pinferd answered Hello with %s", c->path, msg_name(msg));
		return EXIT_PROTO;
	}
	const Pinfer__HelloReply *hr = msg->hello_reply;
	if (hr->protocol_major != PROTO_MAJOR) {
		report("%s: pinferd %s speaks protocol %u.%u; this pinfer speaks %d.%d", c->path,
		       hr->server_version, hr->protocol_major, hr->protocol_minor, PROTO_MAJOR,
		       PROTO_MINOR);
		return EXIT_PROTO;
	}
	if (hr->max_frame < FRAME_MAX_MIN) {
		report("%s: pinferd advertises max_frame %u, below the protocol's minimum %u",
		       c->path, hr->max_frame, FRAME_MAX_MIN);
		return EXIT_PROTO;
	}
	snprintf(c->server_version, sizeof(c->server_version), "%s", hr->server_version);
	/* From now on frames may be as large as the daemon says, and the
	 * arena grows with them (hr is gone after this). */
	c->max_frame = hr->max_frame;
	c->in.max_frame = hr->max_frame;
	proto_arena_destroy(&c->arena);
	proto_arena_init(&c->arena, ARENA_FACTOR * c->max_frame);
	return EXIT_OK;
}

int conn_open(struct conn *c, const char *path)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->path = path;
	c->next_id = 1;
	/* Ctrl-C matters from here on: it must reach a blocked read. */
	if (intr_fd() < 0 && intr_install())
		return EXIT_FAIL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		report("socket path %s is too long (%zu bytes, at most %zu)", path, strlen(path),
		       sizeof(sa.sun_path) - 1);
		return EXIT_USAGE;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		report("cannot create a socket: %s", strerror(errno));
		return EXIT_FAIL;
	}
	/* On a Unix socket the send timeout also bounds connect(), which
	 * blocks while the daemon's backlog is full. */
	struct timeval tv = { .tv_sec = CONN_TIMEOUT_MS / 1000 };
	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		report("cannot set a send timeout: %s", strerror(errno));
		close(c->fd);
		return EXIT_FAIL;
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(c->fd);
		if (e == EINTR)
			return EXIT_INTR;
		if (e == EAGAIN)
			report("cannot connect to %s: no answer within %d s (pinferd overloaded?)",
			       path, CONN_TIMEOUT_MS / 1000);
		else if (e == ENOENT || e == ECONNREFUSED)
			report("cannot connect to %s: %s \u2014 is pinferd running? "
			       "(systemctl start pinferd)", path, strerror(e));
		else
			report("cannot connect to %s: %s", path, strerror(e));
		return EXIT_NOCONN;
	}
	/* Until HelloReply names the daemon's max_frame, a client may send
	 * what every daemon accepts (FRAME_MAX_MIN); the HelloReply itself is
	 * far smaller than the default limit we read with. */
	c->max_frame = FRAME_MAX_MIN;
	frame_in_init(&c->in, FRAME_MAX_DEFAULT);
	proto_arena_init(&c->arena, ARENA_FACTOR * FRAME_MAX_DEFAULT);
	int r = handshake(c);
	if (r)
		conn_close(c);
	return r;
}

void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	frame_in_free(&c->in);
	proto_arena_destroy(&c->arena);
}
