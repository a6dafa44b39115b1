/* Write fault injector for tests/test_write_faults.sh, preloaded
 * (LD_PRELOAD) into pinfer-model. It sits in front of the calls that put a
 * file on disk: write, pwrite, fsync, fdatasync, close and rename. Only
 * calls on regular files open for writing count (not the model read, nor
 * the terminal or a pipe), and only the program's own calls: glibc's
 * stdio writes by internal calls that never come here, so redirected
 * stdout and stderr are left alone.
 *
 *   FAULT_CALL   write (write and pwrite), fsync (fsync and fdatasync),
 *                close or rename: the calls counted and faulted
 *   FAULT_AT     the first faulted call, counting from 1 (default 1)
 *   FAULT_MODE   eio:        that call and every later one fails with EIO
 *                enospc:     the same with ENOSPC, as on a full disk
 *                short:      that write stores half of its bytes and every
 *                            later one fails with ENOSPC (a disk filling
 *                            up in the middle of a write)
 *                short-once: that write stores half of its bytes, the
 *                            others all of theirs (legal, and retried)
 *                unset:      nothing fails; the calls are only counted
 *   FAULT_COUNT  a file that gets the number of counted calls at exit
 *
 * A failing call does nothing: a failed close still closes the
 * descriptor, as Linux does. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum mode { COUNT_ONLY, FAIL_EIO, FAIL_ENOSPC, SHORT_THEN_FULL, SHORT_ONCE };

static long calls;

static const char *faulted_call(void)
{
	const char *c = getenv("FAULT_CALL");
	return c ? c : "";
}

static enum mode mode(void)
{
	const char *m = getenv("FAULT_MODE");
	if (!m)
		return COUNT_ONLY;
	if (!strcmp(m, "eio"))
		return FAIL_EIO;
	if (!strcmp(m, "enospc"))
		return FAIL_ENOSPC;
	if (!strcmp(m, "short"))
		return SHORT_THEN_FULL;
	if (!strcmp(m, "short-once"))
		return SHORT_ONCE;
	fprintf(stderr, "fault_write: unknown FAULT_MODE '%s'\n", m);
	abort();
}

static bool is_output(int fd)
{
	struct stat st;
	int flags = fd > 2 ? fcntl(fd, F_GETFL) : -1;
	return flags >= 0 && (flags & O_ACCMODE) != O_RDONLY && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

/* Counts a call of kind on fd (fd < 0: not a descriptor call) and says
 * how it goes: 0 as asked, 1 short, or the errno it fails with. */
static int verdict(const char *kind, int fd)
{
	if (strcmp(faulted_call(), kind) || (fd >= 0 && !is_output(fd)))
		return 0;
	long n = __atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST);
	const char *at = getenv("FAULT_AT");
	long first = at ? atol(at) : 1;
	enum mode m = mode();
	if (m == COUNT_ONLY || n < first)
		return 0;
	switch (m) {
	case FAIL_EIO:
		return EIO;
	case FAIL_ENOSPC:
		return ENOSPC;
	case SHORT_THEN_FULL:
		return n == first ? 1 : ENOSPC;
	case SHORT_ONCE:
		return n == first ? 1 : 0;
	default:
		return 0;
	}
}

static void *next(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);
	if (!f) {
		fprintf(stderr, "fault_write: no %s to wrap\n", name);
		abort();
	}
	return f;
}

ssize_t write(int fd, const void *buf, size_t n)
{
	ssize_t (*real)(int, const void *, size_t) = (ssize_t (*)(int, const void *, size_t))next("write");
	int v = verdict("write", fd);
	if (v > 1) {
		errno = v;
		return -1;
	}
	return real(fd, buf, v == 1 && n > 1 ? n / 2 : n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	ssize_t (*real)(int, const void *, size_t, off_t) =
		(ssize_t (*)(int, const void *, size_t, off_t))next("pwrite");
	int v = verdict("write", fd);
	if (v > 1) {
		errno = v;
		return -1;
	}
	return real(fd, buf, v == 1 && n > 1 ? n / 2 : n, off);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) __attribute__((alias("pwrite")));

int fsync(int fd)
{
	int (*real)(int) = (int (*)(int))next("fsync");
	int v = verdict("fsync", fd);
	if (v > 1) {
		errno = v;
		return -1;
	}
	return real(fd);
}

int fdatasync(int fd)
{
	int (*real)(int) = (int (*)(int))next("fdatasync");
	int v = verdict("fsync", fd);
	if (v > 1) {
		errno = v;
		return -1;
	}
	return real(fd);
}

int close(int fd)
{
	int (*real)(int) = (int (*)(int))next("close");
	int v = verdict("close", fd);
	int r = real(fd);
	if (v > 1) {
		errno = v;
		return -1;
	}
	return r;
}

int rename(const char *from, const char *to)
{
	int (*real)(const char *, const char *) = (int (*)(const char *, const char *))next("rename");
	int v = verdict("rename", -1);
	if (v > 1) {
		errno = v;
		return -1;
	}
	return real(from, to);
}

__attribute__((destructor)) static void report(void)
{
	const char *path = getenv("FAULT_COUNT");
	if (!path)
		return;
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "%ld\n", calls);
		fclose(f);
	}
}
