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

/* Reads every request, in two halves so that the caller computes while
 * the reads are in flight: pf_io_start queues the reads (the first 64 go
 * to the device at once), pf_io_finish returns when all are done, each
 * request's result set. One batch at a time; reqs must stay valid until
 * pf_io_finish. With pread, the reads happen in pf_io_finish. */
void pf_io_start(struct pf_io *io, struct pf_io_req *reqs, int n);
void pf_io_finish(struct pf_io *io);

/* "io_uring" or "pread". */
const char *pf_io_backend(const struct pf_io *io);

#endif
