/* Small helpers shared by the benchmark's source files: clocks, sizes, latency samples. */
#ifndef SUNRISE_LINK_BENCH_UTIL_H
#define SUNRISE_LINK_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

uint64_t bench_now_ns(void);

/* Parses "4096", "4K", "4KiB", "64M", "1G" (binary units). Returns 0 on success. */
int bench_parse_size(const char *text, uint64_t *out);

/* Formats a byte count as "4K", "1M", "64M" into buf. */
const char *bench_format_size(uint64_t bytes, char *buf, size_t len);

/* A bounded latency sample set: keeps every sample up to its capacity, then a uniform
 * reservoir, so percentiles stay unbiased on long runs with bounded memory. */
typedef struct bench_samples {
  uint64_t *values;
  size_t capacity;
  size_t count;   /* values held */
  uint64_t seen;  /* values offered */
  uint64_t rng;
} bench_samples;

int bench_samples_init(bench_samples *s, size_t capacity, uint64_t seed);
void bench_samples_add(bench_samples *s, uint64_t value);
/* Appends all of src into dst (dst grows if needed). Returns 0 on success. */
int bench_samples_merge(bench_samples *dst, const bench_samples *src);
/* Sorts in place and returns the p-quantile (0..1); 0 when empty. */
uint64_t bench_samples_quantile(bench_samples *s, double p);
void bench_samples_free(bench_samples *s);

/* Deterministic byte pattern for a (seed, offset): used to fill and to verify buffers. */
static inline uint8_t bench_pattern_byte(uint64_t seed, uint64_t offset) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + offset;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return (uint8_t)x;
}
void bench_fill_pattern(uint8_t *buf, size_t len, uint64_t seed, uint64_t offset);
/* Returns the index of the first mismatching byte, or -1 when all match. */
long long bench_check_pattern(const uint8_t *buf, size_t len, uint64_t seed, uint64_t offset);

#endif
