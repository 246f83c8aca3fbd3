/*
 * ptml.h: Tang management library (libptml_shared.so), the subset the sunrise-link emulated
 * PTML provides. Written from the project's ABI reference.
 */
#ifndef PTML_H
#define PTML_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define PTML_API __attribute__((visibility("default")))
#else
#define PTML_API
#endif

#define TA_PT_NUM_MAX 128
#define ALLPORTS 0x3ff

typedef enum ptmlReturn_enum {
    PTML_SUCCESS = 0,
    PTML_ERROR_UNINITIALIZED = 1,
    PTML_ERROR_INVALID_ARGUMENT = 2,
    PTML_ERROR_ALREADY_INITIALIZED = 3,
    PTML_ERROR_INSUFFICIENT_SIZE = 4,
    PTML_ERROR_IN_USE = 5,
    PTML_ERROR_DRIVER_NOT_LOADED = 6,
    PTML_ERROR_DEVICE_NOT_FOUND = 7,
    PTML_ERROR_EVENT_TIMEOUT = 8,
    PTML_ERROR_UNKNOWN = 9
} ptmlReturn_t;

/* A device index, not an opaque handle. */
typedef int ptmlDevice_t;

enum c2c_port_index {
    C2C0_0 = 0,
    C2C0_1 = 1,
    C2C1_0 = 2,
    C2C1_1 = 3,
    C2C2_0 = 4,
    C2C2_1 = 5,
    C2C3_0 = 6,
    C2C3_1 = 7,
    C2C4_0 = 8,
    C2C4_1 = 9,
    PCIE = 10
};

/* One PTLink port as seen by ptmlPtlinkPhytopoDetect: 10 bytes, no padding. */
typedef struct ptPhyTopo {
    unsigned char local_chipid;
    unsigned char local_port;
    unsigned char remote_chipid;
    unsigned char remote_port;
    unsigned char link_status;
    unsigned char isBif;
    unsigned char max_speed;
    unsigned char cur_speed;
    unsigned char max_bandwidth;
    unsigned char cur_bandwidth;
} ptPhyTopo_t;

typedef struct ptMemory_st {
    size_t total;
    size_t used;
    size_t free;
} ptMemory_t;

typedef struct ptPciInfo_st {
    int domain;
    int bus;
    int device;
    int vendor;
    int pciSubSystemId;
    char busId[32];
    unsigned int maxLinkSpeed;
    unsigned int curLinkSpeed;
    unsigned int maxLinkWidth;
    unsigned int curLinkWidth;
    unsigned int maxBandwidth;
    unsigned int curBandwidth;
} ptPciInfo_t;

#ifdef __cplusplus
extern "C" {
#endif

PTML_API ptmlReturn_t ptmlInit(void);
PTML_API void ptmlUninit(void);
PTML_API ptmlReturn_t __ptmlUinit(void);
PTML_API ptmlReturn_t ptmlDeviceGetCount(int* devCount);
PTML_API ptmlReturn_t ptmlPtlinkEnableAll(void);
PTML_API ptmlReturn_t ptmlPtlinkDisableAll(void);
PTML_API ptmlReturn_t ptmlPtlinkPhytopoDetect(ptmlDevice_t device, uint32_t size, void* buffer);
PTML_API ptmlReturn_t ptmlPtlinkGetConnectRelation(ptmlDevice_t device1, ptmlDevice_t device2, int* status);
PTML_API ptmlReturn_t ptmlGetPtlinkStatus(ptmlDevice_t device, int port, int* status);
PTML_API const char* ptmlGetErrorCodeToDescription(int errorCode);
PTML_API ptmlReturn_t ptmlSystemGetDriverVersion(char* version, unsigned int length);
PTML_API ptmlReturn_t ptmlSystemGetTangVersion(int* version);
PTML_API ptmlReturn_t ptmlSystemGetTangVersionForSmi(char* version, unsigned int length);
PTML_API ptmlReturn_t ptmlDeviceGetNodePath(ptmlDevice_t device, char* path);

#ifdef __cplusplus
}
#endif

#endif /* PTML_H */
