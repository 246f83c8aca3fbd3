//! Error codes, their names and descriptions, and the per-thread last-error slot.
#![allow(dead_code, non_upper_case_globals)]

use crate::types::tangError_t;
use std::cell::Cell;
use std::ffi::c_char;

/// (value, name, description); the names and values of `enum tangError`.
static TABLE: &[(u32, &str, &str)] = &[
    (0, "tangSuccess", "no error"),
    (1, "tangErrorInvalidValue", "invalid argument"),
    (2, "tangErrorMemoryAllocation", "out of memory"),
    (3, "tangErrorInitializationError", "initialization error"),
    (4, "tangErrorDeinitialized", "runtime is shutting down"),
    (5, "tangErrorDeviceRemoved", "device has been removed"),
    (6, "tangErrorDeviceReset", "device has been reset"),
    (7, "tangErrorNotPermitted", "operation not permitted"),
    (8, "tangErrorNoSuchFile", "no such file"),
    (9, "tangErrorInvalidConfiguration", "invalid configuration"),
    (10, "tangErrorNullPointer", "null pointer"),
    (11, "tangErrorOutOfResources", "out of resources"),
    (13, "tangErrorInvalidSymbol", "invalid symbol"),
    (
        17,
        "tangErrorInvalidDevicePointer",
        "invalid device pointer",
    ),
    (
        21,
        "tangErrorInvalidMemcpyDirection",
        "invalid copy direction for memcpy",
    ),
    (
        35,
        "tangErrorInsufficientDriver",
        "driver version is insufficient for runtime version",
    ),
    (52, "tangErrorMissingConfiguration", "missing configuration"),
    (
        98,
        "tangErrorInvalidDeviceFunction",
        "invalid device function",
    ),
    (99, "tangErrorNotImplemented", "not implemented"),
    (
        100,
        "tangErrorNoDevice",
        "no Tang-capable device is detected",
    ),
    (101, "tangErrorInvalidDevice", "invalid device ordinal"),
    (200, "tangErrorInvalidKernelImage", "invalid kernel image"),
    (201, "tangErrorInvalidContext", "invalid context"),
    (
        209,
        "tangErrorNoKernelImageForDevice",
        "no kernel image is available for execution on the device",
    ),
    (215, "tangErrorUnsupportedLimit", "unsupported limit"),
    (
        216,
        "tangErrorContextAlreadyInUse",
        "context already in use",
    ),
    (218, "tangErrorInvalidKernelFile", "invalid kernel file"),
    (300, "tangErrorFatBinaryNotFound", "fat binary not found"),
    (301, "tangErrorFileNotFound", "file not found"),
    (
        302,
        "tangErrorSharedObjectSymbolNotFound",
        "shared object symbol not found",
    ),
    (
        303,
        "tangErrorSharedObjectInitFailed",
        "shared object initialization failed",
    ),
    (304, "tangErrorOperatingSystem", "OS call failed"),
    (305, "tangErrorIllegalState", "illegal state"),
    (
        306,
        "tangErrorStreamCaptureUnsupported",
        "operation not permitted when stream is capturing",
    ),
    (
        307,
        "tangErrorStreamCaptureInvalidated",
        "operation failed due to a previous error during capture",
    ),
    (
        308,
        "tangErrorStreamCaptureMerge",
        "operation would result in a merge of separate capture sequences",
    ),
    (
        309,
        "tangErrorStreamCaptureUnmatched",
        "capture was not ended in the same stream as it began",
    ),
    (
        310,
        "tangErrorStreamCaptureUnjoined",
        "capturing stream has unjoined work",
    ),
    (
        311,
        "tangErrorStreamCaptureIsolation",
        "dependency created on uncaptured work in another stream",
    ),
    (
        312,
        "tangErrorStreamCaptureImplicit",
        "operation would make the legacy stream depend on a capturing blocking stream",
    ),
    (
        313,
        "tangErrorStreamCaptureWrongThread",
        "attempt to terminate a thread-local capture sequence from another thread",
    ),
    (
        314,
        "tangErrorCapturedEvent",
        "operation not permitted on an event last recorded in a capturing stream",
    ),
    (
        400,
        "tangErrorInvalidResourceHandle",
        "invalid resource handle",
    ),
    (500, "tangErrorSymbolNotFound", "named symbol not found"),
    (600, "tangErrorNotReady", "device not ready"),
    (
        700,
        "tangErrorIllegalAddress",
        "an illegal memory access was encountered",
    ),
    (
        701,
        "tangErrorLaunchOutOfResources",
        "too many resources requested for launch",
    ),
    (
        702,
        "tangErrorLaunchTimeOut",
        "the launch timed out and was terminated",
    ),
    (
        704,
        "tangErrorPeerAccessAlreadyEnabled",
        "peer access is already enabled",
    ),
    (
        705,
        "tangErrorPeerAccessNotEnabled",
        "peer access has not been enabled",
    ),
    (
        712,
        "tangErrorHostMemoryAlreadyRegistered",
        "part or all of the requested memory range is already mapped",
    ),
    (
        713,
        "tangErrorHostMemoryNotRegistered",
        "pointer does not correspond to a registered memory region",
    ),
    (719, "tangErrorLaunchFailure", "unspecified launch failure"),
    (801, "tangErrorNotSupported", "operation not supported"),
    (999, "tangErrorUnknown", "unknown error"),
    (3000, "tangErrorContextIsDestroyed", "context is destroyed"),
    (3001, "tangErrorContextInvalid", "context is invalid"),
    (3002, "tangErrorStreamIsDestroyed", "stream is destroyed"),
    (3003, "tangErrorStreamInvalid", "stream is invalid"),
    (3004, "tangErrorEventIsDestroyed", "event is destroyed"),
    (3005, "tangErrorEventInvalid", "event is invalid"),
    (3006, "tangErrorDeviceOutOfMemory", "device out of memory"),
    (
        3007,
        "tangErrorDeviceMemoryNotFound",
        "device memory not found",
    ),
    (3012, "tangErrorPcieFatal", "PCIe fatal error"),
    (
        3013,
        "tangErrorPcieNonFatalUnrecovered",
        "PCIe non-fatal error, unrecovered",
    ),
    (
        3014,
        "tangErrorScpEventNotExist",
        "SCP event does not exist",
    ),
    (
        3015,
        "tangErrorSCPEventRecordFailed",
        "SCP event record failed",
    ),
    (3016, "tangErrorSCPCrcPacketFailed", "SCP CRC packet failed"),
    (
        3017,
        "tangErrorSCPDispSendFailed",
        "SCP dispatch send failed",
    ),
    (
        3018,
        "tangErrorSCPSqWriteFailed",
        "SCP submission queue write failed",
    ),
    (
        3019,
        "tangErrorUdrcPcieDmaPacketInvalid",
        "UDRC PCIe DMA packet invalid",
    ),
    (
        3020,
        "tangErrorUdrcMpDmaPacketInvalid",
        "UDRC MP DMA packet invalid",
    ),
    (
        3021,
        "tangErrorUdrcRegPacketInvalid",
        "UDRC register packet invalid",
    ),
    (
        3022,
        "tangErrorUdrcRegAcessInvalid",
        "UDRC register access invalid",
    ),
    (
        3023,
        "tangErrorAissClusterUsrNotAllocated",
        "AISS cluster user not allocated",
    ),
    (3024, "tangErrorBarrierDestroyed", "barrier destroyed"),
    (3025, "tangErrorBarrierInvalid", "barrier invalid"),
    (
        3026,
        "tangErrorDestroyed",
        "object destroyed (emulator: IPC memory destroyed by its exporter)",
    ),
    (
        3300,
        "tangErrorXdmaC2HAlignMismatch",
        "XDMA C2H alignment mismatch",
    ),
    (
        3301,
        "tangErrorXdmaC2HInvalidMagicStopped",
        "XDMA C2H invalid magic or stopped",
    ),
    (
        3302,
        "tangErrorXdmaC2HInvalidLen",
        "XDMA C2H invalid length",
    ),
    (3303, "tangErrorXdmaC2HDecode", "XDMA C2H decode error"),
    (3304, "tangErrorXdmaC2HSlave", "XDMA C2H slave error"),
    (
        3305,
        "tangErrorXdmaC2HDescUnsupportRequest",
        "XDMA C2H descriptor unsupported request",
    ),
    (
        3306,
        "tangErrorXdmaC2HDescCompleterAbort",
        "XDMA C2H descriptor completer abort",
    ),
    (
        3307,
        "tangErrorXdmaC2HDescParity",
        "XDMA C2H descriptor parity error",
    ),
    (
        3308,
        "tangErrorXdmaC2HDescHeaderEp",
        "XDMA C2H descriptor header EP",
    ),
    (
        3309,
        "tangErrorXdmaC2HDescUnexpectedComp",
        "XDMA C2H descriptor unexpected completion",
    ),
    (3310, "tangErrorXdmaC2HTimeout", "XDMA C2H timeout"),
    (3311, "tangErrorXdmaC2HUnknown", "XDMA C2H unknown error"),
    (
        3350,
        "tangErrorXdmaH2CAlignMismatch",
        "XDMA H2C alignment mismatch",
    ),
    (3366, "tangErrorXdmaH2CUnknown", "XDMA H2C unknown error"),
    (10000, "tangErrorDriverIoctlFailed", "driver ioctl failed"),
];

pub const tangSuccess: tangError_t = 0;
pub const tangErrorInvalidValue: tangError_t = 1;
pub const tangErrorMemoryAllocation: tangError_t = 2;
pub const tangErrorInitializationError: tangError_t = 3;
pub const tangErrorDeinitialized: tangError_t = 4;
pub const tangErrorDeviceRemoved: tangError_t = 5;
pub const tangErrorDeviceReset: tangError_t = 6;
pub const tangErrorNotPermitted: tangError_t = 7;
pub const tangErrorNoSuchFile: tangError_t = 8;
pub const tangErrorInvalidConfiguration: tangError_t = 9;
pub const tangErrorNullPointer: tangError_t = 10;
pub const tangErrorOutOfResources: tangError_t = 11;
pub const tangErrorInvalidSymbol: tangError_t = 13;
pub const tangErrorInvalidDevicePointer: tangError_t = 17;
pub const tangErrorInvalidMemcpyDirection: tangError_t = 21;
pub const tangErrorInsufficientDriver: tangError_t = 35;
pub const tangErrorMissingConfiguration: tangError_t = 52;
pub const tangErrorInvalidDeviceFunction: tangError_t = 98;
pub const tangErrorNotImplemented: tangError_t = 99;
pub const tangErrorNoDevice: tangError_t = 100;
pub const tangErrorInvalidDevice: tangError_t = 101;
pub const tangErrorInvalidKernelImage: tangError_t = 200;
pub const tangErrorInvalidContext: tangError_t = 201;
pub const tangErrorNoKernelImageForDevice: tangError_t = 209;
pub const tangErrorUnsupportedLimit: tangError_t = 215;
pub const tangErrorContextAlreadyInUse: tangError_t = 216;
pub const tangErrorInvalidKernelFile: tangError_t = 218;
pub const tangErrorFatBinaryNotFound: tangError_t = 300;
pub const tangErrorFileNotFound: tangError_t = 301;
pub const tangErrorSharedObjectSymbolNotFound: tangError_t = 302;
pub const tangErrorSharedObjectInitFailed: tangError_t = 303;
pub const tangErrorOperatingSystem: tangError_t = 304;
pub const tangErrorIllegalState: tangError_t = 305;
pub const tangErrorStreamCaptureUnsupported: tangError_t = 306;
pub const tangErrorStreamCaptureInvalidated: tangError_t = 307;
pub const tangErrorStreamCaptureMerge: tangError_t = 308;
pub const tangErrorStreamCaptureUnmatched: tangError_t = 309;
pub const tangErrorStreamCaptureUnjoined: tangError_t = 310;
pub const tangErrorStreamCaptureIsolation: tangError_t = 311;
pub const tangErrorStreamCaptureImplicit: tangError_t = 312;
pub const tangErrorStreamCaptureWrongThread: tangError_t = 313;
pub const tangErrorCapturedEvent: tangError_t = 314;
pub const tangErrorInvalidResourceHandle: tangError_t = 400;
pub const tangErrorSymbolNotFound: tangError_t = 500;
pub const tangErrorNotReady: tangError_t = 600;
pub const tangErrorIllegalAddress: tangError_t = 700;
pub const tangErrorLaunchOutOfResources: tangError_t = 701;
pub const tangErrorLaunchTimeOut: tangError_t = 702;
pub const tangErrorPeerAccessAlreadyEnabled: tangError_t = 704;
pub const tangErrorPeerAccessNotEnabled: tangError_t = 705;
pub const tangErrorHostMemoryAlreadyRegistered: tangError_t = 712;
pub const tangErrorHostMemoryNotRegistered: tangError_t = 713;
pub const tangErrorLaunchFailure: tangError_t = 719;
pub const tangErrorNotSupported: tangError_t = 801;
pub const tangErrorUnknown: tangError_t = 999;
pub const tangErrorContextIsDestroyed: tangError_t = 3000;
pub const tangErrorContextInvalid: tangError_t = 3001;
pub const tangErrorStreamIsDestroyed: tangError_t = 3002;
pub const tangErrorStreamInvalid: tangError_t = 3003;
pub const tangErrorEventIsDestroyed: tangError_t = 3004;
pub const tangErrorEventInvalid: tangError_t = 3005;
pub const tangErrorDeviceOutOfMemory: tangError_t = 3006;
pub const tangErrorDeviceMemoryNotFound: tangError_t = 3007;
pub const tangErrorPcieFatal: tangError_t = 3012;
pub const tangErrorPcieNonFatalUnrecovered: tangError_t = 3013;
pub const tangErrorScpEventNotExist: tangError_t = 3014;
pub const tangErrorSCPEventRecordFailed: tangError_t = 3015;
pub const tangErrorSCPCrcPacketFailed: tangError_t = 3016;
pub const tangErrorSCPDispSendFailed: tangError_t = 3017;
pub const tangErrorSCPSqWriteFailed: tangError_t = 3018;
pub const tangErrorUdrcPcieDmaPacketInvalid: tangError_t = 3019;
pub const tangErrorUdrcMpDmaPacketInvalid: tangError_t = 3020;
pub const tangErrorUdrcRegPacketInvalid: tangError_t = 3021;
pub const tangErrorUdrcRegAcessInvalid: tangError_t = 3022;
pub const tangErrorAissClusterUsrNotAllocated: tangError_t = 3023;
pub const tangErrorBarrierDestroyed: tangError_t = 3024;
pub const tangErrorBarrierInvalid: tangError_t = 3025;
pub const tangErrorDestroyed: tangError_t = 3026;
pub const tangErrorXdmaC2HAlignMismatch: tangError_t = 3300;
pub const tangErrorXdmaC2HInvalidMagicStopped: tangError_t = 3301;
pub const tangErrorXdmaC2HInvalidLen: tangError_t = 3302;
pub const tangErrorXdmaC2HDecode: tangError_t = 3303;
pub const tangErrorXdmaC2HSlave: tangError_t = 3304;
pub const tangErrorXdmaC2HDescUnsupportRequest: tangError_t = 3305;
pub const tangErrorXdmaC2HDescCompleterAbort: tangError_t = 3306;
pub const tangErrorXdmaC2HDescParity: tangError_t = 3307;
pub const tangErrorXdmaC2HDescHeaderEp: tangError_t = 3308;
pub const tangErrorXdmaC2HDescUnexpectedComp: tangError_t = 3309;
pub const tangErrorXdmaC2HTimeout: tangError_t = 3310;
pub const tangErrorXdmaC2HUnknown: tangError_t = 3311;
pub const tangErrorXdmaH2CAlignMismatch: tangError_t = 3350;
pub const tangErrorXdmaH2CUnknown: tangError_t = 3366;
pub const tangErrorDriverIoctlFailed: tangError_t = 10000;

thread_local! {
    static LAST_ERROR: Cell<tangError_t> = const { Cell::new(0) };
}

/// Stores a failing result as the thread's last error and passes it through. `NotReady` is a
/// query answer and is not stored (the reference leaves this open; this is the emulator's choice).
pub fn record(code: tangError_t) -> tangError_t {
    if code != tangSuccess && code != tangErrorNotReady {
        let _ = LAST_ERROR.try_with(|c| c.set(code));
    }
    code
}

pub fn last_error(reset: bool) -> tangError_t {
    LAST_ERROR
        .try_with(|c| {
            let v = c.get();
            if reset {
                c.set(tangSuccess);
            }
            v
        })
        .unwrap_or(tangSuccess)
}

/// NUL-terminated static strings for the C side, built once.
fn cstrings() -> &'static Vec<(u32, std::ffi::CString, std::ffi::CString)> {
    static S: std::sync::OnceLock<Vec<(u32, std::ffi::CString, std::ffi::CString)>> =
        std::sync::OnceLock::new();
    S.get_or_init(|| {
        TABLE
            .iter()
            .map(|(v, n, d)| {
                (
                    *v,
                    std::ffi::CString::new(*n).unwrap_or_default(),
                    std::ffi::CString::new(*d).unwrap_or_default(),
                )
            })
            .collect()
    })
}

pub fn name_ptr(code: tangError_t) -> *const c_char {
    match cstrings().iter().find(|e| e.0 == code) {
        Some(e) => e.1.as_ptr(),
        None => b"tangErrorUnrecognized\0".as_ptr().cast(),
    }
}

pub fn string_ptr(code: tangError_t) -> *const c_char {
    match cstrings().iter().find(|e| e.0 == code) {
        Some(e) => e.2.as_ptr(),
        None => b"unrecognized error code\0".as_ptr().cast(),
    }
}

pub fn name_of(code: tangError_t) -> &'static str {
    TABLE
        .iter()
        .find(|e| e.0 == code)
        .map(|e| e.1)
        .unwrap_or("tangErrorUnrecognized")
}
