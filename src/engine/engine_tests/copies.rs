//! Copies: every path, merging, the current device, the runtime calls they make.

use super::*;

#[test]
fn same_device_and_host_paths_copy_bytes() {
    let (fake, host, t) = setup(Fake::new(2), "{}");
    let a = fake.alloc(0, 4096, 0x11);
    let b = fake.alloc(0, 4096, 0x00);
    t.add_buffer(a, 4096, "cuda:0").unwrap();
    t.add_buffer(b, 4096, "cuda:0").unwrap();
    let h = t.allocate(8, 42).unwrap();
    t.submit(h, &[req(OP_WRITE, a, 0, b, 4096)]).unwrap();
    assert_eq!(wait(&t, h, 0), (status::COMPLETED, 4096));
    assert_eq!(fake.read(b, 4096), vec![0x11; 4096]);
    // host -> device and device -> host
    let mut host_buf = vec![0x5au8; 1000];
    let hp = host_buf.as_mut_ptr() as u64;
    t.add_buffer(hp, 1000, "cpu:0").unwrap();
    t.submit(h, &[req(OP_WRITE, hp, 0, b + 8, 1000)]).unwrap();
    assert_eq!(wait(&t, h, 1).0, status::COMPLETED);
    assert_eq!(fake.read(b + 8, 1000), vec![0x5a; 1000]);
    t.submit(h, &[req(OP_READ, hp, 0, a, 1000)]).unwrap();
    assert_eq!(wait(&t, h, 2).0, status::COMPLETED);
    assert!(host_buf.iter().all(|&x| x == 0x11));
    assert!(host.notified.load(Ordering::SeqCst) >= 3);
    let st = t.stats().unwrap();
    assert_eq!(st.paths[0].0, 1);
    assert_eq!(st.paths[5].0, 1);
    assert_eq!(st.paths[6].0, 1);
}

#[test]
fn peer_fallbacks_and_striping() {
    let mut f = Fake::new(4);
    f.links = vec![(0, 1, vec![2, 3, 5]), (1, 0, vec![2])];
    let (fake, _h, t) = setup(
        f,
        r#"{"enable_port_striping": true, "port_striping_min_size": "8KiB"}"#,
    );
    let a = fake.alloc(0, 64 << 10, 0x21);
    let b = fake.alloc(1, 64 << 10, 0);
    t.add_buffer(a, 64 << 10, "cuda:0").unwrap();
    t.add_buffer(b, 64 << 10, "cuda:1").unwrap();
    let h = t.allocate(16, 0).unwrap();
    // small: tangMemcpyPeer
    t.submit(h, &[req(OP_WRITE, a, 0, b, 4096)]).unwrap();
    assert_eq!(wait(&t, h, 0).0, status::COMPLETED);
    // striped over three ports
    t.submit(h, &[req(OP_WRITE, a, 0, b, 60 << 10)]).unwrap();
    assert_eq!(wait(&t, h, 1), (status::COMPLETED, 60 << 10));
    assert_eq!(fake.read(b, 60 << 10), vec![0x21; 60 << 10]);
    assert_eq!(fake.calls("tangDeviceGetPeerPointer"), 3);
    // forced fallback to v2, then to the peer pointer
    fake.fail("tangMemcpyPeer");
    let c = fake.alloc(1, 4096, 0);
    t.add_buffer(c, 4096, "cuda:1").unwrap();
    t.submit(h, &[req(OP_READ, c, 0, a, 4096)]).unwrap();
    assert_eq!(wait(&t, h, 2).0, status::COMPLETED);
    assert_eq!(fake.read(c, 4096), vec![0x21; 4096]);
    fake.fail("tangMemcpyPeer_v2");
    let d = fake.alloc(0, 4096, 0x77);
    t.add_buffer(d, 4096, "cuda:0").unwrap();
    t.submit(h, &[req(OP_WRITE, d, 0, c, 4096)]).unwrap();
    assert_eq!(wait(&t, h, 3).0, status::COMPLETED);
    assert_eq!(fake.read(c, 4096), vec![0x77; 4096]);
    let st = t.stats().unwrap();
    assert_eq!(st.paths[1].0, 1, "peer");
    assert_eq!(st.paths[2].0, 1, "peer v2");
    assert_eq!(st.paths[3].0, 1, "peer pointer");
    assert_eq!(st.paths[4].0, 1, "striped");
    // every path broken: FAILED task with a message, submit still OK
    fake.fail("tangDeviceGetPeerPointer");
    t.submit(h, &[req(OP_WRITE, d, 0, c, 4096)]).unwrap();
    assert_eq!(wait(&t, h, 4).0, status::FAILED);
    let m = t.task_error(h, 4).unwrap().unwrap();
    assert!(
        m.contains("tangMemcpyPeer_v2") && m.contains("port 2"),
        "{m}"
    );
}

#[test]
fn ipc_remote_reads_writes_and_reregistration() {
    let (fake, host, t) = setup(Fake::new(2), "{}");
    // The "remote" buffer lives in the fake too; its handle is exported by registration.
    let remote = fake.alloc(1, 8192, 0x33);
    let shm = t.add_buffer(remote, 8192, "cuda:1").unwrap();
    assert_eq!(shm.len(), 128);
    host.remote.lock().unwrap().push(RemoteBuffer {
        base: 0x10_0000,
        length: 8192,
        location: "cuda:1".into(),
        shm_path: shm,
        machine_id: "m1".into(),
    });
    let local = fake.alloc(0, 8192, 0);
    t.add_buffer(local, 8192, "cuda:0").unwrap();
    let h = t.allocate(8, 0).unwrap();
    t.submit(h, &[req(OP_READ, local, 5, 0x10_0000 + 100, 4000)])
        .unwrap();
    assert_eq!(wait(&t, h, 0).0, status::COMPLETED);
    assert_eq!(fake.read(local, 4000), vec![0x33; 4000]);
    t.submit(h, &[req(OP_READ, local, 5, 0x10_0000, 10)])
        .unwrap();
    assert_eq!(wait(&t, h, 1).0, status::COMPLETED);
    assert_eq!(
        host.lookups.load(Ordering::SeqCst),
        1,
        "cached after the first miss"
    );
    assert_eq!(fake.calls("tangIpcOpenMemHandle"), 1);
    // Re-registration at the same remote address with a new handle.
    let remote2 = fake.alloc(1, 8192, 0x44);
    let shm2 = t.add_buffer(remote2, 8192, "cuda:1").unwrap();
    host.remote.lock().unwrap()[0].shm_path = shm2;
    assert_eq!(t.invalidate_segment(5).unwrap(), 1);
    t.submit(h, &[req(OP_READ, local, 5, 0x10_0000, 100)])
        .unwrap();
    assert_eq!(wait(&t, h, 2).0, status::COMPLETED);
    assert_eq!(fake.read(local, 100), vec![0x44; 100]);
    assert_eq!(fake.calls("tangIpcOpenMemHandle"), 2);
    assert_eq!(fake.calls("tangIpcCloseMemHandle"), 1, "old mapping closed");
    // Another machine: FAILED with a message.
    host.remote.lock().unwrap()[0].machine_id = "m2".into();
    t.invalidate_segment(5).unwrap();
    t.submit(h, &[req(OP_READ, local, 5, 0x10_0000, 100)])
        .unwrap();
    assert_eq!(wait(&t, h, 3).0, status::FAILED);
    assert!(t.task_error(h, 3).unwrap().unwrap().contains("machine"));
    // A host buffer is not reachable.
    {
        let mut r = host.remote.lock().unwrap();
        r[0].machine_id = "m1".into();
        r[0].location = "cpu:0".into();
    }
    t.submit(h, &[req(OP_READ, local, 5, 0x10_0000, 100)])
        .unwrap();
    assert_eq!(wait(&t, h, 4).0, status::FAILED);
    // Malformed shm_path (e.g. SHM's POSIX name): FAILED, after one refresh.
    {
        let mut r = host.remote.lock().unwrap();
        r[0].location = "cuda:1".into();
        r[0].shm_path = "/mooncake_shm_1".into();
    }
    let before = host.refreshes.load(Ordering::SeqCst);
    t.submit(h, &[req(OP_READ, local, 5, 0x10_0000, 100)])
        .unwrap();
    assert_eq!(wait(&t, h, 5).0, status::FAILED);
    assert_eq!(host.refreshes.load(Ordering::SeqCst), before + 1);
    t.uninstall().unwrap();
    assert_eq!(
        fake.calls("tangIpcCloseMemHandle"),
        fake.calls("tangIpcOpenMemHandle"),
        "every mapping closed at uninstall"
    );
}

#[test]
fn hot_path_runtime_calls() {
    let mut f = Fake::new(2);
    f.links = vec![(0, 1, vec![1])];
    let (fake, _h, t) = setup(f, "{}");
    let a = fake.alloc(0, 1 << 16, 1);
    let b = fake.alloc(0, 1 << 16, 2);
    let c = fake.alloc(1, 1 << 16, 3);
    for (x, l) in [(a, "cuda:0"), (b, "cuda:0"), (c, "cuda:1")] {
        t.add_buffer(x, 1 << 16, l).unwrap();
    }
    let h = t.allocate(256, 0).unwrap();
    let before = fake.total_calls();
    let reqs: Vec<Request> = (0..100)
        .map(|i| {
            if i % 2 == 0 {
                req(OP_WRITE, a + i * 64, 0, b + i * 64, 64)
            } else {
                req(OP_WRITE, a + i * 64, 0, c + i * 64, 64)
            }
        })
        .collect();
    t.submit(h, &reqs).unwrap();
    for i in 0..100 {
        assert_eq!(wait(&t, h, i).0, status::COMPLETED);
    }
    // One copy per request (alternating peer and same-device copies, so nothing merges),
    // plus asking once for the caller's device, which is already device 0.
    let calls = fake.total_calls() - before;
    assert_eq!(calls, 101, "runtime calls for 100 requests");
}

#[test]
fn contiguous_requests_merge_into_one_copy_and_each_task_reports_its_bytes() {
    let mut f = Fake::new(2);
    f.links = vec![(0, 1, vec![1])];
    let (fake, host, t) = setup(f, "{}");
    let a = fake.alloc(0, 1 << 20, 0);
    let b = fake.alloc(0, 1 << 20, 0);
    let c = fake.alloc(1, 1 << 20, 0);
    for (x, l) in [(a, "cuda:0"), (b, "cuda:0"), (c, "cuda:1")] {
        t.add_buffer(x, 1 << 20, l).unwrap();
    }
    let h = t.allocate(1000, 0).unwrap();
    // 64 contiguous 4 KiB writes on one device, then to a peer device: one copy each.
    let run = |dst: u64| -> Vec<Request> {
        (0..64)
            .map(|i| req(OP_WRITE, a + i * 4096, 0, dst + i * 4096, 4096))
            .collect()
    };
    let (m0, p0) = (fake.calls("tangMemcpy"), fake.calls("tangMemcpyPeer"));
    t.submit(h, &run(b)).unwrap();
    t.submit(h, &run(c)).unwrap();
    assert_eq!(fake.calls("tangMemcpy") - m0, 1, "64 same-device requests");
    assert_eq!(fake.calls("tangMemcpyPeer") - p0, 1, "64 peer requests");
    for i in 0..128 {
        assert_eq!(
            t.status(h, i).unwrap(),
            (status::COMPLETED, 4096),
            "task {i}"
        );
    }
    assert_eq!(host.notified.load(Ordering::SeqCst), 128);
    let st = t.stats().unwrap();
    assert_eq!(st.paths[0].0, 64, "counted per request");
    assert_eq!(st.paths[1], (64, 64 * 4096, 0));
    // Not merged: a gap on either side, another opcode, the end of a buffer.
    let m1 = fake.calls("tangMemcpy");
    t.submit(
        h,
        &[
            req(OP_WRITE, a, 0, b, 100),
            req(OP_WRITE, a + 100, 0, b + 101, 100),
            req(OP_WRITE, a + 200, 0, b + 201, 100),
            req(OP_READ, a + 300, 0, b + 301, 100),
            req(OP_WRITE, a + (1 << 20) - 100, 0, b, 100),
        ],
    )
    .unwrap();
    assert_eq!(fake.calls("tangMemcpy") - m1, 4);
    // The bytes each request moved are where they belong.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(1 << 16).collect();
    let host_buf = bytes.clone();
    t.add_buffer(host_buf.as_ptr() as u64, 1 << 16, "cpu:0")
        .unwrap();
    let reqs: Vec<Request> = (0..16)
        .map(|i| {
            req(
                OP_WRITE,
                host_buf.as_ptr() as u64 + i * 4096,
                0,
                c + i * 4096,
                4096,
            )
        })
        .collect();
    let hd = fake.calls("tangMemcpy");
    t.submit(h, &reqs).unwrap();
    assert_eq!(
        fake.calls("tangMemcpy") - hd,
        1,
        "host to device merged too"
    );
    assert_eq!(fake.read(c, 1 << 16), bytes);
}

#[test]
fn a_failed_merged_copy_is_retried_request_by_request() {
    let (fake, _h, t) = setup(Fake::new(1), "{}");
    let a = fake.alloc(0, 1 << 16, 5);
    let b = fake.alloc(0, 1 << 16, 0);
    t.add_buffer(a, 1 << 16, "cuda:0").unwrap();
    t.add_buffer(b, 1 << 16, "cuda:0").unwrap();
    let h = t.allocate(16, 0).unwrap();
    // Copies above 4 KiB fail: the merged one does, three of four requests alone do not.
    fake.fail_longer_than.store(4096, Ordering::Relaxed);
    let lens = [4096u64, 1000, 8192, 24];
    let mut off = 0;
    let reqs: Vec<Request> = lens
        .iter()
        .map(|&l| {
            let r = req(OP_WRITE, a + off, 0, b + off, l);
            off += l;
            r
        })
        .collect();
    t.submit(h, &reqs).unwrap();
    assert_eq!(t.status(h, 0).unwrap(), (status::COMPLETED, 4096));
    assert_eq!(t.status(h, 1).unwrap(), (status::COMPLETED, 1000));
    assert_eq!(t.status(h, 2).unwrap().0, status::FAILED);
    assert!(t.task_error(h, 2).unwrap().unwrap().contains("8192 bytes"));
    assert_eq!(t.status(h, 3).unwrap(), (status::COMPLETED, 24));
    assert_eq!(fake.read(b, 5096), vec![5; 5096]);
    assert_eq!(
        fake.read(b + 5096, 8192),
        vec![0; 8192],
        "the failed one wrote nothing"
    );
    assert_eq!(fake.read(b + 5096 + 8192, 24), vec![5; 24]);
}

#[test]
fn the_callers_device_is_asked_once_and_restored() {
    let mut f = Fake::new(3);
    f.links = vec![(0, 1, vec![1])];
    let (fake, _h, t) = setup(f, "{}");
    let a = fake.alloc(0, 1 << 16, 1);
    let b = fake.alloc(0, 1 << 16, 2);
    let c = fake.alloc(1, 1 << 16, 3);
    for (x, l) in [(a, "cuda:0"), (b, "cuda:0"), (c, "cuda:1")] {
        t.add_buffer(x, 1 << 16, l).unwrap();
    }
    let h = t.allocate(64, 0).unwrap();
    fake.set_device(2).unwrap();
    // Same-device copies need device 0 current: asked once, switched once, restored.
    let before = fake.total_calls();
    let (gets, sets) = (fake.calls("tangGetDevice"), fake.calls("tangSetDevice"));
    let reqs: Vec<Request> = (0..10)
        .map(|i| req(OP_WRITE, a + i * 128, 0, b + i * 256, 64))
        .collect();
    t.submit(h, &reqs).unwrap();
    assert_eq!(fake.current(), 2, "the caller's device is back");
    assert_eq!(fake.calls("tangGetDevice") - gets, 1);
    assert_eq!(fake.calls("tangSetDevice") - sets, 2, "to 0, back to 2");
    assert_eq!(fake.total_calls() - before, 10 + 3);
    // Peer copies name their devices: no device call at all.
    let before = fake.total_calls();
    let reqs: Vec<Request> = (0..10)
        .map(|i| req(OP_WRITE, a + i * 128, 0, c + i * 256, 64))
        .collect();
    t.submit(h, &reqs).unwrap();
    assert_eq!(
        fake.total_calls() - before,
        10,
        "one tangMemcpyPeer per request"
    );
    assert_eq!(fake.current(), 2);
    for i in 0..20 {
        assert_eq!(t.status(h, i).unwrap().0, status::COMPLETED);
    }
}

#[test]
fn peer_copies_learn_when_the_source_device_must_be_current() {
    let mut f = Fake::new(2);
    f.peer_needs_current = true;
    f.links = vec![(0, 1, vec![1])];
    let (fake, _h, t) = setup(f, "{}");
    let a = fake.alloc(0, 1 << 16, 1);
    let c = fake.alloc(1, 1 << 16, 0);
    t.add_buffer(a, 1 << 16, "cuda:0").unwrap();
    t.add_buffer(c, 1 << 16, "cuda:1").unwrap();
    let h = t.allocate(8, 0).unwrap();
    fake.set_device(1).unwrap();
    t.submit(h, &[req(OP_WRITE, a, 0, c, 64)]).unwrap();
    assert_eq!(t.status(h, 0).unwrap().0, status::COMPLETED);
    assert_eq!(
        fake.calls("tangMemcpyPeer"),
        2,
        "failed once, then with device 0 current"
    );
    assert_eq!(fake.current(), 1);
    let peer = fake.calls("tangMemcpyPeer");
    t.submit(h, &[req(OP_WRITE, a + 64, 0, c + 64, 64)])
        .unwrap();
    assert_eq!(t.status(h, 1).unwrap().0, status::COMPLETED);
    assert_eq!(
        fake.calls("tangMemcpyPeer") - peer,
        1,
        "no failed attempt any more"
    );
    assert_eq!(fake.read(c, 128), vec![1; 128]);
    assert_eq!(fake.current(), 1);
}

#[test]
fn striped_lanes_use_one_stream_per_port() {
    let mut f = Fake::new(2);
    f.links = vec![(0, 1, vec![2, 3, 5])];
    let (fake, _h, t) = setup(
        f,
        r#"{"enable_port_striping": true, "port_striping_min_size": "8KiB"}"#,
    );
    let a = fake.alloc(0, 1 << 16, 0x21);
    let b = fake.alloc(1, 1 << 16, 0);
    t.add_buffer(a, 1 << 16, "cuda:0").unwrap();
    t.add_buffer(b, 1 << 16, "cuda:1").unwrap();
    let h = t.allocate(4, 0).unwrap();
    t.submit(h, &[req(OP_WRITE, a, 0, b, 48 << 10)]).unwrap();
    assert_eq!(t.status(h, 0).unwrap(), (status::COMPLETED, 48 << 10));
    assert_eq!(fake.calls("tangStreamCreateWithFlags"), 3);
    assert_eq!(fake.calls("tangMemcpyAsync"), 3);
    assert_eq!(fake.calls("tangEventSynchronize"), 3);
    t.submit(h, &[req(OP_WRITE, a, 0, b, 48 << 10)]).unwrap();
    assert_eq!(
        fake.calls("tangStreamCreateWithFlags"),
        3,
        "streams are kept"
    );
    assert_eq!(
        fake.calls("tangEventCreateWithFlags"),
        3,
        "events are reused"
    );
    assert_eq!(fake.read(b, 48 << 10), vec![0x21; 48 << 10]);
}
