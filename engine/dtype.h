/* Tensor element types, numbered as in GGUF (ggml's enum ggml_type), so a
 * type read from a file indexes this table directly. Types marked internal
 * (numbered past GGUF's range) exist only in memory, as activation formats
 * of the dot kernels: a file declaring one is refused. */
#ifndef PINFER_DTYPE_H
#define PINFER_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pf_dtype {
	PF_F32 = 0,
	PF_F16 = 1,
	PF_Q4_0 = 2,
	PF_Q4_1 = 3,
	PF_Q5_0 = 6,
	PF_Q5_1 = 7,
	PF_Q8_0 = 8,
	PF_Q8_1 = 9,
	PF_Q2_K = 10,
	PF_Q3_K = 11,
	PF_Q4_K = 12,
	PF_Q5_K = 13,
	PF_Q6_K = 14,
	PF_Q8_K = 15,
	PF_I8 = 24,
	PF_I16 = 25,
	PF_I32 = 26,
	PF_I64 = 27,
	PF_F64 = 28,
	PF_BF16 = 30,
	PF_Q8_S = 64,   /* internal: Q4_0's activation format, see quant_internal.h */
	PF_DTYPE_COUNT = 65,
};

struct pf_dtype_info {
	const char *name;
	uint32_t block;  /* elements per block */
	uint32_t size;   /* bytes per block */
	bool internal;   /* in-memory only: not a valid type in a GGUF file */
};

/* NULL when t is not a type this build knows the layout of. */
const struct pf_dtype_info *pf_dtype_info(uint32_t t);

/* Bytes taken by n elements of type t. False when n is not a whole number of
 * blocks or the size would overflow. */
bool pf_dtype_bytes(uint32_t t, uint64_t n, uint64_t *bytes);

/* Looks a type up by its name ("q4_0", "Q4_0", "f16"...). -1 when unknown. */
int pf_dtype_from_name(const char *name);

#endif
