//! Tasks, sub-batches, asynchronous runs, install and uninstall.

use super::*;

#[test]
fn async_cancel_and_capacity() {
    let (fake, _h, t) = setup(Fake::new(1), r#"{"async_memcpy_threshold": 1}"#);
    let a = fake.alloc(0, 8192, 9);
    let b = fake.alloc(0, 8192, 0);
    t.add_buffer(a, 8192, "cuda:0").unwrap();
    t.add_buffer(b, 8192, "cuda:0").unwrap();
    let h = t.allocate(4, 0).unwrap();
    t.submit(
        h,
        &[
            req(OP_WRITE, a, 0, b, 4096),
            req(OP_WRITE, a, 0, b + 4096, 100),
        ],
    )
    .unwrap();
    assert_eq!(wait(&t, h, 0), (status::COMPLETED, 4096));
    assert_eq!(wait(&t, h, 1), (status::COMPLETED, 100));
    assert_eq!(fake.read(b, 4096), vec![9; 4096]);
    assert_eq!(fake.calls("tangMemcpyAsync"), 1);
    assert_eq!(fake.calls("tangEventCreateWithFlags"), 1);
    assert_eq!(
        t.submit(h, &[req(0, a, 0, b, 1); 3]).unwrap_err().code,
        code::TOO_MANY_REQUESTS
    );
    assert_eq!(t.size(h).unwrap(), 2);
    assert!(t.status(h, 2).is_err());
    t.free(h).unwrap();
    assert!(t.status(h, 0).is_err());
    assert!(t.free(h).is_err());
}

#[test]
fn sync_copies_are_terminal_when_submit_returns_and_cancel_cancels_nothing() {
    let (fake, host, t) = setup(Fake::new(1), "{}");
    let a = fake.alloc(0, 1 << 20, 9);
    let b = fake.alloc(0, 1 << 20, 0);
    t.add_buffer(a, 1 << 20, "cuda:0").unwrap();
    t.add_buffer(b, 1 << 20, "cuda:0").unwrap();
    let h = t.allocate(100, 0).unwrap();
    let reqs: Vec<Request> = (0..100)
        .map(|i| req(OP_WRITE, a + i * 4096, 0, b + i * 8192, 512))
        .collect();
    t.submit(h, &reqs).unwrap();
    for i in 0..100 {
        assert_eq!(
            t.status(h, i).unwrap(),
            (status::COMPLETED, 512),
            "task {i}"
        );
        assert!(!t.cancel(h, i).unwrap(), "task {i} already ran");
        assert_eq!(t.status(h, i).unwrap().0, status::COMPLETED);
    }
    assert!(!t.supports_cancellation());
    assert!(t.cancel(h, 100).is_err(), "unknown task");
    assert!(t.cancel(h ^ (1 << 40), 0).is_err(), "unknown sub-batch");
    assert_eq!(
        host.notified.load(Ordering::SeqCst),
        100,
        "one notification per task"
    );
    assert_eq!(fake.read(b + 8192 * 7, 512), vec![9; 512]);
}

#[test]
fn async_runs_finish_through_status_and_recycle_their_events() {
    let (fake, host, t) = setup(Fake::new(1), r#"{"async_memcpy_threshold": "4KiB"}"#);
    let a = fake.alloc(0, 1 << 16, 9);
    let b = fake.alloc(0, 1 << 16, 0);
    t.add_buffer(a, 1 << 16, "cuda:0").unwrap();
    t.add_buffer(b, 1 << 16, "cuda:0").unwrap();
    let h = t.allocate(16, 0).unwrap();
    fake.hold_events(true);
    // Four contiguous async requests: one copy, one event; one small one: synchronous.
    let reqs: Vec<Request> = (0..4)
        .map(|i| req(OP_WRITE, a + i * 4096, 0, b + i * 4096, 4096))
        .chain([req(OP_WRITE, a, 0, b + 32768, 100)])
        .collect();
    t.submit(h, &reqs).unwrap();
    assert_eq!(fake.calls("tangMemcpyAsync"), 1);
    assert_eq!(t.in_flight().unwrap(), 1);
    for i in 0..4 {
        assert_eq!(t.status(h, i).unwrap().0, status::PENDING);
    }
    assert_eq!(t.status(h, 4).unwrap(), (status::COMPLETED, 100));
    assert_eq!(host.notified.load(Ordering::SeqCst), 1);
    fake.hold_events(false);
    assert_eq!(t.status(h, 2).unwrap(), (status::COMPLETED, 4096));
    for i in 0..4 {
        assert_eq!(
            t.status(h, i).unwrap(),
            (status::COMPLETED, 4096),
            "task {i}"
        );
    }
    assert_eq!(host.notified.load(Ordering::SeqCst), 5);
    assert_eq!(t.in_flight().unwrap(), 0);
    assert_eq!(fake.read(b, 16384), vec![9; 16384]);
    // The event is reused; a sub-batch freed with a copy in flight is swept, and its task,
    // whose progress token the host is giving up, is not notified.
    fake.hold_events(true);
    t.submit(h, &[req(OP_WRITE, a, 0, b, 8192)]).unwrap();
    assert_eq!(fake.calls("tangEventCreateWithFlags"), 1);
    fake.hold_events(false);
    t.free(h).unwrap();
    assert_eq!(t.in_flight().unwrap(), 0);
    assert_eq!(host.notified.load(Ordering::SeqCst), 5);
}

#[test]
fn uninstall_waits_for_async_copies_then_fails_what_is_left() {
    let (fake, _h, t) = setup(Fake::new(1), r#"{"async_memcpy_threshold": 1}"#);
    let a = fake.alloc(0, 8192, 9);
    let b = fake.alloc(0, 8192, 0);
    t.add_buffer(a, 8192, "cuda:0").unwrap();
    t.add_buffer(b, 8192, "cuda:0").unwrap();
    let h = t.allocate(4, 0).unwrap();
    fake.hold_events(true);
    t.submit(h, &[req(OP_WRITE, a, 0, b, 4096)]).unwrap();
    let f2 = fake.clone();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        f2.hold_events(false);
    });
    t.uninstall().unwrap();
    releaser.join().unwrap();
    assert_eq!(t.status(h, 0).unwrap(), (status::COMPLETED, 4096));
    // Never completes: FAILED once the drain limit has passed.
    t.install(Some(r#"{"async_memcpy_threshold": 1}"#)).unwrap();
    t.add_buffer(a, 8192, "cuda:0").unwrap();
    t.add_buffer(b, 8192, "cuda:0").unwrap();
    fake.hold_events(true);
    t.submit(h, &[req(OP_WRITE, a, 0, b, 4096)]).unwrap();
    t.uninstall_within(Duration::from_millis(20)).unwrap();
    assert_eq!(t.status(h, 1).unwrap().0, status::FAILED);
    assert!(t.task_error(h, 1).unwrap().unwrap().contains("uninstalled"));
    fake.hold_events(false);
    assert_eq!(
        fake.calls("tangStreamDestroy"),
        fake.calls("tangStreamCreateWithFlags"),
        "streams destroyed"
    );
}

#[test]
fn a_panic_while_copying_fails_the_tasks_left_and_restores_the_device() {
    let (fake, _h, t) = setup(Fake::new(2), "{}");
    let a = fake.alloc(0, 1 << 16, 1);
    let b = fake.alloc(0, 1 << 16, 0);
    t.add_buffer(a, 1 << 16, "cuda:0").unwrap();
    t.add_buffer(b, 1 << 16, "cuda:0").unwrap();
    let h = t.allocate(8, 0).unwrap();
    fake.set_device(1).unwrap();
    fake.panic_at_len.store(77, Ordering::Relaxed);
    t.submit(
        h,
        &[
            req(OP_WRITE, a, 0, b, 10),
            req(OP_WRITE, a + 100, 0, b + 200, 77),
            req(OP_WRITE, a + 300, 0, b + 400, 10),
        ],
    )
    .unwrap();
    assert_eq!(t.status(h, 0).unwrap().0, status::COMPLETED);
    for i in 1..3 {
        assert_eq!(t.status(h, i).unwrap().0, status::FAILED);
        assert!(t
            .task_error(h, i)
            .unwrap()
            .unwrap()
            .contains("internal error"));
    }
    assert_eq!(fake.current(), 1, "the caller's device is back");
}

#[test]
fn install_errors() {
    let fake = Arc::new(Fake::new(0));
    let t = Transport::new(Arc::new(TestHost::default()), RuntimeSource::Given(fake));
    assert_eq!(t.install(None).unwrap_err().code, code::DEVICE_NOT_FOUND);
    let t = Transport::new(
        Arc::new(TestHost::default()),
        RuntimeSource::Given(Arc::new(Fake::new(1))),
    );
    let e = t
        .install(Some(r#"{"worker_threads": "many"}"#))
        .unwrap_err();
    assert!(e.msg.contains("worker_threads"));
    t.install(Some("{}")).unwrap();
    assert!(t.install(Some("{}")).is_err());
    assert_eq!(
        t.add_buffer(0x1000, 10, "cuda:7").unwrap_err().code,
        code::DEVICE_NOT_FOUND
    );
    assert!(t.add_buffer(0x1000, 10, "rocm:0").is_err());
    assert_eq!(t.add_buffer(0x1000, 10, "cpu:0").unwrap(), "");
}

#[test]
fn concurrent_submitters_on_one_sub_batch() {
    let (fake, _h, t) = setup(Fake::new(2), r#"{"worker_threads": 3}"#);
    let a = fake.alloc(0, 1 << 16, 0x42);
    let b = fake.alloc(1, 1 << 16, 0);
    t.add_buffer(a, 1 << 16, "cuda:0").unwrap();
    t.add_buffer(b, 1 << 16, "cuda:1").unwrap();
    let h = t.allocate(400, 0).unwrap();
    std::thread::scope(|s| {
        for k in 0..4u64 {
            let t = &t;
            s.spawn(move || {
                for i in 0..25u64 {
                    let off = (k * 25 + i) * 64;
                    let r = [req(OP_WRITE, a + off, 0, b + off, 64); 4];
                    t.submit(h, &r).unwrap();
                }
            });
        }
    });
    assert_eq!(t.size(h).unwrap(), 400);
    for i in 0..400 {
        assert_eq!(wait(&t, h, i), (status::COMPLETED, 64));
    }
    assert_eq!(fake.read(b, 100 * 64), vec![0x42; 100 * 64]);
    assert_eq!(
        t.submit(h, &[req(OP_WRITE, a, 0, b, 1)]).unwrap_err().code,
        code::TOO_MANY_REQUESTS
    );
}

#[test]
fn topology_detection_failure_is_not_fatal() {
    let mut f = Fake::new(2);
    f.links = vec![(0, 1, vec![0, 1])];
    f.fail("ptmlPtlinkPhytopoDetect");
    let (fake, _h, t) = setup(f, "{}");
    // Installed: registration and copies work without the topology.
    let a = fake.alloc(0, 64, 1);
    let b = fake.alloc(1, 64, 0);
    t.add_buffer(a, 64, "cuda:0").unwrap();
    t.add_buffer(b, 64, "cuda:1").unwrap();
    let h = t.allocate(1, 0).unwrap();
    t.submit(h, &[req(OP_WRITE, a, 0, b, 64)]).unwrap();
    assert_eq!(t.status(h, 0).unwrap(), (status::COMPLETED, 64));
    assert_eq!(fake.read(b, 64), vec![1; 64]);
}

#[test]
fn sub_range_of_an_allocation_is_rejected() {
    let (fake, _h, t) = setup(Fake::new(1), "{}");
    let a = fake.alloc(0, 8192, 1);
    let e = t.add_buffer(a + 4096, 4096, "cuda:0").unwrap_err();
    assert_eq!(e.code, code::INVALID_ARGUMENT);
    assert!(
        e.msg.contains("inside a larger device allocation"),
        "{}",
        e.msg
    );
    // From the first byte, even when shorter than the allocation, it is fine.
    assert_eq!(t.add_buffer(a, 4096, "cuda:0").unwrap().len(), 128);
    assert_eq!(
        fake.calls("tangSetDevice"),
        0,
        "device 0 was already current"
    );
}

#[test]
fn many_devices_need_no_lock_table() {
    let (fake, _h, t) = setup(Fake::new(40), r#"{"worker_threads": 2}"#);
    let h = t.allocate(64, 0).unwrap();
    let mut reqs = Vec::new();
    let mut dsts = Vec::new();
    for d in 32..40 {
        let s = fake.alloc(d, 256, d as u8);
        let x = fake.alloc(d + 1 - 8 * ((d + 1) / 40), 256, 0);
        t.add_buffer(s, 256, &format!("cuda:{d}")).unwrap();
        reqs.push(req(OP_WRITE, s, 0, x, 256));
        dsts.push((x, d as u8));
    }
    t.submit(h, &reqs).unwrap();
    for i in 0..reqs.len() as u64 {
        assert_eq!(wait(&t, h, i).0, status::COMPLETED);
    }
    for (x, v) in dsts {
        assert_eq!(fake.read(x, 256), vec![v; 256]);
    }
}

#[test]
fn recycling_a_sub_batch_with_a_copy_in_flight_gives_a_fresh_one() {
    let (fake, host, t) = setup(Fake::new(1), r#"{"async_memcpy_threshold": 1}"#);
    let a = fake.alloc(0, 8192, 4);
    let b = fake.alloc(0, 8192, 0);
    t.add_buffer(a, 8192, "cuda:0").unwrap();
    t.add_buffer(b, 8192, "cuda:0").unwrap();
    let h = t.allocate(4, 0).unwrap();
    fake.hold_events(true);
    t.submit(h, &[req(OP_WRITE, a, 0, b, 4096)]).unwrap();
    assert_eq!(t.in_flight().unwrap(), 1);
    let h2 = t.recycle(h, 4, 0).unwrap();
    assert!(t.status(h, 0).is_err(), "the old handle is stale");
    assert!(t.status(h2, 0).is_err(), "the new sub-batch is empty");
    t.submit(h2, &[req(OP_WRITE, a + 4096, 0, b + 4096, 2048)])
        .unwrap();
    assert_eq!(t.in_flight().unwrap(), 2, "the first copy still runs");
    fake.hold_events(false);
    assert_eq!(t.status(h2, 0).unwrap(), (status::COMPLETED, 2048));
    t.uninstall().unwrap();
    assert_eq!(fake.read(b, 4096), vec![4; 4096], "the first copy landed");
    assert_eq!(
        host.notified.load(Ordering::SeqCst),
        1,
        "only the live sub-batch's task"
    );
    assert!(t.recycle(h2, 0, 0).is_err(), "a size out of range");
}
