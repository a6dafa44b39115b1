#include "frame.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The smallest buffer worth allocating, and the size of a read() when the
 * frame being read is not known yet. */
#define BUF_MIN 4096
/* An emptied buffer bigger than this is freed, so a connection that once
 * moved a large frame does not hold that memory while it idles. */
#define BUF_KEEP (64 * 1024)

/* libproto is linked by the client, which does not link the engine, so it
 * formats its own errors rather than calling pf_errf(). */
__attribute__((format(printf, 3, 4)))
static int errf(struct pf_err *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/* ---- Byte queue ---- */

/* Moves the held bytes to the front; an empty queue gives back a large
 * allocation. */
static void buf_compact(struct frame_buf *b)
{
	if (b->start == b->end) {
		b->start = b->end = 0;
		if (b->cap > BUF_KEEP) {
			free(b->data);
			b->data = NULL;
			b->cap = 0;
		}
	} else if (b->start > 0) {
		memmove(b->data, b->data + b->start, b->end - b->start);
		b->end -= b->start;
		b->start = 0;
	}
}

/* Makes room for want more bytes after end, growing up to limit bytes in
 * all. The caller guarantees held + want <= limit. */
static int buf_reserve(struct frame_buf *b, size_t want, size_t limit, const char *what,
		       struct pf_err *err)
{
	if (b->cap - b->end >= want)
		return 0;
	buf_compact(b);
	if (b->cap - b->end >= want)
		return 0;
	size_t cap = b->cap ? b->cap : BUF_MIN;
	while (cap - b->end < want && cap < limit)
		cap = cap > limit / 2 ? limit : 2 * cap;
	if (cap > limit)
		cap = limit;
	uint8_t *p = realloc(b->data, cap);
	if (!p)
		return errf(err, -ENOMEM, "%s: cannot grow the buffer to %zu bytes", what, cap);
	b->data = p;
	b->cap = cap;
	return 0;
}

static void buf_free(struct frame_buf *b)
{
	free(b->data);
	*b = (struct frame_buf){ 0 };
}

/* ---- Input ---- */

void frame_in_init(struct frame_in *in, size_t max_frame)
{
	*in = (struct frame_in){ .max_frame = max_frame };
}

void frame_in_free(struct frame_in *in)
{
	buf_free(&in->b);
}

size_t frame_in_pending(const struct frame_in *in)
{
	return in->b.end - in->b.start;
}

ssize_t frame_in_feed(struct frame_in *in, const void *data, size_t n, struct pf_err *err)
{
	/* Frames handed out by frame_in_next() die here, so their bytes can
	 * be dropped. */
	buf_compact(&in->b);
	size_t limit = in->max_frame + FRAME_HEADER;
	if (n > limit - in->b.end)
		n = limit - in->b.end;
	if (n == 0)
		return 0;
	int r = buf_reserve(&in->b, n, limit, "frame input", err);
	if (r)
		return r;
	memcpy(in->b.data + in->b.end, data, n);
	in->b.end += n;
	return (ssize_t)n;
}

ssize_t frame_in_read(struct frame_in *in, int fd, struct pf_err *err)
{
	struct frame_buf *b = &in->b;
	buf_compact(b);
	size_t limit = in->max_frame + FRAME_HEADER;
	if (b->end == limit)
		return errf(err, -ENOBUFS,
			    "read from fd %d: the %zu-byte input buffer is full; extract frames first",
			    fd, limit);
	/* Once the length is known, room for the whole frame is made in one
	 * step, so a large frame costs one realloc rather than a doubling
	 * series; the length was checked against max_frame above it. */
	size_t want = BUF_MIN;
	if (b->end >= FRAME_HEADER) {
		uint32_t len = get_be32(b->data);
		if (len <= in->max_frame && FRAME_HEADER + len > b->end + want)
			want = FRAME_HEADER + len - b->end;
	}
	if (want > limit - b->end)
		want = limit - b->end;
	int r = buf_reserve(b, want, limit, "frame input", err);
	if (r)
		return r;
	ssize_t got;
	do
		got = read(fd, b->data + b->end, b->cap - b->end);
	while (got < 0 && errno == EINTR);
	if (got < 0) {
		int e = errno;
		if (e == EAGAIN || e == EWOULDBLOCK)
			return errf(err, -EAGAIN, "read from fd %d: no data yet", fd);
		return errf(err, -e, "read from fd %d: %s", fd, strerror(e));
	}
	b->end += (size_t)got;
	return got;
}

enum frame_status frame_in_next(struct frame_in *in, const uint8_t **frame, size_t *len,
				struct pf_err *err)
{
	struct frame_buf *b = &in->b;
	size_t held = b->end - b->start;
	if (held < FRAME_HEADER)
		return FRAME_NEED_MORE;
	uint32_t n = get_be32(b->data + b->start);
	if (n > in->max_frame) {
		*len = n;
		errf(err, 0, "frame length %" PRIu32 " exceeds the %zu-byte limit", n,
		     in->max_frame);
		return FRAME_TOO_LARGE;
	}
	if (held - FRAME_HEADER < n)
		return FRAME_NEED_MORE;
	*frame = b->data + b->start + FRAME_HEADER;
	*len = n;
	b->start += FRAME_HEADER + n;
	return FRAME_READY;
}

/* ---- Output ---- */

void frame_out_init(struct frame_out *q, size_t max_frame, size_t max_queued)
{
	*q = (struct frame_out){ .max_frame = max_frame, .max_queued = max_queued };
}

void frame_out_free(struct frame_out *q)
{
	buf_free(&q->b);
}

size_t frame_out_pending(const struct frame_out *q)
{
	return q->b.end - q->b.start;
}

/* The packed size of m, or -EMSGSIZE when it is over max_frame. */
static int check_size(const ProtobufCMessage *m, size_t max_frame, size_t *size,
		      struct pf_err *err)
{
	*size = protobuf_c_message_get_packed_size(m);
	if (*size > max_frame)
		return errf(err, -EMSGSIZE, "%s of %zu bytes exceeds the %zu-byte frame limit",
			    m->descriptor->short_name, *size, max_frame);
	return 0;
}

int frame_out_push(struct frame_out *q, const ProtobufCMessage *m, struct pf_err *err)
{
	size_t size;
	int r = check_size(m, q->max_frame, &size, err);
	if (r)
		return r;
	size_t need = FRAME_HEADER + size;
	size_t pending = frame_out_pending(q);
	if (need > q->max_queued - pending)
		return errf(err, -ENOBUFS,
			    "output queue full: %zu bytes queued, a %zu-byte %s would pass the "
			    "%zu-byte limit (the peer is not reading)",
			    pending, need, m->descriptor->short_name, q->max_queued);
	r = buf_reserve(&q->b, need, q->max_queued, "frame output", err);
	if (r)
		return r;
	uint8_t *p = q->b.data + q->b.end;
	put_be32(p, (uint32_t)size);
	protobuf_c_message_pack(m, p + FRAME_HEADER);
	q->b.end += need;
	return 0;
}

int frame_out_write(struct frame_out *q, int fd, struct pf_err *err)
{
	struct frame_buf *b = &q->b;
	while (b->start < b->end) {
		/* MSG_DONTWAIT: never block the event loop, even if the fd was
		 * left blocking; MSG_NOSIGNAL: a vanished peer is -EPIPE, not
		 * a process-killing SIGPIPE. */
		ssize_t r = send(fd, b->data + b->start, b->end - b->start,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r < 0) {
			int e = errno;
			if (e == EINTR)
				continue;
			if (e == EAGAIN || e == EWOULDBLOCK)
				return 1;
			return errf(err, -e, "write to fd %d: %s (%zu bytes unsent)", fd,
				    strerror(e), b->end - b->start);
		}
		b->start += (size_t)r;
	}
	buf_compact(b);
	return 0;
}

/* ---- Blocking helpers ---- */

int frame_write_all(int fd, const ProtobufCMessage *m, size_t max_frame, struct pf_err *err)
{
	size_t size;
	int r = check_size(m, max_frame, &size, err);
	if (r)
		return r;
	size_t total = FRAME_HEADER + size;
	uint8_t *frame = malloc(total);
	if (!frame)
		return errf(err, -ENOMEM, "%s: cannot allocate a %zu-byte frame",
			    m->descriptor->short_name, total);
	put_be32(frame, (uint32_t)size);
	protobuf_c_message_pack(m, frame + FRAME_HEADER);
	size_t done = 0;
	while (done < total) {
		ssize_t w = send(fd, frame + done, total - done, MSG_NOSIGNAL);
		if (w < 0) {
			int e = errno;
			if (e == EINTR)
				continue;
			if (e == EAGAIN || e == EWOULDBLOCK)
				r = errf(err, -ETIMEDOUT,
					 "write to fd %d: timed out with %zu of %zu bytes unsent", fd,
					 total - done, total);
			else
				r = errf(err, -e, "write to fd %d: %s (%zu of %zu bytes unsent)", fd,
					 strerror(e), total - done, total);
			break;
		}
		done += (size_t)w;
	}
	free(frame);
	return r;
}

int frame_read_one(int fd, struct frame_in *in, const uint8_t **frame, size_t *len,
		   struct pf_err *err)
{
	for (;;) {
		switch (frame_in_next(in, frame, len, err)) {
		case FRAME_READY:
			return 1;
		case FRAME_TOO_LARGE:
			return -EMSGSIZE;
		case FRAME_NEED_MORE:
			break;
		}
		ssize_t r = frame_in_read(in, fd, err);
		if (r > 0)
			continue;
		if (r == -EAGAIN)
			return errf(err, -ETIMEDOUT, "read from fd %d: timed out waiting for a frame",
				    fd);
		if (r < 0)
			return (int)r;
		size_t held = frame_in_pending(in);
		if (held == 0)
			return 0;
		if (held < FRAME_HEADER)
			return errf(err, -EPROTO,
				    "read from fd %d: connection closed mid-frame (%zu of the 4 "
				    "length bytes)", fd, held);
		return errf(err, -EPROTO,
			    "read from fd %d: connection closed mid-frame (%zu of %zu bytes)", fd,
			    held, (size_t)FRAME_HEADER + get_be32(in->b.data + in->b.start));
	}
}

/* ---- Decoding ---- */

static int decode(const ProtobufCMessageDescriptor *d, struct proto_arena *a,
		  const uint8_t *buf, size_t len, ProtobufCMessage **out, struct pf_err *err)
{
	/* exhausted tells a cap hit from malformed bytes: protobuf-c returns
	 * NULL for both. It may be left set by an earlier decode. */
	a->exhausted = false;
	*out = protobuf_c_message_unpack(d, proto_arena_allocator(a), len, buf);
	if (*out)
		return 0;
	if (a->exhausted)
		return errf(err, -ENOBUFS,
			    "cannot decode %s (%zu bytes): it needs more than the %zu-byte "
			    "decode limit", d->short_name, len, a->cap);
	return errf(err, -EBADMSG, "cannot decode %s (%zu bytes)", d->short_name, len);
}

int proto_decode_client(struct proto_arena *a, const uint8_t *buf, size_t len,
			Pinfer__ClientMessage **out, struct pf_err *err)
{
	return decode(&pinfer__client_message__descriptor, a, buf, len, (ProtobufCMessage **)out,
		      err);
}

int proto_decode_server(struct proto_arena *a, const uint8_t *buf, size_t len,
			Pinfer__ServerMessage **out, struct pf_err *err)
{
	return decode(&pinfer__server_message__descriptor, a, buf, len, (ProtobufCMessage **)out,
		      err);
}

/* ---- Validation ---- */

/* Offset of the first byte that does not start a well-formed UTF-8
 * sequence (the table of RFC 3629, section 4), or n when all are. */
static size_t utf8_bad_offset(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t len;
		unsigned lo = 0x80, hi = 0xBF;  /* range of the second byte */
		if (c >= 0xC2 && c <= 0xDF) {
			len = 2;
		} else if (c >= 0xE0 && c <= 0xEF) {
			len = 3;
			if (c == 0xE0)
				lo = 0xA0;  /* overlong */
			else if (c == 0xED)
				hi = 0x9F;  /* UTF-16 surrogates */
		} else if (c >= 0xF0 && c <= 0xF4) {
			len = 4;
			if (c == 0xF0)
				lo = 0x90;  /* overlong */
			else if (c == 0xF4)
				hi = 0x8F;  /* above U+10FFFF */
		} else {
			return i;  /* continuation byte, C0/C1 overlong, or F5..FF */
		}
		if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
			return i;
		for (size_t k = 2; k < len; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return i;
		i += len;
	}
	return n;
}

bool proto_utf8_valid(const char *s, size_t n)
{
	return utf8_bad_offset((const unsigned char *)s, n) == n;
}

/* Walks m's fields through its descriptor, so fields added to the .proto
 * later are checked without touching this code. path[0, plen) names m. */
static int check_fields(const ProtobufCMessage *m, char *path, size_t plen, size_t cap,
			struct pf_err *err)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		/* A oneof member's storage is shared with its siblings: only
		 * the member the case field names may be read. */
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		bool repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
		size_t n = repeated ? *(const size_t *)(base + f->quantifier_offset) : 1;
		const void *const *items = repeated ? *(const void *const *const *)(base + f->offset)
						    : (const void *const *)(base + f->offset);
		for (size_t k = 0; k < n; k++) {
			if (!items[k])  /* an absent submessage or unset string */
				continue;
			size_t len = plen;
			len += snprintf(path + len, cap - len, "%s%s", plen ? "." : "", f->name);
			if (repeated && len < cap)
				len += snprintf(path + len, cap - len, "[%zu]", k);
			if (len >= cap)
				len = cap - 1;
			int r = 0;
			if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
				r = check_fields(items[k], path, len, cap, err);
			} else {
				const char *s = items[k];
				size_t slen = strlen(s);
				size_t bad = utf8_bad_offset((const unsigned char *)s, slen);
				if (bad != slen)
					r = errf(err, -EILSEQ, "%s: invalid UTF-8 at byte %zu", path,
						 bad);
			}
			path[plen] = '\0';
			if (r)
				return r;
		}
	}
	return 0;
}

int proto_check_utf8(const ProtobufCMessage *m, struct pf_err *err)
{
	char path[256] = "";
	return check_fields(m, path, 0, sizeof(path), err);
}
