/*
 * tang_rt/driver_types.h: enums, structs, typedefs and flag macros of the Tang runtime.
 * Part of the sunrise-link emulated Tang runtime; written from the project's ABI reference
 * (values and layouts as documented there; LP64).
 */
#ifndef TANG_RT_DRIVER_TYPES_H
#define TANG_RT_DRIVER_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "host_defines.h"

/* ------------------------------------------------------------------ errors */

enum tangError {
    tangSuccess = 0,
    tangErrorInvalidValue = 1,
    tangErrorMemoryAllocation = 2,
    tangErrorInitializationError = 3,
    tangErrorDeinitialized = 4,
    tangErrorDeviceRemoved = 5,
    tangErrorDeviceReset = 6,
    tangErrorNotPermitted = 7,
    tangErrorNoSuchFile = 8,
    tangErrorInvalidConfiguration = 9,
    tangErrorNullPointer = 10,
    tangErrorOutOfResources = 11,
    tangErrorInvalidSymbol = 13,
    tangErrorInvalidDevicePointer = 17,
    tangErrorInvalidMemcpyDirection = 21,
    tangErrorInsufficientDriver = 35,
    tangErrorMissingConfiguration = 52,
    tangErrorInvalidDeviceFunction = 98,
    tangErrorNotImplemented = 99,
    tangErrorNoDevice = 100,
    tangErrorInvalidDevice = 101,
    tangErrorInvalidKernelImage = 200,
    tangErrorInvalidContext = 201,
    tangErrorNoKernelImageForDevice = 209,
    tangErrorUnsupportedLimit = 215,
    tangErrorContextAlreadyInUse = 216,
    tangErrorInvalidKernelFile = 218,
    tangErrorFatBinaryNotFound = 300,
    tangErrorFileNotFound = 301,
    tangErrorSharedObjectSymbolNotFound = 302,
    tangErrorSharedObjectInitFailed = 303,
    tangErrorOperatingSystem = 304,
    tangErrorIllegalState = 305,
    tangErrorStreamCaptureUnsupported = 306,
    tangErrorStreamCaptureInvalidated = 307,
    tangErrorStreamCaptureMerge = 308,
    tangErrorStreamCaptureUnmatched = 309,
    tangErrorStreamCaptureUnjoined = 310,
    tangErrorStreamCaptureIsolation = 311,
    tangErrorStreamCaptureImplicit = 312,
    tangErrorStreamCaptureWrongThread = 313,
    tangErrorCapturedEvent = 314,
    tangErrorInvalidResourceHandle = 400,
    tangErrorSymbolNotFound = 500,
    tangErrorNotReady = 600,
    tangErrorIllegalAddress = 700,
    tangErrorLaunchOutOfResources = 701,
    tangErrorLaunchTimeOut = 702,
    tangErrorPeerAccessAlreadyEnabled = 704,
    tangErrorPeerAccessNotEnabled = 705,
    tangErrorHostMemoryAlreadyRegistered = 712,
    tangErrorHostMemoryNotRegistered = 713,
    tangErrorLaunchFailure = 719,
    tangErrorNotSupported = 801,
    tangErrorUnknown = 999,
    tangErrorContextIsDestroyed = 3000,
    tangErrorContextInvalid = 3001,
    tangErrorStreamIsDestroyed = 3002,
    tangErrorStreamInvalid = 3003,
    tangErrorEventIsDestroyed = 3004,
    tangErrorEventInvalid = 3005,
    tangErrorDeviceOutOfMemory = 3006,
    tangErrorDeviceMemoryNotFound = 3007,
    tangErrorPcieFatal = 3012,
    tangErrorPcieNonFatalUnrecovered = 3013,
    tangErrorScpEventNotExist = 3014,
    tangErrorSCPEventRecordFailed = 3015,
    tangErrorSCPCrcPacketFailed = 3016,
    tangErrorSCPDispSendFailed = 3017,
    tangErrorSCPSqWriteFailed = 3018,
    tangErrorUdrcPcieDmaPacketInvalid = 3019,
    tangErrorUdrcMpDmaPacketInvalid = 3020,
    tangErrorUdrcRegPacketInvalid = 3021,
    tangErrorUdrcRegAcessInvalid = 3022,
    tangErrorAissClusterUsrNotAllocated = 3023,
    tangErrorBarrierDestroyed = 3024,
    tangErrorBarrierInvalid = 3025,
    tangErrorDestroyed = 3026,
    tangErrorXdmaC2HAlignMismatch = 3300,
    tangErrorXdmaC2HInvalidMagicStopped = 3301,
    tangErrorXdmaC2HInvalidLen = 3302,
    tangErrorXdmaC2HDecode = 3303,
    tangErrorXdmaC2HSlave = 3304,
    tangErrorXdmaC2HDescUnsupportRequest = 3305,
    tangErrorXdmaC2HDescCompleterAbort = 3306,
    tangErrorXdmaC2HDescParity = 3307,
    tangErrorXdmaC2HDescHeaderEp = 3308,
    tangErrorXdmaC2HDescUnexpectedComp = 3309,
    tangErrorXdmaC2HTimeout = 3310,
    tangErrorXdmaC2HUnknown = 3311,
    tangErrorXdmaH2CAlignMismatch = 3350,
    /* 3351..3365: further XDMA host-to-card errors; their names are not reproduced here. */
    tangErrorXdmaH2CUnknown = 3366,
    tangErrorDriverIoctlFailed = 10000,
};
typedef enum tangError tangError_t;

/* ------------------------------------------------------------------ memory */

typedef enum tangMemcpyKind {
    tangMemcpyHostToHost = 0,
    tangMemcpyHostToDevice = 1,
    tangMemcpyDeviceToHost = 2,
    tangMemcpyDeviceToDevice = 3
    /* tangMemcpyDefault (4) does not exist: Tang has no unified virtual addressing. */
} tangMemcpyKind;

enum tangMemoryType {
    tangMemoryTypeUnregistered = 0,
    tangMemoryTypeHost = 1,
    tangMemoryTypeDevice = 2,
    tangMemoryTypeManaged = 3
};

struct tangPointerAttributes {
    enum tangMemoryType type;
    int device;
    void* devicePointer;
    void* hostPointer;
};

#define tangHostAllocDefault 0x00
#define tangHostAllocPortable 0x01
#define tangHostAllocMapped 0x02
#define tangHostAllocWriteCombined 0x04
#define tangHostAllocMapDeviceMemory 0x100

#define tangHostRegisterDefault 0x00
#define tangHostRegisterPortable 0x01
#define tangHostRegisterMapped 0x02
#define tangHostRegisterIoMemory 0x04
#define tangHostRegisterReadOnly 0x08

/* ------------------------------------------------------------------ IPC */

#define TANG_IPC_MEM_HANDLE_SIZE 64U
#define TANG_IPC_HANDLE_SIZE 64U

typedef struct tangIpcMemHandle_s {
    unsigned long reserved[TANG_IPC_MEM_HANDLE_SIZE / sizeof(unsigned long)];
} tangIpcMemHandle_t;

typedef struct tangIpcEventHandle_s {
    unsigned long reserved[TANG_IPC_HANDLE_SIZE / sizeof(unsigned long)];
} tangIpcEventHandle_t;

#define tangIpcMemLazyEnablePeerAccess 0x01

/* ------------------------------------------------------------------ handles */

typedef struct TAstream_s* tangStream_t;
typedef struct TAevent_s* tangEvent_t;
typedef struct TAdevice_s* tangDevice_t;
typedef struct TActx_s* tangContext_t;
typedef struct TAfunc_s* tangFunction_t;
typedef struct TAgraph_s* tangGraph_t;
typedef struct TAgraphExec_s* tangGraphExec_t;
typedef struct TAgraphNode_s* tangGraphNode_t;

/* ------------------------------------------------------------------ streams and events */

enum tangEventFlags_e {
    tangEventFlagDefault = 0x0,
    tangEventFlagDisableTiming = 0x2,
    tangEventFlagInterprocess = 0x4
};

enum tangEventRecordFlags_e {
    tangEventRecordDefault = 0x000,
    tangEventRecordHW = 0x100,
    tangEventRecordSW = 0x200,
    tangEventRecordBlockingAllowed = 0x400
};

enum tangEventSyncFlags_e {
    tangEventSyncDefault = 0,
    tangEventSyncRecordedAndDone = 1
};

typedef struct tangEventTimestamp {
    uint64_t comp;
    uint64_t comp_sw;
    uint64_t create;
    uint64_t enqueue;
    uint64_t writeq_beg;
    uint64_t writeq_end;
} tangEventTimestamp;

typedef enum tangStreamCaptureMode {
    tangStreamCaptureModeGlobal = 0,
    tangStreamCaptureModeThreadLocal = 1,
    tangStreamCaptureModeRelaxed = 2
} tangStreamCaptureMode;

typedef enum tangStreamCaptureStatus {
    tangStreamCaptureStatusNone = 0,
    tangStreamCaptureStatusActive = 1,
    tangStreamCaptureStatusInvalidated = 2
} tangStreamCaptureStatus;

/* ------------------------------------------------------------------ devices */

typedef enum tangDeviceP2PAttr {
    tangDevP2PAttrPerformanceRank = 1,
    tangDevP2PAttrAccessSupported = 2,
    tangDevP2PAttrNativeAtomicSupported = 3,
    tangDevP2PAttrTangArrayAccessSupported = 4
} tangDeviceP2PAttr;

enum tangLimit {
    tangLimitStackSize = 0,
    tangLimitPrintfFifoSize = 1,
    tangLimitMallocHeapSize = 2,
    tangLimitDevRuntimeSyncDepth = 3,
    tangLimitDevRuntimePendingLaunchCount = 4,
    tangLimitMaxL2FetchGranularity = 5
};

#define tangOccupancyDefault 0x00
#define tangOccupancyDisableCachingOverride 0x01

/* Packed: 540 bytes, no padding. */
typedef struct __attribute__((packed)) tangDeviceProp {
    char name[256];
    char uuid[16];
    uint64_t totalGlobalMem;
    int sharedMemPerBlock;
    int regsPerBlock;
    int warpSize;
    int memPitch;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int clockRate;
    int totalConstMem;
    int multiProcessorCount;
    int maxBlocksPerMultiProcessor;
    int asyncEngineCount;
    int memoryClockRate;
    int memoryBusWidth;
    int l2CacheSize;
    int maxThreadsPerMultiProcessor;
    int globalL1CacheSupported;
    int localL1CacheSupported;
    int sharedMemPerMultiprocessor;
    int regsPerMultiprocessor;
    int streamPrioritiesSupported;
    int concurrentKernels;
    int computePreemptionSupported;
    int kernelExecTimeoutEnabled;
    int ECCEnabled;
    int accessPolicyMaxWindowSize;
    int tccDriver;
    int singleToDoublePrecisionPerfRatio;
    int cooperativeLaunch;
    int cooperativeMultiDeviceLaunch;
    int persistingL2CacheMaxSize;
    int canMapHostMemory;
    int unifiedAddressing;
    int managedMemory;
    int concurrentManagedAccess;
    int directManagedMemAccessFromHost;
    int pageableMemoryAccess;
    int pageableMemoryAccessUsesHostPageTables;
    int canUseHostPointerForRegisteredMem;
    int hostNativeAtomicSupported;
    int canFlushRemoteWrites;
    int gpuOverlap;
    int integrated;
    int maxSharedMemoryPerBlockOptin;
    int gpuDirectRDMASupported;
    int gpuDirectRDMAFlushWritesOptions;
    int gpuDirectRDMAWritesOrdering;
    int major;
    int minor;
    int pciBusID;
    int pciDeviceID;
    int pciDomainID;
    int isMultiGpuBoard;
    int multiGpuBoardGroupID;
    int computeMode;
    int reservedSharedMemoryPerBlock;
    int sparseTangArraySupported;
    int hostRegisterSupported;
    int hostRegisterReadOnlySupported;
    int memoryPoolsSupported;
    int memoryPoolSupportedHandleTypes;
} tangDeviceProp;

#endif /* TANG_RT_DRIVER_TYPES_H */
