/* Allocation faults for tests/test_alloc_faults.c. The test is linked with
 * -Wl,--wrap for malloc, calloc, realloc, free, aligned_alloc,
 * posix_memalign, strdup, strndup, mmap, munmap, pthread_create,
 * pthread_join and pthread_detach (see the Makefile), so every call the
 * engine, the tools and the daemon make to them comes here first. Calls inside libc (fopen's buffer) and other
 * libraries do not: those are not the project's to handle.
 *
 * Wrapping at link time rather than preloading a library keeps ASan in
 * charge of the heap: the wrappers call the real functions, which ASan
 * intercepts as usual, so its checks and LeakSanitizer still see every
 * block. */
#ifndef PINFER_TESTS_ALLOC_WRAP_H
#define PINFER_TESTS_ALLOC_WRAP_H

#include <stdbool.h>
#include <stddef.h>

/* Starts counting allocations (a pthread_create or an mmap counts as
 * one) from zero; the fail_at-th one fails (NULL, MAP_FAILED or
 * EAGAIN, errno ENOMEM), the others do not. fail_at 0: none fails. */
void alloc_wrap_arm(long fail_at);
/* Stops counting; returns how many allocations were counted. */
long alloc_wrap_disarm(void);
/* Whether the armed failure happened, and what it was ("malloc of 24
 * bytes"). */
bool alloc_wrap_fired(const char **what);
/* Blocks and mappings made through the wrappers and not yet released,
 * armed or not. */
long alloc_wrap_live(void);
/* Threads started through the wrapper and neither joined nor detached. */
long alloc_wrap_threads(void);

#endif
