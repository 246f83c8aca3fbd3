//! Every `extern "C"` item of the library, and nothing else: status codes, the last-error
//! message, the panic boundary, the transport plugin table and TENT's `device_plugin_t`.
//!
//! Every exported function body runs inside [`ffi_status!`] or [`ffi_value!`]; a test
//! (`tests/abi_boundary.rs`) fails if one does not.

#![allow(non_camel_case_types)]

pub mod device_plugin;
pub mod logging;
pub mod transport;

use crate::engine::Error;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

/// Version of the C ABI (the plugin table and the structs it takes). Bumped when a slot is
/// appended; never when one is changed (slots are never changed or removed).
pub const SUNRISE_LINK_ABI_VERSION: u32 = 1;

/// Success.
pub const SUNRISE_LINK_OK: i32 = 0;
/// An argument is invalid (TENT `kInvalidArgument`).
pub const SUNRISE_LINK_INVALID_ARGUMENT: i32 = 1;
/// A sub-batch is full (TENT `kTooManyRequests`).
pub const SUNRISE_LINK_TOO_MANY_REQUESTS: i32 = 2;
/// No registered buffer holds the address (TENT `kAddressNotRegistered`).
pub const SUNRISE_LINK_ADDRESS_NOT_REGISTERED: i32 = 3;
/// No such device, or no device at all (TENT `kDeviceNotFound`).
pub const SUNRISE_LINK_DEVICE_NOT_FOUND: i32 = 4;
/// A metadata entry is unusable (TENT `kInvalidEntry`).
pub const SUNRISE_LINK_INVALID_ENTRY: i32 = 5;
/// The host should refresh its cached segment and retry (TENT `kNeedsRefreshCache`).
pub const SUNRISE_LINK_NEEDS_REFRESH_CACHE: i32 = 7;
/// The Tang runtime or PTML failed, or could not be loaded (TENT `kCudaError` slot).
pub const SUNRISE_LINK_RUNTIME_ERROR: i32 = 101;
/// An internal error, including a caught panic (TENT `kInternalError`).
pub const SUNRISE_LINK_INTERNAL_ERROR: i32 = 199;
/// Not supported by this library (TENT `kNotImplemented`).
pub const SUNRISE_LINK_NOT_IMPLEMENTED: i32 = 200;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Stores `msg` as this thread's last error.
pub(crate) fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = c);
}

/// Stores the error's message and returns its code.
pub(crate) fn fail(e: &Error) -> i32 {
    set_last_error(&e.msg);
    e.code
}

/// Turns a caught panic payload into the last error.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    format!("internal error (panic caught at the C boundary): {what}")
}

/// Runs an export body that returns `Result<(), Error>`, catching panics; yields the status.
#[macro_export]
#[doc(hidden)]
macro_rules! ffi_status {
    ($body:block) => {{
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
            || -> ::std::result::Result<(), $crate::engine::Error> { $body },
        )) {
            Ok(Ok(())) => $crate::abi::SUNRISE_LINK_OK,
            Ok(Err(e)) => $crate::abi::fail(&e),
            Err(p) => {
                $crate::abi::set_last_error(&$crate::abi::panic_message(&*p));
                $crate::abi::SUNRISE_LINK_INTERNAL_ERROR
            }
        }
    }};
}

/// Runs an export body that returns a plain value, catching panics; `$default` on panic.
#[macro_export]
#[doc(hidden)]
macro_rules! ffi_value {
    ($default:expr, $body:block) => {{
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(v) => v,
            Err(p) => {
                $crate::abi::set_last_error(&$crate::abi::panic_message(&*p));
                $default
            }
        }
    }};
}

/// Fails with InvalidArgument when `p` is NULL.
pub(crate) fn non_null<T>(p: *const T, what: &str) -> Result<(), Error> {
    if p.is_null() {
        Err(Error::invalid(format!("{what} is NULL")))
    } else {
        Ok(())
    }
}

/// Reads an optional C string (NULL -> None).
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        return Ok(None);
    }
    CStr::from_ptr(p)
        .to_str()
        .map(Some)
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// Copies `s` NUL-terminated into `buf[..len]`; fails when it does not fit.
///
/// # Safety
/// `buf` points to `len` writable bytes.
pub(crate) unsafe fn write_str(
    buf: *mut c_char,
    len: usize,
    s: &str,
    what: &str,
) -> Result<(), Error> {
    non_null(buf, what)?;
    if s.len() + 1 > len {
        return Err(Error::invalid(format!(
            "{what}: buffer of {len} bytes is too small for {} bytes",
            s.len() + 1
        )));
    }
    std::ptr::copy_nonoverlapping(s.as_ptr() as *const c_char, buf, s.len());
    *buf.add(s.len()) = 0;
    Ok(())
}

static VERSION_C: &[u8] = concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes();

/// The message of the last failing call on this thread (naming the symbol, path, address or
/// device at fault); "" if none failed yet. Valid until the next failing call on this thread.
#[no_mangle]
pub extern "C" fn sunrise_link_last_error() -> *const c_char {
    ffi_value!(b"internal error\0".as_ptr() as *const c_char, {
        LAST_ERROR.with(|l| l.borrow().as_ptr())
    })
}

/// The library version ("MAJOR.MINOR.PATCH"), a static string.
#[no_mangle]
pub extern "C" fn sunrise_link_version() -> *const c_char {
    ffi_value!(b"\0".as_ptr() as *const c_char, {
        VERSION_C.as_ptr() as *const c_char
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::code;

    #[test]
    fn a_panic_becomes_internal_error_with_a_message() {
        let rc = ffi_status!({
            let v: Vec<u8> = Vec::new();
            if v.is_empty() {
                panic!("boom at the boundary");
            }
            Ok(())
        });
        assert_eq!(rc, SUNRISE_LINK_INTERNAL_ERROR);
        // SAFETY: the library's own NUL-terminated thread-local message.
        let msg = unsafe { CStr::from_ptr(sunrise_link_last_error()) }
            .to_str()
            .unwrap();
        assert!(
            msg.contains("boom at the boundary") && msg.contains("panic"),
            "{msg}"
        );
        let v = ffi_value!(7, {
            "not a number".parse::<i32>().expect("value boundary")
        });
        assert_eq!(v, 7);
    }

    #[test]
    fn errors_set_the_message_and_null_is_checked() {
        let rc = ffi_status!({ non_null(std::ptr::null::<u8>(), "out") });
        assert_eq!(rc, SUNRISE_LINK_INVALID_ARGUMENT);
        // SAFETY: as above.
        let msg = unsafe { CStr::from_ptr(sunrise_link_last_error()) }
            .to_str()
            .unwrap();
        assert_eq!(msg, "out is NULL");
        // SAFETY: a static string.
        let v = unsafe { CStr::from_ptr(sunrise_link_version()) }
            .to_str()
            .unwrap();
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn status_codes_match_the_engine() {
        assert_eq!(SUNRISE_LINK_OK, code::OK);
        assert_eq!(SUNRISE_LINK_INVALID_ARGUMENT, code::INVALID_ARGUMENT);
        assert_eq!(SUNRISE_LINK_TOO_MANY_REQUESTS, code::TOO_MANY_REQUESTS);
        assert_eq!(
            SUNRISE_LINK_ADDRESS_NOT_REGISTERED,
            code::ADDRESS_NOT_REGISTERED
        );
        assert_eq!(SUNRISE_LINK_DEVICE_NOT_FOUND, code::DEVICE_NOT_FOUND);
        assert_eq!(SUNRISE_LINK_INVALID_ENTRY, code::INVALID_ENTRY);
        assert_eq!(SUNRISE_LINK_NEEDS_REFRESH_CACHE, code::NEEDS_REFRESH_CACHE);
        assert_eq!(SUNRISE_LINK_RUNTIME_ERROR, code::RUNTIME_ERROR);
        assert_eq!(SUNRISE_LINK_INTERNAL_ERROR, code::INTERNAL_ERROR);
        assert_eq!(SUNRISE_LINK_NOT_IMPLEMENTED, code::NOT_IMPLEMENTED);
    }
}
