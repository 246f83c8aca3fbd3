//! Per-transport counters: requests, bytes and failures per copy path, plus a latency summary
//! (count, min, max, sum and a power-of-two histogram). All relaxed atomics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Copy paths, in the order of the C ABI's `SUNRISE_LINK_PATH_*` indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    SameDevice = 0,
    Peer = 1,
    PeerV2 = 2,
    PeerPointer = 3,
    Striped = 4,
    HostToDevice = 5,
    DeviceToHost = 6,
    /// Requests that failed before a path was chosen.
    Unrouted = 7,
}

/// Number of paths.
pub const PATH_COUNT: usize = 8;
/// Histogram buckets: bucket i counts latencies in [2^i, 2^(i+1)) ns (bucket 0 also < 1 ns).
pub const LATENCY_BUCKETS: usize = 40;

#[derive(Default)]
struct PathCounters {
    requests: AtomicU64,
    bytes: AtomicU64,
    failures: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// (requests, bytes, failures) per path.
    pub paths: [(u64, u64, u64); PATH_COUNT],
    pub ipc_requests: u64,
    pub async_requests: u64,
    pub latency_count: u64,
    pub latency_min_ns: u64,
    pub latency_max_ns: u64,
    pub latency_sum_ns: u64,
    pub latency_buckets: [u64; LATENCY_BUCKETS],
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            paths: [(0, 0, 0); PATH_COUNT],
            ipc_requests: 0,
            async_requests: 0,
            latency_count: 0,
            latency_min_ns: 0,
            latency_max_ns: 0,
            latency_sum_ns: 0,
            latency_buckets: [0; LATENCY_BUCKETS],
        }
    }
}

/// One shard of the counters, on cache lines of its own.
#[repr(align(128))]
struct Shard {
    paths: [PathCounters; PATH_COUNT],
    ipc: AtomicU64,
    asyncs: AtomicU64,
    lat_count: AtomicU64,
    lat_min: AtomicU64,
    lat_max: AtomicU64,
    lat_sum: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            paths: Default::default(),
            ipc: AtomicU64::new(0),
            asyncs: AtomicU64::new(0),
            lat_count: AtomicU64::new(0),
            lat_min: AtomicU64::new(u64::MAX),
            lat_max: AtomicU64::new(0),
            lat_sum: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Shards of the counters: each of the first `SHARDS - 1` threads of the process that count
/// has a shard of its own, which only it writes (plain loads and stores, no locked
/// instruction on the copy path); later threads share the last shard with atomic adds.
const SHARDS: usize = 64;

/// Live counters.
pub struct Stats {
    shards: Box<[Shard]>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

/// This thread's shard, and whether it is this thread's alone.
fn shard_index() -> (usize, bool) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Relaxed).min(SHARDS - 1);
    }
    let i = INDEX.try_with(|i| *i).unwrap_or(SHARDS - 1);
    (i, i < SHARDS - 1)
}

/// Adds `v`: a plain load and store where only this thread writes `a`.
fn add(a: &AtomicU64, v: u64, mine: bool) {
    if mine {
        a.store(a.load(Relaxed).wrapping_add(v), Relaxed);
    } else {
        a.fetch_add(v, Relaxed);
    }
}

impl Stats {
    fn shard(&self) -> (&Shard, bool) {
        let (i, mine) = shard_index();
        (&self.shards[i], mine)
    }

    /// Records `n` finished requests of one path that moved `bytes` in all (failures when
    /// `!ok`); with a latency, also `n` samples of it in the latency summary.
    pub fn record_n(&self, path: Path, n: u64, bytes: u64, ok: bool, latency_ns: Option<u64>) {
        let (s, mine) = self.shard();
        let p = &s.paths[path as usize];
        add(&p.requests, n, mine);
        if ok {
            add(&p.bytes, bytes, mine);
        } else {
            add(&p.failures, n, mine);
        }
        let Some(latency_ns) = latency_ns else {
            return;
        };
        add(&s.lat_count, n, mine);
        if mine {
            if latency_ns < s.lat_min.load(Relaxed) {
                s.lat_min.store(latency_ns, Relaxed);
            }
            if latency_ns > s.lat_max.load(Relaxed) {
                s.lat_max.store(latency_ns, Relaxed);
            }
        } else {
            s.lat_min.fetch_min(latency_ns, Relaxed);
            s.lat_max.fetch_max(latency_ns, Relaxed);
        }
        add(&s.lat_sum, latency_ns.saturating_mul(n), mine);
        let b = (63 - latency_ns.max(1).leading_zeros() as usize).min(LATENCY_BUCKETS - 1);
        add(&s.buckets[b], n, mine);
    }

    /// Records one finished request.
    pub fn record(&self, path: Path, bytes: u64, ok: bool, latency_ns: Option<u64>) {
        self.record_n(path, 1, bytes, ok, latency_ns);
    }

    /// Counts `n` requests to a remote segment.
    pub fn count_ipc(&self, n: u64) {
        let (s, mine) = self.shard();
        add(&s.ipc, n, mine);
    }

    /// Counts `n` requests copied asynchronously.
    pub fn count_async(&self, n: u64) {
        let (s, mine) = self.shard();
        add(&s.asyncs, n, mine);
    }

    /// Sums the shards.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        let mut min = u64::MAX;
        for sh in self.shards.iter() {
            for (i, p) in sh.paths.iter().enumerate() {
                s.paths[i].0 += p.requests.load(Relaxed);
                s.paths[i].1 += p.bytes.load(Relaxed);
                s.paths[i].2 += p.failures.load(Relaxed);
            }
            s.ipc_requests += sh.ipc.load(Relaxed);
            s.async_requests += sh.asyncs.load(Relaxed);
            s.latency_count += sh.lat_count.load(Relaxed);
            min = min.min(sh.lat_min.load(Relaxed));
            s.latency_max_ns = s.latency_max_ns.max(sh.lat_max.load(Relaxed));
            s.latency_sum_ns += sh.lat_sum.load(Relaxed);
            for (i, b) in sh.buckets.iter().enumerate() {
                s.latency_buckets[i] += b.load(Relaxed);
            }
        }
        s.latency_min_ns = if min == u64::MAX { 0 } else { min };
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_snapshots() {
        let s = Stats::default();
        assert_eq!(s.snapshot().latency_min_ns, 0);
        s.record(Path::Peer, 100, true, Some(1000));
        s.record(Path::Peer, 50, false, Some(3));
        s.record(Path::SameDevice, 7, true, Some(0));
        s.record(Path::SameDevice, 1, true, None);
        let n = s.snapshot();
        assert_eq!(n.paths[Path::Peer as usize], (2, 100, 1));
        assert_eq!(
            n.paths[Path::SameDevice as usize],
            (2, 8, 0),
            "counted without a sample"
        );
        assert_eq!(n.latency_count, 3);
        assert_eq!(
            (n.latency_min_ns, n.latency_max_ns, n.latency_sum_ns),
            (0, 1000, 1003)
        );
        assert_eq!(n.latency_buckets[9], 1); // 1000 ns in [512, 1024)
        assert_eq!(n.latency_buckets[1], 1); // 3 ns
        assert_eq!(n.latency_buckets[0], 1);
        s.record_n(Path::Striped, 4, 400, true, Some(10));
        let m = std::thread::spawn(move || {
            s.record(Path::Striped, 1, false, Some(5000));
            s.snapshot()
        })
        .join()
        .unwrap();
        assert_eq!(
            m.paths[Path::Striped as usize],
            (5, 400, 1),
            "summed over threads"
        );
        assert_eq!(m.latency_count, 8);
        assert_eq!(m.latency_sum_ns, 1003 + 40 + 5000);
        assert_eq!(m.latency_max_ns, 5000);
    }
}
