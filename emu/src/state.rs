//! Process-wide emulator state: configuration, devices, the address map, handles, lanes.

use crate::config::Config;
use crate::errors::*;
use crate::mem::{self, Backing, VaSpace};
use crate::stream::{Event, Stream};
use crate::types::tangError_t;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
pub fn rd<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}
pub fn wr<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// Pinned host memory from `tangHostAlloc` / `tangMallocHost`.
pub struct HostAlloc {
    pub ptr: *mut u8,
    pub size: usize,
    pub dev: u32,
    /// Device-side alias of mapped host memory.
    pub alias: Option<usize>,
}
unsafe impl Send for HostAlloc {}
unsafe impl Sync for HostAlloc {}

pub enum Kind {
    /// A `tangMalloc` allocation (this process's, or inherited across fork).
    Alloc(Arc<Backing>),
    /// An allocation of another process (or this one) opened through an IPC handle.
    Import(Arc<Backing>),
    /// The window through which device `dev` reaches one region of its link peer over `port`
    /// (same length, same offsets). Dead once the target is freed or closed.
    Window {
        port: u32,
        peer: u32,
        target: std::sync::Weak<Region>,
    },
    /// The device-side alias of mapped pinned host memory.
    MappedHost(Arc<HostAlloc>),
}

pub struct Region {
    pub start: usize,
    pub len: usize,
    /// VA bytes taken from the device's space (page-rounded).
    pub va_len: usize,
    pub dev: u32,
    pub kind: Kind,
}

pub struct Device {
    pub idx: u32,
    pub capacity: u64,
    pub used: AtomicU64,
    /// The device's address space: `PROT_NONE` chunks reserved as needed, never handed back
    /// to the host while the device exists, so a stale device pointer still faults.
    arena: Mutex<Arena>,
    /// Made with the device (a `OnceLock` being filled by another thread at `fork` would stay
    /// "being filled" in the child forever).
    pub default_stream: Arc<Stream>,
    pub peers: Mutex<Vec<u32>>,
}

/// Chunks of reserved address space and the free ranges in them.
struct Arena {
    chunks: Vec<(usize, usize)>,
    free: VaSpace,
}

/// Address space is reserved in chunks of this size (or the allocation's size if larger), so
/// that the emulator's footprint follows what is allocated (tools such as valgrind limit it).
const CHUNK: usize = 1 << 30;

impl Device {
    fn new(idx: u32, capacity: u64) -> Device {
        Device {
            idx,
            capacity,
            used: AtomicU64::new(0),
            arena: Mutex::new(Arena {
                chunks: Vec::new(),
                free: VaSpace::new(0),
            }),
            default_stream: Stream::new(idx),
            peers: Mutex::new(Vec::new()),
        }
    }

    /// Takes `len` (page-rounded) bytes of the device's address space.
    pub fn take_va(&self, len: usize) -> Option<usize> {
        let mut a = lock(&self.arena);
        if let Some(addr) = a.free.alloc(len) {
            return Some(addr);
        }
        let size = len.max(CHUNK);
        let base = mem::reserve(size)?;
        a.chunks.push((base, size));
        a.free.release(base, size);
        a.free.alloc(len)
    }

    pub fn give_va(&self, addr: usize, len: usize) {
        lock(&self.arena).free.release(addr, len);
    }

    pub fn default_stream(&self) -> Arc<Stream> {
        Arc::clone(&self.default_stream)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let a = self.arena.get_mut().unwrap_or_else(|e| e.into_inner());
        for &(base, size) in &a.chunks {
            unsafe { libc::munmap(base as *mut libc::c_void, size) };
        }
    }
}

/// Bandwidth/latency accounting of one port.
pub struct Lane {
    next_free: Mutex<Instant>,
}

pub struct Live {
    pub device_alloc: AtomicI64,
    pub host_alloc: AtomicI64,
    pub stream: AtomicI64,
    pub event: AtomicI64,
    pub ipc_open: AtomicI64,
}

/// (exporter pid, allocation id, device it is opened on).
pub type ImportKey = (u32, u64, u32);

pub struct Emu {
    cfg: RwLock<Arc<Config>>,
    devices: RwLock<Arc<Vec<Arc<Device>>>>,
    pub regions: RwLock<BTreeMap<usize, Arc<Region>>>,
    pub hosts: RwLock<BTreeMap<usize, Arc<HostAlloc>>>,
    /// (owner pid, allocation id, device) -> (address, open count).
    pub imports: Mutex<HashMap<ImportKey, (usize, u64)>>,
    /// (device, port, target region start) -> window start.
    pub windows: Mutex<HashMap<(u32, u32, usize), usize>>,
    pub streams: RwLock<HashMap<usize, Arc<Stream>>>,
    /// Destroyed streams whose queued work may still be running.
    pub draining: Mutex<Vec<Arc<Stream>>>,
    pub events: RwLock<HashMap<usize, Arc<Event>>>,
    lanes: Mutex<HashMap<(u32, u32), Arc<Lane>>>,
    pub live: Live,
    pub seq: AtomicU64,
}

static EMU: OnceLock<Emu> = OnceLock::new();

pub fn emu() -> &'static Emu {
    EMU.get_or_init(|| {
        let cfg = Config::from_env();
        crate::faults::install(&cfg.faults);
        mem::cleanup_stale();
        crate::fork::register();
        let devices = (0..cfg.devices)
            .map(|i| Arc::new(Device::new(i, cfg.memory_per_device)))
            .collect();
        Emu {
            cfg: RwLock::new(Arc::new(cfg)),
            devices: RwLock::new(Arc::new(devices)),
            regions: RwLock::new(BTreeMap::new()),
            hosts: RwLock::new(BTreeMap::new()),
            imports: Mutex::new(HashMap::new()),
            windows: Mutex::new(HashMap::new()),
            streams: RwLock::new(HashMap::new()),
            draining: Mutex::new(Vec::new()),
            events: RwLock::new(HashMap::new()),
            lanes: Mutex::new(HashMap::new()),
            live: Live {
                device_alloc: AtomicI64::new(0),
                host_alloc: AtomicI64::new(0),
                stream: AtomicI64::new(0),
                event: AtomicI64::new(0),
                ipc_open: AtomicI64::new(0),
            },
            seq: AtomicU64::new(1),
        }
    })
}

pub fn ensure_config() {
    emu();
}

pub fn try_emu() -> Option<&'static Emu> {
    EMU.get()
}

thread_local! {
    static CURRENT: Cell<i32> = const { Cell::new(0) };
}

pub fn current_raw() -> i32 {
    CURRENT.try_with(|c| c.get()).unwrap_or(0)
}

pub fn set_current(d: i32) {
    let _ = CURRENT.try_with(|c| c.set(d));
}

/// One resolved piece of device memory: where the emulator reads and writes it.
pub struct Resolved {
    pub ptr: *mut u8,
    pub dev: u32,
    /// Set when the address is a peer window: (device, port) the bytes travel over.
    pub route: Option<(u32, u32)>,
    /// Keeps the mapping alive while the bytes move.
    _keep: Arc<Region>,
    _inner: Option<Arc<Region>>,
}
unsafe impl Send for Resolved {}

impl Emu {
    /// Takes every lock of the emulator, in the order the code nests them, for `fork` (see
    /// `fork.rs`). Guards are returned in acquisition order and must be released in reverse.
    /// Read-write locks are taken for writing: a read guard would not keep out other readers,
    /// and a reader inside at the fork would leave the lock read-locked in the child forever.
    pub fn lock_all_for_fork(&'static self, held: &mut Vec<Box<dyn std::any::Any>>) {
        // SAFETY (lifetime extensions below): each inner object is kept alive by a container
        // whose guard is taken earlier and released later (guards are dropped in reverse
        // order), and nothing can remove it while that guard is held.
        unsafe fn extend<T>(g: MutexGuard<'_, T>) -> MutexGuard<'static, T> {
            std::mem::transmute::<MutexGuard<'_, T>, MutexGuard<'static, T>>(g)
        }
        held.push(Box::new(wr(&self.cfg)));
        held.push(Box::new(lock(&self.imports)));
        held.push(Box::new(lock(&self.windows)));
        let streams = wr(&self.streams);
        let events = wr(&self.events);
        let draining = lock(&self.draining);
        let hosts = wr(&self.hosts);
        let regions = wr(&self.regions);
        let devices = wr(&self.devices);
        let lanes = lock(&self.lanes);
        let mut inner: Vec<Box<dyn std::any::Any>> = Vec::new();
        for d in devices.iter() {
            inner.push(Box::new(unsafe { extend(lock(&d.arena)) }));
            inner.push(Box::new(unsafe { extend(lock(&d.peers)) }));
            inner.push(unsafe { d.default_stream.lock_for_fork() });
        }
        for s in streams.values().chain(draining.iter()) {
            inner.push(unsafe { s.lock_for_fork() });
        }
        for e in events.values() {
            inner.push(unsafe { e.lock_for_fork() });
        }
        for l in lanes.values() {
            inner.push(Box::new(unsafe { extend(lock(&l.next_free)) }));
        }
        held.push(Box::new(streams));
        held.push(Box::new(events));
        held.push(Box::new(draining));
        held.push(Box::new(hosts));
        held.push(Box::new(regions));
        held.push(Box::new(devices));
        held.push(Box::new(lanes));
        held.extend(inner);
    }

    pub fn cfg(&self) -> Arc<Config> {
        Arc::clone(&rd(&self.cfg))
    }

    pub fn devices(&self) -> Arc<Vec<Arc<Device>>> {
        Arc::clone(&rd(&self.devices))
    }

    pub fn device_count(&self) -> u32 {
        rd(&self.devices).len() as u32
    }

    /// A device ordinal the caller may use.
    pub fn device(&self, d: i32) -> Result<Arc<Device>, tangError_t> {
        let devs = rd(&self.devices);
        if d < 0 || d as usize >= devs.len() {
            return Err(tangErrorInvalidDevice);
        }
        let dev = Arc::clone(&devs[d as usize]);
        drop(devs);
        if self.cfg().removed_devices.contains(&(d as u32)) {
            return Err(tangErrorDeviceRemoved);
        }
        Ok(dev)
    }

    pub fn current(&self) -> Result<Arc<Device>, tangError_t> {
        if self.device_count() == 0 {
            return Err(tangErrorNoDevice);
        }
        self.device(current_raw())
    }

    /// The region containing `addr`, if any.
    pub fn region_at(&self, addr: usize) -> Option<Arc<Region>> {
        let map = rd(&self.regions);
        let (_, r) = map.range(..=addr).next_back()?;
        if addr < r.start + r.len.max(1) {
            Some(Arc::clone(r))
        } else {
            None
        }
    }

    pub fn is_device_ptr(&self, addr: usize) -> bool {
        self.region_at(addr).is_some()
    }

    /// Resolves `len` bytes of device memory at `addr`.
    pub fn resolve(&self, addr: usize, len: usize) -> Result<Resolved, tangError_t> {
        let r = self.region_at(addr).ok_or(tangErrorInvalidDevicePointer)?;
        let off = addr - r.start;
        if len > r.len - off {
            return Err(tangErrorInvalidValue);
        }
        let cfg = self.cfg();
        if cfg.removed_devices.contains(&r.dev) {
            return Err(tangErrorDeviceRemoved);
        }
        match &r.kind {
            Kind::Alloc(b) | Kind::Import(b) => {
                if b.destroyed() {
                    return Err(tangErrorDestroyed);
                }
                let ptr = unsafe { b.view().add(off) };
                Ok(Resolved {
                    ptr,
                    dev: r.dev,
                    route: None,
                    _keep: Arc::clone(&r),
                    _inner: None,
                })
            }
            Kind::MappedHost(h) => {
                let ptr = unsafe { h.ptr.add(off) };
                Ok(Resolved {
                    ptr,
                    dev: r.dev,
                    route: None,
                    _keep: Arc::clone(&r),
                    _inner: None,
                })
            }
            Kind::Window { port, peer, target } => {
                match cfg.link_up(r.dev, *port) {
                    Some((far, _)) if far == *peer => {}
                    _ => return Err(tangErrorDriverIoctlFailed),
                }
                // The target must still be the region at its address (not freed or closed).
                let t = target.upgrade().ok_or(tangErrorIllegalAddress)?;
                match self.region_at(t.start) {
                    Some(now) if Arc::ptr_eq(&now, &t) => {}
                    _ => return Err(tangErrorIllegalAddress),
                }
                let inner = self.resolve(t.start + off, len)?;
                if inner.dev != *peer || inner.route.is_some() {
                    return Err(tangErrorIllegalAddress);
                }
                Ok(Resolved {
                    ptr: inner.ptr,
                    dev: r.dev,
                    route: Some((r.dev, *port)),
                    _keep: Arc::clone(&r),
                    _inner: Some(inner._keep),
                })
            }
        }
    }

    /// Removes the peer windows aimed at the region starting at `target` (it was freed or
    /// closed) and returns their address space.
    pub fn drop_windows_to(&self, target: usize) {
        let mut windows = lock(&self.windows);
        let dead: Vec<(u32, u32, usize)> =
            windows.keys().filter(|k| k.2 == target).copied().collect();
        for k in dead {
            if let Some(w) = windows.remove(&k) {
                if let Some(r) = wr(&self.regions).remove(&w) {
                    if let Some(dev) = self.devices().get(r.dev as usize) {
                        dev.give_va(r.start, r.va_len);
                    }
                }
            }
        }
    }

    pub fn insert_region(&self, r: Region) -> usize {
        let start = r.start;
        wr(&self.regions).insert(start, Arc::new(r));
        start
    }

    fn lane(&self, key: (u32, u32)) -> Arc<Lane> {
        let mut l = lock(&self.lanes);
        Arc::clone(l.entry(key).or_insert_with(|| {
            Arc::new(Lane {
                next_free: Mutex::new(Instant::now()),
            })
        }))
    }

    /// Books `len` bytes on the port's lane; returns when the copy may be reported done.
    pub fn throttle(&self, route: Option<(u32, u32)>, len: usize) -> Option<Instant> {
        let (dev, port) = route?;
        let m = self.cfg().model(dev, port);
        if m.bandwidth.is_none() && m.latency_us == 0.0 {
            return None;
        }
        let busy = m
            .bandwidth
            .map(|bw| Duration::from_secs_f64(len as f64 / bw))
            .unwrap_or_default();
        let lane = self.lane((dev, port));
        let now = Instant::now();
        let end = {
            let mut nf = lock(&lane.next_free);
            let start = (*nf).max(now);
            *nf = start + busy;
            *nf
        };
        Some(end + Duration::from_secs_f64(m.latency_us / 1e6))
    }

    /// Synchronizes every stream of device `dev` (its default stream included).
    pub fn sync_device(&self, dev: &Device) -> u32 {
        let mut streams: Vec<Arc<Stream>> = rd(&self.streams)
            .values()
            .filter(|s| s.dev == dev.idx)
            .cloned()
            .collect();
        {
            let mut draining = lock(&self.draining);
            draining.retain(|s| !s.idle());
            streams.extend(draining.iter().filter(|s| s.dev == dev.idx).cloned());
        }
        let mut err = dev.default_stream.synchronize();
        for s in streams {
            let e = s.synchronize();
            if err == 0 {
                err = e;
            }
        }
        err
    }

    pub fn stream(&self, h: usize) -> Result<Arc<Stream>, tangError_t> {
        // 0 is the legacy default stream of the current device; the driver's special values
        // 0x1 (legacy) and 0x2 (per-thread) are taken to mean the same.
        if h <= 2 {
            return Ok(self.current()?.default_stream());
        }
        rd(&self.streams)
            .get(&h)
            .cloned()
            .ok_or(tangErrorInvalidResourceHandle)
    }

    pub fn event(&self, h: usize) -> Result<Arc<Event>, tangError_t> {
        rd(&self.events)
            .get(&h)
            .cloned()
            .ok_or(tangErrorInvalidResourceHandle)
    }

    /// Applies a configuration. Device count and capacity may change only while no memory is
    /// allocated or opened (error `tangErrorNotPermitted`).
    pub fn reconfigure(&self, next: Config) -> Result<(), tangError_t> {
        let mut cur = wr(&self.cfg);
        let structural =
            next.devices != cur.devices || next.memory_per_device != cur.memory_per_device;
        if structural {
            let regions = rd(&self.regions);
            if regions
                .values()
                .any(|r| !matches!(r.kind, Kind::Window { .. }))
            {
                return Err(tangErrorNotPermitted);
            }
            drop(regions);
            if !rd(&self.streams).is_empty() || !rd(&self.events).is_empty() {
                return Err(tangErrorNotPermitted);
            }
            let old_windows: Vec<usize> = lock(&self.windows).drain().map(|(_, a)| a).collect();
            let mut regions = wr(&self.regions);
            for a in old_windows {
                regions.remove(&a);
            }
            drop(regions);
            // Old devices (and their reservations) are kept alive by any clone still held.
            let devices = (0..next.devices)
                .map(|i| Arc::new(Device::new(i, next.memory_per_device)))
                .collect();
            *wr(&self.devices) = Arc::new(devices);
        }
        crate::faults::install(&next.faults);
        *cur = Arc::new(next);
        Ok(())
    }
}

/// Copies `len` bytes (one `memcpy`/`memmove`), then waits out the link model if any.
pub fn copy_bytes(dst: *mut u8, src: *const u8, len: usize, until: Option<Instant>) {
    if len > 0 {
        unsafe { std::ptr::copy(src, dst, len) };
    }
    if let Some(t) = until {
        let now = Instant::now();
        if t > now {
            std::thread::sleep(t - now);
        }
    }
}
