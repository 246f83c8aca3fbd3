//! The transport in plain Rust: local regions, the remote IPC cache, sub-batches and tasks,
//! the copy planner and executor, topology and statistics.
//!
//! The engine never dereferences a device address; addresses are integers. The runtime is
//! reached only through [`crate::tang::Runtime`].

pub mod batch;
pub mod context;
pub mod copy;
pub mod device;
pub mod inflight;
pub mod locate;
pub mod outcome;
pub mod registry;
pub mod remote;
pub mod slab;
pub mod snapshot;
pub mod spin;
pub mod stats;
pub mod submit;
pub mod topology;
pub mod transport;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
pub(crate) mod fake;

pub use transport::Transport;

use std::fmt;

/// Status codes, numbered as TENT's `Status::Code` so a C++ adapter maps them one-to-one.
pub mod code {
    pub const OK: i32 = 0;
    pub const INVALID_ARGUMENT: i32 = 1;
    pub const TOO_MANY_REQUESTS: i32 = 2;
    pub const ADDRESS_NOT_REGISTERED: i32 = 3;
    pub const DEVICE_NOT_FOUND: i32 = 4;
    pub const INVALID_ENTRY: i32 = 5;
    pub const NEEDS_REFRESH_CACHE: i32 = 7;
    pub const RUNTIME_ERROR: i32 = 101;
    pub const INTERNAL_ERROR: i32 = 199;
    pub const NOT_IMPLEMENTED: i32 = 200;
}

/// An error: a status code and a message naming the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: i32,
    pub msg: String,
}

// Errors are the exception on every path: `#[cold]` lets the compiler move the code that
// builds them out of the way of the code that runs.
impl Error {
    #[cold]
    pub fn new(code: i32, msg: impl Into<String>) -> Self {
        Error {
            code,
            msg: msg.into(),
        }
    }
    #[cold]
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::new(code::INVALID_ARGUMENT, msg)
    }
    #[cold]
    pub fn runtime(e: &crate::tang::RtError, context: impl fmt::Display) -> Self {
        Error::new(code::RUNTIME_ERROR, format!("{context}: {e}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

/// Result type of the engine.
pub type Result<T> = std::result::Result<T, Error>;

/// TENT's `TransferStatusEnum`.
pub mod status {
    pub const INITIAL: u8 = 0;
    pub const PENDING: u8 = 1;
    pub const INVALID: u8 = 2;
    pub const CANCELED: u8 = 3;
    pub const COMPLETED: u8 = 4;
    pub const TIMEOUT: u8 = 5;
    pub const FAILED: u8 = 6;
}

/// Request opcodes (TENT's `Request::OpCode`).
pub const OP_READ: u32 = 0;
/// Write: local source → remote target.
pub const OP_WRITE: u32 = 1;

/// TENT's `LOCAL_SEGMENT_ID`.
pub const LOCAL_SEGMENT_ID: u64 = 0;

/// One transfer request, as TENT's `Request` minus the routing-only fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub opcode: u32,
    pub source: u64,
    pub target_id: u64,
    pub target_offset: u64,
    pub length: u64,
}

/// What one submit did: the id of its first task, and how many of its tasks, from that one
/// on, were COMPLETED with their request's full length when it returned (a host may answer
/// their status without asking again: a completed task never changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    pub first: u64,
    pub completed: u64,
}

/// What the host reports about a remote buffer (one `BufferDesc` of a remote segment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteBuffer {
    pub base: u64,
    pub length: u64,
    pub location: String,
    pub shm_path: String,
    pub machine_id: String,
}

/// The host (TENT, or a test) as the engine sees it. Implementations must be thread-safe:
/// the engine calls them from its worker threads.
pub trait Host: Send + Sync {
    /// Finds the remote buffer of `segment` holding `[addr, addr + length)`. With `refresh`,
    /// the host drops its cached copy of the segment first.
    fn lookup_remote_buffer(
        &self,
        segment: u64,
        addr: u64,
        length: u64,
        refresh: bool,
    ) -> Result<RemoteBuffer>;
    /// Called whenever a task of a sub-batch reaches a terminal state.
    fn notify_progress(&self, token: u64);
    /// This machine's id (TENT's `machine_id`), if known.
    fn local_machine_id(&self) -> Option<String>;
}

/// Parses a TENT location: `(type, index)`, index −1 when absent or unparsable.
pub fn parse_location(loc: &str) -> (&str, i32) {
    match loc.split_once(':') {
        None => ("*", -1),
        Some((t, rest)) => {
            // `std::stoi` skips C `isspace` characters only (not other Unicode spaces).
            let digits: String = rest
                .trim_start_matches([' ', '\t', '\n', '\u{b}', '\u{c}', '\r'])
                .chars()
                .enumerate()
                .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+')))
                .map(|(_, c)| c)
                .collect();
            (t, digits.parse::<i32>().unwrap_or(-1))
        }
    }
}

/// Whether a location type names Tang device memory.
pub fn is_device_location(ty: &str) -> bool {
    ty == "cuda" || ty == "npu"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_like_tent() {
        assert_eq!(parse_location("*"), ("*", -1));
        assert_eq!(parse_location("cuda"), ("*", -1));
        assert_eq!(parse_location("cuda:3"), ("cuda", 3));
        assert_eq!(parse_location("cuda:3x"), ("cuda", 3));
        assert_eq!(parse_location("cuda:abc"), ("cuda", -1));
        assert_eq!(parse_location("cpu:1"), ("cpu", 1));
        assert_eq!(parse_location("cuda:40"), ("cuda", 40));
        assert_eq!(parse_location("cuda:\u{b} 5"), ("cuda", 5));
        assert_eq!(parse_location("cuda:\u{a0}5"), ("cuda", -1));
    }
}
