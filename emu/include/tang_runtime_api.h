/*
 * tang_runtime_api.h: Tang runtime API (libtangrt_shared.so), the subset the sunrise-link
 * emulated runtime provides. Written from the project's ABI reference: same names, parameter
 * types and order, return types and values as the vendor SDK for this subset.
 */
#ifndef TANG_RUNTIME_API_H
#define TANG_RUNTIME_API_H

#include <stddef.h>
#include <stdint.h>

#include "tang_rt/driver_types.h"
#include "tang_rt/host_defines.h"

/* Stream creation flags */
#define tangStreamDefault 0x00
#define tangStreamNonBlocking 0x01

/* Event creation flags */
#define tangEventDefault 0x0
#define tangEventBlockingSync 0x1
#define tangEventDisableTiming 0x2
#define tangEventInterprocess 0x4

/* Stream wait-event flags */
#define tangEventWaitDefault 0x00
#define tangEventWaitExternal 0x01

enum stream_priority {
    priority_high = -2,
    priority_middle = -1,
    priority_normal = 0,
    priority_low = 1
};

#ifdef __cplusplus
extern "C" {
#endif

/* ---- devices */
TANGRT_API_PUBLIC tangError_t tangGetDeviceCount(int* count);
TANGRT_API_PUBLIC tangError_t tangSetDevice(int deviceId);
TANGRT_API_PUBLIC tangError_t tangGetDevice(int* deviceId);
TANGRT_API_PUBLIC tangError_t tangDeviceSynchronize(void);
TANGRT_API_PUBLIC tangError_t tangDeviceGetPCIBusId(char* pciBusId, int len, int deviceId);
TANGRT_API_PUBLIC tangError_t tangDeviceGetByPCIBusId(int* device, const char* pciBusId);
TANGRT_API_PUBLIC tangError_t tangGetDeviceProperties(tangDeviceProp* props, int deviceId);
TANGRT_API_PUBLIC tangError_t tangMemGetInfo(size_t* free, size_t* total);
TANGRT_API_PUBLIC tangError_t tangRuntimeGetVersion(int* runtimeVersion);
TANGRT_API_PUBLIC tangError_t tangDriverGetVersion(int* driverVersion);

/* ---- peers */
TANGRT_API_PUBLIC tangError_t tangDeviceCanAccessPeer(int* canAccessPeer, int device, int peerDevice);
TANGRT_API_PUBLIC tangError_t tangDeviceEnablePeerAccess(int peerDevice, unsigned int flags __dparm(0));
TANGRT_API_PUBLIC tangError_t tangDeviceDisablePeerAccess(int peerDevice);
TANGRT_API_PUBLIC tangError_t tangDeviceGetP2PAttribute(int* value, tangDeviceP2PAttr attr, int srcDevice,
                                                        int dstDevice);
TANGRT_API_PUBLIC tangError_t tangDeviceGetPeerPointer(int srcDevice, int port, void* peerAddr, void** accessAddr);

/* ---- device memory */
TANGRT_API_PUBLIC tangError_t tangMalloc(void** pptr, size_t sizeBytes);
TANGRT_API_PUBLIC tangError_t tangFree(void* ptr);
TANGRT_API_PUBLIC tangError_t tangMemset(void* dst, int value, size_t sizeBytes);
TANGRT_API_PUBLIC tangError_t tangPointerGetAttributes(struct tangPointerAttributes* attributes, const void* ptr);

/* ---- copies */
TANGRT_API_PUBLIC tangError_t tangMemcpy(void* dst, const void* src, size_t sizeBytes, tangMemcpyKind kind);
TANGRT_API_PUBLIC tangError_t tangMemcpyAsync(void* dst, const void* src, size_t sizeBytes, tangMemcpyKind kind,
                                              tangStream_t stream __dparm(0));
TANGRT_API_PUBLIC tangError_t tangMemcpyPeer(void* dst, int dstDevice, const void* src, int srcDevice, size_t count);
TANGRT_API_PUBLIC tangError_t tangMemcpyPeer_v2(void* dst, int dstDevice, const void* src, int srcDevice,
                                                size_t count);
TANGRT_API_PUBLIC tangError_t tangMemcpyPeerAsync(void* dst, int dstDevice, const void* src, int srcDevice,
                                                  size_t count, tangStream_t stream __dparm(0));
TANGRT_API_PUBLIC tangError_t tangMemcpyPeerAsync_v2(void* dst, int dstDevice, const void* src, int srcDevice,
                                                     size_t count, tangStream_t stream __dparm(0));

/* ---- pinned and mapped host memory */
TANGRT_API_PUBLIC tangError_t tangHostAlloc(void** pptr, size_t sizeBytes, unsigned int flags);
TANGRT_API_PUBLIC tangError_t tangMallocHost(void** pptr, size_t sizeBytes);
TANGRT_API_PUBLIC tangError_t tangFreeHost(void* ptr);
TANGRT_API_PUBLIC tangError_t tangHostGetDevicePointer(void** pDevice, void* pHost, unsigned int flags);

/* ---- streams */
TANGRT_API_PUBLIC tangError_t tangStreamCreate(tangStream_t* stream);
TANGRT_API_PUBLIC tangError_t tangStreamCreateWithFlags(tangStream_t* stream, unsigned int flags);
TANGRT_API_PUBLIC tangError_t tangStreamDestroy(tangStream_t stream);
TANGRT_API_PUBLIC tangError_t tangStreamSynchronize(tangStream_t stream);
TANGRT_API_PUBLIC tangError_t tangStreamQuery(tangStream_t stream);
TANGRT_API_PUBLIC tangError_t tangStreamWaitEvent(tangStream_t stream, tangEvent_t event,
                                                  unsigned int flag __dparm(0));

/* ---- events */
TANGRT_API_PUBLIC tangError_t tangEventCreate(tangEvent_t* event);
TANGRT_API_PUBLIC tangError_t tangEventCreateWithFlags(tangEvent_t* event, unsigned flag);
TANGRT_API_PUBLIC tangError_t tangEventRecord(tangEvent_t event, tangStream_t stream __dparm(0));
TANGRT_API_PUBLIC tangError_t tangEventRecordWithFlags(tangEvent_t event, tangStream_t stream __dparm(0),
                                                       unsigned int flags __dparm(0));
TANGRT_API_PUBLIC tangError_t tangEventQuery(tangEvent_t event);
TANGRT_API_PUBLIC tangError_t tangEventSynchronize(tangEvent_t event);
TANGRT_API_PUBLIC tangError_t tangEventSynchronizeWithFlags(tangEvent_t event, unsigned int flags __dparm(0));
TANGRT_API_PUBLIC tangError_t tangEventDestroy(tangEvent_t event);
TANGRT_API_PUBLIC tangError_t tangEventElapsedTime(float* ms, tangEvent_t start, tangEvent_t stop);

/* ---- IPC */
TANGRT_API_PUBLIC tangError_t tangIpcGetMemHandle(tangIpcMemHandle_t* pHandle, void* devPtr);
TANGRT_API_PUBLIC tangError_t tangIpcOpenMemHandle(void** devPtr, tangIpcMemHandle_t handle, unsigned int flags);
TANGRT_API_PUBLIC tangError_t tangIpcCloseMemHandle(void* devPtr);

/* ---- errors */
TANGRT_API_PUBLIC tangError_t tangGetLastError(void);
TANGRT_API_PUBLIC tangError_t tangPeekAtLastError(void);
TANGRT_API_PUBLIC const char* tangGetErrorName(tangError_t error);
TANGRT_API_PUBLIC const char* tangGetErrorString(tangError_t error);

#ifdef __cplusplus
} /* extern "C" */

/* C++ conveniences: cast to void** and forward (no extra exported symbols). */
template <class T>
static inline tangError_t tangMalloc(T** pptr, size_t sizeBytes) {
    return tangMalloc(reinterpret_cast<void**>(pptr), sizeBytes);
}
template <class T>
static inline tangError_t tangMallocHost(T** pptr, size_t sizeBytes) {
    return tangMallocHost(reinterpret_cast<void**>(pptr), sizeBytes);
}
template <class T>
static inline tangError_t tangHostAlloc(T** pptr, size_t sizeBytes, unsigned int flags) {
    return tangHostAlloc(reinterpret_cast<void**>(pptr), sizeBytes, flags);
}
template <class T>
static inline tangError_t tangHostGetDevicePointer(T** pDevice, void* pHost, unsigned int flags) {
    return tangHostGetDevicePointer(reinterpret_cast<void**>(pDevice), pHost, flags);
}
template <class T>
static inline tangError_t tangIpcOpenMemHandle(T** devPtr, tangIpcMemHandle_t handle, unsigned int flags) {
    return tangIpcOpenMemHandle(reinterpret_cast<void**>(devPtr), handle, flags);
}
#endif

#endif /* TANG_RUNTIME_API_H */
