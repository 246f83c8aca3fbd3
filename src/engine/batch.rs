//! Sub-batches and tasks (the table that hands them out by handle is [`super::slab`]).
//!
//! A task's status and transferred bytes share one `AtomicU64` (status in the low 8 bits,
//! bytes above), so a status read is one atomic load.

use super::{code, status, Error, Result};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The task has not finished (or finishes inline).
const CLAIM_OPEN: u8 = 0;
/// An asynchronous copy of the task's run is in flight.
const CLAIM_IN_FLIGHT: u8 = 1;
/// The run of the task has been finished by one thread.
const CLAIM_DONE: u8 = 2;

/// Largest transferred-bytes value the status word can carry (2^56 − 1).
pub const MAX_TASK_BYTES: u64 = (1 << 56) - 1;

/// `Task::event` of a task whose run waits for several events (striped lanes).
pub const MULTI_EVENT: u64 = u64::MAX;

/// One task (one request).
pub struct Task {
    word: AtomicU64,
    claim: AtomicU8,
    /// The event an asynchronous copy of this task's run records (0: none;
    /// [`MULTI_EVENT`]: several, kept with the run).
    event: AtomicU64,
    /// First task index (low 32 bits) and number of tasks (high 32 bits) of the run this
    /// task's asynchronous copy belongs to.
    run: AtomicU64,
    /// Bytes the task moves when its asynchronous copy completes.
    want: AtomicU64,
    error: OnceLock<String>,
}

impl Task {
    fn new() -> Self {
        Task {
            word: AtomicU64::new(status::INITIAL as u64),
            claim: AtomicU8::new(CLAIM_OPEN),
            event: AtomicU64::new(0),
            run: AtomicU64::new(0),
            want: AtomicU64::new(0),
            error: OnceLock::new(),
        }
    }

    /// As new, in place (the sub-batch is reused).
    fn reset(&mut self) {
        *self.word.get_mut() = status::INITIAL as u64;
        *self.claim.get_mut() = CLAIM_OPEN;
        *self.event.get_mut() = 0;
        *self.run.get_mut() = 0;
        *self.want.get_mut() = 0;
        if self.error.get().is_some() {
            self.error = OnceLock::new();
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

    pub(crate) fn complete(&self, bytes: u64) {
        self.store(status::COMPLETED, bytes);
    }

    pub(crate) fn fail(&self, msg: String) {
        let _ = self.error.set(msg);
        self.store(status::FAILED, 0);
    }

    /// The failure message, if the task failed.
    pub fn error(&self) -> Option<&str> {
        self.error.get().map(|s| s.as_str())
    }

    /// Marks the task as part of the asynchronous run `[head, head + len)` waiting for
    /// `event`; `want` is what it reports on completion. The event is published last, so a
    /// poller that sees it sees the rest.
    pub(crate) fn set_in_flight(&self, head: usize, len: usize, event: u64, want: u64) {
        self.claim.store(CLAIM_IN_FLIGHT, Ordering::Relaxed);
        self.want.store(want, Ordering::Relaxed);
        self.run
            .store(head as u64 | ((len as u64) << 32), Ordering::Relaxed);
        self.event.store(event, Ordering::Release);
    }

    /// The event this task's asynchronous copy waits for (0: none).
    pub(crate) fn event(&self) -> u64 {
        self.event.load(Ordering::Acquire)
    }

    /// `(head, len)` of the asynchronous run this task belongs to.
    pub(crate) fn run(&self) -> (usize, usize) {
        let r = self.run.load(Ordering::Relaxed);
        ((r & 0xffff_ffff) as usize, (r >> 32) as usize)
    }

    /// Bytes the task reports when its asynchronous copy completes.
    pub(crate) fn want(&self) -> u64 {
        self.want.load(Ordering::Relaxed)
    }

    /// Takes the right to finish this task's run: true for exactly one caller.
    pub(crate) fn take_finish(&self) -> bool {
        self.claim
            .compare_exchange(
                CLAIM_IN_FLIGHT,
                CLAIM_DONE,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

/// A sub-batch: a fixed-capacity array of tasks.
pub struct SubBatch {
    /// At least `limit` tasks (more when a recycled sub-batch is reused for a smaller one).
    tasks: Box<[Task]>,
    /// The capacity asked for at allocation.
    limit: usize,
    reserved: AtomicUsize,
    pub progress_token: u64,
    /// Set when the host frees the sub-batch: its tasks are no longer notified.
    freed: AtomicBool,
    /// Asynchronous runs of this sub-batch in flight.
    runs: AtomicU32,
}

impl SubBatch {
    pub(crate) fn new(max_size: usize, progress_token: u64) -> Self {
        SubBatch {
            tasks: (0..max_size).map(|_| Task::new()).collect(),
            limit: max_size,
            reserved: AtomicUsize::new(0),
            progress_token,
            freed: AtomicBool::new(false),
            runs: AtomicU32::new(0),
        }
    }

    /// Counts an asynchronous run of this sub-batch started (`+1`) or ended (`-1`).
    pub(crate) fn count_run(&self, started: bool) {
        if started {
            self.runs.fetch_add(1, Ordering::AcqRel);
        } else {
            self.runs.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether an asynchronous run of this sub-batch is in flight.
    pub fn has_runs(&self) -> bool {
        self.runs.load(Ordering::Acquire) > 0
    }

    /// Task slots it holds (at least its capacity).
    pub(crate) fn slots(&self) -> usize {
        self.tasks.len()
    }

    /// Records that the host freed it.
    pub(crate) fn mark_freed(&self) {
        self.freed.store(true, Ordering::Release);
    }

    /// Whether the host has freed this sub-batch (its progress token may be gone).
    pub fn is_freed(&self) -> bool {
        self.freed.load(Ordering::Acquire)
    }

    /// Makes a freed sub-batch as good as new for `max_size` tasks (`max_size` ≤ its tasks).
    pub(crate) fn reset(&mut self, max_size: usize, progress_token: u64) {
        for t in self.tasks[..*self.reserved.get_mut()].iter_mut() {
            t.reset();
        }
        self.limit = max_size;
        self.reserved.store(0, Ordering::Release);
        self.progress_token = progress_token;
        *self.freed.get_mut() = false;
        *self.runs.get_mut() = 0;
    }

    /// Number of tasks submitted so far (TENT's `SubBatch::size()`).
    pub fn size(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }

    /// The capacity given at allocation.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.limit
    }

    /// Reserves `n` consecutive task slots; returns the first index.
    pub(crate) fn reserve(&self, n: usize) -> Result<usize> {
        let cap = self.limit;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::slab::Slab;

    #[test]
    fn capacity_status_word_and_finishing_once() {
        let s = Slab::default();
        let b = s.get(s.allocate(3, 0).unwrap()).unwrap();
        assert_eq!(b.reserve(2).unwrap(), 0);
        assert_eq!(b.reserve(2).unwrap_err().code, code::TOO_MANY_REQUESTS);
        assert_eq!(b.reserve(1).unwrap(), 2);
        assert_eq!(b.size(), 3);
        let t = b.task(1).unwrap();
        assert_eq!(t.load(), (status::INITIAL, 0));
        t.set_pending();
        t.complete(1 << 40);
        assert_eq!(t.load(), (status::COMPLETED, 1 << 40));
        let u = b.task(2).unwrap();
        u.set_in_flight(1, 2, 0x55, 4096);
        assert_eq!(u.event(), 0x55);
        assert_eq!(u.run(), (1, 2));
        assert_eq!(u.want(), 4096);
        assert!(u.take_finish(), "the first finisher wins");
        assert!(!u.take_finish(), "nobody finishes twice");
        assert!(b.task(3).is_err());
        b.task(0).unwrap().fail("boom".into());
        assert_eq!(b.task(0).unwrap().load().0, status::FAILED);
        assert_eq!(b.task(0).unwrap().error(), Some("boom"));
    }
}
