//! Registered local memory: an array of regions sorted by base address, so a lookup is a
//! binary search (O(log n), no runtime call). The array is replaced copy-on-write when a
//! buffer is added or removed (rare), so a lookup on the copy path takes no lock and writes
//! no shared cache line.
//!
//! Also the process-wide index of device memory the library knows about (buffers registered
//! with any transport, memory allocated through the device plugin), which answers TENT's
//! per-request "what memory is this" question without a runtime call.

use super::snapshot::Snapshot;
use std::sync::OnceLock;

/// How far back a lookup walks when regions overlap (nested registrations).
const OVERLAP_WALK: usize = 8;

/// One registered local buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub length: u64,
    /// Device ordinal for device memory, −1 for host memory.
    pub device: i32,
    /// For host memory registered through a device-mapped alias (`tangHostAlloc` with the
    /// Mapped flag): host pointer = address + delta (wrapping). 0 otherwise.
    pub host_delta: u64,
}

impl Region {
    /// Whether `[addr, addr + len)` lies inside this region.
    pub fn holds(&self, addr: u64, len: u64) -> bool {
        addr >= self.base
            && addr
                .checked_add(len)
                .zip(self.base.checked_add(self.length))
                .is_some_and(|(e, re)| e <= re)
    }
}

/// Regions sorted by base address, at most one per base.
type Map = Vec<Region>;

fn find(m: &Map, addr: u64, len: u64) -> Option<Region> {
    addr.checked_add(len)?;
    let end = m.partition_point(|r| r.base <= addr);
    m[..end]
        .iter()
        .rev()
        .take(OVERLAP_WALK)
        .find(|r| r.holds(addr, len))
        .copied()
}

/// Inserts `r`, replacing the region at the same base; returns the one replaced.
fn insert(m: &mut Map, r: Region) -> Option<Region> {
    match m.binary_search_by_key(&r.base, |x| x.base) {
        Ok(i) => Some(std::mem::replace(&mut m[i], r)),
        Err(i) => {
            m.insert(i, r);
            None
        }
    }
}

fn remove(m: &mut Map, base: u64) -> Option<Region> {
    let i = m.binary_search_by_key(&base, |x| x.base).ok()?;
    Some(m.remove(i))
}

/// The registry of one transport instance.
#[derive(Default)]
pub struct Registry {
    map: Snapshot<Map>,
}

impl Registry {
    fn update<T>(&self, f: impl FnOnce(&mut Map) -> T) -> T {
        self.map.update(f)
    }

    /// Adds (or replaces, at the same base) a region.
    pub fn add(&self, r: Region) {
        let old = self.update(|m| insert(m, r));
        if let Some(o) = old {
            known_remove(&o);
        }
        known_add(&r);
    }

    /// Removes the region at `base`; returns it.
    pub fn remove(&self, base: u64) -> Option<Region> {
        let r = self.update(|m| remove(m, base))?;
        known_remove(&r);
        Some(r)
    }

    /// Removes every region (uninstall).
    pub fn clear(&self) {
        let old = self.update(std::mem::take);
        for r in &old {
            known_remove(r);
        }
    }

    /// The region containing `[addr, addr + len)`.
    pub fn lookup(&self, addr: u64, len: u64) -> Option<Region> {
        self.map.read(|m| find(m, addr, len))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One piece of device memory the library knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    base: u64,
    length: u64,
    device: i32,
    /// How many registrations or allocations name it.
    count: u32,
}

/// Sorted by (base, length).
type KnownMap = Vec<Known>;

static KNOWN: OnceLock<Snapshot<KnownMap>> = OnceLock::new();

fn known() -> &'static Snapshot<KnownMap> {
    KNOWN.get_or_init(Snapshot::default)
}

fn known_update(f: impl FnOnce(&mut KnownMap)) {
    known().update(f)
}

fn known_add(r: &Region) {
    known_device_add(r.base, r.length, r.device);
}

fn known_remove(r: &Region) {
    known_device_remove(r.base, r.length);
}

/// Records memory `[base, base + length)` of `device` (−1: host memory) in the process-wide
/// index.
pub fn known_device_add(base: u64, length: u64, device: i32) {
    known_update(
        |m| match m.binary_search_by_key(&(base, length), |k| (k.base, k.length)) {
            Ok(i) => {
                m[i].device = device;
                m[i].count += 1;
            }
            Err(i) => m.insert(
                i,
                Known {
                    base,
                    length,
                    device,
                    count: 1,
                },
            ),
        },
    );
}

/// Drops one record of `[base, base + length)` from the process-wide index.
pub fn known_device_remove(base: u64, length: u64) {
    known_update(|m| {
        if let Ok(i) = m.binary_search_by_key(&(base, length), |k| (k.base, k.length)) {
            m[i].count -= 1;
            if m[i].count == 0 {
                m.remove(i);
            }
        }
    });
}

/// The device holding `[addr, addr + len)` (−1: host memory), if the library knows the memory
/// (registered with a transport, or allocated through the device plugin). No runtime call,
/// no lock.
pub fn known_device(addr: u64, len: u64) -> Option<i32> {
    let end = addr.checked_add(len.max(1))?;
    known().read(|m| {
        let upto = m.partition_point(|k| k.base <= addr);
        m[..upto]
            .iter()
            .rev()
            .take(OVERLAP_WALK)
            .find(|k| k.base.checked_add(k.length).is_some_and(|e| e >= end))
            .map(|k| k.device)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(base: u64, length: u64, device: i32) -> Region {
        Region {
            base,
            length,
            device,
            host_delta: 0,
        }
    }

    #[test]
    fn lookup_finds_containing_region_only() {
        let r = Registry::default();
        r.add(reg(0x1000, 0x1000, 0));
        r.add(reg(0x4000, 0x100, 1));
        assert_eq!(r.lookup(0x1000, 0x1000), Some(reg(0x1000, 0x1000, 0)));
        assert_eq!(r.lookup(0x1800, 0x10).map(|h| h.device), Some(0));
        assert_eq!(r.lookup(0x1800, 0x1000), None);
        assert_eq!(r.lookup(0x0fff, 1), None);
        assert_eq!(r.lookup(0x40ff, 1).map(|h| h.device), Some(1));
        assert_eq!(r.lookup(0x4100, 1), None);
        assert_eq!(r.lookup(u64::MAX, 2), None);
        assert!(r.remove(0x4000).is_some());
        assert_eq!(r.lookup(0x4000, 1), None);
    }

    #[test]
    fn nested_registration_is_found() {
        let r = Registry::default();
        r.add(reg(0x1000, 0x10000, 2));
        r.add(reg(0x2000, 0x100, 2));
        assert_eq!(r.lookup(0x2000, 0x8000), Some(reg(0x1000, 0x10000, 2)));
    }

    #[test]
    fn many_regions() {
        let r = Registry::default();
        for i in 0..10_000u64 {
            r.add(reg(i * 0x1000, 0x800, (i % 40) as i32));
        }
        assert_eq!(
            r.lookup(1234 * 0x1000 + 4, 8).map(|h| h.device),
            Some(1234 % 40)
        );
        assert_eq!(r.lookup(1234 * 0x1000 + 0x900, 8), None);
        assert_eq!(
            r.lookup(9_999 * 0x1000, 0x800).map(|h| h.device),
            Some(9_999 % 40)
        );
    }

    #[test]
    fn the_process_index_follows_registrations_of_every_registry() {
        // Addresses of their own, so other tests running meanwhile do not interfere.
        let base = 0x5a5a_0000_0000u64;
        let a = Registry::default();
        let b = Registry::default();
        assert_eq!(known_device(base + 8, 8), None);
        a.add(reg(base, 0x1000, 3));
        b.add(reg(base, 0x1000, 3));
        a.add(reg(base + 0x10000, 0x1000, -1));
        assert_eq!(known_device(base + 8, 8), Some(3));
        assert_eq!(known_device(base + 0xff8, 16), None, "runs past the end");
        assert_eq!(known_device(base + 0x10000, 1), Some(-1), "host memory");
        a.remove(base);
        assert_eq!(known_device(base, 1), Some(3), "still registered with b");
        drop(b);
        assert_eq!(
            known_device(base, 1),
            None,
            "a dropped registry forgets its buffers"
        );
        known_device_add(base, 0x100, 1);
        assert_eq!(known_device(base, 0x100), Some(1));
        known_device_remove(base, 0x100);
        assert_eq!(known_device(base, 1), None);
    }
}
