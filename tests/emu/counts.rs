//! Runtime calls per request on the registered-memory hot path, from the emulator's counters:
//! at most 2 per same-device or peer-device request (upstream makes about 10).

use crate::support::table::*;

const N: u64 = 200;

/// Submits `reqs` in one call, waits for all, returns runtime calls per request.
fn calls_per_request(
    x: &Xport,
    emu: &Emu,
    reqs: &[sunrise_link::abi::transport::sunrise_link_request_t],
) -> f64 {
    let b = x.batch(reqs.len() as u64);
    emu.reset_counters();
    assert_eq!(x.submit(b, reqs), 0);
    for i in 0..reqs.len() as u64 {
        assert_eq!(x.wait(b, i).0, COMPLETED, "{}", x.error(b, i));
    }
    let total = emu.total_calls();
    x.free_batch(b);
    total as f64 / reqs.len() as f64
}

#[test]
fn at_most_two_runtime_calls_per_request() {
    scenario(
        "at_most_two_runtime_calls_per_request",
        &[("TANG_EMU_DEVICES", "4")],
        || {
            let dev = Dev::open();
            let emu = Emu::open();
            let x = Xport::new(r#"{"worker_threads": 2}"#);
            let len = 4096u64;
            let a = dev.alloc(0, (N * len) as usize);
            let b = dev.alloc(0, (N * len) as usize);
            let c = dev.alloc(1, (N * len) as usize);
            let d = dev.alloc(2, (N * len) as usize);
            for (p, l) in [(a, "cuda:0"), (b, "cuda:0"), (c, "cuda:1"), (d, "cuda:2")] {
                x.add(p, N * len, l).unwrap();
            }
            let same: Vec<_> = (0..N)
                .map(|i| req(WRITE, a + i * len, 0, b + i * len, len))
                .collect();
            let peer: Vec<_> = (0..N)
                .map(|i| req(WRITE, a + i * len, 0, c + i * len, len))
                .collect();
            // Alternating source devices: the worst case for the per-thread device cache.
            let mixed: Vec<_> = (0..N)
                .map(|i| {
                    if i % 2 == 0 {
                        req(WRITE, a + i * len, 0, c + i * len, len)
                    } else {
                        req(WRITE, d + i * len, 0, b + i * len, len)
                    }
                })
                .collect();
            // Warm up the workers (first set_device per thread).
            calls_per_request(&x, &emu, &same[..4]);
            let s = calls_per_request(&x, &emu, &same);
            let p = calls_per_request(&x, &emu, &peer);
            let m = calls_per_request(&x, &emu, &mixed);
            println!("runtime calls per request: same-device {s:.2}, peer {p:.2}, alternating devices {m:.2}");
            let st = x.stats();
            println!(
                "submit-to-completion latency of 4 KiB requests (debug build, informational): \
             mean {} ns, min {} ns, max {} ns over {} requests",
                st.latency_sum_ns / st.latency_count.max(1),
                st.latency_min_ns,
                st.latency_max_ns,
                st.latency_count
            );
            assert!(s <= 2.0, "same-device: {s} calls per request");
            assert!(p <= 2.0, "peer: {p} calls per request");
            assert!(m <= 2.0, "alternating: {m} calls per request");
        },
    );
}

#[test]
fn ipc_hot_path_calls() {
    scenario("ipc_hot_path_calls", &[("TANG_EMU_DEVICES", "2")], || {
        let dev = Dev::open();
        let emu = Emu::open();
        let x = Xport::new(r#"{"worker_threads": 1}"#);
        let len = 4096u64;
        let exported = dev.alloc(1, (N * len) as usize);
        let shm = x.add(exported, N * len, "cuda:1").unwrap();
        let mine = dev.alloc(0, (N * len) as usize);
        x.add(mine, N * len, "cuda:0").unwrap();
        x.set_remote(
            3,
            Remote {
                base: 0x7000_0000,
                length: N * len,
                location: "cuda:1".into(),
                shm_path: shm,
                machine_id: MACHINE.into(),
            },
        );
        let reqs: Vec<_> = (0..N)
            .map(|i| req(READ, mine + i * len, 3, 0x7000_0000 + i * len, len))
            .collect();
        calls_per_request(&x, &emu, &reqs[..1]); // opens the handle
        let r = calls_per_request(&x, &emu, &reqs);
        println!("runtime calls per cached IPC request: {r:.2}");
        assert!(r <= 2.0, "IPC: {r} calls per request");
    });
}
