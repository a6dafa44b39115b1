/* The daemon's state on the loop thread: the listening socket, the client
 * connections, the model registry, and the list through which model
 * workers hand requests with new output back to the loop. */
#ifndef PINFERD_SERVER_H
#define PINFERD_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "access.h"
#include "arena.h"
#include "config.h"
#include "frame.h"
#include "loop.h"
#include "models.h"
#include "request.h"

enum request_kind { REQ_GENERATE, REQ_TOKENIZE, REQ_DETOKENIZE, REQ_LOAD };

struct conn {
	struct server *srv;
	int fd;
	uint64_t id;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	bool hello_done;
	bool closing;              /* flush what is queued, then close */
	struct frame_in in;
	struct frame_out out;
	struct proto_arena arena;
	struct request *requests;  /* unfinished requests (conn_next links) */
	int n_requests;
	size_t held_bytes;         /* the requests' held_bytes, at most CONN_HELD_FACTOR * max_frame */
	uint64_t timer;            /* handshake or idle timeout */
	uint32_t events;           /* the LOOP_* bits watched */
	/* May the peer load and unload models (access.h)? Asked at accept,
	 * answered by Hello's reply at the latest, which waits for it. */
	enum access_answer access;
	struct access_wait access_wait;
	bool hello_held;           /* Hello received, its reply waits for access */
	struct conn *prev, *next;
};

struct server {
	const struct config *cfg;
	struct loop *loop;
	struct models *models;
	struct bus *bus;           /* NULL: D-Bus off */
	struct access *access;     /* who may load and evict models */
	struct pressure *pressure; /* NULL: no memory-pressure source */
	int listen_fd;
	bool remove_socket;        /* we created the socket file */
	struct conn *conns;
	int n_conns;
	/* Admitted and not yet retired, with or without a connection: a
	 * request whose client hung up runs until its worker lets go. */
	int requests_in_flight;
	uint64_t next_conn_id;
	uint64_t started_ms;
	bool stopping;
	uint64_t grace_timer;
	uint64_t extend_timer;     /* EXTEND_TIMEOUT_USEC while stopping waits */

	pthread_mutex_t ready_lock;  /* guards ready */
	struct request *ready;       /* requests with news from a worker */
	struct loop_wake *ready_wake;
};

int server_init(struct server *s, const struct config *cfg, struct loop *l, struct pf_err *err);
void server_destroy(struct server *s);
/* SIGTERM/SIGINT: stop accepting; requests get the grace period to finish,
 * then are cancelled; the loop stops once none is left. */
void server_shutdown(struct server *s);
/* Stops the loop once shutting down and no request or load is left. */
void server_check_stopped(struct server *s);
/* What the daemon is doing, for the service manager's STATUS=:
 * "2 models loaded, 1 generation running", ", 1 loading" while loads run. */
void server_status_text(struct server *s, char *buf, size_t size);

/* listen.c: binds the socket (or takes it from systemd), mode 0660. */
int listen_open(struct server *s, struct pf_err *err);
void listen_close(struct server *s);

/* conn.c */
void conn_accept(struct server *s);
void conn_send(struct conn *c, const Pinfer__ServerMessage *m);
void conn_send_error(struct conn *c, uint64_t request_id, Pinfer__ErrorCode code, const char *fmt,
		     ...) __attribute__((format(printf, 4, 5)));
/* Stops reading from the connection and closes it once what is queued has
 * been written (or after a deadline, for a peer that does not read). */
void conn_begin_close(struct conn *c);
/* Cancels the connection's requests and closes it. */
void conn_close(struct conn *c, const char *why);
void conn_flush_all(struct server *s);
/* Requests waiting for a model's load keep their payload (prompt, ids),
 * which decodes to up to 4 times its frame: what one connection's
 * unfinished requests hold together is capped at this many max_frames,
 * not max-requests times that. */
#define CONN_HELD_FACTOR 4
void conn_request_add(struct conn *c, struct request *r);
void conn_request_remove(struct conn *c, struct request *r);
struct request *conn_request_find(struct conn *c, uint64_t id);
/* Root, the daemon's user and its group may load and unload models:
 * decided once per connection, before the reply to its Hello. */
bool conn_may_control_models(const struct conn *c);

/* handlers.c: one ClientMessage after the handshake. */
void handle_message(struct conn *c, const Pinfer__ClientMessage *m);
/* Model workers: r has new output or finished (any thread). */
void server_notify(void *data, struct request *r);
/* Models: a load ended; start or fail the requests that waited for it. */
void server_load_done(void *data, struct model_entry *e, int status, const char *error);
/* Loop thread: moves a request's news to its connection. */
void server_deliver(struct server *s, struct request *r);
/* Ends a request that never reached a model worker. */
void server_drop_request(struct server *s, struct request *r);

#endif
