//! Calls from several threads: counters sum over live and exited threads (reset, fork); a free,
//! close or configuration change made by one thread is seen by the next call of every other
//! thread; the emulator's stream threads keep no freed memory mapped.
mod common;

use common::{rt, serial, D2D, H2D};
use std::ffi::c_void;
use std::sync::mpsc;

fn device_count_calls(n: usize) {
    let r = rt();
    let mut c = 0;
    for _ in 0..n {
        assert_eq!(unsafe { (r.tangGetDeviceCount)(&mut c) }, 0);
    }
}

#[test]
fn counters_sum_over_live_and_exited_threads() {
    let _g = serial();
    let r = rt();
    unsafe { (r.tangEmuResetCounters)() };
    // exited threads
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| device_count_calls(1000));
        }
    });
    assert_eq!(r.count("tangGetDeviceCount"), 4000);
    assert_eq!(unsafe { (r.tangEmuTotalCalls)() }, 4000);

    // a live thread: counted while it runs, across a reset, and after it exits
    let (go_tx, go_rx) = mpsc::channel::<usize>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        for n in go_rx {
            device_count_calls(n);
            done_tx.send(()).unwrap();
        }
    });
    go_tx.send(10).unwrap();
    done_rx.recv().unwrap();
    assert_eq!(r.count("tangGetDeviceCount"), 4010);
    unsafe { (r.tangEmuResetCounters)() };
    assert_eq!(r.count("tangGetDeviceCount"), 0);
    assert_eq!(unsafe { (r.tangEmuTotalCalls)() }, 0);
    go_tx.send(5).unwrap();
    done_rx.recv().unwrap();
    device_count_calls(2);
    assert_eq!(r.count("tangGetDeviceCount"), 7);
    drop(go_tx);
    t.join().unwrap();
    assert_eq!(
        r.count("tangGetDeviceCount"),
        7,
        "the exited thread's calls stay"
    );
    assert_eq!(unsafe { (r.tangEmuTotalCalls)() }, 7);

    // concurrent readers and writers: the final sums are exact
    unsafe { (r.tangEmuResetCounters)() };
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| device_count_calls(20_000));
        }
        s.spawn(|| {
            let mut last = 0;
            for _ in 0..200 {
                let n = r.count("tangGetDeviceCount");
                assert!(n >= last, "counts only grow: {n} after {last}");
                assert!(n <= 60_000);
                last = n;
            }
        });
    });
    assert_eq!(r.count("tangGetDeviceCount"), 60_000);

    // a child inherits the counts of the parent's threads, its own calls add to them
    unsafe { (r.tangEmuResetCounters)() };
    let (go_tx, go_rx) = mpsc::channel::<usize>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        for n in go_rx {
            device_count_calls(n);
            done_tx.send(()).unwrap();
        }
    });
    go_tx.send(3).unwrap();
    done_rx.recv().unwrap();
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut c = 0;
        unsafe { (r.tangGetDeviceCount)(&mut c) };
        let ok = r.count("tangGetDeviceCount") == 4;
        unsafe { (r.tangEmuResetCounters)() };
        let ok = ok && r.count("tangGetDeviceCount") == 0;
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child: {status:#x}"
    );
    assert_eq!(
        r.count("tangGetDeviceCount"),
        3,
        "the child's calls are its own"
    );
    drop(go_tx);
    t.join().unwrap();
}

/// A thread that runs the calls it is sent and sends back their results.
struct Worker {
    tx: Option<mpsc::Sender<Box<dyn FnOnce() -> u32 + Send>>>,
    rx: mpsc::Receiver<u32>,
    t: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn new() -> Worker {
        let (tx, job_rx) = mpsc::channel::<Box<dyn FnOnce() -> u32 + Send>>();
        let (res_tx, rx) = mpsc::channel();
        let t = std::thread::spawn(move || {
            for job in job_rx {
                res_tx.send(job()).unwrap();
            }
        });
        Worker {
            tx: Some(tx),
            rx,
            t: Some(t),
        }
    }

    fn call(&self, f: impl FnOnce() -> u32 + Send + 'static) -> u32 {
        self.tx.as_ref().unwrap().send(Box::new(f)).unwrap();
        self.rx.recv().unwrap()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.t.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy)]
struct P(*mut c_void);
unsafe impl Send for P {}
impl P {
    /// The pointer (a method, so that closures capture the whole `P`, which is `Send`).
    fn p(self) -> *mut c_void {
        self.0
    }
}

#[test]
fn changes_made_by_one_thread_are_seen_by_the_next_call_of_another() {
    let _g = serial();
    let r = rt();
    let w = Worker::new();
    let n = 8192;
    let d0 = P(r.malloc(n));
    r.set_device(1);
    let d1 = P(r.malloc(n));
    r.set_device(0);
    let peer = move |d: P, s: P| move || unsafe { (r.tangMemcpyPeer)(d.p(), 1, s.p(), 0, n) };

    // the worker uses both buffers (and keeps the view it used)
    assert_eq!(w.call(peer(d1, d0)), 0);
    // freed here: the worker's next copy fails
    assert_eq!(unsafe { (r.tangFree)(d1.p()) }, 0);
    assert_eq!(
        w.call(peer(d1, d0)),
        1,
        "copy into memory freed by another thread"
    );
    let mut at = [0u64; 3];
    let at_p = P(at.as_mut_ptr().cast());
    assert_eq!(
        w.call(move || unsafe { (r.tangPointerGetAttributes)(at_p.p().cast(), d1.p()) }),
        1,
        "attributes of freed memory"
    );

    // new memory made here is usable there at once
    r.set_device(1);
    let d1 = P(r.malloc(n));
    r.set_device(0);
    assert_eq!(w.call(peer(d1, d0)), 0);

    // a peer window used there dies with its target freed here
    let gpp = r.peer_pointer();
    let mut m = std::ptr::null_mut();
    assert_eq!(unsafe { gpp(0, 0, d1.p(), &mut m) }, 0);
    let m = P(m);
    let through = move || unsafe { (r.tangMemcpy)(m.p(), d0.p(), n, D2D) };
    assert_eq!(w.call(through), 0);
    assert_eq!(unsafe { (r.tangFree)(d1.p()) }, 0);
    assert_ne!(
        w.call(through),
        0,
        "window to memory freed by another thread"
    );

    // an IPC mapping closed here fails there
    r.set_device(1);
    let d1 = P(r.malloc(n));
    let mut h = [0u64; 8];
    assert_eq!(unsafe { (r.tangIpcGetMemHandle)(&mut h, d1.p()) }, 0);
    r.set_device(2);
    let mut o = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangIpcOpenMemHandle)(&mut o, h, 1) }, 0);
    let o = P(o);
    r.set_device(0);
    let into_open = move || unsafe { (r.tangMemcpy)(o.p(), d0.p(), n, D2D) };
    assert_eq!(w.call(into_open), 0);
    assert_eq!(unsafe { (r.tangIpcCloseMemHandle)(o.p()) }, 0);
    assert_eq!(
        w.call(into_open),
        21,
        "closed mapping: no longer device memory"
    );
    // a destroyed one (the exporter freed it) fails with tangErrorDestroyed
    r.set_device(2);
    let mut o = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangIpcOpenMemHandle)(&mut o, h, 1) }, 0);
    let o = P(o);
    r.set_device(0);
    let into_open = move || unsafe { (r.tangMemcpy)(o.p(), d0.p(), n, D2D) };
    assert_eq!(w.call(into_open), 0);
    assert_eq!(unsafe { (r.tangFree)(d1.p()) }, 0);
    assert_eq!(w.call(into_open), 3026);
    assert_eq!(unsafe { (r.tangIpcCloseMemHandle)(o.p()) }, 0);

    // configuration changes: a removed device, tangMemcpyPeer unsupported, a link model
    r.set_device(1);
    let d1 = P(r.malloc(n));
    r.set_device(0);
    assert_eq!(w.call(peer(d1, d0)), 0);
    assert_eq!(r.configure("removed_devices = [1]"), 0);
    assert_eq!(w.call(peer(d1, d0)), 5);
    assert_eq!(w.call(|| unsafe { (rt().tangSetDevice)(1) }), 5);
    unsafe { (r.tangEmuClearFaults)() };
    assert_eq!(w.call(peer(d1, d0)), 0);
    assert_eq!(r.configure("memcpy_peer_unsupported = true"), 0);
    assert_eq!(w.call(peer(d1, d0)), 801);
    unsafe { (r.tangEmuClearFaults)() };
    // 1 MB/s: 8 KiB take about 8 ms
    assert_eq!(r.configure("[link_model]\nbandwidth = 1000000"), 0);
    let t = std::time::Instant::now();
    assert_eq!(w.call(peer(d1, d0)), 0);
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(8),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.configure("link_model = {}"), 0);
    unsafe {
        assert_eq!((r.tangFree)(d0.p()), 0);
        assert_eq!((r.tangFree)(d1.p()), 0);
    }
}

/// Lines of /proc/self/maps that map the backing file of `handle`'s allocation.
fn mappings_of(handle: &[u64; 8]) -> usize {
    let name = format!(
        "tang-emu.{}.{}.{}",
        unsafe { libc::getuid() },
        handle[1],
        handle[2]
    );
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&name))
        .count()
}

#[test]
fn stream_threads_keep_no_freed_memory_mapped() {
    let _g = serial();
    let r = rt();
    let n = 1 << 20;
    let host = vec![9u8; n];
    let d0 = r.malloc(n);
    r.set_device(1);
    let d1 = r.malloc(n);
    r.set_device(0);
    let mut h = [0u64; 8];
    assert_eq!(unsafe { (r.tangIpcGetMemHandle)(&mut h, d0) }, 0);
    let mut s = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangStreamCreate)(&mut s) }, 0);
    unsafe {
        assert_eq!((r.tangMemcpyAsync)(d0, host.as_ptr().cast(), n, H2D, s), 0);
        assert_eq!((r.tangMemcpyPeerAsync)(d1, 1, d0, 0, n, s), 0);
        assert_eq!(
            (r.tangMemcpyAsync)(d0, host.as_ptr().cast(), n, H2D, std::ptr::null_mut()),
            0
        );
        assert_eq!((r.tangStreamSynchronize)(s), 0);
        assert_eq!((r.tangDeviceSynchronize)(), 0);
    }
    // another thread of the caller used it, and exited
    let p = P(d0);
    std::thread::spawn(move || {
        let mut at = [0u64; 3];
        assert_eq!(
            unsafe { (rt().tangPointerGetAttributes)(&mut at, p.p()) },
            0
        );
    })
    .join()
    .unwrap();
    assert_eq!(mappings_of(&h), 1, "mapped while allocated");
    assert_eq!(unsafe { (r.tangFree)(d0) }, 0);
    // this thread's next call leaves the view that still had it
    let mut c = 0;
    assert_eq!(unsafe { (r.tangGetDeviceCount)(&mut c) }, 0);
    assert_eq!(
        mappings_of(&h),
        0,
        "unmapped once freed (stream threads and exited threads hold nothing)"
    );
    unsafe {
        assert_eq!((r.tangStreamDestroy)(s), 0);
        assert_eq!((r.tangFree)(d1), 0);
    }
}
