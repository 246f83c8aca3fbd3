//! Shared by the integration tests: the loaded emulator and a lock that serialises tests of one
//! test binary (they share the process-wide emulator state: configuration, faults, counters).
#![allow(dead_code)]

pub mod rt;

use std::sync::{Mutex, MutexGuard, OnceLock};

pub fn rt() -> &'static rt::Rt {
    static RT: OnceLock<rt::Rt> = OnceLock::new();
    RT.get_or_init(rt::Rt::load)
}

/// Serialises the tests of one binary and starts each from a clean configuration.
pub fn serial() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    let g = L.lock().unwrap_or_else(|e| e.into_inner());
    let r = rt();
    unsafe { (r.tangEmuClearFaults)() };
    assert_eq!(
        r.configure("link_model = {}\ntopology = \"full_mesh\"\ncall_cost_us = {}"),
        0
    );
    r.set_device(0);
    g
}

/// The helper program, told where the libraries this test loaded are.
pub fn helper() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tang-emu-helper"));
    c.env("SUNRISE_LINK_EMU_LIB_DIR", rt::lib_dir_once());
    c
}

pub const H2D: u32 = 1;
pub const D2H: u32 = 2;
pub const D2D: u32 = 3;
