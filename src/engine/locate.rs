//! Where memory lives: which device owns a pointer, and what a local range of a request is.
//!
//! The one place that asks the runtime who owns a pointer ([`owner`]); registration, the copy
//! path, the remote cache and the device plugin all go through it.

use super::device::DeviceGuard;
use super::registry::{Region, Registry};
use super::{code, Error, Result};
use crate::tang::{PointerInfo, MEMORY_TYPE_DEVICE};

/// Where one side of a copy lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mem {
    /// `bounded`: the range is known to lie in one buffer (registered, or a peer's published
    /// buffer); else only the runtime's check of the whole range in one call bounds it.
    Device {
        dev: i32,
        addr: u64,
        bounded: bool,
    },
    Host {
        addr: u64,
    },
}

/// What the runtime says about `addr`: asked with the current device as it is, then (the
/// query may need the owner current) with each device current in turn. `None` when no
/// device claims it (pageable or unknown memory).
pub fn owner(dg: &mut DeviceGuard<'_>, device_count: i32, addr: u64) -> Option<PointerInfo> {
    let rt = dg.runtime();
    if let Ok(a) = rt.pointer_attributes(addr) {
        return Some(a);
    }
    (0..device_count).find_map(|d| {
        dg.ensure(d).ok()?;
        rt.pointer_attributes(addr).ok()
    })
}

/// The device owning `addr` when it is device memory (see [`owner`]).
pub fn owning_device(dg: &mut DeviceGuard<'_>, device_count: i32, addr: u64) -> Option<i32> {
    owner(dg, device_count, addr)
        .filter(|a| a.memory_type == MEMORY_TYPE_DEVICE && a.device >= 0)
        .map(|a| a.device)
}

/// A local range of a request, located.
#[derive(Debug, Clone, Copy)]
pub struct Local {
    pub mem: Mem,
    /// The registered buffer holding the range, if it is registered.
    pub region: Option<Region>,
}

impl Local {
    /// A range inside the registered buffer `r`.
    pub fn registered(r: Region, addr: u64) -> Local {
        let mem = if r.device >= 0 {
            Mem::Device {
                dev: r.device,
                addr,
                bounded: true,
            }
        } else {
            Mem::Host {
                addr: addr.wrapping_add(r.host_delta),
            }
        };
        Local {
            mem,
            region: Some(r),
        }
    }
}

/// Finds where a local range lives: the registry first (no runtime call), else the runtime's
/// pointer attributes, else pageable host memory. A range that starts in a registered
/// buffer must end in it. Unregistered device memory is checked by the runtime against its
/// allocation; unregistered host memory must be mapped with the access the copy needs
/// (`write` for a destination), so a stale or garbage pointer fails the task instead of
/// faulting the process.
pub fn locate(
    registry: &Registry,
    dg: &mut DeviceGuard<'_>,
    device_count: i32,
    addr: u64,
    len: u64,
    write: bool,
) -> Result<Local> {
    if let Some(r) = registry.lookup(addr, len) {
        return Ok(Local::registered(r, addr));
    }
    let unregistered = |what: &str| {
        Error::new(
            code::ADDRESS_NOT_REGISTERED,
            format!("local range [{addr:#x}, +{len}) {what}"),
        )
    };
    if registry.lookup(addr, 1).is_some() {
        return Err(unregistered("runs past the end of its registered buffer"));
    }
    let host = match owner(dg, device_count, addr) {
        Some(a) if a.memory_type == MEMORY_TYPE_DEVICE && a.device >= 0 => {
            return Ok(Local {
                mem: Mem::Device {
                    dev: a.device,
                    addr,
                    bounded: false,
                },
                region: None,
            })
        }
        // Mapped pinned host memory: use the host alias, copied with host kinds.
        Some(a) if a.host_pointer != 0 => a.host_pointer,
        _ => addr,
    };
    if host_range_mapped(host, len, write) {
        return Ok(Local {
            mem: Mem::Host { addr: host },
            region: None,
        });
    }
    Err(unregistered(if write {
        "is not registered, and not writable memory of this process"
    } else {
        "is not registered, and not readable memory of this process"
    }))
}

/// Whether `[addr, addr + len)` lies in mappings of this process that allow reading (and
/// writing, with `write`), per `/proc/self/maps`. Only for unregistered host memory.
fn host_range_mapped(addr: u64, len: u64, write: bool) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return false;
    };
    let mut cur = addr;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        if b <= cur {
            continue;
        }
        let p = perms.as_bytes();
        if a > cur || p.first() != Some(&b'r') || (write && p.get(1) != Some(&b'w')) {
            return false;
        }
        cur = b;
        if cur >= end {
            return true;
        }
    }
    false
}
