//! Per-function call counters.
//!
//! Each exported function owns a static `Counter`; it registers itself in the global list the
//! first time it is hit, so reading a counter never needs a table of every name.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

pub struct Counter {
    name: &'static str,
    /// Counted in `tangEmuTotalCalls` (runtime API functions only).
    in_total: bool,
    count: AtomicU64,
    registered: AtomicBool,
}

static REGISTRY: Mutex<Vec<&'static Counter>> = Mutex::new(Vec::new());

impl Counter {
    pub const fn new(name: &'static str, in_total: bool) -> Self {
        Counter {
            name,
            in_total,
            count: AtomicU64::new(0),
            registered: AtomicBool::new(false),
        }
    }

    pub fn hit(&'static self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if !self.registered.load(Ordering::Acquire) {
            let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
            if !self.registered.swap(true, Ordering::AcqRel) {
                reg.push(self);
            }
        }
    }
}

/// Counters of functions outside this library (the emulated PTML), created on demand.
static EXTERNAL: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

pub fn hit_external(name: &str) {
    let mut ext = EXTERNAL.lock().unwrap_or_else(|e| e.into_inner());
    match ext.iter_mut().find(|(n, _)| n == name) {
        Some((_, c)) => *c += 1,
        None => ext.push((name.to_string(), 1)),
    }
}

pub fn get(name: &str) -> u64 {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = reg.iter().find(|c| c.name == name) {
        return c.count.load(Ordering::Relaxed);
    }
    drop(reg);
    let ext = EXTERNAL.lock().unwrap_or_else(|e| e.into_inner());
    ext.iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| *c)
        .unwrap_or(0)
}

pub fn total() -> u64 {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.iter()
        .filter(|c| c.in_total)
        .map(|c| c.count.load(Ordering::Relaxed))
        .sum()
}

pub fn reset() {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    for c in reg.iter() {
        c.count.store(0, Ordering::Relaxed);
    }
    drop(reg);
    EXTERNAL.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// All non-zero counters, sorted by name.
pub fn snapshot() -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    {
        let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        for c in reg.iter() {
            let n = c.count.load(Ordering::Relaxed);
            if n > 0 {
                out.push((c.name.to_string(), n));
            }
        }
    }
    {
        let ext = EXTERNAL.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(ext.iter().filter(|(_, c)| *c > 0).cloned());
    }
    out.sort();
    out
}

/// Held across `fork` (see `fork.rs`).
pub fn lock_for_fork() -> Vec<Box<dyn std::any::Any>> {
    vec![
        Box::new(REGISTRY.lock().unwrap_or_else(|e| e.into_inner())),
        Box::new(EXTERNAL.lock().unwrap_or_else(|e| e.into_inner())),
    ]
}
