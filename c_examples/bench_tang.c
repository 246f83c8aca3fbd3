#define _GNU_SOURCE
#include "bench_tang.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void strip_trailing_slashes(char *s) {
  size_t n = strlen(s);
  while (n > 1 && s[n - 1] == '/') s[--n] = '\0';
}

int bench_tang_resolve(const char *soname, char *out, size_t len) {
  const char *dir = getenv("MC_TANGRT_LIB_DIR");
  char base[2048];
  if (dir != NULL && *dir != '\0') {
    snprintf(base, sizeof base, "%s", dir);
    strip_trailing_slashes(base);
    snprintf(out, len, "%s/%s", base, soname);
    return access(out, R_OK) == 0 ? 0 : -1;
  }
  const char *root = getenv("MC_TANGRT_ROOT");
  if (root == NULL || *root == '\0') root = "/usr/local/tangrt";
  const char *arch = getenv("MC_TANGRT_LIB_ARCH");
  if (arch == NULL || *arch == '\0') arch = "linux-x86_64";
  snprintf(base, sizeof base, "%s", root);
  strip_trailing_slashes(base);
  snprintf(out, len, "%s/lib/%s/%s", base, arch, soname);
  if (access(out, R_OK) == 0) return 0;
  snprintf(out, len, "%s/lib/%s", base, soname);
  return access(out, R_OK) == 0 ? 0 : -1;
}

#define BIND(field, name)                                                              \
  do {                                                                                 \
    *(void **)(&t->field) = dlsym(t->lib, name);                                       \
    if (t->field == NULL) {                                                            \
      snprintf(err, err_len, "symbol %s missing from %s", name, t->path);              \
      return -1;                                                                       \
    }                                                                                  \
  } while (0)

int bench_tang_load(bench_tang *t, char *err, size_t err_len) {
  memset(t, 0, sizeof(*t));
  if (bench_tang_resolve("libtangrt_shared.so", t->path, sizeof t->path) != 0) {
    snprintf(err, err_len,
             "libtangrt_shared.so not found (looked at %s); set MC_TANGRT_ROOT or "
             "MC_TANGRT_LIB_DIR, or run `make emu` for the emulated runtime",
             t->path);
    return -1;
  }
  t->lib = dlopen(t->path, RTLD_NOW | RTLD_LOCAL);
  if (t->lib == NULL) {
    snprintf(err, err_len, "dlopen(%s): %s", t->path, dlerror());
    return -1;
  }
  BIND(GetDeviceCount, "tangGetDeviceCount");
  BIND(SetDevice, "tangSetDevice");
  BIND(GetDevice, "tangGetDevice");
  BIND(Malloc, "tangMalloc");
  BIND(Free, "tangFree");
  BIND(MallocHost, "tangMallocHost");
  BIND(FreeHost, "tangFreeHost");
  BIND(Memcpy, "tangMemcpy");
  BIND(MemcpyPeer, "tangMemcpyPeer");
  BIND(PointerGetAttributes, "tangPointerGetAttributes");
  BIND(IpcOpenMemHandle, "tangIpcOpenMemHandle");
  BIND(IpcCloseMemHandle, "tangIpcCloseMemHandle");
  BIND(GetErrorString, "tangGetErrorString");
  *(void **)(&t->EmuTotalCalls) = dlsym(t->lib, "tangEmuTotalCalls");
  *(void **)(&t->EmuConfigure) = dlsym(t->lib, "tangEmuConfigure");
  return 0;
}

const char *bench_tang_error(const bench_tang *t, int code) {
  if (t->GetErrorString != NULL) {
    const char *s = t->GetErrorString(code);
    if (s != NULL) return s;
  }
  return "unknown Tang error";
}
