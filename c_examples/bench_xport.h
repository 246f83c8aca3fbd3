/* The benchmark's use of libsunrise_link.so: dlopen it and drive it only through the
 * plugin table it hands out, exactly as TENT's C++ adapter does. */
#ifndef SUNRISE_LINK_BENCH_XPORT_H
#define SUNRISE_LINK_BENCH_XPORT_H

#include <stddef.h>
#include <stdint.h>

#define BENCH_MAX_REMOTE_BUFFERS 256
#define BENCH_SHM_PATH_LEN 256
#define BENCH_LOCATION_LEN 64
#define BENCH_MACHINE_ID_LEN 128

/* A buffer the target published: what TENT would find in the remote segment's metadata. */
typedef struct bench_remote_buffer {
  uint64_t base;
  uint64_t length;
  char location[BENCH_LOCATION_LEN];
  char shm_path[BENCH_SHM_PATH_LEN];
} bench_remote_buffer;

typedef struct bench_remote_segment {
  char machine_id[BENCH_MACHINE_ID_LEN];
  size_t count;
  bench_remote_buffer buffers[BENCH_MAX_REMOTE_BUFFERS];
  uint64_t lookups; /* how often the library asked (cache misses + refreshes) */
} bench_remote_segment;

typedef struct bench_xport bench_xport;

typedef struct bench_request {
  int write; /* 1 = WRITE local -> remote, 0 = READ remote -> local */
  void *local;
  uint64_t segment; /* 0 = local segment */
  uint64_t remote_addr;
  uint64_t length;
} bench_request;

/* Loads the library at lib_path, creates a transport with this process's host callbacks
 * (remote lookups answered from `remote`, may be NULL) and installs it with config_json. */
bench_xport *bench_xport_open(const char *lib_path, const char *config_json,
                              bench_remote_segment *remote, char *err, size_t err_len);
void bench_xport_close(bench_xport *x);

/* Registers a buffer; shm_path receives what TENT would publish (may be empty). */
int bench_xport_register(bench_xport *x, void *addr, uint64_t len, const char *location,
                         char *shm_path, size_t shm_path_len, char *err, size_t err_len);
int bench_xport_unregister(bench_xport *x, void *addr, uint64_t len);

/* As TENT does per batch: allocates a sub-batch for n tasks, submits the n requests in one
 * call, polls every task until it is terminal (or timeout_ns passes), frees the sub-batch.
 * With busy_poll the polling thread never yields its core (as TENT's tebench and serving
 * code poll); otherwise it calls sched_yield every 64 polls. Returns 0 when all completed,
 * else -1 with a message in err. */
int bench_xport_run_batch(bench_xport *x, const bench_request *reqs, size_t n, int busy_poll,
                          uint64_t timeout_ns, char *err, size_t err_len);

const char *bench_xport_version(const bench_xport *x);

/* This machine's identity as TENT computes it (boot id + machine id). */
void bench_machine_id(char *out, size_t len);

#endif
