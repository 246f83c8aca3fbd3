//! Every constant of the C ABI, defined once: status codes, task states and opcodes take their
//! values from the engine (which uses them), the rest are the ABI's own. The header gets them
//! from [`C_CONSTANTS`] (`tests/abi/header.rs` writes them as `#define`s), so no value is typed
//! twice.

use crate::engine::stats::{Path, LATENCY_BUCKETS, PATH_COUNT};
use crate::engine::{code, status, OP_READ, OP_WRITE};

macro_rules! c_constants {
    ($($(#[doc = $doc:literal])* $name:ident: $t:ty = $value:expr;)*) => {
        $($(#[doc = $doc])* pub const $name: $t = $value;)*

        /// `(name, doc lines, value)` of every constant, in header order.
        #[doc(hidden)]
        pub const C_CONSTANTS: &[(&str, &[&str], i128)] =
            &[$((stringify!($name), &[$($doc),*], $value as i128)),*];
    };
}

c_constants! {
    /// Version of the C ABI (the plugin table and the structs it takes). Bumped when a slot is
    /// appended; never when one is changed (slots are never changed or removed).
    SUNRISE_LINK_ABI_VERSION: u32 = 3;

    /// Success.
    SUNRISE_LINK_OK: i32 = code::OK;
    /// An argument is invalid (TENT `kInvalidArgument`).
    SUNRISE_LINK_INVALID_ARGUMENT: i32 = code::INVALID_ARGUMENT;
    /// A sub-batch is full (TENT `kTooManyRequests`).
    SUNRISE_LINK_TOO_MANY_REQUESTS: i32 = code::TOO_MANY_REQUESTS;
    /// No registered buffer holds the address (TENT `kAddressNotRegistered`).
    SUNRISE_LINK_ADDRESS_NOT_REGISTERED: i32 = code::ADDRESS_NOT_REGISTERED;
    /// No such device, or no device at all (TENT `kDeviceNotFound`).
    SUNRISE_LINK_DEVICE_NOT_FOUND: i32 = code::DEVICE_NOT_FOUND;
    /// A metadata entry is unusable (TENT `kInvalidEntry`).
    SUNRISE_LINK_INVALID_ENTRY: i32 = code::INVALID_ENTRY;
    /// The host should refresh its cached segment and retry (TENT `kNeedsRefreshCache`).
    SUNRISE_LINK_NEEDS_REFRESH_CACHE: i32 = code::NEEDS_REFRESH_CACHE;
    /// The Tang runtime or PTML failed, or could not be loaded (TENT `kCudaError` slot).
    SUNRISE_LINK_RUNTIME_ERROR: i32 = code::RUNTIME_ERROR;
    /// An internal error, including a caught panic (TENT `kInternalError`).
    SUNRISE_LINK_INTERNAL_ERROR: i32 = code::INTERNAL_ERROR;
    /// Not supported by this library (TENT `kNotImplemented`).
    SUNRISE_LINK_NOT_IMPLEMENTED: i32 = code::NOT_IMPLEMENTED;
    /// TENT `kInvalidMetadataType`. The library never returns it; a host's
    /// `lookup_remote_buffer` may (any TENT code is accepted there).
    SUNRISE_LINK_INVALID_METADATA_TYPE: i32 = 6;
    /// TENT `kRdmaError`; never returned by the library (see INVALID_METADATA_TYPE).
    SUNRISE_LINK_RDMA_ERROR: i32 = 100;
    /// TENT `kMetadataError`; never returned by the library (see INVALID_METADATA_TYPE).
    SUNRISE_LINK_METADATA_ERROR: i32 = 131;
    /// TENT `kRpcServiceError`; never returned by the library (see INVALID_METADATA_TYPE).
    SUNRISE_LINK_RPC_SERVICE_ERROR: i32 = 132;
    /// TENT `kMalformedJson`; never returned by the library (see INVALID_METADATA_TYPE).
    SUNRISE_LINK_MALFORMED_JSON: i32 = 133;

    /// `sunrise_link_submit_ex_t::flags`: renew the sub-batch first, as
    /// `sunrise_link_sub_batch_recycle` with the struct's `max_size` and `progress_token`.
    SUNRISE_LINK_SUBMIT_RENEW: u32 = 1;

    /// `LOCATION_LEN` of TENT's device_plugin.h.
    SUNRISE_LINK_DEVICE_LOCATION_LEN: usize = 32;
    /// Size of `sunrise_link_remote_buffer_t::location`.
    SUNRISE_LINK_LOCATION_LEN: usize = 64;
    /// Size of `sunrise_link_remote_buffer_t::shm_path`, and the recommended size of the buffer
    /// given to `buffer_add` (an IPC handle needs 129 bytes with the NUL).
    SUNRISE_LINK_SHM_PATH_LEN: usize = 256;
    /// Size of `sunrise_link_remote_buffer_t::machine_id`.
    SUNRISE_LINK_MACHINE_ID_LEN: usize = 256;
    /// Number of copy paths in `sunrise_link_stats_t::paths`.
    SUNRISE_LINK_PATH_COUNT: usize = PATH_COUNT;
    /// Number of latency histogram buckets in `sunrise_link_stats_t`.
    SUNRISE_LINK_LATENCY_BUCKETS: usize = LATENCY_BUCKETS;

    /// Path index: same-device `tangMemcpy` device-to-device.
    SUNRISE_LINK_PATH_SAME_DEVICE: u32 = Path::SameDevice as u32;
    /// Path index: `tangMemcpyPeer`.
    SUNRISE_LINK_PATH_PEER: u32 = Path::Peer as u32;
    /// Path index: `tangMemcpyPeer_v2` (after `tangMemcpyPeer` failed).
    SUNRISE_LINK_PATH_PEER_V2: u32 = Path::PeerV2 as u32;
    /// Path index: `tangDeviceGetPeerPointer` + `tangMemcpy` over a PTLink port.
    SUNRISE_LINK_PATH_PEER_POINTER: u32 = Path::PeerPointer as u32;
    /// Path index: multi-port striped copy (lanes in parallel).
    SUNRISE_LINK_PATH_STRIPED: u32 = Path::Striped as u32;
    /// Path index: host to device.
    SUNRISE_LINK_PATH_HOST_TO_DEVICE: u32 = Path::HostToDevice as u32;
    /// Path index: device to host.
    SUNRISE_LINK_PATH_DEVICE_TO_HOST: u32 = Path::DeviceToHost as u32;
    /// Path index: requests that failed before a path was chosen (bad opcode, unknown remote
    /// buffer, other machine, ...), and zero-length requests.
    SUNRISE_LINK_PATH_UNROUTED: u32 = Path::Unrouted as u32;

    /// Request opcode: copy remote `target_offset` into local `source`.
    SUNRISE_LINK_OP_READ: u32 = OP_READ;
    /// Request opcode: copy local `source` to remote `target_offset`.
    SUNRISE_LINK_OP_WRITE: u32 = OP_WRITE;

    /// Task status (TENT `TransferStatusEnum`): not submitted. Defined for TENT's enum; never
    /// reported for a task whose submit has returned (a task id at or beyond the sub-batch's
    /// size is INVALID_ARGUMENT, not INITIAL). A poller on another thread that reads a task
    /// while the submit creating it is still running may see it: treat it as PENDING.
    SUNRISE_LINK_TASK_INITIAL: i32 = status::INITIAL as i32;
    /// Task status: queued or running.
    SUNRISE_LINK_TASK_PENDING: i32 = status::PENDING as i32;
    /// Task status: invalid (never produced by this library).
    SUNRISE_LINK_TASK_INVALID: i32 = status::INVALID as i32;
    /// Task status: cancelled (not produced by this version: `supports_cancellation` is 0).
    SUNRISE_LINK_TASK_CANCELED: i32 = status::CANCELED as i32;
    /// Task status: done; `transferred_bytes` = length.
    SUNRISE_LINK_TASK_COMPLETED: i32 = status::COMPLETED as i32;
    /// Task status: timed out (never produced by this library).
    SUNRISE_LINK_TASK_TIMEOUT: i32 = status::TIMEOUT as i32;
    /// Task status: failed; `task_error_get` gives the reason.
    SUNRISE_LINK_TASK_FAILED: i32 = status::FAILED as i32;

    /// Log level passed to the host's `log` callback: error.
    SUNRISE_LINK_LOG_ERROR: i32 = 0;
    /// Log level: warning.
    SUNRISE_LINK_LOG_WARN: i32 = 1;
    /// Log level: info.
    SUNRISE_LINK_LOG_INFO: i32 = 2;
    /// Log level: debug.
    SUNRISE_LINK_LOG_DEBUG: i32 = 3;
    /// Log level: trace.
    SUNRISE_LINK_LOG_TRACE: i32 = 4;
}

/// The constants as C `#define`s with their doc comments, for the header.
#[doc(hidden)]
pub fn c_defines() -> String {
    let mut out = String::new();
    for (name, doc, value) in C_CONSTANTS {
        out.push('\n');
        for line in doc.iter() {
            out.push_str(&format!("//{}\n", line.trim_end()));
        }
        out.push_str(&format!("#define {name} {value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_status_codes_are_unique() {
        let mut names: Vec<_> = C_CONSTANTS.iter().map(|c| c.0).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), C_CONSTANTS.len(), "a constant defined twice");
        let mut codes: Vec<_> = C_CONSTANTS
            .iter()
            .filter(|(n, ..)| {
                ![
                    "TASK_", "LOG_", "PATH_", "OP_", "_LEN", "ABI_", "LATENCY", "SUBMIT_",
                ]
                .iter()
                .any(|p| n.contains(p))
            })
            .map(|c| c.2)
            .collect();
        let n = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), n, "a status code numbered twice");
        assert!(c_defines().contains("\n// Success.\n#define SUNRISE_LINK_OK 0\n"));
    }
}
