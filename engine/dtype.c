#include "dtype.h"

#include <strings.h>

static const struct pf_dtype_info dtypes[PF_DTYPE_COUNT] = {
	[PF_F32] = { "f32", 1, 4 },
	[PF_F16] = { "f16", 1, 2 },
	[PF_Q4_0] = { "q4_0", 32, 18 },
	[PF_Q4_1] = { "q4_1", 32, 20 },
	[PF_Q5_0] = { "q5_0", 32, 22 },
	[PF_Q5_1] = { "q5_1", 32, 24 },
	[PF_Q8_0] = { "q8_0", 32, 34 },
	[PF_Q8_1] = { "q8_1", 32, 36 },
	[PF_Q2_K] = { "q2_k", 256, 84 },
	[PF_Q3_K] = { "q3_k", 256, 110 },
	[PF_Q4_K] = { "q4_k", 256, 144 },
	[PF_Q5_K] = { "q5_k", 256, 176 },
	[PF_Q6_K] = { "q6_k", 256, 210 },
	[PF_Q8_K] = { "q8_k", 256, 292 },
	[PF_I8] = { "i8", 1, 1 },
	[PF_I16] = { "i16", 1, 2 },
	[PF_I32] = { "i32", 1, 4 },
	[PF_I64] = { "i64", 1, 8 },
	[PF_F64] = { "f64", 1, 8 },
	[PF_BF16] = { "bf16", 1, 2 },
	[PF_Q8_S] = { "q8_s", 32, 64, true },
};

const struct pf_dtype_info *pf_dtype_info(uint32_t t)
{
	if (t >= PF_DTYPE_COUNT || !dtypes[t].name)
		return NULL;
	return &dtypes[t];
}

bool pf_dtype_bytes(uint32_t t, uint64_t n, uint64_t *bytes)
{
	const struct pf_dtype_info *ti = pf_dtype_info(t);
	if (!ti || n % ti->block)
		return false;
	uint64_t blocks = n / ti->block;
	if (blocks > UINT64_MAX / ti->size)
		return false;
	*bytes = blocks * ti->size;
	return true;
}

int pf_dtype_from_name(const char *name)
{
	for (int t = 0; t < PF_DTYPE_COUNT; t++)
		if (dtypes[t].name && strcasecmp(dtypes[t].name, name) == 0)
			return t;
	return -1;
}
