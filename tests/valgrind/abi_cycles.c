/*
 * Leak check of libsunrise_link.so through its C ABI, meant to run under valgrind memcheck:
 * several create / install / work / uninstall / destroy cycles, with hostile calls (NULLs,
 * dead handles, bad configs and locations, out-of-range ids), failing and cancelled tasks,
 * asynchronous and striped copies, and a remote buffer of a second transport reached over
 * IPC, so that every allocation path of the library is taken and must be released.
 *
 * Usage: abi_cycles <path to libsunrise_link.so>   (the runtime is found via MC_TANGRT_*).
 * Prints "abi_cycles: N checks passed, 0 failed"; exit status 0 only if every check passed.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sunrise_link.h"

#define LEN (256u << 10)
#define MACHINE "leak-check"
#define SEG 4

static int passed, failed;
static sunrise_link_transport_plugin_t P;
static sunrise_link_device_plugin_t D;
static void *dctx;

#define CHECK(cond, ...)                                                     \
  do {                                                                       \
    if (cond) {                                                              \
      passed++;                                                              \
    } else {                                                                 \
      failed++;                                                              \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                   \
      fprintf(stderr, __VA_ARGS__);                                          \
      fprintf(stderr, " [last error: %s]\n", P.last_error());               \
    }                                                                        \
  } while (0)

typedef struct {
  uint64_t base, length;
  char shm_path[SUNRISE_LINK_SHM_PATH_LEN];
  int logs;
} host_t;

static int32_t lookup(void *ud, uint64_t seg, uint64_t addr, uint64_t len, int32_t refresh,
                      sunrise_link_remote_buffer_t *out) {
  host_t *h = (host_t *)ud;
  (void)refresh;
  if (seg != SEG || addr < h->base || addr - h->base >= h->length || len > h->length)
    return SUNRISE_LINK_NEEDS_REFRESH_CACHE;
  memset(out, 0, sizeof *out);
  out->base = h->base;
  out->length = h->length;
  snprintf(out->location, sizeof out->location, "cuda:1");
  snprintf(out->shm_path, sizeof out->shm_path, "%s", h->shm_path);
  snprintf(out->machine_id, sizeof out->machine_id, MACHINE);
  return SUNRISE_LINK_OK;
}

static void log_cb(void *ud, int32_t level, const char *msg) {
  (void)level;
  (void)msg;
  __atomic_add_fetch(&((host_t *)ud)->logs, 1, __ATOMIC_SEQ_CST);
}

static sunrise_link_transport_t *create(host_t *h) {
  sunrise_link_host_callbacks_t cb;
  memset(&cb, 0, sizeof cb);
  cb.abi_version = SUNRISE_LINK_ABI_VERSION;
  cb.struct_size = (uint32_t)sizeof cb;
  cb.user_data = h;
  cb.lookup_remote_buffer = lookup;
  cb.log = log_cb;
  cb.local_machine_id = MACHINE;
  sunrise_link_transport_t *t = NULL;
  CHECK(P.create(&cb, &t) == SUNRISE_LINK_OK && t, "create");
  return t;
}

static void *dev_alloc(int dev, size_t len) {
  char loc[32];
  void *p = NULL;
  snprintf(loc, sizeof loc, "cuda:%d", dev);
  CHECK(D.alloc(dctx, &p, len, loc) == 0 && p, "device alloc");
  return p;
}

static int wait_task(sunrise_link_transport_t *t, uint64_t b, uint64_t id) {
  sunrise_link_task_status_t st;
  for (int i = 0; i < 20000; i++) {
    if (P.task_status_get(t, b, id, &st) != SUNRISE_LINK_OK) return -1;
    if (st.status != SUNRISE_LINK_TASK_PENDING && st.status != SUNRISE_LINK_TASK_INITIAL)
      return st.status;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return -2;
}

static void hostile(sunrise_link_transport_t *t) {
  char shm[SUNRISE_LINK_SHM_PATH_LEN];
  uint64_t u = 0;
  CHECK(P.install(NULL, NULL) == SUNRISE_LINK_INVALID_ARGUMENT, "install(NULL)");
  CHECK(P.install(t, "{\"worker_threads\": \"many\"}") == SUNRISE_LINK_INVALID_ARGUMENT,
        "bad config");
  CHECK(P.install(t, "{\"runtime_lib_dir\": \"/nonexistent\"}") == SUNRISE_LINK_RUNTIME_ERROR,
        "missing runtime");
  CHECK(P.install(t, "[") == SUNRISE_LINK_INVALID_ARGUMENT, "invalid JSON");
  CHECK(P.sub_batch_allocate(t, 0, 0, &u) == SUNRISE_LINK_INVALID_ARGUMENT, "allocate(0)");
  CHECK(P.sub_batch_free(t, 0x123456789ull) == SUNRISE_LINK_INVALID_ARGUMENT, "free(dead)");
  CHECK(P.task_status_get(t, 7, 0, NULL) == SUNRISE_LINK_INVALID_ARGUMENT, "status(NULL)");
  CHECK(P.buffer_add(t, (void *)0x1000, 16, "cuda:0", shm, sizeof shm) != SUNRISE_LINK_OK,
        "add before install");
  CHECK(P.buffer_remove(t, (void *)0x1000, 16) != SUNRISE_LINK_OK, "remove unknown");
}

static void work(sunrise_link_transport_t *t, sunrise_link_transport_t *owner, host_t *h) {
  char shm[SUNRISE_LINK_SHM_PATH_LEN];
  void *a = dev_alloc(0, LEN), *b = dev_alloc(0, LEN), *c = dev_alloc(1, LEN);
  void *r = dev_alloc(1, LEN);
  unsigned char *host = malloc(LEN);
  memset(host, 0x5a, LEN);
  CHECK(P.buffer_add(t, a, LEN, "cuda:0", shm, sizeof shm) == SUNRISE_LINK_OK, "add a");
  CHECK(P.buffer_add(t, b, LEN, "cuda:0", shm, sizeof shm) == SUNRISE_LINK_OK, "add b");
  CHECK(P.buffer_add(t, c, LEN, "npu:1", shm, sizeof shm) == SUNRISE_LINK_OK, "add c");
  CHECK(P.buffer_add(t, host, LEN, "cpu:0", shm, sizeof shm) == SUNRISE_LINK_OK, "add host");
  CHECK(P.buffer_add(t, a, LEN, "cuda:9", shm, sizeof shm) == SUNRISE_LINK_DEVICE_NOT_FOUND,
        "bad device");
  CHECK(P.buffer_add(t, a, LEN, "rocm:0", shm, sizeof shm) == SUNRISE_LINK_INVALID_ARGUMENT,
        "bad type");
  CHECK(P.buffer_add(owner, r, LEN, "cuda:1", h->shm_path, sizeof h->shm_path) ==
            SUNRISE_LINK_OK,
        "owner add");
  h->base = 0x700000000000ull;
  h->length = LEN;
  P.segment_invalidate(t, SEG);

  uint64_t batch = 0;
  CHECK(P.sub_batch_allocate(t, 64, 1, &batch) == SUNRISE_LINK_OK, "allocate");
  sunrise_link_request_t reqs[] = {
      {SUNRISE_LINK_OP_WRITE, 0, a, 0, (uint64_t)(uintptr_t)b, 4096},          /* sync */
      {SUNRISE_LINK_OP_WRITE, 0, a, 0, (uint64_t)(uintptr_t)b + 8192, 128 << 10}, /* async */
      {SUNRISE_LINK_OP_WRITE, 0, a, 0, (uint64_t)(uintptr_t)c, 128 << 10},        /* striped */
      {SUNRISE_LINK_OP_WRITE, 0, host, 0, (uint64_t)(uintptr_t)c + (128 << 10), 4096},
      {SUNRISE_LINK_OP_READ, 0, host + 8192, 0, (uint64_t)(uintptr_t)a, 64 << 10},
      {SUNRISE_LINK_OP_WRITE, 0, a, SEG, h->base + 4096, 64 << 10},               /* IPC */
      {SUNRISE_LINK_OP_READ, 0, b, SEG, h->base, 4096},                           /* IPC */
      {SUNRISE_LINK_OP_WRITE, 0, a, SEG, h->base + LEN - 8, 16},                  /* fails */
      {SUNRISE_LINK_OP_WRITE, 0, a, 99, 0x10, 16},                                /* fails */
      {7, 0, a, 0, (uint64_t)(uintptr_t)b, 16},                                    /* fails */
      {SUNRISE_LINK_OP_WRITE, 0, (void *)0x10, 0, (uint64_t)(uintptr_t)b, 16},     /* fails */
      {SUNRISE_LINK_OP_WRITE, 0, host, 0, (uint64_t)(uintptr_t)host + 4096, 16},   /* fails */
  };
  size_t n = sizeof reqs / sizeof reqs[0];
  CHECK(P.submit(t, batch, reqs, n) == SUNRISE_LINK_OK, "submit");
  P.task_cancel(t, batch, 1);
  int completed = 0, bad = 0;
  for (size_t i = 0; i < n; i++) {
    int s = wait_task(t, batch, i);
    char msg[256];
    CHECK(P.task_error_get(t, batch, i, msg, sizeof msg) == SUNRISE_LINK_OK, "error_get");
    if (s == SUNRISE_LINK_TASK_COMPLETED || s == SUNRISE_LINK_TASK_CANCELED) {
      completed += i < 7;
    } else if (s == SUNRISE_LINK_TASK_FAILED) {
      bad += i >= 7;
      CHECK(msg[0] != '\0', "failure message of task %zu", i);
    } else {
      CHECK(0, "task %zu ended in state %d", i, s);
    }
  }
  CHECK(completed == 7 && bad == 5, "completed %d, failed as expected %d", completed, bad);
  uint64_t size = 0;
  CHECK(P.sub_batch_size(t, batch, &size) == SUNRISE_LINK_OK && size == n, "size");
  sunrise_link_task_status_t st;
  CHECK(P.task_status_get(t, batch, n, &st) == SUNRISE_LINK_INVALID_ARGUMENT, "id out of range");
  CHECK(P.submit(t, batch, reqs, 1000) == SUNRISE_LINK_TOO_MANY_REQUESTS, "too many");
  sunrise_link_stats_t stats;
  CHECK(P.stats_get(t, &stats) == SUNRISE_LINK_OK && stats.ipc_requests >= 3, "stats");
  CHECK(P.sub_batch_free(t, batch) == SUNRISE_LINK_OK, "free");
  CHECK(P.sub_batch_free(t, batch) == SUNRISE_LINK_INVALID_ARGUMENT, "double free");
  /* A batch left allocated: destroy must release it. */
  CHECK(P.sub_batch_allocate(t, 8, 2, &batch) == SUNRISE_LINK_OK, "allocate");
  CHECK(P.submit(t, batch, reqs, 1) == SUNRISE_LINK_OK, "submit");
  wait_task(t, batch, 0);
  CHECK(P.buffer_remove(t, a, LEN) == SUNRISE_LINK_OK, "remove");
  CHECK(P.buffer_remove(owner, r, LEN) == SUNRISE_LINK_OK, "owner remove");
  /* b, c and host stay registered: uninstall must release them. */
  CHECK(P.uninstall(t) == SUNRISE_LINK_OK && P.uninstall(t) == SUNRISE_LINK_OK, "uninstall");
  D.free(dctx, a, LEN);
  D.free(dctx, b, LEN);
  D.free(dctx, c, LEN);
  D.free(dctx, r, LEN);
  free(host);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s <libsunrise_link.so>\n", argv[0]);
    return 2;
  }
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "dlopen %s: %s\n", argv[1], dlerror());
    return 2;
  }
  int32_t (*get)(sunrise_link_transport_plugin_t *) =
      (int32_t(*)(sunrise_link_transport_plugin_t *))dlsym(lib, "sunrise_link_transport_plugin_get");
  int (*reg)(sunrise_link_device_plugin_t *) =
      (int (*)(sunrise_link_device_plugin_t *))dlsym(lib, "tent_register_device_plugin");
  if (!get || !reg) return 2;
  memset(&P, 0, sizeof P);
  P.struct_size = (uint32_t)sizeof P;
  if (get(&P) != SUNRISE_LINK_OK || reg(&D) != 0) return 2;
  dctx = D.create_plugin();
  if (!dctx) {
    fprintf(stderr, "device plugin: %s\n", P.last_error());
    return 2;
  }
  const char *cfg = "{\"async_memcpy_threshold\": \"64KiB\", \"enable_port_striping\": true, "
                    "\"port_striping_min_size\": \"64KiB\", \"worker_threads\": 3}";
  host_t h;
  memset(&h, 0, sizeof h);
  for (int cycle = 0; cycle < 3; cycle++) {
    sunrise_link_transport_t *t = create(&h), *owner = create(&h);
    if (!t || !owner) return 1;
    hostile(t);
    CHECK(P.install(t, cfg) == SUNRISE_LINK_OK, "install");
    CHECK(P.install(t, cfg) == SUNRISE_LINK_INVALID_ARGUMENT, "double install");
    CHECK(P.install(owner, NULL) == SUNRISE_LINK_OK, "owner install");
    work(t, owner, &h);
    CHECK(P.install(t, cfg) == SUNRISE_LINK_OK, "reinstall");
    if (cycle == 1) {
      /* Destroy while installed, with a live sub-batch. */
      uint64_t b;
      P.sub_batch_allocate(t, 4, 0, &b);
    }
    CHECK(P.destroy(t) == SUNRISE_LINK_OK, "destroy");
    CHECK(P.destroy(owner) == SUNRISE_LINK_OK, "destroy owner");
  }
  CHECK(P.destroy(NULL) == SUNRISE_LINK_OK, "destroy(NULL)");
  D.destroy_plugin(dctx);
  printf("abi_cycles: %d checks passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
