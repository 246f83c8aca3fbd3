//! Registered local memory: an ordered map from base address to region, so a lookup is
//! O(log n) and needs no runtime call.

use std::collections::BTreeMap;
use std::sync::RwLock;

/// How far back a lookup walks when regions overlap (nested registrations).
const OVERLAP_WALK: usize = 8;

/// One registered local buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub length: u64,
    pub location: String,
    /// Device ordinal for device memory, −1 for host memory.
    pub device: i32,
    /// What was written into `shm_path` (empty for host memory).
    pub shm_path: String,
    /// For host memory registered through a device-mapped alias (`tangHostAlloc` with the
    /// Mapped flag): host pointer = address + delta (wrapping). 0 otherwise.
    pub host_delta: u64,
}

/// Where a registered address lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub device: i32,
    pub host_delta: u64,
}

/// The registry of one transport instance.
#[derive(Default)]
pub struct Registry {
    map: RwLock<BTreeMap<u64, Region>>,
}

impl Registry {
    /// Adds (or replaces, at the same base) a region.
    pub fn add(&self, r: Region) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(r.base, r);
    }

    /// Removes the region at `base`; returns it.
    pub fn remove(&self, base: u64) -> Option<Region> {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&base)
    }

    /// Finds the region containing `[addr, addr + len)`.
    pub fn lookup(&self, addr: u64, len: u64) -> Option<Hit> {
        let end = addr.checked_add(len)?;
        let m = self.map.read().unwrap_or_else(|e| e.into_inner());
        m.range(..=addr)
            .rev()
            .take(OVERLAP_WALK)
            .find(|(_, r)| r.base.checked_add(r.length).is_some_and(|e| e >= end))
            .map(|(_, r)| Hit {
                device: r.device,
                host_delta: r.host_delta,
            })
    }

    /// The region registered at exactly `base`.
    pub fn get(&self, base: u64) -> Option<Region> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&base)
            .cloned()
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no region is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(base: u64, length: u64, device: i32) -> Region {
        Region {
            base,
            length,
            location: format!("cuda:{device}"),
            device,
            shm_path: String::new(),
            host_delta: 0,
        }
    }

    #[test]
    fn lookup_finds_containing_region_only() {
        let r = Registry::default();
        r.add(reg(0x1000, 0x1000, 0));
        r.add(reg(0x4000, 0x100, 1));
        assert_eq!(
            r.lookup(0x1000, 0x1000),
            Some(Hit {
                device: 0,
                host_delta: 0
            })
        );
        assert_eq!(
            r.lookup(0x1800, 0x10),
            Some(Hit {
                device: 0,
                host_delta: 0
            })
        );
        assert_eq!(r.lookup(0x1800, 0x1000), None);
        assert_eq!(r.lookup(0x0fff, 1), None);
        assert_eq!(
            r.lookup(0x40ff, 1),
            Some(Hit {
                device: 1,
                host_delta: 0
            })
        );
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
        assert_eq!(
            r.lookup(0x2000, 0x8000),
            Some(Hit {
                device: 2,
                host_delta: 0
            })
        );
    }

    #[test]
    fn many_regions() {
        let r = Registry::default();
        for i in 0..10_000u64 {
            r.add(reg(i * 0x1000, 0x800, (i % 40) as i32));
        }
        assert_eq!(
            r.lookup(1234 * 0x1000 + 4, 8),
            Some(Hit {
                device: 1234 % 40,
                host_delta: 0
            })
        );
        assert_eq!(r.lookup(1234 * 0x1000 + 0x900, 8), None);
        assert_eq!(r.len(), 10_000);
    }
}
