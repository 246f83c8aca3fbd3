//! How a task ends: its status word, the counters, the host's progress notification, and for
//! a failure its message, also logged (at ERROR, rate-limited) so the reason reaches a user
//! who only sees "transfer failed" from the host.
//!
//! A task of a sub-batch the host has freed is not notified: the progress token may name an
//! object the host has destroyed. Notifications happen inside the host's own calls (submit,
//! status, free, uninstall), so none arrives after `sub_batch_free` has returned.

use super::batch::SubBatch;
use super::stats::{Path, Stats};
use super::Host;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

/// What a task ending needs: the counters and the host.
#[derive(Clone, Copy)]
pub struct Ends<'a> {
    pub stats: &'a Stats,
    pub host: &'a dyn Host,
}

impl Ends<'_> {
    /// Completes tasks `[head, head + n)`; each reports the bytes in `lens` (one per task).
    pub fn complete(
        &self,
        batch: &SubBatch,
        head: usize,
        lens: &[u64],
        path: Path,
        start: Option<Instant>,
    ) {
        let latency = start.map(|s| s.elapsed().as_nanos() as u64);
        let mut bytes = 0u64;
        for (k, &len) in lens.iter().enumerate() {
            batch.slot(head + k).complete(len);
            bytes = bytes.saturating_add(len);
        }
        self.stats
            .record_n(path, lens.len() as u64, bytes, true, latency);
        if !batch.is_freed() {
            for _ in lens {
                self.host.notify_progress(batch.progress_token);
            }
        }
    }

    /// Fails task `idx` with `msg`.
    pub fn fail(
        &self,
        batch: &SubBatch,
        idx: usize,
        path: Path,
        msg: String,
        start: Option<Instant>,
    ) {
        log_failure(idx, &msg);
        batch.slot(idx).fail(msg);
        self.stats
            .record(path, 0, false, start.map(|s| s.elapsed().as_nanos() as u64));
        if !batch.is_freed() {
            self.host.notify_progress(batch.progress_token);
        }
    }
}

/// Failures logged at ERROR per second; the rest are counted and summed up in the next
/// second's first line, so a storm of failures cannot flood the host's log.
const LOGGED_PER_SECOND: u64 = 10;

fn log_failure(idx: usize, msg: &str) {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    static SECOND: AtomicU64 = AtomicU64::new(0);
    static LOGGED: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let now = EPOCH.get_or_init(Instant::now).elapsed().as_secs() + 1;
    let seen = SECOND.load(Relaxed);
    if seen != now && SECOND.compare_exchange(seen, now, Relaxed, Relaxed).is_ok() {
        LOGGED.store(0, Relaxed);
        let n = SUPPRESSED.swap(0, Relaxed);
        if n > 0 {
            log::error!(
                "{n} more failed tasks were not logged (at most {LOGGED_PER_SECOND} a second)"
            );
        }
    }
    if LOGGED.fetch_add(1, Relaxed) < LOGGED_PER_SECOND {
        log::error!("task {idx} failed: {msg}");
    } else {
        SUPPRESSED.fetch_add(1, Relaxed);
    }
}
