/* A generation request, shared between the event loop (which owns it and
 * talks to the client) and a model worker (which produces its output).
 *
 * The loop creates it from a Generate frame and hands a reference to the
 * model's scheduler. The worker appends output under `lock` and puts the
 * request on the daemon's ready list; the loop drains that list, turns the
 * output into frames and, once `done`, sends Done and drops its reference.
 * `cancel` may be set by the loop at any time (Cancel frame, hang-up,
 * shutdown); the worker checks it before every step. */
#ifndef PINFERD_REQUEST_H
#define PINFERD_REQUEST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pinfer.h"

struct model_entry;

#include "stop.h"

#define REQUEST_MAX_STOPS STOP_MAX_STRINGS

enum done_reason {
	DONE_NONE = 0,
	DONE_EOS,
	DONE_LENGTH,
	DONE_STOP,
	DONE_CANCELLED,
	DONE_ERROR,
};

struct gen_params {
	char *prompt;            /* text to tokenize (chat already rendered) */
	size_t prompt_len;
	bool parse_special;      /* control tokens in the text become ids (chat) */
	bool add_bos;
	struct pinfer_sampler_params sampling;
	int n_predict;           /* < 0: until EOS or the context is full */
	int max_prompt_tokens;   /* longer prompts are refused */
	char *stops[REQUEST_MAX_STOPS];
	int n_stops;
	bool return_ids;
};

struct gen_stats {
	int prompt_tokens;
	int cached_tokens;       /* prompt tokens reused from the slot's cache */
	int generated_tokens;
	uint64_t load_ns, prompt_ns, decode_ns;
	uint64_t ffn_neurons, ffn_active;  /* FFN neurons evaluated and computed */
};

struct request {
	uint64_t id;             /* the client's request_id */
	/* Loop thread only: */
	int kind;                /* enum request_kind (server.h) */
	void *conn;              /* the connection, NULL once gone */
	bool finished_seen;      /* the loop has handled `done` */
	uint64_t t_wait_ns;      /* when it started waiting for its model's load */
	uint64_t load_ns;        /* how long it waited */
	int32_t *in_ids;         /* Detokenize: the ids to decode */
	size_t n_in_ids;
	bool return_pieces;      /* Tokenize */
	uint8_t *pending_msg;    /* Generate waiting for its model: the packed message */
	size_t pending_len;
	size_t held_bytes;       /* its payload, charged to its connection (conn_request_add) */
	struct model_entry *model;
	struct request *wait_next;  /* in the model's list of requests awaiting its load */
	bool waiting;            /* on that list */
	struct request *conn_next;  /* in the connection's list of requests */
	struct gen_params params;
	atomic_bool cancel;
	atomic_int refs;

	pthread_mutex_t lock;    /* guards everything below */
	char *text;              /* output not yet sent */
	size_t text_len, text_cap;
	int32_t *ids;            /* token ids not yet sent (when return_ids) */
	size_t n_ids, ids_cap;
	bool done;
	enum done_reason reason;
	char error[256];
	bool limit_exceeded;     /* the error is a daemon limit, not a failure */
	int stop_index;          /* DONE_STOP: which of params.stops matched */
	struct gen_stats stats;
	bool on_ready;           /* queued on the daemon's ready list */
	struct request *ready_next;

	struct request *queue_next;  /* scheduler queue link (scheduler lock) */
};

/* A request holding one reference, or NULL when out of memory. Takes
 * ownership of nothing: params are copied in by the caller afterwards. */
struct request *request_new(uint64_t id);
void request_ref(struct request *r);
void request_unref(struct request *r);

/* Worker side, under no lock: append generated text (and its token id). */
int request_emit(struct request *r, const char *text, size_t len, int32_t id);
/* Worker side: mark the request finished (error may be NULL). */
void request_finish(struct request *r, enum done_reason reason, const char *error,
		    const struct gen_stats *stats);

const char *done_reason_name(enum done_reason r);

#endif
