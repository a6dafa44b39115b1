/* What the libFuzzer targets (tests/fuzz/fuzz_*.c, mk/fuzz.mk) share. */
#ifndef PINFER_FUZZ_UTIL_H
#define PINFER_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* The entry points libFuzzer calls. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A file holding data[0, size), for code that takes a path: an anonymous
 * memory file, named "/proc/self/fd/N" in path. Returns its descriptor
 * (close it when done), or -1 after saying why on stderr: the harness
 * cannot go on, so the caller aborts. */
int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t path_size);

/* The engine's contract: a call that fails says why. Aborts (a finding)
 * when r < 0 left err empty; err must have been cleared before the call. */
void fuzz_check_err(int r, const struct pf_err *err, const char *call);

/* $SHARED (the tests' data directory), else the one the build was
 * configured with, joined with rel into buf. */
const char *fuzz_shared_path(const char *rel, char *buf, size_t size);

#endif
