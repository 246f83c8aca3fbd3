// C++ test: code written against the SDK headers (templates, default arguments, extern "C")
// compiles unchanged against the emulator headers and runs.
#include <cstdio>
#include <cstring>
#include <vector>

#include <ptml.h>
#include <tang_emu.h>
#include <tang_runtime_api.h>

static int failures = 0;
static int passed = 0;

#define EXPECT(cond)                                                                  \
    do {                                                                              \
        if (cond) {                                                                   \
            passed++;                                                                 \
        } else {                                                                      \
            std::fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);  \
            failures++;                                                               \
        }                                                                             \
    } while (0)

int main() {
    EXPECT(tangSetDevice(0) == tangSuccess);
    float* dev = nullptr;  // the template overload casts to void**
    const size_t n = 1024;
    EXPECT(tangMalloc(&dev, n * sizeof(float)) == tangSuccess);
    std::vector<float> a(n), b(n);
    for (size_t i = 0; i < n; i++) a[i] = static_cast<float>(i) * 0.5f;
    tangStream_t s = nullptr;
    EXPECT(tangStreamCreateWithFlags(&s, tangStreamNonBlocking) == tangSuccess);
    EXPECT(tangMemcpyAsync(dev, a.data(), n * sizeof(float), tangMemcpyHostToDevice, s) == tangSuccess);
    EXPECT(tangStreamSynchronize(s) == tangSuccess);
    EXPECT(tangMemcpyAsync(b.data(), dev, n * sizeof(float), tangMemcpyDeviceToHost) == tangSuccess);  // default stream
    EXPECT(tangStreamSynchronize(nullptr) == tangSuccess);
    EXPECT(std::memcmp(a.data(), b.data(), n * sizeof(float)) == 0);
    tangEvent_t ev = nullptr;
    EXPECT(tangEventCreateWithFlags(&ev, tangEventDisableTiming) == tangSuccess);
    EXPECT(tangEventRecord(ev) == tangSuccess);  // default stream argument
    EXPECT(tangEventSynchronize(ev) == tangSuccess);
    EXPECT(tangEventQuery(ev) == tangSuccess);
    EXPECT(tangEventDestroy(ev) == tangSuccess);
    EXPECT(tangStreamDestroy(s) == tangSuccess);

    tangIpcMemHandle_t h;
    static_assert(sizeof(h) == 64, "IPC handle is 64 bytes");
    static_assert(sizeof(tangDeviceProp) == 540, "tangDeviceProp is packed, 540 bytes");
    static_assert(sizeof(ptPhyTopo_t) == 10, "ptPhyTopo_t is 10 bytes");
    EXPECT(tangIpcGetMemHandle(&h, dev) == tangSuccess);
    EXPECT(tangSetDevice(2) == tangSuccess);
    float* opened = nullptr;
    EXPECT(tangIpcOpenMemHandle(&opened, h, tangIpcMemLazyEnablePeerAccess) == tangSuccess);
    struct tangPointerAttributes at;
    std::memset(&at, 0, sizeof at);
    EXPECT(tangPointerGetAttributes(&at, opened) == tangSuccess);
    EXPECT(at.type == tangMemoryTypeDevice && at.device == 2);
    EXPECT(tangIpcCloseMemHandle(opened) == tangSuccess);
    EXPECT(tangSetDevice(0) == tangSuccess);
    EXPECT(tangFree(dev) == tangSuccess);

    int* pinned = nullptr;
    EXPECT(tangMallocHost(&pinned, 64) == tangSuccess);
    EXPECT(tangFreeHost(pinned) == tangSuccess);
    EXPECT(std::strcmp(tangGetErrorName(tangErrorNotReady), "tangErrorNotReady") == 0);
    EXPECT(std::strlen(tangGetErrorString(tangErrorInvalidValue)) > 0);

    ptmlReturn_t r = ptmlInit();
    EXPECT(r == PTML_SUCCESS);
    int count = 0;
    EXPECT(ptmlDeviceGetCount(&count) == PTML_SUCCESS && count > 0);
    ptmlUninit();
    EXPECT(ptmlDeviceGetCount(&count) == PTML_ERROR_UNINITIALIZED);
    EXPECT(tangEmuLiveCount("device_alloc") == 0 && tangEmuLiveCount("ipc_open") == 0);

    std::printf("%d passed, %d failed\n", passed, failures);
    return failures == 0 ? 0 : 1;
}
