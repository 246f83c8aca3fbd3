//! The Tang runtime and PTML loaded with libloading.
//!
//! PTML is opened first, then the runtime, both with `RTLD_NOW | RTLD_LOCAL`. Every symbol is
//! looked up once when the libraries are loaded; a missing required symbol is an error naming
//! the symbol and the library file; optional ones (`tangMemcpyPeer_v2`,
//! `tangDeviceGetPeerPointer`, `tangRuntimeGetVersion`, `ptmlUninit`) become `None`.

use super::paths::{self, PTML_LIB, TANGRT_LIB};
use super::*;
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};
use std::path::{Path, PathBuf};

/// `tangIpcMemHandle_t`: eight `unsigned long`, passed by value to `tangIpcOpenMemHandle`.
#[repr(C)]
#[derive(Clone, Copy)]
struct IpcMemHandleC {
    reserved: [c_ulong; 8],
}

/// `struct tangPointerAttributes` (24 bytes).
#[repr(C)]
struct PointerAttributesC {
    memory_type: c_int,
    device: c_int,
    device_pointer: *mut c_void,
    host_pointer: *mut c_void,
}

type Err32 = c_int;
type FnIntOut = unsafe extern "C" fn(*mut c_int) -> Err32;
type FnInt = unsafe extern "C" fn(c_int) -> Err32;
type FnMalloc = unsafe extern "C" fn(*mut *mut c_void, usize) -> Err32;
type FnPtr = unsafe extern "C" fn(*mut c_void) -> Err32;
type FnMemcpy = unsafe extern "C" fn(*mut c_void, *const c_void, usize, c_uint) -> Err32;
type FnMemcpyAsync =
    unsafe extern "C" fn(*mut c_void, *const c_void, usize, c_uint, *mut c_void) -> Err32;
type FnMemcpyPeer = unsafe extern "C" fn(*mut c_void, c_int, *const c_void, c_int, usize) -> Err32;
type FnPeerPointer = unsafe extern "C" fn(c_int, c_int, *mut c_void, *mut *mut c_void) -> Err32;
type FnPtrAttr = unsafe extern "C" fn(*mut PointerAttributesC, *const c_void) -> Err32;
type FnIpcGet = unsafe extern "C" fn(*mut IpcMemHandleC, *mut c_void) -> Err32;
type FnIpcOpen = unsafe extern "C" fn(*mut *mut c_void, IpcMemHandleC, c_uint) -> Err32;
type FnCreateFlags = unsafe extern "C" fn(*mut *mut c_void, c_uint) -> Err32;
type FnRecord = unsafe extern "C" fn(*mut c_void, *mut c_void) -> Err32;
type FnPciBusId = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> Err32;
type FnVoidRet = unsafe extern "C" fn() -> Err32;
type FnVoid = unsafe extern "C" fn();
type FnPhytopo = unsafe extern "C" fn(c_int, u32, *mut c_void) -> Err32;

struct TangFns {
    get_device_count: FnIntOut,
    get_device: FnIntOut,
    set_device: FnInt,
    malloc: FnMalloc,
    free: FnPtr,
    memcpy: FnMemcpy,
    memcpy_async: FnMemcpyAsync,
    memcpy_peer: FnMemcpyPeer,
    memcpy_peer_v2: Option<FnMemcpyPeer>,
    peer_pointer: Option<FnPeerPointer>,
    pointer_attributes: FnPtrAttr,
    ipc_get: FnIpcGet,
    ipc_open: FnIpcOpen,
    ipc_close: FnPtr,
    stream_create: FnCreateFlags,
    stream_destroy: FnPtr,
    stream_sync: Option<FnPtr>,
    event_sync: Option<FnPtr>,
    event_create: FnCreateFlags,
    event_record: FnRecord,
    event_query: FnPtr,
    event_destroy: FnPtr,
    pci_bus_id: FnPciBusId,
    runtime_version: Option<FnIntOut>,
}

struct PtmlFns {
    init: FnVoidRet,
    enable_all: FnVoidRet,
    phytopo_detect: FnPhytopo,
    uninit: Option<FnVoid>,
}

/// The loaded libraries. Dropping it calls `ptmlUninit` (when present) and closes the runtime
/// before PTML; the engine drops it only after every IPC mapping, stream and event is gone.
pub struct TangLib {
    tang: TangFns,
    ptml: PtmlFns,
    // Field order = drop order: the runtime is closed before PTML (opened in reverse).
    _tang_lib: Library,
    _ptml_lib: Library,
    tang_path: PathBuf,
}

/// Why loading failed; the message names the library path or the symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// A library could not be opened.
    Library(String),
    /// A required symbol is missing.
    Symbol(String),
    /// A required initialisation call failed.
    Init(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Library(m) | LoadError::Symbol(m) | LoadError::Init(m) => f.write_str(m),
        }
    }
}

/// PTML is process-wide: `ptmlUninit` runs only when the last `TangLib` of this process goes,
/// and only if one of them initialised it (a host that initialised PTML itself keeps it).
static PTML_USERS: parking_lot::Mutex<(usize, bool)> = parking_lot::Mutex::new((0, false));

fn open(path: &Path) -> Result<Library, LoadError> {
    // SAFETY: loading a shared library runs its constructors; the vendor runtime (or the
    // emulator) is trusted code, which is the premise of this whole library.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| LoadError::Library(format!("cannot load {}: {}", path.display(), e)))
}

fn required<T: Copy>(lib: &Library, path: &Path, name: &str) -> Result<T, LoadError> {
    // SAFETY: the symbol is declared with the signature of the runtime reference (§2, §5).
    unsafe { lib.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|_| {
            LoadError::Symbol(format!(
                "required symbol {} not found in {}",
                name,
                path.display()
            ))
        })
}

fn optional<T: Copy>(lib: &Library, name: &str) -> Option<T> {
    // SAFETY: as in `required`.
    unsafe { lib.get::<T>(name.as_bytes()) }.ok().map(|s| *s)
}

impl TangLib {
    /// Loads PTML and the runtime from `explicit_dir` (config) or the MC_TANGRT_* environment,
    /// then runs `ptmlInit` (ALREADY_INITIALIZED counts as success) and `ptmlPtlinkEnableAll`
    /// (failure is only a warning).
    pub fn load(explicit_dir: Option<&str>) -> Result<TangLib, LoadError> {
        let ptml_path = paths::resolve(PTML_LIB, explicit_dir);
        let tang_path = paths::resolve(TANGRT_LIB, explicit_dir);
        let ptml_lib = open(&ptml_path)?;
        let ptml = PtmlFns {
            init: required(&ptml_lib, &ptml_path, "ptmlInit")?,
            enable_all: required(&ptml_lib, &ptml_path, "ptmlPtlinkEnableAll")?,
            phytopo_detect: required(&ptml_lib, &ptml_path, "ptmlPtlinkPhytopoDetect")?,
            uninit: optional(&ptml_lib, "ptmlUninit"),
        };
        // Required like upstream requires it, though the device count comes from the runtime.
        required::<FnIntOut>(&ptml_lib, &ptml_path, "ptmlDeviceGetCount")?;
        let tang_lib = open(&tang_path)?;
        let p = &tang_path;
        let l = &tang_lib;
        let tang = TangFns {
            get_device_count: required(l, p, "tangGetDeviceCount")?,
            get_device: required(l, p, "tangGetDevice")?,
            set_device: required(l, p, "tangSetDevice")?,
            malloc: required(l, p, "tangMalloc")?,
            free: required(l, p, "tangFree")?,
            memcpy: required(l, p, "tangMemcpy")?,
            memcpy_async: required(l, p, "tangMemcpyAsync")?,
            memcpy_peer: required(l, p, "tangMemcpyPeer")?,
            memcpy_peer_v2: optional(l, "tangMemcpyPeer_v2"),
            peer_pointer: optional(l, "tangDeviceGetPeerPointer"),
            pointer_attributes: required(l, p, "tangPointerGetAttributes")?,
            ipc_get: required(l, p, "tangIpcGetMemHandle")?,
            ipc_open: required(l, p, "tangIpcOpenMemHandle")?,
            ipc_close: required(l, p, "tangIpcCloseMemHandle")?,
            stream_create: required(l, p, "tangStreamCreateWithFlags")?,
            stream_destroy: required(l, p, "tangStreamDestroy")?,
            stream_sync: optional(l, "tangStreamSynchronize"),
            event_sync: optional(l, "tangEventSynchronize"),
            event_create: required(l, p, "tangEventCreateWithFlags")?,
            event_record: required(l, p, "tangEventRecord")?,
            event_query: required(l, p, "tangEventQuery")?,
            event_destroy: required(l, p, "tangEventDestroy")?,
            pci_bus_id: required(l, p, "tangDeviceGetPCIBusId")?,
            runtime_version: optional(l, "tangRuntimeGetVersion"),
        };
        let mut users = PTML_USERS.lock();
        // SAFETY: resolved above with the documented signature; takes no arguments.
        let rc = unsafe { (ptml.init)() };
        if rc != 0 && rc != PTML_ERROR_ALREADY_INITIALIZED {
            return Err(LoadError::Init(format!(
                "ptmlInit returned {} ({})",
                rc,
                ptml_path.display()
            )));
        }
        users.0 += 1;
        users.1 |= rc == 0;
        drop(users);
        // SAFETY: as above.
        let rc = unsafe { (ptml.enable_all)() };
        if rc != 0 {
            log::warn!("ptmlPtlinkEnableAll returned {rc}; continuing");
        }
        let lib = TangLib {
            tang,
            ptml,
            _tang_lib: tang_lib,
            _ptml_lib: ptml_lib,
            tang_path,
        };
        match lib.runtime_version() {
            Ok(v) => log::info!("Tang runtime {} version {}", lib.tang_path.display(), v),
            Err(e) => log::info!(
                "Tang runtime {}: version unknown ({e})",
                lib.tang_path.display()
            ),
        }
        Ok(lib)
    }
}

impl Drop for TangLib {
    fn drop(&mut self) {
        let mut users = PTML_USERS.lock();
        users.0 = users.0.saturating_sub(1);
        if users.0 == 0 && users.1 {
            users.1 = false;
            if let Some(uninit) = self.ptml.uninit {
                // SAFETY: resolved from PTML, which is still loaded (dropped after this body).
                unsafe { uninit() };
            }
        }
    }
}

fn check(call: &'static str, rc: c_int) -> RtResult<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(RtError::new(call, rc))
    }
}

fn p(a: u64) -> *mut c_void {
    a as usize as *mut c_void
}

// SAFETY (for every call below): each function pointer was resolved from the loaded library
// with the signature of the runtime reference; pointers passed are either addresses the
// runtime interprets (never dereferenced here) or valid out-parameters on our stack.
impl Runtime for TangLib {
    fn device_count(&self) -> RtResult<i32> {
        let mut n: c_int = 0;
        let rc = unsafe { (self.tang.get_device_count)(&mut n) };
        if rc == TANG_ERROR_NO_DEVICE {
            return Ok(0);
        }
        check("tangGetDeviceCount", rc).map(|_| n.max(0))
    }
    fn get_device(&self) -> RtResult<i32> {
        let mut d: c_int = -1;
        check("tangGetDevice", unsafe { (self.tang.get_device)(&mut d) }).map(|_| d)
    }
    fn set_device(&self, device: i32) -> RtResult<()> {
        check("tangSetDevice", unsafe { (self.tang.set_device)(device) })
    }
    fn malloc(&self, size: usize) -> RtResult<u64> {
        let mut out: *mut c_void = std::ptr::null_mut();
        check("tangMalloc", unsafe { (self.tang.malloc)(&mut out, size) })
            .map(|_| out as usize as u64)
    }
    fn free(&self, ptr: u64) -> RtResult<()> {
        check("tangFree", unsafe { (self.tang.free)(p(ptr)) })
    }
    fn memcpy(&self, dst: u64, src: u64, len: usize, kind: MemcpyKind) -> RtResult<()> {
        check("tangMemcpy", unsafe {
            (self.tang.memcpy)(p(dst), p(src), len, kind as c_uint)
        })
    }
    fn memcpy_async(
        &self,
        dst: u64,
        src: u64,
        len: usize,
        kind: MemcpyKind,
        stream: Handle,
    ) -> RtResult<()> {
        check("tangMemcpyAsync", unsafe {
            (self.tang.memcpy_async)(p(dst), p(src), len, kind as c_uint, p(stream))
        })
    }
    fn memcpy_peer(&self, dst: u64, dd: i32, src: u64, sd: i32, len: usize) -> RtResult<()> {
        check("tangMemcpyPeer", unsafe {
            (self.tang.memcpy_peer)(p(dst), dd, p(src), sd, len)
        })
    }
    fn memcpy_peer_v2(
        &self,
        dst: u64,
        dd: i32,
        src: u64,
        sd: i32,
        len: usize,
    ) -> Option<RtResult<()>> {
        let f = self.tang.memcpy_peer_v2?;
        Some(check("tangMemcpyPeer_v2", unsafe {
            f(p(dst), dd, p(src), sd, len)
        }))
    }
    fn peer_pointer(&self, src_device: i32, port: i32, peer_addr: u64) -> Option<RtResult<u64>> {
        let f = self.tang.peer_pointer?;
        let mut out: *mut c_void = std::ptr::null_mut();
        let rc = unsafe { f(src_device, port, p(peer_addr), &mut out) };
        Some(check("tangDeviceGetPeerPointer", rc).map(|_| out as usize as u64))
    }
    fn pointer_attributes(&self, ptr: u64) -> RtResult<PointerInfo> {
        let mut a = PointerAttributesC {
            memory_type: 0,
            device: -1,
            device_pointer: std::ptr::null_mut(),
            host_pointer: std::ptr::null_mut(),
        };
        check("tangPointerGetAttributes", unsafe {
            (self.tang.pointer_attributes)(&mut a, p(ptr))
        })?;
        Ok(PointerInfo {
            memory_type: a.memory_type,
            device: a.device,
            device_pointer: a.device_pointer as usize as u64,
            host_pointer: a.host_pointer as usize as u64,
        })
    }
    // `c_ulong` is u64 on LP64 only; the casts keep this portable.
    #[allow(clippy::unnecessary_cast)]
    fn ipc_get_handle(&self, ptr: u64) -> RtResult<IpcHandle> {
        let mut h = IpcMemHandleC { reserved: [0; 8] };
        check("tangIpcGetMemHandle", unsafe {
            (self.tang.ipc_get)(&mut h, p(ptr))
        })?;
        let mut out = [0u8; IPC_HANDLE_SIZE];
        for (i, w) in h.reserved.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&(*w as u64).to_ne_bytes());
        }
        Ok(out)
    }
    #[allow(clippy::unnecessary_cast)]
    fn ipc_open(&self, handle: &IpcHandle, flags: u32) -> RtResult<u64> {
        let mut h = IpcMemHandleC { reserved: [0; 8] };
        for (i, w) in h.reserved.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&handle[i * 8..i * 8 + 8]);
            *w = u64::from_ne_bytes(b) as c_ulong;
        }
        let mut out: *mut c_void = std::ptr::null_mut();
        check("tangIpcOpenMemHandle", unsafe {
            (self.tang.ipc_open)(&mut out, h, flags)
        })?;
        Ok(out as usize as u64)
    }
    fn ipc_close(&self, ptr: u64) -> RtResult<()> {
        check("tangIpcCloseMemHandle", unsafe {
            (self.tang.ipc_close)(p(ptr))
        })
    }
    fn stream_create(&self, flags: u32) -> RtResult<Handle> {
        let mut s: *mut c_void = std::ptr::null_mut();
        check("tangStreamCreateWithFlags", unsafe {
            (self.tang.stream_create)(&mut s, flags)
        })
        .map(|_| s as usize as u64)
    }
    fn stream_destroy(&self, stream: Handle) -> RtResult<()> {
        check("tangStreamDestroy", unsafe {
            (self.tang.stream_destroy)(p(stream))
        })
    }
    fn stream_synchronize(&self, stream: Handle) -> Option<RtResult<()>> {
        let f = self.tang.stream_sync?;
        Some(check("tangStreamSynchronize", unsafe { f(p(stream)) }))
    }
    fn event_synchronize(&self, event: Handle) -> Option<RtResult<()>> {
        let f = self.tang.event_sync?;
        Some(check("tangEventSynchronize", unsafe { f(p(event)) }))
    }
    fn event_create(&self, flags: u32) -> RtResult<Handle> {
        let mut e: *mut c_void = std::ptr::null_mut();
        check("tangEventCreateWithFlags", unsafe {
            (self.tang.event_create)(&mut e, flags)
        })
        .map(|_| e as usize as u64)
    }
    fn event_record(&self, event: Handle, stream: Handle) -> RtResult<()> {
        check("tangEventRecord", unsafe {
            (self.tang.event_record)(p(event), p(stream))
        })
    }
    fn event_query(&self, event: Handle) -> RtResult<bool> {
        match unsafe { (self.tang.event_query)(p(event)) } {
            0 => Ok(true),
            TANG_ERROR_NOT_READY => Ok(false),
            rc => Err(RtError::new("tangEventQuery", rc)),
        }
    }
    fn event_destroy(&self, event: Handle) -> RtResult<()> {
        check("tangEventDestroy", unsafe {
            (self.tang.event_destroy)(p(event))
        })
    }
    fn pci_bus_id(&self, device: i32) -> RtResult<String> {
        let mut buf = [0 as c_char; 64];
        check("tangDeviceGetPCIBusId", unsafe {
            (self.tang.pci_bus_id)(buf.as_mut_ptr(), buf.len() as c_int, device)
        })?;
        buf[63] = 0;
        // SAFETY: NUL-terminated above.
        let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        Ok(s.to_string_lossy().into_owned())
    }
    fn phytopo_detect(&self, device: i32) -> RtResult<Vec<PhyTopo>> {
        let mut rows = [PhyTopo::default(); MAX_PHYTOPO_PORTS];
        let bytes = std::mem::size_of_val(&rows) as u32;
        let rc =
            unsafe { (self.ptml.phytopo_detect)(device, bytes, rows.as_mut_ptr() as *mut c_void) };
        check("ptmlPtlinkPhytopoDetect", rc)?;
        Ok(rows.to_vec())
    }
    fn runtime_version(&self) -> RtResult<i32> {
        let Some(f) = self.tang.runtime_version else {
            return Err(RtError::new("tangRuntimeGetVersion", -1));
        };
        let mut v: c_int = 0;
        check("tangRuntimeGetVersion", unsafe { f(&mut v) }).map(|_| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_reference() {
        assert_eq!(std::mem::size_of::<IpcMemHandleC>(), 64);
        assert_eq!(std::mem::size_of::<PointerAttributesC>(), 24);
        assert_eq!(std::mem::size_of::<PhyTopo>(), 10);
    }

    #[test]
    fn missing_library_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        match TangLib::load(Some(d)) {
            Err(LoadError::Library(m)) => {
                assert!(m.contains("libptml_shared.so"), "{m}");
                assert!(m.contains(d), "{m}");
            }
            other => panic!("expected a library error, got {:?}", other.err()),
        }
    }
}
