/* A real pinferd for tests: started from $BUILD/pinferd on a socket in a
 * temporary directory whose models/ links to stories260K, and a small
 * blocking protocol client to talk to it. */
#ifndef PINFER_TESTS_DAEMON_HARNESS_H
#define PINFER_TESTS_DAEMON_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "frame.h"

struct daemon {
	pid_t pid;
	char dir[64];
	char socket[128];
	char log[128];
};

/* Starts pinferd with extra flags (NULL-terminated list) and waits until it
 * accepts connections. */
void daemon_start(struct daemon *d, const char *const *flags);
/* Adds another name for stories260K to the models directory. */
void daemon_add_model(const struct daemon *d, const char *name);
/* SIGTERM, then asserts a clean exit (status 0: under ASan, no leaks). */
void daemon_stop(struct daemon *d);
/* A cmocka teardown: kills a daemon the test left behind when it failed. */
int daemon_cleanup(void **state);

struct client {
	int fd;
	struct frame_in in;
	struct proto_arena arena;
};

/* Connects without sending anything. */
void client_connect_raw(struct client *c, const struct daemon *d);
/* Connects and completes the handshake. */
void client_connect(struct client *c, const struct daemon *d);
void client_close(struct client *c);
void client_send(struct client *c, const Pinfer__ClientMessage *m);
void client_send_bytes(struct client *c, const void *buf, size_t n);
/* The next message (valid until the next receive), or NULL at end of file. */
Pinfer__ServerMessage *client_recv(struct client *c);

struct gen_opts {
	const char *model;        /* NULL: stories260K */
	const char *prompt;
	bool has_temp;
	float temp;
	bool has_seed;
	uint64_t seed;
	int n_predict;            /* < 0: unset */
	const char *const *stops;
	size_t n_stops;
	bool ids;
	bool has_keep_alive;
	int64_t keep_alive_ms;
	bool raw;
};

void client_generate(struct client *c, uint64_t id, const struct gen_opts *o);

struct gen_result {
	char text[16384];
	size_t text_len;
	int32_t ids[4096];
	int n_ids;
	int n_token_frames;
	Pinfer__DoneReason reason;
	uint32_t prompt_tokens, cached_tokens, generated_tokens;
	char stop[64];
	Pinfer__ErrorCode error;  /* a request-level Error frame instead of Done */
};

/* Collects Token frames of request id until its Done (or an Error). */
void client_collect(struct client *c, uint64_t id, struct gen_result *out);
/* Reads one frame; accumulates it into out when it belongs to id. Returns
 * true once the request is over. */
bool client_step(struct client *c, uint64_t id, struct gen_result *out);

#endif
