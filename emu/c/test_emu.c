/*
 * C tests of the emulated Tang runtime and PTML, written only against the emulator headers.
 * Usage: test_emu [path/to/ipc_demo]   (with the path, the two-process IPC exchange runs too)
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ptml.h>
#include <tang_emu.h>
#include <tang_runtime_api.h>

extern char** environ;

static int failures;

#define EXPECT(cond)                                                       \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "  %s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                    \
            return;                                                        \
        }                                                                  \
    } while (0)

#define EXPECT_CODE(call, code) EXPECT((int)(call) == (int)(code))

static void test_devices(void) {
    int n = -1, d = -1;
    EXPECT_CODE(tangGetDeviceCount(&n), tangSuccess);
    EXPECT(n >= 2);
    EXPECT_CODE(tangSetDevice(1), tangSuccess);
    EXPECT_CODE(tangGetDevice(&d), tangSuccess);
    EXPECT(d == 1);
    EXPECT_CODE(tangSetDevice(n), tangErrorInvalidDevice);
    EXPECT_CODE(tangGetLastError(), tangErrorInvalidDevice);
    EXPECT_CODE(tangGetLastError(), tangSuccess);
    char bus[32];
    EXPECT_CODE(tangDeviceGetPCIBusId(bus, sizeof bus, 0), tangSuccess);
    EXPECT(strlen(bus) > 0);
    tangDeviceProp p;
    EXPECT_CODE(tangGetDeviceProperties(&p, 0), tangSuccess);
    EXPECT(p.totalGlobalMem > 0);
    int v = 0;
    EXPECT_CODE(tangRuntimeGetVersion(&v), tangSuccess);
    EXPECT(v > 0);
    EXPECT_CODE(tangSetDevice(0), tangSuccess);
}

static void test_memcpy_kinds(void) {
    enum { N = 1 << 16 };
    static unsigned char a[N], b[N];
    void *d0 = NULL, *d1 = NULL;
    EXPECT_CODE(tangSetDevice(0), tangSuccess);
    EXPECT_CODE(tangMalloc(&d0, N), tangSuccess);
    EXPECT_CODE(tangMalloc(&d1, N), tangSuccess);
    for (int i = 0; i < N; i++) a[i] = (unsigned char)(i * 7);
    EXPECT_CODE(tangMemcpy(d0, a, N, tangMemcpyHostToDevice), tangSuccess);
    EXPECT_CODE(tangMemcpy(d1, d0, N, tangMemcpyDeviceToDevice), tangSuccess);
    EXPECT_CODE(tangMemcpy(b, d1, N, tangMemcpyDeviceToHost), tangSuccess);
    EXPECT(memcmp(a, b, N) == 0);
    EXPECT_CODE(tangMemcpy(b, a, N, tangMemcpyHostToHost), tangSuccess);
    /* kinds that contradict the pointers */
    EXPECT_CODE(tangMemcpy(d0, a, N, tangMemcpyDeviceToHost), tangErrorInvalidMemcpyDirection);
    EXPECT_CODE(tangMemcpy(b, d0, N, tangMemcpyHostToDevice), tangErrorInvalidMemcpyDirection);
    EXPECT_CODE(tangMemcpy(b, a, N, tangMemcpyDeviceToDevice), tangErrorInvalidMemcpyDirection);
    EXPECT_CODE(tangMemcpy(d0, d1, N, tangMemcpyHostToHost), tangErrorInvalidMemcpyDirection);
    EXPECT_CODE(tangMemcpy(b, a, N, (tangMemcpyKind)4), tangErrorInvalidMemcpyDirection);
    EXPECT_CODE(tangMemset(d0, 0xab, N), tangSuccess);
    EXPECT_CODE(tangMemcpy(b, d0, N, tangMemcpyDeviceToHost), tangSuccess);
    EXPECT(b[0] == 0xab && b[N - 1] == 0xab);
    EXPECT_CODE(tangFree(d0), tangSuccess);
    EXPECT_CODE(tangFree(d1), tangSuccess);
    EXPECT_CODE(tangFree(a), tangErrorInvalidDevicePointer);
}

static void test_peer(void) {
    enum { N = 4096 };
    unsigned char a[N], b[N];
    void *d0 = NULL, *d1 = NULL, *mapped = NULL;
    EXPECT_CODE(tangSetDevice(0), tangSuccess);
    EXPECT_CODE(tangMalloc(&d0, N), tangSuccess);
    EXPECT_CODE(tangSetDevice(1), tangSuccess);
    EXPECT_CODE(tangMalloc(&d1, N), tangSuccess);
    EXPECT_CODE(tangSetDevice(0), tangSuccess);
    memset(a, 0x11, N);
    EXPECT_CODE(tangMemcpy(d0, a, N, tangMemcpyHostToDevice), tangSuccess);
    EXPECT_CODE(tangMemcpyPeer(d1, 1, d0, 0, N), tangSuccess);
    EXPECT_CODE(tangMemcpy(b, d1, N, tangMemcpyDeviceToHost), tangSuccess);
    EXPECT(memcmp(a, b, N) == 0);
    EXPECT_CODE(tangMemcpyPeer(d1, 0, d0, 0, N), tangErrorInvalidValue);
    /* default topology: device 0 reaches device 1 on its port 0 */
    EXPECT_CODE(tangDeviceGetPeerPointer(0, 0, d1, &mapped), tangSuccess);
    memset(a, 0x22, N);
    EXPECT_CODE(tangMemcpy(d0, a, N, tangMemcpyHostToDevice), tangSuccess);
    EXPECT_CODE(tangMemcpy(mapped, d0, N, tangMemcpyDeviceToDevice), tangSuccess);
    EXPECT_CODE(tangMemcpy(b, d1, N, tangMemcpyDeviceToHost), tangSuccess);
    EXPECT(memcmp(a, b, N) == 0);
    EXPECT_CODE(tangDeviceGetPeerPointer(0, 9, d1, &mapped), tangErrorInvalidValue);
    EXPECT_CODE(tangFree(d0), tangSuccess);
    EXPECT_CODE(tangFree(d1), tangSuccess);
}

static void test_attributes(void) {
    void *d = NULL, *h = NULL, *hd = NULL;
    int pageable = 0;
    struct tangPointerAttributes at;
    EXPECT_CODE(tangSetDevice(1), tangSuccess);
    EXPECT_CODE(tangMalloc(&d, 100), tangSuccess);
    memset(&at, 0, sizeof at);
    EXPECT_CODE(tangPointerGetAttributes(&at, d), tangSuccess);
    EXPECT(at.type == tangMemoryTypeDevice && at.device == 1 && at.devicePointer == d);
    EXPECT_CODE(tangHostAlloc(&h, 100, tangHostAllocMapped), tangSuccess);
    EXPECT_CODE(tangPointerGetAttributes(&at, h), tangSuccess);
    EXPECT(at.type == tangMemoryTypeHost && at.hostPointer == h);
    EXPECT_CODE(tangHostGetDevicePointer(&hd, h, 0), tangSuccess);
    EXPECT(hd != NULL && at.devicePointer == hd);
    EXPECT_CODE(tangPointerGetAttributes(&at, &pageable), tangErrorInvalidValue);
    EXPECT(at.type == tangMemoryTypeUnregistered);
    EXPECT_CODE(tangFreeHost(h), tangSuccess);
    EXPECT_CODE(tangMallocHost(&h, 64), tangSuccess);
    EXPECT_CODE(tangFreeHost(d), tangErrorInvalidValue);
    EXPECT_CODE(tangFreeHost(h), tangSuccess);
    EXPECT_CODE(tangFree(d), tangSuccess);
    EXPECT_CODE(tangSetDevice(0), tangSuccess);
}

static void test_streams(void) {
    enum { N = 1 << 20 };
    static unsigned char a[N], b[N];
    tangStream_t s = NULL;
    tangEvent_t e0 = NULL, e1 = NULL;
    void* d = NULL;
    float ms = -1;
    EXPECT_CODE(tangSetDevice(0), tangSuccess);
    EXPECT_CODE(tangStreamCreateWithFlags(&s, tangStreamNonBlocking), tangSuccess);
    EXPECT_CODE(tangEventCreate(&e0), tangSuccess);
    EXPECT_CODE(tangEventCreate(&e1), tangSuccess);
    EXPECT_CODE(tangMalloc(&d, N), tangSuccess);
    memset(a, 0x7e, N);
    EXPECT_CODE(tangEventRecord(e0, s), tangSuccess);
    for (int i = 0; i < 8; i++) EXPECT_CODE(tangMemcpyAsync(d, a, N, tangMemcpyHostToDevice, s), tangSuccess);
    EXPECT_CODE(tangMemcpyAsync(b, d, N, tangMemcpyDeviceToHost, s), tangSuccess);
    EXPECT_CODE(tangEventRecord(e1, s), tangSuccess);
    tangError_t q = tangStreamQuery(s);
    EXPECT(q == tangSuccess || q == tangErrorNotReady);
    EXPECT_CODE(tangStreamSynchronize(s), tangSuccess);
    EXPECT_CODE(tangStreamQuery(s), tangSuccess);
    EXPECT_CODE(tangEventQuery(e1), tangSuccess);
    EXPECT_CODE(tangEventElapsedTime(&ms, e0, e1), tangSuccess);
    EXPECT(ms >= 0);
    EXPECT(memcmp(a, b, N) == 0);
    EXPECT_CODE(tangEventDestroy(e0), tangSuccess);
    EXPECT_CODE(tangEventDestroy(e1), tangSuccess);
    EXPECT_CODE(tangStreamDestroy(s), tangSuccess);
    EXPECT_CODE(tangFree(d), tangSuccess);
}

static void test_ipc_same_process(void) {
    enum { N = 8192 };
    unsigned char a[N], b[N];
    void *d = NULL, *o = NULL;
    tangIpcMemHandle_t h;
    EXPECT(sizeof(h) == 64);
    EXPECT_CODE(tangSetDevice(0), tangSuccess);
    EXPECT_CODE(tangMalloc(&d, N), tangSuccess);
    memset(a, 0x3c, N);
    EXPECT_CODE(tangMemcpy(d, a, N, tangMemcpyHostToDevice), tangSuccess);
    EXPECT_CODE(tangIpcGetMemHandle(&h, d), tangSuccess);
    EXPECT_CODE(tangSetDevice(1), tangSuccess);
    EXPECT_CODE(tangIpcOpenMemHandle(&o, h, tangIpcMemLazyEnablePeerAccess), tangSuccess);
    EXPECT(o != d);
    EXPECT_CODE(tangMemcpy(b, o, N, tangMemcpyDeviceToHost), tangSuccess);
    EXPECT(memcmp(a, b, N) == 0);
    EXPECT(tangEmuLiveCount("ipc_open") == 1);
    EXPECT_CODE(tangSetDevice(0), tangSuccess);
    EXPECT_CODE(tangFree(d), tangSuccess);
    EXPECT_CODE(tangMemcpy(b, o, N, tangMemcpyDeviceToHost), TANG_EMU_ERROR_IPC_MEM_DESTROYED);
    EXPECT_CODE(tangIpcCloseMemHandle(o), tangSuccess);
    EXPECT(tangEmuLiveCount("ipc_open") == 0);
}

static void test_ptml(void) {
    ptPhyTopo_t topo[10];
    int n = 0;
    EXPECT(sizeof(ptPhyTopo_t) == 10);
    ptmlReturn_t first = ptmlInit();
    EXPECT(first == PTML_SUCCESS || first == PTML_ERROR_ALREADY_INITIALIZED);
    EXPECT_CODE(ptmlInit(), PTML_ERROR_ALREADY_INITIALIZED);
    EXPECT_CODE(ptmlPtlinkEnableAll(), PTML_SUCCESS);
    EXPECT_CODE(ptmlDeviceGetCount(&n), PTML_SUCCESS);
    EXPECT(n >= 2);
    memset(topo, 0, sizeof topo);
    EXPECT_CODE(ptmlPtlinkPhytopoDetect(0, sizeof topo, topo), PTML_SUCCESS);
    EXPECT(topo[0].local_chipid == 0 && topo[0].local_port == 0);
    EXPECT(topo[0].remote_chipid == 1 && topo[0].link_status != 0);
    EXPECT_CODE(ptmlPtlinkPhytopoDetect(0, sizeof topo - 1, topo), PTML_ERROR_INSUFFICIENT_SIZE);
    int v = 0;
    EXPECT_CODE(ptmlSystemGetTangVersion(&v), PTML_SUCCESS);
    EXPECT(v > 0);
}

static void test_counters(void) {
    int n;
    tangEmuResetCounters();
    EXPECT(tangEmuTotalCalls() == 0);
    EXPECT_CODE(tangGetDeviceCount(&n), tangSuccess);
    EXPECT_CODE(tangGetDeviceCount(&n), tangSuccess);
    EXPECT(tangEmuCallCount("tangGetDeviceCount") == 2);
    EXPECT(tangEmuTotalCalls() == 2);
}

static void test_faults(void) {
    void* d = NULL;
    EXPECT_CODE(tangEmuConfigure("[[fault]]\nfunction = \"tangMalloc\"\ncode = 2\nnth = 2\n"), 0);
    EXPECT_CODE(tangMalloc(&d, 16), tangSuccess);
    void* d2 = NULL;
    EXPECT_CODE(tangMalloc(&d2, 16), tangErrorMemoryAllocation);
    EXPECT_CODE(tangFree(d), tangSuccess);
    EXPECT_CODE(tangEmuConfigure("memcpy_peer_unsupported = true"), 0);
    EXPECT_CODE(tangMemcpyPeer(NULL, 1, NULL, 0, 0), tangErrorNotSupported);
    tangEmuClearFaults();
    EXPECT_CODE(tangEmuConfigure("this is not toml"), tangErrorInvalidValue);
}

static void test_host_access_faults(void) {
    void* d = NULL;
    EXPECT_CODE(tangMalloc(&d, 4096), tangSuccess);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        volatile unsigned char* p = (volatile unsigned char*)d;
        p[0] = 1; /* must fault */
        _exit(0);
    }
    int status = 0;
    EXPECT(waitpid(pid, &status, 0) == pid);
    EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    EXPECT_CODE(tangFree(d), tangSuccess);
}

static void test_fork_child_works(void) {
    void* d = NULL;
    EXPECT_CODE(tangSetDevice(0), tangSuccess);
    EXPECT_CODE(tangMalloc(&d, 4096), tangSuccess);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        unsigned char a[4096], b[4096];
        void* c = NULL;
        tangStream_t s = NULL;
        memset(a, 9, sizeof a);
        if (tangMalloc(&c, sizeof a) != tangSuccess) _exit(2);
        if (tangStreamCreate(&s) != tangSuccess) _exit(3);
        if (tangMemcpyAsync(c, a, sizeof a, tangMemcpyHostToDevice, s) != tangSuccess) _exit(4);
        if (tangMemcpyAsync(b, c, sizeof b, tangMemcpyDeviceToHost, s) != tangSuccess) _exit(5);
        if (tangStreamSynchronize(s) != tangSuccess) _exit(6);
        if (memcmp(a, b, sizeof a) != 0) _exit(7);
        tangStreamDestroy(s);
        tangFree(c);
        _exit(0);
    }
    int status = 0;
    EXPECT(waitpid(pid, &status, 0) == pid);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT_CODE(tangFree(d), tangSuccess);
}

static const char* ipc_demo_path;

static void test_ipc_two_processes(void) {
    char* argv[] = {(char*)ipc_demo_path, NULL};
    pid_t pid;
    int status = 0;
    EXPECT(posix_spawn(&pid, ipc_demo_path, NULL, NULL, argv, environ) == 0);
    EXPECT(waitpid(pid, &status, 0) == pid);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_no_leaks(void) {
    EXPECT(tangEmuLiveCount("device_alloc") == 0);
    EXPECT(tangEmuLiveCount("host_alloc") == 0);
    EXPECT(tangEmuLiveCount("stream") == 0);
    EXPECT(tangEmuLiveCount("event") == 0);
    EXPECT(tangEmuLiveCount("ipc_open") == 0);
    EXPECT(tangEmuLiveCount("nonsense") == -1);
}

int main(int argc, char** argv) {
    struct {
        const char* name;
        void (*fn)(void);
    } tests[] = {
        {"devices", test_devices},
        {"memcpy_kinds", test_memcpy_kinds},
        {"peer", test_peer},
        {"attributes", test_attributes},
        {"streams", test_streams},
        {"ipc_same_process", test_ipc_same_process},
        {"ptml", test_ptml},
        {"counters", test_counters},
        {"faults", test_faults},
        {"host_access_faults", test_host_access_faults},
        {"fork_child_works", test_fork_child_works},
        {"ipc_two_processes", test_ipc_two_processes},
        {"no_leaks", test_no_leaks},
    };
    int passed = 0, failed = 0, skipped = 0;
    ipc_demo_path = argc > 1 ? argv[1] : NULL;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (tests[i].fn == test_ipc_two_processes && ipc_demo_path == NULL) {
            printf("test %s ... skipped (no ipc_demo path given)\n", tests[i].name);
            skipped++;
            continue;
        }
        int before = failures;
        tests[i].fn();
        if (failures == before) {
            printf("test %s ... ok\n", tests[i].name);
            passed++;
        } else {
            printf("test %s ... FAILED\n", tests[i].name);
            failed++;
        }
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed == 0 ? 0 : 1;
}
