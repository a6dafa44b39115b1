#include "unicode.h"

unsigned pf_unicode_flags(uint32_t cp)
{
	if (cp >= 0x110000)
		return 0;
	/* Last range whose start is <= cp; ranges[0].start is 0. */
	size_t lo = 0, hi = pf_unicode_n_ranges;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (pf_unicode_ranges[mid].start <= cp)
			lo = mid;
		else
			hi = mid;
	}
	return pf_unicode_ranges[lo].flags;
}

size_t pf_utf8_seq_len(unsigned char lead)
{
	if (lead < 0xC0)
		return 1;
	if (lead < 0xE0)
		return 2;
	if (lead < 0xF0)
		return 3;
	return lead < 0xF8 ? 4 : 1;
}

size_t pf_utf8_decode(const char *s, size_t len, uint32_t *cp)
{
	const unsigned char *p = (const unsigned char *)s;
	static const uint32_t min_cp[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	size_t n = pf_utf8_seq_len(p[0]);
	if (n == 1) {
		*cp = p[0] < 0x80 ? p[0] : PF_UNICODE_REPLACEMENT;
		return 1;
	}
	if (n > len)
		goto bad;
	uint32_t c = p[0] & (0x7F >> n);
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			goto bad;
		c = c << 6 | (p[i] & 0x3F);
	}
	if (c < min_cp[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		goto bad;
	*cp = c;
	return n;
bad:
	*cp = PF_UNICODE_REPLACEMENT;
	return 1;
}

size_t pf_utf8_encode(uint32_t cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

int pf_utf8_valid(const char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		uint32_t cp;
		size_t n = pf_utf8_decode(s + i, len - i, &cp);
		/* A genuine U+FFFD takes three bytes; one byte means an error. */
		if (cp == PF_UNICODE_REPLACEMENT && n == 1)
			return 0;
		i += n;
	}
	return 1;
}
