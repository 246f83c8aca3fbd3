//! Throughput of raw runtime calls from one and from two threads: separate buffers per thread,
//! so nothing is shared but the runtime itself. On hardware two threads copying between two
//! device pairs run side by side; the emulator should not serialise them either.
//!
//! A benchmark, not a check (it never asserts timings):
//!
//! ```sh
//! cargo test --release -p sunrise-link-emu --test throughput -- --ignored --nocapture
//! ```
//!
//! `TANG_EMU_BENCH_SECS` (default 1) is the time per measurement, `TANG_EMU_BENCH_REPS`
//! (default 5) the repetitions whose median is printed. Run against a release root
//! (`SUNRISE_LINK_EMU_ROOT`, or `SUNRISE_LINK_EMU_LIB_DIR` for a directory of libraries).
mod common;

use common::rt;
use std::ffi::c_void;
use std::sync::Barrier;
use std::time::{Duration, Instant};

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Buffers of one thread: source on device 0, destination on device 1.
struct Pair {
    src: *mut c_void,
    dst: *mut c_void,
    host_src: Vec<u8>,
    host_dst: Vec<u8>,
}
unsafe impl Send for Pair {}
unsafe impl Sync for Pair {}

fn pair(size: usize) -> Pair {
    let r = rt();
    r.set_device(0);
    let src = r.malloc(size);
    r.set_device(1);
    let dst = r.malloc(size);
    r.set_device(0);
    assert_eq!(r.h2d(src, &vec![7u8; size]), 0);
    Pair {
        src,
        dst,
        host_src: vec![7u8; size],
        host_dst: vec![0u8; size],
    }
}

#[derive(Clone, Copy)]
enum Op {
    /// `tangMemcpyPeer(dst, 1, src, 0, size)`.
    Peer,
    /// A plain `memcpy` between host buffers of the same size (what the machine can do).
    Memcpy,
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// One measurement: bytes per second of wall time (all threads together), and bytes per
/// second of CPU time the threads got. The second tells contention apart from a machine that
/// is too busy to run both threads at once: threads that share nothing move as many bytes per
/// CPU-second side by side as alone.
#[derive(Clone, Copy)]
struct Rate {
    wall: f64,
    cpu: f64,
}

/// What `threads` threads, each on its own pair, move in `secs`.
fn run(op: Op, pairs: &[Pair], size: usize, secs: f64) -> Rate {
    let r = rt();
    let barrier = Barrier::new(pairs.len());
    let dur = Duration::from_secs_f64(secs);
    let per_thread: Vec<(u64, f64, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|p| {
                let barrier = &barrier;
                s.spawn(move || {
                    r.set_device(0);
                    let host_dst = p.host_dst.as_ptr() as *mut u8;
                    barrier.wait();
                    let t = Instant::now();
                    let c = thread_cpu();
                    let mut n = 0u64;
                    loop {
                        for _ in 0..64 {
                            match op {
                                Op::Peer => {
                                    let e = unsafe { (r.tangMemcpyPeer)(p.dst, 1, p.src, 0, size) };
                                    assert_eq!(e, 0);
                                }
                                Op::Memcpy => unsafe {
                                    std::ptr::copy_nonoverlapping(
                                        p.host_src.as_ptr(),
                                        host_dst,
                                        size,
                                    );
                                    std::hint::black_box(host_dst);
                                },
                            }
                        }
                        n += 64;
                        if t.elapsed() >= dur {
                            break;
                        }
                    }
                    (n, t.elapsed().as_secs_f64(), thread_cpu() - c)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let bytes: f64 = per_thread
        .iter()
        .map(|&(n, _, _)| n as f64 * size as f64)
        .sum();
    Rate {
        wall: per_thread
            .iter()
            .map(|&(n, t, _)| n as f64 * size as f64 / t)
            .sum(),
        cpu: bytes / per_thread.iter().map(|&(_, _, c)| c).sum::<f64>(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn peer_copy_from_one_and_two_threads() {
    // The only test of this binary; no `serial()`, whose configuration keys older builds of the
    // emulator (measured for comparison) may not know.
    let r = rt();
    let secs = env_f64("TANG_EMU_BENCH_SECS", 1.0);
    let reps = env_f64("TANG_EMU_BENCH_REPS", 5.0).max(1.0) as usize;
    println!(
        "library: {}; {secs} s per run, median of {reps} (1 and 2 threads alternate)",
        common::rt::lib_dir_once().display()
    );
    for size in [4usize << 10, 64 << 10] {
        let pairs: Vec<Pair> = (0..2).map(|_| pair(size)).collect();
        for (op, name) in [(Op::Peer, "tangMemcpyPeer"), (Op::Memcpy, "plain memcpy")] {
            let mut one = Vec::new();
            let mut two = Vec::new();
            for _ in 0..reps {
                one.push(run(op, &pairs[..1], size, secs));
                two.push(run(op, &pairs[..2], size, secs));
            }
            let wall = |v: &[Rate]| v.iter().map(|r| r.wall / 1e9).collect::<Vec<_>>();
            let cpu = |v: &[Rate]| median(v.iter().map(|r| r.cpu / 1e9).collect());
            let (one_w, two_w) = (wall(&one), wall(&two));
            let (m1, m2) = (median(one_w.clone()), median(two_w.clone()));
            let (c1, c2) = (cpu(&one), cpu(&two));
            let fmt = |v: &[f64]| {
                v.iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "{:>3} KiB {name:<15} 1 thread {m1:6.2} GB/s  2 threads {m2:6.2} GB/s  ratio {:.2}   \
                 per CPU-second: {c1:6.2} / {c2:6.2} GB, ratio {:.2}   (runs: 1t [{}] 2t [{}])",
                size >> 10,
                m2 / m1,
                c2 / c1,
                fmt(&one_w),
                fmt(&two_w)
            );
        }
        for p in pairs {
            unsafe {
                assert_eq!((r.tangFree)(p.src), 0);
                assert_eq!((r.tangFree)(p.dst), 0);
            }
        }
    }
}
