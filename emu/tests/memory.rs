//! Devices, memory, copies, peer paths, pointer attributes, counters and faults, through the
//! cdylib loaded with dlopen.
mod common;

use common::{rt, serial, D2D, D2H, H2D};
use std::ffi::{c_int, c_void, CStr};

#[test]
fn devices_and_current_device_per_thread() {
    let _g = serial();
    let r = rt();
    let mut n = 0;
    assert_eq!(unsafe { (r.tangGetDeviceCount)(&mut n) }, 0);
    assert_eq!(n, 8, "default device count");
    r.set_device(3);
    let t = std::thread::spawn(|| {
        let r = rt();
        let mut d = -1;
        assert_eq!(unsafe { (r.tangGetDevice)(&mut d) }, 0);
        assert_eq!(d, 0, "a new thread starts on device 0");
        r.set_device(5);
    });
    t.join().unwrap();
    let mut d = -1;
    assert_eq!(unsafe { (r.tangGetDevice)(&mut d) }, 0);
    assert_eq!(d, 3, "current device is per thread");
    assert_eq!(unsafe { (r.tangSetDevice)(8) }, 101);
    assert_eq!(unsafe { (r.tangSetDevice)(-1) }, 101);
    assert_eq!(unsafe { (r.tangGetLastError)() }, 101);
    assert_eq!(unsafe { (r.tangGetLastError)() }, 0);
    let name = unsafe { CStr::from_ptr((r.tangGetErrorName)(600)) };
    assert_eq!(name.to_str().unwrap(), "tangErrorNotReady");
}

#[test]
fn device_count_zero_and_sixty_four() {
    let _g = serial();
    let r = rt();
    let mut n = -1;
    assert_eq!(r.configure("devices = 0"), 0);
    assert_eq!(unsafe { (r.tangGetDeviceCount)(&mut n) }, 100, "no device");
    assert_eq!(n, 0);
    assert_eq!(r.configure("devices = 64"), 0);
    assert_eq!(unsafe { (r.tangGetDeviceCount)(&mut n) }, 0);
    assert_eq!(n, 64);
    r.set_device(63);
    let p = r.malloc(1 << 20);
    assert_eq!(
        r.configure("devices = 8"),
        7,
        "no resize while memory is live"
    );
    assert_eq!(unsafe { (r.tangFree)(p) }, 0);
    assert_eq!(r.configure("devices = 8"), 0);
    r.set_device(0);
}

#[test]
fn capacity_and_out_of_memory() {
    let _g = serial();
    let r = rt();
    assert_eq!(r.configure("memory_per_device = \"8MiB\""), 0);
    let mut p = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangMalloc)(&mut p, 9 << 20) }, 2);
    let a = r.malloc(6 << 20);
    assert_eq!(unsafe { (r.tangMalloc)(&mut p, 3 << 20) }, 2);
    let (mut free, mut total) = (0usize, 0usize);
    assert_eq!(unsafe { (r.tangMemGetInfo)(&mut free, &mut total) }, 0);
    assert_eq!(total, 8 << 20);
    assert_eq!(free, 2 << 20);
    assert_eq!(unsafe { (r.tangFree)(a) }, 0);
    assert_eq!(unsafe { (r.tangMalloc)(&mut p, 0) }, 0);
    assert!(p.is_null(), "size 0 gives NULL");
    // more than the backing file system can hold: out of memory, not SIGBUS later
    assert_eq!(r.configure("memory_per_device = \"100TiB\""), 0);
    assert_eq!(unsafe { (r.tangMalloc)(&mut p, 90 << 40) }, 2);
    assert_eq!(r.live("device_alloc"), 0);
    assert_eq!(r.configure("memory_per_device = \"16GiB\""), 0);
}

#[test]
fn every_memcpy_kind_and_contradicting_kinds() {
    let _g = serial();
    let r = rt();
    let n = 100_000;
    let a: Vec<u8> = (0..n).map(|i| (i * 13) as u8).collect();
    let mut b = vec![0u8; n];
    let d0 = r.malloc(n);
    let d1 = r.malloc(n);
    assert_eq!(r.h2d(d0, &a), 0);
    assert_eq!(unsafe { (r.tangMemcpy)(d1, d0, n, D2D) }, 0);
    assert_eq!(r.d2h(&mut b, d1), 0);
    assert_eq!(a, b);
    let mut c = vec![0u8; n];
    assert_eq!(
        unsafe { (r.tangMemcpy)(c.as_mut_ptr().cast(), b.as_ptr().cast(), n, 0) },
        0
    );
    assert_eq!(a, c);
    let h = b.as_mut_ptr().cast::<c_void>();
    for (dst, src, kind) in [
        (d0, h, D2H),
        (h, d0, H2D),
        (h, h, D2D),
        (d0, d1, 0),
        (h, d0, 4),
    ] {
        assert_eq!(
            unsafe { (r.tangMemcpy)(dst, src, n, kind) },
            21,
            "kind {kind}"
        );
    }
    // out of bounds of the allocation
    assert_eq!(unsafe { (r.tangMemcpy)(h, d0, n + 1, D2H) }, 1);
    // interior pointers work
    assert_eq!(
        unsafe { (r.tangMemcpy)(h, d0.cast::<u8>().add(10).cast(), 10, D2H) },
        0
    );
    assert_eq!(&b[..10], &a[10..20]);
    assert_eq!(
        unsafe { (r.tangMemset)(h, 0x5f, n) },
        1,
        "memset of host memory"
    );
    assert_eq!(unsafe { (r.tangMemset)(d1, 0x5f, n) }, 0);
    assert_eq!(r.d2h(&mut b, d1), 0);
    assert!(b.iter().all(|&x| x == 0x5f));
    assert_eq!(unsafe { (r.tangFree)(d0) }, 0);
    assert_eq!(unsafe { (r.tangFree)(d0) }, 17, "double free");
    assert_eq!(unsafe { (r.tangFree)(h) }, 17, "host pointer");
    assert_eq!(unsafe { (r.tangFree)(d1) }, 0);
}

#[test]
fn cross_device_d2d_works_staged() {
    let _g = serial();
    let r = rt();
    let a = vec![0x42u8; 5000];
    let mut b = vec![0u8; 5000];
    let d0 = r.malloc(5000);
    r.set_device(1);
    let d1 = r.malloc(5000);
    r.set_device(0);
    assert_eq!(r.h2d(d0, &a), 0);
    assert_eq!(unsafe { (r.tangMemcpy)(d1, d0, 5000, D2D) }, 0);
    assert_eq!(r.d2h(&mut b, d1), 0);
    assert_eq!(a, b);
    unsafe {
        (r.tangFree)(d0);
        (r.tangFree)(d1);
    }
}

#[test]
fn memcpy_peer_and_v2() {
    let _g = serial();
    let r = rt();
    let n = 1 << 16;
    let a = vec![7u8; n];
    let mut b = vec![0u8; n];
    r.set_device(2);
    let d2 = r.malloc(n);
    r.set_device(5);
    let d5 = r.malloc(n);
    assert_eq!(r.h2d(d2, &a), 0);
    assert_eq!(unsafe { (r.tangMemcpyPeer)(d5, 5, d2, 2, n) }, 0);
    assert_eq!(r.d2h(&mut b, d5), 0);
    assert_eq!(a, b);
    assert_eq!(
        unsafe { (r.tangMemcpyPeer)(d5, 5, d2, 5, n) },
        1,
        "pointer not on srcDevice"
    );
    assert_eq!(
        unsafe { (r.tangMemcpyPeer)(d5, 2, d2, 2, n) },
        1,
        "same device"
    );
    assert_eq!(unsafe { (r.tangMemcpyPeer)(d5, 5, d2, 9, n) }, 101);
    let v2 = r.peer_v2();
    assert_eq!(r.h2d(d5, &vec![9u8; n]), 0);
    assert_eq!(unsafe { v2(d2, 2, d5, 5, n) }, 0);
    assert_eq!(r.d2h(&mut b, d2), 0);
    assert!(b.iter().all(|&x| x == 9));
    unsafe {
        (r.tangFree)(d2);
        (r.tangFree)(d5);
    }
    r.set_device(0);
}

/// The default topology: device d reaches e on port e if e < d, else e - 1; PTML and
/// tangDeviceGetPeerPointer agree.
#[test]
fn peer_pointer_follows_the_ptml_topology() {
    let _g = serial();
    let r = rt();
    let first = unsafe { (r.ptmlInit)() };
    assert!(first == 0 || first == 3);
    let gpp = r.peer_pointer();
    let n = 1 << 16;
    let mut bufs = Vec::new();
    for d in 0..8 {
        r.set_device(d);
        bufs.push(r.malloc(n));
    }
    for d in 0..8 {
        let mut topo = [0u8; 100];
        assert_eq!(
            unsafe { (r.ptmlPtlinkPhytopoDetect)(d, 100, topo.as_mut_ptr().cast()) },
            0
        );
        for port in 0..10 {
            let e = &topo[port * 10..port * 10 + 10];
            assert_eq!((e[0] as c_int, e[1] as usize), (d, port));
            if port < 7 {
                let peer = if (port as c_int) < d {
                    port as c_int
                } else {
                    port as c_int + 1
                };
                assert_eq!(e[2] as c_int, peer, "device {d} port {port}");
                let back = if d < peer { d } else { d - 1 };
                assert_eq!(e[3] as c_int, back);
                assert_eq!(e[4], 1, "link up");
                // write through the peer pointer, read on the peer
                let mut mapped = std::ptr::null_mut();
                assert_eq!(
                    unsafe { gpp(d, port as c_int, bufs[peer as usize], &mut mapped) },
                    0
                );
                assert_ne!(mapped, bufs[peer as usize]);
                r.set_device(d);
                let pat = vec![(d * 16 + port as c_int) as u8; n];
                assert_eq!(r.h2d(bufs[d as usize], &pat), 0);
                assert_eq!(
                    unsafe { (r.tangMemcpy)(mapped, bufs[d as usize], n, D2D) },
                    0
                );
                let mut back_buf = vec![0u8; n];
                assert_eq!(r.d2h(&mut back_buf, bufs[peer as usize]), 0);
                assert_eq!(back_buf, pat);
                // and read from the peer through it
                assert_eq!(
                    unsafe { (r.tangMemcpy)(bufs[d as usize], mapped, n, D2D) },
                    0
                );
            } else {
                assert_eq!(e[4], 0, "unused port");
                let mut mapped = std::ptr::null_mut();
                assert_eq!(unsafe { gpp(d, port as c_int, bufs[0], &mut mapped) }, 1);
            }
        }
        // a pointer that is not on the far device of the port
        let mut mapped = std::ptr::null_mut();
        let port_to_other = 0;
        let wrong = if d == 1 { bufs[2] } else { bufs[d as usize] };
        let _ = port_to_other;
        assert_eq!(unsafe { gpp(d, 0, wrong, &mut mapped) }, 1);
    }
    for p in bufs {
        assert_eq!(unsafe { (r.tangFree)(p) }, 0);
    }
    r.set_device(0);
}

#[test]
fn peer_pointer_to_freed_memory_fails() {
    let _g = serial();
    let r = rt();
    let gpp = r.peer_pointer();
    let d0 = r.malloc(8192);
    r.set_device(1);
    let d1 = r.malloc(8192);
    r.set_device(0);
    let (mut m, mut m2) = (std::ptr::null_mut(), std::ptr::null_mut());
    let inner = unsafe { d1.cast::<u8>().add(100) }.cast();
    assert_eq!(unsafe { gpp(0, 0, d1, &mut m) }, 0);
    assert_eq!(unsafe { gpp(0, 0, inner, &mut m2) }, 0);
    assert_eq!(m2 as usize - m as usize, 100, "one window per peer region");
    let mut at = [0u64; 3];
    assert_eq!(unsafe { (r.tangPointerGetAttributes)(&mut at, m) }, 0);
    assert_eq!(
        (at[0] & 0xffff_ffff, at[0] >> 32),
        (2, 0),
        "device memory of device 0"
    );
    assert_eq!(unsafe { (r.tangMemcpy)(m2, d0, 8092, D2D) }, 0);
    assert_eq!(
        unsafe { (r.tangMemcpy)(m2, d0, 8093, D2D) },
        1,
        "past the peer region"
    );
    assert_eq!(unsafe { (r.tangFree)(d1) }, 0);
    assert_ne!(
        unsafe { (r.tangMemcpy)(m, d0, 8192, D2D) },
        0,
        "window to freed memory"
    );
    assert_eq!(unsafe { (r.tangFree)(d0) }, 0);
}

#[test]
fn down_link_and_removed_device() {
    let _g = serial();
    let r = rt();
    let gpp = r.peer_pointer();
    let d0 = r.malloc(4096);
    r.set_device(1);
    let d1 = r.malloc(4096);
    r.set_device(0);
    let mut mapped = std::ptr::null_mut();
    assert_eq!(unsafe { gpp(0, 0, d1, &mut mapped) }, 0);
    assert_eq!(r.configure("down_links = [[0, 0]]"), 0);
    assert_eq!(
        unsafe { (r.tangMemcpy)(mapped, d0, 4096, D2D) },
        10000,
        "link went down"
    );
    let mut m2 = std::ptr::null_mut();
    assert_eq!(unsafe { gpp(0, 0, d1, &mut m2) }, 1);
    let mut st = -1;
    assert_eq!(unsafe { (r.ptmlInit)() } & !3, 0);
    assert_eq!(unsafe { (r.ptmlGetPtlinkStatus)(1, 0, &mut st) }, 0);
    assert_eq!(st, 0, "both ends of the link are down");
    unsafe { (r.tangEmuClearFaults)() };
    assert_eq!(unsafe { (r.tangMemcpy)(mapped, d0, 4096, D2D) }, 0);
    assert_eq!(r.configure("removed_devices = [1]"), 0);
    assert_eq!(unsafe { (r.tangSetDevice)(1) }, 5);
    let mut b = vec![0u8; 4096];
    assert_eq!(r.d2h(&mut b, d1), 5);
    assert_eq!(unsafe { (r.tangMemcpyPeer)(d1, 1, d0, 0, 4096) }, 5);
    let mut topo = [0u8; 100];
    assert_eq!(
        unsafe { (r.ptmlPtlinkPhytopoDetect)(1, 100, topo.as_mut_ptr().cast()) },
        7
    );
    assert_eq!(
        unsafe { (r.ptmlPtlinkPhytopoDetect)(0, 100, topo.as_mut_ptr().cast()) },
        0
    );
    assert_eq!(topo[4], 0, "link to the removed device is down");
    unsafe { (r.tangEmuClearFaults)() };
    unsafe {
        assert_eq!((r.tangFree)(d0), 0);
        assert_eq!((r.tangFree)(d1), 0);
    }
}

#[test]
fn default_topology_beyond_eleven_devices_is_a_ring_with_chords() {
    let _g = serial();
    let r = rt();
    assert_eq!(r.configure("devices = 16"), 0);
    assert_eq!(unsafe { (r.ptmlInit)() } & !3, 0);
    for d in 0..16u8 {
        let mut topo = [0u8; 100];
        assert_eq!(
            unsafe { (r.ptmlPtlinkPhytopoDetect)(d as i32, 100, topo.as_mut_ptr().cast()) },
            0
        );
        for k in 0..5u8 {
            let up = &topo[(2 * k as usize) * 10..(2 * k as usize) * 10 + 5];
            assert_eq!(up, &[d, 2 * k, (d + k + 1) % 16, 2 * k + 1, 1]);
            let down = &topo[(2 * k as usize + 1) * 10..(2 * k as usize + 1) * 10 + 5];
            assert_eq!(down, &[d, 2 * k + 1, (d + 16 - k - 1) % 16, 2 * k, 1]);
        }
    }
    // and the peer pointer agrees: device 15 port 0 reaches device 0
    r.set_device(0);
    let p0 = r.malloc(64);
    let mut m = std::ptr::null_mut();
    assert_eq!(unsafe { r.peer_pointer()(15, 0, p0, &mut m) }, 0);
    assert_eq!(unsafe { r.peer_pointer()(15, 1, p0, &mut m) }, 1);
    assert_eq!(unsafe { (r.tangFree)(p0) }, 0);
    assert_eq!(r.configure("devices = 8"), 0);
}

#[test]
fn custom_topology_and_link_model_config() {
    let _g = serial();
    let r = rt();
    let cfg = "devices = 4\ntopology = \"none\"\n[[link]]\na = [0, 3]\nb = [2, 7]\n\
               [[link]]\na = [0, 4]\nb = [2, 8]\n";
    assert_eq!(r.configure(cfg), 0);
    let mut topo = [0u8; 100];
    assert_eq!(unsafe { (r.ptmlInit)() } & !3, 0);
    assert_eq!(
        unsafe { (r.ptmlPtlinkPhytopoDetect)(2, 100, topo.as_mut_ptr().cast()) },
        0
    );
    assert_eq!(&topo[70..75], &[2, 7, 0, 3, 1]);
    assert_eq!(&topo[80..85], &[2, 8, 0, 4, 1]);
    assert_eq!(topo[4], 0);
    let mut can = -1;
    assert_eq!(unsafe { (r.tangDeviceCanAccessPeer)(&mut can, 0, 2) }, 0);
    assert_eq!(can, 1);
    assert_eq!(unsafe { (r.tangDeviceCanAccessPeer)(&mut can, 0, 1) }, 0);
    assert_eq!(can, 0);
    assert_eq!(
        r.configure("[[link]]\na = [0, 3]\nb = [0, 3]\n"),
        1,
        "invalid link rejected"
    );
    assert_eq!(r.configure("bogus = 1"), 1, "unknown key rejected");
    assert_eq!(r.configure("devices = 8"), 0);
}

#[test]
fn pointer_attributes() {
    let _g = serial();
    let r = rt();
    r.set_device(4);
    let d = r.malloc(1000);
    let mut at = [0u64; 3];
    assert_eq!(unsafe { (r.tangPointerGetAttributes)(&mut at, d) }, 0);
    assert_eq!(at[0] & 0xffff_ffff, 2, "device memory");
    assert_eq!(at[0] >> 32, 4, "on device 4");
    assert_eq!(at[1], d as u64);
    assert_eq!(at[2], 0);
    let mut h = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangHostAlloc)(&mut h, 1000, 2) }, 0);
    let mut hd = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangHostGetDevicePointer)(&mut hd, h, 0) }, 0);
    assert_eq!(unsafe { (r.tangPointerGetAttributes)(&mut at, h) }, 0);
    assert_eq!(
        (at[0] & 0xffff_ffff, at[0] >> 32, at[1], at[2]),
        (1, 4, hd as u64, h as u64)
    );
    // the mapped device pointer is usable by device copies and reaches the host memory
    assert_eq!(unsafe { (r.tangMemset)(hd, 0x33, 1000) }, 0);
    assert_eq!(unsafe { *(h as *const u8).add(999) }, 0x33);
    let mut plain = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangMallocHost)(&mut plain, 10) }, 0);
    assert_eq!(
        unsafe { (r.tangHostGetDevicePointer)(&mut hd, plain, 0) },
        1,
        "not mapped"
    );
    let stack = 5u32;
    assert_eq!(
        unsafe { (r.tangPointerGetAttributes)(&mut at, (&stack as *const u32).cast()) },
        1
    );
    assert_eq!(at[0] & 0xffff_ffff, 0, "pageable memory: unregistered");
    assert_eq!(r.live("host_alloc"), 2);
    unsafe {
        assert_eq!((r.tangFreeHost)(h), 0);
        assert_eq!((r.tangFreeHost)(plain), 0);
        assert_eq!((r.tangFreeHost)(d), 1);
        assert_eq!((r.tangFree)(d), 0);
    }
    assert_eq!(r.live("host_alloc"), 0);
    // optionally, queries only work with the owning device current
    let d = r.malloc(10);
    assert_eq!(r.configure("attributes_need_current_device = true"), 0);
    r.set_device(0);
    assert_eq!(unsafe { (r.tangPointerGetAttributes)(&mut at, d) }, 1);
    r.set_device(4);
    assert_eq!(unsafe { (r.tangPointerGetAttributes)(&mut at, d) }, 0);
    unsafe { (r.tangEmuClearFaults)() };
    assert_eq!(unsafe { (r.tangFree)(d) }, 0);
    r.set_device(0);
}

#[test]
fn counters_count_every_call() {
    let _g = serial();
    let r = rt();
    unsafe { (r.tangEmuResetCounters)() };
    assert_eq!(unsafe { (r.tangEmuTotalCalls)() }, 0);
    let mut n = 0;
    for _ in 0..3 {
        unsafe { (r.tangGetDeviceCount)(&mut n) };
    }
    unsafe { (r.tangSetDevice)(99) };
    unsafe { (r.ptmlInit)() };
    assert_eq!(r.count("tangGetDeviceCount"), 3);
    assert_eq!(r.count("tangSetDevice"), 1, "failed calls count too");
    assert_eq!(r.count("ptmlInit"), 1, "PTML calls are readable here too");
    assert_eq!(r.count("tangMalloc"), 0);
    assert_eq!(
        unsafe { (r.tangEmuTotalCalls)() },
        4,
        "runtime functions only"
    );
    unsafe { (r.tangEmuResetCounters)() };
    assert_eq!(r.count("tangGetDeviceCount"), 0);
}

#[test]
fn faults_always_nth_after_probability() {
    let _g = serial();
    let r = rt();
    let mut n = 0;
    assert_eq!(
        r.configure("[[fault]]\nfunction = \"tangGetDeviceCount\"\ncode = 999\n"),
        0
    );
    assert_eq!(unsafe { (r.tangGetDeviceCount)(&mut n) }, 999);
    assert_eq!(unsafe { (r.tangGetDeviceCount)(&mut n) }, 999);
    assert_eq!(
        r.configure("[[fault]]\nfunction = \"tangGetDeviceCount\"\ncode = 3\nnth = 3\n"),
        0
    );
    let got: Vec<u32> = (0..5)
        .map(|_| unsafe { (r.tangGetDeviceCount)(&mut n) })
        .collect();
    assert_eq!(got, [0, 0, 3, 0, 0]);
    assert_eq!(
        r.configure("[[fault]]\nfunction = \"tangGetDeviceCount\"\ncode = 4\nafter = 2\n"),
        0
    );
    let got: Vec<u32> = (0..4)
        .map(|_| unsafe { (r.tangGetDeviceCount)(&mut n) })
        .collect();
    assert_eq!(got, [0, 4, 4, 4]);
    let prob =
        "[[fault]]\nfunction = \"tangGetDeviceCount\"\ncode = 999\nprobability = 0.5\nseed = 42\n";
    assert_eq!(r.configure(prob), 0);
    let a: Vec<u32> = (0..200)
        .map(|_| unsafe { (r.tangGetDeviceCount)(&mut n) })
        .collect();
    assert_eq!(r.configure(prob), 0);
    let b: Vec<u32> = (0..200)
        .map(|_| unsafe { (r.tangGetDeviceCount)(&mut n) })
        .collect();
    assert_eq!(a, b, "same seed, same sequence");
    let fails = a.iter().filter(|&&c| c == 999).count();
    assert!(
        (50..150).contains(&fails),
        "{fails} of 200 failed at p = 0.5"
    );
    unsafe { (r.tangEmuClearFaults)() };
    assert_eq!(unsafe { (r.tangGetDeviceCount)(&mut n) }, 0);
    // tangMemcpyPeer unsupported: v1 fails, v2 still works
    let d0 = r.malloc(64);
    r.set_device(1);
    let d1 = r.malloc(64);
    assert_eq!(r.configure("memcpy_peer_unsupported = true"), 0);
    assert_eq!(unsafe { (r.tangMemcpyPeer)(d1, 1, d0, 0, 64) }, 801);
    assert_eq!(unsafe { r.peer_v2()(d1, 1, d0, 0, 64) }, 0);
    unsafe { (r.tangEmuClearFaults)() };
    assert_eq!(unsafe { (r.tangMemcpyPeer)(d1, 1, d0, 0, 64) }, 0);
    unsafe {
        (r.tangFree)(d0);
        (r.tangFree)(d1);
    }
}

#[test]
fn faults_and_devices_from_the_environment() {
    let _g = serial();
    let out = common::helper()
        .arg("info")
        .env("TANG_EMU_DEVICES", "3")
        .env(
            "TANG_EMU_FAULTS",
            "tangMalloc:2:nth=2; memcpy_peer_unsupported",
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("devices 3 0"), "{text}");
    assert!(text.contains("malloc 0 2 0"), "{text}");
    assert!(text.contains("peer 801"), "{text}");

    let out = common::helper()
        .arg("info")
        .env("TANG_EMU_DEVICES", "0")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("devices 0 100"));

    let dir = std::env::temp_dir().join(format!("tang-emu-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("emu.toml");
    std::fs::write(
        &cfg,
        "devices = 2\n[[fault]]\nfunction = \"tangMalloc\"\ncode = 2\nafter = 3\n",
    )
    .unwrap();
    let dump = dir.join("counts.txt");
    let out = common::helper()
        .arg("info")
        .env("TANG_EMU_CONFIG", &cfg)
        .env("TANG_EMU_COUNTS_DUMP", &dump)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("devices 2 0") && text.contains("malloc 0 0 2"),
        "{text}"
    );
    let counts = std::fs::read_to_string(&dump).unwrap();
    assert!(counts.contains("tangMalloc 3\n"), "{counts}");
    assert!(counts.contains("tangGetDeviceCount 1\n"), "{counts}");
    assert!(counts.contains("total "), "{counts}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn host_access_to_device_memory_is_sigsegv() {
    use std::os::unix::process::ExitStatusExt;
    let _g = serial();
    let out = common::helper().arg("touch").output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{:?}", out);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("should have crashed"));
}

#[test]
fn optional_symbols_exist_and_minimal_root_lacks_them() {
    let _g = serial();
    let r = rt();
    for s in [
        "tangMemcpyPeer_v2",
        "tangMemcpyPeerAsync_v2",
        "tangDeviceGetPeerPointer",
        "ptmlUninit",
    ] {
        assert!(r.sym(s).is_some(), "{s}");
    }
    let Ok(root) = std::env::var("SUNRISE_LINK_EMU_ROOT") else {
        eprintln!("SUNRISE_LINK_EMU_ROOT unset: minimal root not checked");
        return;
    };
    let dir = std::path::PathBuf::from(format!("{root}-minimal")).join("lib/linux-x86_64");
    for (lib, syms) in [
        (
            "libtangrt_shared.so",
            &[
                "tangMemcpyPeer_v2",
                "tangMemcpyPeerAsync_v2",
                "tangDeviceGetPeerPointer",
            ][..],
        ),
        ("libptml_shared.so", &["ptmlUninit", "__ptmlUinit"][..]),
    ] {
        let c = std::ffi::CString::new(dir.join(lib).to_string_lossy().into_owned()).unwrap();
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!h.is_null(), "{}", dir.join(lib).display());
        for s in syms {
            let cs = std::ffi::CString::new(*s).unwrap();
            assert!(
                unsafe { libc::dlsym(h, cs.as_ptr()) }.is_null(),
                "{s} in minimal {lib}"
            );
        }
        let must = std::ffi::CString::new(if lib.starts_with("libtang") {
            "tangMemcpyPeer"
        } else {
            "ptmlInit"
        })
        .unwrap();
        assert!(!unsafe { libc::dlsym(h, must.as_ptr()) }.is_null());
    }
}

/// Prints the copy speed against a plain memcpy; never asserts timings.
#[test]
fn copy_speed_against_plain_memcpy() {
    let _g = serial();
    let r = rt();
    let n = 64 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    let d = r.malloc(n);
    // fault in every page once
    assert_eq!(r.h2d(d, &src), 0);
    assert_eq!(r.d2h(&mut dst, d), 0);
    let reps = 5;
    let best = |f: &mut dyn FnMut()| {
        (0..reps)
            .map(|_| {
                let t = std::time::Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    };
    let plain = best(&mut || unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr(), n);
        std::hint::black_box(&dst);
    });
    let h2d = best(&mut || assert_eq!(r.h2d(d, &src), 0));
    let d2h = best(&mut || assert_eq!(r.d2h(&mut dst, d), 0));
    let gb = |t: f64| n as f64 / t / 1e9;
    println!(
        "64 MiB: plain memcpy {:.2} GB/s, tangMemcpy H2D {:.2} GB/s (ratio {:.2}), D2H {:.2} GB/s (ratio {:.2})",
        gb(plain),
        gb(h2d),
        plain / h2d,
        gb(d2h),
        plain / d2h
    );
    assert_eq!(unsafe { (r.tangFree)(d) }, 0);
}
