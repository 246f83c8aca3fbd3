/*
 * tang_rt/host_defines.h: visibility and default-argument macros of the Tang runtime headers.
 * Part of the sunrise-link emulated Tang runtime; written from the project's ABI reference.
 */
#ifndef TANG_RT_HOST_DEFINES_H
#define TANG_RT_HOST_DEFINES_H

#if defined(__GNUC__) || defined(__clang__)
#define TANGRT_API_PUBLIC __attribute__((visibility("default")))
#else
#define TANGRT_API_PUBLIC
#endif

/* The runtime library is built as target "tangrt_shared"; both modes export the same way. */
#define TANGRT_API TANGRT_API_PUBLIC

/* Default arguments exist only in C++ source; at the ABI every argument is passed. */
#ifdef __cplusplus
#define __dparm(x) = x
#else
#define __dparm(x)
#endif

#endif /* TANG_RT_HOST_DEFINES_H */
