/* Batched reads of a model file (the offloaded FFN's clusters): many reads
 * in flight at once through io_uring, so the disk sees a deep queue, and
 * each one reported as soon as it lands, so that its data is computed on
 * while the others are still on their way. Where io_uring is unavailable
 * (an old kernel, a seccomp filter that refuses io_uring_setup) or
 * PINFER_IO=pread asks for it, the same interface runs on a reader thread
 * that preads the batch in order. */
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
	ssize_t result;  /* once reported: bytes read, or -errno */
};

struct pf_io;

/* For fd (not owned). Never fails for want of io_uring: it falls back. */
int pf_io_open(struct pf_io **out, int fd, struct pf_err *err);
void pf_io_free(struct pf_io *io);

/* Starts reading every request (the first 64 go to the device at once).
 * One batch at a time; reqs must stay valid until all are reported. */
void pf_io_start(struct pf_io *io, struct pf_io_req *reqs, int n);
/* The batch grows to n requests of the same array: reqs[old n..n) are
 * started too. */
void pf_io_extend(struct pf_io *io, int n);
/* Waits until some requests not reported yet have landed and writes up to
 * max of their indices into done: returns how many, 0 once every request
 * of the batch was reported. Requests land in any order. One caller at a
 * time (any thread). */
int pf_io_wait(struct pf_io *io, int *done, int max);
/* Waits for every request not reported yet. */
void pf_io_finish(struct pf_io *io);

/* "io_uring" or "pread". */
const char *pf_io_backend(const struct pf_io *io);

#endif
