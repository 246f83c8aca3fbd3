//! The submit exports: `sunrise_link_transfer_submit`, and `sunrise_link_transfer_submit_ex`
//! (ABI 3), which may renew the sub-batch first and says which new tasks completed.

use super::exports::TRANSPORT;
use crate::abi::args;
use crate::abi::boundary::export;
use crate::abi::consts::*;
use crate::abi::types::*;
use crate::engine::{Error, Request, Submitted, Transport};

/// Appends one task per request (ids `size()` ... `size() + count - 1`) and carries them out
/// on the calling thread: synchronous copies (below `async_memcpy_threshold`, the default) are
/// terminal when this returns; asynchronous ones are on the transport's streams and end when
/// a status query finds their event complete. Consecutive requests contiguous on both sides
/// are copied with one runtime call. Fails only for a bad handle, an uninstalled transport or
/// when the tasks do not fit (TooManyRequests, nothing appended); a request that cannot be
/// carried out becomes a FAILED task. Once this returns, each new task reads PENDING or a
/// terminal state.
///
/// # Safety
/// `t` is a live handle; `requests` points to `count` requests (may be NULL if `count` is 0).
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_transfer_submit(
    t: *mut sunrise_link_transport_t,
    sub_batch: u64,
    requests: *const sunrise_link_request_t,
    count: usize,
) -> i32 {
    export!({
        // SAFETY: a live handle (contract above).
        let t = unsafe { TRANSPORT.borrow(t) }?;
        // SAFETY: `count` readable requests at `requests` (contract above).
        unsafe { submit_requests(t, sub_batch, requests, count) }.map(|_| ())
    })
}

/// `sunrise_link_transfer_submit` that also says how it went, and optionally renews the
/// sub-batch first (ABI version 3). With `SUNRISE_LINK_SUBMIT_RENEW` in `io->flags` the
/// sub-batch is first renewed exactly as by `sunrise_link_sub_batch_recycle(sub_batch,
/// io->max_size, io->progress_token)`; a renewal that cannot be done (handle not live, size
/// out of range, more requests than `io->max_size`, transport not installed) is refused with
/// nothing changed. On return `io->sub_batch` names the live handle (also when the submit
/// after a renewal failed), and on success `io->first_task` and `io->completed` say which
/// tasks were appended and how many of them, from the first on, completed with their full
/// length: a host may answer their status without asking.
///
/// # Safety
/// `t` is a live handle; `requests` points to `count` requests (may be NULL if `count` is 0);
/// `io` points to a readable and writable `sunrise_link_submit_ex_t`.
#[no_mangle]
pub unsafe extern "C" fn sunrise_link_transfer_submit_ex(
    t: *mut sunrise_link_transport_t,
    sub_batch: u64,
    requests: *const sunrise_link_request_t,
    count: usize,
    io: *mut sunrise_link_submit_ex_t,
) -> i32 {
    export!({
        // SAFETY: a live handle and a writable `io` (contract above).
        let (t, io) = unsafe { (TRANSPORT.borrow(t)?, args::out(io, "io")?) };
        if io.flags & !SUNRISE_LINK_SUBMIT_RENEW != 0 || io.reserved != 0 {
            return Err(Error::invalid(format!(
                "io->flags {:#x} / reserved {:#x}: only SUNRISE_LINK_SUBMIT_RENEW is defined",
                io.flags, io.reserved
            )));
        }
        if count > 0 {
            args::non_null(requests, "requests")?;
        }
        io.sub_batch = sub_batch;
        let done = if io.flags & SUNRISE_LINK_SUBMIT_RENEW != 0 {
            let (max_size, token) = (io.max_size, io.progress_token);
            let renewed = std::cell::Cell::new(sub_batch);
            let r = t.renew_and_submit(
                sub_batch,
                max_size,
                token,
                count,
                // SAFETY: `count` readable requests (contract above; NULL checked), `i < count`.
                |i| unsafe { request_at(requests, i) },
                |h| renewed.set(h),
            );
            io.sub_batch = renewed.get();
            r?
        } else {
            // SAFETY: `count` readable requests at `requests` (contract above).
            unsafe { submit_requests(t, sub_batch, requests, count) }?
        };
        io.first_task = done.first;
        io.completed = done.completed;
        Ok(())
    })
}

/// Request `i` of a C request array.
///
/// # Safety
/// `requests` points to more than `i` readable requests.
unsafe fn request_at(requests: *const sunrise_link_request_t, i: usize) -> Request {
    // SAFETY: the caller's contract.
    let r = unsafe { &*requests.add(i) };
    Request {
        opcode: r.opcode,
        source: r.source as usize as u64,
        target_id: r.target_id,
        target_offset: r.target_offset,
        length: r.length,
    }
}

/// The submit of both submit exports.
///
/// # Safety
/// `requests` points to `count` readable requests (may be NULL if `count` is 0).
unsafe fn submit_requests(
    t: &Transport,
    sub_batch: u64,
    requests: *const sunrise_link_request_t,
    count: usize,
) -> Result<Submitted, Error> {
    if count == 0 {
        let size = t.size(sub_batch)?;
        return Ok(Submitted {
            first: size,
            completed: 0,
        });
    }
    args::non_null(requests, "requests")?;
    // The tasks are reserved before the array is read: a hostile count must not make us read
    // past the caller's array. Each request is read when its turn comes.
    t.submit_with(sub_batch, count, |i| {
        // SAFETY: `count` readable requests (contract above; NULL checked), and `i < count`
        // (the engine asks for requests `0..count` only).
        unsafe { request_at(requests, i) }
    })
}
