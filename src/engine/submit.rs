//! One submit, on the submitting thread: each request is located (registry, remote cache),
//! consecutive requests that are contiguous on both sides are merged into one copy, and each
//! copy is carried out right there ([`super::copy`]). Synchronous copies are terminal before
//! submit returns; asynchronous ones are in flight on the transport's streams.
//!
//! The caller's current device is asked at most once per submit, only if a copy needs a
//! particular device current, and restored before submit returns.
//!
//! A submit of one small request on known buffers, the commonest transfer, takes a compact
//! path of its own (`one`) that does the same with far less code; everything else, and its
//! failures after the first copy call, take the general path.

use super::batch::SubBatch;
use super::context::Ctx;
use super::copy::{copy, peer_chain, sync_copy_failed, Done, Failure, Tasks};
use super::device::DeviceGuard;
use super::locate::{locate, Local, Mem};
use super::registry::Region;
use super::remote::{Mapping, RemoteCache};
use super::stats::Path;
use super::{Error, Request, Result, LOCAL_SEGMENT_ID, OP_READ, OP_WRITE};
use crate::tang::MemcpyKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

/// Largest copy that merged requests make.
pub const MERGE_LIMIT: u64 = 64 << 20;
/// Most requests merged into one copy.
const MERGE_MAX_TASKS: usize = 1024;

/// A remote mapping as one submit holds it: borrowed from the cache's current contents
/// (which the submit keeps loaded, so the mapping stays open meanwhile), or owned when the
/// submit opened it.
#[derive(Clone)]
enum MapRef<'m> {
    Cached(&'m Arc<Mapping>),
    Opened(Arc<Mapping>),
}

impl MapRef<'_> {
    fn get(&self) -> &Arc<Mapping> {
        match self {
            MapRef::Cached(m) => m,
            MapRef::Opened(m) => m,
        }
    }
}

/// Where the target side of a request lives.
#[derive(Clone)]
enum Target<'m> {
    /// Local memory (`LOCAL_SEGMENT_ID`), and the registered buffer holding it, if any.
    Local(Option<Region>),
    /// A peer's buffer, through its IPC mapping.
    Remote(MapRef<'m>),
}

/// One request (or a run of merged requests), located.
#[derive(Clone)]
struct Plan<'m> {
    src: Mem,
    dst: Mem,
    /// The registered buffer holding the local side, if any.
    local: Option<Region>,
    target: Target<'m>,
}

fn shift(m: Mem, by: u64) -> Mem {
    match m {
        Mem::Device { dev, addr, bounded } => Mem::Device {
            dev,
            addr: addr + by,
            bounded,
        },
        Mem::Host { addr } => Mem::Host { addr: addr + by },
    }
}

impl<'m> Plan<'m> {
    fn keep(&self) -> Option<&Arc<Mapping>> {
        match &self.target {
            Target::Remote(m) => Some(m.get()),
            Target::Local(_) => None,
        }
    }

    /// The same copy, `by` bytes further on both sides.
    fn shifted(&self, by: u64) -> Plan<'m> {
        Plan {
            src: shift(self.src, by),
            dst: shift(self.dst, by),
            ..self.clone()
        }
    }

    /// Whether `next`, which follows `prev` in the submit, continues this copy: same
    /// operation and segment, contiguous on both sides, inside the same two buffers.
    fn continues(&self, prev: &Request, next: &Request) -> bool {
        let contiguous = next.length > 0
            && next.opcode == prev.opcode
            && next.target_id == prev.target_id
            && prev.source.checked_add(prev.length) == Some(next.source)
            && prev.target_offset.checked_add(prev.length) == Some(next.target_offset);
        contiguous
            && self
                .local
                .is_some_and(|r| r.holds(next.source, next.length))
            && match &self.target {
                Target::Remote(m) => m.get().contains(next.target_offset, next.length),
                Target::Local(Some(r)) => r.holds(next.target_offset, next.length),
                Target::Local(None) => false,
            }
    }
}

/// Per-submit memory of the last buffers used, so requests to the same buffers look the
/// registry and the remote cache up once per submit.
#[derive(Default)]
struct Memo<'m> {
    mapping: Option<MapRef<'m>>,
    /// Last registered buffers hit (local side, local target side).
    regions: [Option<Region>; 2],
}

/// [`locate`], answered from `memo` when the range lies in the buffer it remembers.
fn locate_memo(
    ctx: &Ctx,
    dg: &mut DeviceGuard<'_>,
    memo: &mut Option<Region>,
    addr: u64,
    len: u64,
    write: bool,
) -> Result<Local> {
    if let Some(r) = memo.filter(|r| r.holds(addr, len)) {
        return Ok(Local::registered(r, addr));
    }
    let l = locate(&ctx.registry, dg, ctx.device_count, addr, len, write)?;
    if l.region.is_some() {
        *memo = l.region;
    }
    Ok(l)
}

/// Why a request cannot be planned at all (out of line: requests are well-formed).
#[cold]
#[inline(never)]
fn malformed(req: &Request) -> Failure {
    let e = if req.opcode != OP_READ && req.opcode != OP_WRITE {
        Error::invalid(format!("unknown opcode {}", req.opcode))
    } else {
        Error::invalid("request range wraps around the address space")
    };
    (Path::Unrouted, e)
}

fn plan<'m>(
    ctx: &Ctx,
    dg: &mut DeviceGuard<'_>,
    maps: &'m [Arc<Mapping>],
    memo: &mut Memo<'m>,
    req: &Request,
    refresh: bool,
) -> std::result::Result<Option<Plan<'m>>, Failure> {
    let un = |e: Error| (Path::Unrouted, e);
    if req.length == 0 && (req.opcode == OP_READ || req.opcode == OP_WRITE) {
        return Ok(None);
    }
    if (req.opcode != OP_READ && req.opcode != OP_WRITE)
        || req.source.checked_add(req.length).is_none()
        || req.target_offset.checked_add(req.length).is_none()
    {
        return Err(malformed(req));
    }
    let n = ctx.device_count;
    let local_write = req.opcode == OP_READ;
    let [mine, theirs] = &mut memo.regions;
    let local = locate_memo(ctx, dg, mine, req.source, req.length, local_write).map_err(un)?;
    let (tmem, target) = if req.target_id == LOCAL_SEGMENT_ID {
        let t = locate_memo(ctx, dg, theirs, req.target_offset, req.length, !local_write)
            .map_err(un)?;
        (t.mem, Target::Local(t.region))
    } else {
        ctx.stats.count_ipc(1);
        let seg = req.target_id;
        let hit = memo
            .mapping
            .as_ref()
            .filter(|m| !refresh && m.get().segment == seg)
            .filter(|m| m.get().contains(req.target_offset, req.length))
            .cloned()
            .or_else(|| {
                let found = RemoteCache::find_in(maps, seg, req.target_offset, req.length);
                found.filter(|_| !refresh).map(MapRef::Cached)
            });
        let m = match hit {
            Some(m) => m,
            None => {
                let m = ctx
                    .remote
                    .resolve(
                        &ctx.rt,
                        ctx.host.as_ref(),
                        dg,
                        n,
                        req.target_id,
                        req.target_offset,
                        req.length,
                        refresh,
                    )
                    .map_err(un)?;
                MapRef::Opened(m)
            }
        };
        memo.mapping = Some(m.clone());
        let mem = Mem::Device {
            dev: m.get().device,
            addr: m.get().translate(req.target_offset),
            bounded: true,
        };
        (mem, Target::Remote(m))
    };
    let (src, dst) = if req.opcode == OP_READ {
        (tmem, local.mem)
    } else {
        (local.mem, tmem)
    };
    Ok(Some(Plan {
        src,
        dst,
        local: local.region,
        target,
    }))
}

/// Every how many submits a thread samples the latency of (reading the clock twice per submit
/// costs more than a small copy's bookkeeping).
const LATENCY_SAMPLE: u32 = 16;

/// Whether this submit's latency goes into the counters' latency summary.
fn sampled() -> bool {
    thread_local! {
        static N: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    N.try_with(|n| {
        let v = n.get();
        n.set(v.wrapping_add(1));
        v % LATENCY_SAMPLE == 0
    })
    .unwrap_or(false)
}

/// Carries out one submit of `count` requests (request `i` is `req(i)`) as tasks `first..`
/// of `batch` (already PENDING).
pub fn run(
    ctx: &Ctx,
    batch: &Arc<SubBatch>,
    first: usize,
    count: usize,
    req: &dyn Fn(usize) -> Request,
) {
    let start = sampled().then(Instant::now);
    let mut next = 0; // first request not yet handed to a copy
    let mut cur = 0; // first request of the copy under way
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut dg = DeviceGuard::new(ctx.rt.as_ref());
        // The remote cache as it is now, kept for this submit: the mappings in it stay open
        // while the copies through them run.
        let maps = ctx.remote.snapshot();
        if count == 1
            && compact::allowed()
            && one(ctx, &mut dg, &maps, batch, first, &req(0), start)
        {
            compact::taken();
            return;
        }
        let mut memo = Memo::default();
        // Bytes of each task of the copy under way (written before they are read: not
        // zeroed on every submit).
        let mut lens_store = [std::mem::MaybeUninit::<u64>::uninit(); 64];
        while next < count {
            let i = next;
            cur = i;
            let head = req(i);
            let p = match plan(ctx, &mut dg, &maps, &mut memo, &head, false) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    next += 1;
                    ctx.ends()
                        .complete(batch, first + i, &[0], Path::Unrouted, start);
                    continue;
                }
                Err((path, e)) => {
                    next += 1;
                    ctx.ends().fail(batch, first + i, path, e.msg, start);
                    continue;
                }
            };
            let thr = ctx.cfg.async_memcpy_threshold;
            let is_async = |r: &Request| thr > 0 && r.length >= thr;
            let async_ok = is_async(&head);
            // Merge the following requests that continue this copy.
            let mut n = 1;
            let mut total = head.length;
            lens_store[0].write(head.length);
            let mut prev = head;
            while i + n < count && n < MERGE_MAX_TASKS.min(lens_store.len()) {
                let r = req(i + n);
                if !(p.continues(&prev, &r)
                    && is_async(&r) == async_ok
                    && total + r.length <= MERGE_LIMIT)
                {
                    break;
                }
                total += r.length;
                lens_store[n].write(r.length);
                n += 1;
                prev = r;
            }
            // SAFETY: entries 0..n were written just above; MaybeUninit<u64> and u64 have the
            // same layout.
            let lens: &[u64] =
                unsafe { std::slice::from_raw_parts(lens_store.as_ptr().cast::<u64>(), n) };
            next += n;
            let tasks = Tasks {
                batch,
                head: first + i,
                lens,
                start,
            };
            match execute(
                ctx, &mut dg, &maps, &mut memo, &tasks, &head, &p, total, async_ok,
            ) {
                Ok(Done::Now(path)) => ctx.ends().complete(batch, first + i, lens, path, start),
                Ok(Done::InFlight) => {}
                Err(_) if n > 1 => {
                    // The merged copy failed: each request on its own, so each task says
                    // how it went.
                    let mut off = 0;
                    for k in 0..n {
                        let one = Tasks {
                            batch,
                            head: first + i + k,
                            lens: &lens[k..k + 1],
                            start,
                        };
                        let pk = p.shifted(off);
                        let r = &req(i + k);
                        let done = execute(
                            ctx, &mut dg, &maps, &mut memo, &one, r, &pk, r.length, async_ok,
                        );
                        end(ctx, &one, done);
                        off += r.length;
                    }
                }
                Err((path, e)) => ctx.ends().fail(batch, first + i, path, e.msg, start),
            }
        }
    }));
    if let Err(p) = r {
        // The tasks not handed to a copy yet would stay PENDING for ever.
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        for i in cur..count {
            let t = batch.slot(first + i);
            if t.load().0 == super::status::PENDING && t.event() == 0 {
                ctx.ends().fail(
                    batch,
                    first + i,
                    Path::Unrouted,
                    format!("internal error while copying: {msg}"),
                    start,
                );
            }
        }
    }
}

/// A submit of one request on buffers the transport knows (a registered local buffer; a
/// registered local target or a cached mapping of a peer's buffer), copied synchronously on
/// one device or device to device without striping: the common small transfer, in one compact
/// function so that a host whose own work between two transfers evicts the instruction cache
/// reloads few lines of ours. Does what the general path does for such a request, and the same
/// on failure (from [`retry_fresh`] on). `false`: not such a request, and nothing was done.
#[inline(never)]
fn one(
    ctx: &Ctx,
    dg: &mut DeviceGuard<'_>,
    maps: &[Arc<Mapping>],
    batch: &Arc<SubBatch>,
    first: usize,
    req: &Request,
    start: Option<Instant>,
) -> bool {
    let len = req.length;
    let write = req.opcode == OP_WRITE;
    let thr = ctx.cfg.async_memcpy_threshold;
    if !(write || req.opcode == OP_READ) || len == 0 || (thr > 0 && len >= thr) {
        return false;
    }
    let Some(local) = ctx
        .registry
        .lookup(req.source, len)
        .filter(|r| r.device >= 0)
    else {
        return false;
    };
    let (tdev, taddr, mapping) = if req.target_id == LOCAL_SEGMENT_ID {
        match ctx.registry.lookup(req.target_offset, len) {
            Some(r) if r.device >= 0 => (r.device, req.target_offset, None),
            _ => return false,
        }
    } else {
        match RemoteCache::find_in(maps, req.target_id, req.target_offset, len) {
            Some(m) => (m.device, m.translate(req.target_offset), Some(m)),
            None => return false,
        }
    };
    let (sd, sa, dd, da) = if write {
        (local.device, req.source, tdev, taddr)
    } else {
        (tdev, taddr, local.device, req.source)
    };
    if sd != dd
        && ctx.cfg.enable_port_striping
        && len >= ctx.cfg.port_striping_min_size
        && ctx.topo.ports(sd, dd).len() > 1
    {
        return false;
    }
    if mapping.is_some() {
        ctx.stats.count_ipc(1);
    }
    let done = if sd == dd {
        match dg.ensure(sd) {
            Ok(()) => ctx
                .rt
                .memcpy(da, sa, len as usize, MemcpyKind::DeviceToDevice)
                .map(|()| Path::SameDevice)
                .map_err(|e| (Path::SameDevice, sync_copy_failed(&e, len, sa, da, sd))),
            Err(e) => Err((Path::SameDevice, e)),
        }
    } else {
        peer_chain(ctx, dg, da, dd, sa, sd, len).map_err(|e| (Path::Peer, e))
    };
    match done {
        Ok(path) => ctx.ends().complete(batch, first, &[len], path, start),
        Err(f) => {
            let dev = |dev, addr| Mem::Device {
                dev,
                addr,
                bounded: true,
            };
            let p = Plan {
                src: dev(sd, sa),
                dst: dev(dd, da),
                local: Some(local),
                target: match mapping {
                    Some(m) => Target::Remote(MapRef::Cached(m)),
                    None => Target::Local(ctx.registry.lookup(req.target_offset, len)),
                },
            };
            one_failed(ctx, dg, maps, batch, first, req, &p, start, f);
        }
    }
    true
}

/// The end of [`one`] when its copy failed: what the general path does then.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn one_failed(
    ctx: &Ctx,
    dg: &mut DeviceGuard<'_>,
    maps: &[Arc<Mapping>],
    batch: &Arc<SubBatch>,
    first: usize,
    req: &Request,
    p: &Plan,
    start: Option<Instant>,
    failure: Failure,
) {
    let lens = [req.length];
    let tasks = Tasks {
        batch,
        head: first,
        lens: &lens,
        start,
    };
    let mut memo = Memo::default();
    let done = retry_fresh(
        ctx, dg, maps, &mut memo, &tasks, req, p, req.length, false, failure,
    );
    end(ctx, &tasks, done);
}

/// Ends the tasks of one copy as it went: completed with their bytes, left to their
/// asynchronous run, or (a copy of one task) failed.
fn end(ctx: &Ctx, tasks: &Tasks<'_>, done: std::result::Result<Done, Failure>) {
    match done {
        Ok(Done::Now(path)) => {
            ctx.ends()
                .complete(tasks.batch, tasks.head, tasks.lens, path, tasks.start)
        }
        Ok(Done::InFlight) => {}
        Err((path, e)) => ctx
            .ends()
            .fail(tasks.batch, tasks.head, path, e.msg, tasks.start),
    }
}

/// One copy; through a remote mapping that fails, once more after the host refreshed the
/// peer's buffer and it came back with a new handle (the peer re-registered).
#[allow(clippy::too_many_arguments)]
fn execute<'m>(
    ctx: &Ctx,
    dg: &mut DeviceGuard<'_>,
    maps: &'m [Arc<Mapping>],
    memo: &mut Memo<'m>,
    tasks: &Tasks<'_>,
    req: &Request,
    p: &Plan,
    len: u64,
    async_ok: bool,
) -> std::result::Result<Done, Failure> {
    match copy(ctx, dg, tasks, p.src, p.dst, len, async_ok, p.keep()) {
        Ok(d) => Ok(d),
        Err(f) => retry_fresh(ctx, dg, maps, memo, tasks, req, p, len, async_ok, f),
    }
}

/// After a copy failed with `first`: through a remote mapping, once more if the host's
/// refreshed answer names a new handle (the peer re-registered); else `first`.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn retry_fresh<'m>(
    ctx: &Ctx,
    dg: &mut DeviceGuard<'_>,
    maps: &'m [Arc<Mapping>],
    memo: &mut Memo<'m>,
    tasks: &Tasks<'_>,
    req: &Request,
    p: &Plan,
    len: u64,
    async_ok: bool,
    first: Failure,
) -> std::result::Result<Done, Failure> {
    let Some(old) = p.keep() else {
        return Err(first);
    };
    let fresh = match plan(ctx, dg, maps, memo, req, true) {
        Ok(Some(q)) => q,
        Ok(None) => return Err(first),
        Err((_, e)) => {
            return Err((
                first.0,
                Error::new(first.1.code, format!("{}; {}", first.1.msg, e.msg)),
            ))
        }
    };
    match fresh.keep() {
        Some(m)
            if (m.handle != old.handle || m.ptr != old.ptr)
                && m.contains(req.target_offset, len) => {}
        _ => return Err(first),
    }
    copy(
        ctx,
        dg,
        tasks,
        fresh.src,
        fresh.dst,
        len,
        async_ok,
        fresh.keep(),
    )
}

/// Whether a submit of one request may take [`one`] (always, outside tests; tests compare it
/// with the general path).
#[cfg(not(test))]
mod compact {
    #[inline(always)]
    pub fn allowed() -> bool {
        true
    }
    #[inline(always)]
    pub fn taken() {}
}

#[cfg(test)]
pub(crate) mod compact {
    use std::cell::Cell;
    thread_local! {
        /// (whether [`super::one`] may run, how often it carried a submit out) on this thread.
        static STATE: Cell<(bool, u64)> = const { Cell::new((true, 0)) };
    }
    pub fn allowed() -> bool {
        STATE.with(|s| s.get().0)
    }
    pub fn taken() {
        STATE.with(|s| s.set((s.get().0, s.get().1 + 1)));
    }
    /// Allows or forbids the compact path on this thread; returns how often it was taken.
    pub fn set(allowed: bool) -> u64 {
        STATE.with(|s| s.replace((allowed, 0)).1)
    }
}
