//! The C types of the transport ABI: the opaque transport, the structs that cross the boundary
//! (all fixed-size: nothing is allocated on one side and freed on the other) and the host's
//! callback types.

use super::consts::{
    SUNRISE_LINK_LATENCY_BUCKETS, SUNRISE_LINK_LOCATION_LEN, SUNRISE_LINK_MACHINE_ID_LEN,
    SUNRISE_LINK_PATH_COUNT, SUNRISE_LINK_SHM_PATH_LEN,
};
use std::ffi::{c_char, c_void};

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
/// `withCachedSegment` / NeedsRefreshCache). Returns a `SUNRISE_LINK_*` status (any TENT
/// `Status::Code`): non-zero fails the request, after one retry with `refresh` for
/// NEEDS_REFRESH_CACHE, ADDRESS_NOT_REGISTERED and INVALID_ENTRY. Called on the thread that
/// submits, only on a cache miss or a refresh.
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
/// fields beyond `struct_size` are treated as NULL. `abi_version` 0 (a zeroed, never filled
/// struct) or a `struct_size` below 8 makes `create` fail with INVALID_ARGUMENT; a newer
/// version than the library's is accepted (fields past the library's own size are ignored).
/// Every callback must be thread-safe and stay valid until the transport is destroyed.
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

/// In and out of `sunrise_link_transfer_submit_ex` (ABI version 3).
#[repr(C)]
pub struct sunrise_link_submit_ex_t {
    /// In: 0, or `SUNRISE_LINK_SUBMIT_RENEW`; other bits are InvalidArgument.
    pub flags: u32,
    /// In: 0.
    pub reserved: u32,
    /// In, with `SUNRISE_LINK_SUBMIT_RENEW`: the renewed sub-batch's capacity in tasks.
    pub max_size: u64,
    /// In, with `SUNRISE_LINK_SUBMIT_RENEW`: the renewed sub-batch's progress token.
    pub progress_token: u64,
    /// Out: the sub-batch's live handle (a new one after a renewal; the old one is stale).
    pub sub_batch: u64,
    /// Out: the id of the first task this call appended (the sub-batch's size before it).
    pub first_task: u64,
    /// Out: how many tasks, from `first_task` on, were COMPLETED with their request's full
    /// length when the call returned. Such a task never changes again, so a host may answer
    /// its status itself; the status of every later task is asked as usual.
    pub completed: u64,
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
    /// Submit-to-completion latency of sampled requests: those of every 16th submit on each
    /// thread (`latency_count` counts them).
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
