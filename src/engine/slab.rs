//! The table of live sub-batches, addressed by generation-checked `u64` handles: a stale,
//! foreign or double-freed handle is an error, never another sub-batch.
//!
//! The table is an array of slots that never moves, each behind its own small lock, so looking
//! a handle up touches only that sub-batch's slot: threads working on different sub-batches
//! share no lock and no written cache line. Freed sub-batches are kept for reuse, first by the
//! thread that freed them.

use super::batch::SubBatch;
use super::spin::{SpinGuard, SpinLock};
use super::{code, Error, Result};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

/// Slots per chunk of the handle table.
const CHUNK: usize = 1024;
/// Chunks of the handle table: at most `CHUNK * CHUNKS` sub-batches live at once.
const CHUNKS: usize = 1024;

#[derive(Default)]
struct SlotInner {
    generation: u32,
    batch: Option<Arc<SubBatch>>,
}

type Slot = SpinLock<SlotInner>;

/// Generation-checked table of live sub-batches.
pub struct Slab {
    shared: Arc<SlabShared>,
}

struct SlabShared {
    chunks: Box<[OnceLock<Box<[Slot]>>]>,
    /// Allocation bookkeeping (allocate and free; each thread first uses its own cache).
    alloc: SpinLock<SlabAlloc>,
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
            shared: Arc::new(SlabShared {
                chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
                alloc: SpinLock::default(),
                seed: n.wrapping_mul(0x9E37_79B9),
            }),
        }
    }
}

/// Freed sub-batches kept for reuse, so that TENT's allocate/submit/free cycle per batch
/// allocates nothing in steady state.
const SPARE_BATCHES: usize = 64;
/// Largest sub-batch kept for reuse (tasks).
const SPARE_MAX_TASKS: usize = 4096;
/// Freed (slot, sub-batch) pairs a thread keeps for its next allocations, so a thread that
/// allocates and frees sub-batches (TENT does, per batch) touches no lock shared with other
/// threads.
const THREAD_SPARES: usize = 4;

#[derive(Default)]
struct SlabAlloc {
    /// Slots ever used.
    used: usize,
    free: Vec<u32>,
    spare: Vec<Arc<SubBatch>>,
}

/// A freed slot and its sub-batch, kept by the thread that freed them.
struct ThreadSpare {
    table: std::sync::Weak<SlabShared>,
    idx: u32,
    /// None once taken back by an allocation.
    batch: Option<Arc<SubBatch>>,
}

impl Drop for ThreadSpare {
    fn drop(&mut self) {
        // Back to the table's own lists (the thread exits, or the spare is evicted).
        if let (Some(t), Some(b)) = (self.table.upgrade(), self.batch.take()) {
            t.release(self.idx, b);
        }
    }
}

thread_local! {
    static THREAD_CACHE: std::cell::RefCell<Vec<ThreadSpare>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn split(handle: u64) -> (usize, u32) {
    (
        ((handle & 0xffff_ffff) as usize).wrapping_sub(1),
        (handle >> 32) as u32,
    )
}

/// Whether a freed sub-batch of `have` tasks suits a request for `want`: big enough, not more
/// than 4× too big, and referred to by nobody else.
fn fits(b: &Arc<SubBatch>, want: usize) -> bool {
    let have = b.slots();
    have >= want && have <= want.saturating_mul(4).max(16) && Arc::strong_count(b) == 1
}

impl SlabShared {
    fn slot(&self, idx: usize) -> Option<&Slot> {
        self.chunks.get(idx / CHUNK)?.get()?.get(idx % CHUNK)
    }

    /// Returns a freed slot and its sub-batch to the table's lists.
    fn release(&self, idx: u32, b: Arc<SubBatch>) {
        let mut g = self.alloc.lock();
        g.free.push(idx);
        if g.spare.len() < SPARE_BATCHES && b.slots() <= SPARE_MAX_TASKS {
            g.spare.push(b);
        }
    }

    /// A free slot and a sub-batch from the table's lists.
    fn take(&self, max_size: usize, progress_token: u64) -> Result<(usize, Arc<SubBatch>)> {
        let mut g = self.alloc.lock();
        let idx = match g.free.pop() {
            Some(i) => i as usize,
            None if g.used < CHUNK * CHUNKS => {
                let i = g.used;
                let chunk = self.chunks[i / CHUNK].get_or_init(|| {
                    (0..CHUNK)
                        .map(|_| {
                            SpinLock::new(SlotInner {
                                generation: self.seed,
                                batch: None,
                            })
                        })
                        .collect()
                });
                debug_assert_eq!(chunk.len(), CHUNK);
                g.used += 1;
                i
            }
            None => {
                return Err(Error::new(
                    code::TOO_MANY_REQUESTS,
                    format!("{} sub-batches are live; free some first", CHUNK * CHUNKS),
                ))
            }
        };
        let b = match g.spare.iter().position(|b| fits(b, max_size)) {
            Some(i) => renew(g.spare.swap_remove(i), max_size, progress_token),
            None => Arc::new(SubBatch::new(max_size, progress_token)),
        };
        Ok((idx, b))
    }
}

/// A freed sub-batch made as good as new (a fresh one if somebody still holds it).
fn renew(mut b: Arc<SubBatch>, max_size: usize, progress_token: u64) -> Arc<SubBatch> {
    match Arc::get_mut(&mut b) {
        Some(m) => {
            m.reset(max_size, progress_token);
            b
        }
        None => Arc::new(SubBatch::new(max_size, progress_token)),
    }
}

impl Slab {
    fn slot(&self, idx: usize) -> Option<&Slot> {
        self.shared.slot(idx)
    }

    fn lock(s: &Slot) -> SpinGuard<'_, SlotInner> {
        s.lock()
    }

    /// A slot and sub-batch this thread freed earlier in this table, if one fits.
    fn thread_spare(&self, max_size: usize) -> Option<(usize, Arc<SubBatch>)> {
        THREAD_CACHE
            .try_with(|c| {
                let mut c = c.try_borrow_mut().ok()?;
                let i = c.iter().position(|e| {
                    std::ptr::eq(e.table.as_ptr(), Arc::as_ptr(&self.shared))
                        && e.batch.as_ref().is_some_and(|b| fits(b, max_size))
                })?;
                let mut e = c.swap_remove(i);
                // Taken: its drop returns nothing to the table.
                let batch = e.batch.take()?;
                Some((e.idx as usize, batch))
            })
            .ok()
            .flatten()
    }

    /// Allocates a sub-batch and returns its handle (never 0).
    pub fn allocate(&self, max_size: usize, progress_token: u64) -> Result<u64> {
        let (idx, b) = match self.thread_spare(max_size) {
            Some((idx, b)) => (idx, renew(b, max_size, progress_token)),
            None => self.shared.take(max_size, progress_token)?,
        };
        let slot = self.slot(idx).expect("slot of an allocated chunk");
        let mut s = Self::lock(slot);
        s.generation = s.generation.wrapping_add(1).max(1);
        s.batch = Some(b);
        Ok(((s.generation as u64) << 32) | (idx as u64 + 1))
    }

    #[cold]
    fn not_live(handle: u64) -> Error {
        Error::invalid(format!(
            "sub-batch handle {handle:#x} is not live (stale, freed or foreign)"
        ))
    }

    /// Runs `f` on the sub-batch behind `handle`, with its slot held: the sub-batch cannot be
    /// freed meanwhile.
    pub fn with<T>(&self, handle: u64, f: impl FnOnce(&Arc<SubBatch>) -> Result<T>) -> Result<T> {
        let (idx, gen) = split(handle);
        let slot = self.slot(idx).ok_or_else(|| Self::not_live(handle))?;
        let s = Self::lock(slot);
        match &s.batch {
            Some(b) if s.generation == gen => f(b),
            _ => Err(Self::not_live(handle)),
        }
    }

    /// The sub-batch behind `handle`.
    pub fn get(&self, handle: u64) -> Result<Arc<SubBatch>> {
        self.with(handle, |b| Ok(b.clone()))
    }

    /// Frees `handle` and allocates a sub-batch of `max_size` in its place, reusing its slot
    /// and memory when nothing else refers to them (else as `free` then `allocate`). Returns
    /// the new handle; the old one is stale. A handle that is not live changes nothing.
    pub fn recycle(&self, handle: u64, max_size: usize, progress_token: u64) -> Result<u64> {
        self.renew(handle, max_size, progress_token).map(|(h, _)| h)
    }

    /// [`Slab::recycle`], also returning the new sub-batch (one slot lock when it is renewed
    /// in place).
    pub fn renew(
        &self,
        handle: u64,
        max_size: usize,
        progress_token: u64,
    ) -> Result<(u64, Arc<SubBatch>)> {
        let (idx, gen) = split(handle);
        let slot = self.slot(idx).ok_or_else(|| Self::not_live(handle))?;
        {
            let mut s = Self::lock(slot);
            if s.generation != gen || s.batch.is_none() {
                return Err(Self::not_live(handle));
            }
            let fits_here = s.batch.as_ref().is_some_and(|b| fits(b, max_size));
            if fits_here {
                if let Some(b) = s.batch.as_mut().and_then(Arc::get_mut) {
                    b.reset(max_size, progress_token);
                    s.generation = s.generation.wrapping_add(1).max(1);
                    let h = ((s.generation as u64) << 32) | (idx as u64 + 1);
                    return Ok((h, s.batch.clone().expect("checked above")));
                }
            }
        }
        self.free(handle)?;
        let h = self.allocate(max_size, progress_token)?;
        Ok((h, self.get(h)?))
    }

    /// Frees `handle`; a second free of the same handle is an error. Returns the sub-batch.
    pub fn free(&self, handle: u64) -> Result<Arc<SubBatch>> {
        let (idx, gen) = split(handle);
        let slot = self.slot(idx).ok_or_else(|| Self::not_live(handle))?;
        let b = {
            let mut s = Self::lock(slot);
            if s.generation != gen || s.batch.is_none() {
                return Err(Self::not_live(handle));
            }
            let b = s.batch.take().expect("checked above");
            b.mark_freed();
            b
        };
        // Kept by this thread for its next allocation when small enough; else back to the
        // table. Reused only once no copy or poller refers to it any more.
        let keep = b.slots() <= SPARE_MAX_TASKS
            && THREAD_CACHE
                .try_with(|c| {
                    let Ok(mut c) = c.try_borrow_mut() else {
                        return false;
                    };
                    if c.len() >= THREAD_SPARES {
                        // The oldest goes back to its table (its drop does that).
                        c.remove(0);
                    }
                    c.push(ThreadSpare {
                        table: Arc::downgrade(&self.shared),
                        idx: idx as u32,
                        batch: Some(b.clone()),
                    });
                    true
                })
                .unwrap_or(false);
        if !keep {
            self.shared.release(idx as u32, b.clone());
        }
        Ok(b)
    }

    /// Number of live sub-batches.
    #[cfg(test)]
    pub fn live(&self) -> usize {
        self.shared
            .chunks
            .iter()
            .filter_map(|c| c.get())
            .flat_map(|c| c.iter())
            .filter(|s| s.lock().batch.is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::status;

    #[test]
    fn handles_are_generation_checked() {
        let s = Slab::default();
        let a = s.allocate(4, 7).unwrap();
        assert_ne!(a, 0);
        assert_eq!(s.get(a).unwrap().progress_token, 7);
        s.free(a).unwrap();
        assert!(s.free(a).is_err(), "double free");
        assert!(s.get(a).is_err(), "stale");
        let b = s.allocate(4, 8).unwrap();
        assert_ne!(a, b, "slot reused with a new generation");
        assert!(s.get(a).is_err());
        assert!(s.get(0).is_err());
        assert!(s.get(u64::MAX).is_err());
        assert!(s.get(b ^ (1 << 40)).is_err());
        assert!(s.get((1 << 32) | ((CHUNK * CHUNKS) as u64 + 5)).is_err());
        assert_eq!(s.live(), 1);
        let other = Slab::default();
        let f = other.allocate(4, 9).unwrap();
        assert!(s.get(f).is_err(), "a handle of another table is foreign");
        assert!(other.get(b).is_err());
    }

    #[test]
    fn the_table_grows_past_one_chunk() {
        let s = Slab::default();
        let hs: Vec<u64> = (0..CHUNK as u64 + 10)
            .map(|i| s.allocate(1, i).unwrap())
            .collect();
        for (i, h) in hs.iter().enumerate() {
            assert_eq!(s.get(*h).unwrap().progress_token, i as u64);
        }
        assert_eq!(s.live(), CHUNK + 10);
        for h in &hs {
            s.free(*h).unwrap();
        }
        assert_eq!(s.live(), 0);
    }

    #[test]
    fn freed_sub_batches_are_reused_as_new() {
        let s = Slab::default();
        let a = s.allocate(8, 1).unwrap();
        {
            let b = s.get(a).unwrap();
            assert_eq!(b.reserve(3).unwrap(), 0);
            b.task(0).unwrap().fail("boom".into());
            b.task(1).unwrap().complete(5);
            b.task(2).unwrap().set_in_flight(2, 1, 77, 9);
        }
        drop(s.free(a).unwrap());
        let c = s.allocate(4, 2).unwrap();
        assert!(s.get(a).is_err(), "the old handle stays dead");
        let b = s.get(c).unwrap();
        assert_eq!(b.progress_token, 2);
        assert_eq!(
            b.capacity(),
            4,
            "the new limit, not the recycled array's size"
        );
        assert_eq!(b.size(), 0);
        assert_eq!(b.reserve(4).unwrap(), 0);
        assert_eq!(b.reserve(1).unwrap_err().code, code::TOO_MANY_REQUESTS);
        for i in 0..4 {
            let t = b.task(i).unwrap();
            assert_eq!(t.load(), (status::INITIAL, 0), "task {i} reset");
            assert!(t.error().is_none(), "task {i} message cleared");
            assert_eq!(t.event(), 0, "task {i} has no event");
            assert!(!t.take_finish(), "task {i} has nothing in flight");
        }
    }

    #[test]
    fn a_thread_reuses_what_it_freed_and_hands_it_back_when_it_exits() {
        let s = Arc::new(Slab::default());
        let a = s.allocate(8, 1).unwrap();
        let pa = Arc::as_ptr(&s.get(a).unwrap());
        s.free(a).unwrap();
        let b = s.allocate(8, 2).unwrap();
        assert_ne!(a, b, "a new handle");
        assert!(s.get(a).is_err());
        assert_eq!(
            Arc::as_ptr(&s.get(b).unwrap()),
            pa,
            "the same memory, from this thread"
        );
        let s2 = s.clone();
        let theirs = std::thread::spawn(move || {
            let x = s2.allocate(8, 3).unwrap();
            let p = Arc::as_ptr(&s2.get(x).unwrap()) as usize;
            s2.free(x).unwrap();
            p
        })
        .join()
        .unwrap();
        let c = s.allocate(8, 4).unwrap();
        assert_eq!(
            Arc::as_ptr(&s.get(c).unwrap()) as usize,
            theirs,
            "what an exited thread kept went back to the table"
        );
        for _ in 0..3 * THREAD_SPARES {
            let h = s.allocate(8, 5).unwrap();
            s.free(h).unwrap();
        }
        assert_eq!(s.live(), 2);
    }

    #[test]
    fn recycling_renews_in_place_or_falls_back() {
        let s = Slab::default();
        let a = s.allocate(8, 1).unwrap();
        let pa = Arc::as_ptr(&s.get(a).unwrap());
        s.get(a).unwrap().reserve(3).unwrap();
        s.get(a).unwrap().task(0).unwrap().fail("x".into());
        let b = s.recycle(a, 6, 2).unwrap();
        assert!(s.get(a).is_err(), "the old handle is stale");
        let nb = s.get(b).unwrap();
        assert_eq!(Arc::as_ptr(&nb), pa, "the same memory");
        assert_eq!((nb.size(), nb.capacity(), nb.progress_token), (0, 6, 2));
        assert!(nb.task(0).is_err());
        nb.reserve(1).unwrap();
        assert_eq!(nb.task(0).unwrap().load(), (status::INITIAL, 0));
        assert!(nb.task(0).unwrap().error().is_none());
        // Held elsewhere (a poller, a copy in flight): a fresh sub-batch instead.
        let c = s.recycle(b, 6, 3).unwrap();
        assert!(!Arc::ptr_eq(&nb, &s.get(c).unwrap()));
        drop(nb);
        // Too big for the memory: a fresh one too; a stale handle changes nothing.
        let d = s.recycle(c, 10_000, 4).unwrap();
        assert_eq!(s.get(d).unwrap().capacity(), 10_000);
        assert!(s.recycle(c, 6, 5).is_err());
        assert_eq!(s.live(), 1);
    }

    #[test]
    fn a_sub_batch_still_in_use_is_not_reused() {
        let s = Slab::default();
        let a = s.allocate(4, 1).unwrap();
        let held = s.get(a).unwrap();
        held.reserve(1).unwrap();
        drop(s.free(a).unwrap());
        let c = s.allocate(4, 2).unwrap();
        let b = s.get(c).unwrap();
        assert!(
            !Arc::ptr_eq(&held, &b),
            "a poller still holds the freed one"
        );
        assert_eq!(held.size(), 1);
    }
}
