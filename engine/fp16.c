/* IEEE half and bfloat16 conversions, done on the bit patterns so they do not
 * depend on the compiler's _Float16 support or the FPU rounding mode. */
#include <string.h>

#include "quant.h"

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return u;
}

static float f32_from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

float pf_fp16_to_fp32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f;
	uint32_t mant = h & 0x3ff;
	if (exp == 0) {
		/* Zero or subnormal: mant * 2^-24 is exact in float. */
		float v = (float)mant * 0x1p-24f;
		return f32_from_bits(f32_bits(v) | sign);
	}
	if (exp == 31)
		return f32_from_bits(sign | 0x7f800000 | (mant << 13));
	return f32_from_bits(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

uint16_t pf_fp32_to_fp16(float f)
{
	uint32_t x = f32_bits(f);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
	x &= 0x7fffffff;
	if (x > 0x7f800000) /* NaN: keep it a (quiet) NaN whatever its payload */
		return sign | 0x7e00 | (uint16_t)((x >> 13) & 0x3ff);
	if (x >= 0x38800000) {
		/* Normal in half range (or above it). Rebias the exponent and round
		 * the 13 dropped bits to nearest even; a carry out of the mantissa
		 * bumps the exponent, which is also how values past 65504 become
		 * inf (0x7c00). Infinity and huge values saturate to inf. */
		if (x >= 0x47800000)
			return sign | 0x7c00;
		x -= (uint32_t)(127 - 15) << 23;
		x += 0xfff + ((x >> 13) & 1);
		return sign | (uint16_t)(x >> 13);
	}
	uint32_t e = x >> 23;
	if (e < 102) /* below half the smallest subnormal: rounds to zero */
		return sign;
	/* Subnormal result: shift the full 24-bit significand into place and
	 * round to nearest even. Rounding up from the largest subnormal gives
	 * 0x400, the smallest normal, which is the right encoding. */
	uint32_t m = (x & 0x7fffff) | 0x800000;
	uint32_t shift = 126 - e;
	uint32_t q = m >> shift;
	uint32_t rem = m & ((1u << shift) - 1);
	uint32_t half = 1u << (shift - 1);
	if (rem > half || (rem == half && (q & 1)))
		q++;
	return sign | (uint16_t)q;
}

float pf_bf16_to_fp32(uint16_t h)
{
	return f32_from_bits((uint32_t)h << 16);
}

uint16_t pf_fp32_to_bf16(float f)
{
	uint32_t x = f32_bits(f);
	if ((x & 0x7fffffff) > 0x7f800000) /* NaN: truncation could make it inf */
		return (uint16_t)((x >> 16) | 0x40);
	x += 0x7fff + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}
