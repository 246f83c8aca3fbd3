//! The transport plugin table and its exported functions.

use super::{logging, non_null, opt_str, write_str, SUNRISE_LINK_ABI_VERSION};
use crate::engine::transport::RuntimeSource;
use crate::engine::{Error, Host, RemoteBuffer, Request, Transport};
use crate::{ffi_status, ffi_value};
use std::ffi::{c_char, c_void};
use std::sync::Arc;

/// Size of `sunrise_link_remote_buffer_t::location`.
pub const SUNRISE_LINK_LOCATION_LEN: usize = 64;
/// Size of `sunrise_link_remote_buffer_t::shm_path`, and the recommended size of the buffer
/// given to `buffer_add` (an IPC handle needs 129 bytes with the NUL).
pub const SUNRISE_LINK_SHM_PATH_LEN: usize = 256;
/// Size of `sunrise_link_remote_buffer_t::machine_id`.
pub const SUNRISE_LINK_MACHINE_ID_LEN: usize = 256;
/// Number of copy paths in `sunrise_link_stats_t::paths`.
pub const SUNRISE_LINK_PATH_COUNT: usize = 8;
/// Number of latency histogram buckets in `sunrise_link_stats_t`.
pub const SUNRISE_LINK_LATENCY_BUCKETS: usize = 40;

/// Path index: same-device `tangMemcpy` device-to-device.
pub const SUNRISE_LINK_PATH_SAME_DEVICE: u32 = 0;
/// Path index: `tangMemcpyPeer`.
pub const SUNRISE_LINK_PATH_PEER: u32 = 1;
/// Path index: `tangMemcpyPeer_v2` (after `tangMemcpyPeer` failed).
pub const SUNRISE_LINK_PATH_PEER_V2: u32 = 2;
/// Path index: `tangDeviceGetPeerPointer` + `tangMemcpy` over a PTLink port.
pub const SUNRISE_LINK_PATH_PEER_POINTER: u32 = 3;
/// Path index: multi-port striped copy (lanes in parallel).
pub const SUNRISE_LINK_PATH_STRIPED: u32 = 4;
/// Path index: host to device.
pub const SUNRISE_LINK_PATH_HOST_TO_DEVICE: u32 = 5;
/// Path index: device to host.
pub const SUNRISE_LINK_PATH_DEVICE_TO_HOST: u32 = 6;
/// Path index: requests that failed before a path was chosen (bad opcode, unknown remote
/// buffer, other machine, ...), and zero-length requests.
pub const SUNRISE_LINK_PATH_UNROUTED: u32 = 7;

/// Request opcode: copy remote `target_offset` into local `source`.
pub const SUNRISE_LINK_OP_READ: u32 = 0;
/// Request opcode: copy local `source` to remote `target_offset`.
pub const SUNRISE_LINK_OP_WRITE: u32 = 1;

/// Task status (TENT `TransferStatusEnum`): not submitted yet.
pub const SUNRISE_LINK_TASK_INITIAL: i32 = 0;
/// Task status: queued or running.
pub const SUNRISE_LINK_TASK_PENDING: i32 = 1;
/// Task status: invalid.
pub const SUNRISE_LINK_TASK_INVALID: i32 = 2;
/// Task status: cancelled before it started.
pub const SUNRISE_LINK_TASK_CANCELED: i32 = 3;
/// Task status: done; `transferred_bytes` = length.
pub const SUNRISE_LINK_TASK_COMPLETED: i32 = 4;
/// Task status: timed out (never produced by this library).
pub const SUNRISE_LINK_TASK_TIMEOUT: i32 = 5;
/// Task status: failed; `task_error_get` gives the reason.
pub const SUNRISE_LINK_TASK_FAILED: i32 = 6;

/// Log level passed to the host's `log` callback: error.
pub const SUNRISE_LINK_LOG_ERROR: i32 = 0;
/// Log level: warning.
pub const SUNRISE_LINK_LOG_WARN: i32 = 1;
/// Log level: info.
pub const SUNRISE_LINK_LOG_INFO: i32 = 2;
/// Log level: debug.
pub const SUNRISE_LINK_LOG_DEBUG: i32 = 3;
/// Log level: trace.
pub const SUNRISE_LINK_LOG_TRACE: i32 = 4;

/// An opaque transport instance. Created by `sunrise_link_transport_create`, destroyed by
/// `sunrise_link_transport_destroy`; never allocated by the caller.
///
/// Zero-sized and not `repr(C)` so cbindgen emits only a forward declaration.
pub struct sunrise_link_transport_t {
    _private: [u8; 0],
}

/// One remote buffer, as the host's `lookup_remote_buffer` reports it (a `BufferDesc` of the
/// remote segment plus the segment's machine id). Fixed-size fields: nothing is allocated
/// across the boundary. Strings must be NUL-terminated within their arrays.
#[repr(C)]
pub struct sunrise_link_remote_buffer_t {
    /// Start of the buffer in the owner's address space (`BufferDesc::addr`).
    pub base: u64,
    /// Length in bytes (`BufferDesc::length`).
    pub length: u64,
    /// `BufferDesc::location`, e.g. "cuda:0".
    pub location: [c_char; SUNRISE_LINK_LOCATION_LEN],
    /// `BufferDesc::shm_path`: 128 hex characters of the Tang IPC handle.
    pub shm_path: [c_char; SUNRISE_LINK_SHM_PATH_LEN],
    /// The remote segment's `machine_id`; "" if unknown (then no same-machine check).
    pub machine_id: [c_char; SUNRISE_LINK_MACHINE_ID_LEN],
}

/// Looks up the remote buffer of `segment_id` holding `[addr, addr + length)` and fills
/// `*out`. With `refresh` != 0 the host first drops its cached copy of the segment (TENT's
/// `withCachedSegment` / NeedsRefreshCache). Returns a `SUNRISE_LINK_*` status. Called on
/// the thread that submits, only on a cache miss or a refresh.
pub type sunrise_link_lookup_remote_buffer_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        segment_id: u64,
        addr: u64,
        length: u64,
        refresh: i32,
        out: *mut sunrise_link_remote_buffer_t,
    ) -> i32,
>;

/// Receives one log line (`SUNRISE_LINK_LOG_*` level). Called from any thread.
pub type sunrise_link_log_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: i32, msg: *const c_char)>;

/// Called once per task of the sub-batch allocated with `progress_token` when it reaches a
/// terminal state (TENT's `SubBatch::notifyProgress`), always inside a call the host made into
/// the library: on the submitting thread for copies done inside submit, on the thread that
/// reads the status of an asynchronous one (or frees or uninstalls). Never for a sub-batch
/// whose `sub_batch_free` has returned, so the token may be the address of the host's own
/// sub-batch object.
pub type sunrise_link_notify_progress_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, progress_token: u64)>;

/// What the host provides to a transport. Versioned: set `abi_version` to
/// `SUNRISE_LINK_ABI_VERSION` and `struct_size` to `sizeof(sunrise_link_host_callbacks_t)`;
/// fields beyond `struct_size` are treated as NULL. Every callback must be thread-safe and
/// stay valid until the transport is destroyed.
#[repr(C)]
pub struct sunrise_link_host_callbacks_t {
    pub abi_version: u32,
    pub struct_size: u32,
    /// Passed back to every callback.
    pub user_data: *mut c_void,
    /// Required for remote (segment id != 0) requests; NULL makes them fail.
    pub lookup_remote_buffer: sunrise_link_lookup_remote_buffer_fn,
    /// Optional log sink (else stderr at `SUNRISE_LINK_LOG`, else silence).
    pub log: sunrise_link_log_fn,
    /// Optional progress notifier.
    pub notify_progress: sunrise_link_notify_progress_fn,
    /// This machine's id (TENT `machine_id`), copied at create; NULL or "" disables the
    /// same-machine guard.
    pub local_machine_id: *const c_char,
}

/// One request (TENT `Request` minus routing-only fields).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct sunrise_link_request_t {
    /// `SUNRISE_LINK_OP_READ` or `SUNRISE_LINK_OP_WRITE`.
    pub opcode: u32,
    pub reserved: u32,
    /// Local address.
    pub source: *mut c_void,
    /// 0 = local segment, else the remote segment id.
    pub target_id: u64,
    /// Target virtual address (not an offset into a buffer), as in TENT.
    pub target_offset: u64,
    /// Bytes.
    pub length: u64,
}

/// Status of one task, from one atomic load.
#[repr(C)]
pub struct sunrise_link_task_status_t {
    /// `SUNRISE_LINK_TASK_*` (TENT `TransferStatusEnum`).
    pub status: i32,
    pub reserved: u32,
    pub transferred_bytes: u64,
}

/// TENT `Transport::Capabilities` plus what this transport supports (1 = yes).
#[repr(C)]
pub struct sunrise_link_capabilities_t {
    pub dram_to_dram: u8,
    pub dram_to_gpu: u8,
    pub gpu_to_dram: u8,
    pub gpu_to_gpu: u8,
    pub dram_to_file: u8,
    pub gpu_to_file: u8,
    /// 1 if `task_cancel` can stop a task. This version reports 0: a task is carried out by
    /// the submit that creates it, or is on the device when submit returns.
    pub supports_cancellation: u8,
    /// Always 0: notifications are not implemented (the table's slots are NULL).
    pub supports_notification: u8,
}

/// Counters of one copy path.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct sunrise_link_path_stats_t {
    pub requests: u64,
    pub bytes: u64,
    pub failures: u64,
}

/// A snapshot of a transport's counters.
#[repr(C)]
pub struct sunrise_link_stats_t {
    /// Indexed by `SUNRISE_LINK_PATH_*`.
    pub paths: [sunrise_link_path_stats_t; SUNRISE_LINK_PATH_COUNT],
    /// Requests to a remote segment (through IPC mappings).
    pub ipc_requests: u64,
    /// Requests run asynchronously (length >= async_memcpy_threshold).
    pub async_requests: u64,
    /// Submit-to-completion latency of finished requests.
    pub latency_count: u64,
    pub latency_min_ns: u64,
    pub latency_max_ns: u64,
    pub latency_sum_ns: u64,
    /// Bucket i counts latencies in [2^i, 2^(i+1)) ns.
    pub latency_buckets: [u64; SUNRISE_LINK_LATENCY_BUCKETS],
}

/// Notification send slot type (always NULL in this version).
pub type sunrise_link_notification_send_fn = Option<
    unsafe extern "C" fn(
        transport: *mut sunrise_link_transport_t,
        segment_id: u64,
        name: *const c_char,
        msg: *const c_char,
    ) -> i32,
>;

/// Notification receive slot type (always NULL in this version).
pub type sunrise_link_notification_receive_fn = Option<
    unsafe extern "C" fn(
        transport: *mut sunrise_link_transport_t,
        out: *mut c_char,
        out_len: usize,
        out_count: *mut usize,
    ) -> i32,
>;

/// The transport plugin table, filled by `sunrise_link_transport_plugin_get`. Append-only:
/// `abi_version` and `struct_size` come first, new slots only at the end, optional slots may
/// be NULL. Each slot is also exported under the function name given in its comment.
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
            *mut sunrise_link_transport_t,
            *mut sunrise_link_capabilities_t,
        ) -> i32,
    >,
    /// `sunrise_link_transport_bandwidth_get`
    pub bandwidth_get: Option<unsafe extern "C" fn(*mut sunrise_link_transport_t, *mut f64) -> i32>,
    /// `sunrise_link_sub_batch_allocate`
    pub sub_batch_allocate:
        Option<unsafe extern "C" fn(*mut sunrise_link_transport_t, u64, u64, *mut u64) -> i32>,
    /// `sunrise_link_sub_batch_free`
    pub sub_batch_free: Option<unsafe extern "C" fn(*mut sunrise_link_transport_t, u64) -> i32>,
    /// `sunrise_link_sub_batch_size`
    pub sub_batch_size:
        Option<unsafe extern "C" fn(*mut sunrise_link_transport_t, u64, *mut u64) -> i32>,
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
            *mut sunrise_link_transport_t,
            u64,
            u64,
            *mut sunrise_link_task_status_t,
        ) -> i32,
    >,
    /// `sunrise_link_task_cancel`
    pub task_cancel: Option<unsafe extern "C" fn(*mut sunrise_link_transport_t, u64, u64) -> i32>,
    /// `sunrise_link_task_error_get`
    pub task_error_get: Option<
        unsafe extern "C" fn(*mut sunrise_link_transport_t, u64, u64, *mut c_char, usize) -> i32,
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
        unsafe extern "C" fn(*mut sunrise_link_transport_t, *mut sunrise_link_stats_t) -> i32,
    >,
    /// NULL: notifications are not implemented (see `supports_notification`).
    pub notification_send: sunrise_link_notification_send_fn,
    /// NULL: notifications are not implemented.
    pub notification_receive: sunrise_link_notification_receive_fn,
}

// ---------------------------------------------------------------------------------------
// Host adapter

struct CHost {
    user_data: usize,
    lookup: sunrise_link_lookup_remote_buffer_fn,
    notify: sunrise_link_notify_progress_fn,
    machine_id: Option<String>,
}

fn field_str(a: &[c_char], what: &str) -> Result<String, Error> {
    let bytes: Vec<u8> = a.iter().map(|&c| c as u8).collect();
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| Error::invalid(format!("remote buffer {what} is not NUL-terminated")))?;
    String::from_utf8(bytes[..end].to_vec())
        .map_err(|_| Error::invalid(format!("remote buffer {what} is not UTF-8")))
}

impl Host for CHost {
    fn lookup_remote_buffer(
        &self,
        segment: u64,
        addr: u64,
        length: u64,
        refresh: bool,
    ) -> crate::engine::Result<RemoteBuffer> {
        let Some(f) = self.lookup else {
            return Err(Error::invalid(
                "the host gave no lookup_remote_buffer callback; remote segments are unreachable",
            ));
        };
        let mut out = sunrise_link_remote_buffer_t {
            base: 0,
            length: 0,
            location: [0; SUNRISE_LINK_LOCATION_LEN],
            shm_path: [0; SUNRISE_LINK_SHM_PATH_LEN],
            machine_id: [0; SUNRISE_LINK_MACHINE_ID_LEN],
        };
        // SAFETY: the host's callback, with its own user_data and a valid out struct.
        let rc = unsafe {
            f(
                self.user_data as *mut c_void,
                segment,
                addr,
                length,
                refresh as i32,
                &mut out,
            )
        };
        if rc != 0 {
            return Err(Error::new(
                rc,
                format!("host lookup_remote_buffer returned {rc}"),
            ));
        }
        Ok(RemoteBuffer {
            base: out.base,
            length: out.length,
            location: field_str(&out.location, "location")?,
            shm_path: field_str(&out.shm_path, "shm_path")?,
            machine_id: field_str(&out.machine_id, "machine_id")?,
        })
    }

    fn notify_progress(&self, token: u64) {
        if let Some(f) = self.notify {
            // SAFETY: the host's callback with its own user_data.
            unsafe { f(self.user_data as *mut c_void, token) };
        }
    }

    fn local_machine_id(&self) -> Option<String> {
        self.machine_id.clone()
    }
}

struct Boxed {
    t: Transport,
}

/// Reinterprets the opaque handle.
///
/// # Safety
/// `t` is NULL or a live handle from `sunrise_link_transport_create`.
unsafe fn get<'a>(t: *mut sunrise_link_transport_t) -> Result<&'a Transport, Error> {
    non_null(t, "transport")?;
    Ok(&(*(t as *mut Boxed)).t)
}

// ---------------------------------------------------------------------------------------
// Exports

/// The transport's name, "sunrise_link" (TENT `getName`).
#[no_mangle]
pub extern "C" fn sunrise_link_transport_name() -> *const c_char {
    ffi_value!(b"sunrise_link\0".as_ptr() as *const c_char, {
        b"sunrise_link\0".as_ptr() as *const c_char
    })
}

/// Fills `*out` with the plugin table. The caller sets `out->struct_size` to
/// `sizeof(sunrise_link_transport_plugin_t)` as it knows it; the library writes at most that
/// many bytes, then sets `abi_version` and `struct_size` to what it wrote. Slots past an older
/// caller's size are not written; slots of a newer caller beyond ours are left untouched.
///
/// # Safety
/// `out` points to a writable table of at least `out->struct_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_transport_plugin_get(
    out: *mut sunrise_link_transport_plugin_t,
) -> i32 {
    ffi_status!({
        non_null(out, "out")?;
        let want = (*out).struct_size as usize;
        if want < 8 {
            return Err(Error::invalid(format!(
                "out->struct_size is {want}; set it to sizeof(sunrise_link_transport_plugin_t)"
            )));
        }
        let table = sunrise_link_transport_plugin_t {
            abi_version: SUNRISE_LINK_ABI_VERSION,
            struct_size: std::mem::size_of::<sunrise_link_transport_plugin_t>() as u32,
            name: Some(sunrise_link_transport_name),
            version: Some(super::sunrise_link_version),
            last_error: Some(super::sunrise_link_last_error),
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
        };
        let n = want.min(std::mem::size_of::<sunrise_link_transport_plugin_t>());
        std::ptr::copy_nonoverlapping(
            &table as *const sunrise_link_transport_plugin_t as *const u8,
            out as *mut u8,
            n,
        );
        (*out).abi_version = SUNRISE_LINK_ABI_VERSION;
        (*out).struct_size = n as u32;
        Ok(())
    })
}

/// Creates a transport (not installed yet). `callbacks` is copied; `*out` is written only on
/// success.
///
/// # Safety
/// `callbacks` points to a host callbacks struct of at least `callbacks->struct_size` bytes;
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_transport_create(
    callbacks: *const sunrise_link_host_callbacks_t,
    out: *mut *mut sunrise_link_transport_t,
) -> i32 {
    ffi_status!({
        non_null(callbacks, "callbacks")?;
        non_null(out, "out")?;
        logging::ensure_init();
        let given = (*callbacks).struct_size as usize;
        if given < 8 {
            return Err(Error::invalid(format!(
                "callbacks->struct_size is {given}; set it to sizeof(sunrise_link_host_callbacks_t)"
            )));
        }
        let mut cb = sunrise_link_host_callbacks_t {
            abi_version: 0,
            struct_size: 0,
            user_data: std::ptr::null_mut(),
            lookup_remote_buffer: None,
            log: None,
            notify_progress: None,
            local_machine_id: std::ptr::null(),
        };
        let n = given.min(std::mem::size_of::<sunrise_link_host_callbacks_t>());
        std::ptr::copy_nonoverlapping(callbacks as *const u8, &mut cb as *mut _ as *mut u8, n);
        let machine_id = opt_str(cb.local_machine_id, "local_machine_id")?
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let host = Arc::new(CHost {
            user_data: cb.user_data as usize,
            lookup: cb.lookup_remote_buffer,
            notify: cb.notify_progress,
            machine_id,
        });
        let b = Box::new(Boxed {
            t: Transport::new(host, RuntimeSource::Load),
        });
        let p = Box::into_raw(b);
        if let Some(f) = cb.log {
            logging::set_sink(p as usize, f, cb.user_data);
        }
        *out = p as *mut sunrise_link_transport_t;
        Ok(())
    })
}

/// Destroys a transport (uninstalling it first). NULL is a no-op.
///
/// # Safety
/// `t` is NULL or a live handle; it must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_transport_destroy(t: *mut sunrise_link_transport_t) -> i32 {
    ffi_status!({
        if t.is_null() {
            return Ok(());
        }
        logging::clear_sink(t as usize);
        drop(Box::from_raw(t as *mut Boxed));
        Ok(())
    })
}

/// Installs: parses the config (`config_json` = JSON text of TENT's `transports/sunrise_link`
/// subtree; NULL = the TOML file named by `SUNRISE_LINK_CONFIG`, else defaults), loads the
/// runtime, counts devices, detects topology. No thread is started. Failure leaves the transport
/// uninstalled with nothing leaked.
///
/// # Safety
/// `t` is a live handle; `config_json` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_transport_install(
    t: *mut sunrise_link_transport_t,
    config_json: *const c_char,
) -> i32 {
    ffi_status!({
        let t = get(t)?;
        let cfg = opt_str(config_json, "config_json")?;
        t.install(cfg)
    })
}

/// Uninstalls: waits for calls still running on other threads and for asynchronous copies in
/// flight (bounded; those still running then are FAILED), closes every IPC mapping, event and
/// stream, unloads the runtime. Idempotent.
///
/// # Safety
/// `t` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_transport_uninstall(t: *mut sunrise_link_transport_t) -> i32 {
    ffi_status!({ get(t)?.uninstall() })
}

/// Writes the capabilities.
///
/// # Safety
/// `t` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_transport_capabilities_get(
    t: *mut sunrise_link_transport_t,
    out: *mut sunrise_link_capabilities_t,
) -> i32 {
    ffi_status!({
        let t = get(t)?;
        non_null(out, "out")?;
        let cancellation = t.supports_cancellation();
        *out = sunrise_link_capabilities_t {
            dram_to_dram: 0,
            dram_to_gpu: 1,
            gpu_to_dram: 1,
            gpu_to_gpu: 1,
            dram_to_file: 0,
            gpu_to_file: 0,
            supports_cancellation: cancellation as u8,
            supports_notification: 0,
        };
        Ok(())
    })
}

/// Writes the estimated bandwidth in bytes/s; -1.0 = unknown (TENT's default), which is what
/// this version reports.
///
/// # Safety
/// `t` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_transport_bandwidth_get(
    t: *mut sunrise_link_transport_t,
    out: *mut f64,
) -> i32 {
    ffi_status!({
        get(t)?;
        non_null(out, "out")?;
        *out = -1.0;
        Ok(())
    })
}

/// Allocates a sub-batch of `max_size` tasks; `progress_token` is passed to the host's
/// `notify_progress`. Writes a generation-checked handle (never 0) to `*out`.
///
/// # Safety
/// `t` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_sub_batch_allocate(
    t: *mut sunrise_link_transport_t,
    max_size: u64,
    progress_token: u64,
    out: *mut u64,
) -> i32 {
    ffi_status!({
        let t = get(t)?;
        non_null(out, "out")?;
        *out = t.allocate(max_size, progress_token)?;
        Ok(())
    })
}

/// Frees a sub-batch; a stale or already-freed handle is InvalidArgument.
///
/// # Safety
/// `t` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_sub_batch_free(
    t: *mut sunrise_link_transport_t,
    sub_batch: u64,
) -> i32 {
    ffi_status!({ get(t)?.free(sub_batch) })
}

/// Writes the number of tasks submitted so far (TENT `SubBatch::size()`, the next task id).
///
/// # Safety
/// `t` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_sub_batch_size(
    t: *mut sunrise_link_transport_t,
    sub_batch: u64,
    out: *mut u64,
) -> i32 {
    ffi_status!({
        let t = get(t)?;
        non_null(out, "out")?;
        *out = t.size(sub_batch)?;
        Ok(())
    })
}

/// Appends one task per request (ids `size()` ... `size() + count - 1`) and carries them out
/// on the calling thread: synchronous copies (below `async_memcpy_threshold`, the default) are
/// terminal when this returns; asynchronous ones are on the transport's streams and end when
/// a status query finds their event complete. Consecutive requests contiguous on both sides
/// are copied with one runtime call. Fails only for a bad handle, an uninstalled transport or
/// when the tasks do not fit (TooManyRequests, nothing appended); a request that cannot be
/// carried out becomes a FAILED task.
///
/// # Safety
/// `t` is a live handle; `requests` points to `count` requests (may be NULL if `count` is 0).
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_transfer_submit(
    t: *mut sunrise_link_transport_t,
    sub_batch: u64,
    requests: *const sunrise_link_request_t,
    count: usize,
) -> i32 {
    ffi_status!({
        let t = get(t)?;
        if count == 0 {
            t.size(sub_batch)?;
            return Ok(());
        }
        non_null(requests, "requests")?;
        // The tasks are reserved before the array is read: a hostile count must not make us
        // read past the caller's array. Each request is read once it is its turn.
        t.submit_with(sub_batch, count, |i| {
            let r = &*requests.add(i);
            Request {
                opcode: r.opcode,
                source: r.source as usize as u64,
                target_id: r.target_id,
                target_offset: r.target_offset,
                length: r.length,
            }
        })
    })
}

/// Writes the status of task `task_id` (one atomic load; for a task whose asynchronous copy
/// is in flight, also one query of its event).
///
/// # Safety
/// `t` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_task_status_get(
    t: *mut sunrise_link_transport_t,
    sub_batch: u64,
    task_id: u64,
    out: *mut sunrise_link_task_status_t,
) -> i32 {
    ffi_status!({
        let t = get(t)?;
        non_null(out, "out")?;
        let (s, bytes) = t.status(sub_batch, task_id)?;
        *out = sunrise_link_task_status_t {
            status: s as i32,
            reserved: 0,
            transferred_bytes: bytes,
        };
        Ok(())
    })
}

/// Asks to cancel a task. This version cannot stop one (`supports_cancellation` is 0): every
/// task has run, or its copy is on the device and runs to its end. Returns OK for a valid task
/// and changes nothing; the status says what happened.
///
/// # Safety
/// `t` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_task_cancel(
    t: *mut sunrise_link_transport_t,
    sub_batch: u64,
    task_id: u64,
) -> i32 {
    ffi_status!({ get(t)?.cancel(sub_batch, task_id).map(|_| ()) })
}

/// Copies the failure message of a FAILED task into `buf` ("" if it did not fail).
///
/// # Safety
/// `t` is a live handle; `buf` points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_task_error_get(
    t: *mut sunrise_link_transport_t,
    sub_batch: u64,
    task_id: u64,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    ffi_status!({
        let t = get(t)?;
        let m = t.task_error(sub_batch, task_id)?.unwrap_or_default();
        // Truncate at a character boundary rather than fail: it is a diagnostic.
        let mut end = m.len().min(len.saturating_sub(1));
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        write_str(buf, len, &m[..end], "buf")
    })
}

/// Registers local memory `[addr, addr + length)` at TENT location `location` ("cuda:N" for
/// device memory, "cpu:N" or "*" for host memory). For device memory, writes the Tang IPC
/// handle as 128 uppercase hex characters (TENT `BufferDesc::shm_path`, byte-identical to the
/// upstream C++ transport) into `shm_path` (`shm_path_len` >= 129); for host memory writes ""
/// (host buffers are not reachable by peers: do not list SUNRISE_LINK in their transports).
/// On failure nothing stays registered.
///
/// # Safety
/// `t` is a live handle; `location` is a NUL-terminated string; `shm_path` points to
/// `shm_path_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_buffer_add(
    t: *mut sunrise_link_transport_t,
    addr: *mut c_void,
    length: u64,
    location: *const c_char,
    shm_path: *mut c_char,
    shm_path_len: usize,
) -> i32 {
    ffi_status!({
        let t = get(t)?;
        let loc =
            opt_str(location, "location")?.ok_or_else(|| Error::invalid("location is NULL"))?;
        non_null(shm_path, "shm_path")?;
        if shm_path_len < 129 {
            return Err(Error::invalid(format!(
                "shm_path_len is {shm_path_len}; at least 129 bytes are needed"
            )));
        }
        let s = t.add_buffer(addr as usize as u64, length, loc)?;
        if let Err(e) = write_str(shm_path, shm_path_len, &s, "shm_path") {
            let _ = t.remove_buffer(addr as usize as u64);
            return Err(e);
        }
        Ok(())
    })
}

/// Unregisters the buffer registered at `addr`. Peers holding its IPC handle keep their
/// mappings until they refresh (TENT republishes the segment without it).
///
/// # Safety
/// `t` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_buffer_remove(
    t: *mut sunrise_link_transport_t,
    addr: *mut c_void,
    length: u64,
) -> i32 {
    ffi_status!({
        let _ = length;
        get(t)?.remove_buffer(addr as usize as u64)
    })
}

/// Drops every cached IPC mapping of remote segment `segment_id` (e.g. when TENT closes or
/// reopens the segment); mappings close as soon as no copy uses them.
///
/// # Safety
/// `t` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_segment_invalidate(
    t: *mut sunrise_link_transport_t,
    segment_id: u64,
) -> i32 {
    ffi_status!({ get(t)?.invalidate_segment(segment_id).map(|_| ()) })
}

/// Writes a snapshot of the counters.
///
/// # Safety
/// `t` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_stats_get(
    t: *mut sunrise_link_transport_t,
    out: *mut sunrise_link_stats_t,
) -> i32 {
    ffi_status!({
        let t = get(t)?;
        non_null(out, "out")?;
        let s = t.stats()?;
        let mut paths = [sunrise_link_path_stats_t::default(); SUNRISE_LINK_PATH_COUNT];
        for (i, p) in s.paths.iter().enumerate() {
            paths[i] = sunrise_link_path_stats_t {
                requests: p.0,
                bytes: p.1,
                failures: p.2,
            };
        }
        *out = sunrise_link_stats_t {
            paths,
            ipc_requests: s.ipc_requests,
            async_requests: s.async_requests,
            latency_count: s.latency_count,
            latency_min_ns: s.latency_min_ns,
            latency_max_ns: s.latency_max_ns,
            latency_sum_ns: s.latency_sum_ns,
            latency_buckets: s.latency_buckets,
        };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stats::{Path, LATENCY_BUCKETS, PATH_COUNT};
    use crate::engine::{status, OP_READ, OP_WRITE};

    #[test]
    fn constants_match_the_engine() {
        assert_eq!(SUNRISE_LINK_PATH_COUNT, PATH_COUNT);
        assert_eq!(SUNRISE_LINK_LATENCY_BUCKETS, LATENCY_BUCKETS);
        assert_eq!(SUNRISE_LINK_PATH_SAME_DEVICE, Path::SameDevice as u32);
        assert_eq!(SUNRISE_LINK_PATH_PEER, Path::Peer as u32);
        assert_eq!(SUNRISE_LINK_PATH_PEER_V2, Path::PeerV2 as u32);
        assert_eq!(SUNRISE_LINK_PATH_PEER_POINTER, Path::PeerPointer as u32);
        assert_eq!(SUNRISE_LINK_PATH_STRIPED, Path::Striped as u32);
        assert_eq!(SUNRISE_LINK_PATH_HOST_TO_DEVICE, Path::HostToDevice as u32);
        assert_eq!(SUNRISE_LINK_PATH_DEVICE_TO_HOST, Path::DeviceToHost as u32);
        assert_eq!(SUNRISE_LINK_PATH_UNROUTED, Path::Unrouted as u32);
        assert_eq!(SUNRISE_LINK_OP_READ, OP_READ);
        assert_eq!(SUNRISE_LINK_OP_WRITE, OP_WRITE);
        let t = [
            (SUNRISE_LINK_TASK_INITIAL, status::INITIAL),
            (SUNRISE_LINK_TASK_PENDING, status::PENDING),
            (SUNRISE_LINK_TASK_INVALID, status::INVALID),
            (SUNRISE_LINK_TASK_CANCELED, status::CANCELED),
            (SUNRISE_LINK_TASK_COMPLETED, status::COMPLETED),
            (SUNRISE_LINK_TASK_TIMEOUT, status::TIMEOUT),
            (SUNRISE_LINK_TASK_FAILED, status::FAILED),
        ];
        for (a, b) in t {
            assert_eq!(a, b as i32);
        }
    }

    #[test]
    fn host_callbacks_struct_size_is_honoured() {
        unsafe extern "C" fn must_not_be_called(_: *mut c_void, _: i32, _: *const c_char) {
            ffi_value!((), { std::process::abort() })
        }
        // An older host that knows only the fields up to `lookup_remote_buffer`: the `log`
        // slot past its size is garbage here and must be ignored.
        let cb = sunrise_link_host_callbacks_t {
            abi_version: 1,
            // abi_version + struct_size + user_data + lookup_remote_buffer
            struct_size: 24,
            user_data: std::ptr::null_mut(),
            lookup_remote_buffer: None,
            log: Some(must_not_be_called),
            notify_progress: None,
            local_machine_id: 1 as *const c_char,
        };
        let mut t = std::ptr::null_mut();
        unsafe {
            assert_eq!(sunrise_link_transport_create(&cb, &mut t), 0);
            assert!(!t.is_null());
            // A failing install logs a warning-free error; nothing reaches the ignored slot.
            assert_eq!(
                sunrise_link_transport_install(
                    t,
                    b"{\"worker_threads\": 0}\0".as_ptr() as *const c_char
                ),
                1
            );
            assert_eq!(sunrise_link_transport_destroy(t), 0);
            let short = sunrise_link_host_callbacks_t {
                struct_size: 4,
                ..cb
            };
            let mut u = std::ptr::null_mut();
            assert_eq!(sunrise_link_transport_create(&short, &mut u), 1);
            assert!(u.is_null(), "no output on failure");
            assert_eq!(sunrise_link_transport_destroy(std::ptr::null_mut()), 0);
        }
    }

    #[test]
    fn layouts() {
        use std::mem::size_of;
        assert_eq!(size_of::<sunrise_link_request_t>(), 40);
        assert_eq!(size_of::<sunrise_link_task_status_t>(), 16);
        assert_eq!(size_of::<sunrise_link_host_callbacks_t>(), 48);
        assert_eq!(
            size_of::<super::super::device_plugin::sunrise_link_device_plugin_t>(),
            72
        );
        assert_eq!(
            size_of::<super::super::device_plugin::sunrise_link_location_t>(),
            48
        );
    }
}
