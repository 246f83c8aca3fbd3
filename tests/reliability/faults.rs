//! Runtime faults (the emulator's fault injection): every runtime call the library makes fails
//! at every point of install, register, submit, poll and uninstall, one at a time. Each time
//! the library stays consistent: the calls that hit the fault fail with a message, affected
//! tasks are FAILED with a message, the others complete with verified bytes, no stream, event
//! or IPC mapping is leaked, and a fresh install works afterwards. Also: a missing library or
//! symbol, zero devices, PTML init failure, and a peer process killed mid-transfer.

use crate::support::direct::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
/// Size of each local buffer.
const BUF: u64 = 1 << 20;
/// Remote buffer (published length) and its unpublished guard.
const REMOTE: u64 = 256 << 10;
const GUARD: u64 = 64 << 10;
const SEG: u64 = 3;
const REMOTE_BASE: u64 = 0x6000_0000_0000;
const ASYNC_CFG: &str = "\"async_memcpy_threshold\": \"64KiB\", \"enable_port_striping\": true, \
                         \"port_striping_min_size\": \"64KiB\", \"worker_threads\": 3";
/// A second link between devices 0 and 1, so striped copies have two ports.
const EXTRA_LINK: &str = "[[link]]\na = [0, 8]\nb = [1, 8]\n";

/// Buffers shared by every round: three device buffers, a host buffer and a remote buffer
/// registered by another transport (the owner) with a guard region after it.
struct Bed {
    a: u64,
    b: u64,
    c: u64,
    host: Vec<u8>,
    remote: u64,
    shm: String,
    owner: Transport,
}

impl Bed {
    fn new(emu: &Emu) -> Bed {
        let owner = Transport::installed("");
        let remote = emu.alloc(2, (REMOTE + GUARD) as usize);
        let shm = owner.add(remote, REMOTE, "cuda:2").unwrap();
        Bed {
            a: emu.alloc(0, BUF as usize),
            b: emu.alloc(0, BUF as usize),
            c: emu.alloc(1, BUF as usize),
            host: vec![0; BUF as usize],
            remote,
            shm,
            owner,
        }
    }

    /// Fills sources with patterns and destinations with zeros (no fault is set).
    fn reset(&mut self, emu: &Emu, round: u64) {
        emu.write(self.a, &pattern(round, BUF as usize));
        emu.write(self.b, &vec![0; BUF as usize]);
        emu.write(self.c, &vec![0; BUF as usize]);
        self.host
            .copy_from_slice(&pattern(round ^ 0x55, BUF as usize));
        let mut r = pattern(round ^ 0xAA, REMOTE as usize);
        r.extend(std::iter::repeat(0xE7).take(GUARD as usize));
        emu.write(self.remote, &r);
    }

    fn free(self, emu: &Emu) {
        drop(self.owner);
        for p in [self.a, self.b, self.c, self.remote] {
            emu.free(p);
        }
    }
}

/// What one request does: (request, destination, expected bytes of the destination).
enum Dst {
    Dev(u64),
    Host(usize),
    Remote(u64),
}

struct Planned {
    r: sunrise_link_request_t,
    dst: Dst,
    want: Vec<u8>,
}

fn plan(bed: &Bed, round: u64) -> Vec<Planned> {
    let src_a = pattern(round, BUF as usize);
    let src_h = pattern(round ^ 0x55, BUF as usize);
    let src_r = pattern(round ^ 0xAA, REMOTE as usize);
    let hp = bed.host.as_ptr() as u64;
    let a = |off: u64, len: u64| src_a[off as usize..(off + len) as usize].to_vec();
    let w = SUNRISE_LINK_OP_WRITE;
    let rd = SUNRISE_LINK_OP_READ;
    vec![
        // same device, synchronous
        Planned {
            r: req(w, bed.a, 0, bed.b, 4096),
            dst: Dst::Dev(bed.b),
            want: a(0, 4096),
        },
        // same device, asynchronous (stream + event)
        Planned {
            r: req(w, bed.a + 8192, 0, bed.b + 8192, 256 << 10),
            dst: Dst::Dev(bed.b + 8192),
            want: a(8192, 256 << 10),
        },
        // cross device: peer copy chain
        Planned {
            r: req(w, bed.a, 0, bed.c, 4096),
            dst: Dst::Dev(bed.c),
            want: a(0, 4096),
        },
        // cross device: striped over two ports
        Planned {
            r: req(w, bed.a + (512 << 10), 0, bed.c + (512 << 10), 256 << 10),
            dst: Dst::Dev(bed.c + (512 << 10)),
            want: a(512 << 10, 256 << 10),
        },
        // host to device, device to host (asynchronous)
        Planned {
            r: req(w, hp, 0, bed.b + (512 << 10), 128 << 10),
            dst: Dst::Dev(bed.b + (512 << 10)),
            want: src_h[..128 << 10].to_vec(),
        },
        Planned {
            r: req(rd, hp + (512 << 10), 0, bed.a + 4096, 4096),
            dst: Dst::Host(512 << 10),
            want: a(4096, 4096),
        },
        // remote segment over IPC: read, then write elsewhere
        Planned {
            r: req(rd, bed.c + (128 << 10), SEG, REMOTE_BASE, 64 << 10),
            dst: Dst::Dev(bed.c + (128 << 10)),
            want: src_r[..64 << 10].to_vec(),
        },
        Planned {
            r: req(
                w,
                bed.a + (768 << 10),
                SEG,
                REMOTE_BASE + (128 << 10),
                128 << 10,
            ),
            dst: Dst::Remote(128 << 10),
            want: a(768 << 10, 128 << 10),
        },
    ]
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    install_failed: bool,
    add_failed: bool,
    completed: usize,
    failed: usize,
}

/// One round while a fault may be set: install, register, submit, wait, uninstall. Touches
/// the runtime only through the library. Returns the tally and the task states.
/// A transport after a round, its sub-batch and the (status, message) of each task.
type Ran = (Transport, u64, Vec<(i32, String)>);

fn round(bed: &Bed) -> (Tally, Option<Ran>) {
    let mut tally = Tally::default();
    let t = Transport::create();
    t.publish(Remote {
        segment: SEG,
        base: REMOTE_BASE,
        length: REMOTE,
        location: "cuda:2".into(),
        shm_path: bed.shm.clone(),
        machine_id: MACHINE.into(),
    });
    if t.install(Some(&config(ASYNC_CFG))) != 0 {
        assert!(!last_error().is_empty(), "install failed without a message");
        tally.install_failed = true;
        return (tally, None);
    }
    let regs = [
        (bed.a, "cuda:0"),
        (bed.b, "cuda:0"),
        (bed.c, "cuda:1"),
        (bed.host.as_ptr() as u64, "cpu:0"),
    ];
    for (p, loc) in regs {
        if let Err(rc) = t.add(p, BUF, loc) {
            assert!(
                !last_error().is_empty(),
                "buffer_add failed without a message"
            );
            assert!(rc != 0);
            // Nothing stays registered after a failed add.
            assert_eq!(t.remove(p), SUNRISE_LINK_ADDRESS_NOT_REGISTERED);
            tally.add_failed = true;
        }
    }
    if tally.add_failed {
        return (tally, Some((t, 0, Vec::new())));
    }
    let planned = plan(bed, 0);
    let reqs: Vec<_> = planned.iter().map(|p| p.r).collect();
    let h = t.allocate(reqs.len() as u64).unwrap();
    assert_eq!(t.submit(h, &reqs), 0, "submit: {}", last_error());
    let mut states = Vec::new();
    for (i, (s, bytes)) in t
        .wait_all(h, reqs.len() as u64, WAIT)
        .into_iter()
        .enumerate()
    {
        let msg = t.task_error(h, i as u64);
        match s {
            SUNRISE_LINK_TASK_COMPLETED => {
                assert_eq!(bytes, reqs[i].length);
                tally.completed += 1;
            }
            SUNRISE_LINK_TASK_FAILED => {
                assert!(!msg.is_empty(), "task {i} FAILED without a message");
                tally.failed += 1;
            }
            other => panic!("task {i} ended in state {other}"),
        }
        states.push((s, msg));
    }
    (tally, Some((t, h, states)))
}

/// Checks the destination bytes of completed tasks and that the guard is intact.
fn verify(emu: &Emu, bed: &Bed, states: &[(i32, String)]) {
    for (i, p) in plan(bed, 0).iter().enumerate() {
        if states.get(i).map(|s| s.0) != Some(SUNRISE_LINK_TASK_COMPLETED) {
            continue;
        }
        let got = match p.dst {
            Dst::Dev(d) => emu.read(d, p.want.len()),
            Dst::Host(off) => bed.host[off..off + p.want.len()].to_vec(),
            Dst::Remote(off) => emu.read(bed.remote + off, p.want.len()),
        };
        assert!(got == p.want, "task {i} COMPLETED but its bytes differ");
    }
    assert!(
        emu.read(bed.remote + REMOTE, GUARD as usize)
            .iter()
            .all(|&b| b == 0xE7),
        "guard after the remote buffer written"
    );
}

fn set_fault(emu: &Emu, function: &str, code: u32, mode: &str) {
    let toml = format!("[[fault]]\nfunction = \"{function}\"\ncode = {code}\n{mode}\n");
    emu.configure(&toml);
}

/// Functions whose failure leaves the runtime holding the object: the emulator keeps it, so
/// its live count cannot balance (the library has nothing else to call).
const RELEASES: &[&str] = &[
    "tangStreamDestroy",
    "tangEventDestroy",
    "tangIpcCloseMemHandle",
];

#[test]
fn every_runtime_call_failing_at_every_point() {
    let (_g, emu) = serial();
    emu.configure(EXTRA_LINK);
    let mut bed = Bed::new(emu);
    let mut base = emu.live_transport_objects();
    let functions = [
        "ptmlInit",
        "ptmlPtlinkEnableAll",
        "ptmlPtlinkPhytopoDetect",
        "tangGetDeviceCount",
        "tangGetDevice",
        "tangSetDevice",
        "tangPointerGetAttributes",
        "tangIpcGetMemHandle",
        "tangIpcOpenMemHandle",
        "tangIpcCloseMemHandle",
        "tangMemcpy",
        "tangMemcpyAsync",
        "tangMemcpyPeer",
        "tangMemcpyPeer_v2",
        "tangDeviceGetPeerPointer",
        "tangStreamCreateWithFlags",
        "tangStreamDestroy",
        "tangEventCreateWithFlags",
        "tangEventRecord",
        "tangEventQuery",
        "tangEventDestroy",
    ];
    // A clean round first: how often each function is called.
    bed.reset(emu, 0);
    let before: Vec<u64> = functions.iter().map(|f| emu.calls(f)).collect();
    let (tally, rest) = round(&bed);
    let (t, _, states) = rest.unwrap();
    assert_eq!(
        tally,
        Tally {
            completed: 8,
            ..Tally::default()
        },
        "{states:?}"
    );
    drop(t);
    assert_eq!(emu.live_transport_objects(), base, "a clean round leaked");
    verify(emu, &bed, &states);
    let calls: Vec<u64> = functions
        .iter()
        .zip(&before)
        .map(|(f, b)| emu.calls(f) - b)
        .collect();
    let mut summary: BTreeMap<&str, (u64, Tally)> = BTreeMap::new();
    let mut rounds = 0;
    for (fi, f) in functions.iter().enumerate() {
        // nth = 1..=calls (capped), then "every call".
        let n = calls[fi].clamp(1, 12);
        let modes: Vec<String> = (1..=n)
            .map(|k| format!("nth = {k}"))
            .chain(std::iter::once(String::new()))
            .collect();
        for mode in modes {
            rounds += 1;
            bed.reset(emu, 0);
            set_fault(emu, f, 999, &mode);
            let (tally, rest) = round(&bed);

            // Uninstall under the fault too (it may hit the release calls).
            if let Some((t, _, _)) = &rest {
                assert_eq!(t.uninstall(), 0, "{f} {mode}: uninstall: {}", last_error());
            }
            emu.clear_faults();
            if let Some((_, _, states)) = &rest {
                verify(emu, &bed, states);
            }
            let rest_states = rest.as_ref().map(|r| r.2.clone());
            drop(rest);
            if RELEASES.contains(f) {
                // The runtime refused to release: the object stays with it, not with us.
                base = emu.live_transport_objects();
            } else {
                assert_eq!(
                    emu.live_transport_objects(),
                    base,
                    "{f} failing ({mode:?}) leaked streams/events/IPC mappings: {tally:?} {:?}",
                    rest_states
                );
            }
            let e = summary.entry(f).or_default();
            e.0 += 1;
            e.1.completed += tally.completed;
            e.1.failed += tally.failed;
            e.1.install_failed |= tally.install_failed;
            e.1.add_failed |= tally.add_failed;
        }
    }
    // Every fault is gone: a fresh transport does everything again.
    bed.reset(emu, 0);
    let (tally, rest) = round(&bed);
    let (t, _, states) = rest.unwrap();
    assert_eq!(tally.completed, 8, "{states:?}");
    drop(t);
    verify(emu, &bed, &states);
    for (f, (n, t)) in &summary {
        eprintln!(
            "{f:28} rounds {n:2}  tasks completed {:3} failed {:3}  install failed: {}  add failed: {}",
            t.completed, t.failed, t.install_failed, t.add_failed
        );
    }
    eprintln!("{rounds} fault rounds");
    bed.free(emu);
}

#[test]
fn random_faults_under_load_leave_no_leak() {
    let (_g, emu) = serial();
    emu.configure(EXTRA_LINK);
    let mut bed = Bed::new(emu);
    let base = emu.live_transport_objects();
    let funcs = [
        "tangMemcpy",
        "tangMemcpyAsync",
        "tangMemcpyPeer",
        "tangDeviceGetPeerPointer",
        "tangEventQuery",
        "tangEventRecord",
        "tangSetDevice",
        "tangIpcOpenMemHandle",
    ];
    let (mut completed, mut failed) = (0, 0);
    for seed in 0..12u64 {
        bed.reset(emu, 0);
        let f = funcs[seed as usize % funcs.len()];
        set_fault(emu, f, 999, &format!("probability = 0.3\nseed = {seed}"));
        let (tally, rest) = round(&bed);
        if let Some((t, _, _)) = &rest {
            assert_eq!(t.uninstall(), 0);
        }
        emu.clear_faults();
        if let Some((_, _, states)) = &rest {
            verify(emu, &bed, states);
        }
        drop(rest);
        completed += tally.completed;
        failed += tally.failed;
        assert_eq!(emu.live_transport_objects(), base, "seed {seed} ({f})");
    }
    eprintln!("random faults: {completed} tasks completed, {failed} failed");
    bed.free(emu);
}

#[test]
fn install_fails_cleanly_and_recovers() {
    if role(ZERO_ENV).is_some() {
        return zero_devices_role();
    }
    let (_g, emu) = serial();
    let base = emu.live_transport_objects();
    let t = Transport::create();
    // Missing library.
    let empty = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{{\"runtime_lib_dir\": {:?}}}",
        empty.path().to_string_lossy()
    );
    assert_eq!(t.install(Some(&cfg)), SUNRISE_LINK_RUNTIME_ERROR);
    let m = last_error();
    assert!(
        m.contains("libptml_shared.so") || m.contains("libtangrt_shared.so"),
        "{m}"
    );
    // Missing symbol: a library without the PTML entry points under PTML's name.
    let dir = lib_dir(&emu_root());
    std::fs::copy(
        dir.join("libtangrt_shared.so"),
        empty.path().join("libptml_shared.so"),
    )
    .unwrap();
    assert_eq!(t.install(Some(&cfg)), SUNRISE_LINK_RUNTIME_ERROR);
    let m = last_error();
    assert!(m.contains("ptmlInit"), "the missing symbol is named: {m}");
    // PTML init failure.
    set_fault(emu, "ptmlInit", 6, "");
    assert_eq!(t.install(Some(&config(""))), SUNRISE_LINK_RUNTIME_ERROR);
    assert!(last_error().contains("ptmlInit"), "{}", last_error());
    emu.clear_faults();
    // Zero devices (in a child process: the device count can change only while nothing is
    // allocated, and this process holds memory of other tests).
    let out = rerun_as("install_fails_cleanly_and_recovers", ZERO_ENV, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("ZERO-DEVICES-OK"),
        "zero-device child: {}\n{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    // Device count failing.
    set_fault(emu, "tangGetDeviceCount", 999, "");
    assert_ne!(t.install(Some(&config(""))), 0);
    assert!(last_error().contains("device"), "{}", last_error());
    emu.clear_faults();
    assert_eq!(emu.live_transport_objects(), base);
    // The cause is gone: the same transport installs and works.
    assert_eq!(t.install(Some(&config(""))), 0, "{}", last_error());
    let a = emu.alloc(0, 4096);
    let b = emu.alloc(1, 4096);
    emu.write(a, &pattern(9, 4096));
    t.add(a, 4096, "cuda:0").unwrap();
    t.add(b, 4096, "cuda:1").unwrap();
    let h = t.allocate(1).unwrap();
    assert_eq!(t.submit(h, &[req(SUNRISE_LINK_OP_WRITE, a, 0, b, 4096)]), 0);
    assert_eq!(t.wait(h, 0, WAIT).0, SUNRISE_LINK_TASK_COMPLETED);
    assert_eq!(emu.read(b, 4096), pattern(9, 4096));
    drop(t);
    emu.free(a);
    emu.free(b);
    assert_eq!(emu.live_transport_objects(), base);
}

const ZERO_ENV: &str = "SUNRISE_LINK_REL_ZERO_DEVICES";

/// Zero devices (the child role of `install_fails_cleanly_and_recovers`): install fails with
/// DeviceNotFound; once devices appear it installs.
fn zero_devices_role() {
    let emu = emu();
    emu.configure("devices = 0");
    let t = Transport::create();
    assert_eq!(t.install(Some(&config(""))), SUNRISE_LINK_DEVICE_NOT_FOUND);
    assert!(last_error().contains("no Tang devices"), "{}", last_error());
    assert_eq!(emu.live_transport_objects(), [0, 0, 0]);
    emu.configure("devices = 2");
    assert_eq!(t.install(Some(&config(""))), 0, "{}", last_error());
    drop(t);
    println!("ZERO-DEVICES-OK");
}

#[test]
fn minimal_runtime_without_optional_symbols_still_copies() {
    let (_g, emu) = serial();
    let lib = lib_dir(&minimal_root());
    // The minimal root is another runtime instance: its devices are its own. Install only
    // (no copies against our instance's memory); uninstall; install again.
    let t = Transport::create();
    let cfg = format!("{{\"runtime_lib_dir\": {:?}}}", lib.to_string_lossy());
    assert_eq!(t.install(Some(&cfg)), 0, "{}", last_error());
    assert_eq!(t.uninstall(), 0);
    assert_eq!(t.install(Some(&cfg)), 0, "{}", last_error());
    drop(t);
    let _ = emu;
}

// ------------------------------------------------------------------------------ peer dies

const PEER_ENV: &str = "SUNRISE_LINK_REL_PEER";

/// The target process (the child role of the peer tests): registers a device buffer and prints
/// its shm_path; then, on "free" on stdin, unregisters and frees it and exits; else waits
/// (bounded) to be killed.
fn peer_target_role() {
    let emu = emu();
    let t = Transport::installed("");
    let len = 8usize << 20;
    let p = emu.alloc(1, len);
    emu.write(p, &pattern(77, len));
    let shm = t.add(p, len as u64, "cuda:1").unwrap();
    println!("\nPEER {p:#x} {len} {shm}");
    std::io::stdout().flush().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut l = String::new();
        let _ = std::io::stdin().read_line(&mut l);
        let _ = tx.send(l);
    });
    if let Ok(l) = rx.recv_timeout(Duration::from_secs(60)) {
        if l.trim() == "free" {
            assert_eq!(t.remove(p), 0);
            emu.free(p);
            drop(t);
            std::process::exit(0);
        }
    }
    std::process::exit(3);
}

struct Peer {
    child: std::process::Child,
    base: u64,
    len: u64,
    shm: String,
}

#[allow(clippy::zombie_processes)] // the callers wait for it (or kill it)
fn spawn_peer(test: &str) -> Peer {
    let mut child = rerun_as(test, PEER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let l = lines.next().expect("peer output").unwrap();
        if let Some(rest) = l.strip_prefix("PEER ") {
            let v: Vec<&str> = rest.split(' ').collect();
            return Peer {
                child,
                base: u64::from_str_radix(v[0].trim_start_matches("0x"), 16).unwrap(),
                len: v[1].parse().unwrap(),
                shm: v[2].to_string(),
            };
        }
    }
}

/// Submits 2000 reads and writes of 256 KiB against the peer over slow links while `kill`
/// ends the peer on another thread; returns (completed, failed) once every task is terminal
/// (bounded).
fn transfers_while_peer_dies(
    test: &str,
    emu: &Emu,
    kill: impl FnOnce(&mut Peer) + Send,
) -> (usize, usize) {
    let mut peer = spawn_peer(test);
    // Slow links (this process only), so transfers are still in flight when the peer dies.
    emu.configure("[link_model]\nbandwidth = 2e9\n");
    let t = Transport::installed("\"worker_threads\": 2, \"async_memcpy_threshold\": \"1MiB\"");
    t.publish(Remote {
        segment: 5,
        base: peer.base,
        length: peer.len,
        location: "cuda:1".into(),
        shm_path: peer.shm.clone(),
        machine_id: MACHINE.into(),
    });
    let len = peer.len;
    let local = emu.alloc(0, len as usize);
    t.add(local, len, "cuda:0").unwrap();
    // A first read proves the path works.
    let h = t.allocate(4096).unwrap();
    assert_eq!(
        t.submit(h, &[req(SUNRISE_LINK_OP_READ, local, 5, peer.base, len)]),
        0
    );
    assert_eq!(
        t.wait(h, 0, WAIT).0,
        SUNRISE_LINK_TASK_COMPLETED,
        "{}",
        t.task_error(h, 0)
    );
    assert_eq!(
        checksum(&emu.read(local, len as usize)),
        checksum(&pattern(77, len as usize))
    );
    let chunk = 256u64 << 10;
    let reqs: Vec<_> = (0..2000u64)
        .map(|i| {
            let off = (i * chunk) % len;
            let op = if i % 2 == 0 {
                SUNRISE_LINK_OP_READ
            } else {
                SUNRISE_LINK_OP_WRITE
            };
            req(op, local + off, 5, peer.base + off, chunk)
        })
        .collect();
    // The copies run inside submit: the peer dies on another thread meanwhile.
    std::thread::scope(|s| {
        let killer = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            kill(&mut peer);
        });
        assert_eq!(t.submit(h, &reqs), 0);
        killer.join().unwrap();
    });
    let (mut done, mut failed) = (0, 0);
    for i in 1..=reqs.len() as u64 {
        match t.wait(h, i, WAIT).0 {
            SUNRISE_LINK_TASK_COMPLETED => done += 1,
            SUNRISE_LINK_TASK_FAILED => {
                assert!(!t.task_error(h, i).is_empty());
                failed += 1
            }
            s => panic!("task {i}: state {s}"),
        }
    }
    assert_eq!(t.uninstall(), 0);
    drop(t);
    emu.configure("link_model = {}");
    emu.free(local);
    (done, failed)
}

/// The peer frees its buffer and exits mid-transfer: the tasks after that fail with a
/// message, none hangs, and everything is released.
#[test]
fn peer_exits_mid_transfer() {
    if role(PEER_ENV).is_some() {
        return peer_target_role();
    }
    let (_g, emu) = serial();
    let base = emu.live_transport_objects();
    let (done, failed) = transfers_while_peer_dies("peer_exits_mid_transfer", emu, |p| {
        let mut stdin = p.child.stdin.take().unwrap();
        stdin.write_all(b"free\n").unwrap();
        drop(stdin);
        assert!(p.child.wait().unwrap().success());
    });
    eprintln!("peer exited: {done} tasks completed before, {failed} failed after");
    assert!(failed > 0, "the freed buffer went unnoticed");
    assert_eq!(emu.live_transport_objects(), base);
}

/// The peer is killed (SIGKILL) mid-transfer: every task reaches a terminal state within the
/// bound, and uninstall releases everything. (The emulator keeps a killed exporter's memory
/// readable through mappings already open, so these tasks may complete.)
#[test]
fn peer_killed_mid_transfer() {
    if role(PEER_ENV).is_some() {
        return peer_target_role();
    }
    let (_g, emu) = serial();
    let base = emu.live_transport_objects();
    let (done, failed) = transfers_while_peer_dies("peer_killed_mid_transfer", emu, |p| {
        p.child.kill().unwrap();
        p.child.wait().unwrap();
    });
    eprintln!("peer killed: {done} tasks completed, {failed} failed");
    assert_eq!(done + failed, 2000);
    assert_eq!(emu.live_transport_objects(), base);
}

/// When an async copy is queued but its event cannot be recorded (or created), the task
/// must not end before the copy: COMPLETED with its bytes already there, or FAILED with
/// nothing written afterwards.
#[test]
fn async_copy_whose_event_fails_ends_after_the_copy() {
    let (_g, emu) = serial();
    let base = emu.live_transport_objects();
    let t = Transport::installed("\"async_memcpy_threshold\": \"1MiB\", \"worker_threads\": 1");
    let len = 16usize << 20;
    let a = emu.alloc(0, len);
    let b = emu.alloc(0, len);
    t.add(a, len as u64, "cuda:0").unwrap();
    t.add(b, len as u64, "cuda:0").unwrap();
    let h = t.allocate(8).unwrap();
    let funcs = [
        "tangEventRecord",
        "tangEventCreateWithFlags",
        "tangEventQuery",
    ];
    for (round, f) in funcs.iter().enumerate() {
        emu.write(a, &pattern(round as u64, len));
        emu.write(b, &vec![0; len]);
        set_fault(emu, f, 999, "");
        assert_eq!(
            t.submit(h, &[req(SUNRISE_LINK_OP_WRITE, a, 0, b, len as u64)]),
            0
        );
        let (st, _) = t.wait(h, round as u64, WAIT);
        emu.clear_faults();
        let now = checksum(&emu.read(b, len));
        match st {
            SUNRISE_LINK_TASK_COMPLETED => {
                assert_eq!(
                    now,
                    checksum(&pattern(round as u64, len)),
                    "{f}: bytes missing"
                )
            }
            SUNRISE_LINK_TASK_FAILED => {
                assert_eq!(now, checksum(&vec![0; len]), "{f}: FAILED but written");
                std::thread::sleep(Duration::from_millis(200));
                let later = checksum(&emu.read(b, len));
                assert_eq!(later, now, "{f}: FAILED, then written");
            }
            s => panic!("{f}: state {s}"),
        }
    }
    drop(t);
    emu.free(a);
    emu.free(b);
    assert_eq!(emu.live_transport_objects(), base);
}
