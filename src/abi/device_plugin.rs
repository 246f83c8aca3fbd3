//! TENT's `device_plugin_t` (tent/device_plugin.h), byte-compatible, over the Tang runtime.
//!
//! The types carry our prefix so this header can be included next to TENT's; the layouts are
//! identical (`sunrise_link_device_plugin_t` = `device_plugin_t`, 9 pointers, 72 bytes;
//! `sunrise_link_location_t` = `location_t`, 48 bytes). Class name "cuda": Sunrise uses
//! CUDA-style location names. Return conventions as TENT's MemoryProber expects: 0 = success
//! for alloc/free/memcpy_sync/get_device_pci_bus_id (-1 = failure, message in
//! `sunrise_link_last_error`), query_location returns the number of entries written (0 = not
//! device memory), get_device_count returns the count (-1 on failure).

use super::args;
use super::boundary::{export, set_last_error};
pub use super::consts::SUNRISE_LINK_DEVICE_LOCATION_LEN;
use super::handle::Kind;
use crate::engine::device::{on_device, DeviceGuard};
use crate::engine::locate::owning_device;
use crate::engine::registry::{known_device, known_device_add, known_device_remove};
use crate::engine::{is_device_location, parse_location, Error};
use crate::tang::loader::TangLib;
use crate::tang::{MemcpyKind, Runtime};
use parking_lot::Mutex;
use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

/// `location_t` of TENT's device_plugin.h.
#[repr(C)]
pub struct sunrise_link_location_t {
    pub start: *mut c_void,
    pub length: usize,
    pub location: [c_char; SUNRISE_LINK_DEVICE_LOCATION_LEN],
}

/// `device_plugin_t` of TENT's device_plugin.h, field for field.
#[repr(C)]
pub struct sunrise_link_device_plugin_t {
    pub class_name: *const c_char,
    pub create_plugin: Option<extern "C" fn() -> *mut c_void>,
    pub destroy_plugin: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    pub alloc:
        Option<unsafe extern "C" fn(*mut c_void, *mut *mut c_void, usize, *const c_char) -> c_int>,
    pub free: Option<unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> c_int>,
    pub memcpy_sync:
        Option<unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_void, usize) -> c_int>,
    pub query_location: Option<
        unsafe extern "C" fn(
            *mut c_void,
            *mut c_void,
            usize,
            *mut sunrise_link_location_t,
            usize,
        ) -> c_int,
    >,
    pub get_device_count: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    pub get_device_pci_bus_id:
        Option<unsafe extern "C" fn(*mut c_void, c_int, *mut c_char, usize) -> c_int>,
}

static RUNTIME: Mutex<Option<Arc<TangLib>>> = Mutex::new(None);

struct PluginCtx {
    rt: Arc<TangLib>,
}

/// Device plugin handles: TENT's `void *` plugin context over a boxed `PluginCtx`.
static PLUGIN: Kind<c_void, PluginCtx> = Kind::new("plugin context");

fn runtime() -> Result<Arc<TangLib>, Error> {
    let mut g = RUNTIME.lock();
    if let Some(rt) = g.as_ref() {
        return Ok(rt.clone());
    }
    let rt = Arc::new(TangLib::load(None).map_err(|e| Error::new(101, e.to_string()))?);
    *g = Some(rt.clone());
    Ok(rt)
}

extern "C" fn create_plugin() -> *mut c_void {
    export!(value(std::ptr::null_mut()) {
        match runtime() {
            Ok(rt) => PLUGIN.create(PluginCtx { rt }),
            Err(e) => {
                set_last_error(&e.msg);
                std::ptr::null_mut()
            }
        }
    })
}

unsafe extern "C" fn destroy_plugin(handle: *mut c_void) -> c_int {
    export!(errno {
        // SAFETY: NULL or a context from `create_plugin`, given back once (TENT's contract).
        unsafe { PLUGIN.destroy(handle) };
        Ok(())
    })
}

unsafe extern "C" fn alloc(
    c: *mut c_void,
    pptr: *mut *mut c_void,
    size: usize,
    location: *const c_char,
) -> c_int {
    export!(errno {
        // SAFETY: a live context, a writable pptr, NULL or a NUL-terminated location (TENT's
        // contract for device_plugin_t).
        let (c, pptr, loc) = unsafe {
            (
                PLUGIN.borrow(c)?,
                args::out(pptr, "pptr")?,
                args::opt_str(location, "location")?.unwrap_or(""),
            )
        };
        let (ty, idx) = parse_location(loc);
        if !is_device_location(ty) || idx < 0 {
            return Err(Error::invalid(format!(
                "location {loc:?} is not a Tang device"
            )));
        }
        let rt: &dyn Runtime = c.rt.as_ref();
        let p = on_device(rt, idx, || rt.malloc(size))?;
        if p != 0 && size > 0 {
            known_device_add(p, size as u64, idx);
            ALLOCATIONS
                .lock()
                .push((p, size as u64));
        }
        *pptr = p as usize as *mut c_void;
        Ok(())
    })
}

/// The device owning `[p, p + len)`, or None for host memory: memory the library knows
/// (registered with a transport, allocated here) without a runtime call, else the runtime's
/// answer (see `engine::locate::owner`; the caller's device is restored).
fn device_of(rt: &dyn Runtime, p: u64, len: u64) -> Option<i32> {
    if let Some(d) = known_device(p, len) {
        return (d >= 0).then_some(d);
    }
    let mut dg = DeviceGuard::new(rt);
    owning_device(&mut dg, rt.device_count().unwrap_or(0), p)
}

/// Sizes of the allocations made through the plugin, by address (so `free` forgets exactly
/// what `alloc` recorded, whatever size the host passes).
static ALLOCATIONS: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

unsafe extern "C" fn free(c: *mut c_void, ptr: *mut c_void, _size: usize) -> c_int {
    export!(errno {
        // SAFETY: a live context (TENT's contract).
        let c = unsafe { PLUGIN.borrow(c) }?;
        if ptr.is_null() {
            return Ok(());
        }
        let rt: &dyn Runtime = c.rt.as_ref();
        let p = ptr as usize as u64;
        let dev = device_of(rt, p, 1)
            .ok_or_else(|| Error::invalid(format!("{p:#x} is not Tang device memory")))?;
        on_device(rt, dev, || rt.free(p))?;
        let mut allocs = ALLOCATIONS.lock();
        if let Some(i) = allocs.iter().position(|&(a, _)| a == p) {
            let (a, len) = allocs.swap_remove(i);
            known_device_remove(a, len);
        }
        Ok(())
    })
}

unsafe extern "C" fn memcpy_sync(
    c: *mut c_void,
    dst: *mut c_void,
    src: *mut c_void,
    length: usize,
) -> c_int {
    export!(errno {
        // SAFETY: a live context (TENT's contract); the addresses go to the runtime as integers.
        let c = unsafe { PLUGIN.borrow(c) }?;
        let rt: &dyn Runtime = c.rt.as_ref();
        let (d, s) = (dst as usize as u64, src as usize as u64);
        let n = length as u64;
        let (dd, sd) = (device_of(rt, d, n), device_of(rt, s, n));
        let (kind, dev) = match (sd, dd) {
            (Some(x), Some(y)) if x != y => {
                return on_device(rt, x, || rt.memcpy_peer(d, y, s, x, length));
            }
            (Some(x), Some(_)) => (MemcpyKind::DeviceToDevice, x),
            (Some(x), None) => (MemcpyKind::DeviceToHost, x),
            (None, Some(y)) => (MemcpyKind::HostToDevice, y),
            (None, None) => {
                return rt
                    .memcpy(d, s, length, MemcpyKind::HostToHost)
                    .map_err(|e| Error::runtime(&e, "host-to-host copy"));
            }
        };
        on_device(rt, dev, || rt.memcpy(d, s, length, kind))
    })
}

unsafe extern "C" fn query_location(
    c: *mut c_void,
    addr: *mut c_void,
    size: usize,
    buf: *mut sunrise_link_location_t,
    buf_count: usize,
) -> c_int {
    export!(value(0) {
        // SAFETY: a live context (TENT's contract).
        let Ok(c) = (unsafe { PLUGIN.borrow(c) }) else {
            return 0;
        };
        if buf_count == 0 {
            return 0;
        }
        // SAFETY: NULL or `buf_count` (>= 1) writable entries (TENT's contract).
        let Ok(buf) = (unsafe { args::out(buf, "buf") }) else {
            return 0;
        };
        let Some(dev) = device_of(c.rt.as_ref(), addr as usize as u64, size as u64) else {
            return 0;
        };
        *buf = sunrise_link_location_t {
            start: addr,
            length: size,
            location: cuda_location(dev),
        };
        1
    })
}

/// `"cuda:<dev>"` as a NUL-terminated `location_t` name, written without allocating (TENT
/// asks for every request's source).
fn cuda_location(dev: i32) -> [c_char; SUNRISE_LINK_DEVICE_LOCATION_LEN] {
    let mut loc = [0 as c_char; SUNRISE_LINK_DEVICE_LOCATION_LEN];
    for (i, b) in b"cuda:".iter().enumerate() {
        loc[i] = *b as c_char;
    }
    let mut digits = [0u8; 10];
    let (mut n, mut d) = (0, dev.max(0) as u32);
    loop {
        digits[n] = b'0' + (d % 10) as u8;
        n += 1;
        d /= 10;
        if d == 0 {
            break;
        }
    }
    for k in 0..n {
        loc[5 + k] = digits[n - 1 - k] as c_char;
    }
    loc
}

unsafe extern "C" fn get_device_count(c: *mut c_void) -> c_int {
    export!(value(-1) {
        // SAFETY: a live context (TENT's contract).
        match unsafe { PLUGIN.borrow(c) }.and_then(|c| {
            c.rt.device_count()
                .map_err(|e| Error::runtime(&e, "counting devices"))
        }) {
            Ok(n) => n,
            Err(e) => {
                set_last_error(&e.msg);
                -1
            }
        }
    })
}

unsafe extern "C" fn get_device_pci_bus_id(
    c: *mut c_void,
    idx: c_int,
    out: *mut c_char,
    len: usize,
) -> c_int {
    export!(errno {
        // SAFETY: a live context (TENT's contract).
        let c = unsafe { PLUGIN.borrow(c) }?;
        let id =
            c.rt.pci_bus_id(idx)
                .map_err(|e| Error::runtime(&e, format!("device {idx}")))?;
        // SAFETY: NULL or `len` writable bytes (TENT's contract).
        unsafe { args::write_str(out, len, &id, "pci_bus_id") }
    })
}

/// Fills TENT's `device_plugin_t` (declared here as `sunrise_link_device_plugin_t`, same
/// layout). Returns 0. The runtime is loaded by `create_plugin` through the MC_TANGRT_*
/// lookup; if that fails `create_plugin` returns NULL and `sunrise_link_last_error` says why.
///
/// # Safety
/// `out` points to a writable `device_plugin_t`.
#[no_mangle]
pub unsafe extern "C" fn tent_register_device_plugin(
    out: *mut sunrise_link_device_plugin_t,
) -> c_int {
    export!(errno {
        // SAFETY: the caller's writable device_plugin_t (contract above).
        let out = unsafe { args::out(out, "out") }?;
        *out = sunrise_link_device_plugin_t {
            class_name: CLASS_NAME.as_ptr() as *const c_char,
            create_plugin: Some(create_plugin),
            destroy_plugin: Some(destroy_plugin),
            alloc: Some(alloc),
            free: Some(free),
            memcpy_sync: Some(memcpy_sync),
            query_location: Some(query_location),
            get_device_count: Some(get_device_count),
            get_device_pci_bus_id: Some(get_device_pci_bus_id),
        };
        Ok(())
    })
}

static CLASS_NAME: &[u8] = b"cuda\0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_names() {
        for dev in [0, 7, 10, 127, i32::MAX] {
            let loc = cuda_location(dev);
            // SAFETY: `cuda_location` always leaves a NUL inside the array.
            let s = unsafe { std::ffi::CStr::from_ptr(loc.as_ptr()) };
            assert_eq!(s.to_str().unwrap(), format!("cuda:{dev}"));
        }
    }
}
