//! Carrying out one copy on the submitting thread: synchronously (the task is terminal when
//! this returns), or issued onto a stream the transport owns with an event (the task stays
//! PENDING until its event completes).
//!
//! Paths: same device `tangMemcpy` D2D; cross-device `tangMemcpyPeer` → `tangMemcpyPeer_v2`
//! → a peer pointer over each active PTLink port; striping: one lane per port, each on that
//! port's stream, so lanes run side by side; host ↔ device with the device side current.

use super::batch::SubBatch;
use super::context::Ctx;
use super::device::DeviceGuard;
use super::inflight::{Run, MAX_EVENTS};
use super::locate::Mem;
use super::remote::Mapping;
use super::stats::Path;
use super::{code, Error, Result};
use crate::tang::{Handle, MemcpyKind, RtError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// How a copy went when it did not fail.
pub enum Done {
    /// The bytes are in place.
    Now(Path),
    /// Issued: the tasks finish when their event completes.
    InFlight,
}

/// A failed copy: the path it was on and why.
pub type Failure = (Path, Error);

/// The tasks one copy carries: `[head, head + lens.len())` of `batch`, `lens` being the bytes
/// each reports.
pub struct Tasks<'a> {
    pub batch: &'a Arc<SubBatch>,
    pub head: usize,
    pub lens: &'a [u64],
    /// When the submit began, if its latency is sampled.
    pub start: Option<Instant>,
}

/// One copy of `len` bytes from `src` to `dst`; `async_ok` when it may be issued
/// asynchronously (its requests reach `async_memcpy_threshold`).
#[allow(clippy::too_many_arguments)]
pub fn copy(
    ctx: &Ctx,
    dg: &mut DeviceGuard<'_>,
    tasks: &Tasks<'_>,
    src: Mem,
    dst: Mem,
    len: u64,
    async_ok: bool,
    keep: Option<&Arc<Mapping>>,
) -> std::result::Result<Done, Failure> {
    use Mem::{Device, Host};
    let one = |dev, d, s, kind, path, dg: &mut DeviceGuard<'_>| {
        single(ctx, dg, tasks, dev, d, s, len, kind, path, async_ok, keep)
    };
    match (src, dst) {
        (
            Device {
                dev: sd, addr: sa, ..
            },
            Device {
                dev: dd, addr: da, ..
            },
        ) if sd == dd => one(sd, da, sa, MemcpyKind::DeviceToDevice, Path::SameDevice, dg),
        (
            Device {
                dev: sd,
                addr: sa,
                bounded: sb,
            },
            Device {
                dev: dd,
                addr: da,
                bounded: db,
            },
        ) => {
            // Lanes are checked by the runtime one by one: a range not known to lie in one
            // buffer could then be copied partly, into whatever follows its allocation. Such
            // a range is copied in one call, which the runtime checks as a whole.
            if ctx.cfg.enable_port_striping
                && len >= ctx.cfg.port_striping_min_size
                && sb
                && db
                && ctx.topo.ports(sd, dd).len() > 1
            {
                let ports = ctx.topo.ports(sd, dd);
                return stripe(ctx, dg, tasks, sa, sd, da, dd, len, ports, async_ok, keep);
            }
            peer_chain(ctx, dg, da, dd, sa, sd, len)
                .map(Done::Now)
                .map_err(|e| (Path::Peer, e))
        }
        (Host { addr: sa }, Device { dev, addr: da, .. }) => one(
            dev,
            da,
            sa,
            MemcpyKind::HostToDevice,
            Path::HostToDevice,
            dg,
        ),
        (Device { dev, addr: sa, .. }, Host { addr: da }) => one(
            dev,
            da,
            sa,
            MemcpyKind::DeviceToHost,
            Path::DeviceToHost,
            dg,
        ),
        (Host { .. }, Host { .. }) => Err((
            Path::Unrouted,
            Error::new(
                code::NOT_IMPLEMENTED,
                "host-to-host copies are not handled by sunrise_link (no device memory involved)",
            ),
        )),
    }
}

/// A copy executed by one device, with that device current: `tangMemcpy`, or
/// `tangMemcpyAsync` on the device's stream plus an event.
#[allow(clippy::too_many_arguments)]
fn single(
    ctx: &Ctx,
    dg: &mut DeviceGuard<'_>,
    tasks: &Tasks<'_>,
    dev: i32,
    dst: u64,
    src: u64,
    len: u64,
    kind: MemcpyKind,
    path: Path,
    async_ok: bool,
    keep: Option<&Arc<Mapping>>,
) -> std::result::Result<Done, Failure> {
    let rt = ctx.rt.as_ref();
    let f = |e: Error| (path, e);
    dg.ensure(dev).map_err(f)?;
    if !async_ok {
        rt.memcpy(dst, src, len as usize, kind)
            .map_err(|e| f(sync_copy_failed(&e, len, src, dst, dev)))?;
        return Ok(Done::Now(path));
    }
    let stream = ctx.gpu.stream(dg, dev, None).map_err(f)?;
    let ev = ctx.gpu.take_event(dg, dev).map_err(f)?;
    // Only a failure needs words (no allocation on the way of a copy that works).
    let what = || format!("async copy of {len} bytes {src:#x} -> {dst:#x} on device {dev}");
    if let Err(e) = rt.memcpy_async(dst, src, len as usize, kind, stream) {
        ctx.gpu.give_event(dev, ev);
        return Err(f(Error::runtime(&e, what())));
    }
    if let Err(e) = rt.event_record(ev, stream) {
        ctx.gpu.destroy_event(ev);
        // The copy is queued and will run: the task must not end (FAILED, then written)
        // before it does. Wait for the stream; its result is the copy's.
        return match rt.stream_synchronize(stream) {
            Some(Ok(())) => Ok(Done::Now(path)),
            Some(Err(s)) => Err(f(Error::runtime(
                &s,
                format!("{} (its event could not be recorded: {e})", what()),
            ))),
            None => Err(f(Error::runtime(
                &e,
                format!("{}; the queued copy may still complete", what()),
            ))),
        };
    }
    let mut events = [(0, 0); MAX_EVENTS];
    events[0] = (ev, stream);
    start_run(ctx, tasks, dev, events, 1, path, keep);
    Ok(Done::InFlight)
}

/// Why a synchronous copy on one device failed (out of line: copies work).
#[cold]
#[inline(never)]
pub fn sync_copy_failed(e: &RtError, len: u64, src: u64, dst: u64, dev: i32) -> Error {
    Error::runtime(
        e,
        format!("copy of {len} bytes {src:#x} -> {dst:#x} on device {dev}"),
    )
}

fn start_run(
    ctx: &Ctx,
    tasks: &Tasks<'_>,
    dev: i32,
    events: [(Handle, Handle); MAX_EVENTS],
    n_events: usize,
    path: Path,
    keep: Option<&Arc<Mapping>>,
) {
    ctx.stats.count_async(tasks.lens.len() as u64);
    ctx.gpu.start(
        ctx.ends(),
        Run {
            batch: tasks.batch.clone(),
            head: tasks.head,
            len: tasks.lens.len(),
            dev,
            events,
            n_events,
            path,
            start: tasks.start,
            _keep: keep.cloned(),
        },
        tasks.lens,
    );
}

/// Cross-device copy: `tangMemcpyPeer`, then `tangMemcpyPeer_v2`, then a peer pointer over
/// each active port. The peer copies name both devices, so they are first tried without
/// touching the current device (as the vendor's own samples do); if `tangMemcpyPeer` then
/// fails and works with the source device current, the transport remembers that.
///
/// The first try is all a working copy runs; the rest is out of line (`peer_fallback`).
#[inline]
pub fn peer_chain(
    ctx: &Ctx,
    dg: &mut DeviceGuard<'_>,
    dst: u64,
    dd: i32,
    src: u64,
    sd: i32,
    len: u64,
) -> Result<Path> {
    if !ctx.peer_needs_current.load(Ordering::Relaxed) {
        return match ctx.rt.memcpy_peer(dst, dd, src, sd, len as usize) {
            Ok(()) => Ok(Path::Peer),
            Err(e) => peer_fallback(ctx, dg, dst, dd, src, sd, len, Some(e)),
        };
    }
    peer_fallback(ctx, dg, dst, dd, src, sd, len, None)
}

/// [`peer_chain`] after its first try: `first` is how a `tangMemcpyPeer` with the current
/// device untouched failed, `None` when the source device must be current for it.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn peer_fallback(
    ctx: &Ctx,
    dg: &mut DeviceGuard<'_>,
    dst: u64,
    dd: i32,
    src: u64,
    sd: i32,
    len: u64,
    first: Option<RtError>,
) -> Result<Path> {
    let rt = ctx.rt.as_ref();
    let n = len as usize;
    let needs_current = first.is_none();
    let mut why = Vec::new();
    match first {
        Some(e) => why.push(e.to_string()),
        None => {
            dg.ensure(sd)?;
            match rt.memcpy_peer(dst, dd, src, sd, n) {
                Ok(()) => return Ok(Path::Peer),
                Err(e) => why.push(e.to_string()),
            }
        }
    }
    if !needs_current && dg.current() != sd && dg.ensure(sd).is_ok() {
        match rt.memcpy_peer(dst, dd, src, sd, n) {
            Ok(()) => {
                if !ctx.peer_needs_current.swap(true, Ordering::Relaxed) {
                    log::info!(
                        "tangMemcpyPeer needs the source device current here; \
                         making it current from now on"
                    );
                }
                return Ok(Path::Peer);
            }
            Err(e) => why.push(format!("with device {sd} current: {e}")),
        }
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
        dg.ensure(sd)?;
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

/// Issues one lane of a striped copy: a peer pointer over `port`, then `tangMemcpyAsync` on
/// the port's stream and an event. `Ok(None)`: the lane is already done (its event could not
/// be recorded, so its stream was waited for).
#[allow(clippy::too_many_arguments)]
fn issue_lane(
    ctx: &Ctx,
    dg: &mut DeviceGuard<'_>,
    sd: i32,
    port: i32,
    src: u64,
    dst: u64,
    len: u64,
) -> std::result::Result<Option<(Handle, Handle)>, String> {
    let rt = ctx.rt.as_ref();
    dg.ensure(sd).map_err(|e| e.msg)?;
    let mapped = match rt.peer_pointer(sd, port, dst) {
        Some(Ok(m)) => m,
        Some(Err(e)) => return Err(e.to_string()),
        None => return Err("tangDeviceGetPeerPointer not available".into()),
    };
    let st = ctx.gpu.stream(dg, sd, Some(port)).map_err(|e| e.msg)?;
    let ev = ctx.gpu.take_event(dg, sd).map_err(|e| e.msg)?;
    if let Err(e) = rt.memcpy_async(mapped, src, len as usize, MemcpyKind::DeviceToDevice, st) {
        ctx.gpu.give_event(sd, ev);
        return Err(e.to_string());
    }
    if let Err(e) = rt.event_record(ev, st) {
        ctx.gpu.destroy_event(ev);
        return match rt.stream_synchronize(st) {
            Some(Ok(())) => Ok(None),
            Some(Err(s)) => Err(format!("{s} (event not recorded: {e})")),
            None => Err(format!(
                "event not recorded: {e}; the lane may still complete"
            )),
        };
    }
    Ok(Some((ev, st)))
}

/// A striped copy: one lane per active port, each issued on its port's stream so the lanes
/// run side by side. A lane that cannot be issued is copied through the peer-copy chain.
/// Synchronous copies wait for every lane here; asynchronous ones finish when all lanes'
/// events have completed.
#[allow(clippy::too_many_arguments)]
fn stripe(
    ctx: &Ctx,
    dg: &mut DeviceGuard<'_>,
    tasks: &Tasks<'_>,
    src: u64,
    sd: i32,
    dst: u64,
    dd: i32,
    len: u64,
    ports: &[i32],
    async_ok: bool,
    keep: Option<&Arc<Mapping>>,
) -> std::result::Result<Done, Failure> {
    let n = ports.len().min(MAX_EVENTS) as u64;
    // Lane size rounded up to 4 KiB so lanes start aligned.
    let chunk = len.div_ceil(n).div_ceil(4096) * 4096;
    let mut events = [(0, 0); MAX_EVENTS];
    let mut n_events = 0;
    let mut errors: Vec<String> = Vec::new();
    let mut off = 0;
    for &port in &ports[..n as usize] {
        if off >= len {
            break;
        }
        let l = chunk.min(len - off);
        match issue_lane(ctx, dg, sd, port, src + off, dst + off, l) {
            Ok(Some(e)) => {
                events[n_events] = e;
                n_events += 1;
            }
            Ok(None) => {}
            Err(first) => {
                if let Err(e) = peer_chain(ctx, dg, dst + off, dd, src + off, sd, l) {
                    errors.push(format!("lane over port {port} ({first}), then {}", e.msg));
                }
            }
        }
        off += l;
    }
    if async_ok && errors.is_empty() && n_events > 0 {
        start_run(ctx, tasks, sd, events, n_events, Path::Striped, keep);
        return Ok(Done::InFlight);
    }
    for &(ev, st) in &events[..n_events] {
        match ctx.gpu.wait_event(ev, st) {
            Ok(()) => ctx.gpu.give_event(sd, ev),
            Err(m) => {
                ctx.gpu.destroy_event(ev);
                errors.push(m);
            }
        }
    }
    if errors.is_empty() {
        Ok(Done::Now(Path::Striped))
    } else {
        Err((
            Path::Striped,
            Error::new(
                code::RUNTIME_ERROR,
                format!(
                    "striped copy of {len} bytes device {sd} {src:#x} -> device {dd} {dst:#x}: {}",
                    errors.join("; ")
                ),
            ),
        ))
    }
}
