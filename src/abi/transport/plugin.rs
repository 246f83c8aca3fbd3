//! The transport plugin table (what a host resolves first, e.g. after `dlopen`) and the
//! library-wide exports: name, version, last error.

use super::exports::*;
use super::submit::*;
use crate::abi::args;
use crate::abi::boundary::{export, last_error_ptr};
use crate::abi::consts::SUNRISE_LINK_ABI_VERSION;
use crate::abi::types::*;
use std::ffi::{c_char, c_void};

/// The transport plugin table, filled by `sunrise_link_transport_plugin_get`. Append-only:
/// `abi_version` and `struct_size` come first, new slots only at the end, optional slots may
/// be NULL (test a slot with `SUNRISE_LINK_CHECK_OP`). Each slot is also exported under the
/// function name given in its comment.
#[repr(C)]
pub struct sunrise_link_transport_plugin_t {
    pub abi_version: u32,
    pub struct_size: u32,
    /// `sunrise_link_transport_name`
    pub name: Option<extern "C" fn() -> *const c_char>,
    /// `sunrise_link_version`
    pub version: Option<extern "C" fn() -> *const c_char>,
    /// `sunrise_link_last_error`
    pub last_error: Option<extern "C" fn() -> *const c_char>,
    /// `sunrise_link_transport_create`
    pub create: Option<
        unsafe extern "C" fn(
            *const sunrise_link_host_callbacks_t,
            *mut *mut sunrise_link_transport_t,
        ) -> i32,
    >,
    /// `sunrise_link_transport_destroy`
    pub destroy: Option<unsafe extern "C" fn(*mut sunrise_link_transport_t) -> i32>,
    /// `sunrise_link_transport_install`
    pub install: Option<unsafe extern "C" fn(*mut sunrise_link_transport_t, *const c_char) -> i32>,
    /// `sunrise_link_transport_uninstall`
    pub uninstall: Option<unsafe extern "C" fn(*mut sunrise_link_transport_t) -> i32>,
    /// `sunrise_link_transport_capabilities_get`
    pub capabilities_get: Option<
        unsafe extern "C" fn(
            *const sunrise_link_transport_t,
            *mut sunrise_link_capabilities_t,
        ) -> i32,
    >,
    /// `sunrise_link_transport_bandwidth_get`
    pub bandwidth_get:
        Option<unsafe extern "C" fn(*const sunrise_link_transport_t, *mut f64) -> i32>,
    /// `sunrise_link_sub_batch_allocate`
    pub sub_batch_allocate:
        Option<unsafe extern "C" fn(*mut sunrise_link_transport_t, u64, u64, *mut u64) -> i32>,
    /// `sunrise_link_sub_batch_free`
    pub sub_batch_free: Option<unsafe extern "C" fn(*mut sunrise_link_transport_t, u64) -> i32>,
    /// `sunrise_link_sub_batch_size`
    pub sub_batch_size:
        Option<unsafe extern "C" fn(*const sunrise_link_transport_t, u64, *mut u64) -> i32>,
    /// `sunrise_link_transfer_submit`
    pub submit: Option<
        unsafe extern "C" fn(
            *mut sunrise_link_transport_t,
            u64,
            *const sunrise_link_request_t,
            usize,
        ) -> i32,
    >,
    /// `sunrise_link_task_status_get`
    pub task_status_get: Option<
        unsafe extern "C" fn(
            *const sunrise_link_transport_t,
            u64,
            u64,
            *mut sunrise_link_task_status_t,
        ) -> i32,
    >,
    /// `sunrise_link_task_cancel`
    pub task_cancel: Option<unsafe extern "C" fn(*mut sunrise_link_transport_t, u64, u64) -> i32>,
    /// `sunrise_link_task_error_get`
    pub task_error_get: Option<
        unsafe extern "C" fn(*const sunrise_link_transport_t, u64, u64, *mut c_char, usize) -> i32,
    >,
    /// `sunrise_link_buffer_add`
    pub buffer_add: Option<
        unsafe extern "C" fn(
            *mut sunrise_link_transport_t,
            *mut c_void,
            u64,
            *const c_char,
            *mut c_char,
            usize,
        ) -> i32,
    >,
    /// `sunrise_link_buffer_remove`
    pub buffer_remove:
        Option<unsafe extern "C" fn(*mut sunrise_link_transport_t, *mut c_void, u64) -> i32>,
    /// `sunrise_link_segment_invalidate`
    pub segment_invalidate: Option<unsafe extern "C" fn(*mut sunrise_link_transport_t, u64) -> i32>,
    /// `sunrise_link_stats_get`
    pub stats_get: Option<
        unsafe extern "C" fn(*const sunrise_link_transport_t, *mut sunrise_link_stats_t) -> i32,
    >,
    /// NULL: notifications are not implemented (see `supports_notification`).
    pub notification_send: sunrise_link_notification_send_fn,
    /// NULL: notifications are not implemented.
    pub notification_receive: sunrise_link_notification_receive_fn,
    /// `sunrise_link_sub_batch_recycle` (ABI version 2; a host that may load an older library
    /// checks for it with `SUNRISE_LINK_CHECK_OP`).
    pub sub_batch_recycle:
        Option<unsafe extern "C" fn(*mut sunrise_link_transport_t, u64, u64, u64, *mut u64) -> i32>,
    /// `sunrise_link_transfer_submit_ex` (ABI version 3; checked for as above).
    pub submit_ex: Option<
        unsafe extern "C" fn(
            *mut sunrise_link_transport_t,
            u64,
            *const sunrise_link_request_t,
            usize,
            *mut sunrise_link_submit_ex_t,
        ) -> i32,
    >,
}

/// The message of the last failing call on this thread (naming the symbol, path, address or
/// device at fault); "" if none failed yet. Valid until the next failing call on this thread.
#[no_mangle]
pub extern "C" fn sunrise_link_last_error() -> *const c_char {
    export!(value(b"internal error\0".as_ptr().cast()) { last_error_ptr() })
}

static VERSION_C: &[u8] = concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes();

/// The library version ("MAJOR.MINOR.PATCH"), a static string.
#[no_mangle]
pub extern "C" fn sunrise_link_version() -> *const c_char {
    export!(value(VERSION_C.as_ptr().cast()) { VERSION_C.as_ptr().cast() })
}

/// Fills `*out` with the plugin table. The caller sets `out->struct_size` to
/// `sizeof(sunrise_link_transport_plugin_t)` as it knows it; the library writes at most that
/// many bytes, then sets `abi_version` and `struct_size` to what it wrote. Slots past an older
/// caller's size are not written; slots of a newer caller beyond ours are left untouched. A
/// `struct_size` below 8 (not even `abi_version` and `struct_size`) is InvalidArgument and
/// nothing is written.
///
/// # Safety
/// `out` points to a writable table of at least `out->struct_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_transport_plugin_get(
    out: *mut sunrise_link_transport_plugin_t,
) -> i32 {
    export!({
        let table = sunrise_link_transport_plugin_t {
            abi_version: SUNRISE_LINK_ABI_VERSION,
            struct_size: std::mem::size_of::<sunrise_link_transport_plugin_t>() as u32,
            name: Some(sunrise_link_transport_name),
            version: Some(sunrise_link_version),
            last_error: Some(sunrise_link_last_error),
            create: Some(sunrise_link_transport_create),
            destroy: Some(sunrise_link_transport_destroy),
            install: Some(sunrise_link_transport_install),
            uninstall: Some(sunrise_link_transport_uninstall),
            capabilities_get: Some(sunrise_link_transport_capabilities_get),
            bandwidth_get: Some(sunrise_link_transport_bandwidth_get),
            sub_batch_allocate: Some(sunrise_link_sub_batch_allocate),
            sub_batch_free: Some(sunrise_link_sub_batch_free),
            sub_batch_size: Some(sunrise_link_sub_batch_size),
            submit: Some(sunrise_link_transfer_submit),
            task_status_get: Some(sunrise_link_task_status_get),
            task_cancel: Some(sunrise_link_task_cancel),
            task_error_get: Some(sunrise_link_task_error_get),
            buffer_add: Some(sunrise_link_buffer_add),
            buffer_remove: Some(sunrise_link_buffer_remove),
            segment_invalidate: Some(sunrise_link_segment_invalidate),
            stats_get: Some(sunrise_link_stats_get),
            notification_send: None,
            notification_receive: None,
            sub_batch_recycle: Some(sunrise_link_sub_batch_recycle),
            submit_ex: Some(sunrise_link_transfer_submit_ex),
        };
        // SAFETY: at least `out->struct_size` writable bytes at `out` (contract above).
        unsafe { args::write_versioned(out, &table, "out") }.map(|_| ())
    })
}
