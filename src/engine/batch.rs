//! Sub-batches and tasks.
//!
//! A task's status and transferred bytes share one `AtomicU64` (status in the low 8 bits,
//! bytes above), so a status read is one atomic load. Sub-batches are addressed by
//! generation-checked `u64` handles: a stale, foreign or double-freed handle is an error.

use super::{code, status, Error, Result};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

const CLAIM_QUEUED: u8 = 0;
const CLAIM_RUNNING: u8 = 1;
const CLAIM_CANCELED: u8 = 2;

/// Largest transferred-bytes value the status word can carry (2^56 − 1).
pub const MAX_TASK_BYTES: u64 = (1 << 56) - 1;

/// One task (one request).
pub struct Task {
    word: AtomicU64,
    claim: AtomicU8,
    /// Lanes still running (striped copies).
    pub(crate) lanes: AtomicU32,
    /// Set when a lane failed.
    pub(crate) lane_failed: AtomicBool,
    error: OnceLock<String>,
}

impl Task {
    fn new() -> Self {
        Task {
            word: AtomicU64::new(status::INITIAL as u64),
            claim: AtomicU8::new(CLAIM_QUEUED),
            lanes: AtomicU32::new(0),
            lane_failed: AtomicBool::new(false),
            error: OnceLock::new(),
        }
    }

    /// `(status, transferred bytes)` from one atomic load.
    pub fn load(&self) -> (u8, u64) {
        let w = self.word.load(Ordering::Acquire);
        ((w & 0xff) as u8, w >> 8)
    }

    fn store(&self, st: u8, bytes: u64) {
        self.word.store(
            (bytes.min(MAX_TASK_BYTES) << 8) | st as u64,
            Ordering::Release,
        );
    }

    pub(crate) fn set_pending(&self) {
        self.store(status::PENDING, 0);
    }

    /// Claims the task for execution; false if it was cancelled first.
    pub(crate) fn claim(&self) -> bool {
        self.claim
            .compare_exchange(
                CLAIM_QUEUED,
                CLAIM_RUNNING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Cancels the task if no worker has claimed it. Returns whether it was cancelled.
    pub(crate) fn cancel(&self) -> bool {
        if self
            .claim
            .compare_exchange(
                CLAIM_QUEUED,
                CLAIM_CANCELED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            self.store(status::CANCELED, 0);
            true
        } else {
            false
        }
    }

    pub(crate) fn complete(&self, bytes: u64) {
        self.store(status::COMPLETED, bytes);
    }

    /// Records a failure message without changing the status (first message wins).
    pub(crate) fn note_error(&self, msg: String) {
        let _ = self.error.set(msg);
    }

    pub(crate) fn fail(&self, msg: String) {
        let _ = self.error.set(msg);
        self.store(status::FAILED, 0);
    }

    /// The failure message, if the task failed.
    pub fn error(&self) -> Option<&str> {
        self.error.get().map(|s| s.as_str())
    }
}

/// A sub-batch: a fixed-capacity array of tasks.
pub struct SubBatch {
    tasks: Box<[Task]>,
    reserved: AtomicUsize,
    pub progress_token: u64,
}

impl SubBatch {
    fn new(max_size: usize, progress_token: u64) -> Self {
        SubBatch {
            tasks: (0..max_size).map(|_| Task::new()).collect(),
            reserved: AtomicUsize::new(0),
            progress_token,
        }
    }

    /// Number of tasks submitted so far (TENT's `SubBatch::size()`).
    pub fn size(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }

    /// The capacity given at allocation.
    pub fn capacity(&self) -> usize {
        self.tasks.len()
    }

    /// Reserves `n` consecutive task slots; returns the first index.
    pub(crate) fn reserve(&self, n: usize) -> Result<usize> {
        let cap = self.tasks.len();
        let mut cur = self.reserved.load(Ordering::Acquire);
        loop {
            let next = cur.checked_add(n).filter(|&x| x <= cap).ok_or_else(|| {
                Error::new(
                    code::TOO_MANY_REQUESTS,
                    format!("sub-batch holds {cur} of {cap} tasks; {n} more do not fit"),
                )
            })?;
            match self
                .reserved
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(cur),
                Err(v) => cur = v,
            }
        }
    }

    /// The task `id`, if it has been submitted.
    pub fn task(&self, id: u64) -> Result<&Task> {
        let n = self.size() as u64;
        if id >= n {
            return Err(Error::invalid(format!(
                "task id {id} out of range (sub-batch has {n} tasks)"
            )));
        }
        Ok(&self.tasks[id as usize])
    }

    pub(crate) fn slot(&self, idx: usize) -> &Task {
        &self.tasks[idx]
    }
}

struct Slot {
    generation: u32,
    batch: Option<Arc<SubBatch>>,
}

/// Generation-checked table of live sub-batches.
pub struct Slab {
    inner: RwLock<SlabInner>,
    /// First generation of this table's slots, distinct per table, so a handle of another
    /// transport (same slot index, small generation) is foreign here, not someone's batch.
    seed: u32,
}

impl Default for Slab {
    fn default() -> Self {
        static TABLES: AtomicU32 = AtomicU32::new(0);
        // An odd multiplier spreads consecutive tables far apart in generation space.
        let n = TABLES.fetch_add(1, Ordering::Relaxed);
        Slab {
            inner: RwLock::default(),
            seed: n.wrapping_mul(0x9E37_79B9),
        }
    }
}

#[derive(Default)]
struct SlabInner {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

fn split(handle: u64) -> (usize, u32) {
    (
        ((handle & 0xffff_ffff) as usize).wrapping_sub(1),
        (handle >> 32) as u32,
    )
}

impl Slab {
    /// Allocates a sub-batch and returns its handle (never 0).
    pub fn allocate(&self, max_size: usize, progress_token: u64) -> u64 {
        let b = Arc::new(SubBatch::new(max_size, progress_token));
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let idx = match g.free.pop() {
            Some(i) => i as usize,
            None => {
                g.slots.push(Slot {
                    generation: self.seed,
                    batch: None,
                });
                g.slots.len() - 1
            }
        };
        let s = &mut g.slots[idx];
        s.generation = s.generation.wrapping_add(1).max(1);
        s.batch = Some(b);
        ((s.generation as u64) << 32) | (idx as u64 + 1)
    }

    /// The sub-batch behind `handle`.
    pub fn get(&self, handle: u64) -> Result<Arc<SubBatch>> {
        let (idx, gen) = split(handle);
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        match g.slots.get(idx) {
            Some(Slot {
                generation,
                batch: Some(b),
            }) if *generation == gen => Ok(b.clone()),
            _ => Err(Error::invalid(format!(
                "sub-batch handle {handle:#x} is not live (stale, freed or foreign)"
            ))),
        }
    }

    /// Frees `handle`; a second free of the same handle is an error.
    pub fn free(&self, handle: u64) -> Result<()> {
        let (idx, gen) = split(handle);
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match g.slots.get_mut(idx) {
            Some(s) if s.generation == gen && s.batch.is_some() => {
                s.batch = None;
                g.free.push(idx as u32);
                Ok(())
            }
            _ => Err(Error::invalid(format!(
                "sub-batch handle {handle:#x} is not live (stale, freed or foreign)"
            ))),
        }
    }

    /// Number of live sub-batches.
    pub fn live(&self) -> usize {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.slots.iter().filter(|s| s.batch.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_generation_checked() {
        let s = Slab::default();
        let a = s.allocate(4, 7);
        assert_ne!(a, 0);
        assert_eq!(s.get(a).unwrap().progress_token, 7);
        s.free(a).unwrap();
        assert!(s.free(a).is_err(), "double free");
        assert!(s.get(a).is_err(), "stale");
        let b = s.allocate(4, 8);
        assert_ne!(a, b, "slot reused with a new generation");
        assert!(s.get(a).is_err());
        assert!(s.get(0).is_err());
        assert!(s.get(u64::MAX).is_err());
        assert!(s.get(b ^ (1 << 40)).is_err());
        assert_eq!(s.live(), 1);
        let other = Slab::default();
        let f = other.allocate(4, 9);
        assert!(s.get(f).is_err(), "a handle of another table is foreign");
        assert!(other.get(b).is_err());
    }

    #[test]
    fn capacity_and_status_word() {
        let s = Slab::default();
        let b = s.get(s.allocate(3, 0)).unwrap();
        assert_eq!(b.reserve(2).unwrap(), 0);
        assert_eq!(b.reserve(2).unwrap_err().code, code::TOO_MANY_REQUESTS);
        assert_eq!(b.reserve(1).unwrap(), 2);
        assert_eq!(b.size(), 3);
        let t = b.task(1).unwrap();
        assert_eq!(t.load(), (status::INITIAL, 0));
        t.set_pending();
        assert!(t.claim());
        assert!(!t.cancel(), "claimed tasks cannot be cancelled");
        t.complete(1 << 40);
        assert_eq!(t.load(), (status::COMPLETED, 1 << 40));
        let u = b.task(2).unwrap();
        assert!(u.cancel());
        assert!(!u.claim());
        assert_eq!(u.load().0, status::CANCELED);
        assert!(b.task(3).is_err());
        b.task(0).unwrap().fail("boom".into());
        assert_eq!(b.task(0).unwrap().load().0, status::FAILED);
        assert_eq!(b.task(0).unwrap().error(), Some("boom"));
    }
}
