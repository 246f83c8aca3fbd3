/* The benchmark's own view of the Tang runtime: the few calls it needs to allocate buffers,
 * fill and check them, and to run the raw-copy baseline. Resolved with dlsym from the same
 * libtangrt_shared.so the library loads (same lookup order), so no SDK header is needed. */
#ifndef SUNRISE_LINK_BENCH_TANG_H
#define SUNRISE_LINK_BENCH_TANG_H

#include <stddef.h>
#include <stdint.h>

enum {
  BENCH_H2H = 0,
  BENCH_H2D = 1,
  BENCH_D2H = 2,
  BENCH_D2D = 3,
};

/* struct tangPointerAttributes: 24 bytes. */
typedef struct bench_pointer_attributes {
  int type;
  int device;
  void *device_pointer;
  void *host_pointer;
} bench_pointer_attributes;

typedef struct bench_ipc_handle {
  unsigned long reserved[8];
} bench_ipc_handle;

typedef struct bench_tang {
  void *lib;
  void *ptml;
  char path[4096];
  int (*GetDeviceCount)(int *);
  int (*SetDevice)(int);
  int (*GetDevice)(int *);
  int (*Malloc)(void **, size_t);
  int (*Free)(void *);
  int (*MallocHost)(void **, size_t);
  int (*FreeHost)(void *);
  int (*Memcpy)(void *, const void *, size_t, int);
  int (*MemcpyPeer)(void *, int, const void *, int, size_t);
  int (*PointerGetAttributes)(bench_pointer_attributes *, const void *);
  int (*IpcOpenMemHandle)(void **, bench_ipc_handle, unsigned int);
  int (*IpcCloseMemHandle)(void *);
  const char *(*GetErrorString)(int);
  /* Emulator-only; NULL on a real runtime. */
  unsigned long long (*EmuTotalCalls)(void);
  int (*EmuConfigure)(const char *);
} bench_tang;

/* Finds and loads libtangrt_shared.so as the library does (MC_TANGRT_LIB_DIR, else
 * MC_TANGRT_ROOT or /usr/local/tangrt + /lib/<MC_TANGRT_LIB_ARCH or linux-x86_64>/, else
 * <root>/lib/). Writes a message into err on failure. */
int bench_tang_load(bench_tang *t, char *err, size_t err_len);

/* Resolves a runtime library path by that order into out; returns 0 when found. */
int bench_tang_resolve(const char *soname, char *out, size_t len);

const char *bench_tang_error(const bench_tang *t, int code);

#endif
