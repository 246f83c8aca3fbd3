//! Emulated PTML (`libptml_shared.so`).
//!
//! Topology, device count, call counters and injected faults live in the emulated runtime, so
//! that `tangEmuConfigure` changes what both libraries report. This library loads the
//! `libtangrt_shared.so` that sits in its own directory and asks it through a few emulator-only
//! hooks; it keeps only PTML's own state (initialised, links enabled).
#![allow(non_snake_case, non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

pub type ptmlReturn_t = u32;
pub type ptmlDevice_t = c_int;

const PTML_SUCCESS: u32 = 0;
const PTML_ERROR_UNINITIALIZED: u32 = 1;
const PTML_ERROR_INVALID_ARGUMENT: u32 = 2;
const PTML_ERROR_ALREADY_INITIALIZED: u32 = 3;
const PTML_ERROR_INSUFFICIENT_SIZE: u32 = 4;
const PTML_ERROR_DRIVER_NOT_LOADED: u32 = 6;
const PTML_ERROR_DEVICE_NOT_FOUND: u32 = 7;
const PTML_ERROR_UNKNOWN: u32 = 9;

const PORTS: usize = 10;
const ENTRY: usize = 10;
/// Emulated kernel-driver and SDK versions (0.13.0, encoded like the driver's TA_VERSION).
const DRIVER_VERSION: &str = "0.13.0-emu";
const TANG_VERSION: c_int = 130;
const TANG_VERSION_SMI: &str = "0.13.0";

struct Runtime {
    enter: unsafe extern "C" fn(*const c_char) -> c_uint,
    device_count: extern "C" fn() -> c_int,
    phytopo: unsafe extern "C" fn(c_int, *mut u8) -> c_int,
    link_status: extern "C" fn(c_int, c_int) -> c_int,
}

static INIT: AtomicBool = AtomicBool::new(false);
static LINKS_DISABLED: AtomicBool = AtomicBool::new(false);

/// The emulated runtime next to this library (or, failing that, the one the loader finds).
fn runtime() -> Option<&'static Runtime> {
    static RT: OnceLock<Option<Runtime>> = OnceLock::new();
    RT.get_or_init(|| unsafe {
        let mut candidates: Vec<CString> = Vec::new();
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(runtime as *const c_void, &mut info) != 0 && !info.dli_fname.is_null() {
            let me = CStr::from_ptr(info.dli_fname).to_string_lossy().into_owned();
            if let Some(dir) = std::path::Path::new(&me).parent() {
                let p = dir.join("libtangrt_shared.so");
                if let Ok(c) = CString::new(p.to_string_lossy().into_owned()) {
                    candidates.push(c);
                }
            }
        }
        candidates.push(CString::new("libtangrt_shared.so").unwrap_or_default());
        for c in candidates {
            let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW);
            if h.is_null() {
                continue;
            }
            let sym = |n: &[u8]| libc::dlsym(h, n.as_ptr().cast());
            let (a, b, c2, d) = (
                sym(b"tangEmuPtmlEnter\0"),
                sym(b"tangEmuPtmlDeviceCount\0"),
                sym(b"tangEmuPtmlPhytopo\0"),
                sym(b"tangEmuPtmlLinkStatus\0"),
            );
            if a.is_null() || b.is_null() || c2.is_null() || d.is_null() {
                continue;
            }
            return Some(Runtime {
                enter: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*const c_char) -> c_uint>(a),
                device_count: std::mem::transmute::<*mut c_void, extern "C" fn() -> c_int>(b),
                phytopo: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(c_int, *mut u8) -> c_int>(c2),
                link_status: std::mem::transmute::<*mut c_void, extern "C" fn(c_int, c_int) -> c_int>(d),
            });
        }
        None
    })
    .as_ref()
}

/// Counts the call, applies injected faults, catches panics; `needs_init` = fails with
/// UNINITIALIZED before `ptmlInit`.
fn call(
    name: &'static [u8],
    needs_init: bool,
    f: impl FnOnce(&Runtime) -> ptmlReturn_t,
) -> ptmlReturn_t {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Some(rt) = runtime() else {
            return PTML_ERROR_DRIVER_NOT_LOADED;
        };
        let code = unsafe { (rt.enter)(name.as_ptr().cast()) };
        if code != 0 {
            return code;
        }
        if needs_init && !INIT.load(Ordering::Acquire) {
            return PTML_ERROR_UNINITIALIZED;
        }
        f(rt)
    }))
    .unwrap_or(PTML_ERROR_UNKNOWN)
}

fn write_str(dst: *mut c_char, len: c_uint, s: &str) -> ptmlReturn_t {
    if dst.is_null() {
        return PTML_ERROR_INVALID_ARGUMENT;
    }
    if (len as usize) < s.len() + 1 {
        return PTML_ERROR_INSUFFICIENT_SIZE;
    }
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), dst.cast(), s.len());
        *dst.add(s.len()) = 0;
    }
    PTML_SUCCESS
}

fn valid_device(rt: &Runtime, d: c_int) -> bool {
    d >= 0 && d < (rt.device_count)()
}

#[no_mangle]
pub extern "C" fn ptmlInit() -> ptmlReturn_t {
    call(b"ptmlInit\0", false, |_| {
        if INIT.swap(true, Ordering::AcqRel) {
            PTML_ERROR_ALREADY_INITIALIZED
        } else {
            PTML_SUCCESS
        }
    })
}

#[cfg(not(feature = "minimal"))]
#[no_mangle]
pub extern "C" fn ptmlUninit() {
    call(b"ptmlUninit\0", false, |_| {
        INIT.store(false, Ordering::Release);
        PTML_SUCCESS
    });
}

#[cfg(not(feature = "minimal"))]
#[no_mangle]
pub extern "C" fn __ptmlUinit() -> ptmlReturn_t {
    call(b"__ptmlUinit\0", true, |_| {
        INIT.store(false, Ordering::Release);
        PTML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn ptmlDeviceGetCount(devCount: *mut c_int) -> ptmlReturn_t {
    call(b"ptmlDeviceGetCount\0", true, |rt| {
        if devCount.is_null() {
            return PTML_ERROR_INVALID_ARGUMENT;
        }
        *devCount = (rt.device_count)();
        PTML_SUCCESS
    })
}

#[no_mangle]
pub extern "C" fn ptmlPtlinkEnableAll() -> ptmlReturn_t {
    call(b"ptmlPtlinkEnableAll\0", true, |_| {
        LINKS_DISABLED.store(false, Ordering::Release);
        PTML_SUCCESS
    })
}

#[no_mangle]
pub extern "C" fn ptmlPtlinkDisableAll() -> ptmlReturn_t {
    call(b"ptmlPtlinkDisableAll\0", true, |_| {
        LINKS_DISABLED.store(true, Ordering::Release);
        PTML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn ptmlPtlinkPhytopoDetect(
    device: ptmlDevice_t,
    size: u32,
    buffer: *mut c_void,
) -> ptmlReturn_t {
    call(b"ptmlPtlinkPhytopoDetect\0", true, |rt| {
        if buffer.is_null() || !valid_device(rt, device) {
            return PTML_ERROR_INVALID_ARGUMENT;
        }
        if (size as usize) < PORTS * ENTRY {
            return PTML_ERROR_INSUFFICIENT_SIZE;
        }
        let mut tmp = [0u8; PORTS * ENTRY];
        match (rt.phytopo)(device, tmp.as_mut_ptr()) {
            0 => {}
            -2 => return PTML_ERROR_DEVICE_NOT_FOUND,
            _ => return PTML_ERROR_INVALID_ARGUMENT,
        }
        if LINKS_DISABLED.load(Ordering::Acquire) {
            for i in 0..PORTS {
                tmp[i * ENTRY + 4] = 0;
                tmp[i * ENTRY + 7] = 0;
                tmp[i * ENTRY + 9] = 0;
            }
        }
        std::ptr::copy_nonoverlapping(tmp.as_ptr(), buffer.cast::<u8>(), tmp.len());
        PTML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn ptmlGetPtlinkStatus(
    device: ptmlDevice_t,
    port: c_int,
    status: *mut c_int,
) -> ptmlReturn_t {
    call(b"ptmlGetPtlinkStatus\0", true, |rt| {
        if status.is_null() || !valid_device(rt, device) || !(0..PORTS as c_int).contains(&port) {
            return PTML_ERROR_INVALID_ARGUMENT;
        }
        let up = (rt.link_status)(device, port) == 1 && !LINKS_DISABLED.load(Ordering::Acquire);
        *status = up as c_int;
        PTML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn ptmlPtlinkGetConnectRelation(
    device1: ptmlDevice_t,
    device2: ptmlDevice_t,
    status: *mut c_int,
) -> ptmlReturn_t {
    call(b"ptmlPtlinkGetConnectRelation\0", true, |rt| {
        if status.is_null() || !valid_device(rt, device1) || !valid_device(rt, device2) {
            return PTML_ERROR_INVALID_ARGUMENT;
        }
        let mut tmp = [0u8; PORTS * ENTRY];
        if (rt.phytopo)(device1, tmp.as_mut_ptr()) != 0 {
            return PTML_ERROR_DEVICE_NOT_FOUND;
        }
        let disabled = LINKS_DISABLED.load(Ordering::Acquire);
        let linked =
            (0..PORTS).any(|i| tmp[i * ENTRY + 2] as c_int == device2 && tmp[i * ENTRY + 4] != 0);
        *status = (linked && !disabled) as c_int;
        PTML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn ptmlSystemGetDriverVersion(
    version: *mut c_char,
    length: c_uint,
) -> ptmlReturn_t {
    call(b"ptmlSystemGetDriverVersion\0", true, |_| {
        write_str(version, length, DRIVER_VERSION)
    })
}

#[no_mangle]
pub unsafe extern "C" fn ptmlSystemGetTangVersion(version: *mut c_int) -> ptmlReturn_t {
    call(b"ptmlSystemGetTangVersion\0", true, |_| {
        if version.is_null() {
            return PTML_ERROR_INVALID_ARGUMENT;
        }
        *version = TANG_VERSION;
        PTML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn ptmlSystemGetTangVersionForSmi(
    version: *mut c_char,
    length: c_uint,
) -> ptmlReturn_t {
    call(b"ptmlSystemGetTangVersionForSmi\0", true, |_| {
        write_str(version, length, TANG_VERSION_SMI)
    })
}

/// Writes "/dev/ptpu<N>" (at most 16 bytes with the NUL).
#[no_mangle]
pub unsafe extern "C" fn ptmlDeviceGetNodePath(
    device: ptmlDevice_t,
    path: *mut c_char,
) -> ptmlReturn_t {
    call(b"ptmlDeviceGetNodePath\0", true, |rt| {
        if !valid_device(rt, device) {
            return PTML_ERROR_INVALID_ARGUMENT;
        }
        write_str(path, 16, &format!("/dev/ptpu{device}"))
    })
}

#[no_mangle]
pub extern "C" fn ptmlGetErrorCodeToDescription(errorCode: c_int) -> *const c_char {
    let s: &'static [u8] = match errorCode {
        0 => b"success\0",
        1 => b"PTML not initialized\0",
        2 => b"invalid argument\0",
        3 => b"PTML already initialized\0",
        4 => b"buffer or size too small\0",
        5 => b"device in use\0",
        6 => b"driver not loaded\0",
        7 => b"device not found\0",
        8 => b"event wait timed out\0",
        9 => b"unknown error\0",
        _ => b"unrecognized PTML error code\0",
    };
    s.as_ptr().cast()
}
