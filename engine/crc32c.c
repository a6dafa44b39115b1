/* CRC-32C: slicing-by-8 tables everywhere, and the CPU's CRC32C
 * instructions where it has them (SSE4.2 on x86-64, the CRC extension on
 * aarch64), detected at run time. The library is built without -m flags, so
 * the hardware path carries a target attribute and is only called after the
 * check.
 *
 * The crc32 instruction has a latency of about 3 cycles and a throughput of
 * one per cycle, so one dependent chain runs at a third of the speed. The
 * hardware path runs three independent streams over adjacent blocks and then
 * joins them: the register after block A then B, started at s, is the
 * register after A (started at s) moved past len(B) zero bytes, xor the
 * register after B started at 0. Moving a register past L zero bytes is
 * multiplying it by x^(8L) modulo the polynomial; that product is linear in
 * the register, so it is four lookups in tables of the products with each
 * byte value at each byte position, computed at first use. */
#include "crc32c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "crc32c_internal.h"

#define POLY UINT32_C(0x82F63B78) /* 0x1EDC6F41 reflected */

/* In the tables and the register, polynomials are reflected: bit 31 holds
 * the coefficient of x^0, bit 0 that of x^31. */
static struct {
	uint32_t slice[8][256];      /* slice[k][b]: byte b, then k zero bytes */
	uint32_t shift_long[4][256]; /* (b << 8k) * x^(8 * PF_CRC32C_LONG) */
	uint32_t shift_short[4][256]; /* the same for PF_CRC32C_SHORT */
} tab;
static pthread_once_t tab_once = PTHREAD_ONCE_INIT;

/* a * b modulo the polynomial. */
static uint32_t gf2_mulmod(uint32_t a, uint32_t b)
{
	uint32_t p = 0;
	for (uint32_t m = UINT32_C(1) << 31; m; m >>= 1) {
		if (a & m)
			p ^= b;
		b = b & 1 ? (b >> 1) ^ POLY : b >> 1; /* b *= x */
	}
	return p;
}

/* x^(8n) modulo the polynomial: n zero bytes' worth of shifting. */
static uint32_t x8n_mod(size_t n)
{
	uint32_t r = UINT32_C(1) << 31, sq = UINT32_C(1) << (31 - 8); /* x^0, x^8 */
	for (; n; n >>= 1) {
		if (n & 1)
			r = gf2_mulmod(r, sq);
		sq = gf2_mulmod(sq, sq);
	}
	return r;
}

static void fill_shift(uint32_t t[4][256], size_t len)
{
	uint32_t x = x8n_mod(len);
	for (int k = 0; k < 4; k++)
		for (uint32_t b = 0; b < 256; b++)
			t[k][b] = gf2_mulmod(x, b << (8 * k));
}

static void init_tables(void)
{
	for (uint32_t b = 0; b < 256; b++) {
		uint32_t c = b;
		for (int i = 0; i < 8; i++)
			c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
		tab.slice[0][b] = c;
	}
	for (int k = 1; k < 8; k++)
		for (int b = 0; b < 256; b++) {
			uint32_t c = tab.slice[k - 1][b];
			tab.slice[k][b] = (c >> 8) ^ tab.slice[0][c & 0xff];
		}
	/* Each stream's register is moved past the next stream's block. */
	fill_shift(tab.shift_long, PF_CRC32C_LONG);
	fill_shift(tab.shift_short, PF_CRC32C_SHORT);
}

static void need_tables(void)
{
	pthread_once(&tab_once, init_tables);
}

/* Little-endian loads from any address, whatever the host's byte order. */
static inline uint32_t rd32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t pf_crc32c_scalar(uint32_t crc, const void *data, size_t n)
{
	need_tables();
	const unsigned char *p = data;
	const uint32_t(*t)[256] = tab.slice;
	uint32_t c = ~crc;
	for (; n >= 8; n -= 8, p += 8) {
		uint32_t lo = c ^ rd32(p), hi = rd32(p + 4);
		c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
		    t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
	}
	for (; n; n--)
		c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

/* ---- hardware: the same driver over each ISA's two instructions ---- */

#if defined(__x86_64__)
#include <nmmintrin.h>
#define HW_TARGET __attribute__((target("sse4.2")))
#define HW_ISA "sse4.2"
#define HW_U64(c, v) ((uint32_t)_mm_crc32_u64((c), (v)))
#define HW_U8(c, b) _mm_crc32_u8((c), (b))
#elif defined(__aarch64__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#define HW_ISA "armv8-crc"
#if defined(__clang__)
/* clang's arm_acle.h only declares the intrinsics when the whole file
 * targets the extension, and its attribute names it without the '+'. */
#define HW_TARGET __attribute__((target("crc")))
#define HW_U64(c, v) __builtin_arm_crc32cd((c), (v))
#define HW_U8(c, b) __builtin_arm_crc32cb((c), (b))
#else
#define HW_TARGET __attribute__((target("+crc")))
#define HW_U64(c, v) __crc32cd((c), (v))
#define HW_U8(c, b) __crc32cb((c), (b))
#endif
#endif

#ifdef HW_ISA
/* Both instructions take the 8 bytes as a little-endian integer. */
static inline uint64_t rd64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* The register moved past len zero bytes, len the size t was made for. */
static inline uint32_t shift(const uint32_t t[4][256], uint32_t c)
{
	return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

/* The register after the 3 * len bytes at p, started at c, as three
 * streams; len a multiple of 8. */
HW_TARGET static inline uint32_t three_streams(uint32_t c, const unsigned char *p, size_t len,
					       const uint32_t t[4][256])
{
	uint32_t c1 = 0, c2 = 0;
	for (const unsigned char *end = p + len; p < end; p += 8) {
		c = HW_U64(c, rd64(p));
		c1 = HW_U64(c1, rd64(p + len));
		c2 = HW_U64(c2, rd64(p + 2 * len));
	}
	return shift(t, shift(t, c) ^ c1) ^ c2;
}

HW_TARGET static uint32_t crc32c_hw(uint32_t crc, const void *data, size_t n)
{
	const unsigned char *p = data;
	uint32_t c = ~crc;
	/* Whole 8-byte words from here on are aligned ones. */
	for (; n && ((uintptr_t)p & 7); n--)
		c = HW_U8(c, *p++);
	if (n >= 3 * PF_CRC32C_SHORT)
		need_tables();
	for (; n >= 3 * PF_CRC32C_LONG; n -= 3 * PF_CRC32C_LONG, p += 3 * PF_CRC32C_LONG)
		c = three_streams(c, p, PF_CRC32C_LONG, tab.shift_long);
	for (; n >= 3 * PF_CRC32C_SHORT; n -= 3 * PF_CRC32C_SHORT, p += 3 * PF_CRC32C_SHORT)
		c = three_streams(c, p, PF_CRC32C_SHORT, tab.shift_short);
	for (; n >= 8; n -= 8, p += 8)
		c = HW_U64(c, rd64(p));
	for (; n; n--)
		c = HW_U8(c, *p++);
	return ~c;
}

/* pf_crc32c may be called per 4 KiB block, so the answer is kept, as
 * quant.c keeps its own: 0 not asked yet, 1 no, 2 yes. */
static int have_hw(void)
{
	static _Atomic int known;
	int v = atomic_load_explicit(&known, memory_order_relaxed);
	if (!v) {
#if defined(__x86_64__)
		v = __builtin_cpu_supports("sse4.2") ? 2 : 1;
#elif defined(__ARM_FEATURE_CRC32)
		v = 2; /* the whole program is built for CPUs that have it */
#else
		v = getauxval(AT_HWCAP) & HWCAP_CRC32 ? 2 : 1;
#endif
		atomic_store_explicit(&known, v, memory_order_relaxed);
	}
	return v == 2;
}

uint32_t pf_crc32c(uint32_t crc, const void *data, size_t n)
{
	return have_hw() ? crc32c_hw(crc, data, n) : pf_crc32c_scalar(crc, data, n);
}

const char *pf_crc32c_isa(void)
{
	return have_hw() ? HW_ISA : "scalar";
}
#else
uint32_t pf_crc32c(uint32_t crc, const void *data, size_t n)
{
	return pf_crc32c_scalar(crc, data, n);
}

const char *pf_crc32c_isa(void)
{
	return "scalar";
}
#endif
