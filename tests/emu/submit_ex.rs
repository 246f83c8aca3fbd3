//! `sunrise_link_transfer_submit_ex` (ABI version 3): renewing a sub-batch with its first
//! submit, and saying which tasks completed, through the C ABI on the emulated runtime.

use super::lifecycle::status_rc;
use crate::support::table::*;
use sunrise_link::abi::*;

/// One `submit_ex` call: its code and what it wrote to `io`.
fn submit_ex(
    x: &Xport,
    h: u64,
    reqs: &[sunrise_link_request_t],
    flags: u32,
    max_size: u64,
) -> (i32, sunrise_link_submit_ex_t) {
    let mut io = sunrise_link_submit_ex_t {
        flags,
        reserved: 0,
        max_size,
        progress_token: 11,
        sub_batch: 0,
        first_task: 99,
        completed: 99,
    };
    let f = x.p.submit_ex.expect("the table has the submit_ex slot");
    let rc = unsafe { f(x.t, h, reqs.as_ptr(), reqs.len(), &mut io) };
    (rc, io)
}

#[test]
fn submit_ex_renews_and_says_which_tasks_completed() {
    scenario(
        "submit_ex_renews_and_says_which_tasks_completed",
        &[("TANG_EMU_DEVICES", "2")],
        || {
            let dev = Dev::open();
            let x = Xport::new("{}");
            let (a, b) = x.registered_pair(&dev, [0, 1], 1 << 16);
            let data = pattern(1 << 14, 5);
            dev.write(a, &data);
            let h = x.batch(4);
            // Completed, failed (not registered), completed: the run from the first stops at 1.
            let (rc, io) = submit_ex(
                &x,
                h,
                &[
                    req(WRITE, a, 0, b, 4096),
                    req(WRITE, a, 0, 0x10, 4096),
                    req(WRITE, a + 4096, 0, b + 4096, 4096),
                ],
                0,
                0,
            );
            assert_eq!(rc, 0, "{}", last_error());
            assert_eq!((io.sub_batch, io.first_task, io.completed), (h, 0, 1));
            assert_eq!(x.wait(h, 0), (COMPLETED, 4096));
            assert_eq!(x.wait(h, 1).0, FAILED);
            assert_eq!(x.wait(h, 2), (COMPLETED, 4096));
            assert_eq!(dev.read(b, 8192), data[..8192]);
            let (rc, io) = submit_ex(&x, h, &[req(READ, a + 8192, 0, b, 100)], 0, 0);
            assert_eq!(rc, 0);
            assert_eq!((io.sub_batch, io.first_task, io.completed), (h, 3, 1));
            assert_eq!(dev.read(a + 8192, 100), data[..100]);

            // Refused with nothing changed: more requests than the renewed size, a size out
            // of range, unknown flags, a non-zero reserved field, NULL io or requests.
            let four = [req(WRITE, a, 0, b, 1); 5];
            let (rc, io) = submit_ex(&x, h, &four, SUNRISE_LINK_SUBMIT_RENEW, 4);
            assert_eq!(rc, SUNRISE_LINK_TOO_MANY_REQUESTS, "{}", last_error());
            assert_eq!(io.sub_batch, h);
            let (rc, io) = submit_ex(&x, h, &four[..1], SUNRISE_LINK_SUBMIT_RENEW, 0);
            assert_eq!(rc, SUNRISE_LINK_INVALID_ARGUMENT);
            assert!(last_error().contains("out of range"), "{}", last_error());
            assert_eq!(io.sub_batch, h);
            assert_eq!(
                submit_ex(&x, h, &four[..1], 2, 4).0,
                SUNRISE_LINK_INVALID_ARGUMENT
            );
            assert!(last_error().contains("flags"), "{}", last_error());
            let f = x.p.submit_ex.unwrap();
            assert_eq!(
                unsafe { f(x.t, h, four.as_ptr(), 1, std::ptr::null_mut()) },
                SUNRISE_LINK_INVALID_ARGUMENT
            );
            let mut io = submit_ex(&x, h, &[], 0, 0).1;
            assert_eq!(
                (io.first_task, io.completed),
                (4, 0),
                "count 0: nothing added"
            );
            io.reserved = 1;
            assert_eq!(
                unsafe { f(x.t, h, four.as_ptr(), 1, &mut io) },
                SUNRISE_LINK_INVALID_ARGUMENT
            );
            io.reserved = 0;
            assert_eq!(
                unsafe { f(x.t, h, std::ptr::null(), 1, &mut io) },
                SUNRISE_LINK_INVALID_ARGUMENT
            );
            assert_eq!(x.wait(h, 0), (COMPLETED, 4096), "still the same sub-batch");
            assert_eq!(
                status_rc(&x, h, 4),
                SUNRISE_LINK_INVALID_ARGUMENT,
                "nothing added"
            );

            // Renewed: a new handle, the old one stale, tasks counted from 0 again.
            dev.write(b, &[0u8; 8192]);
            let (rc, io) = submit_ex(
                &x,
                h,
                &[
                    req(WRITE, a, 0, b, 4096),
                    req(WRITE, a + 4096, 0, b + 4096, 4096),
                ],
                SUNRISE_LINK_SUBMIT_RENEW,
                2,
            );
            assert_eq!(rc, 0, "{}", last_error());
            assert_ne!(io.sub_batch, h);
            assert_eq!((io.first_task, io.completed), (0, 2));
            assert_eq!(status_rc(&x, h, 0), SUNRISE_LINK_INVALID_ARGUMENT, "stale");
            let h2 = io.sub_batch;
            assert_eq!(x.wait(h2, 1), (COMPLETED, 4096));
            assert_eq!(dev.read(b, 8192), data[..8192]);
            let (rc, io) = submit_ex(&x, h, &four[..1], SUNRISE_LINK_SUBMIT_RENEW, 4);
            assert_eq!(
                rc, SUNRISE_LINK_INVALID_ARGUMENT,
                "a stale handle is not renewed"
            );
            assert_eq!(io.sub_batch, h);
            assert_eq!(x.free_batch(h2), 0);
        },
    );
}

#[test]
fn submit_ex_counts_no_copy_still_in_flight() {
    scenario(
        "submit_ex_counts_no_copy_still_in_flight",
        &[("TANG_EMU_DEVICES", "2")],
        || {
            // A slow link (1 MB/s): the 32 KiB copy is still on its stream when submit returns.
            Emu::open().configure("[link_model]\nbandwidth = 1e6\n");
            let dev = Dev::open();
            let x = Xport::new(r#"{"async_memcpy_threshold": "4KiB"}"#);
            // Same device: copies at or above the threshold go on the device's stream.
            let (a, b) = x.registered_pair(&dev, [0, 0], 1 << 16);
            let data = pattern(1 << 16, 6);
            dev.write(a, &data);
            let h = x.batch(4);
            // Synchronous (below the threshold), then asynchronous: only the first is known done.
            let (rc, io) = submit_ex(
                &x,
                h,
                &[
                    req(WRITE, a, 0, b, 100),
                    req(WRITE, a + 4096, 0, b + 4096, 1 << 15),
                ],
                0,
                0,
            );
            assert_eq!(rc, 0, "{}", last_error());
            assert_eq!((io.first_task, io.completed), (0, 1));
            assert_eq!(x.wait(h, 1), (COMPLETED, 1 << 15));
            assert_eq!(dev.read(b + 4096, 1 << 15), data[4096..4096 + (1 << 15)]);
            assert_eq!(dev.read(b, 100), data[..100]);
        },
    );
}
