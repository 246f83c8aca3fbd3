//! Read-mostly data shared by every thread that calls the library: a value replaced
//! copy-on-write by writers, and read through a per-thread cached reference that is checked
//! against the value's generation with one atomic load. A read therefore takes no lock and
//! writes no shared cache line.
//!
//! Only for plain data: a thread keeps the value it last read until it reads again (or exits),
//! so nothing in it may own a resource whose release matters (use `arc-swap` for those).

use super::spin::SpinLock;
use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Values cached per thread; snapshot `id` lives in slot `id % CACHED` (ids are handed out
/// in order, so the snapshots of one process rarely share a slot).
const CACHED: usize = 16;

struct Entry {
    id: u64,
    generation: u64,
    /// Keeps `value` alive: the `Arc<T>` of snapshot `id` at `generation`.
    _keep: Arc<dyn Any + Send + Sync>,
    /// `Arc::as_ptr` of `_keep`, as the `T` that snapshot `id` holds.
    value: *const (),
}

thread_local! {
    static CACHE: RefCell<[Option<Entry>; CACHED]> = const { RefCell::new([const { None }; CACHED]) };
}

/// A shared value.
pub struct Snapshot<T> {
    /// Distinct per snapshot in the process (a per-thread cache key).
    id: u64,
    generation: AtomicU64,
    current: SpinLock<Arc<T>>,
}

impl<T: Default + Send + Sync + 'static> Default for Snapshot<T> {
    fn default() -> Self {
        Snapshot::new(T::default())
    }
}

impl<T: Send + Sync + 'static> Snapshot<T> {
    pub fn new(value: T) -> Self {
        static IDS: AtomicU64 = AtomicU64::new(1);
        Snapshot {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            current: SpinLock::new(Arc::new(value)),
        }
    }

    /// The current value (a shared reference to it).
    pub fn load(&self) -> Arc<T> {
        self.current.lock().clone()
    }

    /// Runs `f` on the current value.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let generation = self.generation.load(Ordering::Acquire);
        let mut f = Some(f);
        let done = CACHE
            .try_with(|c| {
                // A read inside a read: take the slow way.
                let mut c = c.try_borrow_mut().ok()?;
                let e = &mut c[self.id as usize % CACHED];
                let fresh = e
                    .as_ref()
                    .is_some_and(|e| e.id == self.id && e.generation == generation);
                if !fresh {
                    let keep = self.load();
                    let value = Arc::as_ptr(&keep).cast::<()>();
                    *e = Some(Entry {
                        id: self.id,
                        generation,
                        _keep: keep,
                        value,
                    });
                }
                let v = e.as_ref()?.value.cast::<T>();
                // SAFETY: only this snapshot writes entries with its id (ids are unique in the
                // process), always with a pointer into the `Arc<T>` the entry keeps, and the
                // entry stays put while the cache is borrowed.
                Some((f.take()?)(unsafe { &*v }))
            })
            .ok()
            .flatten();
        match done {
            Some(r) => r,
            None => (f.take().expect("not called yet"))(&self.load()),
        }
    }

    /// Replaces the value with `f` applied to a copy of it; returns what `f` returns.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R
    where
        T: Clone,
    {
        let mut cur = self.current.lock();
        let mut next = T::clone(&cur);
        let out = f(&mut next);
        *cur = Arc::new(next);
        // After the store: a reader that sees the new generation reads the new value.
        self.generation.fetch_add(1, Ordering::AcqRel);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_follow_updates_across_threads_and_nest() {
        let s = Arc::new(Snapshot::new(vec![1u32]));
        assert_eq!(s.read(|v| v.clone()), vec![1]);
        let w = s.clone();
        std::thread::spawn(move || w.update(|v| v.push(2)))
            .join()
            .unwrap();
        assert_eq!(
            s.read(|v| v.clone()),
            vec![1, 2],
            "another thread's update is seen"
        );
        let t = Snapshot::new(7u8);
        let nested = s.read(|v| t.read(|x| v.len() as u8 + *x) + s.read(|w| w[0] as u8));
        assert_eq!(nested, 10, "a read inside a read");
        assert_eq!(s.update(|v| v.pop()), Some(2));
        assert_eq!(s.read(|v| v.len()), 1);
    }

    #[test]
    fn more_snapshots_than_the_cache_holds() {
        let all: Vec<Snapshot<u64>> = (0..3 * CACHED as u64).map(Snapshot::new).collect();
        for round in 0..3 {
            for (i, s) in all.iter().enumerate() {
                assert_eq!(s.read(|v| *v), i as u64 + round, "round {round}");
            }
            for s in &all {
                s.update(|v| *v += 1);
            }
        }
    }
}
