//! Per-transport counters: requests, bytes and failures per copy path, plus a latency summary
//! (count, min, max, sum and a power-of-two histogram). All relaxed atomics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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

/// Live counters.
pub struct Stats {
    paths: [PathCounters; PATH_COUNT],
    ipc: AtomicU64,
    asyncs: AtomicU64,
    lat_count: AtomicU64,
    lat_min: AtomicU64,
    lat_max: AtomicU64,
    lat_sum: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
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

impl Stats {
    /// Records one finished request.
    pub fn record(&self, path: Path, bytes: u64, ok: bool, latency_ns: u64) {
        let p = &self.paths[path as usize];
        p.requests.fetch_add(1, Relaxed);
        if ok {
            p.bytes.fetch_add(bytes, Relaxed);
        } else {
            p.failures.fetch_add(1, Relaxed);
        }
        self.lat_count.fetch_add(1, Relaxed);
        self.lat_min.fetch_min(latency_ns, Relaxed);
        self.lat_max.fetch_max(latency_ns, Relaxed);
        self.lat_sum.fetch_add(latency_ns, Relaxed);
        let b = (63 - latency_ns.max(1).leading_zeros() as usize).min(LATENCY_BUCKETS - 1);
        self.buckets[b].fetch_add(1, Relaxed);
    }

    pub fn count_ipc(&self) {
        self.ipc.fetch_add(1, Relaxed);
    }

    pub fn count_async(&self) {
        self.asyncs.fetch_add(1, Relaxed);
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for (i, p) in self.paths.iter().enumerate() {
            s.paths[i] = (
                p.requests.load(Relaxed),
                p.bytes.load(Relaxed),
                p.failures.load(Relaxed),
            );
        }
        s.ipc_requests = self.ipc.load(Relaxed);
        s.async_requests = self.asyncs.load(Relaxed);
        s.latency_count = self.lat_count.load(Relaxed);
        let min = self.lat_min.load(Relaxed);
        s.latency_min_ns = if min == u64::MAX { 0 } else { min };
        s.latency_max_ns = self.lat_max.load(Relaxed);
        s.latency_sum_ns = self.lat_sum.load(Relaxed);
        for (i, b) in self.buckets.iter().enumerate() {
            s.latency_buckets[i] = b.load(Relaxed);
        }
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
        s.record(Path::Peer, 100, true, 1000);
        s.record(Path::Peer, 50, false, 3);
        s.record(Path::SameDevice, 7, true, 0);
        let n = s.snapshot();
        assert_eq!(n.paths[Path::Peer as usize], (2, 100, 1));
        assert_eq!(n.paths[Path::SameDevice as usize], (1, 7, 0));
        assert_eq!(n.latency_count, 3);
        assert_eq!(
            (n.latency_min_ns, n.latency_max_ns, n.latency_sum_ns),
            (0, 1000, 1003)
        );
        assert_eq!(n.latency_buckets[9], 1); // 1000 ns in [512, 1024)
        assert_eq!(n.latency_buckets[1], 1); // 3 ns
        assert_eq!(n.latency_buckets[0], 1);
    }
}
