/* icache_probe: one small transfer at a time through libsunrise_link.so, with a pass over
 * about 200 KB of other code before each, so that every transfer finds the library's code out
 * of the instruction cache -- as it does inside a host whose own loop between two transfers
 * is larger than the cache (TENT's is). Run under `valgrind --tool=callgrind --cache-sim=yes`
 * (`make icache` does, and reports per transfer the instructions and first-level
 * instruction-cache misses of each object): the code footprint of one transfer, which decides
 * its cost in such a host more than its instruction count.
 *
 * A target process (forked) registers a buffer on device 0 and publishes its IPC handle; this
 * process registers one on device 1 and moves `--block` bytes per transfer to and from the
 * target's buffer (alternating write and read, one request per submit, the sub-batch renewed
 * by each submit as TENT's drop-in does). The bytes are checked at the end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_tang.h"
#include "bench_util.h"
#include "bench_xport.h"

/* ---- the code the probe runs between two transfers: 1,000 distinct small functions ---- */

static volatile unsigned long sink;

#define EVICT_FN(n)                                                                  \
  __attribute__((noinline)) static void evict_##n(unsigned long x) {                 \
    sink = x * (n##UL * 2654435761UL + 7UL);                                         \
    sink ^= x >> (n % 13 + 1);                                                       \
    sink += n##UL * 7919UL;                                                          \
    sink = sink * (n % 97 + 3) ^ (n##UL * 31UL);                                     \
    sink -= x << (n % 7 + 1);                                                        \
  }
#define EVICT_FN10(n)                                                                \
  EVICT_FN(n##0) EVICT_FN(n##1) EVICT_FN(n##2) EVICT_FN(n##3) EVICT_FN(n##4)         \
  EVICT_FN(n##5) EVICT_FN(n##6) EVICT_FN(n##7) EVICT_FN(n##8) EVICT_FN(n##9)
#define EVICT_FN100(n)                                                               \
  EVICT_FN10(n##0) EVICT_FN10(n##1) EVICT_FN10(n##2) EVICT_FN10(n##3) EVICT_FN10(n##4) \
  EVICT_FN10(n##5) EVICT_FN10(n##6) EVICT_FN10(n##7) EVICT_FN10(n##8) EVICT_FN10(n##9)
/* Functions 1000..1999 (a leading 1 keeps the numbers decimal). */
EVICT_FN100(10) EVICT_FN100(11) EVICT_FN100(12) EVICT_FN100(13) EVICT_FN100(14)
EVICT_FN100(15) EVICT_FN100(16) EVICT_FN100(17) EVICT_FN100(18) EVICT_FN100(19)

#define EVICT_REF(n) evict_##n,
#define EVICT_REF10(n)                                                               \
  EVICT_REF(n##0) EVICT_REF(n##1) EVICT_REF(n##2) EVICT_REF(n##3) EVICT_REF(n##4)    \
  EVICT_REF(n##5) EVICT_REF(n##6) EVICT_REF(n##7) EVICT_REF(n##8) EVICT_REF(n##9)
#define EVICT_REF100(n)                                                              \
  EVICT_REF10(n##0) EVICT_REF10(n##1) EVICT_REF10(n##2) EVICT_REF10(n##3)            \
  EVICT_REF10(n##4) EVICT_REF10(n##5) EVICT_REF10(n##6) EVICT_REF10(n##7)            \
  EVICT_REF10(n##8) EVICT_REF10(n##9)
static void (*const evict_table[])(unsigned long) = {
    EVICT_REF100(10) EVICT_REF100(11) EVICT_REF100(12) EVICT_REF100(13) EVICT_REF100(14)
    EVICT_REF100(15) EVICT_REF100(16) EVICT_REF100(17) EVICT_REF100(18) EVICT_REF100(19)};

/* Runs every function of the table once. */
__attribute__((noinline)) static void evict_icache(unsigned long x) {
  for (size_t i = 0; i < sizeof evict_table / sizeof evict_table[0]; i++) evict_table[i](x + i);
}

/* ---- the probe ---- */

static bench_tang rt;

static void die(const char *what, const char *why) {
  fprintf(stderr, "icache_probe: %s: %s\n", what, why);
  exit(1);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: icache_probe [--transfers N] [--block SIZE] [--lib PATH]\n"
          "\n"
          "One small transfer at a time through libsunrise_link.so (device 1 to a forked\n"
          "target's buffer on device 0 over IPC, alternating write and read, one request per\n"
          "submit), each after a pass over about 200 KB of other code, so that the library's\n"
          "code is out of the instruction cache on every transfer. Meant to run under\n"
          "valgrind --tool=callgrind --cache-sim=yes (`make icache` does and reports per\n"
          "transfer); alone it only checks that it runs and that the bytes arrive.\n"
          "\n"
          "  --transfers N   transfers to run (default 2000)\n"
          "  --block SIZE    bytes per transfer, e.g. 4K (default 4K; at most 1M)\n"
          "  --lib PATH      libsunrise_link.so (default $SUNRISE_LINK_LIB, else\n"
          "                  target/release/libsunrise_link.so)\n"
          "The runtime is found through MC_TANGRT_ROOT / MC_TANGRT_LIB_DIR (`make emu`).\n");
}

int main(int argc, char **argv) {
  long transfers = 2000;
  uint64_t block = 4096;
  const char *lib = getenv("SUNRISE_LINK_LIB");
  if (lib == NULL || *lib == '\0') lib = "target/release/libsunrise_link.so";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--transfers") == 0 && i + 1 < argc) {
      char *end = NULL;
      transfers = strtol(argv[++i], &end, 10);
      if (end == argv[i] || *end != '\0' || transfers <= 0)
        die("--transfers", "expects a positive number");
    } else if (strcmp(argv[i], "--block") == 0 && i + 1 < argc) {
      if (bench_parse_size(argv[++i], &block) != 0 || block == 0 || block > (1u << 20))
        die("--block", "expects a size from 1 byte to 1M, e.g. 4K");
    } else if (strcmp(argv[i], "--lib") == 0 && i + 1 < argc) {
      lib = argv[++i];
    } else {
      usage(stderr);
      return 2;
    }
  }
  char err[1024], shm[BENCH_SHM_PATH_LEN];
  if (bench_tang_load(&rt, err, sizeof err) != 0) die("loading the runtime", err);
  int count = 0;
  if (rt.GetDeviceCount(&count) != 0 || count < 2)
    die("the runtime", "needs two devices (the emulator has them)");
  const size_t buf_len = 1u << 20;
  int up[2], down[2];
  if (pipe(up) != 0 || pipe(down) != 0) die("pipe", strerror(errno));
  pid_t pid = fork();
  if (pid < 0) die("fork", strerror(errno));
  if (pid == 0) {
    /* The target: a registered buffer on device 0, published through the pipe, kept until
     * the initiator is done. */
    close(up[0]);
    close(down[1]);
    bench_xport *t = bench_xport_open(lib, NULL, NULL, err, sizeof err);
    if (t == NULL) die("opening the target's transport", err);
    void *p = NULL;
    if (rt.SetDevice(0) != 0 || rt.Malloc(&p, buf_len) != 0) die("target", "tangMalloc failed");
    if (bench_xport_register(t, p, buf_len, "cuda:0", shm, sizeof shm, err, sizeof err) != 0)
      die("registering the target's buffer", err);
    dprintf(up[1], "%llu %s\n", (unsigned long long)(uintptr_t)p, shm);
    char c;
    while (read(down[0], &c, 1) < 0 && errno == EINTR) {
    }
    bench_xport_close(t);
    _exit(0);
  }
  close(up[1]);
  close(down[0]);
  char line[1024];
  ssize_t n = read(up[0], line, sizeof line - 1);
  if (n <= 0) die("the target", "exited before publishing its buffer");
  line[n] = '\0';
  unsigned long long base = 0;
  static char handle[BENCH_SHM_PATH_LEN];
  if (sscanf(line, "%llu %255s", &base, handle) != 2) die("the target", "sent a malformed line");
  static bench_remote_segment remote;
  bench_machine_id(remote.machine_id, sizeof remote.machine_id);
  remote.count = 1;
  remote.buffers[0].base = base;
  remote.buffers[0].length = buf_len;
  snprintf(remote.buffers[0].location, BENCH_LOCATION_LEN, "cuda:0");
  snprintf(remote.buffers[0].shm_path, BENCH_SHM_PATH_LEN, "%s", handle);
  bench_xport *x = bench_xport_open(lib, NULL, &remote, err, sizeof err);
  if (x == NULL) die("opening the transport", err);
  void *local = NULL;
  if (rt.SetDevice(1) != 0 || rt.Malloc(&local, buf_len) != 0) die("initiator", "tangMalloc failed");
  if (bench_xport_register(x, local, buf_len, "cuda:1", shm, sizeof shm, err, sizeof err) != 0)
    die("registering the local buffer", err);
  bench_request r = {1, local, 1, base, block};
  for (long i = 0; i < transfers; i++) {
    evict_icache((unsigned long)i);
    r.write = (i & 1) == 0;
    if (bench_xport_run_batch(x, &r, 1, 1, 5000000000ull, err, sizeof err) != 0)
      die("transfer", err);
  }
  /* The bytes: a pattern written to the target, the local buffer cleared, read back. */
  unsigned char *pattern = malloc(block), *back = malloc(block);
  if (pattern == NULL || back == NULL) die("malloc", "out of memory");
  for (uint64_t i = 0; i < block; i++) pattern[i] = (unsigned char)(i * 131 + 7);
  if (rt.Memcpy(local, pattern, block, BENCH_H2D) != 0) die("check", "tangMemcpy H2D failed");
  r.write = 1;
  if (bench_xport_run_batch(x, &r, 1, 1, 5000000000ull, err, sizeof err) != 0)
    die("check write", err);
  memset(back, 0, block);
  if (rt.Memcpy(local, back, block, BENCH_H2D) != 0) die("check", "tangMemcpy H2D failed");
  r.write = 0;
  if (bench_xport_run_batch(x, &r, 1, 1, 5000000000ull, err, sizeof err) != 0)
    die("check read", err);
  if (rt.Memcpy(back, local, block, BENCH_D2H) != 0) die("check", "tangMemcpy D2H failed");
  int ok = memcmp(back, pattern, block) == 0;
  free(pattern);
  free(back);
  bench_xport_unregister(x, local, buf_len);
  bench_xport_close(x);
  if (write(down[1], "x", 1) < 0) {
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!ok) die("check", "the bytes read back differ from those written");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("the target", "did not exit cleanly");
  printf("icache_probe: %ld transfers of %llu bytes, bytes checked\n", transfers,
         (unsigned long long)block);
  return 0;
}
