#include "io.h"

#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads in flight at once: deep enough for an NVMe or UFS device's
 * parallelism (random 4 KiB reads here reach their rate near 32). */
#define QUEUE_DEPTH 64

struct pf_io {
	int fd;
	bool uring;
	struct io_uring ring;
	/* the batch in progress */
	struct pf_io_req *reqs;
	int n, next, inflight;
};

int pf_io_open(struct pf_io **out, int fd, struct pf_err *err)
{
	struct pf_io *io = calloc(1, sizeof(*io));
	if (!io)
		return pf_errf(err, -ENOMEM, "out of memory");
	io->fd = fd;
	const char *force = getenv("PINFER_IO");
	io->uring = !(force && !strcmp(force, "pread")) && io_uring_queue_init(QUEUE_DEPTH, &io->ring, 0) == 0;
	*out = io;
	return 0;
}

void pf_io_free(struct pf_io *io)
{
	if (!io)
		return;
	if (io->uring)
		io_uring_queue_exit(&io->ring);
	free(io);
}

const char *pf_io_backend(const struct pf_io *io)
{
	return io->uring ? "io_uring" : "pread";
}

static void read_pread(struct pf_io *io, struct pf_io_req *r)
{
	do
		r->result = pread(io->fd, r->buf, r->len, (off_t)r->offset);
	while (r->result < 0 && errno == EINTR);
	if (r->result < 0)
		r->result = -errno;
}

/* Queues what the ring has room for and hands it to the kernel. */
static void submit_more(struct pf_io *io)
{
	while (io->next < io->n) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
		if (!sqe)
			break;
		struct pf_io_req *r = &io->reqs[io->next];
		io_uring_prep_read(sqe, io->fd, r->buf, (unsigned)r->len, r->offset);
		io_uring_sqe_set_data64(sqe, (uint64_t)io->next);
		io->next++;
		io->inflight++;
	}
	io_uring_submit(&io->ring);
}

static void reap(struct pf_io *io)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&io->ring, head, cqe) {
		io->reqs[io_uring_cqe_get_data64(cqe)].result = cqe->res;
		seen++;
	}
	io_uring_cq_advance(&io->ring, seen);
	io->inflight -= (int)seen;
}

static void finish_uring(struct pf_io *io)
{
	while (io->next < io->n || io->inflight > 0) {
		submit_more(io);
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe(&io->ring, &cqe);
		if (r < 0 && r != -EINTR && r != -EAGAIN) {
			/* The ring refuses work: what was not submitted goes by
			 * pread; what was is the kernel's until it lands. */
			for (; io->next < io->n; io->next++)
				read_pread(io, &io->reqs[io->next]);
			while (io->inflight > 0 && io_uring_wait_cqe(&io->ring, &cqe) == 0)
				reap(io);
			return;
		}
		reap(io);
	}
}

void pf_io_start(struct pf_io *io, struct pf_io_req *reqs, int n)
{
	for (int i = 0; i < n; i++)
		reqs[i].result = -EINPROGRESS;
	io->reqs = reqs;
	io->n = n;
	io->next = io->inflight = 0;
	if (io->uring && n > 0)
		submit_more(io);
}

void pf_io_finish(struct pf_io *io)
{
	if (io->uring)
		finish_uring(io);
	else
		for (; io->next < io->n; io->next++)
			read_pread(io, &io->reqs[io->next]);
	io->n = 0;
}

