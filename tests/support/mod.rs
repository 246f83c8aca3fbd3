//! The one test-support library of the integration tests.
//!
//! Policy: the tests run against the emulated Tang runtime (`emu/`), found at
//! `$SUNRISE_LINK_EMU_ROOT` (the Makefile exports it) or `target/tangrt-emu`. When it is not
//! built, every test that needs it fails at once with the command that builds it; none passes
//! without running.
//!
//! - this file: where the emulator is, its control and runtime entry points ([`Emu`]), what
//!   every test uses (requests, the last error, a PRNG, bounded waiting);
//! - [`table`]: a host that reaches the library through its plugin table, each scenario in a
//!   child process of its own (emulator settings never leak between tests);
//! - [`direct`]: a host that calls the exported functions directly, in one process, with the
//!   tests of a binary serialised (hostile input, faults, fuzzing, stress).
#![allow(dead_code, non_snake_case, unused_imports)]

pub mod direct;
pub mod table;

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sunrise_link::abi::device_plugin::*;
use sunrise_link::abi::*;

/// The command that builds the emulator root this library looks for.
pub const BUILD_EMU: &str = "make emu";

/// The emulated SDK root: `$SUNRISE_LINK_EMU_ROOT`, else `target/tangrt-emu` of this checkout.
/// Fails the calling test, naming the command that builds it, when it is not there.
pub fn emu_root() -> PathBuf {
    let root = std::env::var("SUNRISE_LINK_EMU_ROOT")
        .ok()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tangrt-emu"));
    let lib = lib_dir(&root);
    assert!(
        lib.join("libtangrt_shared.so").exists() && lib.join("libptml_shared.so").exists(),
        "the emulated Tang runtime is not built under {}: run `{BUILD_EMU}` (it lays out \
         target/tangrt-emu; `make test` does it first), or set SUNRISE_LINK_EMU_ROOT to a root \
         made by `make -f emu/emu.mk root EMU_ROOT=<dir>`",
        root.display()
    );
    root
}

/// The runtime libraries of an SDK-shaped root.
pub fn lib_dir(root: &Path) -> PathBuf {
    root.join("lib/linux-x86_64")
}

/// The `-minimal` variant of the root (no optional symbols), laid out next to it by the
/// same command.
pub fn minimal_root() -> PathBuf {
    let mut s = emu_root().into_os_string();
    s.push("-minimal");
    let root = PathBuf::from(s);
    assert!(
        lib_dir(&root).join("libtangrt_shared.so").exists(),
        "no minimal emulator root at {}: run `{BUILD_EMU}` (it lays out both roots)",
        root.display()
    );
    root
}

/// The full name of test `name` in this binary, for running it again in a child process:
/// tests of a grouped binary live in modules (`paths::striping`), and the running test's
/// thread carries its full name.
pub fn test_path(name: &str) -> String {
    match std::thread::current().name() {
        Some(me) if me == name || me.ends_with(&format!("::{name}")) => me.to_string(),
        Some(me) => match me.rfind("::") {
            Some(i) => format!("{}::{name}", &me[..i]),
            None => name.to_string(),
        },
        None => name.to_string(),
    }
}

/// The shared library of this build profile (`target/<profile>/libsunrise_link.so`), built
/// first if `cargo test` has not (it builds the rlib the tests link).
pub fn cdylib() -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/libsunrise_link.so
    let exe = std::env::current_exe().unwrap();
    let lib = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("libsunrise_link.so");
    if !lib.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "-p", "sunrise-link", "--lib", "--manifest-path"])
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
        if lib.parent().is_some_and(|p| p.ends_with("release")) {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("running cargo build");
        assert!(st.success(), "cargo build --lib failed");
    }
    assert!(lib.exists(), "{} not built", lib.display());
    lib
}

/// A child process of this test binary that runs test `test` again with `env` set to
/// `value`: the test sees the variable and plays its child role instead (see `role`).
pub fn rerun_as(test: &str, env: &str, value: &str) -> std::process::Command {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args([
        &test_path(test),
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(env, value);
    c
}

/// The value of a role variable set by [`rerun_as`]: in that child, the test plays the role.
pub fn role(env: &str) -> Option<String> {
    std::env::var(env).ok()
}

// ------------------------------------------------------------------------------ emulator

macro_rules! emu_api {
    ($($name:ident : fn($($t:ty),*) -> $r:ty;)*) => {
        /// The emulator's control exports (`tang_emu.h`) and the runtime calls the tests make
        /// themselves, from the same library instance the transport loads.
        pub struct Emu {
            _lib: libloading::Library,
            $(pub $name: unsafe extern "C" fn($($t),*) -> $r,)*
        }
        impl Emu {
            fn load(dir: &Path) -> Emu {
                // SAFETY: the emulator, loaded at the path the library under test loads it
                // from (the same handle); every symbol has the type of `tang_emu.h` /
                // `tang_runtime_api.h`.
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
    tangEmuResetCounters: fn() -> ();
    tangEmuTotalCalls: fn() -> u64;
    tangEmuLiveCount: fn(*const c_char) -> i64;
}

pub const H2D: c_uint = 1;
pub const D2H: c_uint = 2;

impl Emu {
    /// The emulator of this process: at `MC_TANGRT_LIB_DIR` (which a scenario sets for its
    /// child), else in [`emu_root`].
    pub fn open() -> Emu {
        let dir = std::env::var_os("MC_TANGRT_LIB_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| lib_dir(&emu_root()));
        Emu::load(&dir)
    }

    /// Applies a `tangEmuConfigure` TOML snippet; fails the test if the emulator refuses it.
    pub fn configure(&self, toml: &str) {
        let c = CString::new(toml).unwrap();
        // SAFETY: a NUL-terminated string.
        let rc = unsafe { (self.tangEmuConfigure)(c.as_ptr()) };
        assert_eq!(rc, 0, "tangEmuConfigure({toml})");
    }

    pub fn clear_faults(&self) {
        // SAFETY: no arguments.
        unsafe { (self.tangEmuClearFaults)() }
    }

    /// Calls of runtime function `f` since the last reset.
    pub fn calls(&self, f: &str) -> u64 {
        let c = CString::new(f).unwrap();
        // SAFETY: a NUL-terminated string.
        unsafe { (self.tangEmuCallCount)(c.as_ptr()) }
    }

    pub fn reset_counters(&self) {
        // SAFETY: no arguments.
        unsafe { (self.tangEmuResetCounters)() }
    }

    pub fn total_calls(&self) -> u64 {
        // SAFETY: no arguments.
        unsafe { (self.tangEmuTotalCalls)() }
    }

    /// Live objects of a kind ("stream", "event", "ipc_open", ...).
    pub fn live(&self, kind: &str) -> i64 {
        let c = CString::new(kind).unwrap();
        // SAFETY: a NUL-terminated string.
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

    /// Device memory of `len` bytes on `dev`, straight from the runtime.
    pub fn alloc(&self, dev: i32, len: usize) -> u64 {
        let mut p = std::ptr::null_mut();
        // SAFETY: a writable out pointer.
        unsafe {
            assert_eq!((self.tangSetDevice)(dev), 0, "tangSetDevice({dev})");
            assert_eq!((self.tangMalloc)(&mut p, len), 0, "tangMalloc({len})");
        }
        p as u64
    }

    pub fn free(&self, p: u64) {
        // SAFETY: a pointer from `alloc` (the runtime checks it).
        assert_eq!(unsafe { (self.tangFree)(p as *mut c_void) }, 0, "tangFree");
    }

    /// Host bytes → device memory.
    pub fn write(&self, dev_ptr: u64, bytes: &[u8]) {
        // SAFETY: `bytes` is readable for its length; the runtime checks the device range.
        let r = unsafe {
            (self.tangMemcpy)(
                dev_ptr as *mut c_void,
                bytes.as_ptr().cast(),
                bytes.len(),
                H2D,
            )
        };
        assert_eq!(r, 0, "tangMemcpy H2D");
    }

    /// Device memory → host bytes.
    pub fn read(&self, dev_ptr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        // SAFETY: `v` is writable for `len` bytes; the runtime checks the device range.
        let r =
            unsafe { (self.tangMemcpy)(v.as_mut_ptr().cast(), dev_ptr as *const c_void, len, D2H) };
        assert_eq!(r, 0, "tangMemcpy D2H");
        v
    }
}

// ------------------------------------------------------------------------------ common

/// The message of the last failing call on this thread.
pub fn last_error() -> String {
    // SAFETY: the library's NUL-terminated thread-local message.
    unsafe { CStr::from_ptr(sunrise_link_last_error()) }
        .to_string_lossy()
        .into_owned()
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

pub const READ: u32 = SUNRISE_LINK_OP_READ;
pub const WRITE: u32 = SUNRISE_LINK_OP_WRITE;
pub const COMPLETED: i32 = SUNRISE_LINK_TASK_COMPLETED;
pub const FAILED: i32 = SUNRISE_LINK_TASK_FAILED;
pub const CANCELED: i32 = SUNRISE_LINK_TASK_CANCELED;

/// Whether a task state is final (PENDING, and INITIAL while a submit is in progress, are not).
pub fn terminal(status: i32) -> bool {
    status != SUNRISE_LINK_TASK_PENDING && status != SUNRISE_LINK_TASK_INITIAL
}

/// Copies a string NUL-terminated into a fixed C field (cut to fit).
pub fn fill_field(dst: &mut [c_char], s: &str) {
    let n = s.len().min(dst.len() - 1);
    for (d, b) in dst
        .iter_mut()
        .zip(s.bytes().take(n).chain(std::iter::once(0)))
    {
        *d = b as c_char;
    }
}

/// Answers a `lookup_remote_buffer` with one buffer's fields.
pub fn answer_lookup(
    out: &mut sunrise_link_remote_buffer_t,
    base: u64,
    length: u64,
    location: &str,
    shm_path: &str,
    machine_id: &str,
) {
    out.base = base;
    out.length = length;
    fill_field(&mut out.location, location);
    fill_field(&mut out.shm_path, shm_path);
    fill_field(&mut out.machine_id, machine_id);
}

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
