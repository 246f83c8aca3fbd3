//! A host that calls the library's exported functions directly, in one process: the tests of
//! a binary share the emulator (configured with [`DEVICES`] devices) and run one at a time
//! ([`serial`]). Used by the hostile-input, fault, fuzzing and stress suites.

pub use super::*;
pub use sunrise_link::abi::transport::*;
pub use sunrise_link::abi::*;

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Devices the tests configure the emulator with.
pub const DEVICES: i32 = 4;

/// The emulator, configured once with [`DEVICES`] devices and no faults.
pub fn emu() -> &'static Emu {
    static E: OnceLock<Emu> = OnceLock::new();
    E.get_or_init(|| {
        let e = Emu::open();
        e.configure(&format!("devices = {DEVICES}"));
        e
    })
}

/// Serialises the tests of one binary (they share the emulator's faults and counters) and
/// starts each without faults.
pub fn serial() -> (MutexGuard<'static, ()>, &'static Emu) {
    static L: Mutex<()> = Mutex::new(());
    let g = L.lock().unwrap_or_else(|e| e.into_inner());
    let e = emu();
    e.clear_faults();
    (g, e)
}

/// The install JSON for the emulator, with extra keys (`"k": v, ...` or "").
pub fn config(extra: &str) -> String {
    let dir = lib_dir(&emu_root());
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
    answer_lookup(o, r.base, r.length, &r.location, &r.shm_path, &r.machine_id);
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
            if terminal(s.0) {
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

/// A deterministic byte pattern of `n` bytes for `seed`.
pub fn pattern(seed: u64, n: usize) -> Vec<u8> {
    let mut r = Rng(seed);
    r.bytes(n)
}
