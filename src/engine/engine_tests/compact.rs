//! The compact path for a submit of one request ([`crate::engine::submit`]'s `one`) against
//! the general path: the same requests, once with it and once without, must leave the same
//! statuses, bytes, messages, counters, runtime calls and host calls, on every path and
//! failure it covers and on the requests it leaves to the general path.

use super::*;
use crate::engine::submit::compact;
use crate::engine::RemoteBuffer;

/// What a sequence of one-request submits left behind.
#[derive(PartialEq)]
struct Outcome {
    tasks: Vec<(u8, u64, Option<String>)>,
    data: Vec<Vec<u8>>,
    stats: crate::engine::stats::Snapshot,
    calls: std::collections::BTreeMap<&'static str, u64>,
    host: [u64; 3],
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The buffers as (offset, byte) runs: short enough to read in a failure.
        let runs: Vec<Vec<(usize, u8)>> = self
            .data
            .iter()
            .map(|d| {
                (0..d.len())
                    .filter(|&i| i == 0 || d[i] != d[i - 1])
                    .map(|i| (i, d[i]))
                    .collect()
            })
            .collect();
        f.debug_struct("Outcome")
            .field("tasks", &self.tasks)
            .field("data runs", &runs)
            .field("stats", &self.stats)
            .field("calls", &self.calls)
            .field("host", &self.host)
            .finish()
    }
}

/// Whether `d[at..at + len]` is all `byte`.
fn filled(d: &[u8], at: usize, len: usize, byte: u8) -> bool {
    d[at..at + len].iter().all(|&b| b == byte)
}

/// A world to run requests in: the fake, the transport, named buffers, and steps between
/// submits (a runtime call made to fail, a peer re-registering).
struct World {
    fake: Arc<Fake>,
    host: Arc<TestHost>,
    t: Transport,
    bufs: Vec<u64>,
}

type Step = Box<dyn Fn(&World) -> Option<Request>>;

/// Runs `steps` (each a request submitted alone, or an action) on a fresh world from `make`,
/// with the compact path allowed or not; returns what happened and how often it was taken.
fn run(make: &dyn Fn() -> World, steps: &[Step], allowed: bool) -> (Outcome, u64) {
    let w = make();
    let h = w.t.allocate(64, 7).unwrap();
    compact::set(allowed);
    let mut n = 0;
    for s in steps {
        if let Some(r) = s(&w) {
            w.t.submit(h, &[r]).unwrap();
            wait(&w.t, h, n);
            n += 1;
        }
    }
    let taken = compact::set(true);
    let tasks = (0..n)
        .map(|i| {
            let (st, bytes) = w.t.status(h, i).unwrap();
            (st, bytes, w.t.task_error(h, i).unwrap())
        })
        .collect();
    let mut stats = w.t.stats().unwrap();
    // Latency is sampled by a per-thread count and measured: not part of what must agree.
    stats.latency_count = 0;
    stats.latency_min_ns = 0;
    stats.latency_max_ns = 0;
    stats.latency_sum_ns = 0;
    stats.latency_buckets = [0; crate::engine::stats::LATENCY_BUCKETS];
    let out = Outcome {
        tasks,
        data: w.bufs.iter().map(|&b| w.fake.read(b, 16 << 10)).collect(),
        stats,
        calls: w.fake.call_counts(),
        host: [
            w.host.lookups.load(Ordering::SeqCst),
            w.host.refreshes.load(Ordering::SeqCst),
            w.host.notified.load(Ordering::SeqCst),
        ],
    };
    (out, taken)
}

/// Checks that both runs agree and that the compact path carried `compact` submits.
fn agree(make: &dyn Fn() -> World, steps: &[Step], compact: u64) -> Outcome {
    let (general, none) = run(make, steps, false);
    assert_eq!(none, 0);
    let (fast, taken) = run(make, steps, true);
    assert_eq!(
        fast, general,
        "the compact path differs from the general one"
    );
    assert_eq!(taken, compact, "submits carried by the compact path");
    fast
}

/// Two devices; buffers 0 and 1 on device 0, 2 on device 1, 3 on device 1 published as
/// segment 5 at remote address 0x10_0000.
fn world(f: Fake, cfg: &str) -> World {
    let (fake, host, t) = setup(f, cfg);
    let bufs: Vec<u64> = [(0, 0x11), (0, 0), (1, 0x22), (1, 0x33)]
        .iter()
        .map(|&(d, fill)| fake.alloc(d, 16 << 10, fill))
        .collect();
    let names = ["cuda:0", "cuda:0", "cuda:1", "cuda:1"];
    let mut shm = String::new();
    for (b, n) in bufs.iter().zip(names) {
        shm = t.add_buffer(*b, 16 << 10, n).unwrap();
    }
    host.remote.lock().unwrap().push(RemoteBuffer {
        base: 0x10_0000,
        length: 16 << 10,
        location: "cuda:1".into(),
        shm_path: shm,
        machine_id: "m1".into(),
    });
    World {
        fake,
        host,
        t,
        bufs,
    }
}

fn submit(op: u32, src: usize, target: Option<usize>, off: u64, len: u64) -> Step {
    Box::new(move |w: &World| {
        Some(match target {
            Some(t) => req(op, w.bufs[src] + off, 0, w.bufs[t] + off, len),
            None => req(op, w.bufs[src] + off, 5, 0x10_0000 + off, len),
        })
    })
}

fn act(f: impl Fn(&World) + 'static) -> Step {
    Box::new(move |w: &World| {
        f(w);
        None
    })
}

#[test]
fn paths_the_compact_path_takes_and_leaves() {
    let make = || world(Fake::new(2), "{}");
    let steps = vec![
        submit(OP_WRITE, 0, Some(1), 0, 4096),  // same device: compact
        submit(OP_WRITE, 0, Some(2), 64, 4000), // peer: compact
        submit(OP_READ, 1, None, 100, 3000),    // IPC, first: the mapping is opened (general)
        submit(OP_WRITE, 0, None, 8192, 4096),  // IPC, cached: compact
        submit(OP_READ, 2, Some(0), 0, 0),      // zero length (general)
        Box::new(|w: &World| Some(req(9, w.bufs[0], 0, w.bufs[1], 8))), // bad opcode
        submit(OP_WRITE, 0, Some(1), 16000, 4096), // runs past its buffer (general, FAILED)
        // past the end of the peer's buffer (general, FAILED)
        Box::new(|w: &World| Some(req(OP_WRITE, w.bufs[0], 5, 0x10_0000 + 16000, 4096))),
    ];
    let o = agree(&make, &steps, 3);
    let ends: Vec<u8> = o.tasks.iter().map(|t| t.0).collect();
    use status::{COMPLETED as C, FAILED as F};
    assert_eq!(ends, [C, C, C, C, C, F, F, F]);
    assert!(filled(&o.data[1], 0, 100, 0x11), "{o:?}");
    assert!(filled(&o.data[1], 3100, 996, 0x11), "{o:?}");
    assert!(filled(&o.data[2], 64, 4000, 0x11), "{o:?}");
    assert!(filled(&o.data[1], 100, 3000, 0x33), "{o:?}");
    assert!(filled(&o.data[3], 8192, 4096, 0x11), "{o:?}");
}

#[test]
fn failures_on_the_compact_path_end_as_on_the_general_one() {
    let make = || {
        let mut f = Fake::new(2);
        f.links = vec![(0, 1, vec![2]), (1, 0, vec![2])];
        world(f, "{}")
    };
    let steps = vec![
        act(|w| w.fake.fail("tangMemcpyPeer")),
        submit(OP_WRITE, 0, Some(2), 0, 4096), // falls back to tangMemcpyPeer_v2
        act(|w| w.fake.fail("tangMemcpyPeer_v2")),
        submit(OP_READ, 0, Some(2), 0, 2048), // falls back to the peer pointer
        act(|w| w.fake.fail("tangDeviceGetPeerPointer")),
        submit(OP_WRITE, 0, Some(2), 0, 1024), // every path fails
        submit(OP_READ, 1, None, 0, 512),      // IPC, opened by the general path: fails
        // Cached mapping whose copy fails: the host is asked again (refresh); the peer
        // re-registered, so the new mapping is tried once more.
        act(|w| {
            let b = w.fake.alloc(1, 16 << 10, 0x44);
            let shm = w.t.add_buffer(b, 16 << 10, "cuda:1").unwrap();
            w.host.remote.lock().unwrap()[0].shm_path = shm;
        }),
        submit(OP_READ, 1, None, 0, 512),
        act(|w| w.fake.fail_longer_than.store(100, Ordering::Relaxed)),
        submit(OP_WRITE, 0, Some(1), 0, 200), // same device, the copy fails
        submit(OP_WRITE, 0, Some(1), 0, 50),  // and a short one works
    ];
    let o = agree(&make, &steps, 6);
    let ends: Vec<u8> = o.tasks.iter().map(|t| t.0).collect();
    use status::{COMPLETED as C, FAILED as F};
    assert_eq!(ends, [C, C, F, F, F, F, C]);
    assert_eq!(o.stats.paths[2].0, 1, "peer v2");
    assert_eq!(o.stats.paths[3].0, 1, "peer pointer");
    assert!(o.host[1] >= 1, "a refresh was asked for");
    let msg = o.tasks[5].2.as_deref().unwrap();
    assert!(msg.contains("copy of 200 bytes"), "{msg}");
}

#[test]
fn the_source_device_made_current_when_peer_copies_need_it() {
    let make = || {
        let mut f = Fake::new(2);
        f.peer_needs_current = true;
        world(f, "{}")
    };
    let steps = vec![
        submit(OP_WRITE, 0, Some(2), 0, 4096), // fails, then works with device 0 current
        submit(OP_READ, 0, Some(2), 8192, 4096), // device 1 made current first
    ];
    let o = agree(&make, &steps, 2);
    assert!(o.tasks.iter().all(|t| t.0 == status::COMPLETED));
    assert!(filled(&o.data[2], 0, 4096, 0x11), "{o:?}");
    assert!(filled(&o.data[0], 8192, 4096, 0x22), "{o:?}");
}

#[test]
fn striped_and_asynchronous_requests_are_left_to_the_general_path() {
    let make = || {
        let mut f = Fake::new(2);
        f.links = vec![(0, 1, vec![2, 3]), (1, 0, vec![2, 3])];
        world(
            f,
            r#"{"enable_port_striping": true, "port_striping_min_size": "8KiB",
                "async_memcpy_threshold": "12KiB"}"#,
        )
    };
    let steps = vec![
        submit(OP_WRITE, 0, Some(2), 0, 10 << 10), // striped, synchronous
        submit(OP_WRITE, 0, Some(1), 0, 14 << 10), // asynchronous
        submit(OP_WRITE, 0, Some(2), 0, 4096),     // small peer copy: compact
    ];
    let o = agree(&make, &steps, 1);
    assert!(o.tasks.iter().all(|t| t.0 == status::COMPLETED));
    assert_eq!(o.stats.paths[4].0, 1, "striped");
    assert_eq!(o.stats.async_requests, 1);
    assert!(filled(&o.data[1], 0, 14 << 10, 0x11), "{o:?}");
}
