//! The exported Tang runtime API.

use crate::errors::*;
use crate::mem::{self, round_up, Backing, PAGE};
use crate::state::{
    self, copy_bytes, emu, lock, with_view, HostAlloc, Kind, Loc, Region, Resolved, View,
};
use crate::stream::{Event, Stream};
use crate::types::*;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Runtime and driver version reported by the emulator: 0.13.0 encoded as
/// major*1000 + minor*10 + patch, like the driver header's TA_VERSION.
pub const EMU_VERSION: c_int = 130;

type Stream_t = *mut c_void;
type Event_t = *mut c_void;

fn out<T>(p: *mut T, v: T) -> Result<(), tangError_t> {
    if p.is_null() {
        return Err(tangErrorInvalidValue);
    }
    unsafe { p.write(v) };
    Ok(())
}

// ---------------------------------------------------------------- devices

export! {
    fn tangGetDeviceCount(count: *mut c_int) {
        if count.is_null() {
            return tangErrorInvalidValue;
        }
        let n = with_view(|v| v.device_count());
        unsafe { *count = n as c_int };
        if n == 0 { tangErrorNoDevice } else { tangSuccess }
    }
}

export! {
    fn tangSetDevice(deviceId: c_int) {
        with_view(|v| {
            if v.device_count() == 0 {
                return tangErrorNoDevice;
            }
            tri!(v.device(deviceId));
            state::set_current(deviceId);
            tangSuccess
        })
    }
}

export! {
    fn tangGetDevice(deviceId: *mut c_int) {
        if with_view(|v| v.device_count()) == 0 {
            return tangErrorNoDevice;
        }
        tri!(out(deviceId, state::current_raw()));
        tangSuccess
    }
}

export! {
    fn tangDeviceSynchronize() {
        let dev = tri!(with_view(|v| v.current().cloned()));
        emu().sync_device(&dev)
    }
}

fn bus_id(d: u32) -> String {
    format!("0000:{:02x}:00.0", 0x10 + d)
}

export! {
    fn tangDeviceGetPCIBusId(pciBusId: *mut c_char, len: c_int, deviceId: c_int) {
        tri!(with_view(|v| v.device(deviceId).map(drop)));
        let s = bus_id(deviceId as u32);
        if pciBusId.is_null() || len < 0 || (len as usize) < s.len() + 1 {
            return tangErrorInvalidValue;
        }
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), pciBusId.cast(), s.len());
            *pciBusId.add(s.len()) = 0;
        }
        tangSuccess
    }
}

export! {
    fn tangDeviceGetByPCIBusId(device: *mut c_int, pciBusId: *const c_char) {
        if device.is_null() || pciBusId.is_null() {
            return tangErrorInvalidValue;
        }
        let s = unsafe { CStr::from_ptr(pciBusId) }.to_string_lossy().to_lowercase();
        for d in 0..with_view(|v| v.device_count()) {
            let id = bus_id(d);
            if s == id || s == id[5..] {
                unsafe { *device = d as c_int };
                return tangSuccess;
            }
        }
        tangErrorInvalidDevice
    }
}

export! {
    fn tangGetDeviceProperties(props: *mut tangDeviceProp, deviceId: c_int) {
        let dev = tri!(with_view(|v| v.device(deviceId).cloned()));
        if props.is_null() {
            return tangErrorInvalidValue;
        }
        let mut p = tangDeviceProp { name: [0; 256], uuid: [0; 16], totalGlobalMem: dev.capacity, ints: [0; 65] };
        let name = format!("Sunrise PTPU (emulated) #{deviceId}");
        p.name[..name.len()].copy_from_slice(name.as_bytes());
        p.uuid[..8].copy_from_slice(b"TANGEMU-");
        p.uuid[8..12].copy_from_slice(&(deviceId as u32).to_le_bytes());
        p.ints[prop::WARP_SIZE] = 32;
        p.ints[prop::MAX_THREADS_PER_BLOCK] = 1024;
        p.ints[prop::MULTI_PROCESSOR_COUNT] = 8;
        p.ints[prop::ASYNC_ENGINE_COUNT] = 2;
        p.ints[prop::CAN_MAP_HOST_MEMORY] = 1;
        p.ints[prop::MAJOR] = 2;
        p.ints[prop::MINOR] = 0;
        p.ints[prop::PCI_BUS_ID] = 0x10 + deviceId;
        p.ints[prop::PCI_DEVICE_ID] = 0;
        p.ints[prop::PCI_DOMAIN_ID] = 0;
        unsafe { props.write(p) };
        tangSuccess
    }
}

export! {
    fn tangMemGetInfo(free: *mut usize, total: *mut usize) {
        let dev = tri!(with_view(|v| v.current().cloned()));
        if free.is_null() || total.is_null() {
            return tangErrorInvalidValue;
        }
        let used = dev.used.load(Ordering::Relaxed);
        unsafe {
            *free = dev.capacity.saturating_sub(used) as usize;
            *total = dev.capacity as usize;
        }
        tangSuccess
    }
}

export! {
    fn tangRuntimeGetVersion(runtimeVersion: *mut c_int) {
        tri!(out(runtimeVersion, EMU_VERSION));
        tangSuccess
    }
}

export! {
    fn tangDriverGetVersion(driverVersion: *mut c_int) {
        tri!(out(driverVersion, EMU_VERSION));
        tangSuccess
    }
}

// ---------------------------------------------------------------- peers

/// Whether devices `a` and `b` (both valid) are linked (a link up between them).
fn linked(v: &View, a: c_int, b: c_int) -> bool {
    a != b && v.links.between(a as u32, b as u32).is_some()
}

export! {
    fn tangDeviceCanAccessPeer(canAccessPeer: *mut c_int, device: c_int, peerDevice: c_int) {
        let can = tri!(with_view(|v| {
            v.device(device)?;
            v.device(peerDevice)?;
            Ok(linked(v, device, peerDevice))
        }));
        tri!(out(canAccessPeer, can as c_int));
        tangSuccess
    }
}

/// The current device, and `peer` checked as a device ordinal.
fn current_and_peer(peer: c_int) -> Result<Arc<state::Device>, tangError_t> {
    with_view(|v| {
        let dev = v.current()?.clone();
        v.device(peer)?;
        Ok(dev)
    })
}

export! {
    fn tangDeviceEnablePeerAccess(peerDevice: c_int, flags: c_uint) {
        let dev = tri!(current_and_peer(peerDevice));
        if flags != 0 {
            return tangErrorInvalidValue;
        }
        if peerDevice as u32 == dev.idx {
            return tangErrorInvalidDevice;
        }
        let mut peers = lock(&dev.peers);
        if peers.contains(&(peerDevice as u32)) {
            return tangErrorPeerAccessAlreadyEnabled;
        }
        peers.push(peerDevice as u32);
        tangSuccess
    }
}

export! {
    fn tangDeviceDisablePeerAccess(peerDevice: c_int) {
        let dev = tri!(current_and_peer(peerDevice));
        let mut peers = lock(&dev.peers);
        match peers.iter().position(|&p| p == peerDevice as u32) {
            Some(i) => {
                peers.remove(i);
                tangSuccess
            }
            None => tangErrorPeerAccessNotEnabled,
        }
    }
}

export! {
    fn tangDeviceGetP2PAttribute(value: *mut c_int, attr: c_uint, srcDevice: c_int, dstDevice: c_int) {
        let linked = tri!(with_view(|v| {
            v.device(srcDevice)?;
            v.device(dstDevice)?;
            Ok(linked(v, srcDevice, dstDevice))
        }));
        let v = match attr {
            1 => 0,
            2 => linked as c_int,
            3 | 4 => 0,
            _ => return tangErrorInvalidValue,
        };
        tri!(out(value, v));
        tangSuccess
    }
}

export! {
    #[cfg(not(feature = "minimal"))]
    fn tangDeviceGetPeerPointer(srcDevice: c_int, port: c_int, peerAddr: *mut c_void, accessAddr: *mut *mut c_void) {
        let e = emu();
        let dev = tri!(with_view(|v| v.device(srcDevice).cloned()));
        if accessAddr.is_null() || peerAddr.is_null() || !(0..crate::config::PORTS as c_int).contains(&port) {
            return tangErrorInvalidValue;
        }
        // Windows are made under this lock; the view taken after it shows every one made.
        let mut windows = lock(&e.windows);
        let v = e.view_now();
        let Some((peer, _)) = v.links.up(srcDevice as u32, port as u32) else {
            return tangErrorInvalidValue;
        };
        let Some(r) = v.region_at(peerAddr as usize) else {
            return tangErrorInvalidValue;
        };
        if r.dev != peer || !matches!(r.kind, Kind::Alloc(_) | Kind::Import(_)) {
            return tangErrorInvalidValue;
        }
        let key = (srcDevice as u32, port as u32, r.start);
        let existing = windows.get(&key).and_then(|&w| v.region_at(w)).filter(|w| {
            matches!(&w.kind, Kind::Window { target, .. } if std::ptr::eq(target.as_ptr(), Arc::as_ptr(r)))
        });
        let start = match existing {
            Some(w) => w.start,
            None => {
                let Some(start) = dev.take_va(r.va_len) else {
                    return tangErrorMemoryAllocation;
                };
                e.insert_region(Region {
                    start,
                    len: r.len,
                    va_len: r.va_len,
                    dev: dev.idx,
                    kind: Kind::Window { port: port as u32, peer, target: Arc::downgrade(r), target_start: r.start },
                });
                windows.insert(key, start);
                start
            }
        };
        unsafe { *accessAddr = (start + (peerAddr as usize - r.start)) as *mut c_void };
        tangSuccess
    }
}

// ---------------------------------------------------------------- device memory

export! {
    fn tangMalloc(pptr: *mut *mut c_void, sizeBytes: usize) {
        if pptr.is_null() {
            return tangErrorInvalidValue;
        }
        let e = emu();
        let dev = tri!(with_view(|v| v.current().cloned()));
        if sizeBytes == 0 {
            unsafe { *pptr = std::ptr::null_mut() };
            return tangSuccess;
        }
        let va_len = round_up(sizeBytes, PAGE);
        let prev = dev.used.fetch_add(va_len as u64, Ordering::Relaxed);
        if prev + va_len as u64 > dev.capacity {
            dev.used.fetch_sub(va_len as u64, Ordering::Relaxed);
            return tangErrorMemoryAllocation;
        }
        let id = e.seq.fetch_add(1, Ordering::Relaxed);
        let Ok(b) = Backing::create(id, dev.idx, sizeBytes) else {
            dev.used.fetch_sub(va_len as u64, Ordering::Relaxed);
            return tangErrorMemoryAllocation;
        };
        let Some(addr) = dev.take_va(va_len) else {
            b.destroy();
            dev.used.fetch_sub(va_len as u64, Ordering::Relaxed);
            return tangErrorMemoryAllocation;
        };
        e.insert_region(Region { start: addr, len: sizeBytes, va_len, dev: dev.idx, kind: Kind::Alloc(Arc::new(b)) });
        e.live.device_alloc.fetch_add(1, Ordering::Relaxed);
        unsafe { *pptr = addr as *mut c_void };
        tangSuccess
    }
}

export! {
    fn tangFree(ptr: *mut c_void) {
        if ptr.is_null() {
            return tangSuccess;
        }
        let e = emu();
        let addr = ptr as usize;
        let v = e.view_now();
        let r = match v.region_at(addr) {
            Some(r) if r.start == addr && matches!(r.kind, Kind::Alloc(_)) => Arc::clone(r),
            _ => return tangErrorInvalidDevicePointer,
        };
        let dev = v.devices.get(r.dev as usize).cloned();
        drop(v);
        // Implicit synchronize of the owning device.
        if let Some(dev) = &dev {
            e.sync_device(dev);
        }
        if !e.remove_region(&r) {
            return tangErrorInvalidDevicePointer; // freed concurrently
        }
        if let Kind::Alloc(b) = &r.kind {
            if b.owner_pid == mem::pid() {
                b.destroy();
            }
        }
        e.drop_windows_to(addr);
        if let Some(dev) = dev {
            dev.give_va(r.start, r.va_len);
            dev.used.fetch_sub(r.va_len as u64, Ordering::Relaxed);
        }
        e.live.device_alloc.fetch_sub(1, Ordering::Relaxed);
        tangSuccess
    }
}

export! {
    fn tangMemset(dst: *mut c_void, value: c_int, sizeBytes: usize) {
        with_view(|v| {
            tri!(v.current());
            if sizeBytes == 0 {
                return tangSuccess;
            }
            if dst.is_null() {
                return tangErrorInvalidValue;
            }
            let r = tri!(v.resolve(dst as usize, sizeBytes).map_err(not_device_is_invalid_value));
            unsafe { std::ptr::write_bytes(r.ptr, value as u8, sizeBytes) };
            let until = v.throttle(r.route, sizeBytes);
            copy_bytes(r.ptr, r.ptr, 0, until);
            tangSuccess
        })
    }
}

/// Calls that take device memory only report a pointer that is not device memory as an
/// invalid value.
fn not_device_is_invalid_value(c: tangError_t) -> tangError_t {
    if c == tangErrorInvalidDevicePointer {
        tangErrorInvalidValue
    } else {
        c
    }
}

// ---------------------------------------------------------------- copies

/// Either side of a copy: resolved device memory, or a host address used as is.
enum Side<'a> {
    Dev(Loc<'a>),
    Host(*mut u8),
}

impl Side<'_> {
    fn ptr(&self) -> *mut u8 {
        match self {
            Side::Dev(r) => r.ptr,
            Side::Host(p) => *p,
        }
    }
    fn route(&self) -> Option<(u32, u32)> {
        match self {
            Side::Dev(r) => r.route,
            Side::Host(_) => None,
        }
    }
    fn queued(&self) -> Queued {
        Queued {
            ptr: self.ptr(),
            route: self.route(),
            _keep: match self {
                Side::Dev(r) => Some(r.owned()),
                Side::Host(_) => None,
            },
        }
    }
}

/// A side of a copy queued on a stream: it owns what keeps device memory mapped until the
/// copy has run.
struct Queued {
    ptr: *mut u8,
    route: Option<(u32, u32)>,
    _keep: Option<Resolved>,
}
unsafe impl Send for Queued {}

/// Runs a queued copy on a stream thread. The link model is read from the published view at
/// that moment; the stream thread keeps no view between operations.
fn run_queued(dst: &Queued, src: &Queued, n: usize) {
    let route = dst.route.or(src.route);
    let until = route.and_then(|_| emu().view_now().throttle(route, n));
    copy_bytes(dst.ptr, src.ptr, n, until);
}

/// Checks a tangMemcpy against its kind and resolves both sides.
fn prepare_copy<'a>(
    v: &'a View,
    dst: *mut c_void,
    src: *const c_void,
    n: usize,
    kind: u32,
) -> Result<(Side<'a>, Side<'a>), tangError_t> {
    if kind > MEMCPY_D2D {
        return Err(tangErrorInvalidMemcpyDirection);
    }
    v.current()?;
    if n > 0 && (dst.is_null() || src.is_null()) {
        return Err(tangErrorInvalidValue);
    }
    let d_dev = v.is_device_ptr(dst as usize);
    let s_dev = v.is_device_ptr(src as usize);
    let (want_d, want_s) = match kind {
        MEMCPY_H2H => (false, false),
        MEMCPY_H2D => (true, false),
        MEMCPY_D2H => (false, true),
        _ => (true, true),
    };
    if d_dev != want_d || s_dev != want_s {
        return Err(tangErrorInvalidMemcpyDirection);
    }
    let side = |p: usize, dev: bool| -> Result<Side<'a>, tangError_t> {
        if dev {
            Ok(Side::Dev(v.resolve(p, n)?))
        } else {
            Ok(Side::Host(p as *mut u8))
        }
    };
    Ok((side(dst as usize, d_dev)?, side(src as usize, s_dev)?))
}

export! {
    fn tangMemcpy(dst: *mut c_void, src: *const c_void, sizeBytes: usize, kind: tangMemcpyKind) {
        with_view(|v| {
            let (d, s) = tri!(prepare_copy(v, dst, src, sizeBytes, kind));
            let until = v.throttle(d.route().or(s.route()), sizeBytes);
            copy_bytes(d.ptr(), s.ptr(), sizeBytes, until);
            tangSuccess
        })
    }
}

export! {
    fn tangMemcpyAsync(dst: *mut c_void, src: *const c_void, sizeBytes: usize, kind: tangMemcpyKind, stream: Stream_t) {
        let (st, d, s) = tri!(with_view(|v| {
            let st = emu().stream(v, stream as usize)?;
            let (d, s) = prepare_copy(v, dst, src, sizeBytes, kind)?;
            Ok((st, d.queued(), s.queued()))
        }));
        st.enqueue(Box::new(move || {
            let (d, s) = (&d, &s); // capture the whole values (they keep the memory mapped)
            run_queued(d, s, sizeBytes);
            0
        }));
        tangSuccess
    }
}

/// Destination, source, and the (device, port) link the bytes travel over.
type PeerCopy<'a> = (Loc<'a>, Loc<'a>, Option<(u32, u32)>);

/// Resolves both sides of a peer copy and picks the link it travels over.
fn prepare_peer<'a>(
    v: &'a View,
    dst: *mut c_void,
    dst_dev: c_int,
    src: *const c_void,
    src_dev: c_int,
    n: usize,
) -> Result<PeerCopy<'a>, tangError_t> {
    v.device(dst_dev)?;
    v.device(src_dev)?;
    if dst_dev == src_dev || dst.is_null() || src.is_null() {
        return Err(tangErrorInvalidValue);
    }
    let d = v
        .resolve(dst as usize, n)
        .map_err(not_device_is_invalid_value)?;
    let s = v
        .resolve(src as usize, n)
        .map_err(not_device_is_invalid_value)?;
    if d.dev != dst_dev as u32 || s.dev != src_dev as u32 {
        return Err(tangErrorInvalidValue);
    }
    let route = v
        .links
        .between(src_dev as u32, dst_dev as u32)
        .map(|p| (src_dev as u32, p));
    Ok((d, s, route))
}

/// `tangMemcpyPeer` (`v1`, which `memcpy_peer_unsupported` refuses) and `tangMemcpyPeer_v2`.
fn peer_sync(
    v1: bool,
    dst: *mut c_void,
    dst_dev: c_int,
    src: *const c_void,
    src_dev: c_int,
    n: usize,
) -> tangError_t {
    with_view(|v| {
        if v1 && v.cfg.memcpy_peer_unsupported {
            return tangErrorNotSupported;
        }
        let (d, s, route) = tri!(prepare_peer(v, dst, dst_dev, src, src_dev, n));
        let until = v.throttle(route, n);
        copy_bytes(d.ptr, s.ptr, n, until);
        tangSuccess
    })
}

fn peer_async(
    v1: bool,
    dst: *mut c_void,
    dst_dev: c_int,
    src: *const c_void,
    src_dev: c_int,
    n: usize,
    stream: Stream_t,
) -> tangError_t {
    let (st, d, s, route) = tri!(with_view(|v| {
        if v1 && v.cfg.memcpy_peer_unsupported {
            return Err(tangErrorNotSupported);
        }
        let st = emu().stream(v, stream as usize)?;
        let (d, s, route) = prepare_peer(v, dst, dst_dev, src, src_dev, n)?;
        Ok((st, d.owned(), s.owned(), route))
    }));
    st.enqueue(Box::new(move || {
        let (d, s) = (&d, &s); // capture the whole Resolved values (they keep the memory mapped)
        let until = route.and_then(|_| emu().view_now().throttle(route, n));
        copy_bytes(d.ptr, s.ptr, n, until);
        0
    }));
    tangSuccess
}

export! {
    fn tangMemcpyPeer(dst: *mut c_void, dstDevice: c_int, src: *const c_void, srcDevice: c_int, count: usize) {
        peer_sync(true, dst, dstDevice, src, srcDevice, count)
    }
}

export! {
    #[cfg(not(feature = "minimal"))]
    fn tangMemcpyPeer_v2(dst: *mut c_void, dstDevice: c_int, src: *const c_void, srcDevice: c_int, count: usize) {
        peer_sync(false, dst, dstDevice, src, srcDevice, count)
    }
}

export! {
    fn tangMemcpyPeerAsync(dst: *mut c_void, dstDevice: c_int, src: *const c_void, srcDevice: c_int, count: usize, stream: Stream_t) {
        peer_async(true, dst, dstDevice, src, srcDevice, count, stream)
    }
}

export! {
    #[cfg(not(feature = "minimal"))]
    fn tangMemcpyPeerAsync_v2(dst: *mut c_void, dstDevice: c_int, src: *const c_void, srcDevice: c_int, count: usize, stream: Stream_t) {
        peer_async(false, dst, dstDevice, src, srcDevice, count, stream)
    }
}

// ---------------------------------------------------------------- pointer attributes

export! {
    fn tangPointerGetAttributes(attributes: *mut tangPointerAttributes, ptr: *const c_void) {
        if attributes.is_null() {
            return tangErrorInvalidValue;
        }
        with_view(|v| pointer_attributes(v, attributes, ptr as usize))
    }
}

fn pointer_attributes(
    v: &View,
    attributes: *mut tangPointerAttributes,
    addr: usize,
) -> tangError_t {
    let a = if let Some(r) = v.region_at(addr) {
        if v.cfg.attributes_need_current_device && state::current_raw() != r.dev as c_int {
            return tangErrorInvalidValue;
        }
        match &r.kind {
            Kind::MappedHost(h) => tangPointerAttributes {
                type_: MEM_TYPE_HOST,
                device: r.dev as c_int,
                devicePointer: addr as *mut c_void,
                hostPointer: unsafe { h.ptr.add(addr - r.start) }.cast(),
            },
            _ => tangPointerAttributes {
                type_: MEM_TYPE_DEVICE,
                device: r.dev as c_int,
                devicePointer: addr as *mut c_void,
                hostPointer: std::ptr::null_mut(),
            },
        }
    } else if let Some(h) = v.host_alloc_at(addr) {
        let off = addr - h.ptr as usize;
        tangPointerAttributes {
            type_: MEM_TYPE_HOST,
            device: h.dev as c_int,
            devicePointer: h
                .alias
                .map(|a| (a + off) as *mut c_void)
                .unwrap_or(std::ptr::null_mut()),
            hostPointer: addr as *mut c_void,
        }
    } else {
        // Pageable (or unknown) memory: the call fails, as callers expect; the fields say
        // "unregistered".
        unsafe {
            attributes.write(tangPointerAttributes {
                type_: MEM_TYPE_UNREGISTERED,
                device: -1,
                devicePointer: std::ptr::null_mut(),
                hostPointer: std::ptr::null_mut(),
            })
        };
        return tangErrorInvalidValue;
    };
    unsafe { attributes.write(a) };
    tangSuccess
}

// ---------------------------------------------------------------- pinned host memory

fn host_alloc(pptr: *mut *mut c_void, size: usize, flags: u32) -> tangError_t {
    if pptr.is_null() {
        return tangErrorInvalidValue;
    }
    if flags
        & !(HOST_ALLOC_PORTABLE
            | HOST_ALLOC_MAPPED
            | HOST_ALLOC_WRITE_COMBINED
            | HOST_ALLOC_MAP_DEVICE_MEMORY)
        != 0
    {
        return tangErrorInvalidValue;
    }
    if flags & HOST_ALLOC_MAP_DEVICE_MEMORY != 0 {
        return tangErrorNotSupported;
    }
    let e = emu();
    let dev = tri!(with_view(|v| v.current().cloned()));
    if size == 0 {
        unsafe { *pptr = std::ptr::null_mut() };
        return tangSuccess;
    }
    let Some(p) = mem::host_map(size) else {
        return tangErrorMemoryAllocation;
    };
    let mut h = HostAlloc {
        ptr: p,
        size,
        dev: dev.idx,
        alias: None,
    };
    if flags & HOST_ALLOC_MAPPED != 0 {
        let va_len = round_up(size, PAGE);
        let Some(alias) = dev.take_va(va_len) else {
            mem::host_unmap(p, size);
            return tangErrorMemoryAllocation;
        };
        h.alias = Some(alias);
    }
    let h = Arc::new(h);
    e.update(|v| {
        if let Some(alias) = h.alias {
            let region = Region {
                start: alias,
                len: size,
                va_len: round_up(size, PAGE),
                dev: dev.idx,
                kind: Kind::MappedHost(Arc::clone(&h)),
            };
            Arc::make_mut(&mut v.regions).insert(alias, Arc::new(region));
        }
        Arc::make_mut(&mut v.hosts).insert(p as usize, h);
    });
    e.live.host_alloc.fetch_add(1, Ordering::Relaxed);
    unsafe { *pptr = p.cast() };
    tangSuccess
}

export! {
    fn tangHostAlloc(pptr: *mut *mut c_void, sizeBytes: usize, flags: c_uint) {
        host_alloc(pptr, sizeBytes, flags)
    }
}

export! {
    fn tangMallocHost(pptr: *mut *mut c_void, sizeBytes: usize) {
        host_alloc(pptr, sizeBytes, 0)
    }
}

export! {
    fn tangFreeHost(ptr: *mut c_void) {
        if ptr.is_null() {
            return tangSuccess;
        }
        let e = emu();
        let h = tri!(e.try_update(|v| {
            if !v.hosts.contains_key(&(ptr as usize)) {
                return Err(tangErrorInvalidValue);
            }
            let h = Arc::make_mut(&mut v.hosts).remove(&(ptr as usize)).expect("present");
            if let Some(alias) = h.alias {
                Arc::make_mut(&mut v.regions).remove(&alias);
            }
            Ok(h)
        }));
        if let Some(alias) = h.alias {
            if let Some(dev) = e.view_now().devices.get(h.dev as usize) {
                dev.give_va(alias, round_up(h.size, PAGE));
            }
        }
        mem::host_unmap(h.ptr, h.size);
        e.live.host_alloc.fetch_sub(1, Ordering::Relaxed);
        tangSuccess
    }
}

export! {
    fn tangHostGetDevicePointer(pDevice: *mut *mut c_void, pHost: *mut c_void, flags: c_uint) {
        if pDevice.is_null() || flags != 0 {
            return tangErrorInvalidValue;
        }
        let Some(h) = with_view(|v| v.host_alloc_at(pHost as usize).cloned()) else { return tangErrorInvalidValue };
        let Some(alias) = h.alias else { return tangErrorInvalidValue };
        unsafe { *pDevice = (alias + (pHost as usize - h.ptr as usize)) as *mut c_void };
        tangSuccess
    }
}

// ---------------------------------------------------------------- streams

fn new_stream(out_s: *mut Stream_t, flags: u32) -> tangError_t {
    if out_s.is_null() || flags & !STREAM_NON_BLOCKING != 0 {
        return tangErrorInvalidValue;
    }
    let e = emu();
    let dev = tri!(with_view(|v| v.current().map(|d| d.idx)));
    let s = Stream::new(dev);
    let h = Arc::as_ptr(&s) as usize;
    state::wr(&e.streams).insert(h, s);
    e.live.stream.fetch_add(1, Ordering::Relaxed);
    unsafe { *out_s = h as Stream_t };
    tangSuccess
}

export! {
    fn tangStreamCreate(stream: *mut Stream_t) {
        new_stream(stream, 0)
    }
}

export! {
    fn tangStreamCreateWithFlags(stream: *mut Stream_t, flags: c_uint) {
        new_stream(stream, flags)
    }
}

export! {
    fn tangStreamDestroy(stream: Stream_t) {
        let e = emu();
        let Some(s) = state::wr(&e.streams).remove(&(stream as usize)) else {
            return tangErrorInvalidResourceHandle;
        };
        s.destroy();
        if !s.idle() {
            lock(&e.draining).push(s);
        }
        e.live.stream.fetch_sub(1, Ordering::Relaxed);
        tangSuccess
    }
}

export! {
    fn tangStreamSynchronize(stream: Stream_t) {
        let e = emu();
        if (stream as usize) <= 2 {
            // The legacy default stream also waits for the device's other streams.
            let dev = tri!(with_view(|v| v.current().cloned()));
            return e.sync_device(&dev);
        }
        let s = tri!(with_view(|v| e.stream(v, stream as usize)));
        s.synchronize()
    }
}

export! {
    fn tangStreamQuery(stream: Stream_t) {
        let s = tri!(with_view(|v| emu().stream(v, stream as usize)));
        if s.idle() { tangSuccess } else { tangErrorNotReady }
    }
}

export! {
    fn tangStreamWaitEvent(stream: Stream_t, event: Event_t, flag: c_uint) {
        let e = emu();
        let s = tri!(with_view(|v| e.stream(v, stream as usize)));
        let ev = tri!(e.event(event as usize));
        if flag != 0 {
            return tangErrorInvalidValue;
        }
        let gen = ev.generation();
        if gen > 0 {
            s.enqueue(Box::new(move || {
                ev.wait_for(gen);
                0
            }));
        }
        tangSuccess
    }
}

// ---------------------------------------------------------------- events

fn new_event(out_e: *mut Event_t, flags: u32) -> tangError_t {
    if out_e.is_null() {
        return tangErrorInvalidValue;
    }
    if flags & EVENT_INTERPROCESS != 0 || flags & !(EVENT_BLOCKING_SYNC | EVENT_DISABLE_TIMING) != 0
    {
        return tangErrorInvalidValue;
    }
    let e = emu();
    let dev = tri!(with_view(|v| v.current().map(|d| d.idx)));
    let ev = Event::new(dev, flags);
    let h = Arc::as_ptr(&ev) as usize;
    state::wr(&e.events).insert(h, ev);
    e.live.event.fetch_add(1, Ordering::Relaxed);
    unsafe { *out_e = h as Event_t };
    tangSuccess
}

export! {
    fn tangEventCreate(event: *mut Event_t) {
        new_event(event, 0)
    }
}

export! {
    fn tangEventCreateWithFlags(event: *mut Event_t, flag: c_uint) {
        new_event(event, flag)
    }
}

fn record(event: Event_t, stream: Stream_t) -> tangError_t {
    let e = emu();
    let ev = tri!(e.event(event as usize));
    let s = tri!(with_view(|v| e.stream(v, stream as usize)));
    if s.dev != ev.dev {
        return tangErrorInvalidResourceHandle;
    }
    ev.record(&s);
    tangSuccess
}

export! {
    fn tangEventRecord(event: Event_t, stream: Stream_t) {
        record(event, stream)
    }
}

export! {
    fn tangEventRecordWithFlags(event: Event_t, stream: Stream_t, flags: c_uint) {
        if flags & !0x700 != 0 {
            return tangErrorInvalidValue;
        }
        record(event, stream)
    }
}

export! {
    fn tangEventQuery(event: Event_t) {
        let ev = tri!(emu().event(event as usize));
        if ev.done() { tangSuccess } else { tangErrorNotReady }
    }
}

export! {
    fn tangEventSynchronize(event: Event_t) {
        let ev = tri!(emu().event(event as usize));
        ev.synchronize();
        tangSuccess
    }
}

export! {
    fn tangEventSynchronizeWithFlags(event: Event_t, flags: c_uint) {
        let ev = tri!(emu().event(event as usize));
        if flags > 1 {
            return tangErrorInvalidValue;
        }
        ev.synchronize();
        tangSuccess
    }
}

export! {
    fn tangEventDestroy(event: Event_t) {
        let e = emu();
        // A pending recording keeps its own reference and completes later.
        if state::wr(&e.events).remove(&(event as usize)).is_none() {
            return tangErrorInvalidResourceHandle;
        }
        e.live.event.fetch_sub(1, Ordering::Relaxed);
        tangSuccess
    }
}

export! {
    fn tangEventElapsedTime(ms: *mut f32, start: Event_t, stop: Event_t) {
        let e = emu();
        let a = tri!(e.event(start as usize));
        let b = tri!(e.event(stop as usize));
        if ms.is_null() {
            return tangErrorInvalidValue;
        }
        if !a.recorded() || !b.recorded() || a.flags & EVENT_DISABLE_TIMING != 0 || b.flags & EVENT_DISABLE_TIMING != 0 {
            return tangErrorInvalidResourceHandle;
        }
        let (Some(ta), Some(tb)) = (a.time(), b.time()) else { return tangErrorNotReady };
        let v = if tb >= ta { (tb - ta).as_secs_f64() * 1e3 } else { -((ta - tb).as_secs_f64() * 1e3) };
        unsafe { *ms = v as f32 };
        tangSuccess
    }
}

// ---------------------------------------------------------------- IPC

const IPC_MAGIC: u64 = 0x5445_4950_4331_0001;

fn checksum(w: &[u64]) -> u64 {
    w.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x).wrapping_mul(0x100_0000_01b3)
    })
}

export! {
    fn tangIpcGetMemHandle(pHandle: *mut tangIpcMemHandle_t, devPtr: *mut c_void) {
        if pHandle.is_null() {
            return tangErrorInvalidValue;
        }
        with_view(|v| ipc_handle(v, pHandle, devPtr))
    }
}

fn ipc_handle(v: &View, pHandle: *mut tangIpcMemHandle_t, devPtr: *mut c_void) -> tangError_t {
    let Some(r) = v.region_at(devPtr as usize) else {
        return tangErrorInvalidValue;
    };
    let Kind::Alloc(b) = &r.kind else {
        return tangErrorInvalidValue;
    };
    if b.destroyed() {
        return tangErrorDestroyed;
    }
    // The handle names the allocation and the offset of `devPtr` in it: opening it yields
    // the address that corresponds to `devPtr` (the runtime has no call that would tell a
    // caller an allocation's base).
    let offset = (devPtr as usize - r.start) as u64;
    let mut w = [
        IPC_MAGIC,
        b.owner_pid as u64,
        b.id,
        b.size as u64,
        mem::uid() as u64,
        r.dev as u64,
        offset,
        0,
    ];
    w[7] = checksum(&w[..7]);
    let mut h = tangIpcMemHandle_t::default();
    for (dst, src) in h.reserved.iter_mut().zip(w) {
        *dst = src as _;
    }
    unsafe { pHandle.write(h) };
    tangSuccess
}

export! {
    fn tangIpcOpenMemHandle(devPtr: *mut *mut c_void, handle: tangIpcMemHandle_t, flags: c_uint) {
        if devPtr.is_null() || flags & !1 != 0 {
            return tangErrorInvalidValue;
        }
        // `unsigned long` is 64-bit on LP64, the only ABI this emulator targets.
        #[allow(clippy::unnecessary_cast)]
        let w: Vec<u64> = handle.reserved.iter().map(|&x| x as u64).collect();
        if w[0] != IPC_MAGIC || w[7] != checksum(&w[..7]) || w[4] != mem::uid() as u64 {
            return tangErrorInvalidValue;
        }
        let (owner, id, size, offset) = (w[1] as u32, w[2], w[3] as usize, w[6] as usize);
        if offset >= size {
            return tangErrorInvalidValue;
        }
        let e = emu();
        let dev = tri!(with_view(|v| v.current().cloned()));
        let key = (owner, id, dev.idx);
        let mut imports = lock(&e.imports);
        if let Some((addr, refs)) = imports.get_mut(&key) {
            // Still valid? A destroyed allocation is not handed out again. (Mappings are made
            // under the lock held here; the view taken now shows every one.)
            if let Some(r) = e.view_now().region_at(*addr) {
                if let Kind::Import(b) = &r.kind {
                    if b.destroyed() {
                        return tangErrorDestroyed;
                    }
                }
            }
            *refs += 1;
            e.live.ipc_open.fetch_add(1, Ordering::Relaxed);
            unsafe { *devPtr = (*addr + offset) as *mut c_void };
            return tangSuccess;
        }
        let b = match Backing::open(owner, id, size) {
            Ok(b) => b,
            Err(true) => return tangErrorDestroyed,
            Err(false) => return tangErrorInvalidValue,
        };
        let va_len = round_up(size, PAGE);
        let Some(addr) = dev.take_va(va_len) else { return tangErrorMemoryAllocation };
        e.insert_region(Region { start: addr, len: size, va_len, dev: dev.idx, kind: Kind::Import(Arc::new(b)) });
        imports.insert(key, (addr, 1));
        e.live.ipc_open.fetch_add(1, Ordering::Relaxed);
        unsafe { *devPtr = (addr + offset) as *mut c_void };
        tangSuccess
    }
}

export! {
    fn tangIpcCloseMemHandle(devPtr: *mut c_void) {
        let e = emu();
        let addr = devPtr as usize;
        // Mappings are made and removed under this lock; the view taken after it is current.
        let mut imports = lock(&e.imports);
        let v = e.view_now();
        let Some(r) = v.region_at(addr) else { return tangErrorInvalidValue };
        let Kind::Import(b) = &r.kind else { return tangErrorInvalidValue };
        let key = (b.owner_pid, b.id, r.dev);
        let Some((_, refs)) = imports.get_mut(&key) else { return tangErrorInvalidValue };
        *refs -= 1;
        e.live.ipc_open.fetch_sub(1, Ordering::Relaxed);
        if *refs == 0 {
            imports.remove(&key);
            e.remove_region(r);
            e.drop_windows_to(r.start);
            if let Some(dev) = v.devices.get(r.dev as usize) {
                dev.give_va(r.start, r.va_len);
            }
        }
        tangSuccess
    }
}

// ---------------------------------------------------------------- errors

// These two read the per-thread slot, so they bypass `export!` (which would record their
// result as a new last error). They still count, cost and honour faults.
#[no_mangle]
pub extern "C" fn tangGetLastError() -> tangError_t {
    enter!(tangGetLastError);
    if let Some(code) = crate::faults::check("tangGetLastError") {
        return code;
    }
    last_error(true)
}

#[no_mangle]
pub extern "C" fn tangPeekAtLastError() -> tangError_t {
    enter!(tangPeekAtLastError);
    if let Some(code) = crate::faults::check("tangPeekAtLastError") {
        return code;
    }
    last_error(false)
}

#[no_mangle]
pub extern "C" fn tangGetErrorName(error: tangError_t) -> *const c_char {
    enter!(tangGetErrorName);
    name_ptr(error)
}

#[no_mangle]
pub extern "C" fn tangGetErrorString(error: tangError_t) -> *const c_char {
    enter!(tangGetErrorString);
    string_ptr(error)
}
