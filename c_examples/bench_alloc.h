/* Counts heap allocations of the whole process (the library's included) by interposing the
 * allocator entry points in the benchmark executable; each forwards to glibc's own. */
#ifndef SUNRISE_LINK_BENCH_ALLOC_H
#define SUNRISE_LINK_BENCH_ALLOC_H

#include <stdint.h>

/* Allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) so far. */
uint64_t bench_alloc_count(void);

#endif
