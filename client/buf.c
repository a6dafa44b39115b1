#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

static int grow(struct buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (!p) {
		report("out of memory growing a buffer to %zu bytes", cap);
		return EXIT_FAIL;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t n)
{
	if (grow(b, n))
		return EXIT_FAIL;
	if (n)
		memcpy(b->data + b->len, data, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		report("cannot format text: %s", strerror(errno));
		return EXIT_FAIL;
	}
	if (grow(b, (size_t)n))
		return EXIT_FAIL;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int buf_read_input(struct buf *b, FILE *f, const char *what)
{
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (buf_append(b, chunk, n))
			return EXIT_FAIL;
	if (ferror(f)) {
		report("cannot read %s: %s", what, strerror(errno));
		return EXIT_FAIL;
	}
	if (b->len && b->data[b->len - 1] == '\n')
		b->data[--b->len] = '\0';
	/* An empty input still yields a string. */
	return buf_append(b, "", 0);
}

const char *buf_str(const struct buf *b)
{
	return b->data ? b->data : "";
}

char *buf_take(struct buf *b)
{
	if (!b->data && buf_append(b, "", 0))
		return NULL;
	char *p = b->data;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
