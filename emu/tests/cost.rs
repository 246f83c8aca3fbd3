//! The per-call cost model: a class set to a cost makes exactly the functions of that class
//! take at least that long; the others (and the emulator's own control functions, and PTML) do
//! not pay it. Configured by TOML (`[call_cost_us]`) and by `TANG_EMU_CALL_COST_US`.
//!
//! Timing checks are one-sided where the machine could make them flaky: a charged call must take
//! at least its cost (a busy-wait on the monotonic clock guarantees it); an uncharged function
//! must be faster than the cost in the best of several calls (a loaded machine may delay some
//! calls, hardly all of them).
mod common;

use common::{rt, serial, H2D};
use std::ffi::{c_int, c_uint, c_void};
use std::time::{Duration, Instant};

/// The cost configured in these tests: far above what any of the functions takes by itself.
const US: u64 = 300;

const CLASSES: [&str; 7] = [
    "sync_copy",
    "async_launch",
    "device",
    "attributes",
    "ipc",
    "event_query",
    "other",
];

type Call<'a> = (&'static str, &'static str, Box<dyn FnMut() -> u32 + 'a>);

/// Buffers, a stream and an event the calls below work on.
struct Setup {
    d0: *mut c_void,
    d1: *mut c_void,
    host: Vec<u8>,
    stream: *mut c_void,
    event: *mut c_void,
}

impl Setup {
    fn new() -> Setup {
        let r = rt();
        r.set_device(0);
        let d0 = r.malloc(4096);
        r.set_device(1);
        let d1 = r.malloc(4096);
        r.set_device(0);
        let mut stream = std::ptr::null_mut();
        assert_eq!(unsafe { (r.tangStreamCreate)(&mut stream) }, 0);
        let mut event = std::ptr::null_mut();
        assert_eq!(unsafe { (r.tangEventCreate)(&mut event) }, 0);
        Setup {
            d0,
            d1,
            host: vec![1u8; 4096],
            stream,
            event,
        }
    }

    /// (class, name, call) for functions of every class; each call returns its result code.
    fn calls(&self) -> Vec<Call<'_>> {
        type AsyncPeer = unsafe extern "C" fn(
            *mut c_void,
            c_int,
            *const c_void,
            c_int,
            usize,
            *mut c_void,
        ) -> u32;
        type RecordWithFlags = unsafe extern "C" fn(*mut c_void, *mut c_void, c_uint) -> u32;
        let r = rt();
        let (d0, d1, s, ev) = (self.d0, self.d1, self.stream, self.event);
        let host = self.host.as_ptr().cast::<c_void>();
        let peer_v2 = r.peer_v2();
        let peer_async_v2: AsyncPeer =
            unsafe { std::mem::transmute(r.sym("tangMemcpyPeerAsync_v2").unwrap()) };
        let record_flags: RecordWithFlags =
            unsafe { std::mem::transmute(r.sym("tangEventRecordWithFlags").unwrap()) };
        let (mut dev, mut count) = (0, 0);
        let (mut free, mut total) = (0usize, 0usize);
        let mut at = [0u64; 3];
        let mut h = [0u64; 8];
        let mut version = 0;
        vec![
            (
                "sync_copy",
                "tangMemcpy",
                Box::new(move || unsafe { (r.tangMemcpy)(d0, host, 64, H2D) }),
            ),
            (
                "sync_copy",
                "tangMemcpyPeer",
                Box::new(move || unsafe { (r.tangMemcpyPeer)(d1, 1, d0, 0, 64) }),
            ),
            (
                "sync_copy",
                "tangMemcpyPeer_v2",
                Box::new(move || unsafe { peer_v2(d1, 1, d0, 0, 64) }),
            ),
            (
                "sync_copy",
                "tangMemset",
                Box::new(move || unsafe { (r.tangMemset)(d0, 0, 64) }),
            ),
            (
                "async_launch",
                "tangMemcpyAsync",
                Box::new(move || unsafe { (r.tangMemcpyAsync)(d0, host, 64, H2D, s) }),
            ),
            (
                "async_launch",
                "tangMemcpyPeerAsync",
                Box::new(move || unsafe { (r.tangMemcpyPeerAsync)(d1, 1, d0, 0, 64, s) }),
            ),
            (
                "async_launch",
                "tangMemcpyPeerAsync_v2",
                Box::new(move || unsafe { peer_async_v2(d1, 1, d0, 0, 64, s) }),
            ),
            (
                "async_launch",
                "tangEventRecord",
                Box::new(move || unsafe { (r.tangEventRecord)(ev, s) }),
            ),
            (
                "async_launch",
                "tangEventRecordWithFlags",
                Box::new(move || unsafe { record_flags(ev, s, 0) }),
            ),
            (
                "async_launch",
                "tangStreamWaitEvent",
                Box::new(move || unsafe { (r.tangStreamWaitEvent)(s, ev, 0) }),
            ),
            (
                "device",
                "tangSetDevice",
                Box::new(move || unsafe { (r.tangSetDevice)(0) }),
            ),
            (
                "device",
                "tangGetDevice",
                Box::new(move || unsafe { (r.tangGetDevice)(&mut dev) }),
            ),
            (
                "attributes",
                "tangPointerGetAttributes",
                Box::new(move || unsafe { (r.tangPointerGetAttributes)(&mut at, d0) }),
            ),
            (
                "ipc",
                "tangIpcGetMemHandle",
                Box::new(move || unsafe { (r.tangIpcGetMemHandle)(&mut h, d0) }),
            ),
            (
                "event_query",
                "tangEventQuery",
                Box::new(move || unsafe {
                    // pending work answers 600: a query all the same
                    match (r.tangEventQuery)(ev) {
                        600 => 0,
                        c => c,
                    }
                }),
            ),
            (
                "event_query",
                "tangStreamQuery",
                Box::new(move || unsafe {
                    match (r.tangStreamQuery)(s) {
                        600 => 0,
                        c => c,
                    }
                }),
            ),
            (
                "other",
                "tangGetDeviceCount",
                Box::new(move || unsafe { (r.tangGetDeviceCount)(&mut count) }),
            ),
            (
                "other",
                "tangStreamSynchronize",
                Box::new(move || unsafe { (r.tangStreamSynchronize)(s) }),
            ),
            (
                "other",
                "tangMemGetInfo",
                Box::new(move || unsafe { (r.tangMemGetInfo)(&mut free, &mut total) }),
            ),
            (
                "other",
                "tangRuntimeGetVersion",
                Box::new(move || unsafe { (r.tangRuntimeGetVersion)(&mut version) }),
            ),
            (
                "other",
                "tangGetLastError",
                Box::new(move || unsafe { (r.tangGetLastError)() }),
            ),
            (
                "other",
                "tangGetErrorString",
                Box::new(move || {
                    assert!(!unsafe { (r.tangGetErrorString)(0) }.is_null());
                    0
                }),
            ),
        ]
    }

    /// IPC open and close, timed one by one (they come in pairs).
    fn ipc_open_close(&self) -> (Duration, Duration) {
        let r = rt();
        let mut h = [0u64; 8];
        assert_eq!(unsafe { (r.tangIpcGetMemHandle)(&mut h, self.d0) }, 0);
        let mut p = std::ptr::null_mut();
        let t = Instant::now();
        assert_eq!(unsafe { (r.tangIpcOpenMemHandle)(&mut p, h, 1) }, 0);
        let open = t.elapsed();
        let t = Instant::now();
        assert_eq!(unsafe { (r.tangIpcCloseMemHandle)(p) }, 0);
        (open, t.elapsed())
    }

    fn free(self) {
        let r = rt();
        unsafe {
            assert_eq!((r.tangStreamSynchronize)(self.stream), 0);
            assert_eq!((r.tangEventDestroy)(self.event), 0);
            assert_eq!((r.tangStreamDestroy)(self.stream), 0);
            assert_eq!((r.tangFree)(self.d0), 0);
            assert_eq!((r.tangFree)(self.d1), 0);
        }
    }
}

/// Durations of `n` calls; each must succeed.
fn timed(name: &str, f: &mut dyn FnMut() -> u32, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let code = f();
            let d = t.elapsed();
            assert_eq!(code, 0, "{name}");
            d
        })
        .collect()
}

/// Checks that every function of the classes in `charged` takes at least `US` µs per call and
/// every other function is faster than that in its best call.
fn check_charged(setup: &Setup, charged: &[&str], what: &str) {
    let cost = Duration::from_micros(US);
    for (class, name, mut f) in setup.calls() {
        let d = timed(name, &mut *f, 5);
        if charged.contains(&class) {
            let min = d.iter().min().unwrap();
            assert!(
                *min >= cost,
                "{what}: {name} ({class}) took {min:?} < {cost:?}"
            );
        } else {
            let min = d.iter().min().unwrap();
            assert!(
                *min < cost,
                "{what}: {name} ({class}) took at least {min:?}: charged"
            );
        }
    }
    let (open, close): (Vec<_>, Vec<_>) = (0..3).map(|_| setup.ipc_open_close()).unzip();
    for (name, d) in [
        ("tangIpcOpenMemHandle", open),
        ("tangIpcCloseMemHandle", close),
    ] {
        let min = *d.iter().min().unwrap();
        if charged.contains(&"ipc") {
            assert!(min >= cost, "{what}: {name} took {min:?}");
        } else {
            assert!(min < cost, "{what}: {name} took at least {min:?}: charged");
        }
    }
}

/// The emulator's control functions and PTML never pay the cost.
fn check_uncharged_extras(what: &str) {
    let r = rt();
    let name = std::ffi::CString::new("tangMemcpy").unwrap();
    let mut n = 0;
    let _ = unsafe { (r.ptmlInit)() };
    type Extra<'a> = (&'static str, Box<dyn FnMut() + 'a>);
    let extras: [Extra; 3] = [
        (
            "tangEmuCallCount",
            Box::new(|| {
                unsafe { (r.tangEmuCallCount)(name.as_ptr()) };
            }),
        ),
        (
            "tangEmuTotalCalls",
            Box::new(|| {
                unsafe { (r.tangEmuTotalCalls)() };
            }),
        ),
        (
            "ptmlDeviceGetCount",
            Box::new(|| {
                assert_eq!(unsafe { (r.ptmlDeviceGetCount)(&mut n) }, 0);
            }),
        ),
    ];
    for (fname, mut f) in extras {
        let min = (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .unwrap();
        assert!(
            min < Duration::from_micros(US),
            "{what}: {fname} took {min:?}: charged"
        );
    }
}

#[test]
fn each_class_costs_exactly_its_functions() {
    let _g = serial();
    let r = rt();
    let setup = Setup::new();
    check_charged(&setup, &[], "no cost configured");
    for class in CLASSES {
        assert_eq!(r.configure(&format!("[call_cost_us]\n{class} = {US}")), 0);
        check_charged(&setup, &[class], class);
        check_uncharged_extras(class);
    }
    // every class at once, as a table with `all` and as a plain number
    assert_eq!(r.configure(&format!("[call_cost_us]\nall = {US}.0")), 0);
    check_charged(&setup, &CLASSES, "all");
    check_uncharged_extras("all");
    assert_eq!(r.configure(&format!("call_cost_us = {US}")), 0);
    check_charged(&setup, &CLASSES, "call_cost_us = number");
    // `all`, then classes: the class wins whatever the order of the keys
    assert_eq!(
        r.configure(&format!("[call_cost_us]\ndevice = 0\nall = {US}\nipc = 0")),
        0
    );
    let others: Vec<&str> = CLASSES
        .into_iter()
        .filter(|c| !["device", "ipc"].contains(c))
        .collect();
    check_charged(&setup, &others, "all but device and ipc");
    // the table present replaces the whole setting; an empty one removes every cost
    assert_eq!(r.configure("call_cost_us = {}"), 0);
    check_charged(&setup, &[], "call_cost_us = {}");
    setup.free();
}

#[test]
fn failed_and_faulted_calls_pay_too_and_still_count() {
    let _g = serial();
    let r = rt();
    let cost = Duration::from_micros(US);
    assert_eq!(
        r.configure(&format!("[call_cost_us]\ndevice = {US}\nother = {US}")),
        0
    );
    unsafe { (r.tangEmuResetCounters)() };
    let t = Instant::now();
    assert_eq!(unsafe { (r.tangSetDevice)(999) }, 101);
    assert!(t.elapsed() >= cost, "a failed call pays its cost");
    assert_eq!(
        r.configure("[[fault]]\nfunction = \"tangGetDeviceCount\"\ncode = 999"),
        0
    );
    let mut n = 0;
    let t = Instant::now();
    assert_eq!(unsafe { (r.tangGetDeviceCount)(&mut n) }, 999);
    assert!(
        t.elapsed() >= cost,
        "a call failed by a fault pays its cost"
    );
    assert_eq!(r.count("tangSetDevice"), 1);
    assert_eq!(r.count("tangGetDeviceCount"), 1);
    assert_eq!(unsafe { (r.tangEmuTotalCalls)() }, 2);
    // clearing faults keeps the cost (it is not a fault)
    unsafe { (r.tangEmuClearFaults)() };
    let t = Instant::now();
    assert_eq!(unsafe { (r.tangGetDeviceCount)(&mut n) }, 0);
    assert!(t.elapsed() >= cost, "tangEmuClearFaults keeps the cost");
    // a configuration without the key keeps it too
    assert_eq!(r.configure("memcpy_peer_unsupported = false"), 0);
    let t = Instant::now();
    assert_eq!(unsafe { (r.tangGetDeviceCount)(&mut n) }, 0);
    assert!(
        t.elapsed() >= cost,
        "an unrelated configuration keeps the cost"
    );
}

#[test]
fn bad_cost_configurations_are_rejected_and_change_nothing() {
    let _g = serial();
    let r = rt();
    assert_eq!(r.configure(&format!("[call_cost_us]\nsync_copy = {US}")), 0);
    let setup = Setup::new();
    for bad in [
        "[call_cost_us]\nsync_copy = -1",
        "[call_cost_us]\nall = -0.5",
        "[call_cost_us]\nsync_copy = \"2\"",
        "[call_cost_us]\nsync_copy = true",
        "[call_cost_us]\nkernel_launch = 1",
        "[call_cost_us]\nSync_Copy = 1",
        "[call_cost_us]\nall = 1e9",
        "[call_cost_us]\nall = nan",
        "[call_cost_us]\nall = inf",
        "call_cost_us = \"2us\"",
        "call_cost_us = [1, 2]",
        // one bad key spoils the whole document
        "devices = 8\n[call_cost_us]\nsync_copy = 0\ndevice = 1\nipc = -3",
    ] {
        assert_eq!(r.configure(bad), 1, "accepted: {bad}");
        check_charged(&setup, &["sync_copy"], bad);
    }
    setup.free();
}

/// The class lines the helper prints: (class, shortest call in µs).
fn helper_costs(env: &[(&str, &str)]) -> (Vec<(String, f64)>, String) {
    let mut c = common::helper();
    c.arg("call-cost");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let costs: Vec<(String, f64)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("cost "))
        .map(|l| {
            let (c, us) = l.split_once(' ').unwrap();
            (c.to_string(), us.parse().unwrap())
        })
        .collect();
    assert_eq!(costs.len(), CLASSES.len(), "{stdout}");
    (costs, stderr)
}

/// Checks helper output: classes in `charged` at least `US`, the others below it.
fn expect_costs(costs: &[(String, f64)], charged: &[&str], what: &str) {
    for (class, us) in costs {
        if charged.contains(&class.as_str()) {
            assert!(*us >= US as f64, "{what}: {class} {us} µs");
        } else {
            assert!(*us < US as f64, "{what}: {class} {us} µs: charged");
        }
    }
}

#[test]
fn cost_from_the_environment() {
    let _g = serial();
    let us = US.to_string();
    let (costs, _) = helper_costs(&[]);
    expect_costs(&costs, &[], "unset");

    let (costs, _) = helper_costs(&[("TANG_EMU_CALL_COST_US", &us)]);
    expect_costs(&costs, &CLASSES, "a number");

    let spec = format!(" sync_copy = {US} , device=0.5");
    let (costs, stderr) = helper_costs(&[("TANG_EMU_CALL_COST_US", &spec)]);
    expect_costs(&costs, &["sync_copy"], &spec);
    assert!(stderr.is_empty(), "{stderr}");
    let device = costs.iter().find(|(c, _)| c == "device").unwrap().1;
    assert!(device >= 0.5, "device 0.5 µs: {device}");

    // `all` first, whatever its position
    for spec in [format!("ipc=0;all={US}"), format!("all={US},ipc=0")] {
        let (costs, _) = helper_costs(&[("TANG_EMU_CALL_COST_US", &spec)]);
        let charged: Vec<&str> = CLASSES.into_iter().filter(|&c| c != "ipc").collect();
        expect_costs(&costs, &charged, &spec);
    }

    // malformed: reported on stderr, ignored as a whole
    for bad in [
        format!("sync_copy={US},device=fast"),
        format!("sync_copy={US},warp=1"),
        format!("sync_copy={US},device"),
        "-2".to_string(),
        format!("all={US},other=-1"),
    ] {
        let (costs, stderr) = helper_costs(&[("TANG_EMU_CALL_COST_US", &bad)]);
        expect_costs(&costs, &[], &bad);
        assert!(
            stderr.contains("TANG_EMU_CALL_COST_US"),
            "{bad}: no message: {stderr}"
        );
    }

    // the file sets a base, the variable changes the classes it names
    let dir = std::env::temp_dir().join(format!("tang-emu-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("emu.toml");
    std::fs::write(&cfg, format!("[call_cost_us]\nall = {US}\n")).unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let (costs, _) = helper_costs(&[("TANG_EMU_CONFIG", cfg_s)]);
    expect_costs(&costs, &CLASSES, "file");
    let (costs, _) = helper_costs(&[
        ("TANG_EMU_CONFIG", cfg_s),
        ("TANG_EMU_CALL_COST_US", "device=0,attributes=0"),
    ]);
    let charged: Vec<&str> = CLASSES
        .into_iter()
        .filter(|c| !["device", "attributes"].contains(c))
        .collect();
    expect_costs(&costs, &charged, "file + variable");
    // a bad file is ignored as a whole (and says why)
    std::fs::write(&cfg, "[call_cost_us]\nall = 300\nwarp = 1\n").unwrap();
    let (costs, stderr) = helper_costs(&[("TANG_EMU_CONFIG", cfg_s)]);
    expect_costs(&costs, &[], "bad file");
    assert!(stderr.contains("unknown call class `warp`"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
