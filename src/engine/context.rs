//! What one installed transport shares between the threads that call it.

use super::inflight::Async;
use super::outcome::Ends;
use super::registry::Registry;
use super::remote::RemoteCache;
use super::stats::Stats;
use super::topology::Topology;
use super::Host;
use crate::config::Config;
use crate::tang::Runtime;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The state of an installed transport.
pub struct Ctx {
    pub rt: Arc<dyn Runtime>,
    pub host: Arc<dyn Host>,
    pub cfg: Config,
    pub device_count: i32,
    pub registry: Registry,
    pub remote: RemoteCache,
    pub topo: Topology,
    pub stats: Stats,
    /// Streams, events and asynchronous copies in flight.
    pub gpu: Async,
    /// Set once `tangMemcpyPeer` was seen to need the source device current (it takes
    /// explicit device ids, and is first tried without touching the current device).
    pub peer_needs_current: AtomicBool,
}

impl Ctx {
    pub fn new(
        rt: Arc<dyn Runtime>,
        host: Arc<dyn Host>,
        cfg: Config,
        device_count: i32,
        topo: Topology,
    ) -> Ctx {
        Ctx {
            gpu: Async::new(rt.clone(), device_count),
            rt,
            host,
            cfg,
            device_count,
            registry: Registry::default(),
            remote: RemoteCache::default(),
            topo,
            stats: Stats::default(),
            peer_needs_current: AtomicBool::new(false),
        }
    }

    /// What ending a task needs.
    pub fn ends(&self) -> Ends<'_> {
        Ends {
            stats: &self.stats,
            host: self.host.as_ref(),
        }
    }
}
