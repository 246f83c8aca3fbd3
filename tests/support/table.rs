//! A host that reaches the library through its plugin table, as TENT's C++ adapter does:
//! device memory is allocated, filled and verified through the library's TENT device plugin,
//! and each scenario runs in a child process of the test binary ([`scenario`]), so emulator
//! settings given by environment (device count, config file, faults) never leak between tests.

pub use super::*;

use sunrise_link::abi::device_plugin::*;
use sunrise_link::abi::transport::*;

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Names the scenario a child process runs.
pub const CHILD_ENV: &str = "SUNRISE_LINK_TEST_SCENARIO";

/// Runs `body` in a child process with `env` (plus MC_TANGRT_LIB_DIR pointing at the
/// emulator unless given). The test passes iff the child ran the body and exited 0.
pub fn scenario(name: &str, env: &[(&str, &str)], body: impl FnOnce()) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        body();
        return;
    }
    let root = emu_root();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        &test_path(name),
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, name)
    .env("MC_TANGRT_LIB_DIR", lib_dir(&root))
    .env_remove("TANG_EMU_CONFIG")
    .env_remove("TANG_EMU_FAULTS")
    .env_remove("TANG_EMU_DEVICES");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawning the scenario");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scenario {name} failed:\n{text}");
    // Shown with --nocapture (measurements printed by the scenario).
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if !l.is_empty() && !l.starts_with("running ") && !l.starts_with("test result") {
            println!("[{name}] {l}");
        }
    }
    assert!(
        text.contains("1 passed"),
        "scenario {name} did not run its body:\n{text}"
    );
}

// ------------------------------------------------------------------------------ device memory

/// TENT's device plugin of the library, used to allocate, fill and verify device memory.
pub struct Dev {
    p: sunrise_link_device_plugin_t,
    ctx: *mut c_void,
}

impl Dev {
    pub fn open() -> Dev {
        let mut p = std::mem::MaybeUninit::<sunrise_link_device_plugin_t>::zeroed();
        assert_eq!(
            unsafe {
                sunrise_link::abi::device_plugin::tent_register_device_plugin(p.as_mut_ptr())
            },
            0
        );
        let p = unsafe { p.assume_init() };
        let ctx = (p.create_plugin.unwrap())();
        assert!(!ctx.is_null(), "device plugin: {}", last_error());
        Dev { p, ctx }
    }
    pub fn plugin(&self) -> &sunrise_link_device_plugin_t {
        &self.p
    }
    pub fn ctx(&self) -> *mut c_void {
        self.ctx
    }
    pub fn alloc(&self, dev: i32, len: usize) -> u64 {
        let loc = CString::new(format!("cuda:{dev}")).unwrap();
        let mut p: *mut c_void = std::ptr::null_mut();
        let rc = unsafe { (self.p.alloc.unwrap())(self.ctx, &mut p, len, loc.as_ptr()) };
        assert_eq!(rc, 0, "alloc on cuda:{dev}: {}", last_error());
        p as u64
    }
    pub fn free(&self, ptr: u64) {
        let rc = unsafe { (self.p.free.unwrap())(self.ctx, ptr as *mut c_void, 0) };
        assert_eq!(rc, 0, "free {ptr:#x}: {}", last_error());
    }
    /// Host → device.
    pub fn write(&self, dst: u64, data: &[u8]) {
        let rc = unsafe {
            (self.p.memcpy_sync.unwrap())(
                self.ctx,
                dst as *mut c_void,
                data.as_ptr() as *mut c_void,
                data.len(),
            )
        };
        assert_eq!(rc, 0, "fill {dst:#x}: {}", last_error());
    }
    /// Device → host.
    pub fn read(&self, src: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        let rc = unsafe {
            (self.p.memcpy_sync.unwrap())(
                self.ctx,
                v.as_mut_ptr() as *mut c_void,
                src as *mut c_void,
                len,
            )
        };
        assert_eq!(rc, 0, "read {src:#x}: {}", last_error());
        v
    }
}

/// A deterministic pattern.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32) as u8)
        .collect()
}

// ------------------------------------------------------------------------------ transport

/// What the test host knows about remote segments, and what it saw.
#[derive(Default)]
pub struct HostState {
    /// (segment, buffer)
    pub remote: Mutex<Vec<(u64, Remote)>>,
    pub lookups: AtomicU64,
    pub refreshes: AtomicU64,
    pub notifies: AtomicU64,
    pub logs: Mutex<Vec<(i32, String)>>,
}

#[derive(Clone, Debug, Default)]
pub struct Remote {
    pub base: u64,
    pub length: u64,
    pub location: String,
    pub shm_path: String,
    pub machine_id: String,
}

unsafe extern "C" fn lookup(
    ud: *mut c_void,
    seg: u64,
    addr: u64,
    len: u64,
    refresh: i32,
    out: *mut sunrise_link_remote_buffer_t,
) -> i32 {
    let h = &*(ud as *const HostState);
    h.lookups.fetch_add(1, Ordering::SeqCst);
    if refresh != 0 {
        h.refreshes.fetch_add(1, Ordering::SeqCst);
    }
    let g = h.remote.lock().unwrap();
    let Some((_, r)) = g
        .iter()
        .find(|(s, r)| *s == seg && r.base <= addr && addr + len <= r.base + r.length)
    else {
        return sunrise_link::abi::SUNRISE_LINK_NEEDS_REFRESH_CACHE;
    };
    let o = &mut *out;
    answer_lookup(o, r.base, r.length, &r.location, &r.shm_path, &r.machine_id);
    0
}

unsafe extern "C" fn log_cb(ud: *mut c_void, level: i32, msg: *const c_char) {
    let h = &*(ud as *const HostState);
    let m = CStr::from_ptr(msg).to_string_lossy().into_owned();
    h.logs.lock().unwrap().push((level, m));
}

unsafe extern "C" fn notify(ud: *mut c_void, _token: u64) {
    let h = &*(ud as *const HostState);
    h.notifies.fetch_add(1, Ordering::SeqCst);
}

pub const MACHINE: &str = "test-machine";

/// The plugin table, as a host resolves it.
pub fn plugin() -> sunrise_link_transport_plugin_t {
    let mut t = std::mem::MaybeUninit::<sunrise_link_transport_plugin_t>::zeroed();
    unsafe {
        (*t.as_mut_ptr()).struct_size =
            std::mem::size_of::<sunrise_link_transport_plugin_t>() as u32;
        assert_eq!(sunrise_link_transport_plugin_get(t.as_mut_ptr()), 0);
        t.assume_init()
    }
}

/// One transport created through the plugin table with test host callbacks.
pub struct Xport {
    pub p: sunrise_link_transport_plugin_t,
    pub t: *mut sunrise_link_transport_t,
    pub host: Box<HostState>,
}

impl Xport {
    /// Creates (not installed).
    pub fn create() -> Xport {
        let p = plugin();
        let host = Box::<HostState>::default();
        let machine = CString::new(MACHINE).unwrap();
        let cb = sunrise_link_host_callbacks_t {
            abi_version: sunrise_link::abi::SUNRISE_LINK_ABI_VERSION,
            struct_size: std::mem::size_of::<sunrise_link_host_callbacks_t>() as u32,
            user_data: &*host as *const HostState as *mut c_void,
            lookup_remote_buffer: Some(lookup),
            log: Some(log_cb),
            notify_progress: Some(notify),
            local_machine_id: machine.as_ptr(),
        };
        let mut t = std::ptr::null_mut();
        assert_eq!(unsafe { (p.create.unwrap())(&cb, &mut t) }, 0);
        Xport { p, t, host }
    }

    /// Creates and installs with `config` (JSON).
    pub fn new(config: &str) -> Xport {
        let x = Xport::create();
        let rc = x.install(Some(config));
        assert_eq!(rc, 0, "install: {}", last_error());
        x
    }

    pub fn install(&self, config: Option<&str>) -> i32 {
        let c = config.map(|c| CString::new(c).unwrap());
        unsafe {
            (self.p.install.unwrap())(self.t, c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
        }
    }

    pub fn uninstall(&self) -> i32 {
        unsafe { (self.p.uninstall.unwrap())(self.t) }
    }

    /// Two device buffers of `len` bytes on devices `on[0]` and `on[1]`, each registered at
    /// its `cuda:N`.
    pub fn registered_pair(&self, dev: &Dev, on: [i32; 2], len: usize) -> (u64, u64) {
        let bufs = on.map(|d| {
            let p = dev.alloc(d, len);
            self.add(p, len as u64, &format!("cuda:{d}")).unwrap();
            p
        });
        (bufs[0], bufs[1])
    }

    pub fn add(&self, addr: u64, len: u64, loc: &str) -> Result<String, (i32, String)> {
        let l = CString::new(loc).unwrap();
        let mut buf = [0 as c_char; SUNRISE_LINK_SHM_PATH_LEN];
        let rc = unsafe {
            (self.p.buffer_add.unwrap())(
                self.t,
                addr as *mut c_void,
                len,
                l.as_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if rc != 0 {
            return Err((rc, last_error()));
        }
        Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }

    pub fn remove(&self, addr: u64) -> i32 {
        unsafe { (self.p.buffer_remove.unwrap())(self.t, addr as *mut c_void, 0) }
    }

    pub fn batch(&self, max: u64) -> u64 {
        let mut h = 0;
        assert_eq!(
            unsafe { (self.p.sub_batch_allocate.unwrap())(self.t, max, 9, &mut h) },
            0
        );
        h
    }

    pub fn free_batch(&self, b: u64) -> i32 {
        unsafe { (self.p.sub_batch_free.unwrap())(self.t, b) }
    }

    pub fn submit(&self, b: u64, reqs: &[sunrise_link_request_t]) -> i32 {
        unsafe { (self.p.submit.unwrap())(self.t, b, reqs.as_ptr(), reqs.len()) }
    }

    pub fn status(&self, b: u64, id: u64) -> (i32, u64) {
        let mut s = sunrise_link_task_status_t {
            status: -1,
            reserved: 0,
            transferred_bytes: 0,
        };
        assert_eq!(
            unsafe { (self.p.task_status_get.unwrap())(self.t, b, id, &mut s) },
            0
        );
        (s.status, s.transferred_bytes)
    }

    /// Polls until the task leaves PENDING (bounded: 20 s).
    pub fn wait(&self, b: u64, id: u64) -> (i32, u64) {
        for _ in 0..20_000 {
            let s = self.status(b, id);
            if terminal(s.0) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("task {id} still pending after 20 s");
    }

    pub fn error(&self, b: u64, id: u64) -> String {
        let mut buf = [0 as c_char; 1024];
        assert_eq!(
            unsafe { (self.p.task_error_get.unwrap())(self.t, b, id, buf.as_mut_ptr(), buf.len()) },
            0
        );
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    pub fn stats(&self) -> sunrise_link_stats_t {
        let mut s = std::mem::MaybeUninit::<sunrise_link_stats_t>::zeroed();
        assert_eq!(
            unsafe { (self.p.stats_get.unwrap())(self.t, s.as_mut_ptr()) },
            0
        );
        unsafe { s.assume_init() }
    }

    pub fn invalidate(&self, seg: u64) -> i32 {
        unsafe { (self.p.segment_invalidate.unwrap())(self.t, seg) }
    }

    pub fn set_remote(&self, seg: u64, r: Remote) {
        let mut g = self.host.remote.lock().unwrap();
        g.retain(|(s, x)| !(*s == seg && x.base == r.base));
        g.push((seg, r));
    }
}

impl Drop for Xport {
    fn drop(&mut self) {
        unsafe { (self.p.destroy.unwrap())(self.t) };
    }
}

/// A config JSON for the emulator with extra keys.
pub fn cfg(extra: &str) -> String {
    if extra.is_empty() {
        "{}".to_string()
    } else {
        format!("{{{extra}}}")
    }
}
