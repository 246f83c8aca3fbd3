/*
 * Two unrelated processes sharing device memory through a Tang IPC handle.
 *
 * The exporter allocates device memory on device 0, fills it with tangMemcpy host-to-device and
 * exports an IPC handle. It then starts a second program (this executable again, through
 * posix_spawn: a new process image, not a fork) and passes the 64 handle bytes as hex on its
 * command line. The importer opens the handle on device 1, reads the bytes back with tangMemcpy
 * device-to-host, checks them, writes new bytes and exits. The exporter then sees those bytes.
 *
 * Usage: ipc_demo            run the whole exchange (exit status 0 on success)
 *        ipc_demo open HEX   the importer side (started by the exporter)
 */
#define _POSIX_C_SOURCE 200809L
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tang_runtime_api.h>

extern char** environ;

#define LEN (1u << 20)
#define FIRST 0x5a
#define SECOND 0xc3

#define CHECK(call)                                                                          \
    do {                                                                                     \
        tangError_t e_ = (call);                                                             \
        if (e_ != tangSuccess) {                                                             \
            fprintf(stderr, "%s:%d: %s -> %d (%s)\n", __FILE__, __LINE__, #call, (int)e_,    \
                    tangGetErrorName(e_));                                                   \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

static void to_hex(const tangIpcMemHandle_t* h, char* out) {
    const unsigned char* b = (const unsigned char*)h;
    for (size_t i = 0; i < sizeof(*h); i++) sprintf(out + 2 * i, "%02x", b[i]);
}

static int from_hex(const char* s, tangIpcMemHandle_t* h) {
    unsigned char* b = (unsigned char*)h;
    if (strlen(s) != 2 * sizeof(*h)) return -1;
    for (size_t i = 0; i < sizeof(*h); i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return -1;
        b[i] = (unsigned char)v;
    }
    return 0;
}

static int importer(const char* hex) {
    tangIpcMemHandle_t h;
    if (from_hex(hex, &h) != 0) {
        fprintf(stderr, "importer: bad handle\n");
        return 2;
    }
    CHECK(tangSetDevice(1));
    void* dptr = NULL;
    CHECK(tangIpcOpenMemHandle(&dptr, h, tangIpcMemLazyEnablePeerAccess));
    unsigned char* buf = malloc(LEN);
    CHECK(tangMemcpy(buf, dptr, LEN, tangMemcpyDeviceToHost));
    for (size_t i = 0; i < LEN; i++) {
        if (buf[i] != (unsigned char)(FIRST ^ (i & 0xff))) {
            fprintf(stderr, "importer: byte %zu is %#x\n", i, buf[i]);
            return 3;
        }
    }
    memset(buf, SECOND, LEN);
    CHECK(tangMemcpy(dptr, buf, LEN, tangMemcpyHostToDevice));
    CHECK(tangIpcCloseMemHandle(dptr));
    free(buf);
    printf("importer (pid %d): opened the handle on device 1 at %p, read %u bytes, wrote %#x\n",
           (int)getpid(), dptr, LEN, SECOND);
    return 0;
}

int main(int argc, char** argv) {
    if (argc == 3 && strcmp(argv[1], "open") == 0) return importer(argv[2]);

    CHECK(tangSetDevice(0));
    void* dptr = NULL;
    CHECK(tangMalloc(&dptr, LEN));
    unsigned char* buf = malloc(LEN);
    for (size_t i = 0; i < LEN; i++) buf[i] = (unsigned char)(FIRST ^ (i & 0xff));
    CHECK(tangMemcpy(dptr, buf, LEN, tangMemcpyHostToDevice));

    tangIpcMemHandle_t h;
    CHECK(tangIpcGetMemHandle(&h, dptr));
    char hex[2 * sizeof(h) + 1];
    to_hex(&h, hex);
    printf("exporter (pid %d): %u bytes on device 0 at %p, handle %.32s...\n", (int)getpid(), LEN,
           dptr, hex);
    fflush(stdout);

    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        perror("readlink");
        return 1;
    }
    self[n] = 0;
    char* child_argv[] = {self, (char*)"open", hex, NULL};
    pid_t pid;
    if (posix_spawn(&pid, self, NULL, NULL, child_argv, environ) != 0) {
        perror("posix_spawn");
        return 1;
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "exporter: importer failed (status %#x)\n", status);
        return 1;
    }
    CHECK(tangMemcpy(buf, dptr, LEN, tangMemcpyDeviceToHost));
    for (size_t i = 0; i < LEN; i++) {
        if (buf[i] != SECOND) {
            fprintf(stderr, "exporter: byte %zu is %#x, expected %#x\n", i, buf[i], SECOND);
            return 1;
        }
    }
    CHECK(tangFree(dptr));
    free(buf);
    printf("exporter: sees the importer's bytes; IPC exchange OK\n");
    return 0;
}
