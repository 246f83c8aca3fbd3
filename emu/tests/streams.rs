//! Streams and events are asynchronous: work runs in order on emulator threads; queries say
//! 600 while it is pending and 0 once done. A slow link model makes "pending" observable.
mod common;

use common::{rt, serial, D2D, D2H, H2D};
use std::time::{Duration, Instant};

/// Every port at 50 MB/s: 2 MiB take about 42 ms, 4 MiB about 84 ms. Only lower bounds on
/// time are asserted (they follow from the model); "still pending" checks come right after
/// the enqueue, far inside those windows.
const SLOW: &str = "[link_model]\nbandwidth = 50000000\nlatency_us = 0\n";

fn peer_window(
    n: usize,
) -> (
    *mut std::ffi::c_void,
    *mut std::ffi::c_void,
    *mut std::ffi::c_void,
) {
    let r = rt();
    r.set_device(1);
    let remote = r.malloc(n);
    r.set_device(0);
    let local = r.malloc(n);
    let mut mapped = std::ptr::null_mut();
    assert_eq!(unsafe { r.peer_pointer()(0, 0, remote, &mut mapped) }, 0);
    (local, remote, mapped)
}

#[test]
fn stream_query_is_not_ready_while_work_is_pending() {
    let _g = serial();
    let r = rt();
    assert_eq!(r.configure(SLOW), 0);
    let n = 4 << 20;
    let (local, remote, mapped) = peer_window(n);
    let mut s = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangStreamCreateWithFlags)(&mut s, 1) }, 0);
    let mut ev = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangEventCreate)(&mut ev) }, 0);
    assert_eq!(
        unsafe { (r.tangEventQuery)(ev) },
        0,
        "never recorded: complete"
    );
    let t = Instant::now();
    assert_eq!(unsafe { (r.tangMemcpyAsync)(mapped, local, n, D2D, s) }, 0);
    assert_eq!(unsafe { (r.tangEventRecord)(ev, s) }, 0);
    // the enqueue returned before the copy finished
    assert_eq!(unsafe { (r.tangStreamQuery)(s) }, 600);
    assert_eq!(unsafe { (r.tangEventQuery)(ev) }, 600);
    assert_eq!(
        unsafe { (r.tangGetLastError)() },
        0,
        "NotReady is not recorded as an error"
    );
    assert_eq!(unsafe { (r.tangStreamSynchronize)(s) }, 0);
    assert!(
        t.elapsed() >= Duration::from_millis(80),
        "copy throttled by the link model"
    );
    assert_eq!(unsafe { (r.tangStreamQuery)(s) }, 0);
    assert_eq!(unsafe { (r.tangEventQuery)(ev) }, 0);
    unsafe {
        assert_eq!((r.tangEventDestroy)(ev), 0);
        assert_eq!((r.tangStreamDestroy)(s), 0);
        assert_eq!((r.tangStreamQuery)(s), 400, "destroyed handle");
        (r.tangFree)(local);
        (r.tangFree)(remote);
    }
}

#[test]
fn work_runs_in_order() {
    let _g = serial();
    let r = rt();
    let n = 1 << 20;
    let d = r.malloc(n);
    let mut s = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangStreamCreate)(&mut s) }, 0);
    let bufs: Vec<Vec<u8>> = (0..16u8).map(|i| vec![i; n]).collect();
    let mut outs: Vec<Vec<u8>> = (0..16).map(|_| vec![0xffu8; n]).collect();
    for (b, o) in bufs.iter().zip(outs.iter_mut()) {
        assert_eq!(
            unsafe { (r.tangMemcpyAsync)(d, b.as_ptr().cast(), n, H2D, s) },
            0
        );
        assert_eq!(
            unsafe { (r.tangMemcpyAsync)(o.as_mut_ptr().cast(), d, n, D2H, s) },
            0
        );
    }
    assert_eq!(unsafe { (r.tangStreamSynchronize)(s) }, 0);
    for (i, o) in outs.iter().enumerate() {
        assert!(
            o.iter().all(|&x| x == i as u8),
            "copy {i} saw a later or earlier write"
        );
    }
    unsafe {
        (r.tangStreamDestroy)(s);
        (r.tangFree)(d);
    }
}

#[test]
fn parallel_ports_add_bandwidth_same_port_shares_it() {
    let _g = serial();
    let r = rt();
    assert_eq!(r.configure(SLOW), 0);
    let n = 2 << 20; // 42 ms per copy
    let gpp = r.peer_pointer();
    let mut remote = Vec::new();
    for d in 1..=2 {
        r.set_device(d);
        remote.push(r.malloc(n));
    }
    r.set_device(0);
    let local = r.malloc(n) as usize;
    let (mut m1, mut m2) = (std::ptr::null_mut(), std::ptr::null_mut());
    assert_eq!(unsafe { gpp(0, 0, remote[0], &mut m1) }, 0); // port 0 -> device 1
    assert_eq!(unsafe { gpp(0, 1, remote[1], &mut m2) }, 0); // port 1 -> device 2
    let run = |a: usize, b: usize| {
        let t = Instant::now();
        std::thread::scope(|sc| {
            for m in [a, b] {
                sc.spawn(move || {
                    let r = rt();
                    r.set_device(0);
                    assert_eq!(
                        unsafe { (r.tangMemcpy)(m as *mut _, local as *const _, n, D2D) },
                        0
                    );
                });
            }
        });
        t.elapsed()
    };
    let different = run(m1 as usize, m2 as usize);
    let same = run(m1 as usize, m1 as usize);
    println!("two copies of 2 MiB at 50 MB/s: different ports {different:?}, same port {same:?}");
    assert!(
        same >= Duration::from_millis(80),
        "same port shares bandwidth: {same:?}"
    );
    assert!(
        different < same,
        "different ports add bandwidth: {different:?} vs {same:?}"
    );
    unsafe {
        (r.tangFree)(local as *mut _);
        for p in remote {
            (r.tangFree)(p);
        }
    }
}

#[test]
fn destroy_with_pending_work_is_sane() {
    let _g = serial();
    let r = rt();
    assert_eq!(r.configure(SLOW), 0);
    let n = 2 << 20;
    let (local, remote, mapped) = peer_window(n);
    let mut s = std::ptr::null_mut();
    let mut ev = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangStreamCreate)(&mut s) }, 0);
    assert_eq!(unsafe { (r.tangEventCreate)(&mut ev) }, 0);
    for _ in 0..3 {
        assert_eq!(unsafe { (r.tangMemcpyAsync)(mapped, local, n, D2D, s) }, 0);
    }
    assert_eq!(unsafe { (r.tangEventRecord)(ev, s) }, 0);
    assert_eq!(
        unsafe { (r.tangEventDestroy)(ev) },
        0,
        "pending recording: freed later"
    );
    // The pending work still runs: destroy returns once it has and the stream's thread is gone.
    let t = Instant::now();
    assert_eq!(unsafe { (r.tangStreamDestroy)(s) }, 0);
    assert!(
        t.elapsed() >= Duration::from_millis(30),
        "tangStreamDestroy waited for the queued copies"
    );
    assert_eq!(r.live("stream"), 0);
    assert_eq!(r.live("event"), 0);
    unsafe {
        assert_eq!((r.tangFree)(local), 0);
        assert_eq!((r.tangFree)(remote), 0);
    }
}

/// Threads of this process named after emulator streams (`tang-emu-stream-d<N>`, cut to 15
/// characters by the kernel).
fn stream_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            // A joined thread can stay listed for a moment while the kernel releases it: still
            // running its exit (its memory map already let go: vsize 0), then a zombie or dead
            // task. Only a thread that has not begun to exit counts.
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
            let state = *fields.first()?;
            // Field 23 of stat (vsize) is the 21st after the command's closing parenthesis.
            let vsize = fields.get(20)?.parse::<u64>().ok()?;
            (comm.starts_with("tang-emu-stream") && state != "Z" && state != "X" && vsize > 0)
                .then_some(())
        })
        .count()
}

/// [`stream_threads`] once it is `want`, or after `within`.
fn stream_threads_settled(want: usize, within: Duration) -> usize {
    let t = Instant::now();
    loop {
        let n = stream_threads();
        if n == want || t.elapsed() > within {
            return n;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How long a thread that destroy joined may still be counted: `pthread_join` returns as soon
/// as the kernel has woken it from the exiting thread, a moment before that thread lets its
/// memory map go (a thread that was not joined but left running stays counted).
const JOINED_SETTLE: Duration = Duration::from_secs(1);

#[test]
fn destroy_joins_the_stream_thread() {
    let _g = serial();
    let r = rt();
    assert_eq!(r.configure(SLOW), 0);
    let n = 2 << 20;
    let (local, remote, mapped) = peer_window(n);
    let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    assert_eq!(r.h2d(local, &data), 0);
    let before = stream_threads();
    let mut s = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangStreamCreate)(&mut s) }, 0);
    assert_eq!(unsafe { (r.tangMemcpyAsync)(mapped, local, n, D2D, s) }, 0);
    // The thread names itself once it starts.
    assert_eq!(
        stream_threads_settled(before + 1, Duration::from_secs(5)),
        before + 1,
        "the stream's thread runs the copy"
    );
    assert_eq!(unsafe { (r.tangStreamDestroy)(s) }, 0);
    assert_eq!(
        stream_threads_settled(before, JOINED_SETTLE),
        before,
        "a stream thread still ran after tangStreamDestroy returned"
    );
    let mut back = vec![0u8; n];
    assert_eq!(r.d2h(&mut back, remote), 0);
    assert!(back == data, "the queued copy ran before destroy returned");
    // An idle stream too: its thread is gone when destroy returns.
    assert_eq!(unsafe { (r.tangStreamCreate)(&mut s) }, 0);
    assert_eq!(
        unsafe { (r.tangMemcpyAsync)(mapped, local, 4096, D2D, s) },
        0
    );
    assert_eq!(unsafe { (r.tangStreamSynchronize)(s) }, 0);
    assert_eq!(unsafe { (r.tangStreamDestroy)(s) }, 0);
    assert_eq!(stream_threads_settled(before, JOINED_SETTLE), before);
    unsafe {
        assert_eq!((r.tangFree)(local), 0);
        assert_eq!((r.tangFree)(remote), 0);
    }
}

#[test]
fn stream_wait_event_orders_two_streams_and_default_stream() {
    let _g = serial();
    let r = rt();
    assert_eq!(r.configure(SLOW), 0);
    let n = 2 << 20;
    let (local, remote, mapped) = peer_window(n);
    let (mut a, mut b, mut ev) = (
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    unsafe {
        assert_eq!((r.tangStreamCreate)(&mut a), 0);
        assert_eq!((r.tangStreamCreate)(&mut b), 0);
        assert_eq!((r.tangEventCreate)(&mut ev), 0);
    }
    let src = vec![0xabu8; n];
    let mut out = vec![0u8; n];
    unsafe {
        assert_eq!(
            (r.tangMemcpyAsync)(local, src.as_ptr().cast(), n, H2D, a),
            0
        );
        assert_eq!((r.tangMemcpyAsync)(mapped, local, n, D2D, a), 0); // slow
        assert_eq!((r.tangEventRecord)(ev, a), 0);
        assert_eq!((r.tangStreamWaitEvent)(b, ev, 0), 0);
        assert_eq!(
            (r.tangMemcpyAsync)(out.as_mut_ptr().cast(), remote, n, D2H, b),
            0
        );
        assert_eq!((r.tangStreamQuery)(b), 600);
        assert_eq!((r.tangStreamSynchronize)(b), 0);
    }
    assert!(out.iter().all(|&x| x == 0xab), "b waited for a's event");
    // the legacy default stream (NULL) works and its synchronize waits for the device
    unsafe {
        assert_eq!(
            (r.tangMemcpyAsync)(mapped, local, n, D2D, std::ptr::null_mut()),
            0
        );
        assert_eq!((r.tangStreamSynchronize)(std::ptr::null_mut()), 0);
        assert_eq!((r.tangStreamQuery)(std::ptr::null_mut()), 0);
        assert_eq!((r.tangMemcpyPeerAsync)(remote, 1, local, 0, n, a), 0);
        assert_eq!((r.tangDeviceSynchronize)(), 0);
        assert_eq!((r.tangStreamQuery)(a), 0);
        (r.tangEventDestroy)(ev);
        (r.tangStreamDestroy)(a);
        (r.tangStreamDestroy)(b);
        (r.tangFree)(local);
        (r.tangFree)(remote);
    }
}

#[test]
fn events_time_and_flags() {
    let _g = serial();
    let r = rt();
    let (mut e0, mut e1, mut s) = (
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    unsafe {
        assert_eq!(
            (r.tangEventCreateWithFlags)(&mut e0, 4),
            1,
            "interprocess unsupported"
        );
        assert_eq!((r.tangEventCreateWithFlags)(&mut e0, 0), 0);
        assert_eq!((r.tangEventCreate)(&mut e1), 0);
        assert_eq!((r.tangStreamCreate)(&mut s), 0);
        let mut ms = 0f32;
        assert_eq!(
            (r.tangEventElapsedTime)(&mut ms, e0, e1),
            400,
            "never recorded"
        );
        assert_eq!((r.tangEventRecord)(e0, s), 0);
        assert_eq!((r.tangEventRecord)(e1, s), 0);
        assert_eq!((r.tangEventSynchronize)(e1), 0);
        assert_eq!((r.tangEventElapsedTime)(&mut ms, e0, e1), 0);
        assert!(ms >= 0.0);
        // an event of device 1 cannot be recorded on a stream of device 0
        r.set_device(1);
        let mut e2 = std::ptr::null_mut();
        assert_eq!((r.tangEventCreate)(&mut e2), 0);
        assert_eq!((r.tangEventRecord)(e2, s), 400);
        assert_eq!((r.tangEventDestroy)(e2), 0);
        r.set_device(0);
        assert_eq!((r.tangEventDestroy)(e0), 0);
        assert_eq!((r.tangEventDestroy)(e1), 0);
        assert_eq!((r.tangEventDestroy)(e1), 400);
        assert_eq!((r.tangStreamDestroy)(s), 0);
    }
}

#[test]
fn fork_child_keeps_working() {
    let _g = serial();
    let r = rt();
    let n = 1 << 16;
    let d = r.malloc(n);
    let mut s = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangStreamCreate)(&mut s) }, 0);
    let src = vec![3u8; n];
    assert_eq!(
        unsafe { (r.tangMemcpyAsync)(d, src.as_ptr().cast(), n, H2D, s) },
        0
    );
    assert_eq!(unsafe { (r.tangStreamSynchronize)(s) }, 0);
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // child: the parent's stream (its worker thread did not survive fork), new memory,
        // copies, IPC
        let code = (|| unsafe {
            let mut out = vec![0u8; n];
            if (r.tangMemcpyAsync)(out.as_mut_ptr().cast(), d, n, D2H, s) != 0 {
                return 10;
            }
            if (r.tangStreamSynchronize)(s) != 0 || out != src {
                return 11;
            }
            let mut c = std::ptr::null_mut();
            if (r.tangMalloc)(&mut c, n) != 0 {
                return 12;
            }
            let mut h = [0u64; 8];
            if (r.tangIpcGetMemHandle)(&mut h, c) != 0 {
                return 13;
            }
            let mut o = std::ptr::null_mut();
            if (r.tangSetDevice)(1) != 0 || (r.tangIpcOpenMemHandle)(&mut o, h, 1) != 0 {
                return 14;
            }
            if (r.tangIpcCloseMemHandle)(o) != 0 || (r.tangFree)(c) != 0 {
                return 15;
            }
            0
        })();
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child crashed: {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0);
    // the parent still works
    let mut out = vec![0u8; n];
    assert_eq!(r.d2h(&mut out, d), 0);
    assert_eq!(out, src);
    unsafe {
        assert_eq!((r.tangStreamDestroy)(s), 0);
        assert_eq!((r.tangFree)(d), 0);
    }
}

/// Forks while other threads keep calling the runtime: the child must not inherit a lock held
/// by a thread that does not exist there. Bounded: 20 forks, each child given 10 s.
#[test]
fn fork_while_other_threads_use_the_runtime() {
    let _g = serial();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        for t in 0..4 {
            let stop = &stop;
            sc.spawn(move || {
                let r = rt();
                r.set_device(t);
                let mut s = std::ptr::null_mut();
                assert_eq!(unsafe { (r.tangStreamCreate)(&mut s) }, 0);
                let buf = vec![t as u8; 1 << 16];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let d = r.malloc(1 << 16);
                    assert_eq!(
                        unsafe { (r.tangMemcpyAsync)(d, buf.as_ptr().cast(), buf.len(), H2D, s) },
                        0
                    );
                    assert_eq!(unsafe { (r.tangStreamSynchronize)(s) }, 0);
                    let mut at = [0u64; 3];
                    assert_eq!(unsafe { (r.tangPointerGetAttributes)(&mut at, d) }, 0);
                    assert_eq!(unsafe { (r.tangFree)(d) }, 0);
                }
                assert_eq!(unsafe { (r.tangStreamDestroy)(s) }, 0);
            });
        }
        let r = rt();
        for _ in 0..20 {
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let ok = (|| unsafe {
                    let mut d = std::ptr::null_mut();
                    if (r.tangMalloc)(&mut d, 4096) != 0 {
                        return 2;
                    }
                    let b = [5u8; 4096];
                    if (r.tangMemcpy)(d, b.as_ptr().cast(), 4096, H2D) != 0 {
                        return 3;
                    }
                    let mut s = std::ptr::null_mut();
                    let mut out = [0u8; 4096];
                    if (r.tangStreamCreate)(&mut s) != 0
                        || (r.tangMemcpyAsync)(out.as_mut_ptr().cast(), d, 4096, D2H, s) != 0
                        || (r.tangStreamSynchronize)(s) != 0
                        || out != b
                        || (r.tangFree)(d) != 0
                    {
                        return 4;
                    }
                    0
                })();
                unsafe { libc::_exit(ok) };
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut status = 0;
            loop {
                let w = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if w == pid {
                    break;
                }
                if Instant::now() > deadline {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    unsafe { libc::waitpid(pid, &mut status, 0) };
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    panic!("child {pid} hung after fork");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child status {status:#x}"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

/// Work queued before a fork belongs to the parent: the child neither waits for it nor runs it
/// again; events recorded before the fork are complete in the child.
#[test]
fn fork_with_pending_work() {
    let _g = serial();
    let r = rt();
    assert_eq!(r.configure(SLOW), 0);
    let n = 4 << 20; // ~84 ms over the slow port
    let (local, remote, mapped) = peer_window(n);
    let (mut s, mut ev) = (std::ptr::null_mut(), std::ptr::null_mut());
    unsafe {
        assert_eq!((r.tangStreamCreate)(&mut s), 0);
        assert_eq!((r.tangEventCreate)(&mut ev), 0);
        assert_eq!((r.tangMemcpyAsync)(mapped, local, n, D2D, s), 0);
        assert_eq!((r.tangEventRecord)(ev, s), 0);
    }
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = (|| unsafe {
            if (r.tangStreamQuery)(s) != 0 || (r.tangEventQuery)(ev) != 0 {
                return 2;
            }
            if (r.tangEventSynchronize)(ev) != 0 || (r.tangStreamSynchronize)(s) != 0 {
                return 3;
            }
            let b = [1u8; 64];
            let mut out = [0u8; 64];
            if (r.tangMemcpyAsync)(local, b.as_ptr().cast(), 64, H2D, s) != 0
                || (r.tangMemcpyAsync)(out.as_mut_ptr().cast(), local, 64, D2H, s) != 0
                || (r.tangStreamSynchronize)(s) != 0
                || out != b
            {
                return 4;
            }
            0
        })();
        unsafe { libc::_exit(code) };
    }
    assert_eq!(
        unsafe { (r.tangStreamQuery)(s) },
        600,
        "still pending in the parent"
    );
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child: {status:#x}"
    );
    unsafe {
        assert_eq!((r.tangEventSynchronize)(ev), 0);
        assert_eq!((r.tangStreamSynchronize)(s), 0);
        assert_eq!((r.tangEventDestroy)(ev), 0);
        assert_eq!((r.tangStreamDestroy)(s), 0);
        assert_eq!((r.tangFree)(local), 0);
        assert_eq!((r.tangFree)(remote), 0);
    }
}
