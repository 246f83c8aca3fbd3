//! The transport: install/uninstall, sub-batches, submit/status/cancel, buffer registration.
//!
//! Copies run on the thread that submits them ([`super::submit`]): no thread of the library
//! sits on the path of a request.

use super::batch::Slab;
use super::context::Ctx;
use super::device::DeviceGuard;
use super::locate::owning_device;
use super::registry::Region;
use super::stats::Snapshot;
use super::topology::Topology;
use super::{code, is_device_location, parse_location, status, Error, Host, Request, Result};
use crate::config::Config;
use crate::tang::loader::TangLib;
use crate::tang::{hex_upper, RtResult, Runtime, MEMORY_TYPE_DEVICE};
use arc_swap::ArcSwapOption;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use super::device::on_device;

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
        }
    }

    /// Loads the runtime, checks devices, detects topology.
    pub fn install(&self, config_json: Option<&str>) -> Result<()> {
        let _g = self.lifecycle.lock().unwrap_or_else(|e| e.into_inner());
        if self.installed.load().is_some() {
            return Err(Error::invalid("transport is already installed"));
        }
        let cfg = Config::load(config_json, &mut |m| log::warn!("{m}")).map_err(Error::invalid)?;
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
        let _g = self.lifecycle.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ctx) = self.installed.swap(None) else {
            return Ok(());
        };
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

    /// Whether install succeeded and uninstall has not run.
    pub fn is_installed(&self) -> bool {
        self.installed.load().is_some()
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
        let limit = match &*self.installed.load() {
            Some(ctx) => ctx.cfg.max_sub_batch_size,
            None => Config::default().max_sub_batch_size,
        };
        if max_size == 0 || max_size > limit {
            return Err(Error::invalid(format!(
                "sub-batch size {max_size} out of range 1..={limit}"
            )));
        }
        self.slab.allocate(max_size as usize, progress_token)
    }

    /// Frees a sub-batch. Asynchronous copies still in flight run to their end; their status
    /// can no longer be read.
    pub fn free(&self, handle: u64) -> Result<()> {
        let b = self.slab.free(handle)?;
        if let Some(ctx) = &*self.installed.load() {
            ctx.gpu.sweep(ctx.ends(), Some(&b));
        }
        Ok(())
    }

    /// Number of tasks submitted to a sub-batch.
    pub fn size(&self, handle: u64) -> Result<u64> {
        self.slab.with(handle, |b| Ok(b.size() as u64))
    }

    /// `(tasks submitted, capacity)` of a sub-batch.
    pub fn fill(&self, handle: u64) -> Result<(u64, u64)> {
        self.slab
            .with(handle, |b| Ok((b.size() as u64, b.capacity() as u64)))
    }

    /// Appends one task per request, in order, and carries them out on this thread:
    /// synchronous copies are terminal when this returns, asynchronous ones are in flight.
    /// Fails only for an invalid sub-batch, an uninstalled transport or a capacity overflow
    /// (nothing is appended then); a request that cannot be carried out becomes a FAILED
    /// task with a message.
    pub fn submit(&self, handle: u64, reqs: &[Request]) -> Result<()> {
        let batch = self.slab.get(handle)?;
        self.with(|ctx| {
            let first = batch.reserve(reqs.len())?;
            for i in 0..reqs.len() {
                batch.slot(first + i).set_pending();
            }
            super::submit::run(ctx, &batch, first, reqs);
            Ok(())
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

    /// Number of devices seen at install.
    pub fn device_count(&self) -> Result<i32> {
        self.with(|ctx| Ok(ctx.device_count))
    }

    /// Number of cached remote mappings.
    pub fn remote_mappings(&self) -> Result<usize> {
        self.with(|ctx| Ok(ctx.remote.len()))
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
        // The handle names the whole allocation and a peer maps it at its base, so an
        // address inside an allocation would reach the wrong bytes on the peer. The byte
        // before `addr` belongs to the same allocation exactly when its handle is equal.
        // The runtime also says which device really holds the memory: a location naming
        // another device would send every later copy down the wrong path.
        let (handle, before, actual) = dg
            .on(idx, || {
                let h = rt.ipc_get_handle(addr)?;
                let actual = rt
                    .pointer_attributes(addr)
                    .ok()
                    .filter(|a| a.memory_type == MEMORY_TYPE_DEVICE)
                    .map(|a| a.device);
                RtResult::Ok((h, rt.ipc_get_handle(addr - 1).ok(), actual))
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
        if let Some(d) = actual.filter(|&d| d != idx) {
            return Err(Error::invalid(format!(
                "buffer {addr:#x} registered at {location:?} is memory of device {d}"
            )));
        }
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
        // A device-mapped alias of pinned host memory is normalised to its host pointer.
        let host_delta = match rt.pointer_attributes(addr) {
            Ok(a) if a.memory_type != MEMORY_TYPE_DEVICE && a.host_pointer != 0 => {
                a.host_pointer.wrapping_sub(addr)
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::Fake;
    use crate::engine::{status, RemoteBuffer, OP_READ, OP_WRITE};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct TestHost {
        remote: Mutex<Vec<RemoteBuffer>>,
        lookups: AtomicU64,
        refreshes: AtomicU64,
        notified: AtomicU64,
        machine: Option<String>,
    }

    impl Host for TestHost {
        fn lookup_remote_buffer(
            &self,
            _s: u64,
            addr: u64,
            len: u64,
            refresh: bool,
        ) -> Result<RemoteBuffer> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if refresh {
                self.refreshes.fetch_add(1, Ordering::SeqCst);
            }
            self.remote
                .lock()
                .unwrap()
                .iter()
                .find(|b| b.base <= addr && addr + len <= b.base + b.length)
                .cloned()
                .ok_or_else(|| Error::new(code::NEEDS_REFRESH_CACHE, "not found"))
        }
        fn notify_progress(&self, _t: u64) {
            self.notified.fetch_add(1, Ordering::SeqCst);
        }
        fn local_machine_id(&self) -> Option<String> {
            self.machine.clone()
        }
    }

    fn setup(fake: Fake, cfg: &str) -> (Arc<Fake>, Arc<TestHost>, Transport) {
        let fake = Arc::new(fake);
        let host = Arc::new(TestHost {
            machine: Some("m1".into()),
            ..Default::default()
        });
        let t = Transport::new(host.clone(), RuntimeSource::Given(fake.clone()));
        t.install(Some(cfg)).unwrap();
        (fake, host, t)
    }

    fn wait(t: &Transport, h: u64, id: u64) -> (u8, u64) {
        for _ in 0..5000 {
            let s = t.status(h, id).unwrap();
            if s.0 != status::PENDING && s.0 != status::INITIAL {
                return s;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("task {id} did not finish");
    }

    fn req(op: u32, source: u64, target_id: u64, target_offset: u64, length: u64) -> Request {
        Request {
            opcode: op,
            source,
            target_id,
            target_offset,
            length,
        }
    }

    #[test]
    fn same_device_and_host_paths_copy_bytes() {
        let (fake, host, t) = setup(Fake::new(2), "{}");
        let a = fake.alloc(0, 4096, 0x11);
        let b = fake.alloc(0, 4096, 0x00);
        t.add_buffer(a, 4096, "cuda:0").unwrap();
        t.add_buffer(b, 4096, "cuda:0").unwrap();
        let h = t.allocate(8, 42).unwrap();
        t.submit(h, &[req(OP_WRITE, a, 0, b, 4096)]).unwrap();
        assert_eq!(wait(&t, h, 0), (status::COMPLETED, 4096));
        assert_eq!(fake.read(b, 4096), vec![0x11; 4096]);
        // host -> device and device -> host
        let mut host_buf = vec![0x5au8; 1000];
        let hp = host_buf.as_mut_ptr() as u64;
        t.add_buffer(hp, 1000, "cpu:0").unwrap();
        t.submit(h, &[req(OP_WRITE, hp, 0, b + 8, 1000)]).unwrap();
        assert_eq!(wait(&t, h, 1).0, status::COMPLETED);
        assert_eq!(fake.read(b + 8, 1000), vec![0x5a; 1000]);
        t.submit(h, &[req(OP_READ, hp, 0, a, 1000)]).unwrap();
        assert_eq!(wait(&t, h, 2).0, status::COMPLETED);
        assert!(host_buf.iter().all(|&x| x == 0x11));
        assert!(host.notified.load(Ordering::SeqCst) >= 3);
        let st = t.stats().unwrap();
        assert_eq!(st.paths[0].0, 1);
        assert_eq!(st.paths[5].0, 1);
        assert_eq!(st.paths[6].0, 1);
    }

    #[test]
    fn peer_fallbacks_and_striping() {
        let mut f = Fake::new(4);
        f.links = vec![(0, 1, vec![2, 3, 5]), (1, 0, vec![2])];
        let (fake, _h, t) = setup(
            f,
            r#"{"enable_port_striping": true, "port_striping_min_size": "8KiB"}"#,
        );
        let a = fake.alloc(0, 64 << 10, 0x21);
        let b = fake.alloc(1, 64 << 10, 0);
        t.add_buffer(a, 64 << 10, "cuda:0").unwrap();
        t.add_buffer(b, 64 << 10, "cuda:1").unwrap();
        let h = t.allocate(16, 0).unwrap();
        // small: tangMemcpyPeer
        t.submit(h, &[req(OP_WRITE, a, 0, b, 4096)]).unwrap();
        assert_eq!(wait(&t, h, 0).0, status::COMPLETED);
        // striped over three ports
        t.submit(h, &[req(OP_WRITE, a, 0, b, 60 << 10)]).unwrap();
        assert_eq!(wait(&t, h, 1), (status::COMPLETED, 60 << 10));
        assert_eq!(fake.read(b, 60 << 10), vec![0x21; 60 << 10]);
        assert_eq!(fake.calls("tangDeviceGetPeerPointer"), 3);
        // forced fallback to v2, then to the peer pointer
        fake.fail("tangMemcpyPeer");
        let c = fake.alloc(1, 4096, 0);
        t.add_buffer(c, 4096, "cuda:1").unwrap();
        t.submit(h, &[req(OP_READ, c, 0, a, 4096)]).unwrap();
        assert_eq!(wait(&t, h, 2).0, status::COMPLETED);
        assert_eq!(fake.read(c, 4096), vec![0x21; 4096]);
        fake.fail("tangMemcpyPeer_v2");
        let d = fake.alloc(0, 4096, 0x77);
        t.add_buffer(d, 4096, "cuda:0").unwrap();
        t.submit(h, &[req(OP_WRITE, d, 0, c, 4096)]).unwrap();
        assert_eq!(wait(&t, h, 3).0, status::COMPLETED);
        assert_eq!(fake.read(c, 4096), vec![0x77; 4096]);
        let st = t.stats().unwrap();
        assert_eq!(st.paths[1].0, 1, "peer");
        assert_eq!(st.paths[2].0, 1, "peer v2");
        assert_eq!(st.paths[3].0, 1, "peer pointer");
        assert_eq!(st.paths[4].0, 1, "striped");
        // every path broken: FAILED task with a message, submit still OK
        fake.fail("tangDeviceGetPeerPointer");
        t.submit(h, &[req(OP_WRITE, d, 0, c, 4096)]).unwrap();
        assert_eq!(wait(&t, h, 4).0, status::FAILED);
        let m = t.task_error(h, 4).unwrap().unwrap();
        assert!(
            m.contains("tangMemcpyPeer_v2") && m.contains("port 2"),
            "{m}"
        );
    }

    #[test]
    fn ipc_remote_reads_writes_and_reregistration() {
        let (fake, host, t) = setup(Fake::new(2), "{}");
        // The "remote" buffer lives in the fake too; its handle is exported by registration.
        let remote = fake.alloc(1, 8192, 0x33);
        let shm = t.add_buffer(remote, 8192, "cuda:1").unwrap();
        assert_eq!(shm.len(), 128);
        host.remote.lock().unwrap().push(RemoteBuffer {
            base: 0x10_0000,
            length: 8192,
            location: "cuda:1".into(),
            shm_path: shm,
            machine_id: "m1".into(),
        });
        let local = fake.alloc(0, 8192, 0);
        t.add_buffer(local, 8192, "cuda:0").unwrap();
        let h = t.allocate(8, 0).unwrap();
        t.submit(h, &[req(OP_READ, local, 5, 0x10_0000 + 100, 4000)])
            .unwrap();
        assert_eq!(wait(&t, h, 0).0, status::COMPLETED);
        assert_eq!(fake.read(local, 4000), vec![0x33; 4000]);
        t.submit(h, &[req(OP_READ, local, 5, 0x10_0000, 10)])
            .unwrap();
        assert_eq!(wait(&t, h, 1).0, status::COMPLETED);
        assert_eq!(
            host.lookups.load(Ordering::SeqCst),
            1,
            "cached after the first miss"
        );
        assert_eq!(fake.calls("tangIpcOpenMemHandle"), 1);
        // Re-registration at the same remote address with a new handle.
        let remote2 = fake.alloc(1, 8192, 0x44);
        let shm2 = t.add_buffer(remote2, 8192, "cuda:1").unwrap();
        host.remote.lock().unwrap()[0].shm_path = shm2;
        assert_eq!(t.invalidate_segment(5).unwrap(), 1);
        t.submit(h, &[req(OP_READ, local, 5, 0x10_0000, 100)])
            .unwrap();
        assert_eq!(wait(&t, h, 2).0, status::COMPLETED);
        assert_eq!(fake.read(local, 100), vec![0x44; 100]);
        assert_eq!(fake.calls("tangIpcOpenMemHandle"), 2);
        assert_eq!(fake.calls("tangIpcCloseMemHandle"), 1, "old mapping closed");
        // Another machine: FAILED with a message.
        host.remote.lock().unwrap()[0].machine_id = "m2".into();
        t.invalidate_segment(5).unwrap();
        t.submit(h, &[req(OP_READ, local, 5, 0x10_0000, 100)])
            .unwrap();
        assert_eq!(wait(&t, h, 3).0, status::FAILED);
        assert!(t.task_error(h, 3).unwrap().unwrap().contains("machine"));
        // A host buffer is not reachable.
        {
            let mut r = host.remote.lock().unwrap();
            r[0].machine_id = "m1".into();
            r[0].location = "cpu:0".into();
        }
        t.submit(h, &[req(OP_READ, local, 5, 0x10_0000, 100)])
            .unwrap();
        assert_eq!(wait(&t, h, 4).0, status::FAILED);
        // Malformed shm_path (e.g. SHM's POSIX name): FAILED, after one refresh.
        {
            let mut r = host.remote.lock().unwrap();
            r[0].location = "cuda:1".into();
            r[0].shm_path = "/mooncake_shm_1".into();
        }
        let before = host.refreshes.load(Ordering::SeqCst);
        t.submit(h, &[req(OP_READ, local, 5, 0x10_0000, 100)])
            .unwrap();
        assert_eq!(wait(&t, h, 5).0, status::FAILED);
        assert_eq!(host.refreshes.load(Ordering::SeqCst), before + 1);
        t.uninstall().unwrap();
        assert_eq!(
            fake.calls("tangIpcCloseMemHandle"),
            fake.calls("tangIpcOpenMemHandle"),
            "every mapping closed at uninstall"
        );
    }

    #[test]
    fn hot_path_runtime_calls() {
        let mut f = Fake::new(2);
        f.links = vec![(0, 1, vec![1])];
        let (fake, _h, t) = setup(f, "{}");
        let a = fake.alloc(0, 1 << 16, 1);
        let b = fake.alloc(0, 1 << 16, 2);
        let c = fake.alloc(1, 1 << 16, 3);
        for (x, l) in [(a, "cuda:0"), (b, "cuda:0"), (c, "cuda:1")] {
            t.add_buffer(x, 1 << 16, l).unwrap();
        }
        let h = t.allocate(256, 0).unwrap();
        let before = fake.total_calls();
        let reqs: Vec<Request> = (0..100)
            .map(|i| {
                if i % 2 == 0 {
                    req(OP_WRITE, a + i * 64, 0, b + i * 64, 64)
                } else {
                    req(OP_WRITE, a + i * 64, 0, c + i * 64, 64)
                }
            })
            .collect();
        t.submit(h, &reqs).unwrap();
        for i in 0..100 {
            assert_eq!(wait(&t, h, i).0, status::COMPLETED);
        }
        // One copy per request (alternating peer and same-device copies, so nothing merges),
        // plus asking once for the caller's device, which is already device 0.
        let calls = fake.total_calls() - before;
        assert_eq!(calls, 101, "runtime calls for 100 requests");
    }

    #[test]
    fn async_cancel_and_capacity() {
        let (fake, _h, t) = setup(Fake::new(1), r#"{"async_memcpy_threshold": 1}"#);
        let a = fake.alloc(0, 8192, 9);
        let b = fake.alloc(0, 8192, 0);
        t.add_buffer(a, 8192, "cuda:0").unwrap();
        t.add_buffer(b, 8192, "cuda:0").unwrap();
        let h = t.allocate(4, 0).unwrap();
        t.submit(
            h,
            &[
                req(OP_WRITE, a, 0, b, 4096),
                req(OP_WRITE, a, 0, b + 4096, 100),
            ],
        )
        .unwrap();
        assert_eq!(wait(&t, h, 0), (status::COMPLETED, 4096));
        assert_eq!(wait(&t, h, 1), (status::COMPLETED, 100));
        assert_eq!(fake.read(b, 4096), vec![9; 4096]);
        assert_eq!(fake.calls("tangMemcpyAsync"), 1);
        assert_eq!(fake.calls("tangEventCreateWithFlags"), 1);
        assert_eq!(
            t.submit(h, &[req(0, a, 0, b, 1); 3]).unwrap_err().code,
            code::TOO_MANY_REQUESTS
        );
        assert_eq!(t.size(h).unwrap(), 2);
        assert!(t.status(h, 2).is_err());
        t.free(h).unwrap();
        assert!(t.status(h, 0).is_err());
        assert!(t.free(h).is_err());
    }

    #[test]
    fn sync_copies_are_terminal_when_submit_returns_and_cancel_cancels_nothing() {
        let (fake, host, t) = setup(Fake::new(1), "{}");
        let a = fake.alloc(0, 1 << 20, 9);
        let b = fake.alloc(0, 1 << 20, 0);
        t.add_buffer(a, 1 << 20, "cuda:0").unwrap();
        t.add_buffer(b, 1 << 20, "cuda:0").unwrap();
        let h = t.allocate(100, 0).unwrap();
        let reqs: Vec<Request> = (0..100)
            .map(|i| req(OP_WRITE, a + i * 4096, 0, b + i * 8192, 512))
            .collect();
        t.submit(h, &reqs).unwrap();
        for i in 0..100 {
            assert_eq!(
                t.status(h, i).unwrap(),
                (status::COMPLETED, 512),
                "task {i}"
            );
            assert!(!t.cancel(h, i).unwrap(), "task {i} already ran");
            assert_eq!(t.status(h, i).unwrap().0, status::COMPLETED);
        }
        assert!(!t.supports_cancellation());
        assert!(t.cancel(h, 100).is_err(), "unknown task");
        assert!(t.cancel(h ^ (1 << 40), 0).is_err(), "unknown sub-batch");
        assert_eq!(
            host.notified.load(Ordering::SeqCst),
            100,
            "one notification per task"
        );
        assert_eq!(fake.read(b + 8192 * 7, 512), vec![9; 512]);
    }

    #[test]
    fn contiguous_requests_merge_into_one_copy_and_each_task_reports_its_bytes() {
        let mut f = Fake::new(2);
        f.links = vec![(0, 1, vec![1])];
        let (fake, host, t) = setup(f, "{}");
        let a = fake.alloc(0, 1 << 20, 0);
        let b = fake.alloc(0, 1 << 20, 0);
        let c = fake.alloc(1, 1 << 20, 0);
        for (x, l) in [(a, "cuda:0"), (b, "cuda:0"), (c, "cuda:1")] {
            t.add_buffer(x, 1 << 20, l).unwrap();
        }
        let h = t.allocate(1000, 0).unwrap();
        // 64 contiguous 4 KiB writes on one device, then to a peer device: one copy each.
        let run = |dst: u64| -> Vec<Request> {
            (0..64)
                .map(|i| req(OP_WRITE, a + i * 4096, 0, dst + i * 4096, 4096))
                .collect()
        };
        let (m0, p0) = (fake.calls("tangMemcpy"), fake.calls("tangMemcpyPeer"));
        t.submit(h, &run(b)).unwrap();
        t.submit(h, &run(c)).unwrap();
        assert_eq!(fake.calls("tangMemcpy") - m0, 1, "64 same-device requests");
        assert_eq!(fake.calls("tangMemcpyPeer") - p0, 1, "64 peer requests");
        for i in 0..128 {
            assert_eq!(
                t.status(h, i).unwrap(),
                (status::COMPLETED, 4096),
                "task {i}"
            );
        }
        assert_eq!(host.notified.load(Ordering::SeqCst), 128);
        let st = t.stats().unwrap();
        assert_eq!(st.paths[0].0, 64, "counted per request");
        assert_eq!(st.paths[1], (64, 64 * 4096, 0));
        // Not merged: a gap on either side, another opcode, the end of a buffer.
        let m1 = fake.calls("tangMemcpy");
        t.submit(
            h,
            &[
                req(OP_WRITE, a, 0, b, 100),
                req(OP_WRITE, a + 100, 0, b + 101, 100),
                req(OP_WRITE, a + 200, 0, b + 201, 100),
                req(OP_READ, a + 300, 0, b + 301, 100),
                req(OP_WRITE, a + (1 << 20) - 100, 0, b, 100),
            ],
        )
        .unwrap();
        assert_eq!(fake.calls("tangMemcpy") - m1, 4);
        // The bytes each request moved are where they belong.
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1 << 16).collect();
        let host_buf = bytes.clone();
        t.add_buffer(host_buf.as_ptr() as u64, 1 << 16, "cpu:0")
            .unwrap();
        let reqs: Vec<Request> = (0..16)
            .map(|i| {
                req(
                    OP_WRITE,
                    host_buf.as_ptr() as u64 + i * 4096,
                    0,
                    c + i * 4096,
                    4096,
                )
            })
            .collect();
        let hd = fake.calls("tangMemcpy");
        t.submit(h, &reqs).unwrap();
        assert_eq!(
            fake.calls("tangMemcpy") - hd,
            1,
            "host to device merged too"
        );
        assert_eq!(fake.read(c, 1 << 16), bytes);
    }

    #[test]
    fn a_failed_merged_copy_is_retried_request_by_request() {
        let (fake, _h, t) = setup(Fake::new(1), "{}");
        let a = fake.alloc(0, 1 << 16, 5);
        let b = fake.alloc(0, 1 << 16, 0);
        t.add_buffer(a, 1 << 16, "cuda:0").unwrap();
        t.add_buffer(b, 1 << 16, "cuda:0").unwrap();
        let h = t.allocate(16, 0).unwrap();
        // Copies above 4 KiB fail: the merged one does, three of four requests alone do not.
        fake.fail_longer_than.store(4096, Ordering::Relaxed);
        let lens = [4096u64, 1000, 8192, 24];
        let mut off = 0;
        let reqs: Vec<Request> = lens
            .iter()
            .map(|&l| {
                let r = req(OP_WRITE, a + off, 0, b + off, l);
                off += l;
                r
            })
            .collect();
        t.submit(h, &reqs).unwrap();
        assert_eq!(t.status(h, 0).unwrap(), (status::COMPLETED, 4096));
        assert_eq!(t.status(h, 1).unwrap(), (status::COMPLETED, 1000));
        assert_eq!(t.status(h, 2).unwrap().0, status::FAILED);
        assert!(t.task_error(h, 2).unwrap().unwrap().contains("8192 bytes"));
        assert_eq!(t.status(h, 3).unwrap(), (status::COMPLETED, 24));
        assert_eq!(fake.read(b, 5096), vec![5; 5096]);
        assert_eq!(
            fake.read(b + 5096, 8192),
            vec![0; 8192],
            "the failed one wrote nothing"
        );
        assert_eq!(fake.read(b + 5096 + 8192, 24), vec![5; 24]);
    }

    #[test]
    fn the_callers_device_is_asked_once_and_restored() {
        let mut f = Fake::new(3);
        f.links = vec![(0, 1, vec![1])];
        let (fake, _h, t) = setup(f, "{}");
        let a = fake.alloc(0, 1 << 16, 1);
        let b = fake.alloc(0, 1 << 16, 2);
        let c = fake.alloc(1, 1 << 16, 3);
        for (x, l) in [(a, "cuda:0"), (b, "cuda:0"), (c, "cuda:1")] {
            t.add_buffer(x, 1 << 16, l).unwrap();
        }
        let h = t.allocate(64, 0).unwrap();
        fake.set_device(2).unwrap();
        // Same-device copies need device 0 current: asked once, switched once, restored.
        let before = fake.total_calls();
        let (gets, sets) = (fake.calls("tangGetDevice"), fake.calls("tangSetDevice"));
        let reqs: Vec<Request> = (0..10)
            .map(|i| req(OP_WRITE, a + i * 128, 0, b + i * 256, 64))
            .collect();
        t.submit(h, &reqs).unwrap();
        assert_eq!(fake.current(), 2, "the caller's device is back");
        assert_eq!(fake.calls("tangGetDevice") - gets, 1);
        assert_eq!(fake.calls("tangSetDevice") - sets, 2, "to 0, back to 2");
        assert_eq!(fake.total_calls() - before, 10 + 3);
        // Peer copies name their devices: no device call at all.
        let before = fake.total_calls();
        let reqs: Vec<Request> = (0..10)
            .map(|i| req(OP_WRITE, a + i * 128, 0, c + i * 256, 64))
            .collect();
        t.submit(h, &reqs).unwrap();
        assert_eq!(
            fake.total_calls() - before,
            10,
            "one tangMemcpyPeer per request"
        );
        assert_eq!(fake.current(), 2);
        for i in 0..20 {
            assert_eq!(t.status(h, i).unwrap().0, status::COMPLETED);
        }
    }

    #[test]
    fn peer_copies_learn_when_the_source_device_must_be_current() {
        let mut f = Fake::new(2);
        f.peer_needs_current = true;
        f.links = vec![(0, 1, vec![1])];
        let (fake, _h, t) = setup(f, "{}");
        let a = fake.alloc(0, 1 << 16, 1);
        let c = fake.alloc(1, 1 << 16, 0);
        t.add_buffer(a, 1 << 16, "cuda:0").unwrap();
        t.add_buffer(c, 1 << 16, "cuda:1").unwrap();
        let h = t.allocate(8, 0).unwrap();
        fake.set_device(1).unwrap();
        t.submit(h, &[req(OP_WRITE, a, 0, c, 64)]).unwrap();
        assert_eq!(t.status(h, 0).unwrap().0, status::COMPLETED);
        assert_eq!(
            fake.calls("tangMemcpyPeer"),
            2,
            "failed once, then with device 0 current"
        );
        assert_eq!(fake.current(), 1);
        let peer = fake.calls("tangMemcpyPeer");
        t.submit(h, &[req(OP_WRITE, a + 64, 0, c + 64, 64)])
            .unwrap();
        assert_eq!(t.status(h, 1).unwrap().0, status::COMPLETED);
        assert_eq!(
            fake.calls("tangMemcpyPeer") - peer,
            1,
            "no failed attempt any more"
        );
        assert_eq!(fake.read(c, 128), vec![1; 128]);
        assert_eq!(fake.current(), 1);
    }

    #[test]
    fn async_runs_finish_through_status_and_recycle_their_events() {
        let (fake, host, t) = setup(Fake::new(1), r#"{"async_memcpy_threshold": "4KiB"}"#);
        let a = fake.alloc(0, 1 << 16, 9);
        let b = fake.alloc(0, 1 << 16, 0);
        t.add_buffer(a, 1 << 16, "cuda:0").unwrap();
        t.add_buffer(b, 1 << 16, "cuda:0").unwrap();
        let h = t.allocate(16, 0).unwrap();
        fake.hold_events(true);
        // Four contiguous async requests: one copy, one event; one small one: synchronous.
        let reqs: Vec<Request> = (0..4)
            .map(|i| req(OP_WRITE, a + i * 4096, 0, b + i * 4096, 4096))
            .chain([req(OP_WRITE, a, 0, b + 32768, 100)])
            .collect();
        t.submit(h, &reqs).unwrap();
        assert_eq!(fake.calls("tangMemcpyAsync"), 1);
        assert_eq!(t.in_flight().unwrap(), 1);
        for i in 0..4 {
            assert_eq!(t.status(h, i).unwrap().0, status::PENDING);
        }
        assert_eq!(t.status(h, 4).unwrap(), (status::COMPLETED, 100));
        assert_eq!(host.notified.load(Ordering::SeqCst), 1);
        fake.hold_events(false);
        assert_eq!(t.status(h, 2).unwrap(), (status::COMPLETED, 4096));
        for i in 0..4 {
            assert_eq!(
                t.status(h, i).unwrap(),
                (status::COMPLETED, 4096),
                "task {i}"
            );
        }
        assert_eq!(host.notified.load(Ordering::SeqCst), 5);
        assert_eq!(t.in_flight().unwrap(), 0);
        assert_eq!(fake.read(b, 16384), vec![9; 16384]);
        // The event is reused; a sub-batch freed with a copy in flight is swept.
        fake.hold_events(true);
        t.submit(h, &[req(OP_WRITE, a, 0, b, 8192)]).unwrap();
        assert_eq!(fake.calls("tangEventCreateWithFlags"), 1);
        fake.hold_events(false);
        t.free(h).unwrap();
        assert_eq!(t.in_flight().unwrap(), 0);
        assert_eq!(host.notified.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn uninstall_waits_for_async_copies_then_fails_what_is_left() {
        let (fake, _h, t) = setup(Fake::new(1), r#"{"async_memcpy_threshold": 1}"#);
        let a = fake.alloc(0, 8192, 9);
        let b = fake.alloc(0, 8192, 0);
        t.add_buffer(a, 8192, "cuda:0").unwrap();
        t.add_buffer(b, 8192, "cuda:0").unwrap();
        let h = t.allocate(4, 0).unwrap();
        fake.hold_events(true);
        t.submit(h, &[req(OP_WRITE, a, 0, b, 4096)]).unwrap();
        let f2 = fake.clone();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            f2.hold_events(false);
        });
        t.uninstall().unwrap();
        releaser.join().unwrap();
        assert_eq!(t.status(h, 0).unwrap(), (status::COMPLETED, 4096));
        // Never completes: FAILED once the drain limit has passed.
        t.install(Some(r#"{"async_memcpy_threshold": 1}"#)).unwrap();
        t.add_buffer(a, 8192, "cuda:0").unwrap();
        t.add_buffer(b, 8192, "cuda:0").unwrap();
        fake.hold_events(true);
        t.submit(h, &[req(OP_WRITE, a, 0, b, 4096)]).unwrap();
        t.uninstall_within(Duration::from_millis(20)).unwrap();
        assert_eq!(t.status(h, 1).unwrap().0, status::FAILED);
        assert!(t.task_error(h, 1).unwrap().unwrap().contains("uninstalled"));
        fake.hold_events(false);
        assert_eq!(
            fake.calls("tangStreamDestroy"),
            fake.calls("tangStreamCreateWithFlags"),
            "streams destroyed"
        );
    }

    #[test]
    fn striped_lanes_use_one_stream_per_port() {
        let mut f = Fake::new(2);
        f.links = vec![(0, 1, vec![2, 3, 5])];
        let (fake, _h, t) = setup(
            f,
            r#"{"enable_port_striping": true, "port_striping_min_size": "8KiB"}"#,
        );
        let a = fake.alloc(0, 1 << 16, 0x21);
        let b = fake.alloc(1, 1 << 16, 0);
        t.add_buffer(a, 1 << 16, "cuda:0").unwrap();
        t.add_buffer(b, 1 << 16, "cuda:1").unwrap();
        let h = t.allocate(4, 0).unwrap();
        t.submit(h, &[req(OP_WRITE, a, 0, b, 48 << 10)]).unwrap();
        assert_eq!(t.status(h, 0).unwrap(), (status::COMPLETED, 48 << 10));
        assert_eq!(fake.calls("tangStreamCreateWithFlags"), 3);
        assert_eq!(fake.calls("tangMemcpyAsync"), 3);
        assert_eq!(fake.calls("tangEventSynchronize"), 3);
        t.submit(h, &[req(OP_WRITE, a, 0, b, 48 << 10)]).unwrap();
        assert_eq!(
            fake.calls("tangStreamCreateWithFlags"),
            3,
            "streams are kept"
        );
        assert_eq!(
            fake.calls("tangEventCreateWithFlags"),
            3,
            "events are reused"
        );
        assert_eq!(fake.read(b, 48 << 10), vec![0x21; 48 << 10]);
    }

    #[test]
    fn a_panic_while_copying_fails_the_tasks_left_and_restores_the_device() {
        let (fake, _h, t) = setup(Fake::new(2), "{}");
        let a = fake.alloc(0, 1 << 16, 1);
        let b = fake.alloc(0, 1 << 16, 0);
        t.add_buffer(a, 1 << 16, "cuda:0").unwrap();
        t.add_buffer(b, 1 << 16, "cuda:0").unwrap();
        let h = t.allocate(8, 0).unwrap();
        fake.set_device(1).unwrap();
        fake.panic_at_len.store(77, Ordering::Relaxed);
        t.submit(
            h,
            &[
                req(OP_WRITE, a, 0, b, 10),
                req(OP_WRITE, a + 100, 0, b + 200, 77),
                req(OP_WRITE, a + 300, 0, b + 400, 10),
            ],
        )
        .unwrap();
        assert_eq!(t.status(h, 0).unwrap().0, status::COMPLETED);
        for i in 1..3 {
            assert_eq!(t.status(h, i).unwrap().0, status::FAILED);
            assert!(t
                .task_error(h, i)
                .unwrap()
                .unwrap()
                .contains("internal error"));
        }
        assert_eq!(fake.current(), 1, "the caller's device is back");
    }

    #[test]
    fn install_errors() {
        let fake = Arc::new(Fake::new(0));
        let t = Transport::new(Arc::new(TestHost::default()), RuntimeSource::Given(fake));
        assert_eq!(t.install(None).unwrap_err().code, code::DEVICE_NOT_FOUND);
        let t = Transport::new(
            Arc::new(TestHost::default()),
            RuntimeSource::Given(Arc::new(Fake::new(1))),
        );
        let e = t
            .install(Some(r#"{"worker_threads": "many"}"#))
            .unwrap_err();
        assert!(e.msg.contains("worker_threads"));
        t.install(Some("{}")).unwrap();
        assert!(t.install(Some("{}")).is_err());
        assert_eq!(
            t.add_buffer(0x1000, 10, "cuda:7").unwrap_err().code,
            code::DEVICE_NOT_FOUND
        );
        assert!(t.add_buffer(0x1000, 10, "rocm:0").is_err());
        assert_eq!(t.add_buffer(0x1000, 10, "cpu:0").unwrap(), "");
    }

    #[test]
    fn concurrent_submitters_on_one_sub_batch() {
        let (fake, _h, t) = setup(Fake::new(2), r#"{"worker_threads": 3}"#);
        let a = fake.alloc(0, 1 << 16, 0x42);
        let b = fake.alloc(1, 1 << 16, 0);
        t.add_buffer(a, 1 << 16, "cuda:0").unwrap();
        t.add_buffer(b, 1 << 16, "cuda:1").unwrap();
        let h = t.allocate(400, 0).unwrap();
        std::thread::scope(|s| {
            for k in 0..4u64 {
                let t = &t;
                s.spawn(move || {
                    for i in 0..25u64 {
                        let off = (k * 25 + i) * 64;
                        let r = [req(OP_WRITE, a + off, 0, b + off, 64); 4];
                        t.submit(h, &r).unwrap();
                    }
                });
            }
        });
        assert_eq!(t.size(h).unwrap(), 400);
        for i in 0..400 {
            assert_eq!(wait(&t, h, i), (status::COMPLETED, 64));
        }
        assert_eq!(fake.read(b, 100 * 64), vec![0x42; 100 * 64]);
        assert_eq!(
            t.submit(h, &[req(OP_WRITE, a, 0, b, 1)]).unwrap_err().code,
            code::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn topology_detection_failure_is_not_fatal() {
        let mut f = Fake::new(2);
        f.links = vec![(0, 1, vec![0, 1])];
        f.fail("ptmlPtlinkPhytopoDetect");
        let (_fake, _h, t) = setup(f, "{}");
        assert!(t.is_installed());
    }

    #[test]
    fn sub_range_of_an_allocation_is_rejected() {
        let (fake, _h, t) = setup(Fake::new(1), "{}");
        let a = fake.alloc(0, 8192, 1);
        let e = t.add_buffer(a + 4096, 4096, "cuda:0").unwrap_err();
        assert_eq!(e.code, code::INVALID_ARGUMENT);
        assert!(
            e.msg.contains("inside a larger device allocation"),
            "{}",
            e.msg
        );
        // From the first byte, even when shorter than the allocation, it is fine.
        assert_eq!(t.add_buffer(a, 4096, "cuda:0").unwrap().len(), 128);
        assert_eq!(
            fake.calls("tangSetDevice"),
            0,
            "device 0 was already current"
        );
    }

    #[test]
    fn many_devices_need_no_lock_table() {
        let (fake, _h, t) = setup(Fake::new(40), r#"{"worker_threads": 2}"#);
        let h = t.allocate(64, 0).unwrap();
        let mut reqs = Vec::new();
        let mut dsts = Vec::new();
        for d in 32..40 {
            let s = fake.alloc(d, 256, d as u8);
            let x = fake.alloc(d + 1 - 8 * ((d + 1) / 40), 256, 0);
            t.add_buffer(s, 256, &format!("cuda:{d}")).unwrap();
            reqs.push(req(OP_WRITE, s, 0, x, 256));
            dsts.push((x, d as u8));
        }
        t.submit(h, &reqs).unwrap();
        for i in 0..reqs.len() as u64 {
            assert_eq!(wait(&t, h, i).0, status::COMPLETED);
        }
        for (x, v) in dsts {
            assert_eq!(fake.read(x, 256), vec![v; 256]);
        }
    }
}
