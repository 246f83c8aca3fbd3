//! Per-function call counters.
//!
//! Each exported function owns a static `Counter`; it takes a slot number the first time it is
//! hit (registering itself in the global list, so reading a counter never needs a table of
//! every name). Counts are kept per thread: a thread increments its own block of slots (its own
//! cache lines, written by no other thread), so threads calling the runtime side by side never
//! contend on a counter. Readers sum over the live threads' blocks plus the retired counts of
//! threads that have exited; a reset records the sums as the new zero instead of writing into
//! the blocks of other threads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Slots per thread block; more counters than this fall back to a shared atomic per counter.
const SLOTS: usize = 128;

pub struct Counter {
    name: &'static str,
    /// Counted in `tangEmuTotalCalls` (runtime API functions only).
    in_total: bool,
    /// Slot number + 1; 0 until the first hit.
    slot: AtomicUsize,
    /// Calls counted without a thread block (slot beyond `SLOTS`, or a call made while the
    /// calling thread's block is being torn down at thread exit).
    shared: AtomicU64,
}

/// One thread's counts, on cache lines of its own.
#[repr(align(128))]
struct Block {
    n: [AtomicU64; SLOTS],
}

struct Registry {
    /// Counters by slot.
    counters: Vec<&'static Counter>,
    /// Blocks of live threads (in a child after fork also those of the parent's other
    /// threads, whose counts the child inherits).
    blocks: Vec<Arc<Block>>,
    /// Counts of threads that have exited.
    retired: Vec<u64>,
    /// Sums at the last reset, by slot.
    base: Vec<u64>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    counters: Vec::new(),
    blocks: Vec::new(),
    retired: Vec::new(),
    base: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The calling thread's block; registered on first use, retired at thread exit.
struct Local(Arc<Block>);

impl Local {
    fn new() -> Local {
        #[allow(clippy::declare_interior_mutable_const)]
        const ZERO: AtomicU64 = AtomicU64::new(0);
        let b = Arc::new(Block { n: [ZERO; SLOTS] });
        registry().blocks.push(Arc::clone(&b));
        Local(b)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let mut reg = registry();
        let Registry {
            blocks, retired, ..
        } = &mut *reg;
        if retired.len() < SLOTS {
            retired.resize(SLOTS, 0);
        }
        for (r, n) in retired.iter_mut().zip(self.0.n.iter()) {
            *r += n.load(Ordering::Relaxed);
        }
        blocks.retain(|b| !Arc::ptr_eq(b, &self.0));
    }
}

thread_local! {
    static LOCAL: Local = Local::new();
}

impl Counter {
    pub const fn new(name: &'static str, in_total: bool) -> Self {
        Counter {
            name,
            in_total,
            slot: AtomicUsize::new(0),
            shared: AtomicU64::new(0),
        }
    }

    #[inline]
    pub fn hit(&'static self) {
        let mut s = self.slot.load(Ordering::Relaxed);
        if s == 0 {
            s = self.register();
        }
        let i = s - 1;
        if i < SLOTS {
            // Only this thread writes its block, so a plain load and store is an exact
            // increment (readers see the old or the new value).
            let counted = LOCAL.try_with(|l| {
                let c = &l.0.n[i];
                c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            });
            if counted.is_ok() {
                return;
            }
        }
        self.shared.fetch_add(1, Ordering::Relaxed);
    }

    #[cold]
    fn register(&'static self) -> usize {
        let mut reg = registry();
        let s = self.slot.load(Ordering::Relaxed);
        if s != 0 {
            return s;
        }
        reg.counters.push(self);
        let s = reg.counters.len();
        self.slot.store(s, Ordering::Relaxed);
        s
    }
}

impl Registry {
    /// Calls of the counter in `slot` since the process started (or the parent started).
    fn sum(&self, slot: usize) -> u64 {
        let c = self.counters[slot];
        let mut n = c.shared.load(Ordering::Relaxed);
        if slot < SLOTS {
            n += self.retired.get(slot).copied().unwrap_or(0);
            for b in &self.blocks {
                n += b.n[slot].load(Ordering::Relaxed);
            }
        }
        n
    }

    /// Calls since the last reset.
    fn count(&self, slot: usize) -> u64 {
        self.sum(slot)
            .saturating_sub(self.base.get(slot).copied().unwrap_or(0))
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
    let reg = registry();
    if let Some(slot) = reg.counters.iter().position(|c| c.name == name) {
        return reg.count(slot);
    }
    drop(reg);
    let ext = EXTERNAL.lock().unwrap_or_else(|e| e.into_inner());
    ext.iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| *c)
        .unwrap_or(0)
}

pub fn total() -> u64 {
    let reg = registry();
    (0..reg.counters.len())
        .filter(|&s| reg.counters[s].in_total)
        .map(|s| reg.count(s))
        .sum()
}

pub fn reset() {
    let mut reg = registry();
    let sums: Vec<u64> = (0..reg.counters.len()).map(|s| reg.sum(s)).collect();
    reg.base = sums;
    drop(reg);
    EXTERNAL.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// All non-zero counters, sorted by name.
pub fn snapshot() -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    {
        let reg = registry();
        for s in 0..reg.counters.len() {
            let n = reg.count(s);
            if n > 0 {
                out.push((reg.counters[s].name.to_string(), n));
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
        Box::new(registry()),
        Box::new(EXTERNAL.lock().unwrap_or_else(|e| e.into_inner())),
    ]
}
