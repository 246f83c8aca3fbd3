//! The remote IPC cache of one transport instance.
//!
//! Entries are keyed by segment, then by remote base address, and each remembers the 64
//! handle bytes it was opened from: a lookup that returns a different handle at the same base
//! (the peer re-registered) opens the new one and retires the old mapping, which is closed
//! (`tangIpcCloseMemHandle`) once the last copy using it finishes. The host is asked only on
//! a miss or a refresh, never per request.

use super::device::DeviceGuard;
use super::{code, is_device_location, parse_location, Error, Host, RemoteBuffer, Result};
use crate::tang::{
    parse_ipc_handle, IpcHandle, Runtime, IPC_LAZY_ENABLE_PEER_ACCESS, MEMORY_TYPE_DEVICE,
};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::sync::Arc;

/// One opened remote buffer.
pub struct Mapping {
    pub segment: u64,
    pub base: u64,
    pub length: u64,
    pub handle: IpcHandle,
    /// The local address the handle was opened at.
    pub ptr: u64,
    /// The local device ordinal that owns the memory.
    pub device: i32,
    rt: Arc<dyn Runtime>,
}

impl Mapping {
    /// The local address for remote address `addr` (inside this buffer).
    pub fn translate(&self, addr: u64) -> u64 {
        self.ptr + (addr - self.base)
    }

    /// Whether `[addr, addr + len)` (remote addresses) lies inside this buffer.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.base
            && addr
                .checked_add(len)
                .is_some_and(|e| e <= self.base + self.length)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Err(e) = self.rt.ipc_close(self.ptr) {
            log::warn!(
                "closing IPC mapping of segment {} base {:#x}: {e}",
                self.segment,
                self.base
            );
        }
    }
}

/// Every cached mapping, sorted by (segment, base).
pub type Map = Vec<Arc<Mapping>>;

/// The cache. Lookups load the current map without a lock; the map is replaced
/// copy-on-write when a mapping is opened or dropped (misses and invalidations only).
pub struct RemoteCache {
    map: ArcSwap<Map>,
    /// Serialises opening handles and every change of the map.
    open_lock: Mutex<()>,
}

struct Resolved {
    buf: RemoteBuffer,
    handle: IpcHandle,
    device: i32,
}

impl Default for RemoteCache {
    fn default() -> Self {
        RemoteCache {
            map: ArcSwap::default(),
            open_lock: Mutex::new(()),
        }
    }
}

impl RemoteCache {
    /// The cached mapping holding `[addr, addr + len)` of segment `seg`.
    pub fn find(&self, seg: u64, addr: u64, len: u64) -> Option<Arc<Mapping>> {
        Self::find_in(&self.map.load(), seg, addr, len).cloned()
    }

    /// The cache's current contents; the mappings in it stay open while this is held.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Map>> {
        self.map.load()
    }

    /// The mapping of `maps` (a [`RemoteCache::snapshot`]) holding `[addr, addr + len)` of
    /// segment `seg`.
    pub fn find_in(maps: &[Arc<Mapping>], seg: u64, addr: u64, len: u64) -> Option<&Arc<Mapping>> {
        let i = maps.partition_point(|x| (x.segment, x.base) <= (seg, addr));
        let mp = maps[..i].last()?;
        (mp.segment == seg && mp.contains(addr, len)).then_some(mp)
    }

    /// Replaces the map with `f` applied to a copy of it (caller holds `open_lock`).
    fn update<T>(&self, f: impl FnOnce(&mut Map) -> T) -> T {
        let mut next = Map::clone(&self.map.load());
        let out = f(&mut next);
        self.map.store(Arc::new(next));
        out
    }

    /// Drops every mapping of `seg` (closed when no copy uses them any more).
    pub fn invalidate_segment(&self, seg: u64) -> usize {
        let _g = self.open_lock.lock();
        if !self.map.load().iter().any(|m| m.segment == seg) {
            return 0;
        }
        self.update(|m| {
            let before = m.len();
            m.retain(|x| x.segment != seg);
            before - m.len()
        })
    }

    /// Drops everything.
    pub fn clear(&self) {
        let _g = self.open_lock.lock();
        self.map.store(Arc::default());
    }

    fn ask(
        &self,
        host: &dyn Host,
        device_count: i32,
        seg: u64,
        addr: u64,
        len: u64,
        refresh: bool,
    ) -> std::result::Result<Resolved, (bool, Error)> {
        let buf = host
            .lookup_remote_buffer(seg, addr, len, refresh)
            .map_err(|e| {
                let retry = e.code == code::NEEDS_REFRESH_CACHE
                    || e.code == code::ADDRESS_NOT_REGISTERED
                    || e.code == code::INVALID_ENTRY;
                (
                    retry,
                    Error::new(
                        code::ADDRESS_NOT_REGISTERED,
                        format!(
                            "segment {seg}: no registered buffer holds [{addr:#x}, +{len}): {}",
                            e.msg
                        ),
                    ),
                )
            })?;
        if let Some(local) = host.local_machine_id().filter(|s| !s.is_empty()) {
            if !buf.machine_id.is_empty() && buf.machine_id != local {
                return Err((
                    false,
                    Error::invalid(format!(
                        "segment {seg}: buffer {:#x} is on machine {:?}, this is {:?}; \
                         sunrise_link copies only within one machine",
                        buf.base, buf.machine_id, local
                    )),
                ));
            }
        }
        let inside = addr >= buf.base
            && addr
                .checked_add(len)
                .zip(buf.base.checked_add(buf.length))
                .is_some_and(|(e, be)| e <= be);
        if !inside {
            return Err((
                true,
                Error::new(
                    code::ADDRESS_NOT_REGISTERED,
                    format!(
                        "segment {seg}: [{addr:#x}, +{len}) is not inside buffer [{:#x}, +{})",
                        buf.base, buf.length
                    ),
                ),
            ));
        }
        let (ty, idx) = parse_location(&buf.location);
        if !is_device_location(ty) {
            return Err((
                false,
                Error::invalid(format!(
                    "segment {seg}: buffer {:#x} at location {:?} is not Tang device memory; \
                     host buffers are not reachable over sunrise_link",
                    buf.base, buf.location
                )),
            ));
        }
        if idx < 0 || idx >= device_count {
            return Err((
                false,
                Error::new(
                    code::DEVICE_NOT_FOUND,
                    format!(
                        "segment {seg}: buffer {:#x} is on {:?}, but this process sees {} devices",
                        buf.base, buf.location, device_count
                    ),
                ),
            ));
        }
        let handle = parse_ipc_handle(&buf.shm_path).map_err(|m| {
            (
                true,
                Error::new(
                    code::INVALID_ENTRY,
                    format!("segment {seg}: buffer {:#x}: {m}", buf.base),
                ),
            )
        })?;
        Ok(Resolved {
            buf,
            handle,
            device: idx,
        })
    }

    /// Returns the mapping holding `[addr, addr + len)` of segment `seg`, opening it if
    /// needed. With `refresh` the cache is bypassed and the host refreshes its copy.
    #[allow(clippy::too_many_arguments)]
    pub fn resolve(
        &self,
        rt: &Arc<dyn Runtime>,
        host: &dyn Host,
        devices: &mut DeviceGuard<'_>,
        device_count: i32,
        seg: u64,
        addr: u64,
        len: u64,
        refresh: bool,
    ) -> Result<Arc<Mapping>> {
        if !refresh {
            if let Some(m) = self.find(seg, addr, len) {
                return Ok(m);
            }
        }
        let r = match self.ask(host, device_count, seg, addr, len, refresh) {
            Ok(r) => r,
            Err((true, _)) if !refresh => self
                .ask(host, device_count, seg, addr, len, true)
                .map_err(|(_, e)| e)?,
            Err((_, e)) => return Err(e),
        };
        let _g = self.open_lock.lock();
        if let Some(m) = self.find(seg, addr, len) {
            if m.handle == r.handle && m.base == r.buf.base && m.length >= r.buf.length {
                return Ok(m);
            }
        }
        devices.ensure(r.device)?;
        let ptr = rt
            .ipc_open(&r.handle, IPC_LAZY_ENABLE_PEER_ACCESS)
            .map_err(|e| {
                Error::runtime(
                    &e,
                    format!(
                        "opening the IPC handle of segment {seg} buffer {:#x} on device {}",
                        r.buf.base, r.device
                    ),
                )
            })?;
        // The opened memory's owner as this process numbers devices (slow path only).
        let device = match rt.pointer_attributes(ptr) {
            Ok(a) if a.memory_type == MEMORY_TYPE_DEVICE && a.device >= 0 => a.device,
            _ => r.device,
        };
        let m = Arc::new(Mapping {
            segment: seg,
            base: r.buf.base,
            length: r.buf.length,
            handle: r.handle,
            ptr,
            device,
            rt: rt.clone(),
        });
        let end = r.buf.base.saturating_add(r.buf.length);
        let inserted = m.clone();
        // Mappings this buffer overlaps are stale (the peer re-registered): they leave the
        // cache and close once the last copy through them ends.
        let base = r.buf.base;
        let _stale: Vec<Arc<Mapping>> = self.update(move |g| {
            let overlaps = |o: &Mapping| {
                o.segment == seg && o.base < end && o.base.saturating_add(o.length) > base
            };
            let old: Vec<Arc<Mapping>> = g.iter().filter(|o| overlaps(o)).cloned().collect();
            g.retain(|o| !overlaps(o));
            let at = g.partition_point(|x| (x.segment, x.base) < (seg, base));
            g.insert(at, inserted);
            old
        });
        Ok(m)
    }
}
