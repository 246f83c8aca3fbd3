#define _POSIX_C_SOURCE 200809L
#include "bench_util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int bench_parse_size(const char *text, uint64_t *out) {
  if (text == NULL || *text == '\0') return -1;
  char *end = NULL;
  unsigned long long v = strtoull(text, &end, 10);
  if (end == text) return -1;
  while (*end == ' ') end++;
  uint64_t mult = 1;
  switch (toupper((unsigned char)*end)) {
    case '\0': break;
    case 'B': end++; break;
    case 'K': mult = 1ull << 10; end++; break;
    case 'M': mult = 1ull << 20; end++; break;
    case 'G': mult = 1ull << 30; end++; break;
    default: return -1;
  }
  if (mult > 1) {
    if (*end == 'i' || *end == 'I') end++;
    if (*end == 'B' || *end == 'b') end++;
  }
  if (*end != '\0') return -1;
  if (mult > 1 && v > UINT64_MAX / mult) return -1;
  *out = (uint64_t)v * mult;
  return 0;
}

const char *bench_format_size(uint64_t bytes, char *buf, size_t len) {
  if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0)
    snprintf(buf, len, "%lluG", (unsigned long long)(bytes >> 30));
  else if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0)
    snprintf(buf, len, "%lluM", (unsigned long long)(bytes >> 20));
  else if (bytes >= (1ull << 10) && bytes % (1ull << 10) == 0)
    snprintf(buf, len, "%lluK", (unsigned long long)(bytes >> 10));
  else
    snprintf(buf, len, "%llu", (unsigned long long)bytes);
  return buf;
}

int bench_samples_init(bench_samples *s, size_t capacity, uint64_t seed) {
  memset(s, 0, sizeof(*s));
  s->values = (uint64_t *)malloc(capacity * sizeof(uint64_t));
  if (s->values == NULL) return -1;
  s->capacity = capacity;
  s->rng = seed | 1;
  return 0;
}

static uint64_t xorshift(uint64_t *state) {
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return x;
}

void bench_samples_add(bench_samples *s, uint64_t value) {
  s->seen++;
  if (s->count < s->capacity) {
    s->values[s->count++] = value;
    return;
  }
  uint64_t slot = xorshift(&s->rng) % s->seen;
  if (slot < s->capacity) s->values[slot] = value;
}

int bench_samples_merge(bench_samples *dst, const bench_samples *src) {
  if (dst->count + src->count > dst->capacity) {
    size_t cap = dst->count + src->count;
    uint64_t *grown = (uint64_t *)realloc(dst->values, cap * sizeof(uint64_t));
    if (grown == NULL) return -1;
    dst->values = grown;
    dst->capacity = cap;
  }
  memcpy(dst->values + dst->count, src->values, src->count * sizeof(uint64_t));
  dst->count += src->count;
  dst->seen += src->seen;
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

uint64_t bench_samples_quantile(bench_samples *s, double p) {
  if (s->count == 0) return 0;
  qsort(s->values, s->count, sizeof(uint64_t), cmp_u64);
  size_t idx = (size_t)(p * (double)(s->count - 1) + 0.5);
  if (idx >= s->count) idx = s->count - 1;
  return s->values[idx];
}

void bench_samples_free(bench_samples *s) {
  free(s->values);
  memset(s, 0, sizeof(*s));
}

void bench_fill_pattern(uint8_t *buf, size_t len, uint64_t seed, uint64_t offset) {
  for (size_t i = 0; i < len; i++) buf[i] = bench_pattern_byte(seed, offset + i);
}

long long bench_check_pattern(const uint8_t *buf, size_t len, uint64_t seed, uint64_t offset) {
  for (size_t i = 0; i < len; i++)
    if (buf[i] != bench_pattern_byte(seed, offset + i)) return (long long)i;
  return -1;
}
