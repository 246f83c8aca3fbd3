//! Every copy path on the emulated runtime, through the C ABI, with the bytes verified.

use crate::support::table::*;
use sunrise_link::abi::transport::*;

const MIB: usize = 1 << 20;

fn copy_and_check(x: &Xport, dev: &Dev, src: u64, dst: u64, len: usize, seed: u8) {
    dev.write(src, &pattern(len, seed));
    let b = x.batch(4);
    assert_eq!(x.submit(b, &[req(WRITE, src, 0, dst, len as u64)]), 0);
    assert_eq!(x.wait(b, 0), (COMPLETED, len as u64), "{}", x.error(b, 0));
    assert_eq!(dev.read(dst, len), pattern(len, seed));
    x.free_batch(b);
}

#[test]
fn same_device_copy() {
    scenario("same_device_copy", &[("TANG_EMU_DEVICES", "2")], || {
        let dev = Dev::open();
        let x = Xport::new("{}");
        let (a, b) = (dev.alloc(0, MIB), dev.alloc(0, MIB));
        x.add(a, MIB as u64, "cuda:0").unwrap();
        x.add(b, MIB as u64, "cuda:0").unwrap();
        copy_and_check(&x, &dev, a, b, MIB, 1);
        // READ direction: remote (here local target) -> source.
        let bt = x.batch(1);
        dev.write(b, &pattern(4096, 2));
        assert_eq!(x.submit(bt, &[req(READ, a + 4096, 0, b, 4096)]), 0);
        assert_eq!(x.wait(bt, 0).0, COMPLETED);
        assert_eq!(dev.read(a + 4096, 4096), pattern(4096, 2));
        let s = x.stats();
        assert_eq!(s.paths[SUNRISE_LINK_PATH_SAME_DEVICE as usize].requests, 2);
        assert_eq!(
            s.paths[SUNRISE_LINK_PATH_SAME_DEVICE as usize].bytes,
            (MIB + 4096) as u64
        );
    });
}

#[test]
fn peer_device_copy_uses_memcpy_peer() {
    scenario(
        "peer_device_copy_uses_memcpy_peer",
        &[("TANG_EMU_DEVICES", "4")],
        || {
            let dev = Dev::open();
            let emu = Emu::open();
            let x = Xport::new("{}");
            let (a, b) = (dev.alloc(0, MIB), dev.alloc(3, MIB));
            x.add(a, MIB as u64, "cuda:0").unwrap();
            x.add(b, MIB as u64, "cuda:3").unwrap();
            copy_and_check(&x, &dev, a, b, MIB, 3);
            assert_eq!(emu.calls("tangMemcpyPeer"), 1);
            assert_eq!(x.stats().paths[SUNRISE_LINK_PATH_PEER as usize].requests, 1);
        },
    );
}

#[test]
fn fallback_to_memcpy_peer_v2() {
    scenario(
        "fallback_to_memcpy_peer_v2",
        &[
            ("TANG_EMU_DEVICES", "4"),
            ("TANG_EMU_FAULTS", "memcpy_peer_unsupported"),
        ],
        || {
            let dev = Dev::open();
            let emu = Emu::open();
            let x = Xport::new("{}");
            let (a, b) = (dev.alloc(1, MIB), dev.alloc(2, MIB));
            x.add(a, MIB as u64, "cuda:1").unwrap();
            x.add(b, MIB as u64, "cuda:2").unwrap();
            copy_and_check(&x, &dev, a, b, MIB, 4);
            assert_eq!(emu.calls("tangMemcpyPeer_v2"), 1);
            assert_eq!(
                x.stats().paths[SUNRISE_LINK_PATH_PEER_V2 as usize].requests,
                1
            );
        },
    );
}

#[test]
fn fallback_to_peer_pointer_over_a_port() {
    scenario(
        "fallback_to_peer_pointer_over_a_port",
        &[
            ("TANG_EMU_DEVICES", "4"),
            (
                "TANG_EMU_FAULTS",
                "memcpy_peer_unsupported;tangMemcpyPeer_v2:999",
            ),
        ],
        || {
            let dev = Dev::open();
            let emu = Emu::open();
            let x = Xport::new("{}");
            let (a, b) = (dev.alloc(2, MIB), dev.alloc(0, MIB));
            x.add(a, MIB as u64, "cuda:2").unwrap();
            x.add(b, MIB as u64, "cuda:0").unwrap();
            copy_and_check(&x, &dev, a, b, MIB, 5);
            assert_eq!(emu.calls("tangDeviceGetPeerPointer"), 1);
            assert_eq!(
                x.stats().paths[SUNRISE_LINK_PATH_PEER_POINTER as usize].requests,
                1
            );
        },
    );
}

#[test]
fn minimal_runtime_degrades_to_failed_task_with_reasons() {
    let lib = lib_dir(&minimal_root());
    let lib = lib.to_str().unwrap().to_string();
    scenario(
        "minimal_runtime_degrades_to_failed_task_with_reasons",
        &[("TANG_EMU_DEVICES", "2"), ("MC_TANGRT_LIB_DIR", &lib)],
        || {
            let dev = Dev::open();
            let x = Xport::new("{}");
            let (a, b) = (dev.alloc(0, MIB), dev.alloc(1, MIB));
            x.add(a, MIB as u64, "cuda:0").unwrap();
            x.add(b, MIB as u64, "cuda:1").unwrap();
            // tangMemcpyPeer is there: the copy works without the optional symbols.
            copy_and_check(&x, &dev, a, b, 4096, 6);
            // Without it, every fallback is missing: the task fails and says why.
            let emu = Emu::open();
            emu.configure("memcpy_peer_unsupported = true");
            let bt = x.batch(1);
            assert_eq!(x.submit(bt, &[req(WRITE, a, 0, b, 4096)]), 0);
            assert_eq!(x.wait(bt, 0).0, FAILED);
            let m = x.error(bt, 0);
            assert!(m.contains("tangMemcpyPeer_v2 not available"), "{m}");
            assert!(m.contains("tangDeviceGetPeerPointer not available"), "{m}");
        },
    );
}

#[test]
fn striping_runs_lanes_over_every_port() {
    // Devices 0 and 1 get two more links (ports 3 and 4) besides the mesh's port 0.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("emu.toml");
    std::fs::write(
        &conf,
        "devices = 4\n[[link]]\na = [0, 3]\nb = [1, 3]\n[[link]]\na = [0, 4]\nb = [1, 4]\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_string();
    scenario(
        "striping_runs_lanes_over_every_port",
        &[("TANG_EMU_CONFIG", &conf)],
        || {
            let dev = Dev::open();
            let emu = Emu::open();
            let x = Xport::new(
                r#"{"enable_port_striping": true, "port_striping_min_size": "256KiB", "worker_threads": 3}"#,
            );
            let len = 3 * MIB + 12345;
            let (a, b) = (dev.alloc(0, len), dev.alloc(1, len));
            x.add(a, len as u64, "cuda:0").unwrap();
            x.add(b, len as u64, "cuda:1").unwrap();
            copy_and_check(&x, &dev, a, b, len, 7);
            assert_eq!(
                emu.calls("tangDeviceGetPeerPointer"),
                3,
                "one lane per port"
            );
            assert_eq!(emu.calls("tangMemcpyPeer"), 0);
            let s = x.stats();
            assert_eq!(s.paths[SUNRISE_LINK_PATH_STRIPED as usize].requests, 1);
            assert_eq!(
                s.paths[SUNRISE_LINK_PATH_STRIPED as usize].bytes,
                len as u64
            );
            // Below the minimum size: one plain peer copy.
            copy_and_check(&x, &dev, a, b, 4096, 8);
            assert_eq!(emu.calls("tangMemcpyPeer"), 1);
        },
    );
}

#[test]
fn host_to_device_and_back() {
    scenario(
        "host_to_device_and_back",
        &[("TANG_EMU_DEVICES", "2")],
        || {
            let dev = Dev::open();
            let x = Xport::new("{}");
            let d = dev.alloc(1, MIB);
            x.add(d, MIB as u64, "cuda:1").unwrap();
            let mut h = pattern(MIB, 9);
            let hp = h.as_mut_ptr() as u64;
            assert_eq!(
                x.add(hp, MIB as u64, "cpu:0").unwrap(),
                "",
                "host buffers get no shm_path"
            );
            let b = x.batch(2);
            assert_eq!(x.submit(b, &[req(WRITE, hp, 0, d, MIB as u64)]), 0);
            assert_eq!(x.wait(b, 0).0, COMPLETED, "{}", x.error(b, 0));
            assert_eq!(dev.read(d, MIB), pattern(MIB, 9));
            dev.write(d, &pattern(MIB, 10));
            // Unregistered (pageable) host memory works too.
            let mut h2 = vec![0u8; MIB];
            assert_eq!(
                x.submit(b, &[req(READ, h2.as_mut_ptr() as u64, 0, d, MIB as u64)]),
                0
            );
            assert_eq!(x.wait(b, 1).0, COMPLETED, "{}", x.error(b, 1));
            assert_eq!(h2, pattern(MIB, 10));
            let s = x.stats();
            assert_eq!(
                s.paths[SUNRISE_LINK_PATH_HOST_TO_DEVICE as usize].requests,
                1
            );
            assert_eq!(
                s.paths[SUNRISE_LINK_PATH_DEVICE_TO_HOST as usize].requests,
                1
            );
            drop(h);
        },
    );
}

#[test]
fn async_copies_complete_per_task() {
    scenario(
        "async_copies_complete_per_task",
        &[("TANG_EMU_DEVICES", "2")],
        || {
            let dev = Dev::open();
            let emu = Emu::open();
            // Plain numbers are KiB, as upstream: 64 = 64 KiB.
            let x = Xport::new(r#"{"async_memcpy_threshold": 64, "worker_threads": 2}"#);
            let (a, b, c) = (
                dev.alloc(0, 4 * MIB),
                dev.alloc(0, 4 * MIB),
                dev.alloc(1, 4 * MIB),
            );
            for (p, l) in [(a, "cuda:0"), (b, "cuda:0"), (c, "cuda:1")] {
                x.add(p, 4 * MIB as u64, l).unwrap();
            }
            dev.write(a, &pattern(4 * MIB, 11));
            let mut h = vec![0u8; MIB];
            let bt = x.batch(16);
            let reqs = [
                req(WRITE, a, 0, b, MIB as u64),                     // async D2D
                req(WRITE, a + MIB as u64, 0, b + MIB as u64, 1000), // below: sync
                req(READ, h.as_mut_ptr() as u64, 0, a, MIB as u64),  // async D2H
                req(WRITE, a, 0, c, 2 * MIB as u64),                 // peer: sync
                req(
                    WRITE,
                    a + 2 * MIB as u64,
                    0,
                    b + 2 * MIB as u64,
                    2 * MIB as u64,
                ), // async
            ];
            assert_eq!(x.submit(bt, &reqs), 0);
            for (i, r) in reqs.iter().enumerate() {
                assert_eq!(
                    x.wait(bt, i as u64),
                    (COMPLETED, r.length),
                    "{}",
                    x.error(bt, i as u64)
                );
            }
            assert_eq!(dev.read(b, 4 * MIB)[..MIB], pattern(4 * MIB, 11)[..MIB]);
            assert_eq!(
                dev.read(b + 2 * MIB as u64, 2 * MIB),
                pattern(4 * MIB, 11)[2 * MIB..]
            );
            assert_eq!(h, pattern(MIB, 11));
            assert_eq!(dev.read(c, 2 * MIB), pattern(4 * MIB, 11)[..2 * MIB]);
            assert_eq!(emu.calls("tangMemcpyAsync"), 3);
            assert_eq!(
                emu.calls("tangEventCreateWithFlags"),
                3,
                "one event per async task"
            );
            assert_eq!(x.stats().async_requests, 3);
            assert!(x.host.notifies.load(std::sync::atomic::Ordering::SeqCst) >= 5);
            x.uninstall();
            assert_eq!(emu.live("event"), 0);
            assert_eq!(emu.live("stream"), 0);
        },
    );
}

#[test]
fn mapped_pinned_host_memory_is_normalised() {
    scenario(
        "mapped_pinned_host_memory_is_normalised",
        &[("TANG_EMU_DEVICES", "2")],
        || {
            type HostAlloc = unsafe extern "C" fn(*mut *mut std::ffi::c_void, usize, u32) -> i32;
            type DevPtr =
                unsafe extern "C" fn(*mut *mut std::ffi::c_void, *mut std::ffi::c_void, u32) -> i32;
            let path = std::path::PathBuf::from(std::env::var("MC_TANGRT_LIB_DIR").unwrap())
                .join("libtangrt_shared.so");
            // SAFETY: the emulator, at the path the library loads it from.
            let lib = unsafe { libloading::Library::new(path) }.unwrap();
            let host_alloc = unsafe { *lib.get::<HostAlloc>(b"tangHostAlloc").unwrap() };
            let dev_ptr = unsafe { *lib.get::<DevPtr>(b"tangHostGetDevicePointer").unwrap() };
            let dev = Dev::open();
            let x = Xport::new("{}");
            // Pinned host memory mapped into device 0 (tangHostAllocMapped = 2), and its alias.
            let mut h: *mut std::ffi::c_void = std::ptr::null_mut();
            assert_eq!(unsafe { host_alloc(&mut h, MIB, 2) }, 0);
            let mut alias: *mut std::ffi::c_void = std::ptr::null_mut();
            assert_eq!(unsafe { dev_ptr(&mut alias, h, 0) }, 0);
            assert_ne!(alias, h);
            let data = pattern(MIB, 12);
            // SAFETY: h is MIB bytes of pinned host memory.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), h as *mut u8, MIB) };
            let d = dev.alloc(1, MIB);
            x.add(d, MIB as u64, "cuda:1").unwrap();
            // Registered through its device alias as host memory: copied with host kinds.
            assert_eq!(x.add(alias as u64, MIB as u64, "cpu:0").unwrap(), "");
            let b = x.batch(2);
            assert_eq!(
                x.submit(b, &[req(WRITE, alias as u64, 0, d, MIB as u64)]),
                0
            );
            assert_eq!(x.wait(b, 0).0, COMPLETED, "{}", x.error(b, 0));
            assert_eq!(dev.read(d, MIB), data);
            // Unregistered alias: found by its pointer attributes, normalised the same way.
            assert_eq!(x.remove(alias as u64), 0);
            dev.write(d, &pattern(MIB, 13));
            assert_eq!(x.submit(b, &[req(READ, alias as u64, 0, d, MIB as u64)]), 0);
            assert_eq!(x.wait(b, 1).0, COMPLETED, "{}", x.error(b, 1));
            // SAFETY: as above.
            let got = unsafe { std::slice::from_raw_parts(h as *const u8, MIB) };
            assert_eq!(got, &pattern(MIB, 13)[..]);
            let s = x.stats();
            assert_eq!(
                s.paths[SUNRISE_LINK_PATH_HOST_TO_DEVICE as usize].requests,
                1
            );
            assert_eq!(
                s.paths[SUNRISE_LINK_PATH_DEVICE_TO_HOST as usize].requests,
                1
            );
        },
    );
}

#[test]
fn unregistered_device_memory_with_device_sensitive_attributes() {
    scenario(
        "unregistered_device_memory_with_device_sensitive_attributes",
        &[
            ("TANG_EMU_DEVICES", "4"),
            ("TANG_EMU_FAULTS", "attributes_need_current_device"),
        ],
        || {
            let dev = Dev::open();
            let x = Xport::new(r#"{"worker_threads": 1}"#);
            // Neither side registered: the pointer query succeeds only with the owner current,
            // so the worker retries it on each device (as upstream's platform probe does).
            let (a, b) = (dev.alloc(2, MIB), dev.alloc(3, MIB));
            dev.write(a, &pattern(MIB, 14));
            let bt = x.batch(1);
            assert_eq!(x.submit(bt, &[req(WRITE, a, 0, b, MIB as u64)]), 0);
            assert_eq!(x.wait(bt, 0).0, COMPLETED, "{}", x.error(bt, 0));
            assert_eq!(dev.read(b, MIB), pattern(MIB, 14));
            assert_eq!(x.stats().paths[SUNRISE_LINK_PATH_PEER as usize].requests, 1);
            // A device location whose index does not parse ("cuda:abc" is ("cuda", -1) for
            // TENT's LocationParser) is resolved the same way.
            let shm = x.add(b, MIB as u64, "cuda:abc").unwrap();
            assert_eq!(shm.len(), 128);
        },
    );
}
