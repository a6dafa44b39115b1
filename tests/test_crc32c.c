#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#endif

#include "crc32c.h"
#include "crc32c_internal.h"

/* The definition, a bit at a time: shares nothing with crc32c.c. */
static uint32_t crc_bitwise(uint32_t crc, const unsigned char *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (UINT32_C(0x82F63B78) & (0u - (crc & 1)));
	}
	return ~crc;
}

/* Every implementation, from crc, must give want. */
static void check_all(uint32_t want, uint32_t crc, const void *p, size_t n)
{
	assert_int_equal(pf_crc32c(crc, p, n), want);
	assert_int_equal(pf_crc32c_scalar(crc, p, n), want);
}

static unsigned char *random_bytes(size_t n, uint64_t seed)
{
	unsigned char *b = malloc(n ? n : 1);
	assert_non_null(b);
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(test_rand(&seed) >> 56);
	return b;
}

static void test_vectors(void **state)
{
	(void)state;
	unsigned char b[32];
	check_all(0, 0, NULL, 0);
	check_all(0xE3069283, 0, "123456789", 9);
	check_all(0x22620404, 0, "The quick brown fox jumps over the lazy dog", 43);
	/* RFC 3720, B.4. */
	memset(b, 0, sizeof(b));
	check_all(0x8A9136AA, 0, b, 32);
	memset(b, 0xff, sizeof(b));
	check_all(0x62A8AB43, 0, b, 32);
	for (int i = 0; i < 32; i++)
		b[i] = (unsigned char)i;
	check_all(0x46DD794E, 0, b, 32);
	for (int i = 0; i < 32; i++)
		b[i] = (unsigned char)(31 - i);
	check_all(0x113FDB5C, 0, b, 32);
	assert_int_equal(crc_bitwise(0, (const unsigned char *)"123456789", 9), 0xE3069283);
}

/* Every length 0..1024 at every misalignment 0..15, from 0 and from another
 * running value, against the bitwise definition. */
static void test_lengths(void **state)
{
	(void)state;
	enum { N = 1024 };
	unsigned char *src = random_bytes(N, 1), *buf = malloc(N + 16 + 8);
	uint32_t want[N + 1], want_from[N + 1];
	const uint32_t from = 0x9E3779B9;
	assert_non_null(buf);
	/* The running register after each prefix is that prefix's CRC. */
	for (size_t n = 0; n <= N; n++) {
		want[n] = crc_bitwise(0, src, n);
		want_from[n] = crc_bitwise(from, src, n);
	}
	/* buf is malloc'd, so 8-aligned: buf + off is off mod 8, and mod 16
	 * half the time. */
	for (size_t off = 0; off < 16; off++) {
		memcpy(buf + off, src, N);
		for (size_t n = 0; n <= N; n++) {
			check_all(want[n], 0, buf + off, n);
			check_all(want_from[n], from, buf + off, n);
		}
	}
	free(buf);
	free(src);
}

/* Lengths at the edges of the hardware path's blocks, and big ones. */
static void test_big(void **state)
{
	(void)state;
	const size_t L = 3 * PF_CRC32C_LONG, S = 3 * PF_CRC32C_SHORT;
	const size_t lens[] = { S - 1, S, S + 1, 2 * S + 7, L - 1, L, L + 1, L + 8, L + S - 1, L + S, L + S + 9,
				2 * L + 2 * S + 15, 4096, 65536, (1 << 20) + 5 };
	const size_t max = (1 << 20) + 5 + 16;
	unsigned char *buf = random_bytes(max, 2);
	uint64_t rng = 3;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		for (size_t off = 0; off < 16; off += 5) { /* 0, 5, 10, 15 */
			uint32_t from = off ? (uint32_t)test_rand(&rng) : 0;
			uint32_t want = crc_bitwise(from, buf + off, lens[i]);
			check_all(want, from, buf + off, lens[i]);
		}
	/* All zeros and all ones: the tables' extremes. */
	memset(buf, 0, max);
	check_all(crc_bitwise(0, buf, max), 0, buf, max);
	memset(buf, 0xff, max);
	check_all(crc_bitwise(0, buf, max), 0, buf, max);
	free(buf);
}

/* Calls over the pieces of a split buffer give the one call's CRC. */
static void test_piecewise(void **state)
{
	(void)state;
	enum { SMALL = 4096, BIG = 256 * 1024 };
	unsigned char *buf = random_bytes(BIG, 4);
	uint32_t whole = pf_crc32c(0, buf, SMALL);
	for (size_t s = 0; s <= SMALL; s++) {
		assert_int_equal(pf_crc32c(pf_crc32c(0, buf, s), buf + s, SMALL - s), whole);
		assert_int_equal(pf_crc32c_scalar(pf_crc32c_scalar(0, buf, s), buf + s, SMALL - s), whole);
	}
	whole = pf_crc32c(0, buf, BIG);
	assert_int_equal(pf_crc32c_scalar(0, buf, BIG), whole);
	uint64_t rng = 5;
	for (int round = 0; round < 50; round++) {
		/* Pieces of 0 to 2^(3..17) - 1 bytes, mixing the implementations. */
		uint32_t c = 0;
		for (size_t at = 0; at < BIG;) {
			uint64_t r = test_rand(&rng);
			size_t n = (size_t)(r >> 32) & ((UINT64_C(1) << (3 + r % 15)) - 1);
			if (n > BIG - at)
				n = BIG - at;
			c = r & 8 ? pf_crc32c(c, buf + at, n) : pf_crc32c_scalar(c, buf + at, n);
			at += n;
		}
		assert_int_equal(c, whole);
	}
	free(buf);
}

static void test_isa(void **state)
{
	(void)state;
	const char *isa = pf_crc32c_isa();
#if defined(__x86_64__)
	assert_string_equal(isa, __builtin_cpu_supports("sse4.2") ? "sse4.2" : "scalar");
#elif defined(__aarch64__)
	assert_string_equal(isa, getauxval(AT_HWCAP) & HWCAP_CRC32 ? "armv8-crc" : "scalar");
#else
	assert_string_equal(isa, "scalar");
#endif
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GB/s of fn over n bytes in calls of block bytes, best of 3. */
static double rate(uint32_t (*fn)(uint32_t, const void *, size_t), const unsigned char *p, size_t n,
		   size_t block, uint32_t *crc)
{
	double best = 0;
	for (int rep = 0; rep < 3; rep++) {
		double t = now_s();
		uint32_t c = 0;
		for (size_t at = 0; at < n; at += block)
			c = fn(c, p + at, n - at < block ? n - at : block);
		t = now_s() - t;
		*crc = c;
		if (t > 0 && n / t > best)
			best = n / t;
	}
	return best * 1e-9;
}

/* Prints the speed of each path; asserts only that they agree. */
static void test_throughput(void **state)
{
	(void)state;
	const size_t n = 64 << 20;
	unsigned char *buf = random_bytes(n, 6);
	uint32_t a, b, c, d;
	double fast = rate(pf_crc32c, buf, n, n, &a), fast4k = rate(pf_crc32c, buf, n, 4096, &b);
	double slow = rate(pf_crc32c_scalar, buf, n, n, &c), slow4k = rate(pf_crc32c_scalar, buf, n, 4096, &d);
	print_message("crc32c over 64 MiB: %s %.2f GB/s (in 4 KiB calls %.2f), scalar %.2f GB/s (%.2f)\n",
		      pf_crc32c_isa(), fast, fast4k, slow, slow4k);
	assert_int_equal(a, b);
	assert_int_equal(a, c);
	assert_int_equal(a, d);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_big),
		cmocka_unit_test(test_piecewise),
		cmocka_unit_test(test_isa),
		cmocka_unit_test(test_throughput),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
