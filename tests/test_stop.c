/* Stop strings over a token stream: splits across pieces, overlaps and
 * prefixes, UTF-8, and randomized streams against a whole-text reference. */
#include "testutil.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "stop.h"
#include "unicode.h"

struct run {
	char text[4096];  /* everything emitted */
	size_t len;
	bool hit;
};

static void init(struct stop_matcher *m, const char *const *stops, size_t n)
{
	assert_int_equal(stop_matcher_init(m, stops, n), 0);
}

/* Feeds one piece and appends what comes out; returns the bytes emitted. */
static size_t feed(struct stop_matcher *m, struct run *r, const char *piece)
{
	char out[1024];
	size_t n = strlen(piece);
	int k = stop_matcher_feed(m, piece, n, out, n + STOP_MAX_LEN - 1, &r->hit);
	assert_true(k >= 0);
	/* Whole characters in, whole characters out. */
	assert_true(pf_utf8_valid(out, (size_t)k));
	assert_true(r->len + (size_t)k < sizeof(r->text));
	memcpy(r->text + r->len, out, (size_t)k);
	r->len += (size_t)k;
	r->text[r->len] = 0;
	return (size_t)k;
}

static void flush(struct stop_matcher *m, struct run *r)
{
	char out[STOP_MAX_LEN];
	int k = stop_matcher_flush(m, out, sizeof(out));
	assert_true(k >= 0);
	assert_true(pf_utf8_valid(out, (size_t)k));
	memcpy(r->text + r->len, out, (size_t)k);
	r->len += (size_t)k;
	r->text[r->len] = 0;
}

/* Feeds the pieces until a stop string completes, then flushes if none
 * did, as generation does; returns the matched index or -1. */
static int stream(const char *const *stops, size_t n_stops, const char *const *pieces,
		  size_t n_pieces, struct run *r)
{
	struct stop_matcher m;
	init(&m, stops, n_stops);
	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < n_pieces && !r->hit; i++)
		feed(&m, r, pieces[i]);
	if (!r->hit)
		flush(&m, r);
	int matched = m.matched;
	assert_int_equal(matched >= 0, r->hit);
	stop_matcher_free(&m);
	return matched;
}

#define N(a) (sizeof(a) / sizeof(a[0]))

static void test_split(void **state)
{
	(void)state;
	static const char *const stops[] = { "STOP" };
	struct stop_matcher m;
	struct run r = { 0 };
	init(&m, stops, 1);
	/* Split across two pieces: the possible start waits, the rest goes. */
	assert_int_equal(feed(&m, &r, "Hello ST"), 6);
	assert_false(r.hit);
	assert_int_equal(feed(&m, &r, "OP world"), 0);
	assert_true(r.hit);
	assert_int_equal(m.matched, 0);
	assert_string_equal(r.text, "Hello ");
	/* The stream is over: nothing more comes out. */
	assert_int_equal(feed(&m, &r, "more"), 0);
	assert_true(r.hit);
	stop_matcher_free(&m);

	/* Across three pieces, one of them inside the stop string. */
	static const char *const three[] = { "ab S", "TO", "Px", "y" };
	assert_int_equal(stream(stops, 1, three, N(three), &r), 0);
	assert_string_equal(r.text, "ab ");

	/* A false start is released once it cannot be a stop string. */
	static const char *const false_start[] = { "ST", "OR", "Y" };
	assert_int_equal(stream(stops, 1, false_start, N(false_start), &r), -1);
	assert_string_equal(r.text, "STORY");
}

static void test_at_start(void **state)
{
	(void)state;
	static const char *const stops[] = { "\n\n", "User:" };
	static const char *const pieces[] = { "User:", " hi" };
	struct run r;
	assert_int_equal(stream(stops, N(stops), pieces, N(pieces), &r), 1);
	assert_int_equal(r.len, 0);
	static const char *const whole[] = { "a\n\nb" };
	assert_int_equal(stream(stops, N(stops), whole, 1, &r), 0);
	assert_string_equal(r.text, "a");
}

/* One stop string a prefix of another: the shorter completes first. Two
 * completing at the same byte: the longer one, which started earlier. One
 * inside another: the first to complete ends the stream. */
static void test_prefix_and_nested(void **state)
{
	(void)state;
	static const char *const ab_abc[] = { "abc", "ab" };
	static const char *const p1[] = { "xa", "bc" };
	struct run r;
	assert_int_equal(stream(ab_abc, 2, p1, N(p1), &r), 1);
	assert_string_equal(r.text, "x");

	static const char *const c_abc[] = { "c", "abc" };
	static const char *const p2[] = { "xab", "cd" };
	assert_int_equal(stream(c_abc, 2, p2, N(p2), &r), 1);
	assert_string_equal(r.text, "x");

	static const char *const bc_abcd[] = { "abcd", "bc" };
	static const char *const p3[] = { "a", "b", "c", "d" };
	assert_int_equal(stream(bc_abcd, 2, p3, N(p3), &r), 1);
	assert_string_equal(r.text, "a");
}

/* "aab" with stop "ab": after the first "a" fails to continue, it is
 * released and the second one waits. */
static void test_overlap(void **state)
{
	(void)state;
	static const char *const stops[] = { "ab" };
	struct stop_matcher m;
	struct run r = { 0 };
	init(&m, stops, 1);
	assert_int_equal(feed(&m, &r, "a"), 0);
	assert_int_equal(feed(&m, &r, "a"), 1);
	assert_int_equal(feed(&m, &r, "b"), 0);
	assert_true(r.hit);
	assert_string_equal(r.text, "a");
	stop_matcher_free(&m);

	/* Self-overlapping stop string: "aab" inside "aaab". */
	static const char *const aab[] = { "aab" };
	static const char *const p[] = { "a", "a", "a", "b" };
	assert_int_equal(stream(aab, 1, p, N(p), &r), 0);
	assert_string_equal(r.text, "a");
}

static void test_pass_through_and_flush(void **state)
{
	(void)state;
	struct stop_matcher m;
	struct run r = { 0 };
	init(&m, NULL, 0);
	assert_int_equal(feed(&m, &r, "any"), 3);
	assert_int_equal(feed(&m, &r, ""), 0);
	assert_int_equal(feed(&m, &r, " text"), 5);
	flush(&m, &r);
	assert_string_equal(r.text, "any text");
	assert_false(r.hit);
	stop_matcher_free(&m);

	/* The end of the stream releases what was held back. */
	static const char *const stops[] = { "STOP", "###" };
	init(&m, stops, 2);
	memset(&r, 0, sizeof(r));
	assert_int_equal(feed(&m, &r, "end ST"), 4);
	assert_int_equal(m.n_held, 2);
	flush(&m, &r);
	assert_string_equal(r.text, "end ST");
	assert_int_equal(m.n_held, 0);
	flush(&m, &r);
	assert_string_equal(r.text, "end ST");
	stop_matcher_free(&m);
}

/* Multi-byte stop strings: pieces are whole characters, and so is every
 * emitted chunk (feed() checks each). */
static void test_utf8(void **state)
{
	(void)state;
	static const char *const stops[] = { "日本", "ü!" };
	static const char *const p1[] = { "今日は", "日", "本語" };
	struct run r;
	assert_int_equal(stream(stops, N(stops), p1, N(p1), &r), 0);
	assert_string_equal(r.text, "今日は");
	/* A held character that turns out not to start the stop string. */
	static const char *const p2[] = { "日", "曜日", "ü", "ber" };
	assert_int_equal(stream(stops, N(stops), p2, N(p2), &r), -1);
	assert_string_equal(r.text, "日曜日über");
	static const char *const p3[] = { "aü", "!b" };
	assert_int_equal(stream(stops, N(stops), p3, N(p3), &r), 1);
	assert_string_equal(r.text, "a");
}

static void test_errors(void **state)
{
	(void)state;
	struct stop_matcher m;
	const char *many[STOP_MAX_STRINGS + 1];
	for (size_t i = 0; i < N(many); i++)
		many[i] = "x";
	assert_int_equal(stop_matcher_init(&m, many, N(many)), -E2BIG);
	stop_matcher_free(&m);

	char longest[STOP_MAX_LEN + 2];
	memset(longest, 'a', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = 0;
	const char *too_long[] = { "ok", longest };
	assert_int_equal(stop_matcher_init(&m, too_long, 2), -E2BIG);
	stop_matcher_free(&m);
	longest[STOP_MAX_LEN] = 0;
	init(&m, too_long, 2);
	stop_matcher_free(&m);

	const char *empty[] = { "ok", "" };
	const char *null[] = { NULL };
	const char *mid_char[] = { "\xA5\xE6\x9C\xAC" };  /* the tail of 日 then 本 */
	assert_int_equal(stop_matcher_init(&m, empty, 2), -EINVAL);
	assert_int_equal(stop_matcher_init(&m, null, 1), -EINVAL);
	assert_int_equal(stop_matcher_init(&m, mid_char, 1), -EINVAL);
	stop_matcher_free(&m);

	/* Freeing a zeroed matcher (never initialised) is safe. */
	struct stop_matcher zero = { 0 };
	stop_matcher_free(&zero);

	/* Too small an output buffer consumes nothing. */
	static const char *const stops[] = { "STOP" };
	init(&m, stops, 1);
	char out[64];
	bool hit;
	assert_int_equal(stop_matcher_feed(&m, "xxST", 4, out, sizeof(out), &hit), 2);
	assert_int_equal(stop_matcher_feed(&m, "OP", 2, out, 3, &hit), -ENOSPC);
	assert_int_equal(stop_matcher_flush(&m, out, 1), -ENOSPC);
	assert_int_equal(stop_matcher_feed(&m, "OP", 2, out, 4, &hit), 0);
	assert_true(hit);
	stop_matcher_free(&m);
}

/* The reference: the whole text at once. The first stop string to end
 * (the longest of those ending at the same byte) cuts it. */
static long first_to_end(const char *text, const char *const *stops, size_t n, int *which)
{
	size_t len = strlen(text);
	for (size_t end = 1; end <= len; end++) {
		long cut = -1;
		for (size_t i = 0; i < n; i++) {
			size_t l = strlen(stops[i]);
			if (l <= end && memcmp(text + end - l, stops[i], l) == 0 &&
			    (cut < 0 || (long)(end - l) < cut)) {
				cut = (long)(end - l);
				*which = (int)i;
			}
		}
		if (cut >= 0)
			return cut;
	}
	return -1;
}

/* The naive reference: the first occurrence of any stop string. */
static long first_occurrence(const char *text, const char *const *stops, size_t n)
{
	long cut = -1;
	for (size_t i = 0; i < n; i++) {
		const char *p = strstr(text, stops[i]);
		if (p && (cut < 0 || p - text < cut))
			cut = p - text;
	}
	return cut;
}

static bool some_stop_inside_another(const char *const *stops, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			if (i != j && strstr(stops[i], stops[j]))
				return true;
	return false;
}

/* A random string over a tiny alphabet (so stop strings occur often), with
 * a two-byte and a three-byte character among its letters. */
static void rand_chars(uint64_t *rng, char *out, int n_chars)
{
	static const char *const alphabet[] = { "a", "b", "c", "é", "日" };
	out[0] = 0;
	for (int i = 0; i < n_chars; i++)
		strcat(out, alphabet[test_rand(rng) % N(alphabet)]);
}

static void test_random(void **state)
{
	(void)state;
	uint64_t rng = 0x5eed5109;
	int n_hit = 0, n_compared = 0;
	for (int c = 0; c < 2000; c++) {
		char stop_buf[4][16];
		const char *stops[4];
		size_t n_stops = test_rand(&rng) % 4 + (c % 50 != 0);  /* some with none */
		for (size_t i = 0; i < n_stops; i++) {
			rand_chars(&rng, stop_buf[i], 1 + (int)(test_rand(&rng) % 4));
			stops[i] = stop_buf[i];
		}
		char piece_buf[24][16];
		const char *pieces[24];
		char text[24 * 16] = "";
		size_t n_pieces = test_rand(&rng) % 24;
		for (size_t i = 0; i < n_pieces; i++) {
			rand_chars(&rng, piece_buf[i], (int)(test_rand(&rng) % 4));
			pieces[i] = piece_buf[i];
			strcat(text, piece_buf[i]);
		}

		struct run r;
		int matched = stream(stops, n_stops, pieces, n_pieces, &r);
		int want_which = -1;
		long cut = first_to_end(text, stops, n_stops, &want_which);
		size_t want_len = cut < 0 ? strlen(text) : (size_t)cut;
		if (r.len != want_len || memcmp(r.text, text, want_len) != 0)
			fail_msg("case %d: emitted [%s], want the first %zu bytes of [%s]", c, r.text,
				 want_len, text);
		assert_int_equal(r.hit, cut >= 0);
		if (cut >= 0)
			assert_string_equal(stops[matched], stops[want_which]);
		n_hit += r.hit;
		/* Where no stop string contains another, that is the first
		 * occurrence in the whole text, however it was split. */
		if (!some_stop_inside_another(stops, n_stops)) {
			assert_int_equal(first_occurrence(text, stops, n_stops), cut);
			n_compared++;
		}
	}
	/* Both outcomes, and both references, are well exercised. */
	assert_true(n_hit > 500 && n_hit < 1800);
	assert_true(n_compared > 1000);
}

/* The largest configuration on a long stream stays quick: 16 stop strings
 * of 64 bytes that share long prefixes with the text. */
static void test_many_long(void **state)
{
	(void)state;
	char buf[STOP_MAX_STRINGS][65];
	const char *stops[STOP_MAX_STRINGS];
	for (int i = 0; i < STOP_MAX_STRINGS; i++) {
		memset(buf[i], 'a', 64);
		buf[i][63] = (char)('A' + i);
		buf[i][64] = 0;
		stops[i] = buf[i];
	}
	struct stop_matcher m;
	init(&m, stops, STOP_MAX_STRINGS);
	char out[8 + STOP_MAX_LEN];
	size_t total = 0;
	bool hit = false;
	for (int i = 0; i < 20000; i++) {
		int k = stop_matcher_feed(&m, "aaaaaaaa", 8, out, sizeof(out), &hit);
		assert_true(k >= 0 && !hit);
		total += (size_t)k;
	}
	assert_int_equal(m.n_held, 63);
	assert_int_equal(total, 20000 * 8 - 63);
	assert_int_equal(stop_matcher_feed(&m, "P", 1, out, sizeof(out), &hit), 0);
	assert_true(hit);
	assert_int_equal(m.matched, 'P' - 'A');
	stop_matcher_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_at_start),
		cmocka_unit_test(test_prefix_and_nested),
		cmocka_unit_test(test_overlap),
		cmocka_unit_test(test_pass_through_and_flush),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_many_long),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
