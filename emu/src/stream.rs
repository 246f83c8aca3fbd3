//! Streams (in-order work queues, each run by its own emulator thread) and events.
//!
//! Worker threads do not survive `fork`. Each queue remembers the process its work belongs to;
//! a child that uses an inherited stream drops the work queued before the fork (the parent
//! runs it: running it again would write the shared device memory twice) and starts its own
//! worker lazily. Events recorded before the fork count as complete in the child.
//!
//! `destroy` joins the stream's thread: once `tangStreamDestroy` returns, the stream's queued
//! work has run and its thread is gone, so no emulator thread outlives the stream (nor runs
//! code of a runtime library that is unloaded afterwards).

use crate::mem::pid;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

pub type Op = Box<dyn FnOnce() -> u32 + Send>;

struct Queue {
    ops: VecDeque<Op>,
    enqueued: u64,
    completed: u64,
    /// Process whose thread runs this queue; 0 = no worker.
    worker_pid: u32,
    /// The worker thread of this process (running, or exited and not joined yet).
    worker: Option<JoinHandle<()>>,
    /// Process the queued work belongs to.
    owner_pid: u32,
    destroyed: bool,
    /// First error of an asynchronous operation, reported by the next synchronize.
    error: u32,
}

pub struct Stream {
    pub dev: u32,
    q: Mutex<Queue>,
    work: Condvar,
    done: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stream {
    pub fn new(dev: u32) -> Arc<Stream> {
        Arc::new(Stream {
            dev,
            q: Mutex::new(Queue {
                ops: VecDeque::new(),
                enqueued: 0,
                completed: 0,
                worker_pid: 0,
                worker: None,
                owner_pid: pid(),
                destroyed: false,
                error: 0,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
        })
    }

    /// In a child after fork: forgets the parent's queued work.
    fn adopt(q: &mut Queue) {
        let me = pid();
        if q.owner_pid != me {
            q.ops.clear();
            q.completed = q.enqueued;
            q.worker_pid = 0;
            // The parent's thread does not exist here: neither join nor detach it.
            if let Some(h) = q.worker.take() {
                std::mem::forget(h);
            }
            q.owner_pid = me;
        }
    }

    /// Starts a worker in this process if the queue has none here (first use, after the worker
    /// left a destroyed stream, or after fork).
    fn ensure_worker(self: &Arc<Self>, q: &mut Queue) {
        let me = pid();
        if q.worker_pid == me || q.ops.is_empty() {
            return;
        }
        // A previous worker of this process left a destroyed stream: it has already dropped
        // the lock for the last time, so joining it here is immediate.
        if let Some(old) = q.worker.take() {
            let _ = old.join();
        }
        let s = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("tang-emu-stream-d{}", self.dev))
            .spawn(move || s.run());
        if let Ok(h) = spawned {
            q.worker_pid = me;
            q.worker = Some(h);
        }
    }

    fn run(self: Arc<Self>) {
        let me = pid();
        loop {
            let op = {
                let mut q = lock(&self.q);
                loop {
                    if q.worker_pid != me {
                        return;
                    }
                    if let Some(op) = q.ops.pop_front() {
                        break op;
                    }
                    if q.destroyed {
                        q.worker_pid = 0;
                        return;
                    }
                    q = self.work.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(op))
                .unwrap_or(crate::errors::tangErrorUnknown);
            let mut q = lock(&self.q);
            q.completed += 1;
            if r != 0 && q.error == 0 {
                q.error = r;
            }
            self.done.notify_all();
        }
    }

    /// The queue lock, held across `fork` (see `fork.rs`).
    ///
    /// # Safety
    /// The stream must outlive the guard.
    pub unsafe fn lock_for_fork(&self) -> Box<dyn std::any::Any> {
        let g = lock(&self.q);
        Box::new(std::mem::transmute::<
            MutexGuard<'_, Queue>,
            MutexGuard<'static, Queue>,
        >(g))
    }

    pub fn enqueue(self: &Arc<Self>, op: Op) {
        let mut q = lock(&self.q);
        Self::adopt(&mut q);
        q.ops.push_back(op);
        q.enqueued += 1;
        self.ensure_worker(&mut q);
        self.work.notify_one();
    }

    /// True when every queued operation has finished.
    pub fn idle(self: &Arc<Self>) -> bool {
        let mut q = lock(&self.q);
        Self::adopt(&mut q);
        q.completed >= q.enqueued
    }

    /// Waits for everything queued so far; returns (and clears) the first asynchronous error.
    pub fn synchronize(self: &Arc<Self>) -> u32 {
        let mut q = lock(&self.q);
        Self::adopt(&mut q);
        let target = q.enqueued;
        if q.completed < target {
            self.ensure_worker(&mut q);
        }
        while q.completed < target {
            q = self.done.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        std::mem::take(&mut q.error)
    }

    /// Queued work still runs; the worker exits once the queue is empty, and this returns
    /// only after it has (unless called from the worker itself, by an operation it runs).
    pub fn destroy(self: &Arc<Self>) {
        let worker = {
            let mut q = lock(&self.q);
            Self::adopt(&mut q);
            q.destroyed = true;
            if !q.ops.is_empty() {
                self.ensure_worker(&mut q);
            }
            self.work.notify_all();
            match &q.worker {
                Some(h) if h.thread().id() == std::thread::current().id() => None,
                _ => q.worker.take(),
            }
        };
        if let Some(h) = worker {
            let _ = h.join();
        }
    }
}

struct EvState {
    recorded: u64,
    completed: u64,
    time: Option<Instant>,
    /// Process whose streams complete the recordings.
    owner_pid: u32,
}

pub struct Event {
    pub dev: u32,
    pub flags: u32,
    st: Mutex<EvState>,
    cv: Condvar,
}

impl Event {
    pub fn new(dev: u32, flags: u32) -> Arc<Event> {
        Arc::new(Event {
            dev,
            flags,
            st: Mutex::new(EvState {
                recorded: 0,
                completed: 0,
                time: None,
                owner_pid: pid(),
            }),
            cv: Condvar::new(),
        })
    }

    /// The state lock, held across `fork` (see `fork.rs`).
    ///
    /// # Safety
    /// The event must outlive the guard.
    pub unsafe fn lock_for_fork(&self) -> Box<dyn std::any::Any> {
        let g = lock(&self.st);
        Box::new(std::mem::transmute::<
            MutexGuard<'_, EvState>,
            MutexGuard<'static, EvState>,
        >(g))
    }

    /// The state; in a child after fork, recordings made before the fork count as complete
    /// (the child will never run the work they wait for).
    fn state(&self) -> MutexGuard<'_, EvState> {
        let mut st = lock(&self.st);
        let me = pid();
        if st.owner_pid != me {
            st.owner_pid = me;
            if st.completed < st.recorded {
                st.completed = st.recorded;
                st.time = Some(Instant::now());
            }
        }
        st
    }

    /// Queues the event's completion on `stream`.
    pub fn record(self: &Arc<Self>, stream: &Arc<Stream>) {
        let gen = {
            let mut st = self.state();
            st.recorded += 1;
            st.recorded
        };
        let ev = Arc::clone(self);
        stream.enqueue(Box::new(move || {
            let mut st = ev.state();
            if st.completed < gen {
                st.completed = gen;
                st.time = Some(Instant::now());
            }
            ev.cv.notify_all();
            0
        }));
    }

    pub fn recorded(&self) -> bool {
        self.state().recorded > 0
    }

    pub fn done(&self) -> bool {
        let st = self.state();
        st.completed >= st.recorded
    }

    pub fn generation(&self) -> u64 {
        self.state().recorded
    }

    /// Waits until the recording `gen` (or a later one) has completed.
    pub fn wait_for(&self, gen: u64) {
        let mut st = self.state();
        while st.completed < gen {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn synchronize(&self) {
        let gen = self.generation();
        self.wait_for(gen);
    }

    pub fn time(&self) -> Option<Instant> {
        let st = self.state();
        if st.completed >= st.recorded {
            st.time
        } else {
            None
        }
    }
}
