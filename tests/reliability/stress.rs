//! Concurrency stress: many threads submitting, polling, cancelling and registering at once,
//! across four devices and two processes, for a bounded time; every block is checksummed.
//! Checked: 0 corrupted blocks, every task reaches exactly one terminal state (one progress
//! notification per task, transferred bytes = length), no deadlock (every wait is bounded),
//! no leaked stream, event or IPC mapping.
//!
//! `SUNRISE_LINK_STRESS_SECS=<s>` (default 3) and `SUNRISE_LINK_STRESS_THREADS=<n>` (default
//! 8) for longer or wider runs.

use crate::support::direct::*;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const SLOT: u64 = 64 << 10;
/// Slots per thread in each buffer.
const SLOTS: u64 = 8;
const SEG: u64 = 21;

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(d)
}

/// A region of `SLOTS` slots owned by one thread.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Where {
    /// Local device memory at this address.
    Dev(u64),
    /// Registered host memory at this address.
    Host(u64),
    /// The peer's buffer: (published address, device).
    Remote(u64),
}

#[derive(Default)]
struct Counters {
    blocks: AtomicU64,
    bytes: AtomicU64,
    cancelled: AtomicU64,
    tasks: AtomicU64,
    registrations: AtomicU64,
    corrupt: AtomicU64,
}

struct Ctx<'a> {
    t: &'a Transport,
    emu: &'a Emu,
    counters: &'a Counters,
    stop: &'a AtomicBool,
}

/// One thread's loop: batches of 1..=6 copies between its own slots, some cancelled, all
/// waited and verified; until `stop`.
fn worker(c: &Ctx, id: u64, src: u64, dsts: &[Where], verify_buf: u64) {
    let mut r = Rng(0xABCD ^ id);
    let mut expect: std::collections::HashMap<(usize, u64), u64> = Default::default();
    let mut host_seen = 0u64;
    let mut h = c.t.allocate(1024).unwrap();
    let mut iter = 0u64;
    while !c.stop.load(Ordering::Relaxed) {
        iter += 1;
        let n = 1 + r.below(6) as usize;
        let mut used_src = Vec::new();
        let mut used_dst = Vec::new();
        let mut plan = Vec::new();
        while plan.len() < n {
            let s = r.below(SLOTS);
            let d = (r.below(dsts.len() as u64) as usize, r.below(SLOTS));
            if used_src.contains(&s) || used_dst.contains(&d) {
                break;
            }
            used_src.push(s);
            used_dst.push(d);
            let len = 512 * (1 + r.below(SLOT / 512));
            let seed = (id << 40) | (iter << 8) | plan.len() as u64;
            let bytes = pattern(seed, len as usize);
            c.emu.write(src + s * SLOT, &bytes);
            let (op, target_id, target) = match dsts[d.0] {
                Where::Dev(a) | Where::Host(a) => (SUNRISE_LINK_OP_WRITE, 0, a + d.1 * SLOT),
                Where::Remote(a) => (SUNRISE_LINK_OP_WRITE, SEG, a + d.1 * SLOT),
            };
            plan.push((
                req(op, src + s * SLOT, target_id, target, len),
                d,
                checksum(&bytes),
            ));
        }
        // Room for the batch and one read-back per block.
        if c.t.size(h).unwrap() + 2 * plan.len() as u64 > 1024 {
            assert_eq!(c.t.free(h), 0);
            h = c.t.allocate(1024).unwrap();
        }
        let first = c.t.size(h).unwrap();
        let reqs: Vec<_> = plan.iter().map(|p| p.0).collect();
        assert_eq!(c.t.submit(h, &reqs), 0, "{}", last_error());
        c.counters
            .tasks
            .fetch_add(reqs.len() as u64, Ordering::Relaxed);
        if r.chance(250) {
            let k = r.below(reqs.len() as u64);
            assert_eq!(c.t.cancel(h, first + k), 0);
        }
        for (k, (q, d, sum)) in plan.iter().enumerate() {
            let (st, bytes) = c.t.wait(h, first + k as u64, WAIT);
            match st {
                SUNRISE_LINK_TASK_COMPLETED => {
                    assert_eq!(bytes, q.length);
                    expect.insert(*d, *sum);
                    c.counters.blocks.fetch_add(1, Ordering::Relaxed);
                    c.counters.bytes.fetch_add(q.length, Ordering::Relaxed);
                }
                SUNRISE_LINK_TASK_CANCELED => {
                    c.counters.cancelled.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                s => panic!(
                    "thread {id}: task ended in state {s}: {}",
                    c.t.task_error(h, first + k as u64)
                ),
            }
            // Verify the destination block now.
            let len = q.length as usize;
            let got = match dsts[d.0] {
                Where::Dev(a) => c.emu.read(a + d.1 * SLOT, len),
                Where::Host(a) => {
                    host_seen += 1;
                    unsafe { std::slice::from_raw_parts((a + d.1 * SLOT) as *const u8, len) }
                        .to_vec()
                }
                Where::Remote(a) => {
                    // Read it back from the peer into a private block.
                    let n = c.t.size(h).unwrap();
                    let back = req(
                        SUNRISE_LINK_OP_READ,
                        verify_buf,
                        SEG,
                        a + d.1 * SLOT,
                        q.length,
                    );
                    assert_eq!(c.t.submit(h, &[back]), 0);
                    c.counters.tasks.fetch_add(1, Ordering::Relaxed);
                    let (st, _) = c.t.wait(h, n, WAIT);
                    assert_eq!(st, SUNRISE_LINK_TASK_COMPLETED, "{}", c.t.task_error(h, n));
                    c.emu.read(verify_buf, len)
                }
            };
            if checksum(&got) != *sum {
                c.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                eprintln!("thread {id}: block {d:?} corrupt after {}", iter);
            }
        }
    }
    let _ = host_seen;
    assert_eq!(c.t.free(h), 0);
}

/// Registers and unregisters short-lived host and device buffers, invalidates the peer's
/// segment while copies to it run, reads stats; until `stop`.
fn churn(c: &Ctx, devices: i32) {
    let mut r = Rng(77);
    while !c.stop.load(Ordering::Relaxed) {
        let dev = r.below(devices as u64) as i32;
        let p = c.emu.alloc(dev, 64 << 10);
        assert!(
            c.t.add(p, 64 << 10, &format!("cuda:{dev}")).is_ok(),
            "{}",
            last_error()
        );
        let host = vec![0u8; 8192];
        assert!(c.t.add(host.as_ptr() as u64, 8192, "cpu:0").is_ok());
        c.counters.registrations.fetch_add(2, Ordering::Relaxed);
        let _ = c.t.stats();
        if r.chance(300) {
            assert_eq!(unsafe { sunrise_link_segment_invalidate(c.t.t, SEG) }, 0);
        }
        std::thread::sleep(Duration::from_micros(200));
        assert_eq!(c.t.remove(host.as_ptr() as u64), 0);
        assert_eq!(c.t.remove(p), 0);
        c.emu.free(p);
    }
}

/// Runs `threads` workers plus a churn thread on `t` for `secs`; returns the counters.
fn run(emu: &Emu, t: &Transport, threads: u64, secs: f64, remote: Option<&[u64]>) -> Counters {
    let counters = Counters::default();
    let stop = AtomicBool::new(false);
    let c = Ctx {
        t,
        emu,
        counters: &counters,
        stop: &stop,
    };
    let per = SLOT * SLOTS;
    let mut owned = Vec::new();
    let mut hosts = Vec::new();
    std::thread::scope(|s| {
        for id in 0..threads {
            let sdev = (id % DEVICES as u64) as i32;
            let src = emu.alloc(sdev, per as usize);
            t.add(src, per, &format!("cuda:{sdev}")).unwrap();
            let mut dsts = Vec::new();
            for dev in 0..DEVICES {
                let a = emu.alloc(dev, per as usize);
                t.add(a, per, &format!("cuda:{dev}")).unwrap();
                owned.push(a);
                dsts.push(Where::Dev(a));
            }
            let hb = vec![0u8; per as usize];
            t.add(hb.as_ptr() as u64, per, "cpu:0").unwrap();
            dsts.push(Where::Host(hb.as_ptr() as u64));
            if let Some(bases) = remote {
                for b in bases {
                    dsts.push(Where::Remote(b + id * per));
                }
            }
            let vb = emu.alloc(sdev, SLOT as usize);
            t.add(vb, SLOT, &format!("cuda:{sdev}")).unwrap();
            owned.push(src);
            owned.push(vb);
            let c = &c;
            let dsts2 = dsts.clone();
            hosts.push(hb);
            s.spawn(move || worker(c, id, src, &dsts2, vb));
        }
        let c2 = &c;
        s.spawn(move || churn(c2, DEVICES));
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    for a in owned {
        assert_eq!(t.remove(a), 0);
        emu.free(a);
    }
    for hb in &hosts {
        assert_eq!(t.remove(hb.as_ptr() as u64), 0);
    }
    counters
}

const PEER_ENV: &str = "SUNRISE_LINK_REL_STRESS_PEER";
const CFG: &str = "\"worker_threads\": 4, \"async_memcpy_threshold\": \"32KiB\", \
                   \"enable_port_striping\": true, \"port_striping_min_size\": \"32KiB\"";

/// The second process (the child role of `stress_threads_devices_two_processes`): exports one
/// buffer per device for the first, and runs its own stress on local memory meanwhile; prints
/// its counters when told "done".
fn stress_peer_role(v: String) {
    let mut it = v.split(',');
    let threads: u64 = it.next().unwrap().parse().unwrap();
    let secs: f64 = it.next().unwrap().parse().unwrap();
    let emu = emu();
    emu.configure("[[link]]\na = [0, 8]\nb = [1, 8]\n");
    let t = Transport::installed(CFG);
    let per = SLOT * SLOTS * threads;
    let mut line = String::from("STRESS-PEER");
    let mut bufs = Vec::new();
    for dev in 0..DEVICES {
        let p = emu.alloc(dev, per as usize);
        let shm = t.add(p, per, &format!("cuda:{dev}")).unwrap();
        line.push_str(&format!(" {p:#x}:{dev}:{shm}"));
        bufs.push(p);
    }
    println!("\n{line}");
    std::io::stdout().flush().unwrap();
    let c = run(emu, &t, 2, secs, None);
    let mut l = String::new();
    let _ = std::io::stdin().read_line(&mut l);
    println!(
        "\nPEER-RESULT {} {} {}",
        c.blocks.load(Ordering::Relaxed),
        c.corrupt.load(Ordering::Relaxed),
        c.tasks.load(Ordering::Relaxed)
    );
    std::io::stdout().flush().unwrap();
    drop(t);
    for p in bufs {
        emu.free(p);
    }
}

#[test]
fn stress_threads_devices_two_processes() {
    if let Some(v) = role(PEER_ENV) {
        return stress_peer_role(v);
    }
    let (_g, emu) = serial();
    emu.configure("[[link]]\na = [0, 8]\nb = [1, 8]\n");
    let threads = env_u64("SUNRISE_LINK_STRESS_THREADS", 8);
    let secs = env_u64("SUNRISE_LINK_STRESS_SECS", 3) as f64;
    let base = emu.live_transport_objects();
    let mut child = rerun_as(
        "stress_threads_devices_two_processes",
        PEER_ENV,
        &format!("{threads},{secs}"),
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let peer: Vec<(u64, i32, String)> = loop {
        let l = lines.next().expect("peer output").unwrap();
        if let Some(rest) = l.strip_prefix("STRESS-PEER ") {
            break rest
                .split(' ')
                .map(|e| {
                    let v: Vec<&str> = e.split(':').collect();
                    (
                        u64::from_str_radix(v[0].trim_start_matches("0x"), 16).unwrap(),
                        v[1].parse().unwrap(),
                        v[2].to_string(),
                    )
                })
                .collect();
        }
    };
    let t = Transport::installed(CFG);
    let per_peer = SLOT * SLOTS * threads;
    for (p, dev, shm) in &peer {
        t.publish(Remote {
            segment: SEG,
            base: *p,
            length: per_peer,
            location: format!("cuda:{dev}"),
            shm_path: shm.clone(),
            machine_id: MACHINE.into(),
        });
    }
    let bases: Vec<u64> = peer.iter().map(|p| p.0).collect();
    let started = Instant::now();
    let c = run(emu, &t, threads, secs, Some(&bases));
    let elapsed = started.elapsed();
    // Every task reached exactly one terminal state: one notification each.
    let tasks = c.tasks.load(Ordering::Relaxed);
    assert!(eventually(Duration::from_secs(10), || {
        t.host.notifies.load(Ordering::Relaxed) >= tasks
    }));
    let notified = t.host.notifies.load(Ordering::Relaxed);
    let stats = t.stats();
    drop(t);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"done\n").unwrap();
    drop(stdin);
    let result = loop {
        let l = lines.next().expect("peer result").unwrap();
        if let Some(rest) = l.strip_prefix("PEER-RESULT ") {
            let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
            break v;
        }
    };
    assert!(child.wait().unwrap().success(), "peer process failed");
    let blocks = c.blocks.load(Ordering::Relaxed);
    eprintln!(
        "stress: {threads} threads + churn, 4 devices, 2 processes, {:.1} s: {blocks} blocks \
         ({} MiB) verified here, {} cancelled, {} registrations, {tasks} tasks, {notified} \
         notifications, {} IPC requests, {} async; peer: {} blocks verified, {} tasks",
        elapsed.as_secs_f64(),
        c.bytes.load(Ordering::Relaxed) >> 20,
        c.cancelled.load(Ordering::Relaxed),
        c.registrations.load(Ordering::Relaxed),
        stats.ipc_requests,
        stats.async_requests,
        result[0],
        result[2],
    );
    assert_eq!(c.corrupt.load(Ordering::Relaxed), 0, "corrupted blocks");
    assert_eq!(result[1], 0, "corrupted blocks in the peer");
    assert_eq!(notified, tasks, "lost or duplicated completions");
    assert!(blocks > 0 && result[0] > 0);
    assert_eq!(
        emu.live_transport_objects(),
        base,
        "leaked streams/events/mappings"
    );
}

/// A peer's mapping must stay open while copies through it are queued or in flight, even if
/// the segment is invalidated (or re-resolved) meanwhile: striped lanes and async copies run
/// after the request's own worker has moved on.
#[test]
fn invalidating_a_segment_during_striped_and_async_copies() {
    let (_g, emu) = serial();
    emu.configure("[[link]]\na = [0, 8]\nb = [1, 8]\n");
    emu.configure("[link_model]\nbandwidth = 2e8\n");
    let base = emu.live_transport_objects();
    let owner = Transport::installed("");
    let len = 4u64 << 20;
    let t = Transport::installed(
        "\"worker_threads\": 1, \"async_memcpy_threshold\": \"64KiB\", \
         \"enable_port_striping\": true, \"port_striping_min_size\": \"64KiB\"",
    );
    let mut remotes = Vec::new();
    for (k, dev) in [(0u64, 1), (1, 0)] {
        let p = emu.alloc(dev, len as usize);
        let shm = owner.add(p, len, &format!("cuda:{dev}")).unwrap();
        t.publish(Remote {
            segment: SEG + k,
            base: 0x5100_0000_0000 + (k << 32),
            length: len,
            location: format!("cuda:{dev}"),
            shm_path: shm,
            machine_id: MACHINE.into(),
        });
        remotes.push(p);
    }
    let local = emu.alloc(0, len as usize);
    t.add(local, len, "cuda:0").unwrap();
    let h = t.allocate(64).unwrap();
    for round in 0..4u64 {
        let bytes = pattern(round, len as usize);
        emu.write(local, &bytes);
        // Segment SEG: device 0 -> 1, striped over two ports; SEG + 1: same device, async.
        let k = round % 2;
        let first = t.size(h).unwrap();
        let target = 0x5100_0000_0000 + (k << 32);
        let r = req(SUNRISE_LINK_OP_WRITE, local, SEG + k, target, len);
        assert_eq!(t.submit(h, &[r]), 0);
        // Once the request is resolved and its lanes queued (one worker runs them in turn).
        std::thread::sleep(Duration::from_millis(3));
        assert_eq!(unsafe { sunrise_link_segment_invalidate(t.t, SEG + k) }, 0);
        let (st, _) = t.wait(h, first, WAIT);
        assert_eq!(
            st,
            SUNRISE_LINK_TASK_COMPLETED,
            "round {round}: {}",
            t.task_error(h, first)
        );
        assert_eq!(
            checksum(&emu.read(remotes[k as usize], len as usize)),
            checksum(&bytes),
            "round {round}"
        );
    }
    let stats = t.stats();
    assert!(stats.paths[SUNRISE_LINK_PATH_STRIPED as usize].requests >= 2);
    assert!(stats.async_requests >= 2);
    drop(t);
    drop(owner);
    emu.configure("link_model = {}");
    emu.free(local);
    for p in remotes {
        emu.free(p);
    }
    assert_eq!(emu.live_transport_objects(), base);
}

/// Uninstall and install again and again while threads keep submitting (striped, async and
/// plain copies): every accepted task reaches exactly one terminal state (one notification
/// each), nothing hangs, nothing leaks.
#[test]
fn uninstall_and_install_while_submitting() {
    let (_g, emu) = serial();
    emu.configure("[[link]]\na = [0, 8]\nb = [1, 8]\n");
    emu.configure("[link_model]\nbandwidth = 2e9\n");
    let base = emu.live_transport_objects();
    let cfg = "\"worker_threads\": 2, \"async_memcpy_threshold\": \"128KiB\", \
               \"enable_port_striping\": true, \"port_striping_min_size\": \"64KiB\"";
    let t = Transport::installed(cfg);
    let len = 1usize << 20;
    let a = emu.alloc(0, len);
    let b = emu.alloc(1, len);
    let c = emu.alloc(0, len);
    let register = |t: &Transport| {
        for (p, l) in [(a, "cuda:0"), (b, "cuda:1"), (c, "cuda:0")] {
            // Registrations go with the installation; another thread may uninstall meanwhile.
            let _ = t.add(p, len as u64, l);
        }
    };
    register(&t);
    let stop = AtomicBool::new(false);
    let accepted = AtomicU64::new(0);
    let mut batches = Vec::new();
    std::thread::scope(|s| {
        let mut hs = Vec::new();
        for id in 0..4u64 {
            let (t, stop, accepted) = (&t, &stop, &accepted);
            hs.push(s.spawn(move || {
                let mut mine = Vec::new();
                let mut h = t.allocate(4096).unwrap();
                let mut r = Rng(id);
                while !stop.load(Ordering::Relaxed) {
                    let reqs: Vec<_> = (0..4)
                        .map(|_| {
                            let off = r.below(8) * (64 << 10);
                            let (dst, l) = match r.below(3) {
                                0 => (b, 256 << 10), // striped over two ports
                                1 => (c, 256 << 10), // same device, async
                                _ => (c, 4096),      // same device, sync
                            };
                            req(SUNRISE_LINK_OP_WRITE, a + off, 0, dst + off, l)
                        })
                        .collect();
                    if t.size(h).unwrap() + 4 > 4096 {
                        mine.push((h, t.size(h).unwrap()));
                        h = t.allocate(4096).unwrap();
                    }
                    if t.submit(h, &reqs) == 0 {
                        accepted.fetch_add(4, Ordering::Relaxed);
                    } else {
                        assert!(last_error().contains("not installed"), "{}", last_error());
                    }
                    std::thread::sleep(Duration::from_micros(300));
                }
                mine.push((h, t.size(h).unwrap()));
                mine
            }));
        }
        for _ in 0..25 {
            std::thread::sleep(Duration::from_millis(15));
            assert_eq!(t.uninstall(), 0);
            assert_eq!(t.install(Some(&config(cfg))), 0, "{}", last_error());
            register(&t);
        }
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            batches.extend(h.join().unwrap());
        }
    });
    let (mut done, mut failed) = (0u64, 0u64);
    for (h, n) in &batches {
        for i in 0..*n {
            match t.wait(*h, i, WAIT).0 {
                SUNRISE_LINK_TASK_COMPLETED => done += 1,
                SUNRISE_LINK_TASK_FAILED => failed += 1,
                s => panic!("task ended in state {s}"),
            }
        }
    }
    let accepted = accepted.load(Ordering::Relaxed);
    assert_eq!(done + failed, accepted);
    assert!(eventually(Duration::from_secs(10), || {
        t.host.notifies.load(Ordering::Relaxed) >= accepted
    }));
    std::thread::sleep(Duration::from_millis(50));
    let notified = t.host.notifies.load(Ordering::Relaxed);
    eprintln!(
        "uninstall under load: {accepted} tasks accepted, {done} completed, {failed} failed, \
         {notified} notifications"
    );
    assert_eq!(notified, accepted, "lost or duplicated completions");
    drop(t);
    emu.configure("link_model = {}");
    for p in [a, b, c] {
        emu.free(p);
    }
    assert_eq!(emu.live_transport_objects(), base);
}

/// The host's log callback must not run once the transport that registered it is destroyed
/// (the host may free `user_data` right after `destroy` returns), even while other
/// transports keep logging from other threads.
#[test]
fn log_callback_never_runs_after_destroy() {
    let (_g, _emu) = serial();
    use std::ffi::{c_char, c_void, CString};
    struct Sink {
        alive: AtomicBool,
        late: AtomicU64,
        calls: AtomicU64,
    }
    unsafe extern "C" fn log_cb(ud: *mut c_void, _level: i32, _msg: *const c_char) {
        let s = &*(ud as *const Sink);
        s.calls.fetch_add(1, Ordering::Relaxed);
        if !s.alive.load(Ordering::SeqCst) {
            s.late.fetch_add(1, Ordering::Relaxed);
        }
        // A slow host logger widens any window.
        std::thread::sleep(Duration::from_micros(50));
    }
    let stop = AtomicBool::new(false);
    let sinks: Vec<Sink> = (0..200)
        .map(|_| Sink {
            alive: AtomicBool::new(true),
            late: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        })
        .collect();
    std::thread::scope(|s| {
        // Another transport (no log callback of its own) logs warnings all the time.
        s.spawn(|| {
            let other = Transport::create();
            let bad = CString::new(config("\"no_such_key\": 1")).unwrap();
            while !stop.load(Ordering::Relaxed) {
                unsafe { sunrise_link_transport_install(other.t, bad.as_ptr()) };
                other.uninstall();
            }
        });
        for sink in &sinks {
            let cb = sunrise_link_host_callbacks_t {
                abi_version: SUNRISE_LINK_ABI_VERSION,
                struct_size: std::mem::size_of::<sunrise_link_host_callbacks_t>() as u32,
                user_data: sink as *const Sink as *mut c_void,
                lookup_remote_buffer: None,
                log: Some(log_cb),
                notify_progress: None,
                local_machine_id: std::ptr::null(),
            };
            let mut t = std::ptr::null_mut();
            assert_eq!(unsafe { sunrise_link_transport_create(&cb, &mut t) }, 0);
            std::thread::sleep(Duration::from_millis(1));
            assert_eq!(unsafe { sunrise_link_transport_destroy(t) }, 0);
            sink.alive.store(false, Ordering::SeqCst);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let late: u64 = sinks.iter().map(|s| s.late.load(Ordering::Relaxed)).sum();
    let calls: u64 = sinks.iter().map(|s| s.calls.load(Ordering::Relaxed)).sum();
    eprintln!("log callbacks: {calls} calls, {late} after destroy returned");
    assert!(
        calls > 0,
        "the other transport's warnings never reached a sink"
    );
    assert_eq!(
        late, 0,
        "log callback ran after its transport was destroyed"
    );
}
