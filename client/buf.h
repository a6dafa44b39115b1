/* A growable byte buffer, kept NUL-terminated so it can be used as a C
 * string: generated text for --json and chat history, the stdin prompt. */
#ifndef PINFER_CLIENT_BUF_H
#define PINFER_CLIENT_BUF_H

#include <stddef.h>
#include <stdio.h>

struct buf {
	char *data;  /* NULL until the first append */
	size_t len, cap;
};

/* Appends n bytes. Returns 0, or EXIT_FAIL after reporting that memory
 * ran out. */
int buf_append(struct buf *b, const void *data, size_t n);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reads f to its end, less one final newline: `echo text | pinfer ...`
 * means the same as `pinfer ... text`. Returns 0, or EXIT_FAIL after
 * reporting the error (what names the input in the message). */
int buf_read_input(struct buf *b, FILE *f, const char *what);

/* The contents as a string: "" when nothing was appended. */
const char *buf_str(const struct buf *b);

/* Hands the contents over as a string (the caller frees it; "" when
 * nothing was appended) and empties b. NULL after reporting when memory
 * ran out. */
char *buf_take(struct buf *b);

void buf_free(struct buf *b);

#endif
