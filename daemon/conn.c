/* One client connection: reading frames, the handshake, writing replies
 * through a capped output queue, the handshake and idle timeouts, and
 * cleanup when the client leaves (its requests are cancelled at once). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access.h"
#include "log.h"
#include "scheduler.h"
#include "server.h"

/* What one decoded message may allocate: a full frame of strings and
 * repeated fields unpacks to a few times its size. */
#define ARENA_FACTOR 4

/* How long a closing connection may take to accept its last frames. */
#define CLOSE_DEADLINE_MS 5000

static void arm_timer(struct conn *c);
static bool flush(struct conn *c);
static void process_frames(struct conn *c);

static void on_close_deadline(struct loop *l, void *data)
{
	(void)l;
	struct conn *c = data;
	c->timer = 0;
	conn_close(c, "it did not read its last replies");
}

void conn_begin_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	loop_timer_cancel(c->srv->loop, c->timer);
	c->timer = loop_timer_add(c->srv->loop, CLOSE_DEADLINE_MS, on_close_deadline, c);
}

/* The error goes out first; the connection closes once it is written. */
static void on_timeout(struct loop *l, void *data)
{
	(void)l;
	struct conn *c = data;
	c->timer = 0;
	if (c->n_requests > 0)
		return;
	log_info("connection %llu: %s", (unsigned long long)c->id,
		 c->hello_done ? "idle timeout" : "handshake timeout");
	conn_send_error(c, 0, PINFER__ERROR_CODE__ERR_TIMEOUT,
			c->hello_done ? "idle for too long" : "no Hello within the handshake timeout");
	conn_begin_close(c);
	flush(c);
}

/* Before Hello the handshake timeout runs; after it, the idle timeout runs
 * whenever no request is in flight. Neither while Hello's reply waits for
 * the access check: that wait has a deadline of its own (ACCESS_WAIT_MS),
 * and the peer did its part. */
static void arm_timer(struct conn *c)
{
	struct server *s = c->srv;
	loop_timer_cancel(s->loop, c->timer);
	c->timer = 0;
	if (c->hello_held)
		return;
	uint64_t ms = c->hello_done ? s->cfg->idle_timeout_ms : s->cfg->handshake_timeout_ms;
	if (ms && (!c->hello_done || c->n_requests == 0))
		c->timer = loop_timer_add(s->loop, ms, on_timeout, c);
}

void conn_request_add(struct conn *c, struct request *r)
{
	r->conn = c;
	r->conn_next = c->requests;
	c->requests = r;
	c->n_requests++;
	c->held_bytes += r->held_bytes;
	arm_timer(c);
}

void conn_request_remove(struct conn *c, struct request *r)
{
	for (struct request **p = &c->requests; *p; p = &(*p)->conn_next)
		if (*p == r) {
			*p = r->conn_next;
			r->conn_next = NULL;
			r->conn = NULL;
			c->n_requests--;
			c->held_bytes -= r->held_bytes;
			break;
		}
	if (c->n_requests == 0 && !c->closing)
		arm_timer(c);
}

struct request *conn_request_find(struct conn *c, uint64_t id)
{
	for (struct request *r = c->requests; r; r = r->conn_next)
		if (r->id == id)
			return r;
	return NULL;
}

/* Reads, unless Hello's reply waits: what the peer sends after its Hello
 * stays in the socket until then. A peer that hangs up altogether is still
 * heard (LOOP_HUP comes regardless); one that only shuts down its writing
 * side, having sent all its requests, is answered first. */
static void update_watch(struct conn *c)
{
	uint32_t events = (c->hello_held ? 0 : LOOP_READ | LOOP_HUP) |
			  (frame_out_pending(&c->out) > 0 ? LOOP_WRITE : 0);
	if (events != c->events && !loop_modify(c->srv->loop, c->fd, events))
		c->events = events;
}

static void free_conn(struct conn *c)
{
	struct server *s = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_conns--;
	access_cancel(&c->access_wait);
	loop_timer_cancel(s->loop, c->timer);
	loop_unwatch(s->loop, c->fd);
	close(c->fd);
	frame_in_free(&c->in);
	frame_out_free(&c->out);
	proto_arena_destroy(&c->arena);
	free(c);
}

void conn_close(struct conn *c, const char *why)
{
	struct server *s = c->srv;
	log_info("connection %llu (pid %d, uid %u) closed: %s", (unsigned long long)c->id,
		 (int)c->pid, (unsigned)c->uid, why);
	/* Requests outlive the connection until their worker lets go; they
	 * are cancelled now and forgotten when they report back. */
	while (c->requests) {
		struct request *r = c->requests;
		conn_request_remove(c, r);
		atomic_store(&r->cancel, true);
		struct model_entry *e = r->model;
		if (r->kind == REQ_GENERATE && !r->waiting && e && e->sched)
			sched_cancel(e->sched, r);
		else
			server_drop_request(s, r);
	}
	free_conn(c);
}

/* Writes what the socket takes; closes the connection on a write error or
 * when it was only waiting to flush. Returns false when c is gone. */
static bool flush(struct conn *c)
{
	struct pf_err err;
	if (frame_out_pending(&c->out) && frame_out_write(&c->out, c->fd, &err) < 0) {
		conn_close(c, err.msg);
		return false;
	}
	if (c->closing && !frame_out_pending(&c->out)) {
		conn_close(c, "after its final reply");
		return false;
	}
	update_watch(c);
	return true;
}

void conn_flush_all(struct server *s)
{
	for (struct conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		flush(c);
	}
}

void conn_send(struct conn *c, const Pinfer__ServerMessage *m)
{
	struct pf_err err;
	if (c->closing)
		return;
	int r = frame_out_push(&c->out, &m->base, &err);
	if (r == -EMSGSIZE) {
		/* One reply too big for a frame fails that reply, not the
		 * connection. */
		log_warn("connection %llu: %s", (unsigned long long)c->id, err.msg);
		conn_send_error(c, 0, PINFER__ERROR_CODE__ERR_LIMIT_EXCEEDED,
				"a reply was larger than the %u-byte frame limit", c->srv->cfg->max_frame);
		return;
	}
	if (r) {
		log_warn("connection %llu: %s", (unsigned long long)c->id, err.msg);
		conn_begin_close(c);
		return;
	}
	/* A client that stops reading must not make the daemon buffer its
	 * output forever: its requests are cancelled and it is dropped. */
	if (frame_out_pending(&c->out) > c->srv->cfg->max_queued_output) {
		log_warn("connection %llu: %zu bytes of output unread; cancelling its requests",
			 (unsigned long long)c->id, frame_out_pending(&c->out));
		for (struct request *q = c->requests; q; q = q->conn_next)
			atomic_store(&q->cancel, true);
		conn_begin_close(c);
	}
}

void conn_send_error(struct conn *c, uint64_t request_id, Pinfer__ErrorCode code, const char *fmt,
		     ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	Pinfer__Error e = PINFER__ERROR__INIT;
	e.request_id = request_id;
	e.code = code;
	e.message = msg;
	Pinfer__ServerMessage m = PINFER__SERVER_MESSAGE__INIT;
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_ERROR;
	m.error = &e;
	conn_send(c, &m);
}

bool conn_may_control_models(const struct conn *c)
{
	return c->access == ACCESS_ALLOWED;
}

static void fatal(struct conn *c, Pinfer__ErrorCode code, const char *msg)
{
	conn_send_error(c, 0, code, "%s", msg);
	conn_begin_close(c);
}

static void hello_reply(struct conn *c);

static void handshake(struct conn *c, const Pinfer__ClientMessage *m)
{
	if (m->msg_case != PINFER__CLIENT_MESSAGE__MSG_HELLO) {
		fatal(c, PINFER__ERROR_CODE__ERR_HANDSHAKE_REQUIRED, "the first message must be Hello");
		return;
	}
	const Pinfer__Hello *h = m->hello;
	if (h->protocol_major != PROTO_MAJOR) {
		char msg[160];
		snprintf(msg, sizeof(msg), "protocol %u.%u is not supported; this daemon speaks %d.%d",
			 h->protocol_major, h->protocol_minor, PROTO_MAJOR, PROTO_MINOR);
		fatal(c, PINFER__ERROR_CODE__ERR_UNSUPPORTED_VERSION, msg);
		return;
	}
	c->hello_done = true;
	log_debug("connection %llu is %s (protocol %u.%u)", (unsigned long long)c->id,
		  h->client_name && *h->client_name ? h->client_name : "unnamed", h->protocol_major,
		  h->protocol_minor);
	if (c->access == ACCESS_PENDING) {
		/* The reply says whether the peer may control models, which the
		 * user database has not told yet. This connection waits for it,
		 * with whatever it sent after its Hello; the others do not. */
		c->hello_held = true;
		arm_timer(c);
		update_watch(c);
		return;
	}
	hello_reply(c);
}

static void hello_reply(struct conn *c)
{
	Pinfer__HelloReply reply = PINFER__HELLO_REPLY__INIT;
	reply.server_version = (char *)PINFERD_VERSION;
	reply.protocol_major = PROTO_MAJOR;
	reply.protocol_minor = PROTO_MINOR;
	reply.max_frame = c->srv->cfg->max_frame;
	char *caps[] = { "model_control" };
	reply.n_capabilities = conn_may_control_models(c) ? 1 : 0;
	reply.capabilities = caps;
	Pinfer__ServerMessage out = PINFER__SERVER_MESSAGE__INIT;
	out.msg_case = PINFER__SERVER_MESSAGE__MSG_HELLO_REPLY;
	out.hello_reply = &reply;
	conn_send(c, &out);
	arm_timer(c);
}

/* The access check asked at accept is answered. */
static void on_access(void *data, enum access_answer answer)
{
	struct conn *c = data;
	c->access = answer;
	if (answer == ACCESS_UNKNOWN)
		log_info("connection %llu (uid %u) may not load or unload models: its groups are unknown",
			 (unsigned long long)c->id, (unsigned)c->uid);
	if (!c->hello_held)
		return;
	c->hello_held = false;
	hello_reply(c);
	update_watch(c);
	/* The frames that came with the Hello; the rest arrive as before. */
	process_frames(c);
}

/* Decodes and dispatches every complete frame held. */
static void process_frames(struct conn *c)
{
	struct pf_err err;
	const uint8_t *frame;
	size_t len;
	while (!c->closing && !c->hello_held) {
		enum frame_status st = frame_in_next(&c->in, &frame, &len, &err);
		if (st == FRAME_NEED_MORE)
			return;
		if (st == FRAME_TOO_LARGE) {
			fatal(c, PINFER__ERROR_CODE__ERR_FRAME_TOO_LARGE, err.msg);
			return;
		}
		Pinfer__ClientMessage *m;
		proto_arena_reset(&c->arena);
		int r = proto_decode_client(&c->arena, frame, len, &m, &err);
		if (r) {
			fatal(c, r == -ENOBUFS ? PINFER__ERROR_CODE__ERR_LIMIT_EXCEEDED
					       : PINFER__ERROR_CODE__ERR_DECODE_ERROR, err.msg);
			return;
		}
		if (proto_check_utf8(&m->base, &err)) {
			fatal(c, PINFER__ERROR_CODE__ERR_BAD_REQUEST, err.msg);
			return;
		}
		if (!c->hello_done)
			handshake(c, m);
		else
			handle_message(c, m);
	}
}

static void on_event(struct loop *l, int fd, uint32_t events, void *data)
{
	(void)l;
	(void)fd;
	struct conn *c = data;
	if (events & LOOP_READ) {
		struct pf_err err;
		ssize_t n = frame_in_read(&c->in, c->fd, &err);
		if (n < 0 && n != -EAGAIN) {
			conn_close(c, err.msg);
			return;
		}
		if (n == 0) {
			conn_close(c, frame_in_pending(&c->in) ? "hung up in the middle of a frame"
							       : "hung up");
			return;
		}
		process_frames(c);
	} else if (events & LOOP_HUP) {
		conn_close(c, "hung up");
		return;
	}
	if (events & LOOP_WRITE || c->closing)
		flush(c);
}

void conn_accept(struct server *s)
{
	for (;;) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("accept: %s", strerror(errno));
			return;
		}
		struct ucred cred = { 0, (uid_t)-1, (gid_t)-1 };
		socklen_t len = sizeof(cred);
		getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
		struct conn *c = NULL;
		if (s->n_conns >= s->cfg->max_connections || s->stopping || !(c = calloc(1, sizeof(*c)))) {
			log_warn("refusing a connection from pid %d uid %u: %s", (int)cred.pid,
				 (unsigned)cred.uid, s->stopping ? "shutting down" : "too many connections");
			close(fd);
			continue;
		}
		c->srv = s;
		c->fd = fd;
		c->id = ++s->next_conn_id;
		c->pid = cred.pid;
		c->uid = cred.uid;
		c->gid = cred.gid;
		c->events = LOOP_READ | LOOP_HUP;
		frame_in_init(&c->in, s->cfg->max_frame);
		frame_out_init(&c->out, s->cfg->max_frame, s->cfg->max_queued_output + s->cfg->max_frame + 8);
		proto_arena_init(&c->arena, (size_t)s->cfg->max_frame * ARENA_FACTOR + 65536);
		if (loop_watch(s->loop, fd, LOOP_READ | LOOP_HUP, on_event, c) < 0) {
			frame_in_free(&c->in);
			frame_out_free(&c->out);
			proto_arena_destroy(&c->arena);
			close(fd);
			free(c);
			continue;
		}
		c->next = s->conns;
		if (s->conns)
			s->conns->prev = c;
		s->conns = c;
		s->n_conns++;
		/* Asked now, so that a lookup overlaps the peer's Hello. */
		c->access = access_check(s->access, c->uid, c->gid, &c->access_wait, on_access, c);
		arm_timer(c);
		log_info("connection %llu from pid %d, uid %u, gid %u", (unsigned long long)c->id,
			 (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid);
	}
}
