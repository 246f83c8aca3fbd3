//! The transport: install/uninstall, sub-batches, submit/status/cancel, buffer registration.
//!
//! Copies run on the thread that submits them ([`super::submit`]): no thread of the library
//! sits on the path of a request.

use super::batch::SubBatch;
use super::context::Ctx;
use super::device::DeviceGuard;
use super::locate::{owner, owning_device};
use super::registry::Region;
use super::slab::Slab;
use super::stats::Snapshot;
use super::topology::Topology;
use super::{
    code, is_device_location, parse_location, status, Error, Host, Request, Result, Submitted,
};
use crate::config::Config;
use crate::tang::loader::TangLib;
use crate::tang::{hex_upper, RtResult, Runtime, MEMORY_TYPE_DEVICE};
use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long uninstall waits for asynchronous copies in flight before failing them.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How long uninstall waits for calls still running on other threads.
const QUIESCE_LIMIT: Duration = Duration::from_secs(10);

/// Where the runtime comes from at install.
pub enum RuntimeSource {
    /// Load the libraries (config `runtime_lib_dir`, else the MC_TANGRT_* lookup).
    Load,
    /// Use this runtime (tests).
    Given(Arc<dyn Runtime>),
}

/// One transport instance.
pub struct Transport {
    host: Arc<dyn Host>,
    source: RuntimeSource,
    /// The installed state; loaded without a lock on every call.
    installed: ArcSwapOption<Ctx>,
    /// Serialises install and uninstall.
    lifecycle: Mutex<()>,
    slab: Slab,
    /// `max_sub_batch_size` of the installed config (the default when not installed).
    batch_limit: AtomicU64,
}

fn not_installed() -> Error {
    Error::invalid("transport is not installed")
}

impl Transport {
    /// A transport that is not installed yet.
    pub fn new(host: Arc<dyn Host>, source: RuntimeSource) -> Transport {
        Transport {
            host,
            source,
            installed: ArcSwapOption::empty(),
            lifecycle: Mutex::new(()),
            slab: Slab::default(),
            batch_limit: AtomicU64::new(Config::default().max_sub_batch_size),
        }
    }

    /// Loads the runtime, checks devices, detects topology.
    pub fn install(&self, config_json: Option<&str>) -> Result<()> {
        let _g = self.lifecycle.lock();
        if self.installed.load().is_some() {
            return Err(Error::invalid("transport is already installed"));
        }
        let cfg = Config::load(config_json, &mut |m| log::warn!("{m}")).map_err(Error::invalid)?;
        if cfg.worker_threads > 0 {
            log::warn!(
                "worker_threads = {} has no effect: copies run on the submitting thread",
                cfg.worker_threads
            );
        }
        if !cfg.enable {
            log::info!("transports/sunrise_link/enable is false; installing anyway on request");
        }
        let rt: Arc<dyn Runtime> = match &self.source {
            RuntimeSource::Given(rt) => rt.clone(),
            RuntimeSource::Load => Arc::new(
                TangLib::load(cfg.runtime_lib_dir.as_deref())
                    .map_err(|e| Error::new(code::RUNTIME_ERROR, e.to_string()))?,
            ),
        };
        let device_count = rt
            .device_count()
            .map_err(|e| Error::runtime(&e, "counting Tang devices"))?;
        if device_count <= 0 {
            return Err(Error::new(
                code::DEVICE_NOT_FOUND,
                "no Tang devices (tangGetDeviceCount reported 0)",
            ));
        }
        let topo = Topology::detect(rt.as_ref(), device_count);
        log::info!(
            "sunrise_link installed: {device_count} devices, {} linked device pairs",
            topo.links(),
        );
        self.batch_limit
            .store(cfg.max_sub_batch_size, Ordering::Relaxed);
        let ctx = Ctx::new(rt, self.host.clone(), cfg, device_count, topo);
        self.installed.store(Some(Arc::new(ctx)));
        Ok(())
    }

    /// Waits for asynchronous copies in flight (bounded), closes every IPC mapping, event
    /// and stream, unloads the runtime. Calls still running on other threads are waited for
    /// first (bounded).
    pub fn uninstall(&self) -> Result<()> {
        self.uninstall_within(DRAIN_LIMIT)
    }

    /// [`Transport::uninstall`], waiting at most `drain_limit` for asynchronous copies.
    pub(crate) fn uninstall_within(&self, drain_limit: Duration) -> Result<()> {
        let _g = self.lifecycle.lock();
        let Some(ctx) = self.installed.swap(None) else {
            return Ok(());
        };
        self.batch_limit
            .store(Config::default().max_sub_batch_size, Ordering::Relaxed);
        let deadline = Instant::now() + QUIESCE_LIMIT;
        while Arc::strong_count(&ctx) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        ctx.gpu.drain(ctx.ends(), drain_limit);
        if Arc::strong_count(&ctx) > 1 {
            log::error!(
                "uninstall: calls still running on other threads after {}s; \
                 streams and events are left to them",
                QUIESCE_LIMIT.as_secs()
            );
        } else {
            ctx.gpu.shutdown();
        }
        ctx.remote.clear();
        ctx.registry.clear();
        Ok(())
    }

    /// Runs `f` on the installed state.
    fn with<T>(&self, f: impl FnOnce(&Arc<Ctx>) -> Result<T>) -> Result<T> {
        match &*self.installed.load() {
            Some(ctx) => f(ctx),
            None => Err(not_installed()),
        }
    }

    /// Allocates a sub-batch of capacity `max_size`.
    pub fn allocate(&self, max_size: u64, progress_token: u64) -> Result<u64> {
        let limit = self.batch_limit.load(Ordering::Relaxed);
        self.slab
            .allocate(checked_size(max_size, limit)?, progress_token)
    }

    /// Frees a sub-batch and allocates one of `max_size` in its place (cheaper than both);
    /// returns the new handle. Nothing changes when the handle is not live or the size is out
    /// of range.
    pub fn recycle(&self, handle: u64, max_size: u64, progress_token: u64) -> Result<u64> {
        let limit = self.batch_limit.load(Ordering::Relaxed);
        // A sub-batch with copies in flight is held by them, so the slab gives a fresh one
        // and the runs end on their own (as after `free`).
        self.slab
            .recycle(handle, checked_size(max_size, limit)?, progress_token)
    }

    /// Frees a sub-batch. Asynchronous copies still in flight run to their end; their status
    /// can no longer be read.
    pub fn free(&self, handle: u64) -> Result<()> {
        let b = self.slab.free(handle)?;
        if b.has_runs() {
            if let Some(ctx) = &*self.installed.load() {
                ctx.gpu.sweep(ctx.ends(), Some(&b));
            }
        }
        Ok(())
    }

    /// Number of tasks submitted to a sub-batch.
    pub fn size(&self, handle: u64) -> Result<u64> {
        self.slab.with(handle, |b| Ok(b.size() as u64))
    }

    /// Appends one task per request, in order, and carries them out on this thread:
    /// synchronous copies are terminal when this returns, asynchronous ones are in flight.
    /// Fails only for an invalid sub-batch, an uninstalled transport or a capacity overflow
    /// (nothing is appended then); a request that cannot be carried out becomes a FAILED
    /// task with a message.
    pub fn submit(&self, handle: u64, reqs: &[Request]) -> Result<Submitted> {
        self.submit_with(handle, reqs.len(), |i| reqs[i])
    }

    /// [`Transport::submit`] of `count` requests, request `i` being `req(i)`; `req` is called
    /// only once the tasks are reserved (so a count that does not fit reads nothing).
    pub fn submit_with(
        &self,
        handle: u64,
        count: usize,
        req: impl Fn(usize) -> Request,
    ) -> Result<Submitted> {
        let batch = self.slab.get(handle)?;
        self.with(|ctx| submit_to(ctx, &batch, count, &req))
    }

    /// [`Transport::recycle`] of `handle` to `max_size` tasks and `progress_token`, then
    /// [`Transport::submit_with`] on the new handle (`renewed` is called with it first).
    /// Refused with nothing changed when the transport is not installed, the size is out of
    /// range, or the requests would not fit.
    pub fn renew_and_submit(
        &self,
        handle: u64,
        max_size: u64,
        progress_token: u64,
        count: usize,
        req: impl Fn(usize) -> Request,
        renewed: impl FnOnce(u64),
    ) -> Result<Submitted> {
        self.with(|ctx| {
            let size = checked_size(max_size, self.batch_limit.load(Ordering::Relaxed))?;
            if count > size {
                return Err(Error::new(
                    code::TOO_MANY_REQUESTS,
                    format!("{count} requests do not fit in a sub-batch of {size} tasks"),
                ));
            }
            let (fresh, batch) = self.slab.renew(handle, size, progress_token)?;
            renewed(fresh);
            submit_to(ctx, &batch, count, &req)
        })
    }

    /// `(status, transferred bytes)` of one task: one atomic load once the handle is checked;
    /// for a task whose asynchronous copy is in flight, also a query of its event.
    pub fn status(&self, handle: u64, task: u64) -> Result<(u8, u64)> {
        let pending = self.slab.with(handle, |b| {
            let t = b.task(task)?;
            let s = t.load();
            if s.0 == status::PENDING && t.event() != 0 {
                Ok(Err(b.clone()))
            } else {
                Ok(Ok(s))
            }
        })?;
        match pending {
            Ok(s) => Ok(s),
            Err(b) => {
                if let Some(ctx) = &*self.installed.load() {
                    ctx.gpu.poll(ctx.ends(), &b, task as usize);
                }
                Ok(b.slot(task as usize).load())
            }
        }
    }

    /// Whether `cancel` can stop anything: no. A task is carried out by the submit that
    /// created it, or is on the device when submit returns.
    pub fn supports_cancellation(&self) -> bool {
        false
    }

    /// Asks to cancel a task; returns whether it was cancelled, which is never: it already
    /// ran, or its copy is on the device and runs to its end (its status says how it went).
    pub fn cancel(&self, handle: u64, task: u64) -> Result<bool> {
        self.slab.with(handle, |b| b.task(task).map(|_| false))
    }

    /// The failure message of a task, if it failed.
    pub fn task_error(&self, handle: u64, task: u64) -> Result<Option<String>> {
        self.slab
            .with(handle, |b| Ok(b.task(task)?.error().map(str::to_string)))
    }

    /// Registers local memory. Device memory (`cuda:N`/`npu:N`) gets an IPC handle, returned
    /// as the 128 uppercase hex characters TENT stores in `shm_path`; host memory (`cpu:N`,
    /// `*`) is recorded for local copies and returns an empty string (not reachable by peers).
    pub fn add_buffer(&self, addr: u64, length: u64, location: &str) -> Result<String> {
        self.with(|ctx| register(ctx, addr, length, location))
    }

    /// Unregisters local memory registered at `addr`.
    pub fn remove_buffer(&self, addr: u64) -> Result<()> {
        self.with(|ctx| {
            ctx.registry.remove(addr).map(|_| ()).ok_or_else(|| {
                Error::new(
                    code::ADDRESS_NOT_REGISTERED,
                    format!("no buffer registered at {addr:#x}"),
                )
            })
        })
    }

    /// Drops (and closes once unused) every cached IPC mapping of a remote segment; the next
    /// request to it asks the host again.
    pub fn invalidate_segment(&self, segment: u64) -> Result<usize> {
        self.with(|ctx| Ok(ctx.remote.invalidate_segment(segment)))
    }

    /// A copy of the counters.
    pub fn stats(&self) -> Result<Snapshot> {
        self.with(|ctx| Ok(ctx.stats.snapshot()))
    }

    /// Number of asynchronous copies in flight.
    pub fn in_flight(&self) -> Result<usize> {
        self.with(|ctx| Ok(ctx.gpu.in_flight()))
    }
}

/// Registration of one buffer (see [`Transport::add_buffer`]).
fn register(ctx: &Ctx, addr: u64, length: u64, location: &str) -> Result<String> {
    if addr == 0 || length == 0 || addr.checked_add(length).is_none() {
        return Err(Error::invalid(format!(
            "invalid buffer [{addr:#x}, +{length})"
        )));
    }
    let (ty, mut idx) = parse_location(location);
    let rt = ctx.rt.as_ref();
    let mut dg = DeviceGuard::new(rt);
    if is_device_location(ty) {
        if idx < 0 {
            // "cuda" without a usable index: whichever device holds the memory.
            idx = owning_device(&mut dg, ctx.device_count, addr).unwrap_or(-1);
        }
        if idx < 0 || idx >= ctx.device_count {
            return Err(Error::new(
                code::DEVICE_NOT_FOUND,
                format!(
                    "buffer {addr:#x} at {location:?}: no such device (this process sees {})",
                    ctx.device_count
                ),
            ));
        }
        // The runtime says which device really holds the memory: a location naming another
        // device would send every later copy down the wrong path, and host memory at a device
        // location has no IPC handle a peer could open.
        match owning_device(&mut dg, ctx.device_count, addr) {
            Some(d) if d == idx => {}
            Some(d) => {
                return Err(Error::invalid(format!(
                    "buffer {addr:#x} registered at {location:?} is memory of device {d}"
                )))
            }
            None => {
                return Err(Error::invalid(format!(
                    "buffer {addr:#x} registered at {location:?} is not Tang device memory \
                     (host memory is registered at cpu:N or *)"
                )))
            }
        }
        // The handle names the whole allocation and a peer maps it at its base, so an
        // address inside an allocation would reach the wrong bytes on the peer. The byte
        // before `addr` belongs to the same allocation exactly when its handle is equal.
        let (handle, before) = dg
            .on(idx, || {
                let h = rt.ipc_get_handle(addr)?;
                RtResult::Ok((h, rt.ipc_get_handle(addr - 1).ok()))
            })
            .map_err(|e| {
                Error::new(
                    e.code,
                    format!(
                        "tangIpcGetMemHandle for buffer {addr:#x} ({location}): {}",
                        e.msg
                    ),
                )
            })?;
        if before == Some(handle) {
            return Err(Error::invalid(format!(
                "buffer {addr:#x} ({location}) starts inside a larger device allocation; \
                 a Tang IPC handle names the whole allocation and peers map it at its \
                 base, so register the allocation from its first byte"
            )));
        }
        ctx.registry.add(Region {
            base: addr,
            length,
            device: idx,
            host_delta: 0,
        });
        Ok(hex_upper(&handle))
    } else if ty == "cpu" || ty == "*" {
        // Device memory at a host location would be copied with host kinds and fail on
        // every copy: refused here. A device-mapped alias of pinned host memory is normalised
        // to its host pointer.
        let host_delta = match owner(&mut dg, ctx.device_count, addr) {
            Some(a) if a.memory_type == MEMORY_TYPE_DEVICE && a.device >= 0 => {
                return Err(Error::invalid(format!(
                    "buffer {addr:#x} registered at {location:?} is memory of device {}; \
                     register it at cuda:{}",
                    a.device, a.device
                )))
            }
            Some(a) if a.host_pointer != 0 => a.host_pointer.wrapping_sub(addr),
            _ => 0,
        };
        ctx.registry.add(Region {
            base: addr,
            length,
            device: -1,
            host_delta,
        });
        Ok(String::new())
    } else {
        Err(Error::invalid(format!(
            "buffer {addr:#x}: location type {ty:?} is not handled by sunrise_link"
        )))
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        let _ = self.uninstall();
    }
}

/// A sub-batch size, checked against the transport's limit.
fn checked_size(max_size: u64, limit: u64) -> Result<usize> {
    if max_size == 0 || max_size > limit {
        return Err(Error::invalid(format!(
            "sub-batch size {max_size} out of range 1..={limit}"
        )));
    }
    Ok(max_size as usize)
}

/// Reserves `count` tasks of `batch` and carries them out ([`super::submit::run`]); says how
/// many of them, from the first on, completed in full.
fn submit_to(
    ctx: &Ctx,
    batch: &Arc<SubBatch>,
    count: usize,
    req: &dyn Fn(usize) -> Request,
) -> Result<Submitted> {
    let first = batch.reserve(count)?;
    for i in 0..count {
        batch.slot(first + i).set_pending();
    }
    super::submit::run(ctx, batch, first, count, req);
    let completed = (0..count)
        .take_while(|&i| batch.slot(first + i).load() == (status::COMPLETED, req(i).length))
        .count();
    Ok(Submitted {
        first: first as u64,
        completed: completed as u64,
    })
}
