#include "request.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct request *request_new(uint64_t id)
{
	struct request *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->id = id;
	atomic_init(&r->refs, 1);
	atomic_init(&r->cancel, false);
	pthread_mutex_init(&r->lock, NULL);
	return r;
}

void request_ref(struct request *r)
{
	atomic_fetch_add(&r->refs, 1);
}

void request_unref(struct request *r)
{
	if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	free(r->params.prompt);
	for (int i = 0; i < r->params.n_stops; i++)
		free(r->params.stops[i]);
	free(r->text);
	free(r->ids);
	free(r->in_ids);
	free(r->pending_msg);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static int grow(void **buf, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 256;
	while (n < need)
		n *= 2;
	void *p = realloc(*buf, n * elem);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

int request_emit(struct request *r, const char *text, size_t len, int32_t id)
{
	int rc = 0;
	pthread_mutex_lock(&r->lock);
	if (len && !(rc = grow((void **)&r->text, &r->text_cap, r->text_len + len, 1))) {
		memcpy(r->text + r->text_len, text, len);
		r->text_len += len;
	}
	if (!rc && r->params.return_ids && id >= 0 &&
	    !(rc = grow((void **)&r->ids, &r->ids_cap, r->n_ids + 1, sizeof(*r->ids))))
		r->ids[r->n_ids++] = id;
	pthread_mutex_unlock(&r->lock);
	return rc;
}

void request_finish(struct request *r, enum done_reason reason, const char *error,
		    const struct gen_stats *stats)
{
	pthread_mutex_lock(&r->lock);
	r->done = true;
	r->reason = reason;
	if (error)
		snprintf(r->error, sizeof(r->error), "%s", error);
	if (stats)
		r->stats = *stats;
	pthread_mutex_unlock(&r->lock);
}

const char *done_reason_name(enum done_reason r)
{
	static const char *const names[] = {
		[DONE_NONE] = "none", [DONE_EOS] = "eos", [DONE_LENGTH] = "length",
		[DONE_STOP] = "stop", [DONE_CANCELLED] = "cancelled", [DONE_ERROR] = "error",
	};
	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}
