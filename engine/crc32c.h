/* CRC-32C (Castagnoli): the iSCSI / ext4 / SSE4.2 checksum, for checking
 * regions of a model file. Polynomial 0x1EDC6F41 (0x82F63B78 reflected),
 * bits taken least significant first, register started at ~0 and the result
 * inverted: the check value of "123456789" is 0xE3069283.
 *
 * The fastest implementation this CPU has is chosen at first use: the
 * SSE4.2 crc32 instruction on x86-64 and the ARMv8 CRC32C instructions on
 * aarch64, both detected at run time, and slicing-by-8 tables otherwise.
 * All give the same results. Safe to call from any number of threads. */
#ifndef PINFER_CRC32C_H
#define PINFER_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC-32C of the n bytes at data, continuing from crc: pass 0 for the
 * first piece and the previous return for each next one. Checksumming a
 * buffer piece by piece, split anywhere, gives the one call's result:
 * pf_crc32c(pf_crc32c(0, a, na), b, nb) == the CRC of a's bytes followed by
 * b's. n == 0 returns crc; data may then be NULL. Any alignment. */
uint32_t pf_crc32c(uint32_t crc, const void *data, size_t n);

/* The implementation pf_crc32c uses: "sse4.2", "armv8-crc" or "scalar". */
const char *pf_crc32c_isa(void);

#endif
