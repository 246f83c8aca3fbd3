//! Runtime calls on the registered-memory hot path, from the emulator's counters: one copy
//! call per request (peer-device and cached-IPC requests make no other call; same-device
//! submits ask for the caller's device once), one call for a run of contiguous requests, and
//! no call at all for the platform's "where is this memory" question on registered memory.

use crate::support::table::*;
use std::ffi::{c_void, CStr};

const N: u64 = 200;

/// Submits `reqs` in one call, waits for all, returns the runtime calls made.
fn calls(
    x: &Xport,
    emu: &Emu,
    reqs: &[sunrise_link::abi::transport::sunrise_link_request_t],
) -> u64 {
    let b = x.batch(reqs.len() as u64);
    emu.reset_counters();
    assert_eq!(x.submit(b, reqs), 0);
    for i in 0..reqs.len() as u64 {
        assert_eq!(x.wait(b, i).0, COMPLETED, "{}", x.error(b, i));
    }
    let total = emu.total_calls();
    x.free_batch(b);
    total
}

/// Submits each request on its own (batch 1, as a host submitting one request at a time);
/// returns the runtime calls per request.
fn calls_one_by_one(
    x: &Xport,
    emu: &Emu,
    reqs: &[sunrise_link::abi::transport::sunrise_link_request_t],
) -> f64 {
    let total: u64 = reqs
        .iter()
        .map(|r| calls(x, emu, std::slice::from_ref(r)))
        .sum();
    total as f64 / reqs.len() as f64
}

#[test]
fn one_runtime_call_per_request_and_per_contiguous_run() {
    scenario(
        "one_runtime_call_per_request_and_per_contiguous_run",
        &[("TANG_EMU_DEVICES", "4")],
        || {
            let dev = Dev::open();
            let emu = Emu::open();
            let x = Xport::new("{}");
            let len = 4096u64;
            let a = dev.alloc(0, (2 * N * len) as usize);
            let b = dev.alloc(0, (2 * N * len) as usize);
            let c = dev.alloc(1, (2 * N * len) as usize);
            for (p, l) in [(a, "cuda:0"), (b, "cuda:0"), (c, "cuda:1")] {
                x.add(p, 2 * N * len, l).unwrap();
            }
            dev.write(a, &pattern((2 * N * len) as usize, 9));
            // Every other block: nothing merges.
            let strided = |dst: u64| -> Vec<_> {
                (0..N)
                    .map(|i| req(WRITE, a + 2 * i * len, 0, dst + 2 * i * len, len))
                    .collect()
            };
            let contiguous = |dst: u64| -> Vec<_> {
                (0..64)
                    .map(|i| req(WRITE, a + i * len, 0, dst + i * len, len))
                    .collect()
            };
            let same = calls(&x, &emu, &strided(b)) as f64 / N as f64;
            let peer = calls(&x, &emu, &strided(c)) as f64 / N as f64;
            let peer_one = calls_one_by_one(&x, &emu, &strided(c)[..50]);
            let same_one = calls_one_by_one(&x, &emu, &strided(b)[..50]);
            let peer_run = calls(&x, &emu, &contiguous(c));
            let same_run = calls(&x, &emu, &contiguous(b));
            println!(
                "runtime calls per request: same-device {same:.3}, peer {peer:.3}; one request \
                 per submit: same-device {same_one:.2}, peer {peer_one:.2}; 64 contiguous 4 KiB \
                 requests: peer {peer_run}, same-device {same_run}"
            );
            assert_eq!(peer, 1.0, "peer: tangMemcpyPeer only");
            assert_eq!(peer_one, 1.0, "peer, one request per submit");
            assert_eq!(
                same,
                1.0 + 1.0 / N as f64,
                "same-device: the copies + one tangGetDevice"
            );
            assert_eq!(same_one, 2.0, "same-device, one request per submit");
            assert_eq!(
                peer_run, 1,
                "64 contiguous peer requests: one tangMemcpyPeer"
            );
            assert_eq!(
                same_run, 2,
                "64 contiguous requests: one tangMemcpy + tangGetDevice"
            );
            assert_eq!(
                emu.calls("tangSetDevice"),
                0,
                "device 0 was current already"
            );
            let sent = pattern((2 * N * len) as usize, 9)[..(64 * len) as usize].to_vec();
            assert_eq!(dev.read(b, (64 * len) as usize), sent);
            assert_eq!(dev.read(c, (64 * len) as usize), sent);
        },
    );
}

#[test]
fn ipc_hot_path_calls() {
    scenario("ipc_hot_path_calls", &[("TANG_EMU_DEVICES", "2")], || {
        let dev = Dev::open();
        let emu = Emu::open();
        let x = Xport::new("{}");
        let len = 4096u64;
        let exported = dev.alloc(1, (2 * N * len) as usize);
        let shm = x.add(exported, 2 * N * len, "cuda:1").unwrap();
        let mine = dev.alloc(0, (2 * N * len) as usize);
        x.add(mine, 2 * N * len, "cuda:0").unwrap();
        x.set_remote(
            3,
            Remote {
                base: 0x7000_0000,
                length: 2 * N * len,
                location: "cuda:1".into(),
                shm_path: shm,
                machine_id: MACHINE.into(),
            },
        );
        let reqs: Vec<_> = (0..N)
            .map(|i| req(READ, mine + 2 * i * len, 3, 0x7000_0000 + 2 * i * len, len))
            .collect();
        calls(&x, &emu, &reqs[..1]); // opens the handle
        let r = calls(&x, &emu, &reqs) as f64 / N as f64;
        let one = calls_one_by_one(&x, &emu, &reqs[..50]);
        println!("runtime calls per cached IPC request: {r:.2}; one per submit: {one:.2}");
        assert_eq!(r, 1.0, "IPC: {r} calls per request");
        assert_eq!(
            one, 1.0,
            "IPC, one request per submit: {one} calls per request"
        );
    });
}

fn location_of(dev: &Dev, addr: u64, len: usize) -> Option<String> {
    let mut loc = [sunrise_link::abi::device_plugin::sunrise_link_location_t {
        start: std::ptr::null_mut(),
        length: 0,
        location: [0; 32],
    }];
    let n = unsafe {
        (dev.plugin().query_location.unwrap())(
            dev.ctx(),
            addr as *mut c_void,
            len,
            loc.as_mut_ptr(),
            1,
        )
    };
    (n == 1).then(|| {
        unsafe { CStr::from_ptr(loc[0].location.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    })
}

/// TENT asks its platform what memory each request's source is (`getMemoryType`); for memory
/// the library registered or allocated, the answer costs no runtime call.
#[test]
fn the_platform_answers_for_known_memory_without_a_runtime_call() {
    scenario(
        "the_platform_answers_for_known_memory_without_a_runtime_call",
        &[("TANG_EMU_DEVICES", "3")],
        || {
            let dev = Dev::open();
            let emu = Emu::open();
            let x = Xport::new("{}");
            let a = dev.alloc(2, 1 << 20);
            let host = vec![0u8; 1 << 16];
            let hp = host.as_ptr() as u64;
            emu.reset_counters();
            assert_eq!(location_of(&dev, a + 4096, 1).as_deref(), Some("cuda:2"));
            assert_eq!(emu.total_calls(), 0, "allocated through the plugin");
            x.add(hp, 1 << 16, "cpu:0").unwrap();
            emu.reset_counters();
            assert_eq!(location_of(&dev, hp + 8, 1), None);
            assert_eq!(emu.total_calls(), 0, "registered host memory");
            // Unknown memory: the runtime is asked.
            let other = [0u8; 64];
            assert_eq!(location_of(&dev, other.as_ptr() as u64, 1), None);
            assert!(emu.total_calls() > 0);
            x.remove(hp);
            emu.reset_counters();
            assert_eq!(location_of(&dev, hp + 8, 1), None);
            assert!(emu.total_calls() > 0, "unregistered: asked again");
            dev.free(a);
            emu.reset_counters();
            assert_eq!(location_of(&dev, a + 4096, 1), None, "freed");
            assert!(emu.total_calls() > 0, "a freed allocation is forgotten");
        },
    );
}
