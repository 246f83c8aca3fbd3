//! Asynchronous copies: the streams the transport owns (one per device, one per (device,
//! PTLink port) for striping lanes), pools of events, and the runs in flight.
//!
//! An asynchronous copy is issued from the submitting thread onto one of those streams and
//! records an event; the run of tasks it carries stays PENDING until a status query (or a
//! sweep) finds its event complete. No thread of the library waits for it.

use super::batch::{SubBatch, MULTI_EVENT};
use super::device::DeviceGuard;
use super::outcome::Ends;
use super::remote::Mapping;
use super::stats::Path;
use super::{Error, Result};
use crate::tang::{Handle, Runtime, EVENT_DISABLE_TIMING, MAX_PHYTOPO_PORTS, STREAM_NON_BLOCKING};
use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most events one run waits for (one per striping lane).
pub const MAX_EVENTS: usize = MAX_PHYTOPO_PORTS;
/// Free events kept per device.
const EVENT_POOL: usize = 256;
/// Runs in flight above which issuing another first sweeps finished ones (runs nobody polls
/// any more, e.g. of a freed sub-batch).
const SWEEP_ABOVE: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

/// One asynchronous copy in flight, carrying tasks `[head, head + len)` of a sub-batch.
pub struct Run {
    pub batch: Arc<SubBatch>,
    pub head: usize,
    pub len: usize,
    /// Device of the events (they return to its pool).
    pub dev: i32,
    /// (event, the stream it was recorded on).
    pub events: [(Handle, Handle); MAX_EVENTS],
    pub n_events: usize,
    pub path: Path,
    /// When the run was submitted, if its latency is sampled.
    pub start: Option<Instant>,
    /// The remote mapping the copy goes through, kept open until the copy has run.
    pub _keep: Option<Arc<Mapping>>,
}

impl Run {
    fn events(&self) -> &[(Handle, Handle)] {
        &self.events[..self.n_events]
    }
}

type Key = (usize, usize);

fn key(batch: &Arc<SubBatch>, head: usize) -> Key {
    (Arc::as_ptr(batch) as usize, head)
}

/// How a wait on one event ended.
enum Waited {
    Pending,
    Done,
    Failed(String),
}

/// Streams, events and runs in flight of one installed transport.
pub struct Async {
    rt: Arc<dyn Runtime>,
    /// Stream per device (0: not created yet).
    device_streams: Box<[AtomicU64]>,
    /// Stream per (device, port), index `device * MAX_PHYTOPO_PORTS + port`.
    port_streams: Box<[AtomicU64]>,
    /// Every stream created (destroyed at shutdown); creation is serialised by this lock.
    created: Mutex<Vec<Handle>>,
    /// Free events per device.
    events: Box<[Mutex<Vec<Handle>>]>,
    runs: Mutex<HashMap<Key, Run>>,
    /// Number of entries in `runs` (read without the lock).
    n_runs: AtomicUsize,
}

impl Async {
    pub fn new(rt: Arc<dyn Runtime>, device_count: i32) -> Async {
        let n = device_count.max(0) as usize;
        Async {
            rt,
            device_streams: (0..n).map(|_| AtomicU64::new(0)).collect(),
            port_streams: (0..n * MAX_PHYTOPO_PORTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            created: Mutex::new(Vec::new()),
            events: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
            runs: Mutex::new(HashMap::new()),
            n_runs: AtomicUsize::new(0),
        }
    }

    /// The transport's stream on `dev` (or on `dev`'s PTLink `port`), created on first use
    /// with `dev` current.
    pub fn stream(&self, dg: &mut DeviceGuard<'_>, dev: i32, port: Option<i32>) -> Result<Handle> {
        let slot = match port {
            None => self.device_streams.get(dev as usize),
            Some(p) if (0..MAX_PHYTOPO_PORTS as i32).contains(&p) => self
                .port_streams
                .get(dev as usize * MAX_PHYTOPO_PORTS + p as usize),
            Some(_) => None,
        }
        .ok_or_else(|| Error::invalid(format!("no stream for device {dev} port {port:?}")))?;
        let s = slot.load(Ordering::Acquire);
        if s != 0 {
            return Ok(s);
        }
        let mut created = lock(&self.created);
        let s = slot.load(Ordering::Acquire);
        if s != 0 {
            return Ok(s);
        }
        dg.ensure(dev)?;
        let s = self.rt.stream_create(STREAM_NON_BLOCKING).map_err(|e| {
            let what = match port {
                Some(p) => format!("creating a stream on device {dev} for port {p}"),
                None => format!("creating a stream on device {dev}"),
            };
            Error::runtime(&e, what)
        })?;
        created.push(s);
        slot.store(s, Ordering::Release);
        Ok(s)
    }

    /// An event of `dev` (from its pool, else created with `dev` current).
    pub fn take_event(&self, dg: &mut DeviceGuard<'_>, dev: i32) -> Result<Handle> {
        if let Some(e) = self.events.get(dev as usize).and_then(|p| lock(p).pop()) {
            return Ok(e);
        }
        dg.ensure(dev)?;
        self.rt
            .event_create(EVENT_DISABLE_TIMING)
            .map_err(|e| Error::runtime(&e, format!("creating an event on device {dev}")))
    }

    /// Returns an event whose last use completed to the pool of `dev`.
    pub fn give_event(&self, dev: i32, ev: Handle) {
        if let Some(p) = self.events.get(dev as usize) {
            let mut p = lock(p);
            if p.len() < EVENT_POOL {
                p.push(ev);
                return;
            }
        }
        self.destroy_event(ev);
    }

    /// Destroys an event whose state is unknown (it never goes back to a pool).
    pub fn destroy_event(&self, ev: Handle) {
        if let Err(e) = self.rt.event_destroy(ev) {
            log::warn!("destroying an event: {e}");
        }
    }

    /// Waits for one event: `tangEventSynchronize`, else its stream, else polling.
    pub fn wait_event(&self, ev: Handle, stream: Handle) -> std::result::Result<(), String> {
        if let Some(r) = self.rt.event_synchronize(ev) {
            return r.map_err(|e| e.to_string());
        }
        if let Some(r) = self.rt.stream_synchronize(stream) {
            return r.map_err(|e| e.to_string());
        }
        loop {
            match self.check(ev, stream) {
                Waited::Pending => std::thread::yield_now(),
                Waited::Done => return Ok(()),
                Waited::Failed(m) => return Err(m),
            }
        }
    }

    /// Asks one event how its copy went. An event that cannot tell hands over to its stream,
    /// whose result is the copy's: a task must not end while its copy may still write.
    fn check(&self, ev: Handle, stream: Handle) -> Waited {
        match self.rt.event_query(ev) {
            Ok(false) => Waited::Pending,
            Ok(true) => Waited::Done,
            Err(e) => match self.rt.stream_synchronize(stream) {
                Some(Ok(())) => Waited::Done,
                Some(Err(s)) => {
                    Waited::Failed(format!("async copy failed: {s} (event query: {e})"))
                }
                None => Waited::Failed(format!("async copy failed: {e}")),
            },
        }
    }

    /// Registers a run whose events are recorded, then marks its tasks in flight (`lens`:
    /// the bytes each task reports on completion).
    pub fn start(&self, ends: Ends<'_>, run: Run, lens: &[u64]) {
        debug_assert_eq!(lens.len(), run.len);
        let batch = run.batch.clone();
        let (head, len) = (run.head, run.len);
        let event = if run.n_events == 1 {
            run.events[0].0
        } else {
            MULTI_EVENT
        };
        batch.count_run(true);
        let crowded = {
            let mut runs = lock(&self.runs);
            runs.insert(key(&batch, head), run);
            self.n_runs.store(runs.len(), Ordering::Release);
            runs.len() > SWEEP_ABOVE
        };
        for (k, &want) in lens.iter().enumerate() {
            batch.slot(head + k).set_in_flight(head, len, event, want);
        }
        if crowded {
            self.sweep(ends, None);
        }
    }

    /// Looks at the run task `idx` belongs to, and finishes it if its copy is over.
    pub fn poll(&self, ends: Ends<'_>, batch: &Arc<SubBatch>, idx: usize) {
        let t = batch.slot(idx);
        let ev = t.event();
        if ev == 0 {
            return;
        }
        let (head, _) = t.run();
        if ev != MULTI_EVENT {
            // The run's only event. If it was recycled meanwhile, the run is finished and
            // `finish` finds nothing to do.
            match self.rt.event_query(ev) {
                Ok(false) => {}
                Ok(true) => self.finish(ends, batch, head, Ok(())),
                Err(_) => self.settle(ends, batch, head),
            }
            return;
        }
        self.settle_if_done(ends, batch, head);
    }

    /// Finishes the run at `(batch, head)` if all its events are complete.
    fn settle_if_done(&self, ends: Ends<'_>, batch: &Arc<SubBatch>, head: usize) {
        let events = match lock(&self.runs).get(&key(batch, head)) {
            Some(r) => r.events,
            None => return,
        };
        let mut result = Ok(());
        for &(ev, st) in events.iter().filter(|e| e.0 != 0) {
            match self.check(ev, st) {
                Waited::Pending => return,
                Waited::Done => {}
                Waited::Failed(m) => result = Err(m),
            }
        }
        self.finish(ends, batch, head, result);
    }

    /// Waits for every event of the run (an event query failed) and finishes it.
    fn settle(&self, ends: Ends<'_>, batch: &Arc<SubBatch>, head: usize) {
        let events = match lock(&self.runs).get(&key(batch, head)) {
            Some(r) => r.events,
            None => return,
        };
        let mut result = Ok(());
        for &(ev, st) in events.iter().filter(|e| e.0 != 0) {
            if let Err(m) = self.wait_event(ev, st) {
                result = Err(m);
            }
        }
        self.finish(ends, batch, head, result);
    }

    /// Ends the run at `(batch, head)` once: its tasks complete (or fail with the message),
    /// its events go back to the pool (or are destroyed when their state is unknown), and the
    /// mapping it kept open is released.
    fn finish(
        &self,
        ends: Ends<'_>,
        batch: &Arc<SubBatch>,
        head: usize,
        result: std::result::Result<(), String>,
    ) {
        if !batch.slot(head).take_finish() {
            return;
        }
        let run = {
            let mut runs = lock(&self.runs);
            let r = runs.remove(&key(batch, head));
            self.n_runs.store(runs.len(), Ordering::Release);
            r
        };
        let Some(run) = run else {
            return;
        };
        self.end_run(ends, run, result);
    }

    fn end_run(&self, ends: Ends<'_>, run: Run, result: std::result::Result<(), String>) {
        run.batch.count_run(false);
        for k in 1..run.len {
            // The other tasks of the run are finished with it.
            run.batch.slot(run.head + k).take_finish();
        }
        match &result {
            Ok(()) => {
                let mut lens = [0u64; 64];
                let mut done = 0;
                while done < run.len {
                    let n = (run.len - done).min(lens.len());
                    for (k, l) in lens[..n].iter_mut().enumerate() {
                        *l = run.batch.slot(run.head + done + k).want();
                    }
                    ends.complete(&run.batch, run.head + done, &lens[..n], run.path, run.start);
                    done += n;
                }
            }
            Err(m) => {
                for k in 0..run.len {
                    ends.fail(&run.batch, run.head + k, run.path, m.clone(), run.start);
                }
            }
        }
        for &(ev, _) in run.events() {
            if result.is_ok() {
                self.give_event(run.dev, ev);
            } else {
                self.destroy_event(ev);
            }
        }
    }

    /// Finishes every run (of `only` this sub-batch, if given) whose copy is over.
    pub fn sweep(&self, ends: Ends<'_>, only: Option<&Arc<SubBatch>>) {
        if self.n_runs.load(Ordering::Acquire) == 0 {
            return;
        }
        let keys: Vec<(Arc<SubBatch>, usize)> = lock(&self.runs)
            .values()
            .filter(|r| only.map_or(true, |b| Arc::ptr_eq(b, &r.batch)))
            .map(|r| (r.batch.clone(), r.head))
            .collect();
        for (b, head) in keys {
            self.settle_if_done(ends, &b, head);
        }
    }

    /// Number of runs in flight.
    pub fn in_flight(&self) -> usize {
        self.n_runs.load(Ordering::Acquire)
    }

    /// At uninstall: waits up to `limit` for the runs in flight; those still running then
    /// are FAILED (the runtime may finish them later, so their events are not reused).
    pub fn drain(&self, ends: Ends<'_>, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut backoff = Duration::from_micros(20);
        while self.in_flight() > 0 && Instant::now() < deadline {
            self.sweep(ends, None);
            if self.in_flight() > 0 {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(5));
            }
        }
        let left: Vec<Run> = {
            let mut runs = lock(&self.runs);
            self.n_runs.store(0, Ordering::Release);
            runs.drain().map(|(_, r)| r).collect()
        };
        for run in left {
            if run.batch.slot(run.head).take_finish() {
                self.end_run(
                    ends,
                    run,
                    Err("transport uninstalled while the async copy was in flight".into()),
                );
            }
        }
    }

    /// Destroys the pooled events and the streams (after [`Async::drain`]).
    pub fn shutdown(&self) {
        for p in self.events.iter() {
            for ev in lock(p).drain(..) {
                self.destroy_event(ev);
            }
        }
        for s in self.device_streams.iter().chain(self.port_streams.iter()) {
            s.store(0, Ordering::Release);
        }
        for st in lock(&self.created).drain(..) {
            if let Err(e) = self.rt.stream_destroy(st) {
                log::warn!("destroying a stream: {e}");
            }
        }
    }
}
