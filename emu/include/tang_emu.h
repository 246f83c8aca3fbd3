/*
 * tang_emu.h: control functions of the sunrise-link emulated Tang runtime. They exist only in
 * the emulator (libtangrt_shared.so built from emu/); code that must also run on the real SDK
 * should look them up with dlsym. See emu/README.md for the configuration schema.
 */
#ifndef TANG_EMU_H
#define TANG_EMU_H

#include "tang_runtime_api.h"

/* What the emulator returns for operations on IPC memory whose exporter freed it (the driver's
 * "IPC memory destroyed"; the runtime enum has no code of its own for it). */
#define TANG_EMU_ERROR_IPC_MEM_DESTROYED tangErrorDestroyed

#ifdef __cplusplus
extern "C" {
#endif

/* Applies a TOML configuration (same schema as the TANG_EMU_CONFIG file); keys present replace
 * their settings, absent keys keep theirs. 0 = applied; tangErrorInvalidValue = does not parse
 * or invalid (reason on stderr); tangErrorNotPermitted = changes the device count or capacity
 * while device memory, IPC mappings, streams or events are live. */
TANGRT_API_PUBLIC int tangEmuConfigure(const char* toml_text);

/* Removes every injected fault (function faults, tangMemcpyPeer unsupported,
 * attributes_need_current_device, removed devices, down links). */
TANGRT_API_PUBLIC void tangEmuClearFaults(void);

/* Calls of a runtime (tang*) or PTML (ptml*) function since start or the last reset. */
TANGRT_API_PUBLIC unsigned long long tangEmuCallCount(const char* function_name);
TANGRT_API_PUBLIC void tangEmuResetCounters(void);
/* Sum of the counters of the runtime API functions (tang*, not tangEmu*, not ptml*). */
TANGRT_API_PUBLIC unsigned long long tangEmuTotalCalls(void);
/* Writes the counters where TANG_EMU_COUNTS_DUMP says (also done at process exit). */
TANGRT_API_PUBLIC void tangEmuDumpCounters(void);

/* Live objects of a kind: "device_alloc", "host_alloc", "stream", "event", "ipc_open";
 * -1 for an unknown kind. */
TANGRT_API_PUBLIC long long tangEmuLiveCount(const char* kind);

#ifdef __cplusplus
}
#endif

#endif /* TANG_EMU_H */
