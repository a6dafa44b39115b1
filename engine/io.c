#include "io.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads in flight at once: deep enough for an NVMe or UFS device's
 * parallelism (random 4 KiB reads here reach their rate near 32). */
#define QUEUE_DEPTH 64

/* The pread backend: one thread reads the batch in order; the requests
 * below `landed` are done. Where the thread cannot be made, the waiter
 * reads them itself. */
struct reader {
	pthread_t thread;
	bool running, stop;
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	int landed;
};

struct pf_io {
	int fd;
	bool uring;
	struct io_uring ring;
	struct reader rd;
	/* the batch in progress */
	struct pf_io_req *reqs;
	int n, next, inflight, reported;
};

static void read_pread(int fd, struct pf_io_req *r)
{
	do
		r->result = pread(fd, r->buf, r->len, (off_t)r->offset);
	while (r->result < 0 && errno == EINTR);
	if (r->result < 0)
		r->result = -errno;
}

static void *reader_main(void *arg)
{
	struct pf_io *io = arg;
	struct reader *rd = &io->rd;
	pthread_mutex_lock(&rd->lock);
	for (;;) {
		while (!rd->stop && io->next >= io->n)
			pthread_cond_wait(&rd->work, &rd->lock);
		if (rd->stop)
			break;
		struct pf_io_req *r = &io->reqs[io->next++];
		pthread_mutex_unlock(&rd->lock);
		read_pread(io->fd, r);
		pthread_mutex_lock(&rd->lock);
		rd->landed++;
		pthread_cond_signal(&rd->done);
	}
	pthread_mutex_unlock(&rd->lock);
	return NULL;
}

static void reader_open(struct pf_io *io)
{
	struct reader *rd = &io->rd;
	pthread_mutex_init(&rd->lock, NULL);
	pthread_cond_init(&rd->work, NULL);
	pthread_cond_init(&rd->done, NULL);
	rd->running = pthread_create(&rd->thread, NULL, reader_main, io) == 0;
}

static void reader_close(struct pf_io *io)
{
	struct reader *rd = &io->rd;
	if (rd->running) {
		pthread_mutex_lock(&rd->lock);
		rd->stop = true;
		pthread_cond_signal(&rd->work);
		pthread_mutex_unlock(&rd->lock);
		pthread_join(rd->thread, NULL);
	}
	pthread_cond_destroy(&rd->done);
	pthread_cond_destroy(&rd->work);
	pthread_mutex_destroy(&rd->lock);
}

int pf_io_open(struct pf_io **out, int fd, struct pf_err *err)
{
	struct pf_io *io = calloc(1, sizeof(*io));
	if (!io)
		return pf_errf(err, -ENOMEM, "out of memory");
	io->fd = fd;
	const char *force = getenv("PINFER_IO");
	io->uring = !(force && !strcmp(force, "pread")) && io_uring_queue_init(QUEUE_DEPTH, &io->ring, 0) == 0;
	if (!io->uring)
		reader_open(io);
	*out = io;
	return 0;
}

void pf_io_free(struct pf_io *io)
{
	if (!io)
		return;
	if (io->uring)
		io_uring_queue_exit(&io->ring);
	else
		reader_close(io);
	free(io);
}

const char *pf_io_backend(const struct pf_io *io)
{
	return io->uring ? "io_uring" : "pread";
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

static int reap(struct pf_io *io, int *done, int max)
{
	struct io_uring_cqe *cqe;
	unsigned head;
	int seen = 0;
	io_uring_for_each_cqe(&io->ring, head, cqe) {
		if (seen == max)
			break;
		int i = (int)io_uring_cqe_get_data64(cqe);
		io->reqs[i].result = cqe->res;
		done[seen++] = i;
	}
	io_uring_cq_advance(&io->ring, (unsigned)seen);
	io->inflight -= seen;
	return seen;
}

static int wait_uring(struct pf_io *io, int *done, int max)
{
	for (;;) {
		if (io->next < io->n)
			submit_more(io);
		int got = reap(io, done, max);
		if (got > 0 || (io->inflight == 0 && io->next == io->n))
			return got;
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe(&io->ring, &cqe);
		if (r < 0 && r != -EINTR && r != -EAGAIN && io->next < io->n) {
			/* The ring refuses work: what was not submitted yet
			 * is read here, one at a time; what was is the
			 * kernel's until it lands. */
			read_pread(io->fd, &io->reqs[io->next]);
			done[0] = io->next++;
			return 1;
		}
	}
}

static int wait_reader(struct pf_io *io, int *done, int max)
{
	struct reader *rd = &io->rd;
	if (!rd->running) {
		if (io->next == io->n)
			return 0;
		read_pread(io->fd, &io->reqs[io->next]);
		done[0] = io->next++;
		return 1;
	}
	pthread_mutex_lock(&rd->lock);
	while (rd->landed == io->reported && io->reported < io->n)
		pthread_cond_wait(&rd->done, &rd->lock);
	int got = 0;
	while (io->reported + got < rd->landed && got < max) {
		done[got] = io->reported + got;
		got++;
	}
	pthread_mutex_unlock(&rd->lock);
	return got;
}

void pf_io_start(struct pf_io *io, struct pf_io_req *reqs, int n)
{
	for (int i = 0; i < n; i++)
		reqs[i].result = -EINPROGRESS;
	if (!io->uring && io->rd.running)
		pthread_mutex_lock(&io->rd.lock);
	io->reqs = reqs;
	io->n = n;
	io->next = io->inflight = io->reported = 0;
	io->rd.landed = 0;
	if (io->uring && n > 0)
		submit_more(io);
	if (!io->uring && io->rd.running) {
		pthread_cond_signal(&io->rd.work);
		pthread_mutex_unlock(&io->rd.lock);
	}
}

void pf_io_extend(struct pf_io *io, int n)
{
	if (n <= io->n)
		return;
	for (int i = io->n; i < n; i++)
		io->reqs[i].result = -EINPROGRESS;
	if (io->uring) {
		io->n = n;
		submit_more(io);
		return;
	}
	if (io->rd.running)
		pthread_mutex_lock(&io->rd.lock);
	io->n = n;
	if (io->rd.running) {
		pthread_cond_signal(&io->rd.work);
		pthread_mutex_unlock(&io->rd.lock);
	}
}

int pf_io_wait(struct pf_io *io, int *done, int max)
{
	if (max <= 0)
		return 0;
	int got = io->uring ? wait_uring(io, done, max) : wait_reader(io, done, max);
	io->reported += got;
	return got;
}

void pf_io_finish(struct pf_io *io)
{
	int done[QUEUE_DEPTH];
	while (pf_io_wait(io, done, QUEUE_DEPTH) > 0)
		;
}
