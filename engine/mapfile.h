/* A whole regular file mapped read-only, for the readers of model files. */
#ifndef PINFER_MAPFILE_H
#define PINFER_MAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct pf_mapped {
	const char *path;    /* the caller's string, for error messages */
	const uint8_t *data; /* NULL for an empty file */
	size_t size;
};

/* Errors name the file: missing, not a regular file, mmap failure. */
int pf_map_file(struct pf_mapped *m, const char *path, struct pf_err *err);
/* Safe on a zeroed or failed mapping. */
void pf_unmap_file(struct pf_mapped *m);
/* Takes the whole pages of [p, p + n), part of a file mapping, out of this
 * process (unlocked first when locked) once a copy has replaced them; they
 * stay in the page cache for whoever reads the file next. */
void pf_release_file_range(const uint8_t *p, size_t n, bool locked);

#endif
