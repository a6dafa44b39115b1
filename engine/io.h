/* Batched reads of a model file (the offloaded FFN's clusters): many reads
 * in flight at once through io_uring, so the disk sees a deep queue, or,
 * where io_uring is unavailable (an old kernel, a seccomp filter that
 * refuses io_uring_setup) or PINFER_IO=pread asks for it, the same
 * interface over pread. */
#ifndef PINFER_IO_H
#define PINFER_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

struct pf_io_req {
	void *buf;
	size_t len;
	uint64_t offset;
	ssize_t result;  /* after pf_io_read: bytes read, or -errno */
};

struct pf_io;

/* For fd (not owned). Never fails for want of io_uring: it falls back. */
int pf_io_open(struct pf_io **out, int fd, struct pf_err *err);
void pf_io_free(struct pf_io *io);

/* Reads every request; returns when all are done. */
void pf_io_read(struct pf_io *io, struct pf_io_req *reqs, int n);

/* "io_uring" or "pread". */
const char *pf_io_backend(const struct pf_io *io);

#endif
