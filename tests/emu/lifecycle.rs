//! Install/uninstall, loader failures, device counts, config, cancellation and the device
//! plugin on the emulated runtime, through the C ABI.

use crate::support::table::*;
use std::ffi::{c_char, c_void, CStr};
use sunrise_link::abi::*;

const MIB: usize = 1 << 20;

#[test]
fn zero_devices_fail_install() {
    scenario(
        "zero_devices_fail_install",
        &[("TANG_EMU_DEVICES", "0")],
        || {
            let x = Xport::create();
            assert_eq!(x.install(Some("{}")), SUNRISE_LINK_DEVICE_NOT_FOUND);
            assert!(last_error().contains("no Tang devices"), "{}", last_error());
            // Nothing half-installed: a sub-batch can be made, but submit says why it cannot run.
            let b = x.batch(1);
            assert_eq!(
                x.submit(b, &[req(WRITE, 0x1000, 0, 0x2000, 1)]),
                SUNRISE_LINK_INVALID_ARGUMENT
            );
            assert!(last_error().contains("not installed"));
        },
    );
}

#[test]
fn missing_library_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    scenario(
        "missing_library_names_the_path",
        &[("MC_TANGRT_LIB_DIR", &d)],
        || {
            let d = std::env::var("MC_TANGRT_LIB_DIR").unwrap();
            let x = Xport::create();
            assert_eq!(x.install(Some("{}")), SUNRISE_LINK_RUNTIME_ERROR);
            let e = last_error();
            assert!(e.contains(&d) && e.contains("libptml_shared.so"), "{e}");
            // The config's explicit directory wins over the environment.
            let good = lib_dir(&emu_root());
            let cfg = format!(r#"{{"runtime_lib_dir": "{}"}}"#, good.display());
            assert_eq!(x.install(Some(&cfg)), 0, "{}", last_error());
        },
    );
}

#[test]
fn missing_required_symbol_names_symbol_and_library() {
    // A directory whose "libtangrt_shared.so" is really PTML: every tang* symbol is missing.
    let dir = tempfile::tempdir().unwrap();
    let real = lib_dir(&emu_root());
    std::os::unix::fs::symlink(
        real.join("libptml_shared.so"),
        dir.path().join("libptml_shared.so"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        real.join("libptml_shared.so"),
        dir.path().join("libtangrt_shared.so"),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    scenario(
        "missing_required_symbol_names_symbol_and_library",
        &[("MC_TANGRT_LIB_DIR", &d)],
        || {
            let x = Xport::create();
            assert_eq!(x.install(Some("{}")), SUNRISE_LINK_RUNTIME_ERROR);
            let e = last_error();
            assert!(e.contains("required symbol tangGetDeviceCount"), "{e}");
            assert!(e.contains("libtangrt_shared.so"), "{e}");
        },
    );
}

#[test]
fn minimal_runtime_installs() {
    let lib = lib_dir(&minimal_root());
    let lib = lib.to_str().unwrap().to_string();
    scenario(
        "minimal_runtime_installs",
        &[("MC_TANGRT_LIB_DIR", &lib)],
        || {
            let x = Xport::create();
            assert_eq!(x.install(Some("{}")), 0, "{}", last_error());
            assert_eq!(x.uninstall(), 0);
        },
    );
}

#[test]
fn more_than_32_devices() {
    scenario(
        "more_than_32_devices",
        &[("TANG_EMU_DEVICES", "40")],
        || {
            let dev = Dev::open();
            assert_eq!(
                unsafe { (dev.plugin().get_device_count.unwrap())(dev.ctx()) },
                40
            );
            let x = Xport::new(r#"{"worker_threads": 4}"#);
            // Pairs that alias in a 32-slot lock table: (33, 34), (1, 33), (35, 35), (39, 7).
            let pairs = [(33, 34), (1, 33), (35, 35), (39, 7), (34, 33)];
            let mut bufs = Vec::new();
            for (i, &(s, d)) in pairs.iter().enumerate() {
                let a = dev.alloc(s, 64 << 10);
                let b = dev.alloc(d, 64 << 10);
                x.add(a, 64 << 10, &format!("cuda:{s}")).unwrap();
                x.add(b, 64 << 10, &format!("cuda:{d}")).unwrap();
                dev.write(a, &pattern(64 << 10, i as u8));
                bufs.push((a, b));
            }
            let bt = x.batch(64);
            let reqs: Vec<_> = bufs
                .iter()
                .map(|&(a, b)| req(WRITE, a, 0, b, 64 << 10))
                .collect();
            assert_eq!(x.submit(bt, &reqs), 0);
            for (i, &(_, b)) in bufs.iter().enumerate() {
                assert_eq!(
                    x.wait(bt, i as u64).0,
                    COMPLETED,
                    "{}",
                    x.error(bt, i as u64)
                );
                assert_eq!(dev.read(b, 64 << 10), pattern(64 << 10, i as u8));
            }
        },
    );
}

#[test]
fn cancellation_is_not_offered_and_cancel_changes_nothing() {
    scenario(
        "cancellation_is_not_offered_and_cancel_changes_nothing",
        &[("TANG_EMU_DEVICES", "2")],
        || {
            let dev = Dev::open();
            let x = Xport::new("{}");
            let mut caps = std::mem::MaybeUninit::<
                sunrise_link::abi::transport::sunrise_link_capabilities_t,
            >::zeroed();
            assert_eq!(
                unsafe { (x.p.capabilities_get.unwrap())(x.t, caps.as_mut_ptr()) },
                0
            );
            assert_eq!(
                unsafe { caps.assume_init() }.supports_cancellation,
                0,
                "copies run inside submit or are on the device: nothing left to cancel"
            );
            let n = 64usize;
            const PIECE: usize = 64 << 10;
            const P64: u64 = PIECE as u64;
            let total = n * PIECE;
            let (a, b) = (dev.alloc(0, total), dev.alloc(1, total));
            x.add(a, total as u64, "cuda:0").unwrap();
            x.add(b, total as u64, "cuda:1").unwrap();
            let data = pattern(total, 3);
            dev.write(a, &data);
            let bt = x.batch(n as u64);
            let reqs: Vec<_> = (0..n as u64)
                .map(|i| req(WRITE, a + i * P64, 0, b + i * P64, P64))
                .collect();
            assert_eq!(x.submit(bt, &reqs), 0);
            for i in (0..n as u64).rev() {
                assert_eq!(unsafe { (x.p.task_cancel.unwrap())(x.t, bt, i) }, 0);
            }
            for i in 0..n as u64 {
                assert_eq!(
                    x.wait(bt, i),
                    (COMPLETED, P64),
                    "task {i}: {}",
                    x.error(bt, i)
                );
            }
            assert_eq!(dev.read(b, total), data);
            // Task ids out of range and stale handles are errors, never UB.
            assert_eq!(
                unsafe { (x.p.task_cancel.unwrap())(x.t, bt, n as u64) },
                SUNRISE_LINK_INVALID_ARGUMENT
            );
            assert_eq!(x.free_batch(bt), 0);
            assert_eq!(x.free_batch(bt), SUNRISE_LINK_INVALID_ARGUMENT);
            assert_eq!(
                unsafe { (x.p.task_cancel.unwrap())(x.t, bt, 0) },
                SUNRISE_LINK_INVALID_ARGUMENT
            );
        },
    );
}

#[test]
fn config_is_validated_and_unknown_keys_logged() {
    scenario(
        "config_is_validated_and_unknown_keys_logged",
        &[("TANG_EMU_DEVICES", "1")],
        || {
            let x = Xport::create();
            assert_eq!(
                x.install(Some(r#"{"async_memcpy_threshold": "4 parsecs"}"#)),
                SUNRISE_LINK_INVALID_ARGUMENT
            );
            assert!(
                last_error().contains("async_memcpy_threshold"),
                "{}",
                last_error()
            );
            assert_eq!(
                x.install(Some(r#"{"enable_port_striping": 1}"#)),
                SUNRISE_LINK_INVALID_ARGUMENT
            );
            assert_eq!(x.install(Some("not json")), SUNRISE_LINK_INVALID_ARGUMENT);
            assert_eq!(x.install(Some(r#"{"colour": "blue"}"#)), 0);
            let logs = x.host.logs.lock().unwrap().clone();
            assert!(
                logs.iter()
                    .any(|(lvl, m)| *lvl == 1 && m.contains("colour")),
                "no warning about the unknown key in {logs:?}"
            );
            assert_eq!(
                x.install(Some("{}")),
                SUNRISE_LINK_INVALID_ARGUMENT,
                "installed twice"
            );
        },
    );
}

#[test]
fn toml_config_file_when_the_host_passes_none() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sl.toml");
    std::fs::write(&f, "[transports.sunrise_link]\nworker_threads = 0\n").unwrap();
    let f = f.to_str().unwrap().to_string();
    scenario(
        "toml_config_file_when_the_host_passes_none",
        &[("TANG_EMU_DEVICES", "1"), ("SUNRISE_LINK_CONFIG", &f)],
        || {
            let x = Xport::create();
            assert_eq!(x.install(None), SUNRISE_LINK_INVALID_ARGUMENT);
            assert!(last_error().contains("worker_threads"), "{}", last_error());
        },
    );
}

#[test]
fn uninstall_releases_every_runtime_object() {
    scenario(
        "uninstall_releases_every_runtime_object",
        &[("TANG_EMU_DEVICES", "2")],
        || {
            let dev = Dev::open();
            let emu = Emu::open();
            let x = Xport::new(r#"{"async_memcpy_threshold": "4KiB"}"#);
            let (a, b) = (dev.alloc(0, MIB), dev.alloc(0, MIB));
            let shm = x.add(a, MIB as u64, "cuda:0").unwrap();
            x.add(b, MIB as u64, "cuda:0").unwrap();
            // A "remote" buffer that is really our own, reached through its IPC handle.
            x.set_remote(
                7,
                Remote {
                    base: 0x5000_0000,
                    length: MIB as u64,
                    location: "cuda:1".into(),
                    shm_path: shm,
                    machine_id: MACHINE.into(),
                },
            );
            let bt = x.batch(4);
            assert_eq!(
                x.submit(
                    bt,
                    &[
                        req(WRITE, b, 0, a, MIB as u64),
                        req(READ, b, 7, 0x5000_0000, 4096)
                    ]
                ),
                0
            );
            assert_eq!(x.wait(bt, 0).0, COMPLETED);
            assert_eq!(x.wait(bt, 1).0, COMPLETED, "{}", x.error(bt, 1));
            assert!(emu.live("ipc_open") >= 1);
            assert!(emu.live("stream") >= 1);
            assert_eq!(x.uninstall(), 0);
            assert_eq!(emu.live("ipc_open"), 0, "IPC mappings closed");
            assert_eq!(emu.live("stream"), 0, "streams destroyed");
            assert_eq!(emu.live("event"), 0, "events destroyed");
            assert_eq!(x.uninstall(), 0, "idempotent");
        },
    );
}

#[test]
fn device_plugin_abi() {
    scenario("device_plugin_abi", &[("TANG_EMU_DEVICES", "3")], || {
        let dev = Dev::open();
        let p = dev.plugin();
        assert_eq!(
            unsafe { CStr::from_ptr(p.class_name) }.to_str().unwrap(),
            "cuda"
        );
        assert_eq!(unsafe { (p.get_device_count.unwrap())(dev.ctx()) }, 3);
        let mut bus = [0 as c_char; 20];
        assert_eq!(
            unsafe { (p.get_device_pci_bus_id.unwrap())(dev.ctx(), 2, bus.as_mut_ptr(), 20) },
            0
        );
        assert!(!unsafe { CStr::from_ptr(bus.as_ptr()) }
            .to_bytes()
            .is_empty());
        let a = dev.alloc(2, 4096);
        let mut loc = [sunrise_link::abi::device_plugin::sunrise_link_location_t {
            start: std::ptr::null_mut(),
            length: 0,
            location: [0; 32],
        }];
        let n = unsafe {
            (p.query_location.unwrap())(dev.ctx(), a as *mut c_void, 4096, loc.as_mut_ptr(), 1)
        };
        assert_eq!(n, 1);
        assert_eq!(
            unsafe { CStr::from_ptr(loc[0].location.as_ptr()) }
                .to_str()
                .unwrap(),
            "cuda:2"
        );
        let mut host = [0u8; 16];
        let n = unsafe {
            (p.query_location.unwrap())(
                dev.ctx(),
                host.as_mut_ptr() as *mut c_void,
                16,
                loc.as_mut_ptr(),
                1,
            )
        };
        assert_eq!(n, 0, "host memory is not ours");
        // memcpy_sync across devices, verified.
        let b = dev.alloc(0, 4096);
        dev.write(a, &pattern(4096, 1));
        assert_eq!(
            unsafe {
                (p.memcpy_sync.unwrap())(dev.ctx(), b as *mut c_void, a as *mut c_void, 4096)
            },
            0
        );
        assert_eq!(dev.read(b, 4096), pattern(4096, 1));
        let bad = std::ffi::CString::new("cpu:0").unwrap();
        let mut out: *mut c_void = std::ptr::null_mut();
        assert_ne!(
            unsafe { (p.alloc.unwrap())(dev.ctx(), &mut out, 16, bad.as_ptr()) },
            0
        );
        dev.free(a);
        dev.free(b);
        assert_eq!(unsafe { (p.destroy_plugin.unwrap())(dev.ctx()) }, 0);
    });
}

#[test]
fn registration_rules() {
    scenario("registration_rules", &[("TANG_EMU_DEVICES", "2")], || {
        let dev = Dev::open();
        let x = Xport::new("{}");
        let a = dev.alloc(1, 2 * MIB);
        dev.write(a, &pattern(2 * MIB, 4));
        // The emulator's handle carries the pointer's offset (opening it yields that pointer),
        // so a sub-range is accepted and a peer reaches exactly its bytes. (A runtime whose
        // handle names the whole allocation gets INVALID_ARGUMENT instead: unit test
        // sub_range_of_an_allocation_is_rejected.)
        // The shm_path is the runtime's own 64 handle bytes in uppercase hex, as upstream writes
        // it (so mixed clusters interoperate).
        type GetHandle = unsafe extern "C" fn(*mut [u8; 64], *mut c_void) -> i32;
        let path = std::path::PathBuf::from(std::env::var("MC_TANGRT_LIB_DIR").unwrap())
            .join("libtangrt_shared.so");
        // SAFETY: the emulator, at the path the library loads it from.
        let lib = unsafe { libloading::Library::new(path) }.unwrap();
        let get = unsafe { *lib.get::<GetHandle>(b"tangIpcGetMemHandle").unwrap() };
        let mut raw = [0u8; 64];
        assert_eq!(unsafe { get(&mut raw, a as *mut c_void) }, 0);
        let want: String = raw.iter().map(|b| format!("{b:02X}")).collect();
        let whole = x.add(a, MIB as u64, "cuda:1").unwrap();
        assert_eq!(whole, want);
        assert_eq!(x.remove(a), 0);
        let sub = a + MIB as u64;
        let shm = x.add(sub, MIB as u64, "cuda:1").unwrap();
        assert_eq!(shm.len(), 128);
        assert!(
            shm.bytes()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)),
            "{shm}"
        );
        x.set_remote(
            5,
            Remote {
                base: 0x4000_0000,
                length: MIB as u64,
                location: "cuda:1".into(),
                shm_path: shm,
                machine_id: MACHINE.into(),
            },
        );
        let mine = dev.alloc(0, MIB);
        x.add(mine, MIB as u64, "cuda:0").unwrap();
        let b = x.batch(1);
        assert_eq!(
            x.submit(b, &[req(READ, mine, 5, 0x4000_0000 + 4096, 8192)]),
            0
        );
        assert_eq!(x.wait(b, 0).0, COMPLETED, "{}", x.error(b, 0));
        assert_eq!(
            dev.read(mine, 8192),
            pattern(2 * MIB, 4)[MIB + 4096..MIB + 4096 + 8192]
        );
        // A device this process does not have; nothing stays registered on failure.
        let c = dev.alloc(0, 4096);
        assert_eq!(
            x.add(c, 4096, "cuda:9").unwrap_err().0,
            SUNRISE_LINK_DEVICE_NOT_FOUND
        );
        assert_eq!(x.remove(c), SUNRISE_LINK_ADDRESS_NOT_REGISTERED);
        // A location naming another device than the one holding the memory.
        let (code, msg) = x.add(c, 4096, "cuda:1").unwrap_err();
        assert_eq!(code, SUNRISE_LINK_INVALID_ARGUMENT, "{msg}");
        assert!(msg.contains("memory of device 0"), "{msg}");
        assert_eq!(x.remove(c), SUNRISE_LINK_ADDRESS_NOT_REGISTERED);
        // Device memory at a host location, host memory at a device location: refused,
        // naming the mismatch, and nothing stays registered.
        for loc in ["cpu:0", "*", ""] {
            let (code, msg) = x.add(c, 4096, loc).unwrap_err();
            assert_eq!(code, SUNRISE_LINK_INVALID_ARGUMENT, "{loc:?}: {msg}");
            assert!(
                msg.contains("memory of device 0") && msg.contains("cuda:0"),
                "{msg}"
            );
            assert_eq!(x.remove(c), SUNRISE_LINK_ADDRESS_NOT_REGISTERED);
        }
        let host = vec![0u8; 4096];
        let (code, msg) = x.add(host.as_ptr() as u64, 4096, "cuda:0").unwrap_err();
        assert_eq!(code, SUNRISE_LINK_INVALID_ARGUMENT, "{msg}");
        assert!(msg.contains("not Tang device memory"), "{msg}");
        assert_eq!(
            x.remove(host.as_ptr() as u64),
            SUNRISE_LINK_ADDRESS_NOT_REGISTERED
        );
        assert_eq!(x.add(host.as_ptr() as u64, 4096, "cpu:0").unwrap(), "");
        // Registering again at the same base replaces the registration; a registration
        // inside another is its own (nested registrations are allowed).
        assert_eq!(x.add(host.as_ptr() as u64, 2048, "cpu:0").unwrap(), "");
        assert_eq!(x.remove(host.as_ptr() as u64), 0);
        assert_eq!(
            x.remove(host.as_ptr() as u64),
            SUNRISE_LINK_ADDRESS_NOT_REGISTERED
        );
        assert_eq!(x.remove(sub), 0);
        assert_eq!(x.remove(sub), SUNRISE_LINK_ADDRESS_NOT_REGISTERED);
    });
}

#[test]
fn callers_current_device_is_left_alone() {
    scenario(
        "callers_current_device_is_left_alone",
        &[("TANG_EMU_DEVICES", "4")],
        || {
            type SetDev = unsafe extern "C" fn(i32) -> i32;
            type GetDev = unsafe extern "C" fn(*mut i32) -> i32;
            let path = std::path::PathBuf::from(std::env::var("MC_TANGRT_LIB_DIR").unwrap())
                .join("libtangrt_shared.so");
            // SAFETY: the emulator, at the path the library loads it from.
            let lib = unsafe { libloading::Library::new(path) }.unwrap();
            let set = unsafe { *lib.get::<SetDev>(b"tangSetDevice").unwrap() };
            let get = unsafe { *lib.get::<GetDev>(b"tangGetDevice").unwrap() };
            let current = || {
                let mut d = -1;
                assert_eq!(unsafe { get(&mut d) }, 0);
                d
            };
            assert_eq!(unsafe { set(3) }, 0);
            let dev = Dev::open();
            assert_eq!(current(), 3, "the device plugin restores it");
            let x = Xport::new("{}");
            let (a, b) = (dev.alloc(1, MIB), dev.alloc(2, MIB));
            x.add(a, MIB as u64, "cuda:1").unwrap();
            x.add(b, MIB as u64, "cuda:2").unwrap();
            assert_eq!(current(), 3, "registration restores it");
            let bt = x.batch(2);
            assert_eq!(
                x.submit(
                    bt,
                    &[req(WRITE, a, 0, b, MIB as u64), req(READ, a, 0, b, 64)]
                ),
                0
            );
            assert_eq!(x.wait(bt, 0).0, COMPLETED);
            assert_eq!(x.wait(bt, 1).0, COMPLETED);
            assert_eq!(current(), 3, "copies never touch the caller's thread");
        },
    );
}

#[test]
fn topology_detection_failure_skips_the_device() {
    scenario(
        "topology_detection_failure_skips_the_device",
        &[
            ("TANG_EMU_DEVICES", "2"),
            ("TANG_EMU_FAULTS", "ptmlPtlinkPhytopoDetect:9"),
        ],
        || {
            let x = Xport::new("{}");
            let logs = x.host.logs.lock().unwrap().clone();
            assert!(
                logs.iter()
                    .any(|(l, m)| *l == 1 && m.contains("topology: device 0 skipped")),
                "{logs:?}"
            );
        },
    );
}

#[test]
fn ptml_is_shared_by_transports_of_one_process() {
    scenario(
        "ptml_is_shared_by_transports_of_one_process",
        &[("TANG_EMU_DEVICES", "2")],
        || {
            let emu = Emu::open();
            let x1 = Xport::new("{}");
            let x2 = Xport::new("{}"); // ptmlInit answers ALREADY_INITIALIZED: still a success
            assert_eq!(emu.calls("ptmlInit"), 2);
            drop(x1);
            assert_eq!(emu.calls("ptmlUninit"), 0, "x2 still uses PTML");
            assert_eq!(x2.uninstall(), 0);
            assert_eq!(emu.calls("ptmlUninit"), 1, "the last one out uninitialises");
            assert_eq!(x2.install(Some("{}")), 0, "{}", last_error());
        },
    );
}

#[test]
fn recycled_sub_batches_start_empty_and_stale_handles_stay_dead() {
    scenario(
        "recycled_sub_batches_start_empty_and_stale_handles_stay_dead",
        &[("TANG_EMU_DEVICES", "2")],
        || {
            let dev = Dev::open();
            let x = Xport::new("{}");
            let (a, b) = x.registered_pair(&dev, [0, 1], 1 << 16);
            let recycle =
                x.p.sub_batch_recycle
                    .expect("the table has the recycle slot");
            let mut h = x.batch(4);
            for round in 0..5u8 {
                let data = pattern(4096, round);
                dev.write(a, &data);
                let off = round as u64 * 4096;
                assert_eq!(x.submit(h, &[req(WRITE, a, 0, b + off, 4096)]), 0);
                assert_eq!(x.wait(h, 0), (COMPLETED, 4096), "round {round}");
                assert_eq!(dev.read(b + off, 4096), data);
                let mut next = 0;
                assert_eq!(unsafe { recycle(x.t, h, 4, 9, &mut next) }, 0);
                assert_ne!(next, h);
                assert_eq!(status_rc(&x, h, 0), SUNRISE_LINK_INVALID_ARGUMENT, "stale");
                assert_eq!(
                    unsafe { recycle(x.t, h, 4, 9, &mut next) },
                    SUNRISE_LINK_INVALID_ARGUMENT
                );
                h = next;
                assert_eq!(
                    status_rc(&x, h, 0),
                    SUNRISE_LINK_INVALID_ARGUMENT,
                    "empty again"
                );
            }
            let mut out = 7;
            assert_eq!(
                unsafe { recycle(x.t, h, 0, 9, &mut out) },
                SUNRISE_LINK_INVALID_ARGUMENT
            );
            assert_eq!(out, 7, "nothing written");
            assert_eq!(
                x.submit(h, &[req(WRITE, a, 0, b, 16)]),
                0,
                "the handle survived"
            );
            assert_eq!(x.wait(h, 0).0, COMPLETED);
            assert_eq!(x.free_batch(h), 0);
        },
    );
}

/// The status code of a task status query.
pub(crate) fn status_rc(x: &Xport, b: u64, id: u64) -> i32 {
    let mut s = sunrise_link::abi::transport::sunrise_link_task_status_t {
        status: -1,
        reserved: 0,
        transferred_bytes: 0,
    };
    unsafe { (x.p.task_status_get.unwrap())(x.t, b, id, &mut s) }
}
