/*
 * sunrise_link_bench: target/initiator benchmark of libsunrise_link.so over its C ABI.
 *
 * It drives the library only through the dlopen'ed plugin table, as TENT does, and measures
 * in the same run the baseline: a raw copy of the same bytes with the same threads straight
 * through the Tang runtime (tangMemcpy / tangMemcpyPeer), or plain memcpy for host memory.
 * Run with --help for the flags.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bench_alloc.h"
#include "bench_tang.h"
#include "bench_util.h"
#include "bench_xport.h"

#define MAX_LIST 32
#define SAMPLE_CAPACITY (1u << 16)
#define CHECK_SEED 0x5EED5EEDull

enum mode { MODE_SINGLE, MODE_TARGET, MODE_INITIATOR };
enum op { OP_WRITE, OP_READ, OP_MIX };
enum path { PATH_SAME, PATH_PEER };
enum mem { MEM_VRAM, MEM_DRAM };
/* What a phase runs: the library, or one of the two baselines. */
enum phase { PHASE_LIB, PHASE_RAW, PHASE_UPSTREAM };

typedef struct options {
  enum mode mode;
  char socket_path[108];
  int ops[MAX_LIST];
  size_t n_ops;
  int paths[MAX_LIST];
  size_t n_paths;
  uint64_t blocks[MAX_LIST];
  size_t n_blocks;
  int threads[MAX_LIST];
  size_t n_threads;
  int batch;
  double duration_s;
  uint64_t requests;
  uint64_t buffer_size;
  int local_dev;
  int target_dev;
  enum mem local_mem;
  enum mem target_mem;
  int check;
  int repeat;
  int json;
  int baseline;
  double port_gbps;
  double port_latency_us;
  int ports;
  int striping;
  int busy_poll;
  char async_threshold[32];
  char lib_path[1024];
} options;

static options opt;
static bench_tang rt;
static char machine_id[BENCH_MACHINE_ID_LEN];

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "sunrise_link_bench: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static void usage(FILE *f) {
  fprintf(f,
    "usage: sunrise_link_bench [options]\n"
    "\n"
    "Benchmarks libsunrise_link.so through its C ABI and, in the same run, the raw-copy\n"
    "baseline of the same bytes with the same threads (tangMemcpy/tangMemcpyPeer, or memcpy\n"
    "for host memory). Prints one row per case with the ratio library/baseline.\n"
    "\n"
    "Roles:\n"
    "  --mode MODE           single (default): one process is both target and initiator;\n"
    "                        target: allocate and register buffers, publish them on --socket,\n"
    "                        wait for the initiator; initiator: connect to --socket and run\n"
    "                        the cases against the target's buffers over IPC\n"
    "  --socket PATH         rendezvous socket (target prints it; default\n"
    "                        $TMPDIR (or /tmp) + sunrise_link_bench.<pid>.sock)\n"
    "\n"
    "Cases (lists are comma-separated; every combination is a row):\n"
    "  --op LIST             write, read, mix (default write,read)\n"
    "  --path LIST           same (local and target buffer on --local-dev) and/or peer\n"
    "                        (target buffer on --target-dev); default same,peer. With\n"
    "                        --mode initiator the target's device decides the path.\n"
    "  --block-sizes LIST    block sizes, e.g. 4K,64K,1M,16M (default 4K,64K,1M,16M)\n"
    "  --threads LIST        submitting threads, e.g. 1,2 (default 1,2)\n"
    "  --batch N             requests per submitted batch (default 16)\n"
    "  --poll MODE           busy (default): the submitting thread polls task status\n"
    "                        without yielding its core, as TENT's tebench does; yield:\n"
    "                        sched_yield every 64 polls\n"
    "  --duration SEC        seconds per case and per baseline (default 1)\n"
    "  --requests N          stop each case after N requests per thread instead\n"
    "  --repeat N            run each case and its baseline N times, alternating, and report\n"
    "                        the median of each figure (ratio: median of the N ratios)\n"
    "\n"
    "Memory:\n"
    "  --local-dev N         device of the initiator's buffers (default 0)\n"
    "  --target-dev N        device of the target's buffers for the peer path (default 1)\n"
    "  --local-type T        vram (default) or dram (host memory, location cpu:0)\n"
    "  --target-type T       vram (default) or dram\n"
    "  --buffer-size SIZE    bytes per buffer per thread (default 64M); batches wrap in it\n"
    "  --check               verify the bytes that arrived after every case\n"
    "\n"
    "Library and runtime:\n"
    "  --lib PATH            libsunrise_link.so to load (default: $SUNRISE_LINK_LIB, else\n"
    "                        target/release/libsunrise_link.so, else the dynamic linker path)\n"
    "  --striping            enable multi-port striping (enable_port_striping)\n"
    "  --async-threshold S   async_memcpy_threshold (e.g. 4MiB; plain numbers are KiB)\n"
    "  --port-gbps X         emulator link model: per-port bandwidth in GB/s (0 = none)\n"
    "  --port-latency-us X   emulator link model: per-copy latency per port in microseconds\n"
    "  --ports K             emulator topology: K links (1-4) between --local-dev and\n"
    "                        --target-dev instead of 1, so striping has lanes to use\n"
    "  --no-baseline         skip both baselines\n"
    "\n"
    "Output:\n"
    "  --json                one JSON object per row on stdout instead of the table\n"
    "  -h, --help            this text\n"
    "\n"
    "Columns: GB/s (10^9 bytes/s moved), req/s, p50/p99/p99.9 latency of one batch from\n"
    "submit to the last task terminal, runtime calls per request (emulator counters; '-' on\n"
    "a real runtime), heap allocations per request (whole process, counted by interposing\n"
    "malloc and friends in this executable); then two baselines run in the same process\n"
    "with the same threads, each with its ratio library/baseline: 'raw', the same copies\n"
    "straight through the runtime one after the other (tangMemcpy/tangMemcpyPeer, the\n"
    "device set once per thread; memcpy for host memory), and 'upstream', what the C++\n"
    "transport of Mooncake does per request inline: tangSetDevice, tangPointerGetAttributes\n"
    "of source and destination, then the copy.\n"
    "The runtime is found like the library finds it: MC_TANGRT_LIB_DIR, else MC_TANGRT_ROOT\n"
    "(default /usr/local/tangrt) + /lib/<MC_TANGRT_LIB_ARCH or linux-x86_64>/.\n");
}

static int parse_list(const char *text, int (*one)(const char *, void *), void *out,
                      size_t elem, size_t *count) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", text);
  *count = 0;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    if (*count >= MAX_LIST) return -1;
    if (one(tok, (char *)out + (*count) * elem) != 0) return -1;
    (*count)++;
  }
  return *count > 0 ? 0 : -1;
}

static int one_op(const char *t, void *out) {
  int *o = (int *)out;
  if (strcmp(t, "write") == 0) *o = OP_WRITE;
  else if (strcmp(t, "read") == 0) *o = OP_READ;
  else if (strcmp(t, "mix") == 0) *o = OP_MIX;
  else return -1;
  return 0;
}
static int one_path(const char *t, void *out) {
  int *o = (int *)out;
  if (strcmp(t, "same") == 0) *o = PATH_SAME;
  else if (strcmp(t, "peer") == 0) *o = PATH_PEER;
  else return -1;
  return 0;
}
static int one_size(const char *t, void *out) {
  uint64_t v;
  if (bench_parse_size(t, &v) != 0 || v == 0) return -1;
  *(uint64_t *)out = v;
  return 0;
}
static int one_int(const char *t, void *out) {
  char *end = NULL;
  long v = strtol(t, &end, 10);
  if (end == t || *end != '\0' || v <= 0 || v > 256) return -1;
  *(int *)out = (int)v;
  return 0;
}
static int parse_mem(const char *t, enum mem *out) {
  if (strcmp(t, "vram") == 0) *out = MEM_VRAM;
  else if (strcmp(t, "dram") == 0) *out = MEM_DRAM;
  else return -1;
  return 0;
}
static int parse_int(const char *t, int min, int max, int *out) {
  char *end = NULL;
  long v = strtol(t, &end, 10);
  if (end == t || *end != '\0' || v < min || v > max) return -1;
  *out = (int)v;
  return 0;
}
static int parse_double(const char *t, double min, double *out) {
  char *end = NULL;
  double v = strtod(t, &end);
  if (end == t || *end != '\0' || !(v >= min)) return -1;
  *out = v;
  return 0;
}

static void parse_options(int argc, char **argv) {
  memset(&opt, 0, sizeof opt);
  opt.mode = MODE_SINGLE;
  one_op("write", &opt.ops[0]);
  one_op("read", &opt.ops[1]);
  opt.n_ops = 2;
  opt.paths[0] = PATH_SAME;
  opt.paths[1] = PATH_PEER;
  opt.n_paths = 2;
  parse_list("4K,64K,1M,16M", one_size, opt.blocks, sizeof(uint64_t), &opt.n_blocks);
  opt.threads[0] = 1;
  opt.threads[1] = 2;
  opt.n_threads = 2;
  opt.busy_poll = 1;
  opt.batch = 16;
  opt.duration_s = 1.0;
  opt.buffer_size = 64ull << 20;
  opt.local_dev = 0;
  opt.target_dev = 1;
  opt.baseline = 1;
  opt.ports = 1;
  opt.repeat = 1;
  const char *tmp = getenv("TMPDIR");
  if (tmp == NULL || *tmp == '\0' || strlen(tmp) > 60) tmp = "/tmp";
  snprintf(opt.socket_path, sizeof opt.socket_path, "%s/sunrise_link_bench.%d.sock", tmp,
           (int)getpid());

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = NULL;
    char name[64];
    const char *eq = strchr(a, '=');
    if (eq != NULL && strncmp(a, "--", 2) == 0) {
      snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
      v = eq + 1;
    } else {
      snprintf(name, sizeof name, "%s", a);
    }
#define VALUE()                                                              \
  do {                                                                       \
    if (v == NULL) {                                                         \
      if (i + 1 >= argc) die("%s needs a value (see --help)", name);         \
      v = argv[++i];                                                         \
    }                                                                        \
  } while (0)
#define BAD() die("bad value for %s: '%s' (see --help)", name, v)
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
      usage(stdout);
      exit(0);
    } else if (strcmp(name, "--mode") == 0) {
      VALUE();
      if (strcmp(v, "single") == 0) opt.mode = MODE_SINGLE;
      else if (strcmp(v, "target") == 0) opt.mode = MODE_TARGET;
      else if (strcmp(v, "initiator") == 0) opt.mode = MODE_INITIATOR;
      else BAD();
    } else if (strcmp(name, "--socket") == 0) {
      VALUE();
      if (strlen(v) >= sizeof opt.socket_path) BAD();
      snprintf(opt.socket_path, sizeof opt.socket_path, "%s", v);
    } else if (strcmp(name, "--op") == 0) {
      VALUE();
      if (parse_list(v, one_op, opt.ops, sizeof(int), &opt.n_ops) != 0) BAD();
    } else if (strcmp(name, "--path") == 0) {
      VALUE();
      if (parse_list(v, one_path, opt.paths, sizeof(int), &opt.n_paths) != 0) BAD();
    } else if (strcmp(name, "--block-sizes") == 0) {
      VALUE();
      if (parse_list(v, one_size, opt.blocks, sizeof(uint64_t), &opt.n_blocks) != 0) BAD();
    } else if (strcmp(name, "--threads") == 0) {
      VALUE();
      if (parse_list(v, one_int, opt.threads, sizeof(int), &opt.n_threads) != 0) BAD();
    } else if (strcmp(name, "--batch") == 0) {
      VALUE();
      if (parse_int(v, 1, 4096, &opt.batch) != 0) BAD();
    } else if (strcmp(name, "--duration") == 0) {
      VALUE();
      if (parse_double(v, 0.01, &opt.duration_s) != 0) BAD();
    } else if (strcmp(name, "--requests") == 0) {
      VALUE();
      if (bench_parse_size(v, &opt.requests) != 0 || opt.requests == 0) BAD();
    } else if (strcmp(name, "--buffer-size") == 0) {
      VALUE();
      if (bench_parse_size(v, &opt.buffer_size) != 0 || opt.buffer_size == 0) BAD();
    } else if (strcmp(name, "--local-dev") == 0) {
      VALUE();
      if (parse_int(v, 0, 1 << 20, &opt.local_dev) != 0) BAD();
    } else if (strcmp(name, "--target-dev") == 0) {
      VALUE();
      if (parse_int(v, 0, 1 << 20, &opt.target_dev) != 0) BAD();
    } else if (strcmp(name, "--local-type") == 0) {
      VALUE();
      if (parse_mem(v, &opt.local_mem) != 0) BAD();
    } else if (strcmp(name, "--target-type") == 0) {
      VALUE();
      if (parse_mem(v, &opt.target_mem) != 0) BAD();
    } else if (strcmp(name, "--repeat") == 0) {
      VALUE();
      if (parse_int(v, 1, 15, &opt.repeat) != 0) BAD();
    } else if (strcmp(name, "--check") == 0) {
      opt.check = 1;
    } else if (strcmp(name, "--json") == 0) {
      opt.json = 1;
    } else if (strcmp(name, "--no-baseline") == 0) {
      opt.baseline = 0;
    } else if (strcmp(name, "--striping") == 0) {
      opt.striping = 1;
    } else if (strcmp(name, "--async-threshold") == 0) {
      VALUE();
      uint64_t ignored;
      if (strlen(v) >= sizeof opt.async_threshold || bench_parse_size(v, &ignored) != 0) BAD();
      snprintf(opt.async_threshold, sizeof opt.async_threshold, "%s", v);
    } else if (strcmp(name, "--port-gbps") == 0) {
      VALUE();
      if (parse_double(v, 0.0, &opt.port_gbps) != 0) BAD();
    } else if (strcmp(name, "--port-latency-us") == 0) {
      VALUE();
      if (parse_double(v, 0.0, &opt.port_latency_us) != 0) BAD();
    } else if (strcmp(name, "--poll") == 0) {
      VALUE();
      if (strcmp(v, "busy") == 0) opt.busy_poll = 1;
      else if (strcmp(v, "yield") == 0) opt.busy_poll = 0;
      else BAD();
    } else if (strcmp(name, "--ports") == 0) {
      VALUE();
      if (parse_int(v, 1, 4, &opt.ports) != 0) BAD();
    } else if (strcmp(name, "--lib") == 0) {
      VALUE();
      if (strlen(v) >= sizeof opt.lib_path) BAD();
      snprintf(opt.lib_path, sizeof opt.lib_path, "%s", v);
    } else {
      die("unknown option '%s' (see --help)", a);
    }
#undef VALUE
#undef BAD
  }
  for (size_t i = 0; i < opt.n_blocks; i++)
    if (opt.blocks[i] > opt.buffer_size)
      die("block size %llu exceeds --buffer-size %llu", (unsigned long long)opt.blocks[i],
          (unsigned long long)opt.buffer_size);
  if (opt.lib_path[0] == '\0') {
    const char *env = getenv("SUNRISE_LINK_LIB");
    if (env != NULL && *env != '\0')
      snprintf(opt.lib_path, sizeof opt.lib_path, "%s", env);
    else if (access("target/release/libsunrise_link.so", R_OK) == 0)
      snprintf(opt.lib_path, sizeof opt.lib_path, "target/release/libsunrise_link.so");
    else
      snprintf(opt.lib_path, sizeof opt.lib_path, "libsunrise_link.so");
  }
}

/* ---------- memory ---------- */

typedef struct buffer {
  enum mem mem;
  int dev; /* device for VRAM; -1 for DRAM */
  uint8_t *ptr;
  uint64_t len;
  int ipc_opened; /* opened from a remote handle: close, don't free */
  char location[BENCH_LOCATION_LEN];
} buffer;

static void check_rt(int rc, const char *what) {
  if (rc != 0) die("%s failed: Tang error %d (%s)", what, rc, bench_tang_error(&rt, rc));
}

static void buffer_alloc(buffer *b, enum mem mem, int dev, uint64_t len) {
  memset(b, 0, sizeof *b);
  b->mem = mem;
  b->len = len;
  if (mem == MEM_VRAM) {
    b->dev = dev;
    check_rt(rt.SetDevice(dev), "tangSetDevice");
    void *p = NULL;
    check_rt(rt.Malloc(&p, len), "tangMalloc");
    b->ptr = (uint8_t *)p;
    snprintf(b->location, sizeof b->location, "cuda:%d", dev);
  } else {
    b->dev = -1;
    b->ptr = (uint8_t *)aligned_alloc(4096, (len + 4095) / 4096 * 4096);
    if (b->ptr == NULL) die("out of host memory (%llu bytes)", (unsigned long long)len);
    memset(b->ptr, 0, len);
    snprintf(b->location, sizeof b->location, "cpu:0");
  }
}

static void buffer_release(buffer *b) {
  if (b->ptr == NULL) return;
  if (b->ipc_opened) {
    rt.SetDevice(b->dev);
    rt.IpcCloseMemHandle(b->ptr);
  } else if (b->mem == MEM_VRAM) {
    rt.SetDevice(b->dev);
    rt.Free(b->ptr);
  } else {
    free(b->ptr);
  }
  b->ptr = NULL;
}

/* Host-side access to any buffer, through the runtime for device memory. */
static void buffer_write_host(buffer *b, const uint8_t *src, uint64_t len) {
  if (b->mem == MEM_DRAM) {
    memcpy(b->ptr, src, len);
    return;
  }
  check_rt(rt.SetDevice(b->dev), "tangSetDevice");
  check_rt(rt.Memcpy(b->ptr, src, len, BENCH_H2D), "tangMemcpy H2D");
}
static void buffer_read_host(buffer *b, uint8_t *dst, uint64_t len) {
  if (b->mem == MEM_DRAM) {
    memcpy(dst, b->ptr, len);
    return;
  }
  check_rt(rt.SetDevice(b->dev), "tangSetDevice");
  check_rt(rt.Memcpy(dst, b->ptr, len, BENCH_D2H), "tangMemcpy D2H");
}

static int hex_decode(const char *hex, uint8_t *out, size_t out_len) {
  size_t n = strlen(hex);
  if (n != out_len * 2) return -1;
  for (size_t i = 0; i < out_len; i++) {
    unsigned v = 0;
    for (int k = 0; k < 2; k++) {
      char c = hex[2 * i + k];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
      else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
      else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
      else return -1;
    }
    out[i] = (uint8_t)v;
  }
  return 0;
}

static int location_device(const char *location) {
  if (strncmp(location, "cuda:", 5) != 0) return -1;
  return atoi(location + 5);
}

/* ---------- one case ---------- */

typedef struct case_spec {
  enum op op;
  enum path path;
  uint64_t block;
  int threads;
} case_spec;

typedef struct thread_ctx {
  const case_spec *c;
  int index;
  bench_xport *xport;
  buffer *local;
  buffer *target;        /* the target buffer as the initiator reaches it for the baseline */
  uint64_t segment;      /* 0 = local segment */
  uint64_t target_addr;  /* the target buffer's address as registered by its owner */
  int raw;               /* PHASE_RAW / PHASE_UPSTREAM: a baseline instead of the library */
  pthread_barrier_t *start;
  uint64_t deadline_ns;
  /* results */
  uint64_t requests;
  uint64_t batches;
  uint64_t elapsed_ns;
  bench_samples latency;
  char error[512];
  int failed;
} thread_ctx;

static int raw_copy(buffer *dst, const buffer *src, uint64_t dst_off, uint64_t src_off,
                    uint64_t len) {
  uint8_t *d = dst->ptr + dst_off;
  const uint8_t *s = src->ptr + src_off;
  if (dst->mem == MEM_DRAM && src->mem == MEM_DRAM) {
    memcpy(d, s, len);
    return 0;
  }
  if (dst->mem == MEM_VRAM && src->mem == MEM_VRAM) {
    if (dst->dev == src->dev) return rt.Memcpy(d, s, len, BENCH_D2D);
    return rt.MemcpyPeer(d, dst->dev, s, src->dev, len);
  }
  if (dst->mem == MEM_VRAM) return rt.Memcpy(d, s, len, BENCH_H2D);
  return rt.Memcpy(d, s, len, BENCH_D2H);
}

/* What Mooncake's C++ transport does per request: make the copying device current, ask the
 * runtime about both pointers, then copy inline. */
static int upstream_copy(buffer *dst, const buffer *src, uint64_t dst_off, uint64_t src_off,
                         uint64_t len, int dev) {
  bench_pointer_attributes a;
  if (dev >= 0) {
    int rc = rt.SetDevice(dev);
    if (rc != 0) return rc;
  }
  (void)rt.PointerGetAttributes(&a, src->ptr + src_off);
  (void)rt.PointerGetAttributes(&a, dst->ptr + dst_off);
  return raw_copy(dst, src, dst_off, src_off, len);
}

static int request_is_write(const thread_ctx *t, uint64_t seq) {
  if (t->c->op == OP_WRITE) return 1;
  if (t->c->op == OP_READ) return 0;
  return (int)(seq & 1);
}

static void *worker(void *arg) {
  thread_ctx *t = (thread_ctx *)arg;
  const case_spec *c = t->c;
  uint64_t slots = t->local->len / c->block;
  if (slots == 0) slots = 1;
  bench_request reqs[4096];
  int n = opt.batch;
  /* The baselines copy on the device that owns the local side. */
  int dev = t->local->mem == MEM_VRAM ? t->local->dev : t->target->dev;
  if (t->raw == PHASE_RAW && dev >= 0) rt.SetDevice(dev);
  pthread_barrier_wait(t->start);
  uint64_t begin = bench_now_ns();
  uint64_t seq = 0;
  for (;;) {
    uint64_t now = bench_now_ns();
    if (opt.requests > 0 ? t->requests >= opt.requests : now >= t->deadline_ns) break;
    uint64_t t0 = now;
    if (t->raw) {
      for (int i = 0; i < n; i++, seq++) {
        uint64_t off = (seq % slots) * c->block;
        int rc;
        if (t->raw == PHASE_UPSTREAM)
          rc = request_is_write(t, seq)
                   ? upstream_copy(t->target, t->local, off, off, c->block, dev)
                   : upstream_copy(t->local, t->target, off, off, c->block, dev);
        else
          rc = request_is_write(t, seq) ? raw_copy(t->target, t->local, off, off, c->block)
                                        : raw_copy(t->local, t->target, off, off, c->block);
        if (rc != 0) {
          snprintf(t->error, sizeof t->error, "raw copy failed: Tang error %d (%s)", rc,
                   bench_tang_error(&rt, rc));
          t->failed = 1;
          return NULL;
        }
      }
    } else {
      for (int i = 0; i < n; i++, seq++) {
        uint64_t off = (seq % slots) * c->block;
        reqs[i].write = request_is_write(t, seq);
        reqs[i].local = t->local->ptr + off;
        reqs[i].segment = t->segment;
        reqs[i].remote_addr = t->target_addr + off;
        reqs[i].length = c->block;
      }
      if (bench_xport_run_batch(t->xport, reqs, (size_t)n, opt.busy_poll,
                                30ull * 1000000000ull, t->error, sizeof t->error) != 0) {
        t->failed = 1;
        return NULL;
      }
    }
    bench_samples_add(&t->latency, bench_now_ns() - t0);
    t->requests += (uint64_t)n;
    t->batches++;
  }
  t->elapsed_ns = bench_now_ns() - begin;
  return NULL;
}

typedef struct phase_result {
  double gbps;
  double reqs_per_s;
  uint64_t p50_ns, p99_ns, p999_ns;
  uint64_t requests;
  double calls_per_req; /* < 0 when unknown */
  double allocs_per_req;
  uint64_t thread_requests[256];
  int failed;
  char error[512];
} phase_result;

static void run_phase(const case_spec *c, bench_xport *x, buffer *locals, buffer *targets,
                      uint64_t segment, const uint64_t *target_addrs, int raw,
                      phase_result *out) {
  thread_ctx ctx[256];
  pthread_t tid[256];
  pthread_barrier_t barrier;
  memset(out, 0, sizeof *out);
  pthread_barrier_init(&barrier, NULL, (unsigned)c->threads + 1);
  for (int i = 0; i < c->threads; i++) {
    memset(&ctx[i], 0, sizeof ctx[i]);
    ctx[i].c = c;
    ctx[i].index = i;
    ctx[i].xport = x;
    ctx[i].local = &locals[i];
    ctx[i].target = &targets[i];
    ctx[i].segment = segment;
    ctx[i].target_addr = target_addrs[i];
    ctx[i].raw = raw;
    ctx[i].start = &barrier;
    if (bench_samples_init(&ctx[i].latency, SAMPLE_CAPACITY, 0x1234 + (uint64_t)i) != 0)
      die("out of memory");
  }
  unsigned long long calls0 = rt.EmuTotalCalls ? rt.EmuTotalCalls() : 0;
  uint64_t allocs0 = bench_alloc_count();
  for (int i = 0; i < c->threads; i++) {
    if (pthread_create(&tid[i], NULL, worker, &ctx[i]) != 0) die("pthread_create failed");
  }
  uint64_t deadline = bench_now_ns() + (uint64_t)(opt.duration_s * 1e9);
  for (int i = 0; i < c->threads; i++) ctx[i].deadline_ns = deadline;
  pthread_barrier_wait(&barrier);
  uint64_t start = bench_now_ns();
  for (int i = 0; i < c->threads; i++) pthread_join(tid[i], NULL);
  uint64_t wall = bench_now_ns() - start;
  unsigned long long calls1 = rt.EmuTotalCalls ? rt.EmuTotalCalls() : 0;
  uint64_t allocs1 = bench_alloc_count();
  pthread_barrier_destroy(&barrier);

  bench_samples all;
  if (bench_samples_init(&all, SAMPLE_CAPACITY, 99) != 0) die("out of memory");
  for (int i = 0; i < c->threads; i++) {
    if (ctx[i].failed && !out->failed) {
      out->failed = 1;
      snprintf(out->error, sizeof out->error, "thread %d: %s", i, ctx[i].error);
    }
    out->requests += ctx[i].requests;
    out->thread_requests[i] = ctx[i].requests;
    bench_samples_merge(&all, &ctx[i].latency);
    bench_samples_free(&ctx[i].latency);
  }
  double secs = (double)wall / 1e9;
  if (secs <= 0) secs = 1e-9;
  out->gbps = (double)out->requests * (double)c->block / secs / 1e9;
  out->reqs_per_s = (double)out->requests / secs;
  out->p50_ns = bench_samples_quantile(&all, 0.50);
  out->p99_ns = bench_samples_quantile(&all, 0.99);
  out->p999_ns = bench_samples_quantile(&all, 0.999);
  out->calls_per_req = (rt.EmuTotalCalls && out->requests > 0)
                           ? (double)(calls1 - calls0) / (double)out->requests
                           : -1.0;
  /* Thread start and exit allocate a little: a few per thread, spread over the run. */
  out->allocs_per_req =
      out->requests > 0 ? (double)(allocs1 - allocs0) / (double)out->requests : 0.0;
  bench_samples_free(&all);
}

/* Fills every source with the pattern and clears every destination, so that a case that
 * moved nothing fails the check. */
static void prepare_check(const case_spec *c, buffer *locals, buffer *targets) {
  uint8_t *host = (uint8_t *)malloc(opt.buffer_size);
  uint8_t *zero = (uint8_t *)calloc(1, opt.buffer_size);
  if (host == NULL || zero == NULL) die("out of host memory");
  for (int i = 0; i < c->threads; i++) {
    bench_fill_pattern(host, locals[i].len, CHECK_SEED + (uint64_t)i, 0);
    if (c->op == OP_WRITE) {
      buffer_write_host(&locals[i], host, locals[i].len);
      buffer_write_host(&targets[i], zero, targets[i].len);
    } else if (c->op == OP_READ) {
      buffer_write_host(&targets[i], host, targets[i].len);
      buffer_write_host(&locals[i], zero, locals[i].len);
    } else {
      buffer_write_host(&locals[i], host, locals[i].len);
      buffer_write_host(&targets[i], host, targets[i].len);
    }
  }
  free(host);
  free(zero);
}

/* Verifies the destination of every block the case touched (request n of a thread goes to
 * block n modulo the blocks in its buffer). */
static int verify_check(const case_spec *c, const phase_result *r, buffer *locals,
                        buffer *targets, char *err, size_t err_len) {
  uint8_t *host = (uint8_t *)malloc(opt.buffer_size);
  if (host == NULL) die("out of host memory");
  int rc = 0;
  for (int i = 0; i < c->threads && rc == 0; i++) {
    uint64_t slots = locals[i].len / c->block;
    if (r->thread_requests[i] < slots) slots = r->thread_requests[i];
    uint64_t touched = slots * c->block;
    buffer *dst = c->op == OP_READ ? &locals[i] : &targets[i];
    buffer_read_host(dst, host, dst->len);
    long long bad = bench_check_pattern(host, touched, CHECK_SEED + (uint64_t)i, 0);
    if (bad >= 0) {
      snprintf(err, err_len, "thread %d: byte %lld of the %s buffer is wrong", i, bad,
               c->op == OP_READ ? "local" : "target");
      rc = -1;
    }
    if (c->op == OP_MIX && rc == 0) {
      buffer_read_host(&locals[i], host, locals[i].len);
      bad = bench_check_pattern(host, touched, CHECK_SEED + (uint64_t)i, 0);
      if (bad >= 0) {
        snprintf(err, err_len, "thread %d: byte %lld of the local buffer is wrong", i, bad);
        rc = -1;
      }
    }
  }
  free(host);
  return rc;
}

/* ---------- medians over --repeat runs ---------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median_double(const double *v, int n) {
  double tmp[15] = {0};
  memcpy(tmp, v, (size_t)n * sizeof(double));
  qsort(tmp, (size_t)n, sizeof(double), cmp_double);
  return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2.0;
}

#define MEDIAN_OF(field)                                         \
  do {                                                           \
    for (int i = 0; i < n; i++) tmp[i] = (double)runs[i].field;  \
    out->field = (__typeof__(out->field))median_double(tmp, n);  \
  } while (0)

static void median_result(const phase_result *runs, int n, phase_result *out) {
  double tmp[15] = {0};
  *out = runs[0];
  MEDIAN_OF(gbps);
  MEDIAN_OF(reqs_per_s);
  MEDIAN_OF(p50_ns);
  MEDIAN_OF(p99_ns);
  MEDIAN_OF(p999_ns);
  MEDIAN_OF(calls_per_req);
  MEDIAN_OF(allocs_per_req);
  out->requests = 0;
  for (int i = 0; i < n; i++) out->requests += runs[i].requests;
}

/* ---------- output ---------- */

static const char *op_name(int op) {
  return op == OP_WRITE ? "write" : op == OP_READ ? "read" : "mix";
}
static const char *mem_name(enum mem m) { return m == MEM_VRAM ? "vram" : "dram"; }

static void fmt_lat(uint64_t ns, char *buf, size_t len) {
  if (ns >= 10000000ull) snprintf(buf, len, "%.1fms", (double)ns / 1e6);
  else snprintf(buf, len, "%.1fus", (double)ns / 1e3);
}

static void print_header(void) {
  if (opt.json) return;
  printf("%-5s %-5s %-11s %3s %6s %5s | %9s %11s %9s %9s %9s %6s %7s | %9s %6s | %9s %6s | "
         "%s\n",
         "path", "op", "mem", "thr", "block", "batch", "GB/s", "req/s", "p50", "p99", "p99.9",
         "calls", "allocs", "raw GB/s", "ratio", "upstr GB/s", "ratio", "check");
}

static void print_row(const case_spec *c, const char *path_name, const char *mem_pair,
                      const phase_result *lib, const phase_result *base, double ratio_value,
                      const phase_result *up, double up_ratio_value, const char *check) {
  char blk[32], p50[32], p99[32], p999[32], calls[32], bgb[32], ratio[32], ugb[32], uratio[32];
  bench_format_size(c->block, blk, sizeof blk);
  fmt_lat(lib->p50_ns, p50, sizeof p50);
  fmt_lat(lib->p99_ns, p99, sizeof p99);
  fmt_lat(lib->p999_ns, p999, sizeof p999);
  if (lib->calls_per_req >= 0) snprintf(calls, sizeof calls, "%.2f", lib->calls_per_req);
  else snprintf(calls, sizeof calls, "-");
  if (base != NULL && base->gbps > 0) {
    snprintf(bgb, sizeof bgb, "%.3f", base->gbps);
    snprintf(ratio, sizeof ratio, "%.2f", ratio_value);
  } else {
    snprintf(bgb, sizeof bgb, "-");
    snprintf(ratio, sizeof ratio, "-");
  }
  int have_up = up != NULL && up->gbps > 0;
  if (have_up) {
    snprintf(ugb, sizeof ugb, "%.3f", up->gbps);
    snprintf(uratio, sizeof uratio, "%.2f", up_ratio_value);
  } else {
    snprintf(ugb, sizeof ugb, "-");
    snprintf(uratio, sizeof uratio, "-");
  }
  if (opt.json) {
    printf("{\"path\":\"%s\",\"op\":\"%s\",\"mem\":\"%s\",\"threads\":%d,\"block\":%llu,"
           "\"batch\":%d,\"gbps\":%.6f,\"req_per_s\":%.1f,\"p50_us\":%.3f,\"p99_us\":%.3f,"
           "\"p999_us\":%.3f,\"runtime_calls_per_req\":%s,\"allocs_per_req\":%.4f,"
           "\"requests\":%llu,"
           "\"baseline_gbps\":%s,\"ratio\":%s,\"upstream_gbps\":%s,"
           "\"upstream_ratio\":%s,\"runs\":%d,\"check\":\"%s\"}\n",
           path_name, op_name(c->op), mem_pair, c->threads, (unsigned long long)c->block,
           opt.batch, lib->gbps, lib->reqs_per_s, (double)lib->p50_ns / 1e3,
           (double)lib->p99_ns / 1e3, (double)lib->p999_ns / 1e3,
           lib->calls_per_req >= 0 ? calls : "null", lib->allocs_per_req,
           (unsigned long long)lib->requests,
           base != NULL && base->gbps > 0 ? bgb : "null",
           base != NULL && base->gbps > 0 ? ratio : "null", have_up ? ugb : "null",
           have_up ? uratio : "null", opt.repeat, check);
  } else {
    printf("%-5s %-5s %-11s %3d %6s %5d | %9.3f %11.0f %9s %9s %9s %6s %7.3f | %9s %6s | %9s "
           "%6s | %s\n",
           path_name, op_name(c->op), mem_pair, c->threads, blk, opt.batch, lib->gbps,
           lib->reqs_per_s, p50, p99, p999, calls, lib->allocs_per_req, bgb, ratio, ugb,
           uratio, check);
  }
  fflush(stdout);
}

/* ---------- roles ---------- */

static void build_config(char *out, size_t len) {
  int n = snprintf(out, len, "{\"enable_port_striping\":%s", opt.striping ? "true" : "false");
  if (opt.async_threshold[0])
    n += snprintf(out + n, len - (size_t)n, ",\"async_memcpy_threshold\":\"%s\"",
                  opt.async_threshold);
  snprintf(out + n, len - (size_t)n, "}");
}

static void apply_link_model(void) {
  if (opt.port_gbps <= 0 && opt.port_latency_us <= 0 && opt.ports <= 1) return;
  if (rt.EmuConfigure == NULL)
    die("--port-gbps, --port-latency-us and --ports need the emulated runtime "
        "(tangEmuConfigure missing)");
  char toml[1024];
  size_t n = 0;
  if (opt.port_gbps > 0 || opt.port_latency_us > 0) {
    n += (size_t)snprintf(toml + n, sizeof toml - n, "[link_model]\nlatency_us = %.3f\n",
                          opt.port_latency_us);
    if (opt.port_gbps > 0)
      n += (size_t)snprintf(toml + n, sizeof toml - n, "bandwidth = %.0f\n",
                            opt.port_gbps * 1e9);
  }
  /* The default mesh links each pair of devices once, on ports 0..6 (8 devices); ports 7..9
   * are free on every device and carry the extra lanes. */
  for (int k = 1; k < opt.ports; k++) {
    int port = 6 + k;
    n += (size_t)snprintf(toml + n, sizeof toml - n, "[[link]]\na = [%d, %d]\nb = [%d, %d]\n",
                          opt.local_dev, port, opt.target_dev, port);
  }
  int rc = rt.EmuConfigure(toml);
  if (rc != 0) die("tangEmuConfigure rejected the link model/topology (code %d)", rc);
}

static size_t max_threads(void) {
  int m = 1;
  for (size_t i = 0; i < opt.n_threads; i++)
    if (opt.threads[i] > m) m = opt.threads[i];
  return (size_t)m;
}

static size_t total_cases(void) { return opt.n_paths * opt.n_ops * opt.n_threads * opt.n_blocks; }

/* Runs every case of one path against the given target buffers. */
static int run_cases(bench_xport *x, enum path path, const char *path_name, buffer *locals,
                     buffer *targets, uint64_t segment, const uint64_t *target_addrs,
                     size_t *done) {
  int failures = 0;
  char mem_pair[32];
  snprintf(mem_pair, sizeof mem_pair, "%s>%s", mem_name(opt.local_mem),
           mem_name(opt.target_mem));
  for (size_t o = 0; o < opt.n_ops; o++)
    for (size_t th = 0; th < opt.n_threads; th++)
      for (size_t b = 0; b < opt.n_blocks; b++) {
        case_spec c = {(enum op)opt.ops[o], path, opt.blocks[b], opt.threads[th]};
        (*done)++;
        char blk[32];
        fprintf(stderr, "[%zu/%zu] %s %s %s threads=%d block=%s ...\n", *done, total_cases(),
                path_name, op_name(c.op), mem_pair, c.threads,
                bench_format_size(c.block, blk, sizeof blk));
        static phase_result libs[15], bases[15], ups[15];
        double ratios[15], up_ratios[15];
        const char *check = opt.check ? "ok" : "-";
        int have_base = opt.baseline;
        int runs = 0, bad = -1;
        for (int r = 0; r < opt.repeat; r++) {
          if (opt.check) prepare_check(&c, locals, targets);
          run_phase(&c, x, locals, targets, segment, target_addrs, PHASE_LIB, &libs[r]);
          char why[600];
          if (libs[r].failed) {
            fprintf(stderr, "  library run failed: %s\n", libs[r].error);
            check = "FAILED";
            failures++;
            have_base = 0;
            bad = r;
            break;
          }
          if (opt.check &&
              verify_check(&c, &libs[r], locals, targets, why, sizeof why) != 0) {
            fprintf(stderr, "  data check failed: %s\n", why);
            check = "CORRUPT";
            failures++;
            have_base = 0;
            bad = r;
            break;
          }
          if (have_base) {
            run_phase(&c, x, locals, targets, segment, target_addrs, PHASE_RAW, &bases[r]);
            if (!bases[r].failed)
              run_phase(&c, x, locals, targets, segment, target_addrs, PHASE_UPSTREAM,
                        &ups[r]);
            if (bases[r].failed || ups[r].failed) {
              fprintf(stderr, "  baseline failed: %s\n",
                      bases[r].failed ? bases[r].error : ups[r].error);
              have_base = 0;
            } else {
              ratios[r] = bases[r].gbps > 0 ? libs[r].gbps / bases[r].gbps : 0.0;
              up_ratios[r] = ups[r].gbps > 0 ? libs[r].gbps / ups[r].gbps : 0.0;
            }
          }
          runs++;
        }
        phase_result lib, base, up;
        if (bad >= 0) median_result(&libs[bad], 1, &lib);
        else median_result(libs, runs, &lib);
        if (have_base) {
          median_result(bases, runs, &base);
          median_result(ups, runs, &up);
        }
        double ratio = have_base ? median_double(ratios, runs) : -1.0;
        double up_ratio = have_base ? median_double(up_ratios, runs) : -1.0;
        print_row(&c, path_name, mem_pair, &lib, have_base ? &base : NULL, ratio,
                  have_base ? &up : NULL, up_ratio, check);
      }
  return failures;
}

static void load_runtime(void) {
  char err[1024];
  if (bench_tang_load(&rt, err, sizeof err) != 0) die("%s", err);
  int count = 0;
  int rc = rt.GetDeviceCount(&count);
  if (rc != 0) die("tangGetDeviceCount: Tang error %d (%s)", rc, bench_tang_error(&rt, rc));
  int need = opt.local_dev > opt.target_dev ? opt.local_dev : opt.target_dev;
  if (need >= count) die("device %d requested but the runtime has %d devices", need, count);
  apply_link_model();
}

static bench_xport *open_xport(bench_remote_segment *remote) {
  char cfg[256], err[1024];
  build_config(cfg, sizeof cfg);
  bench_xport *x = bench_xport_open(opt.lib_path, cfg, remote, err, sizeof err);
  if (x == NULL) die("%s", err);
  return x;
}

static int run_single(void) {
  size_t nt = max_threads();
  bench_xport *x = open_xport(NULL);
  buffer locals[256], same[256], peer[256];
  uint64_t same_addr[256], peer_addr[256];
  char shm[BENCH_SHM_PATH_LEN], err[1024];
  int want_same = 0, want_peer = 0;
  for (size_t i = 0; i < opt.n_paths; i++) {
    if (opt.paths[i] == PATH_SAME) want_same = 1;
    else want_peer = 1;
  }
  if (want_peer && opt.target_dev == opt.local_dev && opt.target_mem == MEM_VRAM)
    die("the peer path needs --target-dev different from --local-dev");
  for (size_t i = 0; i < nt; i++) {
    buffer_alloc(&locals[i], opt.local_mem, opt.local_dev, opt.buffer_size);
    if (bench_xport_register(x, locals[i].ptr, locals[i].len, locals[i].location, shm,
                             sizeof shm, err, sizeof err) != 0)
      die("registering the local buffer: %s", err);
    if (want_same) {
      buffer_alloc(&same[i], opt.target_mem, opt.local_dev, opt.buffer_size);
      if (bench_xport_register(x, same[i].ptr, same[i].len, same[i].location, shm, sizeof shm,
                               err, sizeof err) != 0)
        die("registering a target buffer: %s", err);
      same_addr[i] = (uint64_t)(uintptr_t)same[i].ptr;
    }
    if (want_peer) {
      buffer_alloc(&peer[i], opt.target_mem, opt.target_dev, opt.buffer_size);
      if (bench_xport_register(x, peer[i].ptr, peer[i].len, peer[i].location, shm, sizeof shm,
                               err, sizeof err) != 0)
        die("registering a target buffer: %s", err);
      peer_addr[i] = (uint64_t)(uintptr_t)peer[i].ptr;
    }
  }
  fprintf(stderr, "sunrise_link_bench: library %s (%s), runtime %s\n", opt.lib_path,
          bench_xport_version(x), rt.path);
  print_header();
  size_t done = 0;
  int failures = 0;
  for (size_t p = 0; p < opt.n_paths; p++) {
    if (opt.paths[p] == PATH_SAME)
      failures += run_cases(x, PATH_SAME, "same", locals, same, 0, same_addr, &done);
    else
      failures += run_cases(x, PATH_PEER, "peer", locals, peer, 0, peer_addr, &done);
  }
  for (size_t i = 0; i < nt; i++) {
    bench_xport_unregister(x, locals[i].ptr, locals[i].len);
    buffer_release(&locals[i]);
    if (want_same) {
      bench_xport_unregister(x, same[i].ptr, same[i].len);
      buffer_release(&same[i]);
    }
    if (want_peer) {
      bench_xport_unregister(x, peer[i].ptr, peer[i].len);
      buffer_release(&peer[i]);
    }
  }
  bench_xport_close(x);
  return failures == 0 ? 0 : 1;
}

static int write_all(int fd, const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

static int run_target(void) {
  size_t nt = max_threads();
  bench_xport *x = open_xport(NULL);
  buffer bufs[256];
  char shm[256][BENCH_SHM_PATH_LEN];
  char err[1024];
  int dev = opt.target_dev;
  for (size_t i = 0; i < nt; i++) {
    buffer_alloc(&bufs[i], opt.target_mem, dev, opt.buffer_size);
    if (bench_xport_register(x, bufs[i].ptr, bufs[i].len, bufs[i].location, shm[i],
                             sizeof shm[i], err, sizeof err) != 0)
      die("registering a buffer: %s", err);
    if (opt.target_mem == MEM_VRAM && shm[i][0] == '\0')
      die("the library published no IPC handle for device memory");
  }
  int srv = socket(AF_UNIX, SOCK_STREAM, 0);
  if (srv < 0) die("socket: %s", strerror(errno));
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", opt.socket_path);
  unlink(opt.socket_path);
  if (bind(srv, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(srv, 1) != 0)
    die("cannot listen on %s: %s", opt.socket_path, strerror(errno));
  printf("target ready: %zu %s buffer(s) of %llu bytes on %s\n", nt, mem_name(opt.target_mem),
         (unsigned long long)opt.buffer_size, bufs[0].location);
  printf("run the initiator with: sunrise_link_bench --mode initiator --socket %s"
         " --threads %zu --buffer-size %llu\n",
         opt.socket_path, nt, (unsigned long long)opt.buffer_size);
  fflush(stdout);
  int fd = accept(srv, NULL, NULL);
  if (fd < 0) die("accept: %s", strerror(errno));
  char line[1024];
  snprintf(line, sizeof line, "MACHINE %s\n", machine_id);
  int bad = write_all(fd, line);
  for (size_t i = 0; i < nt && !bad; i++) {
    snprintf(line, sizeof line, "BUF %llu %llu %.63s %.255s\n",
             (unsigned long long)(uintptr_t)bufs[i].ptr, (unsigned long long)bufs[i].len,
             bufs[i].location, shm[i][0] ? shm[i] : "-");
    bad = write_all(fd, line);
  }
  if (!bad) bad = write_all(fd, "END\n");
  /* Stay alive, with the buffers registered, until the initiator hangs up. */
  char sink[64];
  while (!bad && read(fd, sink, sizeof sink) > 0) {
  }
  close(fd);
  close(srv);
  unlink(opt.socket_path);
  for (size_t i = 0; i < nt; i++) {
    bench_xport_unregister(x, bufs[i].ptr, bufs[i].len);
    buffer_release(&bufs[i]);
  }
  bench_xport_close(x);
  fprintf(stderr, "sunrise_link_bench: initiator done, target exiting\n");
  return 0;
}

static int read_line(FILE *f, char *buf, size_t len) {
  if (fgets(buf, (int)len, f) == NULL) return -1;
  buf[strcspn(buf, "\n")] = '\0';
  return 0;
}

static int run_initiator(void) {
  int fd = -1;
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", opt.socket_path);
  for (int attempt = 0; attempt < 100; attempt++) {
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) break;
    if (fd >= 0) close(fd);
    fd = -1;
    usleep(50000);
  }
  if (fd < 0) die("cannot connect to the target at %s (is it running?)", opt.socket_path);
  FILE *f = fdopen(fd, "r");
  if (f == NULL) die("fdopen failed");
  static bench_remote_segment remote;
  memset(&remote, 0, sizeof remote);
  char line[1024];
  while (read_line(f, line, sizeof line) == 0 && strcmp(line, "END") != 0) {
    if (strncmp(line, "MACHINE ", 8) == 0) {
      snprintf(remote.machine_id, sizeof remote.machine_id, "%.*s",
               (int)sizeof remote.machine_id - 1, line + 8);
    } else if (strncmp(line, "BUF ", 4) == 0 && remote.count < BENCH_MAX_REMOTE_BUFFERS) {
      bench_remote_buffer *b = &remote.buffers[remote.count];
      unsigned long long base, len;
      char loc[BENCH_LOCATION_LEN], shm[BENCH_SHM_PATH_LEN];
      if (sscanf(line + 4, "%llu %llu %63s %255s", &base, &len, loc, shm) != 4)
        die("malformed line from the target: %s", line);
      b->base = base;
      b->length = len;
      snprintf(b->location, sizeof b->location, "%s", loc);
      snprintf(b->shm_path, sizeof b->shm_path, "%s", strcmp(shm, "-") == 0 ? "" : shm);
      remote.count++;
    }
  }
  size_t nt = max_threads();
  if (remote.count < nt)
    die("the target published %zu buffer(s) but --threads needs %zu", remote.count, nt);
  bench_xport *x = open_xport(&remote);
  buffer locals[256], targets[256];
  uint64_t target_addr[256];
  char shm[BENCH_SHM_PATH_LEN], err[1024];
  enum mem target_mem = MEM_DRAM;
  int target_dev = location_device(remote.buffers[0].location);
  for (size_t i = 0; i < nt; i++) {
    buffer_alloc(&locals[i], opt.local_mem, opt.local_dev, opt.buffer_size);
    if (bench_xport_register(x, locals[i].ptr, locals[i].len, locals[i].location, shm,
                             sizeof shm, err, sizeof err) != 0)
      die("registering the local buffer: %s", err);
    const bench_remote_buffer *rb = &remote.buffers[i];
    if (rb->length < opt.buffer_size)
      die("the target's buffers (%llu bytes) are smaller than --buffer-size",
          (unsigned long long)rb->length);
    target_addr[i] = rb->base;
    /* The baseline and the checks reach the target's memory through our own IPC mapping. */
    memset(&targets[i], 0, sizeof targets[i]);
    if (rb->shm_path[0] == '\0') die("the target's buffer %zu has no IPC handle", i);
    bench_ipc_handle h;
    if (hex_decode(rb->shm_path, (uint8_t *)&h, sizeof h) != 0)
      die("the target's IPC handle is malformed");
    target_mem = MEM_VRAM;
    targets[i].mem = MEM_VRAM;
    targets[i].dev = target_dev;
    targets[i].len = rb->length;
    targets[i].ipc_opened = 1;
    check_rt(rt.SetDevice(target_dev), "tangSetDevice");
    void *p = NULL;
    check_rt(rt.IpcOpenMemHandle(&p, h, 1), "tangIpcOpenMemHandle");
    targets[i].ptr = (uint8_t *)p;
    snprintf(targets[i].location, sizeof targets[i].location, "%s", rb->location);
  }
  opt.target_mem = target_mem;
  fprintf(stderr, "sunrise_link_bench: library %s (%s), runtime %s, target %s\n", opt.lib_path,
          bench_xport_version(x), rt.path, remote.buffers[0].location);
  print_header();
  size_t done = 0;
  enum path path = target_dev == opt.local_dev ? PATH_SAME : PATH_PEER;
  opt.n_paths = 1;
  int failures = run_cases(x, path, path == PATH_SAME ? "ipc" : "ipc-p", locals, targets, 1,
                           target_addr, &done);
  for (size_t i = 0; i < nt; i++) {
    bench_xport_unregister(x, locals[i].ptr, locals[i].len);
    buffer_release(&locals[i]);
    buffer_release(&targets[i]);
  }
  bench_xport_close(x);
  fprintf(stderr, "sunrise_link_bench: %llu remote lookups by the library\n",
          (unsigned long long)remote.lookups);
  fclose(f); /* hangs up: the target exits */
  return failures == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  parse_options(argc, argv);
  bench_machine_id(machine_id, sizeof machine_id);
  load_runtime();
  switch (opt.mode) {
    case MODE_TARGET: return run_target();
    case MODE_INITIATOR: return run_initiator();
    default: return run_single();
  }
}
