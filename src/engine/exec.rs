//! The executor: worker threads that plan and run copies, and a completion thread for async
//! copies.
//!
//! Every copy runs on one of the transport's own OS threads, never on the submitting thread,
//! so the caller's current device is never touched and submit never blocks on a copy. Each
//! worker remembers the device it last made current, so a request on registered memory costs
//! the copy call plus at most one `tangSetDevice`.

use super::batch::SubBatch;
use super::registry::Registry;
use super::remote::{Mapping, RemoteCache};
use super::stats::{Path, Stats};
use super::topology::Topology;
use super::{code, Error, Host, Request, Result, LOCAL_SEGMENT_ID, OP_READ, OP_WRITE};
use crate::config::Config;
use crate::tang::{
    Handle, MemcpyKind, Runtime, EVENT_DISABLE_TIMING, MEMORY_TYPE_DEVICE, STREAM_NON_BLOCKING,
};
use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long uninstall waits for in-flight async copies before failing them.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Longest idle wait of a worker between checks of the stop flag.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Most jobs a worker takes from the queue at once.
const CHUNK: usize = 8;
/// How long an idle worker watches the queue before it sleeps.
const SPIN_LIMIT: Duration = Duration::from_micros(50);

/// The device a thread last made current (per OS thread, owned by that thread).
pub struct DeviceCache {
    cur: i32,
}

impl Default for DeviceCache {
    fn default() -> Self {
        DeviceCache { cur: -1 }
    }
}

impl DeviceCache {
    /// Makes `dev` current unless it already is.
    pub fn ensure(&mut self, rt: &dyn Runtime, dev: i32) -> Result<()> {
        if self.cur != dev {
            if let Err(e) = rt.set_device(dev) {
                self.cur = -1;
                return Err(Error::runtime(&e, format!("making device {dev} current")));
            }
            self.cur = dev;
        }
        Ok(())
    }
}

/// Everything the workers share.
pub struct Ctx {
    pub rt: Arc<dyn Runtime>,
    pub host: Arc<dyn Host>,
    pub cfg: Config,
    pub device_count: i32,
    pub registry: Registry,
    pub remote: RemoteCache,
    pub topo: Topology,
    pub stats: Stats,
    /// Every stream created by a worker: destroyed at shutdown.
    streams: Mutex<Vec<Handle>>,
}

impl Ctx {
    pub fn new(
        rt: Arc<dyn Runtime>,
        host: Arc<dyn Host>,
        cfg: Config,
        device_count: i32,
        topo: Topology,
    ) -> Ctx {
        Ctx {
            rt,
            host,
            cfg,
            device_count,
            registry: Registry::default(),
            remote: RemoteCache::default(),
            topo,
            stats: Stats::default(),
            streams: Mutex::new(Vec::new()),
        }
    }
}

/// One lane of a striped copy.
#[derive(Debug, Clone, Copy)]
pub struct Lane {
    src: u64,
    dst: u64,
    len: u64,
    src_dev: i32,
    dst_dev: i32,
    port: i32,
    total: u64,
}

enum Work {
    Request(Request),
    Lane(Lane),
}

/// A unit of work for a worker.
pub struct Job {
    batch: Arc<SubBatch>,
    idx: usize,
    work: Work,
    start: Instant,
    /// The remote mapping a lane copies through, kept open until the lane has run.
    _keep: Option<Arc<Mapping>>,
}

impl Job {
    pub fn request(batch: Arc<SubBatch>, idx: usize, req: Request, start: Instant) -> Job {
        Job {
            batch,
            idx,
            work: Work::Request(req),
            start,
            _keep: None,
        }
    }
}

struct Pending {
    batch: Arc<SubBatch>,
    idx: usize,
    event: Handle,
    /// The stream the copy was queued on.
    stream: Handle,
    bytes: u64,
    path: Path,
    start: Instant,
    /// The remote mapping the async copy uses, kept open until its event completes.
    _keep: Option<Arc<Mapping>>,
}

/// The job queue. Workers that find it empty first spin briefly (one at a time) watching
/// `queued`, so a request submitted right after another is picked up without a wake-up;
/// then they sleep on `cv`. Submitters wake only as many sleepers as there are new jobs.
#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    cv: Condvar,
    stop: AtomicBool,
    /// Jobs in `jobs` (kept beside it so spinners need not take the lock).
    queued: AtomicUsize,
    /// Workers waiting on `cv`.
    sleepers: AtomicUsize,
    /// Workers spinning on `queued` (at most one).
    spinners: AtomicUsize,
}

impl Queue {
    /// Wakes up to `added` sleeping workers, less the one spinning (it takes a job without a
    /// wake-up; if it stops spinning meanwhile, it looks at the queue before it sleeps).
    fn wake(&self, added: usize) {
        let added = added.saturating_sub(self.spinners.load(Ordering::Acquire));
        let sleeping = self.sleepers.load(Ordering::Acquire);
        if added == 0 || sleeping == 0 {
            return;
        }
        if added >= sleeping {
            self.cv.notify_all();
        } else {
            for _ in 0..added {
                self.cv.notify_one();
            }
        }
    }

    /// Spins up to `SPIN_LIMIT` for a job to appear; true when one did. Only one worker spins
    /// at a time, so idle workers do not take the CPU from the threads doing work.
    fn spin_for_work(&self) -> bool {
        if self
            .spinners
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let start = Instant::now();
        let mut found = false;
        let mut i = 0u32;
        while !self.stop.load(Ordering::Relaxed) {
            if self.queued.load(Ordering::Acquire) > 0 {
                found = true;
                break;
            }
            i = i.wrapping_add(1);
            if i % 64 == 0 {
                if start.elapsed() > SPIN_LIMIT {
                    break;
                }
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        self.spinners.store(0, Ordering::Release);
        found
    }
}

#[derive(Default)]
struct Completions {
    list: Mutex<Vec<Pending>>,
    cv: Condvar,
    stop: AtomicBool,
}

struct Shared {
    ctx: Arc<Ctx>,
    queue: Queue,
    done: Completions,
}

/// The worker pool of one installed transport.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    completer: Option<JoinHandle<()>>,
}

/// Where one side of a copy lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mem {
    /// `bounded`: the range is known to lie in one buffer (registered, or a peer's published
    /// buffer); else only the runtime's check of the whole range in one call bounds it.
    Device {
        dev: i32,
        addr: u64,
        bounded: bool,
    },
    Host {
        addr: u64,
    },
}

enum Outcome {
    Done(Path),
    /// Finished later by the completion thread or by the last lane.
    Deferred,
}

fn finish(ctx: &Ctx, batch: &SubBatch, idx: usize, path: Path, bytes: u64, start: Instant) {
    batch.slot(idx).complete(bytes);
    ctx.stats
        .record(path, bytes, true, start.elapsed().as_nanos() as u64);
    ctx.host.notify_progress(batch.progress_token);
}

fn fail(ctx: &Ctx, batch: &SubBatch, idx: usize, path: Path, msg: String, start: Instant) {
    log::debug!("task {idx} failed: {msg}");
    batch.slot(idx).fail(msg);
    ctx.stats
        .record(path, 0, false, start.elapsed().as_nanos() as u64);
    ctx.host.notify_progress(batch.progress_token);
}

impl Pool {
    /// Starts `cfg.worker_threads` workers and the completion thread.
    pub fn start(ctx: Arc<Ctx>) -> Result<Pool> {
        let n = ctx.cfg.worker_threads;
        let shared = Arc::new(Shared {
            ctx,
            queue: Queue::default(),
            done: Completions::default(),
        });
        let mut pool = Pool {
            shared: shared.clone(),
            workers: Vec::with_capacity(n),
            completer: None,
        };
        for i in 0..n {
            let s = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("sunrise-link-w{i}"))
                .spawn(move || worker_loop(&s))
                .map_err(|e| Error::new(code::INTERNAL_ERROR, format!("spawning a worker: {e}")))?;
            pool.workers.push(h);
        }
        let s = shared.clone();
        pool.completer = Some(
            std::thread::Builder::new()
                .name("sunrise-link-done".into())
                .spawn(move || completer_loop(&s))
                .map_err(|e| {
                    Error::new(code::INTERNAL_ERROR, format!("spawning the completer: {e}"))
                })?,
        );
        Ok(pool)
    }

    /// Queues jobs (one lock acquisition for the whole list).
    pub fn push(&self, jobs: impl IntoIterator<Item = Job>) {
        let mut q = self
            .shared
            .queue
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let before = q.len();
        q.extend(jobs);
        let added = q.len() - before;
        self.shared.queue.queued.store(q.len(), Ordering::Release);
        drop(q);
        self.shared.queue.wake(added);
    }

    /// Stops the workers (queued tasks fail), drains async copies (bounded), destroys streams.
    pub fn shutdown(&mut self) {
        let s = &self.shared;
        s.queue.stop.store(true, Ordering::Release);
        s.queue.cv.notify_all();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        let left: Vec<Job> = s
            .queue
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for j in left {
            let msg = "transport uninstalled before the task ran";
            match j.work {
                // The task completes (as FAILED) when its last lane is accounted for.
                Work::Lane(_) => lane_done(&s.ctx, &j.batch, j.idx, Err(msg.into()), j.start),
                Work::Request(_) if j.batch.slot(j.idx).claim() => {
                    fail(&s.ctx, &j.batch, j.idx, Path::Unrouted, msg.into(), j.start)
                }
                Work::Request(_) => {}
            }
        }
        s.done.stop.store(true, Ordering::Release);
        s.done.cv.notify_all();
        if let Some(h) = self.completer.take() {
            let _ = h.join();
        }
        let streams: Vec<Handle> = s
            .ctx
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for st in streams {
            if let Err(e) = s.ctx.rt.stream_destroy(st) {
                log::warn!("destroying a stream: {e}");
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !self.workers.is_empty() || self.completer.is_some() {
            self.shutdown();
        }
    }
}

struct Worker {
    dc: DeviceCache,
    streams: HashMap<i32, Handle>,
}

fn worker_loop(s: &Shared) {
    let mut w = Worker {
        dc: DeviceCache::default(),
        streams: HashMap::new(),
    };
    let workers = s.ctx.cfg.worker_threads.max(1);
    // Jobs taken from the queue in one go (allocated once: nothing per request).
    let mut local: VecDeque<Job> = VecDeque::with_capacity(CHUNK);
    loop {
        if local.is_empty() {
            let mut q = s.queue.jobs.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if s.queue.stop.load(Ordering::Acquire) {
                    return;
                }
                if !q.is_empty() {
                    // A fair share of what is queued, so the other workers get some too.
                    let take = q.len().div_ceil(workers).clamp(1, CHUNK);
                    local.extend(q.drain(..take));
                    s.queue.queued.store(q.len(), Ordering::Release);
                    break;
                }
                drop(q);
                let found = s.queue.spin_for_work();
                q = s.queue.jobs.lock().unwrap_or_else(|e| e.into_inner());
                if found || !q.is_empty() || s.queue.stop.load(Ordering::Acquire) {
                    continue;
                }
                s.queue.sleepers.fetch_add(1, Ordering::AcqRel);
                q = s
                    .queue
                    .cv
                    .wait_timeout(q, IDLE_WAIT)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                s.queue.sleepers.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let Some(job) = local.pop_front() else {
            continue;
        };
        let (batch, idx, start) = (job.batch.clone(), job.idx, job.start);
        let is_lane = matches!(job.work, Work::Lane(_));
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| run_job(s, &mut w, job))) {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let m = format!("internal error while copying: {msg}");
            if is_lane {
                lane_done(&s.ctx, &batch, idx, Err(m), start);
            } else {
                fail(&s.ctx, &batch, idx, Path::Unrouted, m, start);
            }
            w.dc = DeviceCache::default();
        }
    }
}

fn run_job(s: &Shared, w: &mut Worker, job: Job) {
    let ctx = &s.ctx;
    match job.work {
        Work::Lane(l) => {
            let r = run_lane(ctx, w, &l).map_err(|e| e.msg);
            lane_done(ctx, &job.batch, job.idx, r.map(|_| l.total), job.start);
        }
        Work::Request(req) => {
            if !job.batch.slot(job.idx).claim() {
                return; // cancelled before it started
            }
            match execute(s, w, &job.batch, job.idx, &req, job.start) {
                Ok(Outcome::Done(path)) => {
                    finish(ctx, &job.batch, job.idx, path, req.length, job.start)
                }
                Ok(Outcome::Deferred) => {}
                Err((path, e)) => fail(ctx, &job.batch, job.idx, path, e.msg, job.start),
            }
        }
    }
}

fn lane_done(
    ctx: &Ctx,
    batch: &SubBatch,
    idx: usize,
    r: std::result::Result<u64, String>,
    start: Instant,
) {
    let t = batch.slot(idx);
    let total = match r {
        Ok(total) => total,
        Err(m) => {
            t.lane_failed.store(true, Ordering::Release);
            t.note_error(m);
            0
        }
    };
    if t.lanes.fetch_sub(1, Ordering::AcqRel) == 1 {
        if t.lane_failed.load(Ordering::Acquire) {
            fail(ctx, batch, idx, Path::Striped, String::new(), start);
        } else {
            finish(ctx, batch, idx, Path::Striped, total, start);
        }
    }
}

/// Finds where a local range lives: the registry first (no runtime call), else the runtime's
/// pointer attributes, retried with each device current (the query is current-device
/// sensitive), else pageable host memory. A range that starts in a registered buffer must end
/// in it. Unregistered device memory is checked by the runtime against its allocation;
/// unregistered host memory must be mapped with the access the copy needs (`write` for a
/// destination), so a stale or garbage pointer fails the task instead of faulting the process.
fn locate(ctx: &Ctx, dc: &mut DeviceCache, addr: u64, len: u64, write: bool) -> Result<Mem> {
    if let Some(h) = ctx.registry.lookup(addr, len) {
        return Ok(if h.device >= 0 {
            Mem::Device {
                dev: h.device,
                addr,
                bounded: true,
            }
        } else {
            Mem::Host {
                addr: addr.wrapping_add(h.host_delta),
            }
        });
    }
    let unregistered = |what: &str| {
        Error::new(
            code::ADDRESS_NOT_REGISTERED,
            format!("local range [{addr:#x}, +{len}) {what}"),
        )
    };
    if ctx.registry.lookup(addr, 1).is_some() {
        return Err(unregistered("runs past the end of its registered buffer"));
    }
    let classify = |a: crate::tang::PointerInfo| {
        if a.memory_type == MEMORY_TYPE_DEVICE && a.device >= 0 {
            Mem::Device {
                dev: a.device,
                addr,
                bounded: false,
            }
        } else {
            // Mapped pinned host memory: use the host alias, copied with host kinds.
            Mem::Host {
                addr: if a.host_pointer != 0 {
                    a.host_pointer
                } else {
                    addr
                },
            }
        }
    };
    let mut found = ctx.rt.pointer_attributes(addr).ok().map(classify);
    if found.is_none() {
        for d in 0..ctx.device_count {
            if dc.ensure(ctx.rt.as_ref(), d).is_ok() {
                if let Ok(a) = ctx.rt.pointer_attributes(addr) {
                    found = Some(classify(a));
                    break;
                }
            }
        }
    }
    if let Some(m @ Mem::Device { .. }) = found {
        return Ok(m);
    }
    let host = match found {
        Some(Mem::Host { addr: h }) => h,
        _ => addr,
    };
    if host_range_mapped(host, len, write) {
        return Ok(Mem::Host { addr: host });
    }
    Err(unregistered(if write {
        "is not registered, and not writable memory of this process"
    } else {
        "is not registered, and not readable memory of this process"
    }))
}

/// Whether `[addr, addr + len)` lies in mappings of this process that allow reading (and
/// writing, with `write`), per `/proc/self/maps`. Only for unregistered host memory.
fn host_range_mapped(addr: u64, len: u64, write: bool) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return false;
    };
    let mut cur = addr;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        if b <= cur {
            continue;
        }
        let p = perms.as_bytes();
        if a > cur || p.first() != Some(&b'r') || (write && p.get(1) != Some(&b'w')) {
            return false;
        }
        cur = b;
        if cur >= end {
            return true;
        }
    }
    false
}

type Failure = (Path, Error);

fn execute(
    s: &Shared,
    w: &mut Worker,
    batch: &Arc<SubBatch>,
    idx: usize,
    req: &Request,
    start: Instant,
) -> std::result::Result<Outcome, Failure> {
    let ctx = &s.ctx;
    let un = |e: Error| (Path::Unrouted, e);
    if req.opcode != OP_READ && req.opcode != OP_WRITE {
        return Err(un(Error::invalid(format!("unknown opcode {}", req.opcode))));
    }
    if req.length == 0 {
        return Ok(Outcome::Done(Path::Unrouted));
    }
    if req.source.checked_add(req.length).is_none()
        || req.target_offset.checked_add(req.length).is_none()
    {
        return Err(un(Error::invalid(
            "request range wraps around the address space",
        )));
    }
    let local_write = req.opcode == OP_READ;
    let local = locate(ctx, &mut w.dc, req.source, req.length, local_write).map_err(un)?;
    let mut mapping: Option<Arc<Mapping>> = None;
    let target = if req.target_id == LOCAL_SEGMENT_ID {
        locate(ctx, &mut w.dc, req.target_offset, req.length, !local_write).map_err(un)?
    } else {
        ctx.stats.count_ipc();
        let m = ctx
            .remote
            .resolve(
                &ctx.rt,
                ctx.host.as_ref(),
                &mut w.dc,
                ctx.device_count,
                req.target_id,
                req.target_offset,
                req.length,
                false,
            )
            .map_err(un)?;
        let t = Mem::Device {
            dev: m.device,
            addr: m.translate(req.target_offset),
            bounded: true,
        };
        mapping = Some(m);
        t
    };
    let order = |t: Mem| {
        if req.opcode == OP_READ {
            (t, local)
        } else {
            (local, t)
        }
    };
    let (src, dst) = order(target);
    match copy(s, w, batch, idx, src, dst, req.length, start, &mapping) {
        Ok(o) => Ok(o),
        Err(first) => {
            let Some(old) = mapping else {
                return Err(first);
            };
            // The peer may have re-registered: refresh, and retry once with a new handle.
            let m = ctx
                .remote
                .resolve(
                    &ctx.rt,
                    ctx.host.as_ref(),
                    &mut w.dc,
                    ctx.device_count,
                    req.target_id,
                    req.target_offset,
                    req.length,
                    true,
                )
                .map_err(|e| {
                    (
                        first.0,
                        Error::new(first.1.code, format!("{}; {}", first.1.msg, e.msg)),
                    )
                })?;
            if m.handle == old.handle && m.ptr == old.ptr {
                return Err(first);
            }
            drop(old);
            let (src, dst) = order(Mem::Device {
                dev: m.device,
                addr: m.translate(req.target_offset),
                bounded: true,
            });
            copy(s, w, batch, idx, src, dst, req.length, start, &Some(m))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn copy(
    s: &Shared,
    w: &mut Worker,
    batch: &Arc<SubBatch>,
    idx: usize,
    src: Mem,
    dst: Mem,
    len: u64,
    start: Instant,
    keep: &Option<Arc<Mapping>>,
) -> std::result::Result<Outcome, Failure> {
    let ctx = &s.ctx;
    match (src, dst) {
        (
            Mem::Device {
                dev: sd, addr: sa, ..
            },
            Mem::Device {
                dev: dd, addr: da, ..
            },
        ) if sd == dd => single(
            s,
            w,
            batch,
            idx,
            sd,
            da,
            sa,
            len,
            MemcpyKind::DeviceToDevice,
            Path::SameDevice,
            start,
            keep,
        ),
        (
            Mem::Device {
                dev: sd,
                addr: sa,
                bounded: sb,
            },
            Mem::Device {
                dev: dd,
                addr: da,
                bounded: db,
            },
        ) => {
            let ports = ctx.topo.ports(sd, dd);
            // Lanes are checked by the runtime one by one: a range not known to lie in one
            // buffer could then be copied partly, into whatever follows its allocation. Such
            // a range is copied in one call, which the runtime checks as a whole.
            if sb
                && db
                && ctx.cfg.enable_port_striping
                && len >= ctx.cfg.port_striping_min_size
                && ports.len() > 1
            {
                stripe(s, batch, idx, sa, sd, da, dd, len, ports, start, keep);
                return Ok(Outcome::Deferred);
            }
            peer_chain(ctx, &mut w.dc, da, dd, sa, sd, len)
                .map(Outcome::Done)
                .map_err(|e| (Path::Peer, e))
        }
        (Mem::Host { addr: sa }, Mem::Device { dev, addr: da, .. }) => single(
            s,
            w,
            batch,
            idx,
            dev,
            da,
            sa,
            len,
            MemcpyKind::HostToDevice,
            Path::HostToDevice,
            start,
            keep,
        ),
        (Mem::Device { dev, addr: sa, .. }, Mem::Host { addr: da }) => single(
            s,
            w,
            batch,
            idx,
            dev,
            da,
            sa,
            len,
            MemcpyKind::DeviceToHost,
            Path::DeviceToHost,
            start,
            keep,
        ),
        (Mem::Host { .. }, Mem::Host { .. }) => Err((
            Path::Unrouted,
            Error::new(
                code::NOT_IMPLEMENTED,
                "host-to-host copies are not handled by sunrise_link (no device memory involved)",
            ),
        )),
    }
}

/// A copy executed by one device: synchronous, or async (stream + per-task event) when the
/// length reaches `async_memcpy_threshold`.
#[allow(clippy::too_many_arguments)]
fn single(
    s: &Shared,
    w: &mut Worker,
    batch: &Arc<SubBatch>,
    idx: usize,
    dev: i32,
    dst: u64,
    src: u64,
    len: u64,
    kind: MemcpyKind,
    path: Path,
    start: Instant,
    keep: &Option<Arc<Mapping>>,
) -> std::result::Result<Outcome, Failure> {
    let ctx = &s.ctx;
    let rt = ctx.rt.as_ref();
    let f = |e: Error| (path, e);
    w.dc.ensure(rt, dev).map_err(f)?;
    let thr = ctx.cfg.async_memcpy_threshold;
    if thr > 0 && len >= thr {
        let stream = match w.streams.get(&dev) {
            Some(&st) => st,
            None => {
                let st = rt.stream_create(STREAM_NON_BLOCKING).map_err(|e| {
                    f(Error::runtime(
                        &e,
                        format!("creating a stream on device {dev}"),
                    ))
                })?;
                ctx.streams
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(st);
                w.streams.insert(dev, st);
                st
            }
        };
        let ev = rt.event_create(EVENT_DISABLE_TIMING).map_err(|e| {
            f(Error::runtime(
                &e,
                format!("creating an event on device {dev}"),
            ))
        })?;
        let what = format!("async copy of {len} bytes {src:#x} -> {dst:#x} on device {dev}");
        if let Err(e) = rt.memcpy_async(dst, src, len as usize, kind, stream) {
            let _ = rt.event_destroy(ev);
            return Err(f(Error::runtime(&e, what)));
        }
        if let Err(e) = rt.event_record(ev, stream) {
            let _ = rt.event_destroy(ev);
            // The copy is queued and will run: the task must not end (FAILED, then written)
            // before it does. Wait for the stream; its result is the copy's.
            return match rt.stream_synchronize(stream) {
                Some(Ok(())) => Ok(Outcome::Done(path)),
                Some(Err(s)) => Err(f(Error::runtime(
                    &s,
                    format!("{what} (its event could not be recorded: {e})"),
                ))),
                None => Err(f(Error::runtime(
                    &e,
                    format!("{what}; the queued copy may still complete"),
                ))),
            };
        }
        ctx.stats.count_async();
        s.done
            .list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Pending {
                batch: batch.clone(),
                idx,
                event: ev,
                stream,
                bytes: len,
                path,
                start,
                _keep: keep.clone(),
            });
        s.done.cv.notify_one();
        return Ok(Outcome::Deferred);
    }
    rt.memcpy(dst, src, len as usize, kind).map_err(|e| {
        f(Error::runtime(
            &e,
            format!("copy of {len} bytes {src:#x} -> {dst:#x} on device {dev}"),
        ))
    })?;
    Ok(Outcome::Done(path))
}

/// Cross-device copy: `tangMemcpyPeer`, then `tangMemcpyPeer_v2`, then a peer pointer over
/// each active port; the source device is current throughout.
fn peer_chain(
    ctx: &Ctx,
    dc: &mut DeviceCache,
    dst: u64,
    dd: i32,
    src: u64,
    sd: i32,
    len: u64,
) -> Result<Path> {
    let rt = ctx.rt.as_ref();
    dc.ensure(rt, sd)?;
    let n = len as usize;
    let mut why = Vec::new();
    match rt.memcpy_peer(dst, dd, src, sd, n) {
        Ok(()) => return Ok(Path::Peer),
        Err(e) => why.push(e.to_string()),
    }
    match rt.memcpy_peer_v2(dst, dd, src, sd, n) {
        Some(Ok(())) => return Ok(Path::PeerV2),
        Some(Err(e)) => why.push(e.to_string()),
        None => why.push("tangMemcpyPeer_v2 not available".into()),
    }
    let ports = ctx.topo.ports(sd, dd);
    if ports.is_empty() {
        why.push(format!("no active PTLink port from device {sd} to {dd}"));
    }
    for &port in ports {
        match rt.peer_pointer(sd, port, dst) {
            None => {
                why.push("tangDeviceGetPeerPointer not available".into());
                break;
            }
            Some(Err(e)) => why.push(format!("port {port}: {e}")),
            Some(Ok(mapped)) => match rt.memcpy(mapped, src, n, MemcpyKind::DeviceToDevice) {
                Ok(()) => return Ok(Path::PeerPointer),
                Err(e) => why.push(format!("port {port}: {e}")),
            },
        }
    }
    Err(Error::new(
        code::RUNTIME_ERROR,
        format!(
            "copy of {len} bytes device {sd} {src:#x} -> device {dd} {dst:#x} failed on every path: {}",
            why.join("; ")
        ),
    ))
}

#[allow(clippy::too_many_arguments)]
fn stripe(
    s: &Shared,
    batch: &Arc<SubBatch>,
    idx: usize,
    src: u64,
    sd: i32,
    dst: u64,
    dd: i32,
    len: u64,
    ports: &[i32],
    start: Instant,
    keep: &Option<Arc<Mapping>>,
) {
    let n = ports.len() as u64;
    // Lane size rounded up to 4 KiB so lanes start aligned.
    let chunk = len.div_ceil(n).div_ceil(4096) * 4096;
    let mut lanes = Vec::new();
    let mut off = 0;
    for &port in ports {
        if off >= len {
            break;
        }
        let l = chunk.min(len - off);
        lanes.push(Lane {
            src: src + off,
            dst: dst + off,
            len: l,
            src_dev: sd,
            dst_dev: dd,
            port,
            total: len,
        });
        off += l;
    }
    batch
        .slot(idx)
        .lanes
        .store(lanes.len() as u32, Ordering::Release);
    let jobs: Vec<Job> = lanes
        .into_iter()
        .map(|l| Job {
            batch: batch.clone(),
            idx,
            work: Work::Lane(l),
            start,
            _keep: keep.clone(),
        })
        .collect();
    let mut q = s.queue.jobs.lock().unwrap_or_else(|e| e.into_inner());
    // Lanes go to the front so they run before newer requests, in parallel on idle workers.
    let added = jobs.len();
    for j in jobs.into_iter().rev() {
        q.push_front(j);
    }
    s.queue.queued.store(q.len(), Ordering::Release);
    drop(q);
    s.queue.wake(added);
}

/// One lane: peer pointer over its port, falling back to the peer-copy chain for its piece.
fn run_lane(ctx: &Ctx, w: &mut Worker, l: &Lane) -> Result<()> {
    let rt = ctx.rt.as_ref();
    w.dc.ensure(rt, l.src_dev)?;
    let direct = match rt.peer_pointer(l.src_dev, l.port, l.dst) {
        Some(Ok(mapped)) => rt
            .memcpy(mapped, l.src, l.len as usize, MemcpyKind::DeviceToDevice)
            .map_err(|e| e.to_string()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("tangDeviceGetPeerPointer not available".into()),
    };
    match direct {
        Ok(()) => Ok(()),
        Err(first) => peer_chain(ctx, &mut w.dc, l.dst, l.dst_dev, l.src, l.src_dev, l.len)
            .map(|_| ())
            .map_err(|e| {
                Error::new(
                    e.code,
                    format!("lane over port {} ({first}), then {}", l.port, e.msg),
                )
            }),
    }
}

fn completer_loop(s: &Shared) {
    let ctx = &s.ctx;
    let rt = ctx.rt.as_ref();
    let mut backoff = Duration::from_micros(20);
    let mut stop_at: Option<Instant> = None;
    loop {
        let mut list = {
            let mut g = s.done.list.lock().unwrap_or_else(|e| e.into_inner());
            if g.is_empty() {
                if s.done.stop.load(Ordering::Acquire) {
                    return;
                }
                g = s
                    .done
                    .cv
                    .wait_timeout(g, IDLE_WAIT)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            std::mem::take(&mut *g)
        };
        if list.is_empty() {
            continue;
        }
        if s.done.stop.load(Ordering::Acquire) && stop_at.is_none() {
            stop_at = Some(Instant::now() + DRAIN_LIMIT);
        }
        let expired = stop_at.is_some_and(|t| Instant::now() >= t);
        let mut progressed = false;
        list.retain(|p| {
            let r = rt.event_query(p.event);
            match r {
                Ok(false) if !expired => return true,
                Ok(false) => fail(
                    ctx,
                    &p.batch,
                    p.idx,
                    p.path,
                    "transport uninstalled while the async copy was in flight".into(),
                    p.start,
                ),
                Ok(true) => finish(ctx, &p.batch, p.idx, p.path, p.bytes, p.start),
                // The event cannot tell: the stream's result is the copy's, and the task
                // must not end while the copy may still write.
                Err(e) => match rt.stream_synchronize(p.stream) {
                    Some(Ok(())) => finish(ctx, &p.batch, p.idx, p.path, p.bytes, p.start),
                    Some(Err(s)) => fail(
                        ctx,
                        &p.batch,
                        p.idx,
                        p.path,
                        format!("async copy failed: {s} (event query: {e})"),
                        p.start,
                    ),
                    None => fail(
                        ctx,
                        &p.batch,
                        p.idx,
                        p.path,
                        format!("async copy failed: {e}"),
                        p.start,
                    ),
                },
            }
            let _ = rt.event_destroy(p.event);
            progressed = true;
            false
        });
        if !list.is_empty() {
            s.done
                .list
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(list);
            if progressed {
                backoff = Duration::from_micros(20);
            } else {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(1));
            }
        }
    }
}
