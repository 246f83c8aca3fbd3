//! Emulator-only exports: `tangEmu*` control functions (declared in `tang_emu.h`), the hooks the
//! emulated PTML forwards to, and the exit hook (counter dump, removal of backing files).

use crate::config::{Config, PORTS};
use crate::counters;
use crate::errors::*;
use crate::state::{emu, try_emu, Kind};
use std::ffi::{c_char, c_int, c_longlong, c_uint, c_ulonglong, CStr};
use std::io::Write;
use std::sync::atomic::Ordering;

fn guard<T>(default: T, f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(default)
}

unsafe fn text<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        None
    } else {
        CStr::from_ptr(p).to_str().ok()
    }
}

/// Applies a TOML configuration at run time. 0 = applied; `tangErrorInvalidValue` = the text
/// does not parse or is invalid (message on stderr); `tangErrorNotPermitted` = it changes the
/// device count or capacity while memory, streams or events are live.
#[no_mangle]
pub unsafe extern "C" fn tangEmuConfigure(toml_text: *const c_char) -> c_int {
    guard(tangErrorUnknown as c_int, || {
        let Some(t) = text(toml_text) else {
            return tangErrorInvalidValue as c_int;
        };
        let applied = emu().reconfigure(|cur| {
            let mut next: Config = cur.clone();
            match next.apply_toml(t, false) {
                Ok(()) => Ok(next),
                Err(msg) => {
                    eprintln!("tang-emu: tangEmuConfigure: {msg}");
                    Err(tangErrorInvalidValue)
                }
            }
        });
        match applied {
            Ok(()) => 0,
            Err(c) => c as c_int,
        }
    })
}

/// Removes every injected fault: named-function faults, "tangMemcpyPeer unsupported", removed
/// devices and down links.
#[no_mangle]
pub extern "C" fn tangEmuClearFaults() {
    guard((), || {
        let _ = emu().reconfigure(|cur| {
            let mut next: Config = cur.clone();
            next.faults.clear();
            next.memcpy_peer_unsupported = false;
            next.removed_devices.clear();
            next.down_links.clear();
            next.attributes_need_current_device = false;
            Ok(next)
        });
    })
}

#[no_mangle]
pub unsafe extern "C" fn tangEmuCallCount(function_name: *const c_char) -> c_ulonglong {
    guard(0, || match text(function_name) {
        Some(n) => counters::get(n),
        None => 0,
    })
}

#[no_mangle]
pub extern "C" fn tangEmuResetCounters() {
    guard((), counters::reset)
}

#[no_mangle]
pub extern "C" fn tangEmuTotalCalls() -> c_ulonglong {
    guard(0, counters::total)
}

/// Live objects of a kind: "device_alloc", "host_alloc", "stream", "event", "ipc_open";
/// -1 for an unknown kind.
#[no_mangle]
pub unsafe extern "C" fn tangEmuLiveCount(kind: *const c_char) -> c_longlong {
    guard(-1, || {
        let l = &emu().live;
        let c = match text(kind) {
            Some("device_alloc") => &l.device_alloc,
            Some("host_alloc") => &l.host_alloc,
            Some("stream") => &l.stream,
            Some("event") => &l.event,
            Some("ipc_open") => &l.ipc_open,
            _ => return -1,
        };
        c.load(Ordering::Relaxed)
    })
}

/// Writes the call counters to `TANG_EMU_COUNTS_DUMP` (see README), if set.
#[no_mangle]
pub extern "C" fn tangEmuDumpCounters() {
    guard((), dump_counters)
}

fn dump_counters() {
    let Ok(dest) = std::env::var("TANG_EMU_COUNTS_DUMP") else {
        return;
    };
    if dest.is_empty() {
        return;
    }
    let mut s = String::new();
    for (name, n) in counters::snapshot() {
        s.push_str(&format!("{name} {n}\n"));
    }
    s.push_str(&format!("total {}\n", counters::total()));
    if dest == "stderr" {
        let _ = std::io::stderr().write_all(s.as_bytes());
    } else {
        let path = dest.replace("%p", &crate::mem::pid().to_string());
        let _ = std::fs::write(path, s);
    }
}

// ------------------------------------------------------------ hooks for the emulated PTML

/// Counts a PTML call under its name and returns the code an injected fault demands (0 = none).
#[no_mangle]
pub unsafe extern "C" fn tangEmuPtmlEnter(function_name: *const c_char) -> c_uint {
    guard(0, || {
        let Some(n) = text(function_name) else {
            return 0;
        };
        counters::hit_external(n);
        crate::state::ensure_config();
        crate::faults::check(n).unwrap_or(0)
    })
}

#[no_mangle]
pub extern "C" fn tangEmuPtmlDeviceCount() -> c_int {
    guard(0, || emu().view_now().device_count() as c_int)
}

/// Fills `out` with 10 entries of 10 bytes (`ptPhyTopo_t`), entry i describing port i of
/// `device`. Returns 0, or -1 for an unknown device, -2 for a removed one.
#[no_mangle]
pub unsafe extern "C" fn tangEmuPtmlPhytopo(device: c_int, out: *mut u8) -> c_int {
    guard(-1, || {
        let v = emu().view_now();
        if device < 0 || device as u32 >= v.device_count() || out.is_null() {
            return -1;
        }
        let cfg = &v.cfg;
        if cfg.removed_devices.contains(&(device as u32)) {
            return -2;
        }
        for port in 0..PORTS {
            let mut entry = [0u8; 10];
            entry[0] = device as u8;
            entry[1] = port as u8;
            if let Some((rd_, rp)) = cfg.peer_of(device as u32, port) {
                entry[2] = rd_ as u8;
                entry[3] = rp as u8;
                entry[4] = cfg.link_up(device as u32, port).is_some() as u8;
                let m = cfg.model(device as u32, port);
                let gbps = m
                    .bandwidth
                    .map(|b| (b / 1e9).clamp(1.0, 255.0) as u8)
                    .unwrap_or(0);
                entry[6] = gbps;
                entry[7] = gbps * entry[4];
                entry[8] = gbps;
                entry[9] = gbps * entry[4];
            } else {
                entry[2] = 0xff;
                entry[3] = 0xff;
            }
            std::ptr::copy_nonoverlapping(entry.as_ptr(), out.add(port as usize * 10), 10);
        }
        0
    })
}

/// Link status of (device, port): 1 up, 0 down or unlinked, -1 unknown device.
#[no_mangle]
pub extern "C" fn tangEmuPtmlLinkStatus(device: c_int, port: c_int) -> c_int {
    guard(-1, || {
        let v = emu().view_now();
        if device < 0 || device as u32 >= v.device_count() || !(0..PORTS as c_int).contains(&port) {
            return -1;
        }
        v.cfg.link_up(device as u32, port as u32).is_some() as c_int
    })
}

// ------------------------------------------------------------ exit

extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        dump_counters();
        // Remove the backing files this process still owns; openers elsewhere see them destroyed.
        if let Some(e) = try_emu() {
            if let Some(v) = e.try_view_now() {
                let me = crate::mem::pid();
                for r in v.regions.values() {
                    if let Kind::Alloc(b) = &r.kind {
                        if b.owner_pid == me {
                            b.destroy();
                        }
                    }
                }
            }
        }
    });
}

#[used]
#[link_section = ".fini_array"]
static AT_EXIT: extern "C" fn() = at_exit;
