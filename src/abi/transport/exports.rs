//! The transport's exported functions; each is also a slot of the plugin table (`plugin.rs`).

use crate::abi::args;
use crate::abi::boundary::export;
use crate::abi::consts::*;
use crate::abi::handle::Kind;
use crate::abi::host::CHost;
use crate::abi::logging;
use crate::abi::types::*;
use crate::engine::transport::RuntimeSource;
use crate::engine::{Error, Transport};
use std::ffi::{c_char, c_void};
use std::sync::Arc;

/// Transport handles: `sunrise_link_transport_t *` over a boxed engine `Transport`.
pub(crate) static TRANSPORT: Kind<sunrise_link_transport_t, Transport> = Kind::new("transport");

/// The transport's name, "sunrise_link" (TENT `getName`).
#[no_mangle]
pub extern "C" fn sunrise_link_transport_name() -> *const c_char {
    export!(value(NAME.as_ptr().cast()) { NAME.as_ptr().cast() })
}

static NAME: &[u8] = b"sunrise_link\0";

/// Creates a transport (not installed yet). `callbacks` is copied; `*out` is written only on
/// success. `callbacks->abi_version` 0 or `callbacks->struct_size` below 8 is
/// INVALID_ARGUMENT.
///
/// # Safety
/// `callbacks` points to a host callbacks struct of at least `callbacks->struct_size` bytes;
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_transport_create(
    callbacks: *const sunrise_link_host_callbacks_t,
    out: *mut *mut sunrise_link_transport_t,
) -> i32 {
    export!({
        // SAFETY: the caller's struct of at least struct_size bytes (contract above).
        let host = unsafe { CHost::read(callbacks) }?;
        // SAFETY: the caller's writable out pointer (contract above).
        let out = unsafe { args::out(out, "out") }?;
        logging::ensure_init();
        let (log, user_data) = (host.log, host.user_data());
        let t = TRANSPORT.create(Transport::new(Arc::new(host), RuntimeSource::Load));
        if let Some(f) = log {
            logging::set_sink(t as usize, f, user_data);
        }
        *out = t;
        Ok(())
    })
}

/// Destroys a transport (uninstalling it first). NULL is a no-op.
///
/// # Safety
/// `t` is NULL or a live handle; it must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_transport_destroy(t: *mut sunrise_link_transport_t) -> i32 {
    export!({
        if !t.is_null() {
            logging::clear_sink(t as usize);
            // SAFETY: a live handle, not used by the caller afterwards (contract above).
            unsafe { TRANSPORT.destroy(t) };
        }
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
    export!({
        // SAFETY: a live handle (contract above).
        let t = unsafe { TRANSPORT.borrow(t) }?;
        // SAFETY: NULL or the caller's NUL-terminated string (contract above).
        let cfg = unsafe { args::opt_str(config_json, "config_json") }?;
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
    // SAFETY: a live handle (contract above).
    export!({ unsafe { TRANSPORT.borrow(t) }?.uninstall() })
}

/// Writes the capabilities.
///
/// # Safety
/// `t` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_transport_capabilities_get(
    t: *const sunrise_link_transport_t,
    out: *mut sunrise_link_capabilities_t,
) -> i32 {
    export!({
        // SAFETY: a live handle and a writable out pointer (contract above).
        let (t, out) = unsafe { (TRANSPORT.borrow(t)?, args::out(out, "out")?) };
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
    t: *const sunrise_link_transport_t,
    out: *mut f64,
) -> i32 {
    export!({
        // SAFETY: a live handle and a writable out pointer (contract above).
        let (_, out) = unsafe { (TRANSPORT.borrow(t)?, args::out(out, "out")?) };
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
    export!({
        // SAFETY: a live handle and a writable out pointer (contract above).
        let (t, out) = unsafe { (TRANSPORT.borrow(t)?, args::out(out, "out")?) };
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
    // SAFETY: a live handle (contract above).
    export!({ unsafe { TRANSPORT.borrow(t) }?.free(sub_batch) })
}

/// Frees `sub_batch` and allocates a sub-batch of `max_size` tasks with `progress_token` in its
/// place, writing the new handle to `*out`; the old handle is stale afterwards. The same as
/// `sub_batch_free` then `sub_batch_allocate`, but it reuses the sub-batch's slot and memory
/// when it can, so a host that allocates a sub-batch per batch pays less. A handle that is not
/// live or a size out of range is InvalidArgument and changes nothing.
///
/// # Safety
/// `t` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_sub_batch_recycle(
    t: *mut sunrise_link_transport_t,
    sub_batch: u64,
    max_size: u64,
    progress_token: u64,
    out: *mut u64,
) -> i32 {
    export!({
        // SAFETY: a live handle and a writable out pointer (contract above).
        let (t, out) = unsafe { (TRANSPORT.borrow(t)?, args::out(out, "out")?) };
        *out = t.recycle(sub_batch, max_size, progress_token)?;
        Ok(())
    })
}

/// Writes the number of tasks submitted so far (TENT `SubBatch::size()`, the next task id).
///
/// # Safety
/// `t` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_sub_batch_size(
    t: *const sunrise_link_transport_t,
    sub_batch: u64,
    out: *mut u64,
) -> i32 {
    export!({
        // SAFETY: a live handle and a writable out pointer (contract above).
        let (t, out) = unsafe { (TRANSPORT.borrow(t)?, args::out(out, "out")?) };
        *out = t.size(sub_batch)?;
        Ok(())
    })
}

/// Writes the status of task `task_id` (one atomic load; for a task whose asynchronous copy
/// is in flight, also one query of its event). A task id at or beyond the sub-batch's size is
/// InvalidArgument.
///
/// # Safety
/// `t` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_task_status_get(
    t: *const sunrise_link_transport_t,
    sub_batch: u64,
    task_id: u64,
    out: *mut sunrise_link_task_status_t,
) -> i32 {
    export!({
        // SAFETY: a live handle and a writable out pointer (contract above).
        let (t, out) = unsafe { (TRANSPORT.borrow(t)?, args::out(out, "out")?) };
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
    export!({
        // SAFETY: a live handle (contract above).
        unsafe { TRANSPORT.borrow(t) }?
            .cancel(sub_batch, task_id)
            .map(|_| ())
    })
}

/// Copies the failure message of a FAILED task into `buf`, NUL-terminated ("" if it did not
/// fail). A message longer than `len - 1` bytes is cut at a UTF-8 character boundary; `len` 0
/// (no room even for the NUL) or a NULL `buf` is InvalidArgument, with nothing written.
///
/// # Safety
/// `t` is a live handle; `buf` points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_task_error_get(
    t: *const sunrise_link_transport_t,
    sub_batch: u64,
    task_id: u64,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    export!({
        // SAFETY: a live handle (contract above).
        let t = unsafe { TRANSPORT.borrow(t) }?;
        let m = t.task_error(sub_batch, task_id)?.unwrap_or_default();
        // Truncate at a character boundary rather than fail: it is a diagnostic.
        let mut end = m.len().min(len.saturating_sub(1));
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        // SAFETY: NULL or `len` writable bytes (contract above).
        unsafe { args::write_str(buf, len, &m[..end], "buf") }
    })
}

/// Registers local memory `[addr, addr + length)` at TENT location `location` ("cuda:N" for
/// device memory, "cpu:N" or "*" for host memory). For device memory, writes the Tang IPC
/// handle as 128 uppercase hex characters (TENT `BufferDesc::shm_path`, byte-identical to the
/// upstream C++ transport) into `shm_path` (`shm_path_len` >= 129); for host memory writes ""
/// (host buffers are not reachable by peers: do not list SUNRISE_LINK in their transports).
/// A device location whose index TENT parses as -1 ("cuda", "cuda:", "cuda:abc", "cuda:-1")
/// means whichever device holds the memory. On failure nothing stays registered.
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
    export!({
        // SAFETY: a live handle and the caller's NUL-terminated location (contract above).
        let (t, loc) = unsafe { (TRANSPORT.borrow(t)?, args::str(location, "location")?) };
        args::non_null(shm_path, "shm_path")?;
        if shm_path_len < 129 {
            return Err(Error::invalid(format!(
                "shm_path_len is {shm_path_len}; at least 129 bytes are needed"
            )));
        }
        let s = t.add_buffer(addr as usize as u64, length, loc)?;
        // SAFETY: `shm_path_len` writable bytes at `shm_path` (contract above).
        if let Err(e) = unsafe { args::write_str(shm_path, shm_path_len, &s, "shm_path") } {
            let _ = t.remove_buffer(addr as usize as u64);
            return Err(e);
        }
        Ok(())
    })
}

/// Unregisters the buffer registered at `addr` (its start address; `length` is not used).
/// Peers holding its IPC handle keep their mappings until they refresh (TENT republishes the
/// segment without it).
///
/// # Safety
/// `t` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_buffer_remove(
    t: *mut sunrise_link_transport_t,
    addr: *mut c_void,
    length: u64,
) -> i32 {
    let _ = length;
    // SAFETY: a live handle (contract above).
    export!({ unsafe { TRANSPORT.borrow(t) }?.remove_buffer(addr as usize as u64) })
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
    export!({
        // SAFETY: a live handle (contract above).
        unsafe { TRANSPORT.borrow(t) }?
            .invalidate_segment(segment_id)
            .map(|_| ())
    })
}

/// Writes a snapshot of the counters.
///
/// # Safety
/// `t` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_stats_get(
    t: *const sunrise_link_transport_t,
    out: *mut sunrise_link_stats_t,
) -> i32 {
    export!({
        // SAFETY: a live handle and a writable out pointer (contract above).
        let (t, out) = unsafe { (TRANSPORT.borrow(t)?, args::out(out, "out")?) };
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
