/* The I/O layer (engine/io.c) on both backends: every request of a batch
 * is reported once, with the file's bytes; a batch grows while in flight;
 * reads past the end come back short and reads of a bad descriptor with
 * its error, each on its own request. */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"

#define BLOCK 4096
#define BLOCKS 200

struct fixture {
	char path[64];
	int fd;
	uint8_t *file;  /* what the file holds */
	uint8_t *bufs;
	struct pf_io_req reqs[BLOCKS];
};

static uint8_t byte_at(size_t i)
{
	return (uint8_t)(i * 2654435761u >> 13);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->path, sizeof(f->path), "/tmp/pinfer-test_io-XXXXXX");
	f->fd = mkstemp(f->path);
	assert_true(f->fd >= 0);
	f->file = malloc((size_t)BLOCKS * BLOCK);
	f->bufs = malloc((size_t)BLOCKS * BLOCK);
	assert_non_null(f->file);
	assert_non_null(f->bufs);
	for (size_t i = 0; i < (size_t)BLOCKS * BLOCK; i++)
		f->file[i] = byte_at(i);
	assert_int_equal(write(f->fd, f->file, (size_t)BLOCKS * BLOCK), (ssize_t)BLOCKS * BLOCK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	close(f->fd);
	unlink(f->path);
	free(f->file);
	free(f->bufs);
	free(f);
	return 0;
}

/* Requests for blocks in a scrambled order, so that they land out of
 * order too where the backend allows. */
static void prepare(struct fixture *f, int n)
{
	memset(f->bufs, 0, (size_t)BLOCKS * BLOCK);
	for (int i = 0; i < n; i++) {
		int b = (i * 37) % BLOCKS;
		f->reqs[i] = (struct pf_io_req){ .buf = f->bufs + (size_t)i * BLOCK, .len = BLOCK,
						 .offset = (uint64_t)b * BLOCK };
	}
}

/* Waits for every request, a few reports at a time, checking each is
 * reported once. */
static void wait_all(struct pf_io *io, int n)
{
	char seen[BLOCKS] = { 0 };
	int done[7], total = 0, got;
	while ((got = pf_io_wait(io, done, 7)) > 0) {
		assert_true(got <= 7);
		for (int i = 0; i < got; i++) {
			assert_true(done[i] >= 0 && done[i] < n);
			assert_false(seen[done[i]]);
			seen[done[i]] = 1;
		}
		total += got;
	}
	assert_int_equal(total, n);
}

static void check_data(struct fixture *f, int n)
{
	for (int i = 0; i < n; i++) {
		assert_int_equal(f->reqs[i].result, BLOCK);
		assert_memory_equal(f->bufs + (size_t)i * BLOCK, f->file + f->reqs[i].offset, BLOCK);
	}
}

static void batches(void **state, const char *backend)
{
	struct fixture *f = *state;
	if (backend)
		setenv("PINFER_IO", backend, 1);
	else
		unsetenv("PINFER_IO");
	struct pf_io *io;
	assert_int_equal(pf_io_open(&io, f->fd, NULL), 0);
	assert_string_equal(pf_io_backend(io), backend ? backend : pf_io_backend(io));

	/* more requests than the queue is deep, then an empty batch */
	prepare(f, BLOCKS);
	pf_io_start(io, f->reqs, BLOCKS);
	wait_all(io, BLOCKS);
	check_data(f, BLOCKS);
	pf_io_start(io, f->reqs, 0);
	int done[4];
	assert_int_equal(pf_io_wait(io, done, 4), 0);

	/* a batch started empty and grown twice while in flight */
	prepare(f, 150);
	pf_io_start(io, f->reqs, 0);
	pf_io_extend(io, 10);
	pf_io_extend(io, 150);
	wait_all(io, 150);
	check_data(f, 150);

	/* finish waits for everything not reported */
	prepare(f, 100);
	pf_io_start(io, f->reqs, 100);
	assert_true(pf_io_wait(io, done, 1) == 1);
	pf_io_finish(io);
	check_data(f, 100);

	/* past the end: short; at the end: nothing */
	prepare(f, 2);
	f->reqs[0].offset = (uint64_t)BLOCKS * BLOCK - 100;
	f->reqs[1].offset = (uint64_t)BLOCKS * BLOCK;
	pf_io_start(io, f->reqs, 2);
	wait_all(io, 2);
	assert_int_equal(f->reqs[0].result, 100);
	assert_int_equal(f->reqs[1].result, 0);
	pf_io_free(io);

	/* a descriptor that cannot be read: the error on each request */
	assert_int_equal(pf_io_open(&io, -1, NULL), 0);
	prepare(f, 3);
	pf_io_start(io, f->reqs, 3);
	wait_all(io, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(f->reqs[i].result, -EBADF);
	pf_io_free(io);
}

static void test_io_uring(void **state)
{
	batches(state, NULL);
}

static void test_pread_thread(void **state)
{
	batches(state, "pread");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_io_uring, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pread_thread, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
