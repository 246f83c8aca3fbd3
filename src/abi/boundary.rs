//! The C boundary: every exported function's body is one [`export!`] invocation, which runs it
//! inside `catch_unwind`, turns an `Err` into its status code and stores its message as this
//! thread's last error (`sunrise_link_last_error`). A panic becomes `SUNRISE_LINK_INTERNAL_ERROR`
//! (or the export's stated fallback value) with a message; it never unwinds into C.
//!
//! NULL checks and pointer reads live in [`super::args`] and [`super::handle`]; they return
//! `Err`, so inside `export!` a bad pointer is one `?` away from a status with a message.

use super::consts::SUNRISE_LINK_INTERNAL_ERROR;
use crate::engine::Error;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Stores `msg` as this thread's last error.
pub(crate) fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = c);
}

/// This thread's last error, valid until the next failing call on this thread.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    format!("internal error (panic caught at the C boundary): {what}")
}

/// Runs `body`; `None` when it panicked (the panic's message is then the last error).
fn guarded<R>(body: impl FnOnce() -> R) -> Option<R> {
    let r = catch_unwind(AssertUnwindSafe(|| {
        #[cfg(test)]
        panic_hook::fire();
        body()
    }));
    match r {
        Ok(v) => Some(v),
        Err(p) => {
            set_last_error(&panic_message(&*p));
            None
        }
    }
}

/// A status export: `SUNRISE_LINK_OK`, the error's code (its message stored), or
/// `SUNRISE_LINK_INTERNAL_ERROR` after a panic.
pub(crate) fn status(body: impl FnOnce() -> Result<(), Error>) -> i32 {
    match guarded(body) {
        Some(Ok(())) => super::consts::SUNRISE_LINK_OK,
        Some(Err(e)) => {
            set_last_error(&e.msg);
            e.code
        }
        None => SUNRISE_LINK_INTERNAL_ERROR,
    }
}

/// A value export: the body's value, or `on_panic` after a panic.
pub(crate) fn value<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    guarded(body).unwrap_or(on_panic)
}

/// A TENT device-plugin export: 0 on success, -1 on an error or a panic (message stored).
pub(crate) fn errno(body: impl FnOnce() -> Result<(), Error>) -> c_int {
    if status(body) == super::consts::SUNRISE_LINK_OK {
        0
    } else {
        -1
    }
}

/// The body of an exported function; the one way C enters the library.
///
/// - `export!({ ... })`: the block yields `Result<(), Error>`; the export returns an `int32_t`
///   status.
/// - `export!(value(fallback) { ... })`: the block yields the export's value; `fallback` is
///   returned if it panics.
/// - `export!(errno { ... })`: as the first form, returning TENT's device-plugin 0 / -1.
macro_rules! export {
    ({ $($body:tt)* }) => {
        $crate::abi::boundary::status(
            || -> ::std::result::Result<(), $crate::engine::Error> { $($body)* },
        )
    };
    (value($on_panic:expr) { $($body:tt)* }) => {
        $crate::abi::boundary::value($on_panic, || { $($body)* })
    };
    (errno { $($body:tt)* }) => {
        $crate::abi::boundary::errno(
            || -> ::std::result::Result<(), $crate::engine::Error> { $($body)* },
        )
    };
}
pub(crate) use export;

/// Test-only: makes the next boundary entered on this thread panic inside it, so a test can
/// prove that an export runs inside the boundary (it returns its fallback with a message).
#[cfg(test)]
pub(crate) mod panic_hook {
    use std::cell::Cell;

    thread_local! {
        static ARMED: Cell<bool> = const { Cell::new(false) };
    }

    pub(crate) fn arm() {
        ARMED.with(|a| a.set(true));
    }

    pub(crate) fn armed() -> bool {
        ARMED.with(|a| a.get())
    }

    pub(super) fn fire() {
        if ARMED.with(|a| a.replace(false)) {
            panic!("injected by the boundary test");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::consts::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: the library's own NUL-terminated thread-local message.
        unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_internal_error_with_a_message() {
        let rc = export!({
            let v: Vec<u8> = Vec::new();
            if v.is_empty() {
                panic!("boom at the boundary");
            }
            Ok(())
        });
        assert_eq!(rc, SUNRISE_LINK_INTERNAL_ERROR);
        let msg = last();
        assert!(
            msg.contains("boom at the boundary") && msg.contains("panic"),
            "{msg}"
        );
        let v = export!(value(7) { "not a number".parse::<i32>().expect("value boundary") });
        assert_eq!(v, 7);
        assert_eq!(export!(errno { Err(Error::invalid("no")) }), -1);
        assert_eq!(last(), "no");
        assert_eq!(export!(errno { Ok(()) }), 0);
    }

    #[test]
    fn an_error_sets_its_code_and_message() {
        let rc = export!({ Err(Error::new(SUNRISE_LINK_DEVICE_NOT_FOUND, "device 9")) });
        assert_eq!(rc, SUNRISE_LINK_DEVICE_NOT_FOUND);
        assert_eq!(last(), "device 9");
        set_last_error("a\0b");
        assert_eq!(last(), "a b", "an inner NUL cannot cut the message");
        assert_eq!(export!({ Ok(()) }), SUNRISE_LINK_OK);
        assert_eq!(last(), "a b", "success leaves the last error alone");
    }
}
