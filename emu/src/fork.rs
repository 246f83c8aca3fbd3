//! Fork safety: a lock held by another thread at `fork` would stay locked forever in the child
//! (that thread does not exist there). Before a fork the process-wide locks are taken (read-write
//! locks for writing), in the order the rest of the emulator nests them (global maps first, then
//! the per-device, per-stream, per-event and per-port locks inside them), and released again in
//! parent and child.
//! Stream worker threads are restarted lazily in the child (see `stream.rs`).

use std::any::Any;
use std::cell::RefCell;
use std::sync::OnceLock;

/// Takes the emulator's own locks (global maps, devices, streams, events, ports), in order.
type LockState = fn(&mut Vec<Box<dyn Any>>);

/// Given by the emulator when it registers the handlers.
static LOCK_STATE: OnceLock<LockState> = OnceLock::new();

thread_local! {
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

extern "C" fn prepare() {
    let _ = std::panic::catch_unwind(|| {
        let mut held: Vec<Box<dyn Any>> = Vec::new();
        // The handlers are registered while the emulator is made: if another thread is still
        // making it, `lock_state` waits (its `OnceLock` would otherwise stay "being made" in
        // the child).
        if let Some(lock_state) = LOCK_STATE.get() {
            lock_state(&mut held);
        }
        held.push(crate::faults::lock_for_fork());
        held.extend(crate::counters::lock_for_fork());
        let _ = HELD.try_with(|h| *h.borrow_mut() = held);
    });
}

extern "C" fn release() {
    let _ = std::panic::catch_unwind(|| {
        // Release in reverse order of acquisition.
        let _ = HELD.try_with(|h| {
            let mut h = h.borrow_mut();
            while let Some(g) = h.pop() {
                drop(g);
            }
        });
    });
}

/// Registers the handlers (once per process; children inherit them); `lock_state` takes the
/// emulator's own locks before a fork.
pub fn register(lock_state: LockState) {
    if LOCK_STATE.set(lock_state).is_err() {
        return;
    }
    unsafe { libc::pthread_atfork(Some(prepare), Some(release), Some(release)) };
}
