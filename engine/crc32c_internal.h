/* Private to crc32c.c and its test: the portable implementation the fast
 * ones are checked against, and the block sizes of the fast ones (so that
 * the test can hit their edges). */
#ifndef PINFER_CRC32C_INTERNAL_H
#define PINFER_CRC32C_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* The hardware paths cut a buffer into three streams of this many bytes
 * each, while at least three times as many are left, first the long size
 * then the short one; what remains after that goes 8 bytes at a time. */
#define PF_CRC32C_LONG 8192
#define PF_CRC32C_SHORT 256

/* pf_crc32c with slicing-by-8 tables, whatever the CPU has. */
uint32_t pf_crc32c_scalar(uint32_t crc, const void *data, size_t n);

#endif
