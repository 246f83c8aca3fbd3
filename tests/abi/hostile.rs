//! Hostile input through the C ABI: NULL and garbage arguments, zero and overflowing lengths,
//! wrapping ranges, unregistered and partly registered ranges, stale/foreign/double-freed
//! sub-batch handles, task ids out of range, malformed remote metadata (shm_path, location,
//! machine id), bad locations and bad config values. Each call must return a specific code,
//! set a message, write no output, change no state and never crash; bytes outside registered
//! buffers are never touched.
//!
//! Runs on the emulated Tang runtime (`make emu`; `make test` exports its root).

use crate::support::direct::*;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const NEVER: u64 = 0xDEAD_BEEF_DEAD_BEEF;

/// Asserts `rc == want` and that a message was stored.
#[track_caller]
fn fails(rc: i32, want: i32, what: &str) -> String {
    let msg = last_error();
    assert_eq!(rc, want, "{what}: got {rc} ({msg})");
    assert!(!msg.is_empty(), "{what}: no message");
    msg
}

/// Bytes aligned like the plugin table.
#[repr(C, align(8))]
struct Raw<const N: usize>([u8; N]);

#[test]
fn static_exports_and_plugin_table() {
    unsafe {
        assert_eq!(
            std::ffi::CStr::from_ptr(sunrise_link_transport_name()).to_str(),
            Ok("sunrise_link")
        );
        assert!(!sunrise_link_version().is_null());
        fails(
            sunrise_link_transport_plugin_get(null_mut()),
            SUNRISE_LINK_INVALID_ARGUMENT,
            "plugin_get(NULL)",
        );
        // struct_size too small to hold the header: nothing written.
        for size in 0..8u32 {
            let mut r = Raw([0xA5u8; 256]);
            r.0[4..8].copy_from_slice(&size.to_ne_bytes());
            let before = r.0;
            fails(
                sunrise_link_transport_plugin_get(r.0.as_mut_ptr() as *mut _),
                SUNRISE_LINK_INVALID_ARGUMENT,
                "plugin_get(struct_size < 8)",
            );
            assert_eq!(r.0, before, "output written on failure");
        }
        // An older caller (header plus two slots): nothing past its size is written.
        let mut r = Raw([0xA5u8; 256]);
        let raw = &mut r.0;
        raw[4..8].copy_from_slice(&24u32.to_ne_bytes());
        assert_eq!(
            sunrise_link_transport_plugin_get(raw.as_mut_ptr() as *mut _),
            0
        );
        assert_eq!(u32::from_ne_bytes(raw[4..8].try_into().unwrap()), 24);
        assert!(
            raw[24..].iter().all(|&b| b == 0xA5),
            "wrote past struct_size"
        );
        // A newer caller (bigger struct): only our size is written.
        let ours = std::mem::size_of::<sunrise_link_transport_plugin_t>();
        let mut r = Raw([0xA5u8; 512]);
        let raw = &mut r.0;
        raw[4..8].copy_from_slice(&(400u32).to_ne_bytes());
        assert_eq!(
            sunrise_link_transport_plugin_get(raw.as_mut_ptr() as *mut _),
            0
        );
        assert_eq!(
            u32::from_ne_bytes(raw[4..8].try_into().unwrap()) as usize,
            ours
        );
        assert!(raw[ours..].iter().all(|&b| b == 0xA5));
        // NULL is a no-op for destroy.
        assert_eq!(sunrise_link_transport_destroy(null_mut()), 0);
    }
}

#[test]
fn create_rejects_bad_callbacks() {
    unsafe {
        let mut out: *mut sunrise_link_transport_t = NEVER as *mut _;
        let cb = sunrise_link_host_callbacks_t {
            abi_version: SUNRISE_LINK_ABI_VERSION,
            struct_size: std::mem::size_of::<sunrise_link_host_callbacks_t>() as u32,
            user_data: null_mut(),
            lookup_remote_buffer: None,
            log: None,
            notify_progress: None,
            local_machine_id: null(),
        };
        fails(
            sunrise_link_transport_create(null(), &mut out),
            SUNRISE_LINK_INVALID_ARGUMENT,
            "create(NULL callbacks)",
        );
        fails(
            sunrise_link_transport_create(&cb, null_mut()),
            SUNRISE_LINK_INVALID_ARGUMENT,
            "create(NULL out)",
        );
        for size in [0u32, 4, 7] {
            let mut c = sunrise_link_host_callbacks_t { ..cb };
            c.struct_size = size;
            fails(
                sunrise_link_transport_create(&c, &mut out),
                SUNRISE_LINK_INVALID_ARGUMENT,
                "create(struct_size < 8)",
            );
        }
        let bad_utf8 = [0xffu8, 0xfe, 0];
        let mut c = sunrise_link_host_callbacks_t { ..cb };
        c.local_machine_id = bad_utf8.as_ptr() as *const c_char;
        fails(
            sunrise_link_transport_create(&c, &mut out),
            SUNRISE_LINK_INVALID_ARGUMENT,
            "create(non-UTF-8 machine id)",
        );
        assert_eq!(out as u64, NEVER, "out written on failure");
        // A short struct (an older host): the fields past struct_size count as NULL, even if
        // the bytes there are garbage.
        #[repr(C)]
        struct Padded {
            cb: sunrise_link_host_callbacks_t,
        }
        let mut p = Padded {
            cb: sunrise_link_host_callbacks_t { ..cb },
        };
        p.cb.struct_size = 16;
        p.cb.lookup_remote_buffer = Some(std::mem::transmute::<
            usize,
            unsafe extern "C" fn(
                *mut c_void,
                u64,
                u64,
                u64,
                i32,
                *mut sunrise_link_remote_buffer_t,
            ) -> i32,
        >(0x10));
        p.cb.local_machine_id = 0x10 as *const c_char;
        assert_eq!(sunrise_link_transport_create(&p.cb, &mut out), 0);
        assert_eq!(sunrise_link_transport_destroy(out), 0);
    }
}

#[test]
fn every_transport_call_rejects_null() {
    unsafe {
        let t = null_mut();
        let mut u = 0u64;
        let loc = CString::new("cuda:0").unwrap();
        let mut shm = [0 as c_char; 256];
        let calls: Vec<(&str, i32)> = vec![
            ("install", sunrise_link_transport_install(t, null())),
            ("uninstall", sunrise_link_transport_uninstall(t)),
            (
                "capabilities_get",
                sunrise_link_transport_capabilities_get(t, null_mut()),
            ),
            (
                "bandwidth_get",
                sunrise_link_transport_bandwidth_get(t, null_mut()),
            ),
            ("allocate", sunrise_link_sub_batch_allocate(t, 1, 0, &mut u)),
            ("free", sunrise_link_sub_batch_free(t, 1)),
            ("size", sunrise_link_sub_batch_size(t, 1, &mut u)),
            ("submit", sunrise_link_transfer_submit(t, 1, null(), 0)),
            ("status", sunrise_link_task_status_get(t, 1, 0, null_mut())),
            ("cancel", sunrise_link_task_cancel(t, 1, 0)),
            (
                "task_error",
                sunrise_link_task_error_get(t, 1, 0, null_mut(), 0),
            ),
            (
                "buffer_add",
                sunrise_link_buffer_add(
                    t,
                    0x1000 as *mut c_void,
                    1,
                    loc.as_ptr(),
                    shm.as_mut_ptr(),
                    256,
                ),
            ),
            (
                "buffer_remove",
                sunrise_link_buffer_remove(t, null_mut(), 0),
            ),
            ("segment_invalidate", sunrise_link_segment_invalidate(t, 1)),
            ("stats_get", sunrise_link_stats_get(t, null_mut())),
        ];
        for (name, rc) in calls {
            assert_eq!(rc, SUNRISE_LINK_INVALID_ARGUMENT, "{name}(NULL transport)");
        }
        assert_eq!(u, 0, "output written on failure");
    }
}

#[test]
fn uninstalled_transport_refuses_work_and_writes_nothing() {
    let t = Transport::create();
    unsafe {
        let mut st: sunrise_link_stats_t = std::mem::zeroed();
        st.ipc_requests = NEVER;
        fails(
            sunrise_link_stats_get(t.t, &mut st),
            SUNRISE_LINK_INVALID_ARGUMENT,
            "stats of an uninstalled transport",
        );
        assert_eq!(st.ipc_requests, NEVER);
        fails(
            sunrise_link_segment_invalidate(t.t, 1),
            SUNRISE_LINK_INVALID_ARGUMENT,
            "invalidate",
        );
    }
    assert_eq!(t.uninstall(), 0, "uninstall of an uninstalled transport");
    let h = t.allocate(4).expect("sub-batches exist before install");
    let r = [req(SUNRISE_LINK_OP_WRITE, 0x1000, 0, 0x2000, 16)];
    fails(
        t.submit(h, &r),
        SUNRISE_LINK_INVALID_ARGUMENT,
        "submit before install",
    );
    assert_eq!(t.size(h), Ok(0), "a refused submit appends nothing");
    assert_eq!(
        t.add(0x1000, 16, "cpu:0"),
        Err(SUNRISE_LINK_INVALID_ARGUMENT)
    );
    assert_eq!(t.remove(0x1000), SUNRISE_LINK_INVALID_ARGUMENT);
    assert_eq!(t.free(h), 0);
}

#[test]
fn bad_configs_fail_install_cleanly_and_a_good_one_then_works() {
    let (_g, emu) = serial();
    let objects = emu.live_transport_objects();
    let t = Transport::create();
    let bad: Vec<(String, i32)> = vec![
        ("not json".into(), SUNRISE_LINK_INVALID_ARGUMENT),
        ("[1, 2]".into(), SUNRISE_LINK_INVALID_ARGUMENT),
        ("\"text\"".into(), SUNRISE_LINK_INVALID_ARGUMENT),
        ("{\"worker_threads\": \"many\"}".into(), 1),
        ("{\"worker_threads\": 0}".into(), 1),
        ("{\"worker_threads\": 257}".into(), 1),
        ("{\"worker_threads\": -1}".into(), 1),
        ("{\"worker_threads\": 2.5}".into(), 1),
        ("{\"enable\": 1}".into(), 1),
        ("{\"enable_port_striping\": \"yes\"}".into(), 1),
        ("{\"async_memcpy_threshold\": -1}".into(), 1),
        ("{\"async_memcpy_threshold\": \"12 parsecs\"}".into(), 1),
        (
            "{\"async_memcpy_threshold\": 18446744073709551615}".into(),
            1,
        ),
        (
            "{\"async_memcpy_threshold\": \"99999999999999999999KiB\"}".into(),
            1,
        ),
        ("{\"async_memcpy_threshold\": [1]}".into(), 1),
        ("{\"port_striping_min_size\": 0}".into(), 1),
        ("{\"port_striping_min_size\": \"0MiB\"}".into(), 1),
        ("{\"max_sub_batch_size\": 0}".into(), 1),
        ("{\"max_sub_batch_size\": 8589934592}".into(), 1),
        ("{\"runtime_lib_dir\": 5}".into(), 1),
        (
            "{\"runtime_lib_dir\": \"/nonexistent/sunrise-link-test\"}".into(),
            SUNRISE_LINK_RUNTIME_ERROR,
        ),
    ];
    for (cfg, want) in &bad {
        let msg = fails(t.install(Some(cfg)), *want, cfg);
        assert_eq!(
            unsafe { sunrise_link_stats_get(t.t, &mut std::mem::zeroed()) },
            SUNRISE_LINK_INVALID_ARGUMENT,
            "{cfg}: left installed ({msg})"
        );
    }
    // Non-UTF-8 config text.
    let raw = [b'{', 0xff, b'}', 0];
    let rc = unsafe { sunrise_link_transport_install(t.t, raw.as_ptr() as *const c_char) };
    fails(rc, SUNRISE_LINK_INVALID_ARGUMENT, "non-UTF-8 config");
    assert_eq!(
        emu.live_transport_objects(),
        objects,
        "a failed install leaked"
    );
    // Unknown keys are warnings only; then a double install is refused.
    assert_eq!(
        t.install(Some(&config("\"no_such_key\": 1"))),
        0,
        "{}",
        last_error()
    );
    fails(
        t.install(Some(&config(""))),
        SUNRISE_LINK_INVALID_ARGUMENT,
        "double install",
    );
    assert_eq!(t.uninstall(), 0);
    assert_eq!(t.uninstall(), 0, "uninstall is idempotent");
    assert_eq!(t.install(Some(&config(""))), 0, "{}", last_error());
}

#[test]
fn outputs_and_sub_batch_handles() {
    let (_g, _emu) = serial();
    let t = Transport::installed("\"max_sub_batch_size\": 64");
    let other = Transport::installed("");
    unsafe {
        fails(
            sunrise_link_transport_capabilities_get(t.t, null_mut()),
            1,
            "caps(NULL)",
        );
        fails(
            sunrise_link_transport_bandwidth_get(t.t, null_mut()),
            1,
            "bw(NULL)",
        );
        fails(sunrise_link_stats_get(t.t, null_mut()), 1, "stats(NULL)");
        fails(
            sunrise_link_sub_batch_allocate(t.t, 4, 0, null_mut()),
            1,
            "allocate(NULL)",
        );
    }
    for n in [0u64, 65, u64::MAX] {
        assert_eq!(
            t.allocate(n),
            Err(SUNRISE_LINK_INVALID_ARGUMENT),
            "allocate({n})"
        );
    }
    let h = t.allocate(4).unwrap();
    assert_ne!(h, 0);
    unsafe {
        fails(
            sunrise_link_sub_batch_size(t.t, h, null_mut()),
            1,
            "size(NULL)",
        );
        fails(
            sunrise_link_task_status_get(t.t, h, 0, null_mut()),
            1,
            "status(NULL)",
        );
    }
    // Handles that are not live: never issued, stale, freed twice, foreign, bit-flipped.
    let h2 = t.allocate(4).unwrap();
    assert_eq!(t.free(h2), 0);
    let h3 = t.allocate(4).unwrap(); // reuses h2's slot with a new generation
    assert_ne!(h2, h3);
    let foreign = other.allocate(4).unwrap();
    let dead = vec![
        0u64,
        u64::MAX,
        1,
        h2,
        h ^ (1 << 40),
        h + 1000,
        h ^ 0x8000_0000,
        foreign,
    ];
    for bad in dead {
        let m = fails(t.free(bad), 1, "free(dead handle)");
        assert!(m.contains("not live"), "{m}");
        assert_eq!(t.size(bad), Err(1));
        assert_eq!(t.status(bad, 0), Err(1));
        assert_eq!(t.cancel(bad, 0), 1);
        assert_eq!(t.submit(bad, &[]), 1);
        assert_eq!(t.submit(bad, &[req(1, 0x1000, 0, 0x2000, 1)]), 1);
    }
    assert_eq!(t.size(h), Ok(0));
    assert_eq!(t.size(h3), Ok(0));
    // Task ids out of range; outputs untouched.
    for id in [0u64, 1, 4, u64::MAX] {
        let mut s = sunrise_link_task_status_t {
            status: 77,
            reserved: 77,
            transferred_bytes: NEVER,
        };
        let rc = unsafe { sunrise_link_task_status_get(t.t, h, id, &mut s) };
        let m = fails(rc, 1, "status(out of range)");
        assert!(m.contains("out of range"), "{m}");
        assert_eq!((s.status, s.transferred_bytes), (77, NEVER));
        assert_eq!(t.cancel(h, id), 1);
        let mut buf = [0x55 as c_char; 8];
        let rc = unsafe { sunrise_link_task_error_get(t.t, h, id, buf.as_mut_ptr(), 8) };
        fails(rc, 1, "task_error(out of range)");
        assert!(buf.iter().all(|&c| c == 0x55));
    }
    // Capacity: too many requests append nothing.
    let r = req(SUNRISE_LINK_OP_WRITE, 0, 0, 0, 0);
    assert_eq!(t.submit(h, &[r; 5]), SUNRISE_LINK_TOO_MANY_REQUESTS);
    assert_eq!(t.size(h), Ok(0));
    unsafe {
        fails(
            sunrise_link_transfer_submit(t.t, h, null(), 3),
            1,
            "submit(NULL requests)",
        );
        assert_eq!(sunrise_link_transfer_submit(t.t, h, null(), 0), 0);
    }
    assert_eq!(t.size(h), Ok(0));
    assert_eq!(t.submit(h, &[r; 4]), 0);
    assert_eq!(t.submit(h, &[r]), SUNRISE_LINK_TOO_MANY_REQUESTS);
    for (s, _) in t.wait_all(h, 4, WAIT) {
        assert_eq!(
            s, SUNRISE_LINK_TASK_COMPLETED,
            "zero-length requests complete"
        );
    }
    // A completed task cannot be cancelled; cancel says OK and the status stays.
    assert_eq!(t.cancel(h, 0), 0);
    assert_eq!(t.status(h, 0).unwrap().0, SUNRISE_LINK_TASK_COMPLETED);
    // task_error_get: NULL buffer, zero length, truncation.
    unsafe {
        fails(
            sunrise_link_task_error_get(t.t, h, 0, null_mut(), 16),
            1,
            "task_error(NULL)",
        );
        let mut b = [0x55 as c_char; 4];
        fails(
            sunrise_link_task_error_get(t.t, h, 0, b.as_mut_ptr(), 0),
            1,
            "task_error(len 0)",
        );
        assert_eq!(b[0], 0x55);
        assert_eq!(sunrise_link_task_error_get(t.t, h, 0, b.as_mut_ptr(), 1), 0);
        assert_eq!(b[0], 0);
    }
    assert_eq!(t.free(h), 0);
    assert_eq!(t.free(h), 1, "double free");
    assert_eq!(t.free(h3), 0);
    assert_eq!(other.free(foreign), 0);
}

#[test]
fn buffer_registration_rejects_bad_arguments() {
    let (_g, emu) = serial();
    let t = Transport::installed("");
    let dev = emu.alloc(0, 1 << 16);
    let dev1 = emu.alloc(1, 4096);
    let loc0 = CString::new("cuda:0").unwrap();
    unsafe {
        let mut shm = [0x55 as c_char; 256];
        let p = dev as *mut c_void;
        fails(
            sunrise_link_buffer_add(t.t, p, 4096, null(), shm.as_mut_ptr(), 256),
            1,
            "NULL location",
        );
        fails(
            sunrise_link_buffer_add(t.t, p, 4096, loc0.as_ptr(), null_mut(), 256),
            1,
            "NULL shm_path",
        );
        for len in [0usize, 1, 128] {
            fails(
                sunrise_link_buffer_add(t.t, p, 4096, loc0.as_ptr(), shm.as_mut_ptr(), len),
                1,
                "short shm_path",
            );
        }
        let bad_utf8 = [b'c', 0xff, b':', b'0', 0];
        fails(
            sunrise_link_buffer_add(
                t.t,
                p,
                4096,
                bad_utf8.as_ptr() as *const c_char,
                shm.as_mut_ptr(),
                256,
            ),
            1,
            "non-UTF-8 location",
        );
        assert!(
            shm.iter().all(|&c| c == 0x55),
            "shm_path written on failure"
        );
    }
    // Zero, NULL and wrapping ranges.
    for (a, l) in [(0u64, 16u64), (dev, 0), (u64::MAX - 8, 16), (dev, u64::MAX)] {
        for loc in ["cuda:0", "cpu:0", "*"] {
            assert_eq!(t.add(a, l, loc), Err(1), "[{a:#x}, +{l}) at {loc}");
        }
    }
    // Locations: bad devices, unknown types.
    let garbage = 0x7000_0000_1000u64;
    for (loc, want) in [
        ("cuda:4", SUNRISE_LINK_DEVICE_NOT_FOUND),
        ("cuda:2147483647", SUNRISE_LINK_DEVICE_NOT_FOUND),
        ("npu:99", SUNRISE_LINK_DEVICE_NOT_FOUND),
        ("rocm:0", SUNRISE_LINK_INVALID_ARGUMENT),
        ("tpu:0", SUNRISE_LINK_INVALID_ARGUMENT),
        ("cuda :0", SUNRISE_LINK_INVALID_ARGUMENT),
    ] {
        let r = t.add(dev, 4096, loc);
        assert_eq!(r, Err(want), "{loc}: {}", last_error());
        assert!(!last_error().is_empty());
    }
    // Nothing of the refused registrations stayed.
    assert_eq!(t.remove(dev), SUNRISE_LINK_ADDRESS_NOT_REGISTERED);
    // An index that does not parse: the owner is asked; garbage has none.
    for loc in ["cuda:abc", "cuda:-1", "cuda:", "cuda:99999999999", "npu:x"] {
        assert_eq!(
            t.add(garbage, 4096, loc),
            Err(SUNRISE_LINK_DEVICE_NOT_FOUND),
            "{loc}"
        );
    }
    // Host memory named as a device, and device memory at the wrong device or inside an
    // allocation, fail in the runtime or are refused.
    let host = vec![0u8; 4096];
    assert!(t.add(host.as_ptr() as u64, 4096, "cuda:0").is_err());
    // An interior pointer: refused, or (when the runtime's handle carries the offset, as the
    // emulator's does) accepted; either way no crash, and it can be removed again.
    if t.add(dev + 4096, 4096, "cuda:0").is_ok() {
        assert_eq!(t.remove(dev + 4096), 0);
    }
    let s = t
        .add(dev, 1 << 16, "cuda:abc")
        .expect("owner found by attributes");
    assert_eq!(s.len(), 128);
    assert!(s
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
    assert_eq!(t.add(dev1, 4096, "npu:1").map(|s| s.len()), Ok(128));
    // Removal: unknown, inside, twice.
    assert_eq!(t.remove(dev + 1), SUNRISE_LINK_ADDRESS_NOT_REGISTERED);
    assert_eq!(t.remove(0), SUNRISE_LINK_ADDRESS_NOT_REGISTERED);
    assert_eq!(t.remove(dev), 0);
    assert_eq!(t.remove(dev), SUNRISE_LINK_ADDRESS_NOT_REGISTERED);
    assert_eq!(t.remove(dev1), 0);
    drop(t);
    emu.free(dev);
    emu.free(dev1);
}

/// A remote buffer in this process (registered by a second transport, as a peer would),
/// followed by a guard region of the same allocation that is never published.
struct Guarded {
    alloc: u64,
    len: u64,
    guard: u64,
    shm: String,
}

const GUARD_BYTE: u8 = 0xE7;

fn guarded(emu: &Emu, owner: &Transport, dev: i32, len: u64, guard: u64) -> Guarded {
    let alloc = emu.alloc(dev, (len + guard) as usize);
    emu.write(alloc, &pattern(alloc, len as usize));
    emu.write(alloc + len, &vec![GUARD_BYTE; guard as usize]);
    let shm = owner.add(alloc, len, &format!("cuda:{dev}")).unwrap();
    Guarded {
        alloc,
        len,
        guard,
        shm,
    }
}

impl Guarded {
    fn guard_intact(&self, emu: &Emu) -> bool {
        emu.read(self.alloc + self.len, self.guard as usize)
            .iter()
            .all(|&b| b == GUARD_BYTE)
    }
}

#[test]
fn remote_ranges_outside_the_registered_buffer_never_touch_bytes() {
    let (_g, emu) = serial();
    let owner = Transport::installed("");
    let t = Transport::installed("");
    let len = 64 << 10;
    let g = guarded(emu, &owner, 1, len, 64 << 10);
    const SEG: u64 = 9;
    let base = 0x5000_0000_0000u64; // the owner's address as published (any value works)
    t.publish(Remote {
        segment: SEG,
        base,
        length: len,
        location: "cuda:1".into(),
        shm_path: g.shm.clone(),
        machine_id: MACHINE.into(),
    });
    let local = emu.alloc(0, 2 * len as usize);
    emu.write(local, &vec![0x11; 2 * len as usize]);
    t.add(local, 2 * len, "cuda:0").unwrap();
    let before_remote = emu.read(g.alloc, len as usize);
    let h = t.allocate(256).unwrap();
    let mut reqs = Vec::new();
    for op in [SUNRISE_LINK_OP_READ, SUNRISE_LINK_OP_WRITE] {
        for (off, l) in [
            (len - 1, 2),           // crosses the end by one byte
            (len, 1),               // just past the end
            (len, 4096),            // inside the guard
            (0, len + 1),           // the whole buffer plus one
            (u64::MAX - base, 16),  // wraps
            (len - 4096, u64::MAX), // wraps
            (u64::MAX - base - 2, 2),
        ] {
            reqs.push(req(op, local, SEG, base.wrapping_add(off), l));
        }
        reqs.push(req(op, local, SEG, base - 1, 2)); // starts before the buffer
        reqs.push(req(op, local, SEG, 0, 16));
        reqs.push(req(op, local, SEG + 1, base, 16)); // unknown segment
    }
    assert_eq!(t.submit(h, &reqs), 0);
    for (i, (s, b)) in t
        .wait_all(h, reqs.len() as u64, WAIT)
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            (s, b),
            (SUNRISE_LINK_TASK_FAILED, 0),
            "request {i}: {:?}",
            reqs[i].length
        );
        assert!(!t.task_error(h, i as u64).is_empty());
    }
    assert!(g.guard_intact(emu), "guard region written");
    assert_eq!(
        emu.read(g.alloc, len as usize),
        before_remote,
        "remote bytes changed"
    );
    assert_eq!(
        emu.read(local, 2 * len as usize),
        vec![0x11; 2 * len as usize]
    );
    // The exact buffer works, both ways, and the guard still holds.
    let ok = [
        req(SUNRISE_LINK_OP_READ, local, SEG, base, len),
        req(
            SUNRISE_LINK_OP_WRITE,
            local + len,
            SEG,
            base + len - 4096,
            4096,
        ),
    ];
    assert_eq!(t.submit(h, &ok[..1]), 0);
    let n = t.size(h).unwrap();
    assert_eq!(t.wait(h, n - 1, WAIT).0, SUNRISE_LINK_TASK_COMPLETED);
    assert_eq!(t.submit(h, &ok[1..]), 0);
    assert_eq!(t.wait(h, n, WAIT).0, SUNRISE_LINK_TASK_COMPLETED);
    assert_eq!(emu.read(local, len as usize), before_remote);
    assert_eq!(emu.read(g.alloc + len - 4096, 4096), vec![0x11; 4096]);
    assert!(g.guard_intact(emu));
    drop(t);
    drop(owner);
    emu.free(local);
    emu.free(g.alloc);
}

#[test]
fn malformed_remote_metadata_fails_the_task_only() {
    let (_g, emu) = serial();
    let owner = Transport::installed("");
    let t = Transport::installed("");
    let g = guarded(emu, &owner, 2, 8192, 4096);
    let local = emu.alloc(0, 8192);
    t.add(local, 8192, "cuda:0").unwrap();
    let good = g.shm.clone();
    let cases: Vec<(&str, String, &str)> = vec![
        ("odd length", good[..127].to_string(), "cuda:2"),
        ("non-hex", format!("{}G", &good[..127]), "cuda:2"),
        ("short", good[..64].to_string(), "cuda:2"),
        ("long", format!("{good}00"), "cuda:2"),
        ("empty", String::new(), "cuda:2"),
        ("posix shm name", "/mooncake_shm_1".into(), "cuda:2"),
        ("multibyte", "é".repeat(64), "cuda:2"),
        ("zero handle", "0".repeat(128), "cuda:2"),
        ("flipped byte", flip(&good, 40), "cuda:2"),
        ("host location", good.clone(), "cpu:0"),
        ("star", good.clone(), "*"),
        ("device beyond count", good.clone(), "cuda:4"),
        ("negative device", good.clone(), "cuda:-1"),
        ("unparsable device", good.clone(), "cuda:abc"),
        ("unknown type", good.clone(), "rocm:0"),
    ];
    let h = t.allocate(64).unwrap();
    for (i, (what, shm, loc)) in cases.iter().enumerate() {
        let seg = 100 + i as u64;
        t.publish(Remote {
            segment: seg,
            base: 0x4000_0000,
            length: 8192,
            location: loc.to_string(),
            shm_path: shm.clone(),
            machine_id: MACHINE.into(),
        });
        assert_eq!(
            t.submit(
                h,
                &[req(SUNRISE_LINK_OP_WRITE, local, seg, 0x4000_0000, 8192)]
            ),
            0
        );
        let (s, _) = t.wait(h, i as u64, WAIT);
        assert_eq!(s, SUNRISE_LINK_TASK_FAILED, "{what}");
        assert!(!t.task_error(h, i as u64).is_empty(), "{what}: no message");
    }
    // Another machine.
    t.publish(Remote {
        segment: 99,
        base: 0x4000_0000,
        length: 8192,
        location: "cuda:2".into(),
        shm_path: good.clone(),
        machine_id: "elsewhere".into(),
    });
    let n = t.size(h).unwrap();
    assert_eq!(
        t.submit(h, &[req(SUNRISE_LINK_OP_WRITE, local, 99, 0x4000_0000, 8)]),
        0
    );
    assert_eq!(t.wait(h, n, WAIT).0, SUNRISE_LINK_TASK_FAILED);
    assert!(
        t.task_error(h, n).contains("machine"),
        "{}",
        t.task_error(h, n)
    );
    // The host's lookup failing with any status: FAILED, the status named.
    for code in [1u64, 3, 5, 7, 101, 199, 12345] {
        t.host
            .force_status
            .store(code, std::sync::atomic::Ordering::Relaxed);
        let n = t.size(h).unwrap();
        assert_eq!(
            t.submit(h, &[req(SUNRISE_LINK_OP_READ, local, 77, 0x10, 8)]),
            0
        );
        assert_eq!(
            t.wait(h, n, WAIT).0,
            SUNRISE_LINK_TASK_FAILED,
            "lookup -> {code}"
        );
    }
    t.host
        .force_status
        .store(0, std::sync::atomic::Ordering::Relaxed);
    // The host's answer with a string lacking its NUL, or not UTF-8.
    for (mode, want) in [(1u64, "NUL"), (2, "UTF-8")] {
        t.host
            .garbage
            .store(mode, std::sync::atomic::Ordering::Relaxed);
        let n = t.size(h).unwrap();
        let r = req(SUNRISE_LINK_OP_READ, local, 100, 0x4000_0000, 8);
        assert_eq!(t.submit(h, &[r]), 0);
        assert_eq!(t.wait(h, n, WAIT).0, SUNRISE_LINK_TASK_FAILED);
        let m = t.task_error(h, n);
        assert!(m.contains(want), "{m}");
    }
    t.host
        .garbage
        .store(0, std::sync::atomic::Ordering::Relaxed);
    assert!(g.guard_intact(emu));
    assert_eq!(
        emu.read(g.alloc, 8192),
        pattern(g.alloc, 8192),
        "remote bytes changed"
    );
    drop(t);
    drop(owner);
    assert_eq!(emu.live("ipc_open"), 0, "IPC mappings leaked");
    emu.free(local);
    emu.free(g.alloc);
}

fn flip(hex: &str, at: usize) -> String {
    let mut b = hex.as_bytes().to_vec();
    b[at] = if b[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).unwrap()
}

#[test]
fn request_fields_are_checked_before_any_copy() {
    let (_g, emu) = serial();
    let t = Transport::installed("");
    let a = emu.alloc(0, 8192);
    let b = emu.alloc(0, 8192 + 4096);
    emu.write(a, &pattern(1, 8192));
    emu.write(b, &vec![GUARD_BYTE; 8192 + 4096]);
    t.add(a, 8192, "cuda:0").unwrap();
    t.add(b, 8192, "cuda:0").unwrap();
    let h = t.allocate(64).unwrap();
    let reqs = [
        req(2, a, 0, b, 16),                                   // unknown opcode
        req(u32::MAX, a, 0, b, 16),                            // unknown opcode
        req(SUNRISE_LINK_OP_WRITE, u64::MAX - 4, 0, b, 16),    // source wraps
        req(SUNRISE_LINK_OP_WRITE, a, 0, u64::MAX - 4, 16),    // target wraps
        req(SUNRISE_LINK_OP_WRITE, a, 0, b, u64::MAX),         // huge
        req(SUNRISE_LINK_OP_WRITE, a + 8000, 0, b, 8192),      // source past its allocation
        req(SUNRISE_LINK_OP_WRITE, a, 0, b + 8192 - 8, 16),    // target partly registered
        req(SUNRISE_LINK_OP_WRITE, a, 0, b + 8192 + 4090, 16), // past the target's allocation
    ];
    assert_eq!(t.submit(h, &reqs), 0);
    for (i, (s, bytes)) in t
        .wait_all(h, reqs.len() as u64, WAIT)
        .into_iter()
        .enumerate()
    {
        assert_eq!((s, bytes), (SUNRISE_LINK_TASK_FAILED, 0), "request {i}");
        assert!(!t.task_error(h, i as u64).is_empty());
    }
    assert_eq!(emu.read(b, 8192 + 4096), vec![GUARD_BYTE; 8192 + 4096]);
    drop(t);
    emu.free(a);
    emu.free(b);
}

#[test]
fn unregistered_and_partly_registered_host_ranges_fail_without_touching_memory() {
    let (_g, emu) = serial();
    let t = Transport::installed("");
    let dev = emu.alloc(0, 8192);
    emu.write(dev, &pattern(5, 8192));
    t.add(dev, 8192, "cuda:0").unwrap();
    // Host memory: 4 KiB registered, followed by 4 KiB that is not.
    let mut host = vec![0x22u8; 8192];
    let hp = host.as_mut_ptr() as u64;
    t.add(hp, 4096, "cpu:0").unwrap();
    // Read-only memory of this process.
    static READ_ONLY: [u8; 4096] = [0x44; 4096];
    let ro = READ_ONLY.as_ptr() as u64;
    let h = t.allocate(16).unwrap();
    let reqs = [
        req(SUNRISE_LINK_OP_READ, hp + 2048, 0, dev, 4096), // partly registered
        req(SUNRISE_LINK_OP_READ, 0x10, 0, dev, 16),        // garbage pointer
        req(SUNRISE_LINK_OP_WRITE, 0xdead_0000_0000, 0, dev, 16), // unmapped source
        req(SUNRISE_LINK_OP_WRITE, dev, 0, 0xdead_0000_0000, 16), // unmapped local target
        req(SUNRISE_LINK_OP_READ, ro, 0, dev, 16),          // read-only destination
        req(SUNRISE_LINK_OP_WRITE, dev, 0, ro, 16),         // read-only destination
        req(SUNRISE_LINK_OP_WRITE, ro + 4000, 0, dev, 1 << 30), // runs off the mapping
    ];
    assert_eq!(t.submit(h, &reqs), 0);
    for (i, (s, _)) in t
        .wait_all(h, reqs.len() as u64, WAIT)
        .into_iter()
        .enumerate()
    {
        assert_eq!(s, SUNRISE_LINK_TASK_FAILED, "request {i}");
        let m = t.task_error(h, i as u64);
        assert!(m.contains("registered"), "request {i}: {m}");
    }
    assert!(host.iter().all(|&b| b == 0x22), "host memory written");
    assert!(READ_ONLY.iter().all(|&b| b == 0x44));
    assert_eq!(
        emu.read(dev, 8192),
        pattern(5, 8192),
        "device memory written"
    );
    // Unregistered host memory of this process (TENT does not require registration of the
    // local side): readable as a source, writable as a destination.
    let unreg = vec![0x33u8; 4096];
    let n = t.size(h).unwrap();
    let ok = [
        req(
            SUNRISE_LINK_OP_WRITE,
            unreg.as_ptr() as u64,
            0,
            dev + 4096,
            16,
        ),
        req(SUNRISE_LINK_OP_WRITE, ro, 0, dev + 4096 + 16, 16),
    ];
    assert_eq!(t.submit(h, &ok), 0);
    for i in 0..2 {
        assert_eq!(t.wait(h, n + i, WAIT).0, SUNRISE_LINK_TASK_COMPLETED);
    }
    let mut want = vec![0x33u8; 16];
    want.extend([0x44u8; 16]);
    assert_eq!(emu.read(dev + 4096, 32), want);
    emu.write(dev, &pattern(5, 8192));
    // The registered part works.
    let n = t.size(h).unwrap();
    assert_eq!(
        t.submit(h, &[req(SUNRISE_LINK_OP_READ, hp, 0, dev, 4096)]),
        0
    );
    assert_eq!(t.wait(h, n, WAIT).0, SUNRISE_LINK_TASK_COMPLETED);
    assert_eq!(&host[..4096], &pattern(5, 8192)[..4096]);
    assert!(host[4096..].iter().all(|&b| b == 0x22));
    drop(t);
    emu.free(dev);
}

/// `count` far beyond the sub-batch's capacity must be refused before the request array is
/// read or copied (a huge count must not allocate or read past the caller's array).
#[test]
fn huge_request_counts_are_refused_before_reading() {
    let (_g, _emu) = serial();
    let t = Transport::installed("");
    let h = t.allocate(8).unwrap();
    let r = [req(SUNRISE_LINK_OP_WRITE, 0, 0, 0, 0); 2];
    for count in [9usize, 1 << 20, 1 << 40, usize::MAX / 40, usize::MAX] {
        let rc = unsafe { sunrise_link_transfer_submit(t.t, h, r.as_ptr(), count) };
        fails(rc, SUNRISE_LINK_TOO_MANY_REQUESTS, "huge count");
    }
    assert_eq!(t.size(h), Ok(0));
}

/// An unregistered device range that runs past its allocation (into the next one) fails as
/// a whole, also when striping would split it into lanes: no byte of either allocation is
/// written.
#[test]
fn unregistered_device_range_past_its_allocation_is_not_striped() {
    let (_g, emu) = serial();
    emu.configure("[[link]]\na = [0, 8]\nb = [1, 8]\n");
    let t = Transport::installed(
        "\"enable_port_striping\": true, \"port_striping_min_size\": \"4KiB\", \
         \"worker_threads\": 2",
    );
    let src = emu.alloc(0, 64 << 10);
    emu.write(src, &pattern(3, 64 << 10));
    t.add(src, 64 << 10, "cuda:0").unwrap();
    let x = emu.alloc(1, 0x9000);
    let y = emu.alloc(1, 0x3000);
    emu.write(x, &vec![0x11; 0x9000]);
    emu.write(y, &vec![0x22; 0x3000]);
    let h = t.allocate(8).unwrap();
    let reqs = [
        req(SUNRISE_LINK_OP_WRITE, src, 0, x + 0x7000, 0x4000),
        req(SUNRISE_LINK_OP_READ, src, 0, x + 0x7000, 0x4000),
    ];
    assert_eq!(t.submit(h, &reqs), 0);
    for i in 0..2 {
        assert_eq!(
            t.wait(h, i, WAIT).0,
            SUNRISE_LINK_TASK_FAILED,
            "request {i}"
        );
    }
    assert_eq!(emu.read(x, 0x9000), vec![0x11; 0x9000]);
    assert_eq!(emu.read(y, 0x3000), vec![0x22; 0x3000]);
    assert_eq!(emu.read(src, 64 << 10), pattern(3, 64 << 10));
    drop(t);
    for p in [src, x, y] {
        emu.free(p);
    }
}

#[test]
fn device_plugin_rejects_null_and_garbage() {
    use std::ffi::c_int;
    use sunrise_link::abi::device_plugin::*;
    unsafe {
        assert_eq!(tent_register_device_plugin(null_mut()), -1);
        let mut d: sunrise_link_device_plugin_t = std::mem::zeroed();
        assert_eq!(tent_register_device_plugin(&mut d), 0);
        let loc = CString::new("cuda:0").unwrap();
        let mut p: *mut c_void = NEVER as *mut c_void;
        let mut bus = [0 as c_char; 32];
        let mut where_ = [std::mem::zeroed::<sunrise_link_location_t>(); 1];
        // A NULL context everywhere.
        assert_eq!((d.alloc.unwrap())(null_mut(), &mut p, 16, loc.as_ptr()), -1);
        assert_eq!(p as u64, NEVER);
        assert_eq!((d.free.unwrap())(null_mut(), 0x1000 as *mut c_void, 16), -1);
        let mut h = [0u8; 16];
        assert_eq!(
            (d.memcpy_sync.unwrap())(null_mut(), h.as_mut_ptr() as *mut c_void, null_mut(), 16),
            -1
        );
        let q = (d.query_location.unwrap())(null_mut(), null_mut(), 16, where_.as_mut_ptr(), 1);
        assert_eq!(q, 0);
        assert_eq!((d.get_device_count.unwrap())(null_mut()), -1);
        assert_eq!(
            (d.get_device_pci_bus_id.unwrap())(null_mut(), 0, bus.as_mut_ptr(), 32),
            -1
        );
        assert_eq!((d.destroy_plugin.unwrap())(null_mut()), 0);
        // With a context (when the runtime is found through MC_TANGRT_*): bad arguments.
        let ctx = (d.create_plugin.unwrap())();
        if ctx.is_null() {
            assert!(
                !last_error().is_empty(),
                "create_plugin failed without a message"
            );
            return;
        }
        for l in ["cpu:0", "cuda:abc", "cuda:-1", "rocm:0", ""] {
            let l = CString::new(l).unwrap();
            assert_eq!((d.alloc.unwrap())(ctx, &mut p, 16, l.as_ptr()), -1);
        }
        assert_eq!((d.alloc.unwrap())(ctx, null_mut(), 16, loc.as_ptr()), -1);
        assert_eq!((d.free.unwrap())(ctx, 0x1000 as *mut c_void, 16), -1);
        assert_eq!((d.free.unwrap())(ctx, null_mut(), 16), 0);
        let q = (d.query_location.unwrap())(ctx, 0x1000 as *mut c_void, 16, null_mut(), 1);
        assert_eq!(q, 0);
        for (dev, len) in [(-1 as c_int, 32usize), (1000, 32), (0, 0), (0, 3)] {
            assert_eq!(
                (d.get_device_pci_bus_id.unwrap())(ctx, dev, bus.as_mut_ptr(), len),
                -1,
                "pci bus id of {dev} into {len} bytes"
            );
        }
        assert_eq!((d.destroy_plugin.unwrap())(ctx), 0);
    }
}

/// The header's contract edges: once a submit has returned, none of the sub-batch's tasks reads
/// TASK_INITIAL, and the id one past the last is InvalidArgument; `task_error_get` with `len` 0
/// is InvalidArgument and writes nothing, `len` 1 gives "", a short buffer a cut message.
#[test]
fn contract_edges_task_states_and_error_buffers() {
    let (_g, emu) = serial();
    let t = Transport::installed("");
    let len = 1u64 << 16;
    let (a, b) = (emu.alloc(0, len as usize), emu.alloc(1, len as usize));
    t.add(a, len, "cuda:0").unwrap();
    t.add(b, len, "cuda:1").unwrap();
    let h = t.allocate(32).unwrap();
    for _ in 0..4 {
        // Every fourth request names an unregistered source: a FAILED task with a message.
        let reqs: Vec<_> = (0..8)
            .map(|i| match i % 4 {
                3 => req(SUNRISE_LINK_OP_WRITE, 0x10, 0, b, 16),
                _ => req(SUNRISE_LINK_OP_WRITE, a, 0, b, len),
            })
            .collect();
        assert_eq!(t.submit(h, &reqs), 0, "{}", last_error());
        let n = t.size(h).unwrap();
        for id in 0..n {
            let s = t.status(h, id).unwrap().0;
            assert_ne!(s, SUNRISE_LINK_TASK_INITIAL, "task {id} read INITIAL");
        }
        assert_eq!(t.status(h, n), Err(SUNRISE_LINK_INVALID_ARGUMENT));
    }
    let states = t.wait_all(h, 32, Duration::from_secs(20));
    assert_eq!(states[3].0, SUNRISE_LINK_TASK_FAILED);
    let full = t.task_error(h, 3);
    assert!(full.len() > 8, "{full}");
    let mut buf = [0x55 as c_char; 8];
    // SAFETY: `buf` holds 8 writable bytes, at least the length given each time.
    unsafe {
        let rc = sunrise_link_task_error_get(t.t, h, 3, buf.as_mut_ptr(), 0);
        assert_eq!(rc, SUNRISE_LINK_INVALID_ARGUMENT);
        assert!(last_error().contains("too small"), "{}", last_error());
        assert!(buf.iter().all(|&c| c == 0x55), "len 0: nothing written");
        assert_eq!(
            sunrise_link_task_error_get(t.t, h, 3, buf.as_mut_ptr(), 1),
            0
        );
        assert_eq!(buf[0], 0, "len 1: the empty string");
        assert_eq!(
            sunrise_link_task_error_get(t.t, h, 3, buf.as_mut_ptr(), 8),
            0
        );
        let cut = CStr::from_ptr(buf.as_ptr()).to_str().unwrap();
        assert_eq!(cut, &full[..7], "cut to len - 1 bytes");
    }
    assert_eq!(t.free(h), 0);
    assert_eq!(t.remove(a), 0);
    assert_eq!(t.remove(b), 0);
    emu.free(a);
    emu.free(b);
}
