#include "fuzz_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t path_size)
{
	int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "fuzz: memfd_create: %s\n", strerror(errno));
		return -1;
	}
	for (size_t done = 0; done < size;) {
		ssize_t n = write(fd, data + done, size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "fuzz: writing %zu bytes to a memory file: %s\n", size,
				n < 0 ? strerror(errno) : "no progress");
			close(fd);
			return -1;
		}
		done += (size_t)n;
	}
	snprintf(path, path_size, "/proc/self/fd/%d", fd);
	return fd;
}

const char *fuzz_shared_path(const char *rel, char *buf, size_t size)
{
	const char *dir = getenv("SHARED");
	snprintf(buf, size, "%s/%s", dir && *dir ? dir : FUZZ_SHARED, rel);
	return buf;
}

void fuzz_check_err(int r, const struct pf_err *err, const char *call)
{
	if (r < 0 && !err->msg[0]) {
		fprintf(stderr, "fuzz: %s failed (%s) without saying why\n", call, strerror(-r));
		abort();
	}
}
