#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int pf_map_file(struct pf_mapped *m, const char *path, struct pf_err *err)
{
	m->path = path;
	m->data = NULL;
	m->size = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pf_errf(err, -errno, "%s: %s", path, strerror(errno));
	struct stat st;
	int r = 0;
	if (fstat(fd, &st) < 0)
		r = pf_errf(err, -errno, "%s: %s", path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		r = pf_errf(err, -EINVAL, "%s: not a regular file", path);
	else if (st.st_size > 0) {
		/* Shared, so every process mapping a model shares its pages. */
		void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			r = pf_errf(err, -errno, "%s: mmap: %s", path, strerror(errno));
		} else {
			m->data = p;
			m->size = (size_t)st.st_size;
		}
	}
	close(fd);
	return r;
}

void pf_unmap_file(struct pf_mapped *m)
{
	if (m->data)
		munmap((void *)m->data, m->size);
	m->data = NULL;
	m->size = 0;
}

void pf_release_file_range(const uint8_t *p, size_t n, bool locked)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), e = ((uintptr_t)p + n) & ~(page - 1);
	if (e <= a)
		return;
	if (locked)
		munlock((void *)a, e - a);
	madvise((void *)a, e - a, MADV_DONTNEED);
}
