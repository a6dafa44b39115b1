/* Stop strings over a stream of generated text.
 *
 * Text arrives a piece at a time (one token's worth, whole UTF-8
 * characters) and a stop string may be split across pieces, so the matcher
 * holds back the longest tail of the text that could still grow into a
 * stop string and releases everything before it. The first stop string to
 * complete ends the stream: the text before it comes out, the stop string
 * and anything after it never do. When several stop strings complete at the
 * same byte, the longest (earliest starting) one counts. Where no stop
 * string contains another, this is exactly "cut the whole text at the first
 * occurrence of any stop string", whatever the split into pieces.
 *
 * Output never splits a UTF-8 character as long as the pieces are whole
 * characters: every cut falls where a stop string would start, and stop
 * strings must start with a character's first byte. */
#ifndef PINFERD_STOP_H
#define PINFERD_STOP_H

#include <stdbool.h>
#include <stddef.h>

#define STOP_MAX_STRINGS 16
#define STOP_MAX_LEN 256   /* bytes in one stop string */

struct stop_matcher {
	int n;
	size_t off[STOP_MAX_STRINGS], len[STOP_MAX_STRINGS];  /* into strs */
	size_t max_len;
	char *strs;      /* the stop strings back to back, then room for held */
	char *held;      /* text that may begin a stop string (< max_len bytes) */
	size_t n_held;
	int matched;     /* index of the stop string that ended the stream, -1 while none */
};

/* Copies n stop strings. Returns 0, or -E2BIG (more than STOP_MAX_STRINGS,
 * or one longer than STOP_MAX_LEN), -EINVAL (NULL, empty, or starting
 * inside a UTF-8 character), -ENOMEM. On failure the matcher holds nothing
 * and may be freed. */
int stop_matcher_init(struct stop_matcher *m, const char *const *stops, size_t n);
/* Safe on a zeroed or failed matcher. */
void stop_matcher_free(struct stop_matcher *m);

/* Feeds the next n bytes of text; writes the bytes now safe to emit to out
 * and returns how many, or -ENOSPC when cap is below n plus the held text
 * (n + STOP_MAX_LEN - 1 always suffices; nothing is consumed then). *hit
 * is set when a stop string completed: out then holds the text before it
 * and the stream is over (later feeds emit nothing). */
int stop_matcher_feed(struct stop_matcher *m, const char *piece, size_t n, char *out, size_t cap,
		      bool *hit);
/* At the end of the stream (EOS, length limit): releases the held-back
 * text, which no stop string can complete any more. Returns its length or
 * -ENOSPC (STOP_MAX_LEN - 1 bytes always suffice). */
int stop_matcher_flush(struct stop_matcher *m, char *out, size_t cap);

#endif
