/* Streaming stop-string matching (see stop.h). Pieces are short and so are
 * stop strings, so plain comparison at every position is fast enough: a
 * piece of n bytes costs O(n x stops x stop length) at worst, and the
 * common mismatch exits on the first byte. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "stop.h"

/* A UTF-8 continuation byte cannot start a character. */
static bool continuation(char c)
{
	return ((unsigned char)c & 0xC0) == 0x80;
}

int stop_matcher_init(struct stop_matcher *m, const char *const *stops, size_t n)
{
	memset(m, 0, sizeof(*m));
	m->matched = -1;
	if (n > STOP_MAX_STRINGS)
		return -E2BIG;
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		if (!stops[i] || !stops[i][0] || continuation(stops[i][0]))
			return -EINVAL;
		size_t len = strlen(stops[i]);
		if (len > STOP_MAX_LEN)
			return -E2BIG;
		m->off[i] = total;
		m->len[i] = len;
		total += len;
		if (len > m->max_len)
			m->max_len = len;
	}
	if (n == 0)
		return 0;
	m->strs = malloc(total + m->max_len);
	if (!m->strs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		memcpy(m->strs + m->off[i], stops[i], m->len[i]);
	m->held = m->strs + total;
	m->n = (int)n;
	return 0;
}

void stop_matcher_free(struct stop_matcher *m)
{
	free(m->strs);
	m->strs = m->held = NULL;
	m->n = 0;
	m->n_held = 0;
}

/* The longest stop string that ends exactly at text + end, or -1. */
static int match_ending_at(const struct stop_matcher *m, const char *text, size_t end)
{
	int best = -1;
	for (int i = 0; i < m->n; i++) {
		size_t len = m->len[i];
		const char *s = m->strs + m->off[i];
		if (len > end || text[end - 1] != s[len - 1] || (best >= 0 && len <= m->len[best]))
			continue;
		if (memcmp(text + end - len, s, len) == 0)
			best = i;
	}
	return best;
}

/* Length of the longest suffix of text[0..len) that is a proper prefix of
 * some stop string: the text that must wait for the next piece. */
static size_t hold_length(const struct stop_matcher *m, const char *text, size_t len)
{
	size_t k = m->max_len > 0 ? m->max_len - 1 : 0;
	if (k > len)
		k = len;
	for (; k > 0; k--) {
		const char *tail = text + len - k;
		for (int i = 0; i < m->n; i++)
			if (m->len[i] > k && memcmp(tail, m->strs + m->off[i], k) == 0)
				return k;
	}
	return 0;
}

int stop_matcher_feed(struct stop_matcher *m, const char *piece, size_t n, char *out, size_t cap,
		      bool *hit)
{
	*hit = m->matched >= 0;
	if (*hit)
		return 0;
	/* The second test keeps the returned length within an int. */
	if (cap < m->n_held + n || n > INT_MAX - m->n_held)
		return -ENOSPC;
	/* out is the workspace: the held text followed by the new piece. */
	size_t len = m->n_held + n;
	if (m->n_held)
		memcpy(out, m->held, m->n_held);
	if (n)
		memcpy(out + m->n_held, piece, n);

	/* Matches ending inside the held text were ruled out when it arrived,
	 * and none can start before it (it is the longest tail that could
	 * begin one), so only the new bytes can end one; the first wins. */
	for (size_t end = m->n_held + 1; end <= len; end++) {
		int i = match_ending_at(m, out, end);
		if (i >= 0) {
			m->matched = i;
			m->n_held = 0;
			*hit = true;
			return (int)(end - m->len[i]);
		}
	}
	size_t keep = hold_length(m, out, len);
	if (keep)
		memcpy(m->held, out + len - keep, keep);
	m->n_held = keep;
	return (int)(len - keep);
}

int stop_matcher_flush(struct stop_matcher *m, char *out, size_t cap)
{
	if (cap < m->n_held)
		return -ENOSPC;
	size_t n = m->n_held;
	if (n)
		memcpy(out, m->held, n);
	m->n_held = 0;
	return (int)n;
}
