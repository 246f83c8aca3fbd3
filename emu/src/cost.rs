//! The per-call cost model: a configurable busy-wait at the start of every runtime call, by
//! class of call, modelling hardware where each runtime call costs microseconds of host time
//! (driver entry, command submission, doorbells). Default 0 for every class.
//!
//! The class of each exported function is fixed at compile time (`class_of`); the cost of a
//! class is one relaxed atomic load on the calling thread, so with every cost at 0 a call pays
//! one load and a not-taken branch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const SYNC_COPY: usize = 0;
pub const ASYNC_LAUNCH: usize = 1;
pub const DEVICE: usize = 2;
pub const ATTRIBUTES: usize = 3;
pub const IPC: usize = 4;
pub const EVENT_QUERY: usize = 5;
pub const OTHER: usize = 6;
pub const CLASSES: usize = 7;

/// Class names as written in the configuration (`[call_cost_us]`, `TANG_EMU_CALL_COST_US`).
pub const NAMES: [&str; CLASSES] = [
    "sync_copy",
    "async_launch",
    "device",
    "attributes",
    "ipc",
    "event_query",
    "other",
];

/// Every runtime function outside `OTHER`, with its class. Keep in step with `emu/README.md`.
const MEMBERS: &[(&str, usize)] = &[
    ("tangMemcpy", SYNC_COPY),
    ("tangMemcpyPeer", SYNC_COPY),
    ("tangMemcpyPeer_v2", SYNC_COPY),
    ("tangMemset", SYNC_COPY),
    ("tangMemcpyAsync", ASYNC_LAUNCH),
    ("tangMemcpyPeerAsync", ASYNC_LAUNCH),
    ("tangMemcpyPeerAsync_v2", ASYNC_LAUNCH),
    ("tangEventRecord", ASYNC_LAUNCH),
    ("tangEventRecordWithFlags", ASYNC_LAUNCH),
    ("tangStreamWaitEvent", ASYNC_LAUNCH),
    ("tangSetDevice", DEVICE),
    ("tangGetDevice", DEVICE),
    ("tangPointerGetAttributes", ATTRIBUTES),
    ("tangIpcGetMemHandle", IPC),
    ("tangIpcOpenMemHandle", IPC),
    ("tangIpcCloseMemHandle", IPC),
    ("tangEventQuery", EVENT_QUERY),
    ("tangStreamQuery", EVENT_QUERY),
];

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The class of a runtime function (`OTHER` for every function not listed in `MEMBERS`).
/// Evaluated at compile time by `export!`.
pub const fn class_of(name: &str) -> usize {
    let mut i = 0;
    while i < MEMBERS.len() {
        if str_eq(MEMBERS[i].0, name) {
            return MEMBERS[i].1;
        }
        i += 1;
    }
    OTHER
}

/// The index of a class name.
pub fn class_named(name: &str) -> Option<usize> {
    NAMES.iter().position(|&n| n == name)
}

/// Largest accepted cost (one second): anything above is taken for a unit mistake.
pub const MAX_US: f64 = 1e6;

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per call, by class. Written on (re)configuration only, so the cache lines stay
/// shared (read-only) between the threads that call the runtime.
static COST_NS: [AtomicU64; CLASSES] = [ZERO; CLASSES];

/// Installs the configured costs (microseconds per call, by class).
pub fn install(us: &[f64; CLASSES]) {
    for (slot, &v) in COST_NS.iter().zip(us) {
        slot.store((v * 1e3).round() as u64, Ordering::Relaxed);
    }
}

/// Charges one call of class `class`: busy-waits on the calling thread (a spin on the monotonic
/// clock, not a sleep: the model is host time spent inside the runtime).
#[inline(always)]
pub fn pay(class: usize) {
    let ns = COST_NS[class].load(Ordering::Relaxed);
    if ns != 0 {
        spin(ns);
    }
}

#[cold]
#[inline(never)]
fn spin(ns: u64) {
    let start = Instant::now();
    let d = Duration::from_nanos(ns);
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}
