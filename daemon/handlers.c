/* What the daemon does with each request, and how worker output travels
 * back: workers put requests on the ready list (server_notify), the loop
 * turns their output into Token/Done frames (server_deliver). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "generate.h"
#include "bus.h"
#include "log.h"
#include "request_check.h"
#include "server.h"
#include "stop.h"

#define MAX_CHAT_BYTES (1u << 24)
/* Penalties look back at most this far: beyond any context pinfer runs. */
#define MAX_REPEAT_LAST_N (1 << 20)

/* ---- worker output ---- */

void server_notify(void *data, struct request *r)
{
	struct server *s = data;
	pthread_mutex_lock(&s->ready_lock);
	bool post = !r->on_ready;
	if (post) {
		r->on_ready = true;
		request_ref(r);
		r->ready_next = s->ready;
		s->ready = r;
	}
	pthread_mutex_unlock(&s->ready_lock);
	if (post)
		loop_wake_post(s->ready_wake);
}

static Pinfer__DoneReason proto_reason(enum done_reason r)
{
	switch (r) {
	case DONE_EOS: return PINFER__DONE_REASON__DONE_EOS;
	case DONE_LENGTH: return PINFER__DONE_REASON__DONE_LENGTH;
	case DONE_STOP: return PINFER__DONE_REASON__DONE_STOP;
	case DONE_CANCELLED: return PINFER__DONE_REASON__DONE_CANCELLED;
	default: return PINFER__DONE_REASON__DONE_ERROR;
	}
}

/* The request is over for the loop: its model may start counting down. */
static void retire(struct server *s, struct request *r)
{
	r->finished_seen = true;
	s->requests_in_flight--;
	if (r->conn)
		conn_request_remove(r->conn, r);
	if (r->model)
		models_release(s->models, r->model);
	r->model = NULL;
	request_unref(r);
	server_check_stopped(s);
}

void server_deliver(struct server *s, struct request *r)
{
	if (r->finished_seen)
		return;
	pthread_mutex_lock(&r->lock);
	char *text = r->text;
	size_t text_len = r->text_len;
	int32_t *ids = r->ids;
	size_t n_ids = r->n_ids;
	r->text = NULL;
	r->text_len = r->text_cap = 0;
	r->ids = NULL;
	r->n_ids = r->ids_cap = 0;
	bool done = r->done;
	pthread_mutex_unlock(&r->lock);
	struct conn *c = r->conn;
	if (c && (text_len || n_ids)) {
		Pinfer__Token t = PINFER__TOKEN__INIT;
		t.request_id = r->id;
		/* Pieces are whole UTF-8 characters; the stop matcher only cuts
		 * where a stop string would begin. */
		char empty = 0;
		if (text_len) {
			char *terminated = realloc(text, text_len + 1);
			if (!terminated) {
				/* The generation goes on; this piece of text is lost. */
				log_error("request %llu: out of memory for its output",
					  (unsigned long long)r->id);
				text_len = 0;
			} else {
				text = terminated;
				text[text_len] = 0;
			}
		}
		t.text = text_len ? text : &empty;
		t.n_ids = n_ids;
		t.ids = ids;
		Pinfer__ServerMessage m = PINFER__SERVER_MESSAGE__INIT;
		m.msg_case = PINFER__SERVER_MESSAGE__MSG_TOKEN;
		m.token = &t;
		conn_send(c, &m);
	}
	free(text);
	free(ids);
	if (!done)
		return;
	if (r->model) {
		r->model->tokens_generated += (uint64_t)r->stats.generated_tokens;
		r->model->decode_ns += r->stats.decode_ns;
		r->model->ffn_neurons += r->stats.ffn_neurons;
		r->model->ffn_active += r->stats.ffn_active;
	}
	if (c) {
		Pinfer__Done d = PINFER__DONE__INIT;
		Pinfer__Error e = PINFER__ERROR__INIT;
		d.request_id = r->id;
		d.reason = proto_reason(r->reason);
		d.prompt_tokens = (uint32_t)r->stats.prompt_tokens;
		d.cached_prompt_tokens = (uint32_t)r->stats.cached_tokens;
		d.generated_tokens = (uint32_t)r->stats.generated_tokens;
		d.load_ns = r->load_ns;
		d.prompt_ns = r->stats.prompt_ns;
		d.decode_ns = r->stats.decode_ns;
		char empty = 0;
		d.stop = r->reason == DONE_STOP && r->stop_index >= 0 && r->stop_index < r->params.n_stops
				 ? r->params.stops[r->stop_index] : &empty;
		if (r->reason == DONE_ERROR) {
			e.request_id = r->id;
			e.code = r->limit_exceeded ? PINFER__ERROR_CODE__ERR_LIMIT_EXCEEDED
						   : PINFER__ERROR_CODE__ERR_INTERNAL;
			e.message = r->error;
			d.error = &e;
		}
		Pinfer__ServerMessage m = PINFER__SERVER_MESSAGE__INIT;
		m.msg_case = PINFER__SERVER_MESSAGE__MSG_DONE;
		m.done = &d;
		conn_send(c, &m);
	}
	retire(s, r);
}

/* Takes r off its model's list of requests awaiting the load. */
static void unwait(struct request *r)
{
	if (!r->waiting)
		return;
	for (struct request **p = &r->model->waiters; *p; p = &(*p)->wait_next)
		if (*p == r) {
			*p = r->wait_next;
			break;
		}
	r->wait_next = NULL;
	r->waiting = false;
}

void server_drop_request(struct server *s, struct request *r)
{
	unwait(r);
	retire(s, r);
}

/* ---- model info ---- */

static void fill_model_info(struct server *s, struct model_entry *e, Pinfer__ModelInfo *mi,
			    char *quant_buf, size_t quant_size)
{
	(void)s;
	mi->name = e->name;
	mi->path = e->path;
	mi->size_bytes = e->file_bytes;
	mi->loaded = e->state == MODEL_LOADED;
	mi->memory_bytes = e->mem_bytes;
	mi->expires_at_ms = e->state == MODEL_LOADED ? e->expires_at_unix_ms : 0;
	static char empty[1];
	mi->arch = empty;
	mi->quant = empty;
	mi->chat_template = empty;
	mi->sparsity = empty;
	if (e->state != MODEL_LOADED)
		return;
	const struct pinfer_model_info *info = pinfer_model_info(e->model);
	struct sched_stats st;
	sched_stats(e->sched, &st);
	mi->slots_total = (uint32_t)st.slots;
	mi->slots_busy = (uint32_t)st.busy;
	mi->arch = (char *)info->arch;
	mi->n_params = info->n_params;
	snprintf(quant_buf, quant_size, "%s", info->quant);
	mi->quant = quant_buf;
	mi->context_length = (uint32_t)st.n_ctx;
	const char *tmpl = pinfer_chat_template_detect(e->model);
	mi->chat_template = tmpl ? (char *)tmpl : empty;
	mi->sparsity = (char *)pinfer_sparsity_name(info->sparsity);
	mi->measured_sparsity = models_measured_sparsity(e);
	mi->tokens_generated = e->tokens_generated;
	mi->decode_tokens_per_second = models_decode_tps(e);
	struct models_offload off;
	if (models_offload(e, &off)) {
		mi->memory_budget = off.budget;
		mi->neuron_cache_bytes = off.cache_bytes;
		mi->neuron_cache_hit_rate = off.hit_rate;
		mi->bytes_read_per_token = off.bytes_read_per_token;
	}
}

/* ---- requests that need a loaded model ---- */

static void run_tokenize(struct server *s, struct request *r)
{
	struct conn *c = r->conn;
	struct model_entry *e = r->model;
	size_t cap = r->params.prompt_len + 2;
	int32_t *ids = malloc(cap * sizeof(*ids));
	int n = ids ? pinfer_tokenize(e->model, r->params.prompt, r->params.prompt_len, r->params.add_bos,
				      r->params.parse_special, ids, cap) : -ENOMEM;
	if (n < 0 || (size_t)n > cap || n > s->cfg->max_prompt_tokens) {
		if (n > s->cfg->max_prompt_tokens && (size_t)n <= cap)
			conn_send_error(c, r->id, PINFER__ERROR_CODE__ERR_LIMIT_EXCEEDED,
					"the text has %d tokens, more than the limit of %d", n,
					s->cfg->max_prompt_tokens);
		else
			conn_send_error(c, r->id, PINFER__ERROR_CODE__ERR_INTERNAL, "cannot tokenize the text");
		free(ids);
		retire(s, r);
		return;
	}
	Pinfer__TokenizeReply tr = PINFER__TOKENIZE_REPLY__INIT;
	tr.request_id = r->id;
	tr.n_ids = (size_t)n;
	tr.ids = ids;
	ProtobufCBinaryData *pieces = NULL;
	char *piece_bytes = NULL;
	if (r->return_pieces && n > 0) {
		pieces = calloc((size_t)n, sizeof(*pieces));
		piece_bytes = malloc((size_t)n * 256);
		if (!pieces || !piece_bytes) {
			conn_send_error(c, r->id, PINFER__ERROR_CODE__ERR_INTERNAL, "out of memory");
			goto out;
		}
		for (int i = 0; i < n; i++) {
			int k = pinfer_token_to_piece(e->model, ids[i], true, piece_bytes + (size_t)i * 256, 256);
			pieces[i].data = (uint8_t *)piece_bytes + (size_t)i * 256;
			pieces[i].len = k < 0 ? 0 : k > 256 ? 256 : (size_t)k;
		}
		tr.n_pieces = (size_t)n;
		tr.pieces = pieces;
	}
	Pinfer__ServerMessage m = PINFER__SERVER_MESSAGE__INIT;
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_TOKENIZE_REPLY;
	m.tokenize_reply = &tr;
	conn_send(c, &m);
out:
	free(pieces);
	free(piece_bytes);
	free(ids);
	retire(s, r);
}

static void run_detokenize(struct server *s, struct request *r)
{
	struct conn *c = r->conn;
	struct model_entry *e = r->model;
	int need = pinfer_detokenize(e->model, r->in_ids, r->n_in_ids, NULL, 0);
	char *text = need >= 0 ? malloc((size_t)need + 1) : NULL;
	if (need < 0 || !text) {
		conn_send_error(c, r->id, PINFER__ERROR_CODE__ERR_BAD_REQUEST,
				need < 0 ? "a token id is outside the vocabulary" : "out of memory");
	} else {
		pinfer_detokenize(e->model, r->in_ids, r->n_in_ids, text, (size_t)need);
		Pinfer__DetokenizeReply dr = PINFER__DETOKENIZE_REPLY__INIT;
		dr.request_id = r->id;
		dr.text.data = (uint8_t *)text;
		dr.text.len = (size_t)need;
		Pinfer__ServerMessage m = PINFER__SERVER_MESSAGE__INIT;
		m.msg_case = PINFER__SERVER_MESSAGE__MSG_DETOKENIZE_REPLY;
		m.detokenize_reply = &dr;
		conn_send(c, &m);
	}
	free(text);
	retire(s, r);
}

/* The reply describes the model after the load's own use of it ends, so
 * it carries the keep-alive countdown that starts then. */
static void run_load_reply(struct server *s, struct request *r)
{
	struct conn *c = r->conn;
	struct model_entry *e = r->model;
	uint64_t id = r->id;
	/* Described before the request lets go of the model, which may then
	 * unload at once (keep-alive 0). */
	Pinfer__LoadModelReply lr = PINFER__LOAD_MODEL_REPLY__INIT;
	Pinfer__ModelInfo mi = PINFER__MODEL_INFO__INIT;
	char quant[16], arch[sizeof(((struct pinfer_model_info *)0)->arch)];
	fill_model_info(s, e, &mi, quant, sizeof(quant));
	/* The model may be freed by the release: keep what points into it. */
	snprintf(arch, sizeof(arch), "%s", mi.arch);
	mi.arch = arch;
	retire(s, r);
	/* Released, an idle model's countdown has started, or with keep-alive
	 * 0 it is gone already. */
	mi.loaded = e->state == MODEL_LOADED;
	mi.expires_at_ms = mi.loaded ? e->expires_at_unix_ms : 0;
	lr.request_id = id;
	lr.model = &mi;
	Pinfer__ServerMessage m = PINFER__SERVER_MESSAGE__INIT;
	m.msg_case = PINFER__SERVER_MESSAGE__MSG_LOAD_MODEL_REPLY;
	m.load_model_reply = &lr;
	conn_send(c, &m);
}

static bool prepare_prompt(struct conn *c, struct request *r, const Pinfer__Generate *g,
			   struct model_entry *e);

/* The model is loaded: run r (the loop still holds its reference). */
static void start(struct server *s, struct request *r)
{
	r->load_ns = r->t_wait_ns ? gen_now_ns() - r->t_wait_ns : 0;
	switch (r->kind) {
	case REQ_GENERATE:
		if (r->pending_msg) {
			Pinfer__Generate *g = pinfer__generate__unpack(NULL, r->pending_len, r->pending_msg);
			bool ok = g && prepare_prompt(r->conn, r, g, r->model);
			if (!g)
				conn_send_error(r->conn, r->id, PINFER__ERROR_CODE__ERR_INTERNAL, "out of memory");
			pinfer__generate__free_unpacked(g, NULL);
			free(r->pending_msg);
			r->pending_msg = NULL;
			if (!ok) {
				retire(s, r);
				return;
			}
		}
		if (sched_submit(r->model->sched, r) == -EBUSY) {
			conn_send_error(r->conn, r->id, PINFER__ERROR_CODE__ERR_BUSY,
					"model %s: all %d slots and the queue of %d are taken", r->model->name,
					s->cfg->slots, s->cfg->queue);
			retire(s, r);
		}
		return;
	case REQ_TOKENIZE:
		run_tokenize(s, r);
		return;
	case REQ_DETOKENIZE:
		run_detokenize(s, r);
		return;
	default:
		run_load_reply(s, r);
		return;
	}
}

void server_load_done(void *data, struct model_entry *e, int status, const char *error)
{
	struct server *s = data;
	struct request *list = e->waiters;
	e->waiters = NULL;
	/* Oldest first, as they arrived. */
	struct request *rev = NULL;
	while (list) {
		struct request *next = list->wait_next;
		list->wait_next = rev;
		rev = list;
		list = next;
	}
	while (rev) {
		struct request *r = rev;
		rev = r->wait_next;
		r->wait_next = NULL;
		r->waiting = false;
		if (!r->conn) {
			retire(s, r);
		} else if (status) {
			conn_send_error(r->conn, r->id,
					status == -ENOMEM ? PINFER__ERROR_CODE__ERR_OUT_OF_MEMORY
							  : PINFER__ERROR_CODE__ERR_LOAD_FAILED,
					"%s", error ? error : "the model could not be loaded");
			retire(s, r);
		} else {
			start(s, r);
		}
	}
	bus_load_done(s->bus, e, status, error);
	server_check_stopped(s);
}

/* Finds the model (rescanning the directory for new files), or replies
 * NOT_FOUND. */
static struct model_entry *find_model(struct conn *c, uint64_t id, const char *name)
{
	struct server *s = c->srv;
	struct model_entry *e = models_find(s->models, name);
	if (!e) {
		models_scan(s->models);
		e = models_find(s->models, name);
	}
	if (!e)
		conn_send_error(c, id, PINFER__ERROR_CODE__ERR_NOT_FOUND, "no model named '%s' in %s",
				name, s->cfg->models_dir);
	return e;
}

static bool check_id(struct conn *c, uint64_t id)
{
	if (id == 0) {
		conn_send_error(c, 0, PINFER__ERROR_CODE__ERR_BAD_REQUEST, "request_id must not be 0");
		return false;
	}
	if (conn_request_find(c, id)) {
		conn_send_error(c, id, PINFER__ERROR_CODE__ERR_BAD_REQUEST,
				"request_id %llu is already in use", (unsigned long long)id);
		return false;
	}
	if (c->n_requests >= c->srv->cfg->max_requests_per_connection) {
		conn_send_error(c, id, PINFER__ERROR_CODE__ERR_LIMIT_EXCEEDED,
				"at most %d unfinished requests per connection",
				c->srv->cfg->max_requests_per_connection);
		return false;
	}
	if (c->srv->stopping) {
		conn_send_error(c, id, PINFER__ERROR_CODE__ERR_BUSY, "the daemon is shutting down");
		return false;
	}
	return true;
}

/* Takes r (its one reference) into the daemon: runs it now when the model
 * is loaded, else after the load. */
static void admit(struct conn *c, struct request *r, struct model_entry *e, bool has_keep_alive,
		  int64_t keep_alive_ms)
{
	struct server *s = c->srv;
	r->held_bytes = r->params.prompt_len + r->n_in_ids * sizeof(int32_t) + r->pending_len;
	size_t cap = CONN_HELD_FACTOR * (size_t)s->cfg->max_frame;
	if (c->held_bytes + r->held_bytes > cap) {
		conn_send_error(c, r->id, PINFER__ERROR_CODE__ERR_LIMIT_EXCEEDED,
				"this connection's unfinished requests hold %zu bytes; %zu more would pass the "
				"limit of %zu", c->held_bytes, r->held_bytes, cap);
		request_unref(r);
		return;
	}
	r->model = e;
	conn_request_add(c, r);
	s->requests_in_flight++;
	models_use(s->models, e, has_keep_alive, keep_alive_ms);
	/* A LoadModel waits for a budget change as for a load. */
	if (e->state == MODEL_LOADED && !(r->kind == REQ_LOAD && models_budget_changing(e))) {
		start(s, r);
		return;
	}
	r->t_wait_ns = gen_now_ns();
	r->wait_next = e->waiters;
	e->waiters = r;
	r->waiting = true;
	int rc = models_load(s->models, e);
	if (rc)
		server_load_done(s, e, rc, "cannot start loading the model");
}

/* ---- Generate ---- */

static char *copy_str(const char *s, size_t *len)
{
	size_t n = strlen(s);
	char *p = malloc(n + 1);
	if (p)
		memcpy(p, s, n + 1);
	if (len)
		*len = n;
	return p;
}

static void apply_sampling(struct pinfer_sampler_params *p, const Pinfer__Sampling *in)
{
	pinfer_sampler_params_default(p);
	if (!in)
		return;
	if (in->opt_temperature_case)
		p->temp = in->temperature;
	if (in->opt_top_k_case)
		p->top_k = in->top_k;
	if (in->opt_top_p_case)
		p->top_p = in->top_p;
	if (in->opt_min_p_case)
		p->min_p = in->min_p;
	if (in->opt_repeat_penalty_case)
		p->repeat_penalty = in->repeat_penalty;
	if (in->opt_repeat_last_n_case)
		p->repeat_last_n = in->repeat_last_n < 0 ? 0
				   : in->repeat_last_n > MAX_REPEAT_LAST_N ? MAX_REPEAT_LAST_N
				   : in->repeat_last_n;
	if (in->opt_presence_penalty_case)
		p->presence_penalty = in->presence_penalty;
	if (in->opt_frequency_penalty_case)
		p->frequency_penalty = in->frequency_penalty;
	if (in->opt_seed_case)
		p->seed = in->seed;
}

/* The prompt text: raw, or rendered through the chat template (a plain
 * prompt counts as one user message). Models without a template take the
 * prompt as it is. Returns NULL after replying with the error. */
static char *build_prompt(struct conn *c, const Pinfer__Generate *g, struct model_entry *e,
			  size_t *len, bool *templated)
{
	*templated = false;
	bool is_chat = g->input_case == PINFER__GENERATE__INPUT_CHAT;
	const char *prompt = g->input_case == PINFER__GENERATE__INPUT_PROMPT ? g->prompt : "";
	const char *tmpl = NULL;
	if (g->opt_chat_template_case) {
		tmpl = pinfer_chat_template_find(g->chat_template);
		if (!tmpl) {
			conn_send_error(c, g->request_id, PINFER__ERROR_CODE__ERR_BAD_REQUEST,
					"unknown chat template '%s' (known: %s)", g->chat_template,
					pinfer_chat_template_names());
			return NULL;
		}
	} else if (!g->raw) {
		tmpl = pinfer_chat_template_detect(e->model);
	}
	if (g->raw || !tmpl) {
		if (is_chat) {
			conn_send_error(c, g->request_id, PINFER__ERROR_CODE__ERR_BAD_REQUEST,
					"model %s has no chat template pinfer knows; pass chat_template or a raw prompt",
					e->name);
			return NULL;
		}
		char *text = copy_str(prompt, len);
		if (!text)
			conn_send_error(c, g->request_id, PINFER__ERROR_CODE__ERR_INTERNAL, "out of memory");
		return text;
	}
	size_t n = is_chat ? g->chat->n_messages : 1;
	struct pinfer_chat_msg *msgs = calloc(n ? n : 1, sizeof(*msgs));
	if (!msgs) {
		conn_send_error(c, g->request_id, PINFER__ERROR_CODE__ERR_INTERNAL, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		msgs[i].role = is_chat ? g->chat->messages[i]->role : "user";
		msgs[i].content = is_chat ? g->chat->messages[i]->content : prompt;
	}
	int need = pinfer_chat_render(tmpl, msgs, n, true, NULL, 0);
	char *text = need >= 0 && (unsigned)need < MAX_CHAT_BYTES ? malloc((size_t)need + 1) : NULL;
	if (text) {
		pinfer_chat_render(tmpl, msgs, n, true, text, (size_t)need);
		text[need] = 0;
		*len = (size_t)need;
		*templated = true;
	} else {
		conn_send_error(c, g->request_id, PINFER__ERROR_CODE__ERR_BAD_REQUEST,
				need == -EINVAL ? "a chat message has an unknown role or cannot be placed in the %s template"
						: "the chat cannot be rendered with the %s template",
				tmpl);
	}
	free(msgs);
	return text;
}

static bool prepare_prompt(struct conn *c, struct request *r, const Pinfer__Generate *g,
			   struct model_entry *e)
{
	bool templated;
	r->params.prompt = build_prompt(c, g, e, &r->params.prompt_len, &templated);
	r->params.parse_special = templated;
	return r->params.prompt != NULL;
}

static void handle_generate(struct conn *c, const Pinfer__Generate *g)
{
	struct server *s = c->srv;
	uint64_t id = g->request_id;
	if (!check_id(c, id))
		return;
	int n_predict;
	char why[160];
	Pinfer__ErrorCode code = request_check_generate(g, s->cfg->max_predict, &n_predict, why, sizeof(why));
	if (code) {
		conn_send_error(c, id, code, "%s", why);
		return;
	}
	struct model_entry *e = find_model(c, id, g->model);
	if (!e)
		return;
	struct request *r = request_new(id);
	if (!r) {
		conn_send_error(c, id, PINFER__ERROR_CODE__ERR_INTERNAL, "out of memory");
		return;
	}
	r->kind = REQ_GENERATE;
	struct gen_params *p = &r->params;
	apply_sampling(&p->sampling, g->sampling);
	p->n_predict = n_predict;
	p->max_prompt_tokens = s->cfg->max_prompt_tokens;
	p->add_bos = true;
	p->return_ids = g->return_token_ids;
	bool ok = true;
	for (size_t i = 0; i < g->n_stop && ok; i++) {
		ok = (p->stops[i] = copy_str(g->stop[i], NULL)) != NULL;
		p->n_stops += ok;
	}
	/* The template is known once the model is loaded, so a request that
	 * waits for the load keeps its message and is rendered when it starts. */
	if (ok && e->state == MODEL_LOADED) {
		if (!prepare_prompt(c, r, g, e)) {
			request_unref(r);
			return;
		}
	} else if (ok) {
		r->pending_len = pinfer__generate__get_packed_size(g);
		ok = (r->pending_msg = malloc(r->pending_len ? r->pending_len : 1)) != NULL;
		if (ok)
			pinfer__generate__pack(g, r->pending_msg);
	}
	if (!ok) {
		conn_send_error(c, id, PINFER__ERROR_CODE__ERR_INTERNAL, "out of memory");
		request_unref(r);
		return;
	}
	admit(c, r, e, g->opt_keep_alive_ms_case, models_clamp_keep_alive(g->keep_alive_ms));
}

/* ---- the other requests ---- */

static void handle_cancel(struct conn *c, const Pinfer__Cancel *m)
{
	struct request *r = conn_request_find(c, m->request_id);
	if (!r)
		return;  /* finished already: Cancel crossed its last frame */
	atomic_store(&r->cancel, true);
	struct model_entry *e = r->model;
	if (r->waiting) {
		if (r->kind == REQ_GENERATE) {
			unwait(r);
			r->load_ns = gen_now_ns() - r->t_wait_ns;
			request_finish(r, DONE_CANCELLED, NULL, NULL);
			server_deliver(c->srv, r);
		} else {
			conn_send_error(c, r->id, PINFER__ERROR_CODE__ERR_CANCELLED, "cancelled");
			server_drop_request(c->srv, r);
		}
		return;
	}
	if (r->kind == REQ_GENERATE && e && e->sched)
		sched_cancel(e->sched, r);
}

static void handle_tokenize(struct conn *c, const Pinfer__Tokenize *m)
{
	if (!check_id(c, m->request_id))
		return;
	struct model_entry *e = find_model(c, m->request_id, m->model);
	if (!e)
		return;
	struct request *r = request_new(m->request_id);
	if (!r || !(r->params.prompt = copy_str(m->text, &r->params.prompt_len))) {
		conn_send_error(c, m->request_id, PINFER__ERROR_CODE__ERR_INTERNAL, "out of memory");
		request_unref(r);
		return;
	}
	r->kind = REQ_TOKENIZE;
	r->params.add_bos = m->add_bos;
	r->params.parse_special = m->parse_special;
	r->return_pieces = m->return_pieces;
	admit(c, r, e, false, 0);
}

static void handle_detokenize(struct conn *c, const Pinfer__Detokenize *m)
{
	if (!check_id(c, m->request_id))
		return;
	struct model_entry *e = find_model(c, m->request_id, m->model);
	if (!e)
		return;
	struct request *r = request_new(m->request_id);
	if (!r || !(r->in_ids = malloc((m->n_ids ? m->n_ids : 1) * sizeof(int32_t)))) {
		conn_send_error(c, m->request_id, PINFER__ERROR_CODE__ERR_INTERNAL, "out of memory");
		request_unref(r);
		return;
	}
	r->kind = REQ_DETOKENIZE;
	if (m->n_ids)
		memcpy(r->in_ids, m->ids, m->n_ids * sizeof(int32_t));
	r->n_in_ids = m->n_ids;
	admit(c, r, e, false, 0);
}

/* The ModelInfo of every model, or of the loaded ones: the arrays a
 * ListModelsReply or StatusReply points into. */
struct model_infos {
	Pinfer__ModelInfo *infos;
	Pinfer__ModelInfo **ptrs;
	char (*quant)[16];
	size_t n;
};

static bool model_infos_build(struct server *s, bool loaded_only, struct model_infos *out)
{
	size_t n = 0;
	for (struct model_entry *e = models_first(s->models); e; e = e->next)
		n += !loaded_only || e->state == MODEL_LOADED;
	out->infos = calloc(n ? n : 1, sizeof(*out->infos));
	out->ptrs = calloc(n ? n : 1, sizeof(*out->ptrs));
	out->quant = calloc(n ? n : 1, sizeof(*out->quant));
	out->n = 0;
	if (!out->infos || !out->ptrs || !out->quant)
		return false;
	for (struct model_entry *e = models_first(s->models); e; e = e->next) {
		if (loaded_only && e->state != MODEL_LOADED)
			continue;
		size_t i = out->n++;
		pinfer__model_info__init(&out->infos[i]);
		fill_model_info(s, e, &out->infos[i], out->quant[i], sizeof(out->quant[i]));
		out->ptrs[i] = &out->infos[i];
	}
	return true;
}

static void model_infos_free(struct model_infos *mi)
{
	free(mi->infos);
	free(mi->ptrs);
	free(mi->quant);
}

static void handle_list(struct conn *c, const Pinfer__ListModels *m)
{
	struct server *s = c->srv;
	models_scan(s->models);
	struct model_infos mi;
	if (!model_infos_build(s, m->loaded_only, &mi)) {
		conn_send_error(c, m->request_id, PINFER__ERROR_CODE__ERR_INTERNAL, "out of memory");
	} else {
		Pinfer__ListModelsReply lr = PINFER__LIST_MODELS_REPLY__INIT;
		lr.request_id = m->request_id;
		lr.n_models = mi.n;
		lr.models = mi.ptrs;
		Pinfer__ServerMessage out = PINFER__SERVER_MESSAGE__INIT;
		out.msg_case = PINFER__SERVER_MESSAGE__MSG_LIST_MODELS_REPLY;
		out.list_models_reply = &lr;
		conn_send(c, &out);
	}
	model_infos_free(&mi);
}

static void handle_status(struct conn *c, const Pinfer__Status *m)
{
	struct server *s = c->srv;
	Pinfer__StatusReply sr = PINFER__STATUS_REPLY__INIT;
	sr.request_id = m->request_id;
	sr.daemon_version = (char *)PINFERD_VERSION;
	sr.uptime_ms = loop_now_ms() - s->started_ms;
	sr.models_loaded = (uint32_t)models_loaded_count(s->models);
	sr.memory_used_bytes = models_used_bytes(s->models);
	sr.memory_budget_bytes = models_budget_bytes(s->models);
	for (struct model_entry *e = models_first(s->models); e; e = e->next) {
		if (e->state != MODEL_LOADED)
			continue;
		struct sched_stats st;
		sched_stats(e->sched, &st);
		sr.requests_active += (uint32_t)st.busy;
		sr.requests_queued += (uint32_t)st.queued;
	}
	sr.connections = (uint32_t)s->n_conns;
	struct model_infos mi;
	if (!model_infos_build(s, true, &mi)) {
		conn_send_error(c, m->request_id, PINFER__ERROR_CODE__ERR_INTERNAL, "out of memory");
	} else {
		sr.n_models = mi.n;
		sr.models = mi.ptrs;
		Pinfer__ServerMessage out = PINFER__SERVER_MESSAGE__INIT;
		out.msg_case = PINFER__SERVER_MESSAGE__MSG_STATUS_REPLY;
		out.status_reply = &sr;
		conn_send(c, &out);
	}
	model_infos_free(&mi);
}

static void handle_ping(struct conn *c, const Pinfer__Ping *m)
{
	Pinfer__Pong p = PINFER__PONG__INIT;
	p.request_id = m->request_id;
	Pinfer__ServerMessage out = PINFER__SERVER_MESSAGE__INIT;
	out.msg_case = PINFER__SERVER_MESSAGE__MSG_PONG;
	out.pong = &p;
	conn_send(c, &out);
}

static bool may_control(struct conn *c, uint64_t id)
{
	if (conn_may_control_models(c))
		return true;
	conn_send_error(c, id, PINFER__ERROR_CODE__ERR_PERMISSION_DENIED,
			"loading and unloading models is for root and the daemon's user or group");
	return false;
}

static void handle_load(struct conn *c, const Pinfer__LoadModel *m)
{
	if (!may_control(c, m->request_id) || !check_id(c, m->request_id))
		return;
	enum pinfer_sparsity mode;
	struct models_budget budget;
	char bad[160];
	Pinfer__ErrorCode code = request_check_load(m, &mode, &budget, bad, sizeof(bad));
	if (code) {
		conn_send_error(c, m->request_id, code, "%s", bad);
		return;
	}
	struct model_entry *e = find_model(c, m->request_id, m->model);
	if (!e)
		return;
	struct request *r = request_new(m->request_id);
	if (!r) {
		conn_send_error(c, m->request_id, PINFER__ERROR_CODE__ERR_INTERNAL, "out of memory");
		return;
	}
	if (models_want_sparsity(e, mode)) {
		conn_send_error(c, m->request_id, PINFER__ERROR_CODE__ERR_BUSY,
				"model %s is loaded or loading with another sparsity mode; unload it to change that",
				e->name);
		request_unref(r);
		return;
	}
	/* After the sparsity, which refuses nothing to a model not in memory
	 * and changes nothing: a loaded model's budget may start changing
	 * now, which admit() then waits for. */
	char why[PF_ERR_MAX];
	int rc = models_want_budget(c->srv->models, e, &budget, why, sizeof(why));
	if (rc < 0) {
		conn_send_error(c, m->request_id,
				rc == -ENOMEM ? PINFER__ERROR_CODE__ERR_OUT_OF_MEMORY : PINFER__ERROR_CODE__ERR_BUSY, "%s",
				why);
		request_unref(r);
		return;
	}
	r->kind = REQ_LOAD;
	admit(c, r, e, m->opt_keep_alive_ms_case, models_clamp_keep_alive(m->keep_alive_ms));
}

static void handle_unload(struct conn *c, const Pinfer__UnloadModel *m)
{
	struct server *s = c->srv;
	if (!may_control(c, m->request_id))
		return;
	struct model_entry *e = find_model(c, m->request_id, m->model);
	if (!e)
		return;
	bool was_loaded = e->state == MODEL_LOADED;
	if (e->active > 0 || e->state == MODEL_LOADING) {
		/* Running generations finish first: keep-alive 0 unloads the
		 * model when the last one is done. */
		e->keep_alive_ms = 0;
	} else {
		models_unload(s->models, e);
	}
	Pinfer__UnloadModelReply ur = PINFER__UNLOAD_MODEL_REPLY__INIT;
	ur.request_id = m->request_id;
	ur.was_loaded = was_loaded;
	Pinfer__ServerMessage out = PINFER__SERVER_MESSAGE__INIT;
	out.msg_case = PINFER__SERVER_MESSAGE__MSG_UNLOAD_MODEL_REPLY;
	out.unload_model_reply = &ur;
	conn_send(c, &out);
}

void handle_message(struct conn *c, const Pinfer__ClientMessage *m)
{
	switch (m->msg_case) {
	case PINFER__CLIENT_MESSAGE__MSG_GENERATE: handle_generate(c, m->generate); break;
	case PINFER__CLIENT_MESSAGE__MSG_CANCEL: handle_cancel(c, m->cancel); break;
	case PINFER__CLIENT_MESSAGE__MSG_TOKENIZE: handle_tokenize(c, m->tokenize); break;
	case PINFER__CLIENT_MESSAGE__MSG_DETOKENIZE: handle_detokenize(c, m->detokenize); break;
	case PINFER__CLIENT_MESSAGE__MSG_LIST_MODELS: handle_list(c, m->list_models); break;
	case PINFER__CLIENT_MESSAGE__MSG_STATUS: handle_status(c, m->status); break;
	case PINFER__CLIENT_MESSAGE__MSG_PING: handle_ping(c, m->ping); break;
	case PINFER__CLIENT_MESSAGE__MSG_LOAD_MODEL: handle_load(c, m->load_model); break;
	case PINFER__CLIENT_MESSAGE__MSG_UNLOAD_MODEL: handle_unload(c, m->unload_model); break;
	case PINFER__CLIENT_MESSAGE__MSG_HELLO:
		conn_send_error(c, 0, PINFER__ERROR_CODE__ERR_BAD_REQUEST, "Hello was already received");
		break;
	default:
		/* An empty envelope, or a message type this daemon does not know
		 * (the minor version in Hello tells a client which exist): the
		 * peer and the daemon disagree about the protocol. */
		conn_send_error(c, 0, PINFER__ERROR_CODE__ERR_BAD_REQUEST, "unknown or empty message");
		conn_begin_close(c);
		break;
	}
}
