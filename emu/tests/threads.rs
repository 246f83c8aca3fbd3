//! Calls from several threads: counters sum over live and exited threads (reset, fork).
mod common;

use common::{rt, serial};
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
