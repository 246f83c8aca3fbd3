//! Two unrelated processes on the emulated runtime: a target registers device memory and
//! publishes its shm_path; an initiator with its own host callbacks reads and writes it through
//! the plugin table. Also: re-registration at the same address with a new handle, a remote
//! buffer on another machine, a remote host buffer, a malformed shm_path.

use crate::support::table::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

const LEN: usize = 1 << 20;

/// The target role: registers a buffer on `TARGET_DEVICE` filled with pattern 1, prints
/// "addr len location shm_path", then obeys commands from stdin:
/// "verify <off> <len> <seed>" → prints "ok"/"bad N"; "realloc <seed>" → frees, allocates
/// the same size again, fills, re-registers, prints the new line; "quit".
fn target() {
    let dev = Dev::open();
    let x = Xport::new("{}");
    let d: i32 = std::env::var("TARGET_DEVICE").unwrap().parse().unwrap();
    let loc = format!("cuda:{d}");
    let mut buf = dev.alloc(d, LEN);
    dev.write(buf, &pattern(LEN, 1));
    let shm = x.add(buf, LEN as u64, &loc).unwrap();
    println!("BUF {buf} {LEN} {loc} {shm}");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.first().copied() {
            Some("verify") => {
                let (off, len, seed): (usize, usize, u8) = (
                    w[1].parse().unwrap(),
                    w[2].parse().unwrap(),
                    w[3].parse().unwrap(),
                );
                let got = dev.read(buf + off as u64, len);
                let want = pattern(len, seed);
                let bad = got.iter().zip(&want).filter(|(a, b)| a != b).count();
                println!(
                    "{}",
                    if bad == 0 {
                        "ok".to_string()
                    } else {
                        format!("bad {bad}")
                    }
                );
            }
            Some("realloc") => {
                let seed: u8 = w[1].parse().unwrap();
                assert_eq!(x.remove(buf), 0);
                dev.free(buf);
                buf = dev.alloc(d, LEN);
                dev.write(buf, &pattern(LEN, seed));
                let shm = x.add(buf, LEN as u64, &loc).unwrap();
                println!("BUF {buf} {LEN} {loc} {shm}");
            }
            _ => break,
        }
        std::io::stdout().flush().unwrap();
    }
}

struct Peer {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Peer {
    fn spawn(device: i32) -> Peer {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            &test_path("target_role"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "target_role")
        .env("TARGET_DEVICE", device.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
        // Started from a scenario these come from it; started on its own, the target needs them.
        if std::env::var_os("MC_TANGRT_LIB_DIR").is_none() {
            cmd.env("MC_TANGRT_LIB_DIR", lib_dir(&emu_root()));
        }
        if std::env::var_os("TANG_EMU_DEVICES").is_none() {
            cmd.env("TANG_EMU_DEVICES", "4");
        }
        let mut child = cmd.spawn().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        // Bound every wait on the target: kill it if the test has not finished in 120 s.
        let pid = child.id() as i32;
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(120));
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
        Peer { child, out }
    }
    fn line(&mut self, prefix: &str) -> String {
        let mut l = String::new();
        for _ in 0..100 {
            l.clear();
            assert!(self.out.read_line(&mut l).unwrap() > 0, "target exited");
            // The harness may print "test target_role ... " before it on the same line.
            if let Some(i) = l.find(prefix) {
                return l[i..].trim().to_string();
            }
        }
        panic!("no {prefix} line from the target");
    }
    fn buffer(&mut self) -> Remote {
        let l = self.line("BUF ");
        let w: Vec<&str> = l.split_whitespace().collect();
        Remote {
            base: w[1].parse().unwrap(),
            length: w[2].parse().unwrap(),
            location: w[3].into(),
            shm_path: w[4].into(),
            machine_id: MACHINE.into(),
        }
    }
    fn send(&mut self, cmd: &str) {
        let s = self.child.stdin.as_mut().unwrap();
        writeln!(s, "{cmd}").unwrap();
        s.flush().unwrap();
    }
    fn verify(&mut self, off: usize, len: usize, seed: u8) -> String {
        self.send(&format!("verify {off} {len} {seed}"));
        let mut l = String::new();
        loop {
            l.clear();
            assert!(self.out.read_line(&mut l).unwrap() > 0, "target exited");
            let t = l.trim();
            if t.ends_with("ok") || t.contains("bad ") {
                return if t.ends_with("ok") {
                    "ok".into()
                } else {
                    t.to_string()
                };
            }
        }
    }
    fn quit(mut self) {
        self.send("quit");
        let st = self.child.wait().unwrap();
        assert!(st.success(), "target failed: {st}");
    }
}

/// In a child started by `Peer::spawn`, the target itself. Run on its own, it checks the
/// role: the target publishes a device buffer with a Tang IPC handle, verifies its bytes and
/// reports a mismatch.
#[test]
fn target_role() {
    if std::env::var(CHILD_ENV).as_deref() == Ok("target_role") {
        target();
        return;
    }
    let mut peer = Peer::spawn(2);
    let r = peer.buffer();
    assert_eq!((r.length, r.location.as_str()), (LEN as u64, "cuda:2"));
    assert_eq!(r.shm_path.len(), 128, "{}", r.shm_path);
    assert!(
        r.shm_path
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
        "{}",
        r.shm_path
    );
    assert_eq!(peer.verify(0, LEN, 1), "ok");
    assert!(
        peer.verify(0, 64, 2).starts_with("bad "),
        "a mismatch is reported"
    );
    peer.quit();
}

#[test]
fn two_processes_write_and_read() {
    scenario(
        "two_processes_write_and_read",
        &[("TANG_EMU_DEVICES", "4")],
        || {
            let mut peer = Peer::spawn(2);
            let r = peer.buffer();
            let dev = Dev::open();
            let emu = Emu::open();
            let x = Xport::new("{}");
            x.set_remote(1, r.clone());
            let mine = dev.alloc(0, LEN);
            let same = dev.alloc(2, LEN);
            x.add(mine, LEN as u64, "cuda:0").unwrap();
            x.add(same, LEN as u64, "cuda:2").unwrap();
            let b = x.batch(16);
            // Read the whole remote buffer, on a peer device and on the same device.
            assert_eq!(
                x.submit(
                    b,
                    &[
                        req(READ, mine, 1, r.base, LEN as u64),
                        req(READ, same, 1, r.base, LEN as u64)
                    ]
                ),
                0
            );
            assert_eq!(x.wait(b, 0).0, COMPLETED, "{}", x.error(b, 0));
            assert_eq!(x.wait(b, 1).0, COMPLETED, "{}", x.error(b, 1));
            assert_eq!(dev.read(mine, LEN), pattern(LEN, 1));
            assert_eq!(dev.read(same, LEN), pattern(LEN, 1));
            // Write into the middle of it, from device 0; the target checks.
            dev.write(mine, &pattern(LEN / 4, 5));
            assert_eq!(
                x.submit(
                    b,
                    &[req(
                        WRITE,
                        mine,
                        1,
                        r.base + (LEN / 2) as u64,
                        (LEN / 4) as u64
                    )]
                ),
                0
            );
            assert_eq!(x.wait(b, 2).0, COMPLETED, "{}", x.error(b, 2));
            assert_eq!(peer.verify(LEN / 2, LEN / 4, 5), "ok");
            assert_eq!(
                peer.verify(0, LEN / 2, 1),
                "ok",
                "bytes before the write untouched"
            );
            // The first two reads may miss together on two workers (the host is asked outside
            // any lock); after that the cache answers.
            let asked = x.host.lookups.load(Ordering::SeqCst);
            assert!((1..=2).contains(&asked), "{asked} host lookups");
            assert_eq!(emu.calls("tangIpcOpenMemHandle"), 1);
            let s = x.stats();
            assert_eq!(s.ipc_requests, 3);

            // Remote device memory into local host memory (device-to-host through the mapping).
            let mut host = vec![0u8; LEN / 8];
            assert_eq!(
                x.submit(
                    b,
                    &[req(
                        READ,
                        host.as_mut_ptr() as u64,
                        1,
                        r.base,
                        (LEN / 8) as u64
                    )]
                ),
                0
            );
            assert_eq!(x.wait(b, 3).0, COMPLETED, "{}", x.error(b, 3));
            assert_eq!(host, pattern(LEN / 8, 1));
            assert_eq!(
                x.host.lookups.load(Ordering::SeqCst),
                asked,
                "later requests hit the cache"
            );

            // Re-registration at the same address with a new handle: the stale mapping fails,
            // the host is asked again (refresh), the new handle is opened and the old one closed.
            peer.send("realloc 9");
            let r2 = peer.buffer();
            assert_ne!(r2.shm_path, r.shm_path, "a new allocation has a new handle");
            x.set_remote(1, r2.clone());
            let same_address = r2.base == r.base;
            assert_eq!(x.submit(b, &[req(READ, mine, 1, r2.base, LEN as u64)]), 0);
            assert_eq!(x.wait(b, 4).0, COMPLETED, "{}", x.error(b, 4));
            assert_eq!(dev.read(mine, LEN), pattern(LEN, 9));
            assert!(
                same_address,
                "the emulator reuses the freed range; the test relies on it"
            );
            assert!(x.host.refreshes.load(Ordering::SeqCst) >= 1);
            assert_eq!(emu.calls("tangIpcOpenMemHandle"), 2);
            assert_eq!(emu.live("ipc_open"), 1, "the stale mapping was closed");

            // The same buffer, published as another machine's: FAILED with a message.
            let mut far = r2.clone();
            far.machine_id = "another-machine".into();
            x.set_remote(1, far);
            assert_eq!(x.invalidate(1), 0);
            assert_eq!(x.submit(b, &[req(READ, mine, 1, r2.base, 64)]), 0);
            assert_eq!(x.wait(b, 5).0, FAILED);
            assert!(
                x.error(b, 5).contains("another-machine"),
                "{}",
                x.error(b, 5)
            );

            // A remote host buffer is not reachable; a malformed shm_path fails after one refresh.
            let mut host = r2.clone();
            host.location = "cpu:0".into();
            x.set_remote(1, host);
            assert_eq!(x.submit(b, &[req(READ, mine, 1, r2.base, 64)]), 0);
            assert_eq!(x.wait(b, 6).0, FAILED);
            assert!(
                x.error(b, 6).contains("not Tang device memory"),
                "{}",
                x.error(b, 6)
            );
            let mut bad = r2.clone();
            bad.shm_path = "/mooncake_shm_segment".into();
            x.set_remote(1, bad);
            let before = x.host.refreshes.load(Ordering::SeqCst);
            assert_eq!(x.submit(b, &[req(READ, mine, 1, r2.base, 64)]), 0);
            assert_eq!(x.wait(b, 7).0, FAILED);
            assert_eq!(x.host.refreshes.load(Ordering::SeqCst), before + 1);
            // Unknown segment: FAILED, not a submit error.
            assert_eq!(x.submit(b, &[req(READ, mine, 42, r2.base, 64)]), 0);
            assert_eq!(x.wait(b, 8).0, FAILED);

            drop(x);
            assert_eq!(emu.live("ipc_open"), 0, "destroy closed every mapping");
            peer.quit();
        },
    );
}
