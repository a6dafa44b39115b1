/* Read fault injector for the I/O error paths of offloaded models,
 * preloaded (LD_PRELOAD) into pinfer-model (tests/test_offload.sh) or
 * pinferd (tests/test_daemon_offload.sh). It wraps pread, which the engine
 * reads clusters with when PINFER_IO=pread; io_uring reads never come
 * here.
 *
 *   FAULT_PREAD          eio:   the faulted preads fail with EIO
 *                        short: they return half of what was asked
 *   FAULT_PREAD_CONTROL  a file holding that mode, read at every pread
 *                        instead of FAULT_PREAD: missing, empty or
 *                        anything else means no fault. A test turns
 *                        faults on and off in a running daemon with it.
 *   FAULT_PREAD_FILE     only preads of this file (the same inode) count
 *   FAULT_AFTER          the first faulted pread, counting from 1 the
 *                        preads that would be faulted (default 1) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum mode { NONE, FAIL_EIO, HALF };

static enum mode parse_mode(const char *s)
{
	if (!strcmp(s, "eio"))
		return FAIL_EIO;
	if (!strcmp(s, "short"))
		return HALF;
	return NONE;
}

static enum mode current_mode(void)
{
	const char *control = getenv("FAULT_PREAD_CONTROL");
	if (!control) {
		const char *mode = getenv("FAULT_PREAD");
		return mode ? parse_mode(mode) : NONE;
	}
	int fd = open(control, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NONE;
	char buf[16];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return NONE;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	buf[n] = 0;
	return parse_mode(buf);
}

static bool is_target(int fd)
{
	const char *path = getenv("FAULT_PREAD_FILE");
	if (!path)
		return true;
	struct stat want, have;
	return stat(path, &want) == 0 && fstat(fd, &have) == 0 && want.st_dev == have.st_dev &&
	       want.st_ino == have.st_ino;
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	static long calls;
	ssize_t (*real)(int, void *, size_t, off_t) = (ssize_t (*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread");
	enum mode mode = current_mode();
	if (mode != NONE && is_target(fd)) {
		const char *after = getenv("FAULT_AFTER");
		if (__atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED) >= (after ? atol(after) : 1)) {
			if (mode == FAIL_EIO) {
				errno = EIO;
				return -1;
			}
			if (n > 1)
				n /= 2;
		}
	}
	return real(fd, buf, n, off);
}
ssize_t pread64(int fd, void *buf, size_t n, off_t off) __attribute__((alias("pread")));
