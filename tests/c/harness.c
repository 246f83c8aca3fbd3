/*
 * C test harness for libsunrise_link.so, written only against include/sunrise_link.h.
 *
 * It loads the library with dlopen and resolves the plugin table the way TENT's C++ adapter
 * does (dlsym of sunrise_link_transport_plugin_get, then only table slots), allocates and
 * verifies device memory through the library's TENT device plugin, and runs a write/read of
 * device memory across two processes: this program re-executes itself as the target, which
 * registers a buffer and hands its shm_path over a pipe; the initiator reaches it through
 * its own host callbacks.
 *
 * Usage: harness <path to libsunrise_link.so>   (the runtime is found via MC_TANGRT_*).
 * Prints "N passed, 0 failed"; exit status 0 only if every check passed.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sunrise_link.h"

#define BUF_LEN (1u << 20)
#define MACHINE "harness-machine"

static int passed, failed;
static sunrise_link_transport_plugin_t P;
static sunrise_link_device_plugin_t D;
static void *dctx;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (cond) {                                            \
      passed++;                                            \
    } else {                                               \
      failed++;                                            \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, " [last error: %s]\n", P.last_error ? P.last_error() : "?"); \
    }                                                      \
  } while (0)

static void load(const char *path) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
    exit(2);
  }
  int32_t (*get)(sunrise_link_transport_plugin_t *) =
      (int32_t(*)(sunrise_link_transport_plugin_t *))dlsym(h, "sunrise_link_transport_plugin_get");
  int (*reg)(sunrise_link_device_plugin_t *) =
      (int (*)(sunrise_link_device_plugin_t *))dlsym(h, "tent_register_device_plugin");
  if (!get || !reg) {
    fprintf(stderr, "missing entry points in %s\n", path);
    exit(2);
  }
  memset(&P, 0, sizeof P);
  P.struct_size = (uint32_t)sizeof P;
  if (get(&P) != SUNRISE_LINK_OK || reg(&D) != 0) {
    fprintf(stderr, "cannot fill the plugin tables\n");
    exit(2);
  }
  dctx = D.create_plugin();
  if (!dctx) {
    fprintf(stderr, "device plugin: %s\n", P.last_error());
    exit(2);
  }
}

static void *dev_alloc(int dev, size_t len) {
  char loc[32];
  void *p = NULL;
  snprintf(loc, sizeof loc, "cuda:%d", dev);
  if (D.alloc(dctx, &p, len, loc) != 0) return NULL;
  return p;
}

static void fill(void *dev_ptr, size_t len, unsigned seed) {
  unsigned char *h = malloc(len);
  for (size_t i = 0; i < len; i++) h[i] = (unsigned char)(i * 31u + seed);
  if (D.memcpy_sync(dctx, dev_ptr, h, len) != 0) fprintf(stderr, "fill failed\n");
  free(h);
}

/* Number of bytes of dev_ptr[0..len) that differ from the pattern `seed`. */
static size_t mismatches(void *dev_ptr, size_t len, unsigned seed) {
  unsigned char *h = malloc(len);
  size_t bad = 0;
  if (D.memcpy_sync(dctx, h, dev_ptr, len) != 0) {
    free(h);
    return len;
  }
  for (size_t i = 0; i < len; i++) bad += h[i] != (unsigned char)(i * 31u + seed);
  free(h);
  return bad;
}

static int wait_task(sunrise_link_transport_t *t, uint64_t batch, uint64_t id) {
  sunrise_link_task_status_t st = {0, 0, 0};
  for (int i = 0; i < 10000; i++) {
    if (P.task_status_get(t, batch, id, &st) != SUNRISE_LINK_OK) return -1;
    if (st.status != SUNRISE_LINK_TASK_PENDING && st.status != SUNRISE_LINK_TASK_INITIAL)
      return st.status;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return -2;
}

/* ------------------------------------------------------------------ host callbacks */

typedef struct {
  uint64_t base, length;
  char location[64], shm_path[256], machine[256];
  int lookups, notifies;
} remote_t;

static int32_t lookup(void *ud, uint64_t seg, uint64_t addr, uint64_t len, int32_t refresh,
                      sunrise_link_remote_buffer_t *out) {
  remote_t *r = (remote_t *)ud;
  (void)seg;
  (void)refresh;
  __atomic_add_fetch(&r->lookups, 1, __ATOMIC_SEQ_CST);
  if (addr < r->base || addr + len > r->base + r->length) return SUNRISE_LINK_NEEDS_REFRESH_CACHE;
  out->base = r->base;
  out->length = r->length;
  snprintf(out->location, sizeof out->location, "%s", r->location);
  snprintf(out->shm_path, sizeof out->shm_path, "%s", r->shm_path);
  snprintf(out->machine_id, sizeof out->machine_id, "%s", r->machine);
  return SUNRISE_LINK_OK;
}

static void notify(void *ud, uint64_t token) {
  (void)token;
  __atomic_add_fetch(&((remote_t *)ud)->notifies, 1, __ATOMIC_SEQ_CST);
}

static sunrise_link_transport_t *make(remote_t *r) {
  sunrise_link_host_callbacks_t cb;
  memset(&cb, 0, sizeof cb);
  cb.abi_version = SUNRISE_LINK_ABI_VERSION;
  cb.struct_size = (uint32_t)sizeof cb;
  cb.user_data = r;
  cb.lookup_remote_buffer = lookup;
  cb.notify_progress = notify;
  cb.local_machine_id = MACHINE;
  sunrise_link_transport_t *t = NULL;
  if (P.create(&cb, &t) != SUNRISE_LINK_OK) return NULL;
  if (P.install(t, "{\"async_memcpy_threshold\": \"256KiB\"}") != SUNRISE_LINK_OK) {
    fprintf(stderr, "install: %s\n", P.last_error());
    P.destroy(t);
    return NULL;
  }
  return t;
}

/* ------------------------------------------------------------------ target process */

static int target_main(void) {
  sunrise_link_transport_t *t = make(NULL);
  if (!t) return 3;
  void *buf = dev_alloc(0, BUF_LEN);
  if (!buf) return 4;
  fill(buf, BUF_LEN, 7);
  char shm[SUNRISE_LINK_SHM_PATH_LEN];
  if (P.buffer_add(t, buf, BUF_LEN, "cuda:0", shm, sizeof shm) != SUNRISE_LINK_OK) return 5;
  printf("%" PRIu64 " %u cuda:0 %s\n", (uint64_t)(uintptr_t)buf, BUF_LEN, shm);
  fflush(stdout);
  char line[64];
  if (!fgets(line, sizeof line, stdin)) return 6;
  /* The initiator wrote pattern 9 into the second half. */
  size_t bad_first = mismatches(buf, BUF_LEN / 2, 7);
  size_t bad_second = mismatches((char *)buf + BUF_LEN / 2, BUF_LEN / 2, 9);
  printf("%zu %zu\n", bad_first, bad_second);
  fflush(stdout);
  P.buffer_remove(t, buf, BUF_LEN);
  P.destroy(t);
  D.free(dctx, buf, BUF_LEN);
  return 0;
}

/* ------------------------------------------------------------------ checks */

static void check_tables(void) {
  CHECK(P.abi_version == SUNRISE_LINK_ABI_VERSION, "abi_version %u", P.abi_version);
  CHECK(P.struct_size == sizeof P, "struct_size %u", P.struct_size);
  CHECK(strcmp(P.name(), "sunrise_link") == 0, "name %s", P.name());
  CHECK(P.version()[0] != '\0', "version");
  CHECK(P.notification_send == NULL && P.notification_receive == NULL, "notification slots");
  CHECK(strcmp(D.class_name, "cuda") == 0, "device plugin class %s", D.class_name);
  CHECK(D.get_device_count(dctx) >= 2, "device count %d", D.get_device_count(dctx));
  char bus[20];
  CHECK(D.get_device_pci_bus_id(dctx, 0, bus, sizeof bus) == 0, "pci bus id");

}

static void check_old_caller(int32_t (*get)(sunrise_link_transport_plugin_t *)) {
  unsigned char raw[sizeof P];
  memset(raw, 0xAB, sizeof raw);
  sunrise_link_transport_plugin_t *old = (sunrise_link_transport_plugin_t *)(void *)raw;
  size_t old_size = offsetof(sunrise_link_transport_plugin_t, create);
  old->struct_size = (uint32_t)old_size;
  CHECK(get(old) == SUNRISE_LINK_OK, "plugin_get with a short table");
  CHECK(old->struct_size == old_size, "short struct_size kept: %u", old->struct_size);
  CHECK(raw[old_size] == 0xAB, "slot beyond the caller's size untouched");
  old->struct_size = 4;
  CHECK(get(old) == SUNRISE_LINK_INVALID_ARGUMENT, "struct_size 4 rejected");
  CHECK(get(NULL) == SUNRISE_LINK_INVALID_ARGUMENT, "NULL table rejected");
}

static void check_local_copies(void) {
  remote_t none;
  memset(&none, 0, sizeof none);
  sunrise_link_transport_t *t = make(&none);
  CHECK(t != NULL, "create+install");
  if (!t) return;
  sunrise_link_capabilities_t caps;
  CHECK(P.capabilities_get(t, &caps) == SUNRISE_LINK_OK && caps.gpu_to_gpu == 1 &&
            caps.supports_notification == 0,
        "capabilities");
  void *a = dev_alloc(0, BUF_LEN), *b = dev_alloc(0, BUF_LEN), *c = dev_alloc(1, BUF_LEN);
  CHECK(a && b && c, "device alloc");
  char shm[SUNRISE_LINK_SHM_PATH_LEN];
  CHECK(P.buffer_add(t, a, BUF_LEN, "cuda:0", shm, sizeof shm) == SUNRISE_LINK_OK &&
            strlen(shm) == 128,
        "register device buffer, shm_path %zu chars", strlen(shm));
  P.buffer_add(t, b, BUF_LEN, "cuda:0", shm, sizeof shm);
  P.buffer_add(t, c, BUF_LEN, "cuda:1", shm, sizeof shm);
  fill(a, BUF_LEN, 3);
  uint64_t batch = 0;
  CHECK(P.sub_batch_allocate(t, 8, 77, &batch) == SUNRISE_LINK_OK, "allocate");
  sunrise_link_request_t r[3] = {
      {SUNRISE_LINK_OP_WRITE, 0, a, 0, (uint64_t)(uintptr_t)b, 4096},          /* same device, sync */
      {SUNRISE_LINK_OP_WRITE, 0, a, 0, (uint64_t)(uintptr_t)c, BUF_LEN},       /* peer */
      {SUNRISE_LINK_OP_READ, 0, (char *)b + 4096, 0, (uint64_t)(uintptr_t)a + 4096,
       BUF_LEN - 4096}, /* same device, async */
  };
  CHECK(P.submit(t, batch, r, 3) == SUNRISE_LINK_OK, "submit");
  for (uint64_t i = 0; i < 3; i++)
    CHECK(wait_task(t, batch, i) == SUNRISE_LINK_TASK_COMPLETED, "task %" PRIu64, i);
  CHECK(mismatches(b, BUF_LEN, 3) == 0, "same-device bytes");
  CHECK(mismatches(c, BUF_LEN, 3) == 0, "peer bytes");
  uint64_t n = 0;
  CHECK(P.sub_batch_size(t, batch, &n) == SUNRISE_LINK_OK && n == 3, "size %" PRIu64, n);
  CHECK(__atomic_load_n(&none.notifies, __ATOMIC_SEQ_CST) >= 3, "progress notified");
  sunrise_link_stats_t st;
  CHECK(P.stats_get(t, &st) == SUNRISE_LINK_OK &&
            st.paths[SUNRISE_LINK_PATH_SAME_DEVICE].requests == 2 && st.async_requests == 1,
        "stats");
  CHECK(P.submit(t, batch, r, 6) == SUNRISE_LINK_TOO_MANY_REQUESTS, "capacity overflow");
  CHECK(P.sub_batch_free(t, batch) == SUNRISE_LINK_OK, "free");
  sunrise_link_task_status_t ts;
  CHECK(P.task_status_get(t, batch, 0, &ts) == SUNRISE_LINK_INVALID_ARGUMENT &&
            strstr(P.last_error(), "not live") != NULL,
        "stale handle");
  CHECK(P.destroy(t) == SUNRISE_LINK_OK && P.destroy(NULL) == SUNRISE_LINK_OK, "destroy");
  D.free(dctx, a, BUF_LEN);
  D.free(dctx, b, BUF_LEN);
  D.free(dctx, c, BUF_LEN);
}

/* submit_ex from C: a renewal with the first submit, and the tasks it reports completed. */
static void check_submit_ex(void) {
  remote_t none;
  memset(&none, 0, sizeof none);
  sunrise_link_transport_t *t = make(&none);
  CHECK(t != NULL && P.submit_ex != NULL, "create+install, submit_ex slot");
  if (!t || !P.submit_ex) return;
  void *a = dev_alloc(0, BUF_LEN), *c = dev_alloc(1, BUF_LEN);
  char shm[SUNRISE_LINK_SHM_PATH_LEN];
  P.buffer_add(t, a, BUF_LEN, "cuda:0", shm, sizeof shm);
  P.buffer_add(t, c, BUF_LEN, "cuda:1", shm, sizeof shm);
  fill(a, BUF_LEN, 9);
  uint64_t batch = 0;
  CHECK(P.sub_batch_allocate(t, 4, 1, &batch) == SUNRISE_LINK_OK, "allocate");
  sunrise_link_request_t r[2] = {
      {SUNRISE_LINK_OP_WRITE, 0, a, 0, (uint64_t)(uintptr_t)c, BUF_LEN / 2},
      {SUNRISE_LINK_OP_WRITE, 0, (char *)a + BUF_LEN / 2, 0,
       (uint64_t)(uintptr_t)c + BUF_LEN / 2, BUF_LEN / 2},
  };
  sunrise_link_submit_ex_t io;
  memset(&io, 0, sizeof io);
  io.flags = SUNRISE_LINK_SUBMIT_RENEW;
  io.max_size = 2;
  io.progress_token = 5;
  CHECK(P.submit_ex(t, batch, r, 2, &io) == SUNRISE_LINK_OK, "submit_ex with a renewal");
  CHECK(io.sub_batch != 0 && io.sub_batch != batch, "renewed handle");
  CHECK(io.first_task == 0 && io.completed == 2, "first %" PRIu64 ", completed %" PRIu64,
        io.first_task, io.completed);
  CHECK(mismatches(c, BUF_LEN, 9) == 0, "peer bytes");
  io.flags = 0;
  CHECK(P.submit_ex(t, io.sub_batch, r, 1, &io) == SUNRISE_LINK_TOO_MANY_REQUESTS,
        "full after two");
  io.flags = 4;
  CHECK(P.submit_ex(t, io.sub_batch, r, 1, &io) == SUNRISE_LINK_INVALID_ARGUMENT, "bad flags");
  CHECK(P.sub_batch_free(t, io.sub_batch) == SUNRISE_LINK_OK, "free");
  CHECK(P.destroy(t) == SUNRISE_LINK_OK, "destroy");
  D.free(dctx, a, BUF_LEN);
  D.free(dctx, c, BUF_LEN);
}

static void check_two_processes(const char *self, const char *lib) {
  int to_child[2], from_child[2];
  if (pipe(to_child) || pipe(from_child)) {
    CHECK(0, "pipe");
    return;
  }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(to_child[0], 0);
    dup2(from_child[1], 1);
    close(to_child[1]);
    close(from_child[0]);
    execl(self, self, lib, "target", (char *)NULL);
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  FILE *in = fdopen(from_child[0], "r");
  FILE *out = fdopen(to_child[1], "w");
  remote_t r;
  memset(&r, 0, sizeof r);
  unsigned len = 0;
  int got = fscanf(in, "%" SCNu64 " %u %63s %255s", &r.base, &len, r.location, r.shm_path);
  CHECK(got == 4 && strlen(r.shm_path) == 128, "target published its buffer (%d fields)", got);
  r.length = len;
  snprintf(r.machine, sizeof r.machine, "%s", MACHINE);
  sunrise_link_transport_t *t = got == 4 ? make(&r) : NULL;
  if (t) {
    void *mine = dev_alloc(1, BUF_LEN);
    char shm[SUNRISE_LINK_SHM_PATH_LEN];
    P.buffer_add(t, mine, BUF_LEN, "cuda:1", shm, sizeof shm);
    uint64_t batch = 0;
    P.sub_batch_allocate(t, 4, 1, &batch);
    /* READ the whole remote buffer (pattern 7), then WRITE pattern 9 into its second half. */
    sunrise_link_request_t rd = {SUNRISE_LINK_OP_READ, 0, mine, 1, r.base, BUF_LEN};
    CHECK(P.submit(t, batch, &rd, 1) == SUNRISE_LINK_OK, "submit read");
    CHECK(wait_task(t, batch, 0) == SUNRISE_LINK_TASK_COMPLETED, "remote read");
    CHECK(mismatches(mine, BUF_LEN, 7) == 0, "bytes read from the other process");
    fill(mine, BUF_LEN / 2, 9);
    sunrise_link_request_t wr = {SUNRISE_LINK_OP_WRITE, 0, mine, 1, r.base + BUF_LEN / 2,
                                 BUF_LEN / 2};
    CHECK(P.submit(t, batch, &wr, 1) == SUNRISE_LINK_OK, "submit write");
    CHECK(wait_task(t, batch, 1) == SUNRISE_LINK_TASK_COMPLETED, "remote write");
    CHECK(r.lookups == 1, "host asked once, then cached (%d lookups)", r.lookups);
    /* The same buffer seen as another machine's: FAILED with a message. */
    snprintf(r.machine, sizeof r.machine, "elsewhere");
    P.segment_invalidate(t, 1);
    CHECK(P.submit(t, batch, &rd, 1) == SUNRISE_LINK_OK, "submit cross-machine");
    CHECK(wait_task(t, batch, 2) == SUNRISE_LINK_TASK_FAILED, "cross-machine fails");
    char msg[512];
    CHECK(P.task_error_get(t, batch, 2, msg, sizeof msg) == SUNRISE_LINK_OK &&
              strstr(msg, "machine") != NULL,
          "failure message: %s", msg);
    P.sub_batch_free(t, batch);
    P.destroy(t);
    D.free(dctx, mine, BUF_LEN);
  }
  fprintf(out, "verify\n");
  fflush(out);
  size_t bad1 = 1, bad2 = 1;
  CHECK(fscanf(in, "%zu %zu", &bad1, &bad2) == 2, "target verdict");
  CHECK(bad1 == 0, "target's first half unchanged (%zu bad)", bad1);
  CHECK(bad2 == 0, "target received the written bytes (%zu bad)", bad2);
  fclose(out);
  fclose(in);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "target exit status %d", status);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s <libsunrise_link.so> [target]\n", argv[0]);
    return 2;
  }
  load(argv[1]);
  if (argc > 2 && strcmp(argv[2], "target") == 0) return target_main();
  check_tables();
  check_old_caller((int32_t(*)(sunrise_link_transport_plugin_t *))dlsym(
      dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD), "sunrise_link_transport_plugin_get"));
  check_local_copies();
  check_submit_ex();
  check_two_processes(argv[0], argv[1]);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
