//! Shared by the reliability tests (hostile input, runtime faults, fuzzing, stress): the
//! emulated Tang runtime opened with dlopen (the same library instance the transport loads),
//! a host with a table of remote buffers behind `lookup_remote_buffer`, a transport wrapper
//! over the exported C functions, and a small deterministic PRNG.
#![allow(dead_code, non_snake_case)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub use sunrise_link::abi::transport::*;


pub const H2D: c_uint = 1;
pub const D2H: c_uint = 2;

/// Devices the tests configure the emulator with.
pub const DEVICES: i32 = 4;

/// The SDK-shaped root of the emulator: `$SUNRISE_LINK_EMU_ROOT` (exported by the root
/// Makefile, which builds it), else `target/tangrt-emu` of this checkout.
pub fn emu_root() -> Option<PathBuf> {
    let root = std::env::var("SUNRISE_LINK_EMU_ROOT")
        .ok()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tangrt-emu"));
    let lib = root.join("lib/linux-x86_64");
    (lib.join("libtangrt_shared.so").exists() && lib.join("libptml_shared.so").exists())
        .then_some(root)
}

/// The emulator's library directory; `None` (and a note on stderr) when it is not built.
pub fn lib_dir() -> Option<PathBuf> {
    let r = emu_root().map(|r| r.join("lib/linux-x86_64"));
    if r.is_none() {
        eprintln!(
            "emulator root not found: run `make emu` (or `make test`, which exports \
             SUNRISE_LINK_EMU_ROOT); test skipped"
        );
    }
    r
}

macro_rules! emu_api {
    ($($name:ident : fn($($t:ty),*) -> $r:ty;)*) => {
        /// The emulated runtime's entry points the tests use.
        pub struct Emu {
            _lib: libloading::Library,
            $(pub $name: unsafe extern "C" fn($($t),*) -> $r,)*
        }
        impl Emu {
            fn load(dir: &std::path::Path) -> Emu {
                unsafe {
                    let lib = libloading::Library::new(dir.join("libtangrt_shared.so"))
                        .expect("dlopen libtangrt_shared.so");
                    $(let $name = *lib
                        .get::<unsafe extern "C" fn($($t),*) -> $r>(
                            concat!(stringify!($name), "\0").as_bytes())
                        .expect(stringify!($name));)*
                    Emu { _lib: lib, $($name,)* }
                }
            }
        }
    };
}

emu_api! {
    tangSetDevice: fn(c_int) -> u32;
    tangMalloc: fn(*mut *mut c_void, usize) -> u32;
    tangFree: fn(*mut c_void) -> u32;
    tangMemcpy: fn(*mut c_void, *const c_void, usize, c_uint) -> u32;
    tangHostAlloc: fn(*mut *mut c_void, usize, c_uint) -> u32;
    tangFreeHost: fn(*mut c_void) -> u32;
    tangEmuConfigure: fn(*const c_char) -> c_int;
    tangEmuClearFaults: fn() -> ();
    tangEmuCallCount: fn(*const c_char) -> u64;
    tangEmuLiveCount: fn(*const c_char) -> i64;
}

impl Emu {
    pub fn configure(&self, toml: &str) -> c_int {
        let c = CString::new(toml).unwrap();
        unsafe { (self.tangEmuConfigure)(c.as_ptr()) }
    }

    pub fn clear_faults(&self) {
        unsafe { (self.tangEmuClearFaults)() }
    }

    pub fn count(&self, name: &str) -> u64 {
        let c = CString::new(name).unwrap();
        unsafe { (self.tangEmuCallCount)(c.as_ptr()) }
    }

    pub fn live(&self, kind: &str) -> i64 {
        let c = CString::new(kind).unwrap();
        unsafe { (self.tangEmuLiveCount)(c.as_ptr()) }
    }

    /// Live streams, events and IPC mappings (what a transport may create).
    pub fn live_transport_objects(&self) -> [i64; 3] {
        [
            self.live("stream"),
            self.live("event"),
            self.live("ipc_open"),
        ]
    }

    /// Device memory of `len` bytes on `dev`.
    pub fn alloc(&self, dev: i32, len: usize) -> u64 {
        let mut p = std::ptr::null_mut();
        unsafe {
            assert_eq!((self.tangSetDevice)(dev), 0, "tangSetDevice({dev})");
            assert_eq!((self.tangMalloc)(&mut p, len), 0, "tangMalloc({len})");
        }
        p as u64
    }

    pub fn free(&self, p: u64) {
        assert_eq!(unsafe { (self.tangFree)(p as *mut c_void) }, 0, "tangFree");
    }

    pub fn write(&self, dev_ptr: u64, bytes: &[u8]) {
        let r = unsafe {
            (self.tangMemcpy)(
                dev_ptr as *mut c_void,
                bytes.as_ptr() as *const c_void,
                bytes.len(),
                H2D,
            )
        };
        assert_eq!(r, 0, "tangMemcpy H2D");
    }

    pub fn read(&self, dev_ptr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        let r = unsafe {
            (self.tangMemcpy)(
                v.as_mut_ptr() as *mut c_void,
                dev_ptr as *const c_void,
                len,
                D2H,
            )
        };
        assert_eq!(r, 0, "tangMemcpy D2H");
        v
    }
}

/// The emulator, configured once with [`DEVICES`] devices and no faults.
pub fn emu() -> Option<&'static Emu> {
    static E: OnceLock<Option<Emu>> = OnceLock::new();
    E.get_or_init(|| {
        let dir = lib_dir()?;
        let e = Emu::load(&dir);
        assert_eq!(e.configure(&format!("devices = {DEVICES}")), 0);
        Some(e)
    })
    .as_ref()
}

/// Serialises the tests of one binary (they share the emulator's faults and counters) and
/// starts each without faults. `None` when the emulator is not built.
pub fn serial() -> Option<(MutexGuard<'static, ()>, &'static Emu)> {
    static L: Mutex<()> = Mutex::new(());
    let g = L.lock().unwrap_or_else(|e| e.into_inner());
    let e = emu()?;
    e.clear_faults();
    Some((g, e))
}

/// The install JSON for the emulator, with extra keys (`"k": v, ...` or "").
pub fn config(extra: &str) -> String {
    let dir = lib_dir().expect("emulator root");
    let sep = if extra.is_empty() { "" } else { ", " };
    format!(
        "{{\"runtime_lib_dir\": {:?}{sep}{extra}}}",
        dir.to_string_lossy()
    )
}

// ------------------------------------------------------------------------------ host

/// A remote buffer the host reports for one segment.
#[derive(Clone, Debug)]
pub struct Remote {
    pub segment: u64,
    pub base: u64,
    pub length: u64,
    pub location: String,
    pub shm_path: String,
    pub machine_id: String,
}

/// The host side of the transport: a table of remote buffers and counters.
#[derive(Default)]
pub struct Host {
    pub remote: Mutex<Vec<Remote>>,
    pub lookups: AtomicU64,
    pub notifies: AtomicU64,
    /// Answer every lookup with this status instead (0 = use the table).
    pub force_status: AtomicU64,
    /// Fill the answer's strings without a terminating NUL (1) or with invalid UTF-8 (2).
    pub garbage: AtomicU64,
}

fn fill_field(dst: &mut [c_char], s: &str) {
    for (d, b) in dst.iter_mut().zip(s.bytes().chain(std::iter::once(0))) {
        *d = b as c_char;
    }
}

unsafe extern "C" fn lookup_cb(
    ud: *mut c_void,
    segment: u64,
    addr: u64,
    length: u64,
    _refresh: i32,
    out: *mut sunrise_link_remote_buffer_t,
) -> i32 {
    let h = &*(ud as *const Host);
    h.lookups.fetch_add(1, Ordering::Relaxed);
    let forced = h.force_status.load(Ordering::Relaxed);
    if forced != 0 {
        return forced as i32;
    }
    let t = h.remote.lock().unwrap_or_else(|e| e.into_inner());
    // Like TENT's findBuffer: the buffer holding the start address.
    let Some(r) = t
        .iter()
        .find(|r| r.segment == segment && addr >= r.base && addr - r.base < r.length.max(1))
    else {
        return SUNRISE_LINK_NEEDS_REFRESH_CACHE;
    };
    let _ = length;
    let o = &mut *out;
    o.base = r.base;
    o.length = r.length;
    fill_field(&mut o.location, &r.location);
    fill_field(&mut o.shm_path, &r.shm_path);
    fill_field(&mut o.machine_id, &r.machine_id);
    match h.garbage.load(Ordering::Relaxed) {
        1 => o.machine_id.iter_mut().for_each(|c| *c = b'A' as c_char),
        2 => o.location[0] = 0xff_u8 as c_char,
        _ => {}
    }
    0
}

unsafe extern "C" fn notify_cb(ud: *mut c_void, _token: u64) {
    let h = &*(ud as *const Host);
    h.notifies.fetch_add(1, Ordering::Relaxed);
}

pub const MACHINE: &str = "reliability-machine";

/// A transport created through the C ABI, destroyed on drop.
pub struct Transport {
    pub t: *mut sunrise_link_transport_t,
    pub host: Box<Host>,
    _machine: CString,
}

unsafe impl Send for Transport {}
unsafe impl Sync for Transport {}

/// The message of the last failing call on this thread.
pub fn last_error() -> String {
    unsafe { CStr::from_ptr(sunrise_link_last_error()) }
        .to_string_lossy()
        .into_owned()
}

impl Transport {
    /// Creates a transport (not installed).
    pub fn create() -> Transport {
        let host = Box::<Host>::default();
        let machine = CString::new(MACHINE).unwrap();
        let cb = sunrise_link_host_callbacks_t {
            abi_version: SUNRISE_LINK_ABI_VERSION,
            struct_size: std::mem::size_of::<sunrise_link_host_callbacks_t>() as u32,
            user_data: &*host as *const Host as *mut c_void,
            lookup_remote_buffer: Some(lookup_cb),
            log: None,
            notify_progress: Some(notify_cb),
            local_machine_id: machine.as_ptr(),
        };
        let mut t = std::ptr::null_mut();
        let rc = unsafe { sunrise_link_transport_create(&cb, &mut t) };
        assert_eq!(rc, 0, "create: {}", last_error());
        Transport {
            t,
            host,
            _machine: machine,
        }
    }

    /// Creates and installs with `config(extra)`.
    pub fn installed(extra: &str) -> Transport {
        let t = Transport::create();
        let rc = t.install(Some(&config(extra)));
        assert_eq!(rc, 0, "install: {}", last_error());
        t
    }

    pub fn install(&self, json: Option<&str>) -> i32 {
        let c = json.map(|j| CString::new(j).unwrap());
        unsafe {
            sunrise_link_transport_install(
                self.t,
                c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            )
        }
    }

    pub fn uninstall(&self) -> i32 {
        unsafe { sunrise_link_transport_uninstall(self.t) }
    }

    /// Registers `[addr, +len)` at `loc`; the shm_path on success.
    pub fn add(&self, addr: u64, len: u64, loc: &str) -> Result<String, i32> {
        let l = CString::new(loc).unwrap();
        let mut shm = [0 as c_char; SUNRISE_LINK_SHM_PATH_LEN];
        let rc = unsafe {
            sunrise_link_buffer_add(
                self.t,
                addr as *mut c_void,
                len,
                l.as_ptr(),
                shm.as_mut_ptr(),
                shm.len(),
            )
        };
        if rc != 0 {
            return Err(rc);
        }
        Ok(unsafe { CStr::from_ptr(shm.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }

    pub fn remove(&self, addr: u64) -> i32 {
        unsafe { sunrise_link_buffer_remove(self.t, addr as *mut c_void, 0) }
    }

    pub fn allocate(&self, n: u64) -> Result<u64, i32> {
        let mut h = 0u64;
        let rc = unsafe { sunrise_link_sub_batch_allocate(self.t, n, 7, &mut h) };
        if rc == 0 {
            Ok(h)
        } else {
            Err(rc)
        }
    }

    pub fn free(&self, h: u64) -> i32 {
        unsafe { sunrise_link_sub_batch_free(self.t, h) }
    }

    pub fn size(&self, h: u64) -> Result<u64, i32> {
        let mut n = u64::MAX;
        let rc = unsafe { sunrise_link_sub_batch_size(self.t, h, &mut n) };
        if rc == 0 {
            Ok(n)
        } else {
            Err(rc)
        }
    }

    pub fn submit(&self, h: u64, reqs: &[sunrise_link_request_t]) -> i32 {
        unsafe { sunrise_link_transfer_submit(self.t, h, reqs.as_ptr(), reqs.len()) }
    }

    pub fn status(&self, h: u64, id: u64) -> Result<(i32, u64), i32> {
        let mut s = sunrise_link_task_status_t {
            status: -1,
            reserved: 0,
            transferred_bytes: 0,
        };
        let rc = unsafe { sunrise_link_task_status_get(self.t, h, id, &mut s) };
        if rc == 0 {
            Ok((s.status, s.transferred_bytes))
        } else {
            Err(rc)
        }
    }

    pub fn cancel(&self, h: u64, id: u64) -> i32 {
        unsafe { sunrise_link_task_cancel(self.t, h, id) }
    }

    pub fn task_error(&self, h: u64, id: u64) -> String {
        let mut buf = [0 as c_char; 1024];
        let rc = unsafe { sunrise_link_task_error_get(self.t, h, id, buf.as_mut_ptr(), buf.len()) };
        assert_eq!(rc, 0, "task_error_get: {}", last_error());
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    /// Waits (bounded) until task `id` is terminal; panics after `limit`.
    pub fn wait(&self, h: u64, id: u64, limit: Duration) -> (i32, u64) {
        let end = Instant::now() + limit;
        loop {
            let s = self.status(h, id).expect("status of a submitted task");
            if s.0 != SUNRISE_LINK_TASK_PENDING && s.0 != SUNRISE_LINK_TASK_INITIAL {
                return s;
            }
            assert!(
                Instant::now() < end,
                "task {id} still pending after {limit:?}"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Waits for tasks `0..n` of `h`.
    pub fn wait_all(&self, h: u64, n: u64, limit: Duration) -> Vec<(i32, u64)> {
        (0..n).map(|i| self.wait(h, i, limit)).collect()
    }

    pub fn stats(&self) -> sunrise_link_stats_t {
        let mut s: sunrise_link_stats_t = unsafe { std::mem::zeroed() };
        let rc = unsafe { sunrise_link_stats_get(self.t, &mut s) };
        assert_eq!(rc, 0, "stats_get: {}", last_error());
        s
    }

    pub fn publish(&self, r: Remote) {
        self.host.remote.lock().unwrap().push(r);
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        unsafe { sunrise_link_transport_destroy(self.t) };
    }
}

pub fn req(
    op: u32,
    source: u64,
    target_id: u64,
    target: u64,
    length: u64,
) -> sunrise_link_request_t {
    sunrise_link_request_t {
        opcode: op,
        reserved: 0,
        source: source as *mut c_void,
        target_id,
        target_offset: target,
        length,
    }
}

// ------------------------------------------------------------------------------ PRNG

/// SplitMix64: small, fast, deterministic for a seed.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A deterministic byte pattern of `n` bytes for `seed`.
pub fn pattern(seed: u64, n: usize) -> Vec<u8> {
    let mut r = Rng(seed);
    r.bytes(n)
}

/// FNV-1a 64 of bytes.
pub fn checksum(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Polls `f` (bounded) until it returns true; false after `limit`.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
