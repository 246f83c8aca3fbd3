//! Bounded, deterministic fuzzing (stable Rust, no libFuzzer needed): seeded random plus
//! adversarial inputs for the hex codec, the location parser and the config parser (directly
//! and through the ABI's install), and a stateful driver that makes arbitrary sequences of
//! C ABI calls with arbitrary arguments against the emulated runtime, checking each result
//! against a model: no crash, no hang (every wait is bounded), the documented error codes,
//! the bytes of every allocation (a shadow copy, guard regions included), and no leaked
//! stream, event or IPC mapping at the end.
//!
//! Longer runs: `SUNRISE_LINK_FUZZ_SCALE=100 cargo test --release --test reliability fuzz -- --nocapture`
//! (iterations × scale), `SUNRISE_LINK_FUZZ_SEED=<n>` for another seed, and
//! `SUNRISE_LINK_FUZZ_PARANOID=1` to also check every byte before each step.

use crate::support::direct::*;
use std::ffi::{c_char, c_void, CString};
use std::time::Duration;
use sunrise_link::config::Config;
use sunrise_link::engine::parse_location;
use sunrise_link::tang::{hex_upper, parse_ipc_handle};

const WAIT: Duration = Duration::from_secs(30);

fn scale() -> u64 {
    std::env::var("SUNRISE_LINK_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

fn seed() -> u64 {
    std::env::var("SUNRISE_LINK_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED)
}

/// A random string from an alphabet chosen to hit the parsers' edges.
fn fuzz_string(r: &mut Rng, max: usize) -> String {
    const PIECES: &[&str] = &[
        "cuda",
        "npu",
        "cpu",
        "*",
        ":",
        "-",
        "+",
        "0",
        "1",
        "7",
        "9",
        "abc",
        " ",
        "\t",
        "\n",
        "\u{b}",
        "\u{c}",
        "\r",
        "\u{a0}",
        "\u{3000}",
        "é",
        "\0",
        "x",
        "2147483647",
        "2147483648",
        "-2147483648",
        "99999999999999999999",
        "KiB",
        "MiB",
        "GB",
        "e",
        ".",
    ];
    let n = r.below(max as u64 + 1) as usize;
    let mut s = String::new();
    while s.len() < n {
        match r.below(4) {
            0 => s.push(char::from_u32(r.below(0x110000) as u32).unwrap_or('?')),
            1 => s.push((b' ' + r.below(95) as u8) as char),
            _ => s.push_str(PIECES[r.below(PIECES.len() as u64) as usize]),
        }
    }
    s
}

#[test]
fn fuzz_hex_codec() {
    let mut r = Rng(seed());
    let n = 20_000 * scale();
    let mut ok = 0u64;
    for i in 0..n {
        let s = match i % 4 {
            // Valid handles, sometimes lower case, sometimes damaged in one place.
            0 | 1 => {
                let bytes = r.bytes(64);
                let mut h = hex_upper(&bytes);
                assert_eq!(h.len(), 128);
                assert!(h
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
                assert_eq!(parse_ipc_handle(&h).unwrap().to_vec(), bytes);
                if r.chance(300) {
                    h = h.to_lowercase();
                }
                if i % 4 == 1 {
                    let at = r.below(128) as usize;
                    let c = *r.pick(&['G', 'g', ' ', '\0', 'é', '0', 'f', 'Z', '-']);
                    let mut v: Vec<char> = h.chars().collect();
                    if r.chance(500) {
                        v[at] = c;
                    } else if r.chance(500) {
                        v.remove(at);
                    } else {
                        v.insert(at, c);
                    }
                    h = v.into_iter().collect();
                }
                h
            }
            2 => fuzz_string(&mut r, 200),
            _ => (0..r.below(260))
                .map(|_| *r.pick(&['0', 'a', 'F', 'g', '9', 'é']))
                .collect(),
        };
        let valid = s.len() == 128 && s.bytes().all(|b| b.is_ascii_hexdigit());
        match parse_ipc_handle(&s) {
            Ok(h) => {
                assert!(valid, "accepted {s:?}");
                assert_eq!(hex_upper(&h), s.to_uppercase(), "round trip of {s:?}");
                ok += 1;
            }
            Err(m) => {
                assert!(!valid, "refused {s:?}: {m}");
                assert!(!m.is_empty());
            }
        }
    }
    eprintln!("hex codec: {n} executions, {ok} valid");
}

#[path = "../models/tent_location.rs"]
mod tent_location_model;
use tent_location_model::tent_location;

#[test]
fn fuzz_location_parser() {
    let mut r = Rng(seed() ^ 1);
    let n = 50_000 * scale();
    let fixed = [
        "*",
        "cuda",
        "cuda:3",
        "cuda:3x",
        "cuda:abc",
        "cuda:-1",
        "cuda: 2",
        "cuda:\t2",
        "cuda:\u{b}2",
        "cuda:\u{a0}2",
        "cuda:\u{3000}2",
        "cuda:+2",
        "cuda:-",
        "cuda:",
        ":",
        "::",
        "cuda:2:3",
        "npu:0",
        "cpu:0",
        "cuda:2147483647",
        "cuda:2147483648",
        "cuda:-2147483648",
        "cuda:-2147483649",
        "cuda:0002",
        "é:1",
        "",
    ];
    let mut mismatches = Vec::new();
    for i in 0..n + fixed.len() as u64 {
        let s = if (i as usize) < fixed.len() {
            fixed[i as usize].to_string()
        } else {
            fuzz_string(&mut r, 24)
        };
        let (t, idx) = parse_location(&s);
        let (wt, widx) = tent_location(&s);
        if (t, idx) != (wt.as_str(), widx) {
            mismatches.push(format!("{s:?}: ours ({t:?}, {idx}), TENT ({wt:?}, {widx})"));
        }
    }
    eprintln!("location parser: {} executions", n + fixed.len() as u64);
    assert!(
        mismatches.is_empty(),
        "{} inputs parse unlike TENT, e.g. {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(5)]
    );
}

/// A random JSON value for a config key.
fn fuzz_json_value(r: &mut Rng, depth: u32) -> String {
    match r.below(if depth > 2 { 9 } else { 11 }) {
        0 => "null".into(),
        1 => (*r.pick(&["true", "false"])).into(),
        2 => format!("{}", r.next() as i64 >> r.below(64)),
        3 => format!("{}", r.below(300)),
        4 => format!("{}.{}", r.below(100), r.below(100)),
        5 => format!("{:?}", fuzz_string(r, 12)),
        6 => format!(
            "\"{}{}\"",
            r.below(100_000),
            r.pick(&["", "B", "KiB", "k", "MB", "GiB", "TiB", " MiB", "kib", "x"])
        ),
        7 => (*r.pick(&[
            "1e3",
            "-0",
            "18446744073709551616",
            "1e400",
            "4294967296",
            "0",
        ]))
        .into(),
        8 => "\"\"".into(),
        9 => format!("[{}]", fuzz_json_value(r, depth + 1)),
        _ => format!("{{\"k\": {}}}", fuzz_json_value(r, depth + 1)),
    }
}

const KEYS: &[&str] = &[
    "enable",
    "async_memcpy_threshold",
    "enable_port_striping",
    "port_striping_min_size",
    "worker_threads",
    "max_sub_batch_size",
    "unknown_key",
];

fn fuzz_config(r: &mut Rng) -> String {
    if r.chance(50) {
        return fuzz_string(r, 40);
    }
    let n = r.below(5);
    let body: Vec<String> = (0..n)
        .map(|_| format!("{:?}: {}", r.pick(KEYS), fuzz_json_value(r, 0)))
        .collect();
    format!("{{{}}}", body.join(", "))
}

#[test]
fn fuzz_config_parser() {
    let mut r = Rng(seed() ^ 2);
    let n = 30_000 * scale();
    let mut accepted = 0;
    for _ in 0..n {
        let text = fuzz_config(&mut r);
        match Config::from_json(&text, &mut |_| {}) {
            Ok(c) => {
                accepted += 1;
                // 0 = chosen at install (the default); a given value is 1..=256.
                assert!(
                    c.worker_threads == 0 || (1..=256).contains(&c.worker_threads),
                    "{text}: {c:?}"
                );
                assert!(c.port_striping_min_size >= 1, "{text}: {c:?}");
                assert!(
                    (1..=sunrise_link::config::MAX_SUB_BATCH_LIMIT).contains(&c.max_sub_batch_size),
                    "{text}: {c:?}"
                );
            }
            Err(m) => assert!(!m.is_empty()),
        }
    }
    eprintln!("config parser: {n} executions, {accepted} accepted");
}

#[test]
fn fuzz_config_through_install() {
    let (_g, emu) = serial();
    let base = emu.live_transport_objects();
    let mut r = Rng(seed() ^ 3);
    let n = 150 * scale();
    let t = Transport::create();
    let dir = lib_dir(&emu_root());
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..n {
        let mut text = fuzz_config(&mut r);
        // Mostly aimed at the emulator; sometimes at no library at all.
        if text.starts_with('{') && !r.chance(100) {
            let sep = if text.len() > 2 { ", " } else { "" };
            text = format!(
                "{{\"runtime_lib_dir\": {:?}{sep}{}",
                dir.to_string_lossy(),
                &text[1..]
            );
        }
        // Keep thread counts modest on small machines.
        let text = text.replace("\"worker_threads\": 2", "\"worker_threads\": 3");
        let c = CString::new(text.replace('\0', " ")).unwrap();
        let rc = unsafe { sunrise_link_transport_install(t.t, c.as_ptr()) };
        match rc {
            0 => {
                ok += 1;
                assert_eq!(t.uninstall(), 0);
            }
            SUNRISE_LINK_INVALID_ARGUMENT | SUNRISE_LINK_RUNTIME_ERROR => {
                refused += 1;
                assert!(!last_error().is_empty());
                assert_eq!(t.uninstall(), 0);
            }
            other => panic!("install returned {other} for {c:?}: {}", last_error()),
        }
    }
    drop(t);
    assert_eq!(emu.live_transport_objects(), base);
    eprintln!("config via install: {n} executions, {ok} installed, {refused} refused");
}

// ------------------------------------------------------------------------------ stateful

const GUARD: usize = 4096;
const SEGS: [u64; 2] = [11, 12];

/// Host memory between two inaccessible pages, so that a range running off either end is
/// not memory of this process (the library refuses it rather than touching a neighbour).
struct HostMem {
    base: *mut u8,
    len: usize,
}

const PAGE: usize = 4096;

impl HostMem {
    fn new(len: usize) -> HostMem {
        assert_eq!(len % PAGE, 0);
        unsafe {
            let m = libc::mmap(
                std::ptr::null_mut(),
                len + 2 * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(m, libc::MAP_FAILED);
            let m = m as *mut u8;
            assert_eq!(libc::mprotect(m as *mut c_void, PAGE, libc::PROT_NONE), 0);
            let after = m.add(PAGE + len) as *mut c_void;
            assert_eq!(libc::mprotect(after, PAGE, libc::PROT_NONE), 0);
            HostMem {
                base: m.add(PAGE),
                len,
            }
        }
    }
    fn as_ptr(&self) -> *const u8 {
        self.base
    }
    fn bytes(&self) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.base, self.len) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        unsafe { std::slice::from_raw_parts_mut(self.base, self.len) }
    }
}

impl Drop for HostMem {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.base.sub(PAGE) as *mut c_void, self.len + 2 * PAGE) };
    }
}

/// One allocation the driver knows: device memory (emulator) or host memory (a Vec).
struct Alloc {
    addr: u64,
    /// Registered (or published) length; the allocation is `len + GUARD`.
    len: usize,
    /// Device ordinal, −1 for host memory.
    dev: i32,
    host: Option<HostMem>,
    /// Remote buffer: (segment, published base).
    remote: Option<(u64, u64)>,
    /// Whether it is registered with the transport under test (local buffers).
    registered: bool,
    /// Expected bytes of the whole allocation and whether each is known.
    shadow: Vec<u8>,
    known: Vec<bool>,
}

impl Alloc {
    fn total(&self) -> usize {
        self.len + GUARD
    }
    fn read(&self, emu: &Emu) -> Vec<u8> {
        match &self.host {
            Some(v) => v.bytes().to_vec(),
            None => emu.read(self.addr, self.total()),
        }
    }
    fn location(&self) -> String {
        if self.dev < 0 {
            "cpu:0".into()
        } else {
            format!("cuda:{}", self.dev)
        }
    }
}

struct World {
    allocs: Vec<Alloc>,
}

/// Where a (local or remote) range falls: (alloc index, offset).
type Place = (usize, usize);

impl World {
    fn local_alloc(&self, addr: u64) -> Option<(usize, u64)> {
        self.allocs.iter().enumerate().find_map(|(i, a)| {
            (a.remote.is_none() && addr >= a.addr && addr - a.addr < a.total() as u64)
                .then(|| (i, addr - a.addr))
        })
    }

    /// Mirrors the library's rule for a local range; `Some(place)` if it must be usable.
    fn local_ok(&self, addr: u64, len: u64) -> Option<Place> {
        let (i, off) = self.local_alloc(addr)?;
        let a = &self.allocs[i];
        let end = off.checked_add(len)?;
        if a.registered && off < a.len as u64 {
            return (end <= a.len as u64).then_some((i, off as usize));
        }
        // Not inside a registered buffer: device memory within its allocation, or host memory
        // of this process (readable and writable here).
        (end <= a.total() as u64).then_some((i, off as usize))
    }

    fn remote_ok(&self, seg: u64, addr: u64, len: u64) -> Option<Place> {
        self.allocs.iter().enumerate().find_map(|(i, a)| {
            let (s, base) = a.remote?;
            (s == seg && addr >= base && addr.checked_add(len)? <= base + a.len as u64)
                .then(|| (i, (addr - base) as usize))
        })
    }
}

/// What the model expects of one request.
#[derive(Clone, Copy, Debug)]
struct Expect {
    /// (source place, destination place) when the copy must happen.
    copy: Option<(Place, Place)>,
    len: usize,
    /// Zero-length (or otherwise no-op) request that must complete.
    noop: bool,
}

fn expect(w: &World, r: &sunrise_link_request_t) -> Expect {
    let len = r.length;
    let fail = Expect {
        copy: None,
        len: 0,
        noop: false,
    };
    if r.opcode > 1 {
        return fail;
    }
    if len == 0 {
        return Expect {
            copy: None,
            len: 0,
            noop: true,
        };
    }
    let src = r.source as u64;
    if src.checked_add(len).is_none() || r.target_offset.checked_add(len).is_none() {
        return fail;
    }
    let Some(local) = w.local_ok(src, len) else {
        return fail;
    };
    let target = if r.target_id == 0 {
        w.local_ok(r.target_offset, len)
    } else {
        w.remote_ok(r.target_id, r.target_offset, len)
    };
    let Some(target) = target else { return fail };
    let host = |p: Place| w.allocs[p.0].dev < 0;
    if host(local) && host(target) {
        return fail; // host-to-host is not handled
    }
    let (s, d) = if r.opcode == SUNRISE_LINK_OP_READ {
        (target, local)
    } else {
        (local, target)
    };
    Expect {
        copy: Some((s, d)),
        len: len as usize,
        noop: false,
    }
}

/// A request aimed at the model's buffers, or at their edges, or anywhere.
fn gen_request(r: &mut Rng, w: &World) -> sunrise_link_request_t {
    let locals: Vec<usize> = (0..w.allocs.len())
        .filter(|&i| w.allocs[i].remote.is_none())
        .collect();
    let remotes: Vec<usize> = (0..w.allocs.len())
        .filter(|&i| w.allocs[i].remote.is_some())
        .collect();
    let len_in = |r: &mut Rng, room: usize| -> u64 {
        match r.below(10) {
            0 => 0,
            1 => room as u64,
            2 => room as u64 + 1 + r.below(64),
            3 => u64::MAX - r.below(4),
            4 => 1 << (40 + r.below(20)),
            _ => 1 + r.below(room.max(1) as u64),
        }
    };
    let local_addr = |r: &mut Rng, a: &Alloc| -> u64 {
        match r.below(12) {
            0 => a.addr + a.len as u64 - 1 - r.below(16).min(a.len as u64 - 1),
            1 => a.addr + a.len as u64 + r.below(GUARD as u64),
            2 => a.addr.wrapping_sub(1 + r.below(64)),
            3 => *r.pick(&[0u64, 1, 0x1000, u64::MAX, u64::MAX - 15, 0xdead_0000_0000]),
            4 => r.next(),
            _ => a.addr + r.below(a.len as u64),
        }
    };
    let src_a = &w.allocs[*r.pick(&locals)];
    let source = local_addr(r, src_a);
    let (target_id, target) = match r.below(10) {
        0..=3 => {
            let a = &w.allocs[*r.pick(&locals)];
            (0, local_addr(r, a))
        }
        4..=8 => {
            let a = &w.allocs[*r.pick(&remotes)];
            let (seg, base) = a.remote.unwrap();
            let addr = match r.below(8) {
                0 => base + a.len as u64 - r.below(8),
                1 => base.wrapping_sub(1 + r.below(8)),
                2 => base + a.len as u64 + r.below(GUARD as u64),
                3 => r.next(),
                _ => base + r.below(a.len as u64),
            };
            let seg = if r.chance(50) {
                *r.pick(&[13u64, u64::MAX, seg ^ 1])
            } else {
                seg
            };
            (seg, addr)
        }
        _ => (r.next() % 20, r.next()),
    };
    let room = src_a
        .len
        .saturating_sub((source.wrapping_sub(src_a.addr)) as usize)
        .max(1);
    let length = len_in(r, room.min(16 << 10));
    let opcode = match r.below(20) {
        0 => *r.pick(&[2u32, 3, u32::MAX]),
        n => (n % 2) as u32,
    };
    sunrise_link_request_t {
        opcode,
        reserved: r.next() as u32,
        source: source as *mut c_void,
        target_id,
        target_offset: target,
        length,
    }
}

/// The most recent requests: (step, request, final status).
type History = std::collections::VecDeque<(u64, sunrise_link_request_t, i32)>;
const HISTORY_LEN: usize = 400;

fn show(q: &sunrise_link_request_t) -> String {
    format!(
        "{{op {} source {:#x} target {} {:#x} length {:#x}}}",
        q.opcode, q.source as u64, q.target_id, q.target_offset, q.length
    )
}

/// Applies the completed copies of one batch to the shadow. Requests of a batch run
/// concurrently: a destination that overlaps another request's source or destination gets
/// unknown bytes.
fn apply(w: &mut World, done: &[(Expect, i32)]) {
    let overlaps =
        |a: Place, al: usize, b: Place, bl: usize| a.0 == b.0 && a.1 < b.1 + bl && b.1 < a.1 + al;
    let snapshot: Vec<(Vec<u8>, Vec<bool>)> = w
        .allocs
        .iter()
        .map(|a| (a.shadow.clone(), a.known.clone()))
        .collect();
    for (i, (e, st)) in done.iter().enumerate() {
        let Some((s, d)) = e.copy else { continue };
        let racy = overlaps(s, e.len, d, e.len)
            || done.iter().enumerate().any(|(j, (o, _))| {
                j != i
                    && o.copy.is_some_and(|(os, od)| {
                        overlaps(d, e.len, od, o.len)
                            || overlaps(d, e.len, os, o.len)
                            || overlaps(s, e.len, od, o.len)
                    })
            });
        let a = &mut w.allocs[d.0];
        let range = d.1..d.1 + e.len;
        if *st == SUNRISE_LINK_TASK_COMPLETED && !racy {
            let (src, known) = &snapshot[s.0];
            a.shadow[range.clone()].copy_from_slice(&src[s.1..s.1 + e.len]);
            a.known[range].copy_from_slice(&known[s.1..s.1 + e.len]);
        } else if *st != SUNRISE_LINK_TASK_CANCELED {
            // Racing, or failed part-way (e.g. one lane of a striped copy): unknown.
            a.known[range].iter_mut().for_each(|k| *k = false);
        }
    }
}

/// Compares every allocation with the shadow; on a difference, lists the recent requests
/// that touched the byte, then fails.
fn check_bytes(emu: &Emu, w: &World, step: u64, last: &str, history: &History) {
    for (i, a) in w.allocs.iter().enumerate() {
        let got = a.read(emu);
        for (j, (&g, (&s, &k))) in got.iter().zip(a.shadow.iter().zip(&a.known)).enumerate() {
            if k && g != s {
                let at = a.addr + j as u64;
                for (st, q, status) in history {
                    let hit = |x: u64| x <= at && at.wrapping_sub(x) < q.length;
                    if hit(q.source as u64) || (q.target_id == 0 && hit(q.target_offset)) {
                        eprintln!("  step {st}: {} -> {status}", show(q));
                    }
                }
            }
            assert!(
                !k || g == s,
                "step {step}: allocation {i} (dev {}, remote {:?}) byte {j} is {g:#x}, \
                 expected {s:#x}{}; last batch: {last}",
                a.dev,
                a.remote,
                if j >= a.len { " (guard region)" } else { "" }
            );
        }
    }
}

/// Arms one runtime fault for the batch about to run.
fn arm_fault(r: &mut Rng, emu: &Emu) {
    const FUNCS: &[&str] = &[
        "tangMemcpy",
        "tangMemcpyAsync",
        "tangMemcpyPeer",
        "tangMemcpyPeer_v2",
        "tangDeviceGetPeerPointer",
        "tangSetDevice",
        "tangPointerGetAttributes",
        "tangIpcOpenMemHandle",
        "tangEventCreateWithFlags",
        "tangEventRecord",
        "tangEventQuery",
        "tangStreamCreateWithFlags",
    ];
    let toml = match r.below(6) {
        0 => "memcpy_peer_unsupported = true".to_string(),
        1 => "down_links = [[0, 8], [1, 0]]".to_string(),
        _ => format!(
            "[[fault]]\nfunction = \"{}\"\ncode = {}\nprobability = {}\nseed = {}\n",
            r.pick(FUNCS),
            r.pick(&[1u32, 2, 101, 700, 999, 3026]),
            r.pick(&[0.1f64, 0.5, 1.0]),
            r.below(1000)
        ),
    };
    emu.configure(&toml);
}

const STATEFUL_ENV: &str = "SUNRISE_LINK_FUZZ_STATEFUL_CHILD";

/// The model knows every byte of device and host memory around its buffers, so the driver runs
/// in a process of its own: device memory that other tests of this binary still hold could
/// otherwise lie right next to the model's buffers, where the model expects none.
#[test]
fn fuzz_stateful_abi_driver() {
    if role(STATEFUL_ENV).is_none() {
        let out = rerun_as("fuzz_stateful_abi_driver", STATEFUL_ENV, "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "stateful driver:\n{text}");
        assert!(text.contains("1 passed"), "the driver did not run:\n{text}");
        // The driver's figures (shown with --nocapture).
        for l in text.lines().filter(|l| l.starts_with("stateful driver:")) {
            eprintln!("{l}");
        }
        return;
    }
    let (_g, emu) = serial();
    emu.configure("[[link]]\na = [0, 8]\nb = [1, 8]\n");
    let base_objects = emu.live_transport_objects();
    let mut r = Rng(seed() ^ 4);
    let steps = 1500 * scale();
    let owner = Transport::installed("");
    let cfg = "\"worker_threads\": 3, \"async_memcpy_threshold\": \"8KiB\", \
               \"enable_port_striping\": true, \"port_striping_min_size\": \"8KiB\", \
               \"max_sub_batch_size\": 64";
    let t = Transport::installed(cfg);
    // Local device buffers on three devices, two host buffers, two remote buffers.
    let mut w = World { allocs: Vec::new() };
    let sizes = [
        (0, 32usize << 10),
        (0, 16 << 10),
        (1, 32 << 10),
        (3, 8 << 10),
    ];
    for (dev, len) in sizes {
        let addr = emu.alloc(dev, len + GUARD);
        w.allocs.push(Alloc {
            addr,
            len,
            dev,
            host: None,
            remote: None,
            registered: false,
            shadow: Vec::new(),
            known: Vec::new(),
        });
    }
    for len in [16usize << 10, 4 << 10] {
        let v = HostMem::new(len + GUARD);
        w.allocs.push(Alloc {
            addr: v.as_ptr() as u64,
            len,
            dev: -1,
            host: Some(v),
            remote: None,
            registered: false,
            shadow: Vec::new(),
            known: Vec::new(),
        });
    }
    for (k, (dev, len)) in [(2, 32usize << 10), (1, 8 << 10)].into_iter().enumerate() {
        let addr = emu.alloc(dev, len + GUARD);
        let shm = owner.add(addr, len as u64, &format!("cuda:{dev}")).unwrap();
        let base = 0x7100_0000_0000 + ((k as u64) << 32);
        t.publish(Remote {
            segment: SEGS[k],
            base,
            length: len as u64,
            location: format!("cuda:{dev}"),
            shm_path: shm,
            machine_id: MACHINE.into(),
        });
        w.allocs.push(Alloc {
            addr,
            len,
            dev,
            host: None,
            remote: Some((SEGS[k], base)),
            registered: false,
            shadow: Vec::new(),
            known: Vec::new(),
        });
    }
    for (i, a) in w.allocs.iter_mut().enumerate() {
        let bytes = pattern(i as u64 * 1000 + 1, a.total());
        match &mut a.host {
            Some(v) => v.bytes_mut().copy_from_slice(&bytes),
            None => emu.write(a.addr, &bytes),
        }
        a.shadow = bytes;
        a.known = vec![true; a.total()];
    }
    let register_all = |w: &mut World, t: &Transport| {
        for a in w.allocs.iter_mut().filter(|a| a.remote.is_none()) {
            a.registered = t.add(a.addr, a.len as u64, &a.location()).is_ok();
            assert!(a.registered, "{}", last_error());
        }
    };
    register_all(&mut w, &t);
    let mut batches: Vec<u64> = Vec::new();
    let mut dead: Vec<u64> = vec![0, u64::MAX, 0x1_0000_0001];
    let mut installed = true;
    let mut counts = [0u64; 10];
    let mut tasks = (0u64, 0u64, 0u64, 0u64); // completed, failed, cancelled, api calls
    let mut faults = 0u64;
    // SUNRISE_LINK_FUZZ_PARANOID=1 also checks before every step (catches late writes).
    let paranoid = std::env::var("SUNRISE_LINK_FUZZ_PARANOID").is_ok();
    let mut history = History::new();
    let mut prev = String::new();
    for step in 0..steps {
        if paranoid {
            let m = format!("(before the step) previous: {prev}");
            check_bytes(emu, &w, step, &m, &history);
        }
        let op = r.below(100);
        prev = format!("op {op}");
        tasks.3 += 1;
        match op {
            // Submit a batch of 1..=6 requests, cancel some, wait, check.
            0..=54 => {
                counts[0] += 1;
                if batches.is_empty() || r.chance(30) {
                    let h = t.allocate(1 + r.below(64)).unwrap();
                    batches.push(h);
                }
                let h = *r.pick(&batches);
                let n = 1 + r.below(6) as usize;
                let reqs: Vec<_> = (0..n).map(|_| gen_request(&mut r, &w)).collect();
                let size = t.size(h).unwrap();
                let rc = t.submit(h, &reqs);
                if !installed {
                    assert_eq!(
                        rc, SUNRISE_LINK_INVALID_ARGUMENT,
                        "submit while uninstalled"
                    );
                    continue;
                }
                if rc == SUNRISE_LINK_TOO_MANY_REQUESTS {
                    assert_eq!(t.size(h).unwrap(), size, "a refused submit appended tasks");
                    assert_eq!(t.free(h), 0);
                    batches.retain(|&b| b != h);
                    dead.push(h);
                    continue;
                }
                assert_eq!(rc, 0, "submit: {}", last_error());
                assert_eq!(t.size(h).unwrap(), size + n as u64);
                // Now and then a runtime fault is armed while this batch runs.
                let faulted = r.chance(120);
                if faulted {
                    arm_fault(&mut r, emu);
                    faults += 1;
                }
                if r.chance(200) {
                    for _ in 0..1 + r.below(3) {
                        let id = size + r.below(n as u64 + 2);
                        let rc = t.cancel(h, id);
                        let want = if id < size + n as u64 { 0 } else { 1 };
                        assert_eq!(rc, want, "cancel of task {id}");
                    }
                }
                let mut done = Vec::new();
                for (k, q) in reqs.iter().enumerate() {
                    let id = size + k as u64;
                    let (st, bytes) = t.wait(h, id, WAIT);
                    let e = expect(&w, q);
                    let msg = t.task_error(h, id);
                    match st {
                        SUNRISE_LINK_TASK_COMPLETED => {
                            assert!(
                                e.copy.is_some() || e.noop,
                                "step {step}: request {} completed; the model says it must fail",
                                show(q)
                            );
                            assert_eq!(bytes, q.length);
                            tasks.0 += 1;
                        }
                        SUNRISE_LINK_TASK_FAILED => {
                            assert!(
                                (e.copy.is_none() && !e.noop) || faulted,
                                "step {step}: request {} failed ({msg}); the model says it must \
                                 complete",
                                show(q)
                            );
                            assert!(!msg.is_empty(), "FAILED without a message");
                            tasks.1 += 1;
                        }
                        SUNRISE_LINK_TASK_CANCELED => tasks.2 += 1,
                        s => panic!("step {step}: task ended in state {s}"),
                    }
                    done.push((e, st));
                    if history.len() == HISTORY_LEN {
                        history.pop_front();
                    }
                    history.push_back((step, *q, st));
                }
                if faulted {
                    emu.clear_faults();
                }
                apply(&mut w, &done);
                let last: Vec<String> = reqs
                    .iter()
                    .zip(&done)
                    .enumerate()
                    .map(|(k, (q, (e, st)))| {
                        format!(
                            "{} -> {st} {:?} {}",
                            show(q),
                            e.copy,
                            t.task_error(h, size + k as u64)
                        )
                    })
                    .collect();
                check_bytes(emu, &w, step, &format!("{last:?}"), &history);
                prev = format!("{last:?}");
            }
            // Status, cancel and error queries with arbitrary ids and handles.
            55..=64 => {
                counts[1] += 1;
                let h = if batches.is_empty() || r.chance(300) {
                    *r.pick(&dead)
                } else {
                    *r.pick(&batches)
                };
                let live = batches.contains(&h);
                let size = t.size(h).unwrap_or(0);
                let id = match r.below(4) {
                    0 => size,
                    1 => u64::MAX,
                    _ => r.below(size + 1),
                };
                let in_range = live && id < size;
                let st = t.status(h, id);
                assert_eq!(st.is_ok(), in_range, "status({h:#x}, {id})");
                if in_range {
                    let s = st.unwrap().0;
                    assert!(
                        [3, 4, 6].contains(&s),
                        "every task of a waited batch is terminal, got {s}"
                    );
                }
                let mut buf = [0 as c_char; 64];
                let len = r.below(64) as usize;
                let rc = unsafe { sunrise_link_task_error_get(t.t, h, id, buf.as_mut_ptr(), len) };
                assert_eq!(rc == 0, in_range && len > 0, "task_error_get len {len}");
            }
            // Free (sometimes twice), allocate with arbitrary sizes.
            65..=74 => {
                counts[2] += 1;
                if !batches.is_empty() && r.chance(600) {
                    let i = r.below(batches.len() as u64) as usize;
                    let h = batches.swap_remove(i);
                    assert_eq!(t.free(h), 0);
                    dead.push(h);
                } else if r.chance(500) {
                    let h = *r.pick(&dead);
                    assert_eq!(t.free(h), SUNRISE_LINK_INVALID_ARGUMENT);
                } else {
                    let any = 1 + r.below(64);
                    let n = *r.pick(&[0u64, 1, 64, 65, u64::MAX, any]);
                    let res = t.allocate(n);
                    let limit = if installed { 64 } else { 1 << 20 };
                    assert_eq!(res.is_ok(), (1..=limit).contains(&n), "allocate({n})");
                    if let Ok(h) = res {
                        batches.push(h);
                    }
                }
            }
            // Registration: hostile adds that must fail; remove and re-add local buffers.
            75..=84 => {
                counts[3] += 1;
                let i = r.below(6) as usize; // a local allocation
                let a = &w.allocs[i];
                match r.below(4) {
                    0 => {
                        let (addr, len, loc) = match r.below(6) {
                            0 => (a.addr, 0, a.location()),
                            1 => (0, 16, a.location()),
                            2 => (u64::MAX - 7, 16, "cpu:0".into()),
                            3 => (a.addr, a.len as u64, "cuda:9".to_string()),
                            4 => (a.addr, a.len as u64, "rocm:0".to_string()),
                            _ => (r.next() | 1 << 47, 64, "cuda:0".to_string()),
                        };
                        let rc = t.add(addr, len, &loc);
                        assert!(rc.is_err(), "add({addr:#x}, {len}, {loc}) succeeded");
                        assert!(!last_error().is_empty());
                    }
                    1 if installed && a.registered => {
                        assert_eq!(t.remove(a.addr), 0);
                        w.allocs[i].registered = false;
                    }
                    2 if installed && !a.registered => {
                        let ok = t.add(a.addr, a.len as u64, &a.location()).is_ok();
                        assert!(ok, "re-registration: {}", last_error());
                        w.allocs[i].registered = true;
                    }
                    _ => {
                        let rc = t.remove(r.next());
                        let want = if installed {
                            SUNRISE_LINK_ADDRESS_NOT_REGISTERED
                        } else {
                            SUNRISE_LINK_INVALID_ARGUMENT
                        };
                        assert_eq!(rc, want);
                    }
                }
            }
            // Segment invalidation and stats.
            85..=92 => {
                counts[4] += 1;
                let seg = *r.pick(&[SEGS[0], SEGS[1], 0, 99, u64::MAX]);
                let rc = unsafe { sunrise_link_segment_invalidate(t.t, seg) };
                assert_eq!(rc, if installed { 0 } else { 1 });
                let mut s: sunrise_link_stats_t = unsafe { std::mem::zeroed() };
                let rc = unsafe { sunrise_link_stats_get(t.t, &mut s) };
                assert_eq!(rc, if installed { 0 } else { 1 });
            }
            // Uninstall / install (registrations are lost with the installation).
            _ => {
                counts[5] += 1;
                if installed && r.chance(300) {
                    assert_eq!(t.uninstall(), 0);
                    installed = false;
                    for a in &mut w.allocs {
                        if a.remote.is_none() {
                            a.registered = false;
                        }
                    }
                } else if !installed {
                    assert_eq!(t.install(Some(&config(cfg))), 0, "{}", last_error());
                    installed = true;
                    register_all(&mut w, &t);
                } else {
                    assert_eq!(t.install(Some(&config(cfg))), SUNRISE_LINK_INVALID_ARGUMENT);
                }
            }
        }
    }
    check_bytes(emu, &w, steps, "", &history);
    drop(t);
    drop(owner);
    assert_eq!(
        emu.live_transport_objects(),
        base_objects,
        "streams/events/IPC mappings leaked"
    );
    for a in &w.allocs {
        if a.host.is_none() {
            emu.free(a.addr);
        }
    }
    eprintln!(
        "stateful driver: {steps} steps ({} submits, {} queries, {} batch ops, {} registration \
         ops, {} invalidate/stats, {} install ops, {faults} batches under a runtime fault); \
         tasks: {} completed, {} failed, {} cancelled",
        counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], tasks.0, tasks.1, tasks.2
    );
}
