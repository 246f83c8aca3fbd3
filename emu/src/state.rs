//! Process-wide emulator state: configuration, devices, the address map, handles, lanes.
//!
//! What a call reads on its way (configuration, devices, the address map, pinned host memory)
//! is one immutable `View`, replaced as a whole on every change and cached per thread (see
//! `with_view`), so that threads calling the runtime side by side share no written memory.

use crate::config::{Config, PORTS};
use crate::errors::*;
use crate::mem::{self, Backing, VaSpace};
use crate::stream::{Event, Stream};
use crate::types::tangError_t;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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
    #[cfg_attr(feature = "minimal", allow(dead_code))] // made by tangDeviceGetPeerPointer only
    Window {
        port: u32,
        peer: u32,
        target: std::sync::Weak<Region>,
        target_start: usize,
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
    /// Bandwidth/latency accounting of each port of the device.
    lanes: [Lane; PORTS as usize],
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
        let now = Instant::now();
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
            lanes: std::array::from_fn(|_| Lane {
                next_free: Mutex::new(now),
            }),
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

/// The links as the copy path asks about them, worked out once per configuration.
pub struct Links {
    devices: u32,
    /// `dev * PORTS + port` -> far end, if the link there is up.
    up: Vec<Option<(u32, u32)>>,
    /// `a * devices + b` -> the lowest port of `a` whose link up reaches `b`.
    route: Vec<Option<u32>>,
}

impl Links {
    fn new(cfg: &Config) -> Links {
        let n = cfg.devices;
        let mut up = vec![None; (n * PORTS) as usize];
        let mut route = vec![None; (n as usize) * (n as usize)];
        for dev in 0..n {
            for port in 0..PORTS {
                let far = cfg.link_up(dev, port);
                up[(dev * PORTS + port) as usize] = far;
                if let Some((b, _)) = far {
                    if b < n {
                        let r = &mut route[(dev * n + b) as usize];
                        if r.is_none() {
                            *r = Some(port);
                        }
                    }
                }
            }
        }
        Links {
            devices: n,
            up,
            route,
        }
    }

    /// The far end of `(dev, port)` if its link is up (`Config::link_up`).
    pub fn up(&self, dev: u32, port: u32) -> Option<(u32, u32)> {
        if dev >= self.devices || port >= PORTS {
            return None;
        }
        self.up[(dev * PORTS + port) as usize]
    }

    /// The lowest port of `a` whose link up reaches `b`.
    pub fn between(&self, a: u32, b: u32) -> Option<u32> {
        if a >= self.devices || b >= self.devices {
            return None;
        }
        self.route[(a * self.devices + b) as usize]
    }
}

/// The state a call reads: configuration, devices, the address map and pinned host memory.
/// Immutable once published; every change publishes a new view (maps copied on write) and
/// bumps `EPOCH`, so a thread can keep the view it last used while `EPOCH` is unchanged.
#[derive(Clone)]
pub struct View {
    pub cfg: Arc<Config>,
    pub links: Arc<Links>,
    pub devices: Arc<Vec<Arc<Device>>>,
    pub regions: Arc<BTreeMap<usize, Arc<Region>>>,
    pub hosts: Arc<BTreeMap<usize, Arc<HostAlloc>>>,
}

pub struct Emu {
    /// Serialises changes of the view (read the published one, build the next, publish it).
    writer: Mutex<()>,
    /// The published view; held only to clone or replace the `Arc`.
    view: RwLock<Arc<View>>,
    /// (owner pid, allocation id, device) -> (address, open count).
    pub imports: Mutex<HashMap<ImportKey, (usize, u64)>>,
    /// (device, port, target region start) -> window start.
    pub windows: Mutex<HashMap<(u32, u32, usize), usize>>,
    pub streams: RwLock<HashMap<usize, Arc<Stream>>>,
    /// Destroyed streams whose queued work may still be running.
    pub draining: Mutex<Vec<Arc<Stream>>>,
    pub events: RwLock<HashMap<usize, Arc<Event>>>,
    pub live: Live,
    pub seq: AtomicU64,
}

/// Bumped after every publication of a view; on its own cache line (read by every call).
#[repr(align(128))]
struct Epoch(AtomicU64);
static EPOCH: Epoch = Epoch(AtomicU64::new(1));

static EMU: OnceLock<Emu> = OnceLock::new();

pub fn emu() -> &'static Emu {
    EMU.get_or_init(|| {
        let cfg = Config::from_env();
        crate::faults::install(&cfg.faults);
        crate::cost::install(&cfg.call_cost_us);
        mem::cleanup_stale();
        crate::fork::register(|held| emu().lock_all_for_fork(held));
        let devices = (0..cfg.devices)
            .map(|i| Arc::new(Device::new(i, cfg.memory_per_device)))
            .collect();
        Emu {
            writer: Mutex::new(()),
            view: RwLock::new(Arc::new(View {
                links: Arc::new(Links::new(&cfg)),
                cfg: Arc::new(cfg),
                devices: Arc::new(devices),
                regions: Arc::new(BTreeMap::new()),
                hosts: Arc::new(BTreeMap::new()),
            })),
            imports: Mutex::new(HashMap::new()),
            windows: Mutex::new(HashMap::new()),
            streams: RwLock::new(HashMap::new()),
            draining: Mutex::new(Vec::new()),
            events: RwLock::new(HashMap::new()),
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
    /// The view this thread last used and the epoch it was published under.
    static CACHED: RefCell<(u64, Option<Arc<View>>)> = const { RefCell::new((0, None)) };
}

pub fn current_raw() -> i32 {
    CURRENT.try_with(|c| c.get()).unwrap_or(0)
}

pub fn set_current(d: i32) {
    let _ = CURRENT.try_with(|c| c.set(d));
}

/// Runs `f` on the calling thread's view of the emulator state: the published view, cached per
/// thread and taken again only when `EPOCH` says something changed (so a call that finds
/// nothing changed reads one atomic and writes no shared memory). The view stays alive for
/// the whole of `f`; nested calls see the same view.
///
/// Only threads that call the runtime use it: the emulator's stream threads take the published
/// view for each operation (`Emu::view_now`) and keep none between operations, so they never
/// hold freed memory mapped. A caller's thread keeps the view of its last call until its next
/// call (or its exit); memory freed meanwhile stays mapped (not reachable: its address is gone
/// from every newer view) until then.
pub fn with_view<R>(f: impl FnOnce(&View) -> R) -> R {
    let e = emu();
    let epoch = EPOCH.0.load(Ordering::Acquire);
    let mut f = Some(f);
    let r = CACHED.try_with(|c| {
        // Fails only inside a nested call, which keeps the view of the outer one.
        if let Ok(mut m) = c.try_borrow_mut() {
            if m.0 != epoch || m.1.is_none() {
                *m = (epoch, Some(e.view_now()));
            }
        }
        let m = c.borrow();
        let v = m.1.as_ref().expect("view cached above");
        (f.take().expect("called once"))(v)
    });
    match r {
        Ok(r) => r,
        // The thread's cache is gone (the thread is exiting): use the published view.
        Err(_) => (f.take().expect("not called"))(&e.view_now()),
    }
}

/// One resolved piece of device memory, borrowed from a view (which keeps the mapping alive).
pub struct Loc<'a> {
    pub ptr: *mut u8,
    pub dev: u32,
    /// Set when the address is a peer window: (device, port) the bytes travel over.
    pub route: Option<(u32, u32)>,
    region: &'a Arc<Region>,
    inner: Option<&'a Arc<Region>>,
}

impl Loc<'_> {
    /// The same, owning what keeps the mapping alive (for work queued on a stream).
    pub fn owned(&self) -> Resolved {
        Resolved {
            ptr: self.ptr,
            _keep: Arc::clone(self.region),
            _inner: self.inner.map(Arc::clone),
        }
    }
}

/// One resolved piece of device memory that owns its mapping.
pub struct Resolved {
    pub ptr: *mut u8,
    /// Keeps the mapping alive while the bytes move.
    _keep: Arc<Region>,
    _inner: Option<Arc<Region>>,
}
unsafe impl Send for Resolved {}

impl View {
    pub fn device_count(&self) -> u32 {
        self.devices.len() as u32
    }

    /// A device ordinal the caller may use.
    pub fn device(&self, d: i32) -> Result<&Arc<Device>, tangError_t> {
        if d < 0 || d as usize >= self.devices.len() {
            return Err(tangErrorInvalidDevice);
        }
        if self.cfg.removed_devices.contains(&(d as u32)) {
            return Err(tangErrorDeviceRemoved);
        }
        Ok(&self.devices[d as usize])
    }

    /// The calling thread's current device.
    pub fn current(&self) -> Result<&Arc<Device>, tangError_t> {
        if self.devices.is_empty() {
            return Err(tangErrorNoDevice);
        }
        self.device(current_raw())
    }

    /// The region containing `addr`, if any.
    pub fn region_at(&self, addr: usize) -> Option<&Arc<Region>> {
        let (_, r) = self.regions.range(..=addr).next_back()?;
        (addr < r.start + r.len.max(1)).then_some(r)
    }

    pub fn is_device_ptr(&self, addr: usize) -> bool {
        self.region_at(addr).is_some()
    }

    /// The pinned host allocation containing `addr`, if any.
    pub fn host_alloc_at(&self, addr: usize) -> Option<&Arc<HostAlloc>> {
        let (_, h) = self.hosts.range(..=addr).next_back()?;
        (addr < h.ptr as usize + h.size).then_some(h)
    }

    /// Resolves `len` bytes of device memory at `addr`.
    pub fn resolve(&self, addr: usize, len: usize) -> Result<Loc<'_>, tangError_t> {
        let r = self.region_at(addr).ok_or(tangErrorInvalidDevicePointer)?;
        let off = addr - r.start;
        if len > r.len - off {
            return Err(tangErrorInvalidValue);
        }
        if self.cfg.removed_devices.contains(&r.dev) {
            return Err(tangErrorDeviceRemoved);
        }
        let ptr = match &r.kind {
            Kind::Alloc(b) | Kind::Import(b) => {
                if b.destroyed() {
                    return Err(tangErrorDestroyed);
                }
                unsafe { b.view().add(off) }
            }
            Kind::MappedHost(h) => unsafe { h.ptr.add(off) },
            Kind::Window {
                port,
                peer,
                target,
                target_start,
            } => {
                match self.links.up(r.dev, *port) {
                    Some((far, _)) if far == *peer => {}
                    _ => return Err(tangErrorDriverIoctlFailed),
                }
                // The target must still be the region at its address (not freed or closed).
                // The weak reference keeps the target's allocation, so no other region can
                // have its address.
                match self.region_at(*target_start) {
                    Some(now) if std::ptr::eq(Arc::as_ptr(now), target.as_ptr()) => {}
                    _ => return Err(tangErrorIllegalAddress),
                }
                let inner = self.resolve(target_start + off, len)?;
                if inner.dev != *peer || inner.route.is_some() {
                    return Err(tangErrorIllegalAddress);
                }
                return Ok(Loc {
                    ptr: inner.ptr,
                    dev: r.dev,
                    route: Some((r.dev, *port)),
                    region: r,
                    inner: Some(inner.region),
                });
            }
        };
        Ok(Loc {
            ptr,
            dev: r.dev,
            route: None,
            region: r,
            inner: None,
        })
    }

    /// Books `len` bytes on the port's lane; returns when the copy may be reported done.
    pub fn throttle(&self, route: Option<(u32, u32)>, len: usize) -> Option<Instant> {
        let (dev, port) = route?;
        let m = self.cfg.model(dev, port);
        if m.bandwidth.is_none() && m.latency_us == 0.0 {
            return None;
        }
        let busy = m
            .bandwidth
            .map(|bw| Duration::from_secs_f64(len as f64 / bw))
            .unwrap_or_default();
        let lane = &self.devices.get(dev as usize)?.lanes[port as usize];
        let now = Instant::now();
        let end = {
            let mut nf = lock(&lane.next_free);
            let start = (*nf).max(now);
            *nf = start + busy;
            *nf
        };
        Some(end + Duration::from_secs_f64(m.latency_us / 1e6))
    }
}

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
        held.push(Box::new(lock(&self.imports)));
        held.push(Box::new(lock(&self.windows)));
        held.push(Box::new(lock(&self.writer)));
        let streams = wr(&self.streams);
        let events = wr(&self.events);
        let draining = lock(&self.draining);
        let view = wr(&self.view);
        let mut inner: Vec<Box<dyn std::any::Any>> = Vec::new();
        for d in view.devices.iter() {
            inner.push(Box::new(unsafe { extend(lock(&d.arena)) }));
            inner.push(Box::new(unsafe { extend(lock(&d.peers)) }));
            inner.push(unsafe { d.default_stream.lock_for_fork() });
            for l in &d.lanes {
                inner.push(Box::new(unsafe { extend(lock(&l.next_free)) }));
            }
        }
        for s in streams.values().chain(draining.iter()) {
            inner.push(unsafe { s.lock_for_fork() });
        }
        for e in events.values() {
            inner.push(unsafe { e.lock_for_fork() });
        }
        held.push(Box::new(streams));
        held.push(Box::new(events));
        held.push(Box::new(draining));
        held.push(Box::new(view));
        held.extend(inner);
    }

    /// The published view, now (not the calling thread's cached one). For the emulator's own
    /// threads and for paths that must see changes made under another lock they hold.
    pub fn view_now(&self) -> Arc<View> {
        Arc::clone(&rd(&self.view))
    }

    /// Changes the view: `f` edits a copy of the published one (maps are copied when first
    /// written), which is then published. Changes are serialised.
    pub fn update<R>(&self, f: impl FnOnce(&mut View) -> R) -> R {
        match self.try_update(|v| Ok::<R, std::convert::Infallible>(f(v))) {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    /// As `update`, publishing only when `f` succeeds.
    pub fn try_update<R, E>(&self, f: impl FnOnce(&mut View) -> Result<R, E>) -> Result<R, E> {
        let _w = lock(&self.writer);
        let mut next = View::clone(&self.view_now());
        let r = f(&mut next)?;
        *wr(&self.view) = Arc::new(next);
        // After the store: a thread that sees the new epoch takes the new view.
        EPOCH.0.fetch_add(1, Ordering::Release);
        Ok(r)
    }

    /// The published view, unless its lock is held (for the exit hook).
    pub fn try_view_now(&self) -> Option<Arc<View>> {
        self.view.try_read().ok().map(|v| Arc::clone(&v))
    }

    pub fn insert_region(&self, r: Region) -> usize {
        let start = r.start;
        self.update(|v| Arc::make_mut(&mut v.regions).insert(start, Arc::new(r)));
        start
    }

    /// Removes the region starting at `start` if it is still `expect`.
    pub fn remove_region(&self, expect: &Arc<Region>) -> bool {
        self.update(|v| {
            let same = v
                .regions
                .get(&expect.start)
                .is_some_and(|r| Arc::ptr_eq(r, expect));
            if same {
                Arc::make_mut(&mut v.regions).remove(&expect.start);
            }
            same
        })
    }

    /// Removes the peer windows aimed at the region starting at `target` (it was freed or
    /// closed) and returns their address space.
    pub fn drop_windows_to(&self, target: usize) {
        let mut windows = lock(&self.windows);
        let dead: Vec<usize> = windows
            .iter()
            .filter(|(k, _)| k.2 == target)
            .map(|(_, &w)| w)
            .collect();
        if dead.is_empty() {
            return;
        }
        windows.retain(|k, _| k.2 != target);
        let removed: Vec<Arc<Region>> = self.update(|v| {
            let regions = Arc::make_mut(&mut v.regions);
            dead.iter().filter_map(|w| regions.remove(w)).collect()
        });
        let view = self.view_now();
        for r in removed {
            if let Some(dev) = view.devices.get(r.dev as usize) {
                dev.give_va(r.start, r.va_len);
            }
        }
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

    /// A stream handle; `v` is the caller's view (for the current device's default stream).
    pub fn stream(&self, v: &View, h: usize) -> Result<Arc<Stream>, tangError_t> {
        // 0 is the legacy default stream of the current device; the driver's special values
        // 0x1 (legacy) and 0x2 (per-thread) are taken to mean the same.
        if h <= 2 {
            return Ok(v.current()?.default_stream());
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

    /// Applies a configuration made by `next` from the published one. Device count and
    /// capacity may change only while no memory is allocated or opened and no stream or event
    /// exists (error `tangErrorNotPermitted`).
    pub fn reconfigure(
        &self,
        next: impl FnOnce(&Config) -> Result<Config, tangError_t>,
    ) -> Result<(), tangError_t> {
        let mut windows = lock(&self.windows);
        self.try_update(|v| {
            let next = next(&v.cfg)?;
            let structural =
                next.devices != v.cfg.devices || next.memory_per_device != v.cfg.memory_per_device;
            if structural {
                if v.regions
                    .values()
                    .any(|r| !matches!(r.kind, Kind::Window { .. }))
                {
                    return Err(tangErrorNotPermitted);
                }
                if !rd(&self.streams).is_empty() || !rd(&self.events).is_empty() {
                    return Err(tangErrorNotPermitted);
                }
                // Only windows can be left (dead ones, their targets gone): they go with the
                // devices. Old devices (and their reservations) are kept alive by any view
                // still held.
                windows.clear();
                v.regions = Arc::new(BTreeMap::new());
                v.devices = Arc::new(
                    (0..next.devices)
                        .map(|i| Arc::new(Device::new(i, next.memory_per_device)))
                        .collect(),
                );
            }
            crate::faults::install(&next.faults);
            crate::cost::install(&next.call_cost_us);
            v.links = Arc::new(Links::new(&next));
            v.cfg = Arc::new(next);
            Ok(())
        })
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
