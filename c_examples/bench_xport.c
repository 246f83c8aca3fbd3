#define _GNU_SOURCE
#include "bench_xport.h"

#include <dlfcn.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "sunrise_link.h"

struct bench_xport {
  void *lib;
  sunrise_link_transport_plugin_t p;
  sunrise_link_transport_t *t;
  sunrise_link_host_callbacks_t cb;
  bench_remote_segment *remote;
  char local_machine[BENCH_MACHINE_ID_LEN];
  uint64_t serial; /* distinct per opened transport: names the sub-batch a thread keeps */
};

void bench_machine_id(char *out, size_t len) {
  char boot[128] = "", mid[128] = "";
  FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
  if (f != NULL) {
    if (fgets(boot, sizeof boot, f) == NULL) boot[0] = '\0';
    fclose(f);
  }
  f = fopen("/etc/machine-id", "r");
  if (f != NULL) {
    if (fgets(mid, sizeof mid, f) == NULL) mid[0] = '\0';
    fclose(f);
  }
  boot[strcspn(boot, "\n")] = '\0';
  mid[strcspn(mid, "\n")] = '\0';
  snprintf(out, len, "%s:%s", boot, mid);
}

/* The host's answer to a remote lookup: the published buffer holding [addr, addr+length). */
static int32_t lookup_remote(void *user_data, uint64_t segment_id, uint64_t addr,
                             uint64_t length, int32_t refresh,
                             sunrise_link_remote_buffer_t *out) {
  (void)refresh; /* the table never changes while the bench runs */
  bench_xport *x = (bench_xport *)user_data;
  bench_remote_segment *seg = x->remote;
  if (seg == NULL || segment_id != 1) return SUNRISE_LINK_INVALID_ARGUMENT;
  __atomic_add_fetch(&seg->lookups, 1, __ATOMIC_RELAXED);
  for (size_t i = 0; i < seg->count; i++) {
    const bench_remote_buffer *b = &seg->buffers[i];
    if (addr >= b->base && addr + length >= addr && addr + length <= b->base + b->length) {
      memset(out, 0, sizeof *out);
      out->base = b->base;
      out->length = b->length;
      snprintf(out->location, sizeof out->location, "%s", b->location);
      snprintf(out->shm_path, sizeof out->shm_path, "%s", b->shm_path);
      snprintf(out->machine_id, sizeof out->machine_id, "%s", seg->machine_id);
      return SUNRISE_LINK_OK;
    }
  }
  return SUNRISE_LINK_ADDRESS_NOT_REGISTERED;
}

static void log_line(void *user_data, int32_t level, const char *msg) {
  (void)user_data;
  if (level <= SUNRISE_LINK_LOG_WARN)
    fprintf(stderr, "sunrise_link[%s]: %s\n", level == SUNRISE_LINK_LOG_ERROR ? "E" : "W", msg);
}

static const char *last_error(const bench_xport *x) {
  const char *s = x->p.last_error != NULL ? x->p.last_error() : NULL;
  return s != NULL ? s : "";
}

bench_xport *bench_xport_open(const char *lib_path, const char *config_json,
                              bench_remote_segment *remote, char *err, size_t err_len) {
  bench_xport *x = (bench_xport *)calloc(1, sizeof *x);
  if (x == NULL) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  x->lib = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
  if (x->lib == NULL) {
    snprintf(err, err_len, "cannot load %s: %s (build it with `cargo build --release`)",
             lib_path, dlerror());
    free(x);
    return NULL;
  }
  int32_t (*get)(sunrise_link_transport_plugin_t *) = NULL;
  *(void **)(&get) = dlsym(x->lib, "sunrise_link_transport_plugin_get");
  if (get == NULL) {
    snprintf(err, err_len, "%s has no sunrise_link_transport_plugin_get", lib_path);
    dlclose(x->lib);
    free(x);
    return NULL;
  }
  static uint64_t serials;
  x->serial = __atomic_add_fetch(&serials, 1, __ATOMIC_RELAXED);
  x->p.struct_size = (uint32_t)sizeof x->p;
  if (get(&x->p) != SUNRISE_LINK_OK || x->p.abi_version < 1 || x->p.create == NULL ||
      x->p.install == NULL || x->p.submit == NULL) {
    snprintf(err, err_len, "%s: unusable plugin table (abi %u)", lib_path, x->p.abi_version);
    dlclose(x->lib);
    free(x);
    return NULL;
  }
  x->remote = remote;
  bench_machine_id(x->local_machine, sizeof x->local_machine);
  x->cb.abi_version = SUNRISE_LINK_ABI_VERSION;
  x->cb.struct_size = (uint32_t)sizeof x->cb;
  x->cb.user_data = x;
  x->cb.lookup_remote_buffer = lookup_remote;
  x->cb.log = log_line;
  x->cb.notify_progress = NULL;
  x->cb.local_machine_id = x->local_machine;
  if (x->p.create(&x->cb, &x->t) != SUNRISE_LINK_OK) {
    snprintf(err, err_len, "creating the transport: %s", last_error(x));
    dlclose(x->lib);
    free(x);
    return NULL;
  }
  if (x->p.install(x->t, config_json) != SUNRISE_LINK_OK) {
    snprintf(err, err_len, "installing the transport: %s", last_error(x));
    x->p.destroy(x->t);
    dlclose(x->lib);
    free(x);
    return NULL;
  }
  return x;
}

void bench_xport_close(bench_xport *x) {
  if (x == NULL) return;
  x->p.uninstall(x->t);
  x->p.destroy(x->t);
  /* The library stays loaded: unloading code that a runtime callback may still reference
   * gains nothing in a benchmark. */
  free(x);
}

int bench_xport_register(bench_xport *x, void *addr, uint64_t len, const char *location,
                         char *shm_path, size_t shm_path_len, char *err, size_t err_len) {
  if (x->p.buffer_add(x->t, addr, len, location, shm_path, shm_path_len) != SUNRISE_LINK_OK) {
    snprintf(err, err_len, "%s", last_error(x));
    return -1;
  }
  return 0;
}

int bench_xport_unregister(bench_xport *x, void *addr, uint64_t len) {
  return x->p.buffer_remove(x->t, addr, len) == SUNRISE_LINK_OK ? 0 : -1;
}

int bench_xport_run_batch(bench_xport *x, const bench_request *reqs, size_t n, int busy_poll,
                          uint64_t timeout_ns, char *err, size_t err_len) {
  sunrise_link_request_t r[4096];
  if (n > 4096) n = 4096;
  for (size_t i = 0; i < n; i++) {
    r[i].opcode = reqs[i].write ? SUNRISE_LINK_OP_WRITE : SUNRISE_LINK_OP_READ;
    r[i].reserved = 0;
    r[i].source = reqs[i].local;
    r[i].target_id = reqs[i].segment;
    r[i].target_offset = reqs[i].remote_addr;
    r[i].length = reqs[i].length;
  }
  /* As TENT's drop-in does with a library of ABI 3: each thread keeps its sub-batch from one
   * batch to the next and has the submit renew it, and the tasks the submit reports completed
   * are not polled. An older library: allocate, submit, poll every task, free. */
  static _Thread_local uint64_t kept_serial, kept;
  int ex = SUNRISE_LINK_CHECK_OP(&x->p, sunrise_link_transport_plugin_t, submit_ex);
  int renew = 0;
  uint64_t batch = 0;
  size_t first_open = 0;
  int rc = 0;
  if (ex && kept_serial == x->serial && kept != 0) {
    batch = kept;
    renew = 1;
  } else if (x->p.sub_batch_allocate(x->t, n, 0, &batch) != SUNRISE_LINK_OK) {
    snprintf(err, err_len, "sub_batch_allocate: %s", last_error(x));
    return -1;
  }
  kept = 0;
  if (ex) {
    sunrise_link_submit_ex_t io;
    memset(&io, 0, sizeof io);
    if (renew) {
      io.flags = SUNRISE_LINK_SUBMIT_RENEW;
      io.max_size = n;
    }
    int32_t s = x->p.submit_ex(x->t, batch, r, n, &io);
    if (io.sub_batch != 0) batch = io.sub_batch;
    if (s != SUNRISE_LINK_OK) {
      snprintf(err, err_len, "submit_ex: %s", last_error(x));
      rc = -1;
    } else {
      first_open = (size_t)io.completed;
    }
  } else if (x->p.submit(x->t, batch, r, n) != SUNRISE_LINK_OK) {
    snprintf(err, err_len, "submit: %s", last_error(x));
    rc = -1;
  }
  uint64_t deadline = bench_now_ns() + timeout_ns;
  unsigned spins = 0;
  while (rc == 0 && first_open < n) {
    sunrise_link_task_status_t st;
    if (x->p.task_status_get(x->t, batch, first_open, &st) != SUNRISE_LINK_OK) {
      snprintf(err, err_len, "task_status_get: %s", last_error(x));
      rc = -1;
      break;
    }
    if (st.status == SUNRISE_LINK_TASK_COMPLETED) {
      first_open++;
      continue;
    }
    if (st.status == SUNRISE_LINK_TASK_FAILED || st.status == SUNRISE_LINK_TASK_CANCELED ||
        st.status == SUNRISE_LINK_TASK_INVALID || st.status == SUNRISE_LINK_TASK_TIMEOUT) {
      char why[512] = "";
      if (x->p.task_error_get != NULL)
        x->p.task_error_get(x->t, batch, first_open, why, sizeof why);
      snprintf(err, err_len, "task %zu ended with status %d: %s", first_open, st.status, why);
      rc = -1;
      break;
    }
    if (++spins % 64 == 0) {
      if (bench_now_ns() > deadline) {
        snprintf(err, err_len, "task %zu still pending after %.1f s", first_open,
                 (double)timeout_ns / 1e9);
        rc = -1;
        break;
      }
      if (!busy_poll) sched_yield();
    }
  }
  if (ex && rc == 0) {
    kept_serial = x->serial;
    kept = batch;
  } else {
    x->p.sub_batch_free(x->t, batch);
  }
  return rc;
}

const char *bench_xport_version(const bench_xport *x) {
  return x->p.version != NULL ? x->p.version() : "?";
}
