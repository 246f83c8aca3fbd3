//! Loads the emulated runtime and PTML with dlopen, the way the library (and Mooncake) does,
//! and exposes their functions as typed pointers. Shared by the integration tests and the
//! helper binary.
#![allow(dead_code, non_snake_case)]

use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::path::PathBuf;

pub type Err = u32;
pub type Handle = [u64; 8];

/// Where the emulator libraries are, first match:
/// 1. `$SUNRISE_LINK_EMU_LIB_DIR` (set by the tests for the helper processes they start);
/// 2. `$SUNRISE_LINK_EMU_ROOT/lib/linux-x86_64` (the root Makefile builds and lays out the root
///    and exports this before `cargo test`);
/// 3. otherwise the debug libraries, built here with cargo (a plain `cargo test` works too).
pub fn lib_dir() -> PathBuf {
    let has_libs = |d: &std::path::Path| {
        d.join("libtangrt_shared.so").exists() && d.join("libptml_shared.so").exists()
    };
    if let Ok(d) = std::env::var("SUNRISE_LINK_EMU_LIB_DIR") {
        if !d.is_empty() {
            return PathBuf::from(d);
        }
    }
    if let Ok(root) = std::env::var("SUNRISE_LINK_EMU_ROOT") {
        if !root.is_empty() {
            let d = PathBuf::from(root).join("lib/linux-x86_64");
            assert!(
                has_libs(&d),
                "SUNRISE_LINK_EMU_ROOT: {} has no lib{{tangrt,ptml}}_shared.so: run \
                 `make -f emu/emu.mk root EMU_ROOT=<that root>` (or `make emu`) first",
                d.display()
            );
            return d;
        }
    }
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .ancestors()
        .skip(1)
        .find(|d| d.file_name().is_some_and(|n| n != "deps"))
        .expect("target directory")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(&cargo)
        .args([
            "build",
            "-p",
            "sunrise-link-emu",
            "-p",
            "sunrise-link-emu-ptml",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("running {cargo} to build the emulator: {e}"));
    assert!(
        out.status.success(),
        "building the emulator libraries failed (set SUNRISE_LINK_EMU_ROOT to a root made by \
         `make -f emu/emu.mk root EMU_ROOT=<dir>` instead):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        has_libs(&profile_dir),
        "built the emulator, but {} has no lib{{tangrt,ptml}}_shared.so; set \
         SUNRISE_LINK_EMU_ROOT to a root made by `make -f emu/emu.mk root EMU_ROOT=<dir>`",
        profile_dir.display()
    );
    profile_dir
}

/// `lib_dir()`, worked out once per process.
pub fn lib_dir_once() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(lib_dir).clone()
}

unsafe fn open(path: &std::path::Path) -> *mut c_void {
    let c = CString::new(path.to_string_lossy().into_owned()).unwrap();
    let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
    if h.is_null() {
        let msg = std::ffi::CStr::from_ptr(libc::dlerror())
            .to_string_lossy()
            .into_owned();
        panic!("dlopen {}: {msg}", path.display());
    }
    h
}

macro_rules! api {
    ($($name:ident : fn($($t:ty),*) -> $r:ty;)*) => {
        pub struct Rt {
            pub handle: *mut c_void,
            pub ptml: *mut c_void,
            $(pub $name: unsafe extern "C" fn($($t),*) -> $r,)*
        }
        unsafe impl Send for Rt {}
        unsafe impl Sync for Rt {}
        impl Rt {
            pub fn load_from(dir: &std::path::Path) -> Rt {
                unsafe {
                    let handle = open(&dir.join("libtangrt_shared.so"));
                    let ptml = open(&dir.join("libptml_shared.so"));
                    let find = |n: &str| -> *mut c_void {
                        let c = CString::new(n).unwrap();
                        let mut p = libc::dlsym(handle, c.as_ptr());
                        if p.is_null() {
                            p = libc::dlsym(ptml, c.as_ptr());
                        }
                        assert!(!p.is_null(), "symbol {n} missing");
                        p
                    };
                    Rt {
                        handle,
                        ptml,
                        $($name: std::mem::transmute::<*mut c_void, unsafe extern "C" fn($($t),*) -> $r>(find(stringify!($name))),)*
                    }
                }
            }
        }
    };
}

api! {
    tangGetDeviceCount: fn(*mut c_int) -> Err;
    tangSetDevice: fn(c_int) -> Err;
    tangGetDevice: fn(*mut c_int) -> Err;
    tangDeviceSynchronize: fn() -> Err;
    tangDeviceGetPCIBusId: fn(*mut c_char, c_int, c_int) -> Err;
    tangMalloc: fn(*mut *mut c_void, usize) -> Err;
    tangFree: fn(*mut c_void) -> Err;
    tangMemset: fn(*mut c_void, c_int, usize) -> Err;
    tangMemcpy: fn(*mut c_void, *const c_void, usize, c_uint) -> Err;
    tangMemcpyAsync: fn(*mut c_void, *const c_void, usize, c_uint, *mut c_void) -> Err;
    tangMemcpyPeer: fn(*mut c_void, c_int, *const c_void, c_int, usize) -> Err;
    tangMemcpyPeerAsync: fn(*mut c_void, c_int, *const c_void, c_int, usize, *mut c_void) -> Err;
    tangPointerGetAttributes: fn(*mut [u64; 3], *const c_void) -> Err;
    tangHostGetDevicePointer: fn(*mut *mut c_void, *mut c_void, c_uint) -> Err;
    tangHostAlloc: fn(*mut *mut c_void, usize, c_uint) -> Err;
    tangMallocHost: fn(*mut *mut c_void, usize) -> Err;
    tangFreeHost: fn(*mut c_void) -> Err;
    tangStreamCreate: fn(*mut *mut c_void) -> Err;
    tangStreamCreateWithFlags: fn(*mut *mut c_void, c_uint) -> Err;
    tangStreamDestroy: fn(*mut c_void) -> Err;
    tangStreamSynchronize: fn(*mut c_void) -> Err;
    tangStreamQuery: fn(*mut c_void) -> Err;
    tangStreamWaitEvent: fn(*mut c_void, *mut c_void, c_uint) -> Err;
    tangEventCreate: fn(*mut *mut c_void) -> Err;
    tangEventCreateWithFlags: fn(*mut *mut c_void, c_uint) -> Err;
    tangEventRecord: fn(*mut c_void, *mut c_void) -> Err;
    tangEventQuery: fn(*mut c_void) -> Err;
    tangEventSynchronize: fn(*mut c_void) -> Err;
    tangEventDestroy: fn(*mut c_void) -> Err;
    tangEventElapsedTime: fn(*mut f32, *mut c_void, *mut c_void) -> Err;
    tangIpcGetMemHandle: fn(*mut Handle, *mut c_void) -> Err;
    tangIpcOpenMemHandle: fn(*mut *mut c_void, Handle, c_uint) -> Err;
    tangIpcCloseMemHandle: fn(*mut c_void) -> Err;
    tangDeviceCanAccessPeer: fn(*mut c_int, c_int, c_int) -> Err;
    tangGetLastError: fn() -> Err;
    tangPeekAtLastError: fn() -> Err;
    tangGetErrorString: fn(Err) -> *const c_char;
    tangGetErrorName: fn(Err) -> *const c_char;
    tangRuntimeGetVersion: fn(*mut c_int) -> Err;
    tangMemGetInfo: fn(*mut usize, *mut usize) -> Err;
    tangEmuConfigure: fn(*const c_char) -> c_int;
    tangEmuClearFaults: fn() -> ();
    tangEmuCallCount: fn(*const c_char) -> u64;
    tangEmuResetCounters: fn() -> ();
    tangEmuTotalCalls: fn() -> u64;
    tangEmuLiveCount: fn(*const c_char) -> i64;
    ptmlInit: fn() -> u32;
    ptmlDeviceGetCount: fn(*mut c_int) -> u32;
    ptmlPtlinkEnableAll: fn() -> u32;
    ptmlPtlinkDisableAll: fn() -> u32;
    ptmlPtlinkPhytopoDetect: fn(c_int, u32, *mut c_void) -> u32;
    ptmlGetPtlinkStatus: fn(c_int, c_int, *mut c_int) -> u32;
    ptmlSystemGetTangVersion: fn(*mut c_int) -> u32;
    ptmlSystemGetDriverVersion: fn(*mut c_char, c_uint) -> u32;
}

impl Rt {
    pub fn load() -> Rt {
        Rt::load_from(&lib_dir_once())
    }

    /// An optional symbol, if exported.
    pub fn sym(&self, name: &str) -> Option<*mut c_void> {
        let c = CString::new(name).unwrap();
        let mut p = unsafe { libc::dlsym(self.handle, c.as_ptr()) };
        if p.is_null() {
            p = unsafe { libc::dlsym(self.ptml, c.as_ptr()) };
        }
        (!p.is_null()).then_some(p)
    }

    pub fn peer_v2(
        &self,
    ) -> unsafe extern "C" fn(*mut c_void, c_int, *const c_void, c_int, usize) -> Err {
        unsafe { std::mem::transmute(self.sym("tangMemcpyPeer_v2").expect("tangMemcpyPeer_v2")) }
    }

    pub fn peer_pointer(
        &self,
    ) -> unsafe extern "C" fn(c_int, c_int, *mut c_void, *mut *mut c_void) -> Err {
        unsafe {
            std::mem::transmute(
                self.sym("tangDeviceGetPeerPointer")
                    .expect("tangDeviceGetPeerPointer"),
            )
        }
    }

    pub fn configure(&self, toml: &str) -> c_int {
        let c = CString::new(toml).unwrap();
        unsafe { (self.tangEmuConfigure)(c.as_ptr()) }
    }

    pub fn count(&self, name: &str) -> u64 {
        let c = CString::new(name).unwrap();
        unsafe { (self.tangEmuCallCount)(c.as_ptr()) }
    }

    pub fn live(&self, kind: &str) -> i64 {
        let c = CString::new(kind).unwrap();
        unsafe { (self.tangEmuLiveCount)(c.as_ptr()) }
    }

    pub fn malloc(&self, n: usize) -> *mut c_void {
        let mut p = std::ptr::null_mut();
        let r = unsafe { (self.tangMalloc)(&mut p, n) };
        assert_eq!(r, 0, "tangMalloc({n})");
        p
    }

    pub fn set_device(&self, d: c_int) {
        assert_eq!(unsafe { (self.tangSetDevice)(d) }, 0, "tangSetDevice({d})");
    }

    pub fn h2d(&self, dst: *mut c_void, src: &[u8]) -> Err {
        unsafe { (self.tangMemcpy)(dst, src.as_ptr().cast(), src.len(), 1) }
    }

    pub fn d2h(&self, dst: &mut [u8], src: *const c_void) -> Err {
        unsafe { (self.tangMemcpy)(dst.as_mut_ptr().cast(), src, dst.len(), 2) }
    }
}

pub fn hex(h: &Handle) -> String {
    h.iter().map(|w| format!("{w:016x}")).collect()
}

pub fn unhex(s: &str) -> Handle {
    let mut h = [0u64; 8];
    for (i, w) in h.iter_mut().enumerate() {
        *w = u64::from_str_radix(&s[i * 16..i * 16 + 16], 16).expect("hex handle");
    }
    h
}
