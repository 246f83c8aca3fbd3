//! PTLink topology: `ptmlPtlinkPhytopoDetect` per device into a (device, peer) → ports map.
//!
//! Keys are Tang ordinals on both sides: the queried device index is the key's first half
//! (not the row's `local_chipid`), and `remote_chipid` is taken as the peer's ordinal, the
//! same identity upstream assumes (chip id = PTML index = runtime ordinal).

use crate::tang::Runtime;
use std::collections::HashMap;

/// Active local ports from each device to each peer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Topology {
    ports: HashMap<(i32, i32), Vec<i32>>,
}

impl Topology {
    /// Detects the topology of `device_count` devices. A device whose detection fails is
    /// skipped with a warning.
    pub fn detect(rt: &dyn Runtime, device_count: i32) -> Topology {
        let mut t = Topology::default();
        for dev in 0..device_count {
            match rt.phytopo_detect(dev) {
                Ok(rows) => {
                    for r in rows.iter().filter(|r| r.link_status != 0) {
                        let ports = t.ports.entry((dev, r.remote_chipid as i32)).or_default();
                        let port = r.local_port as i32;
                        if !ports.contains(&port) {
                            ports.push(port);
                        }
                    }
                }
                Err(e) => log::warn!("topology: device {dev} skipped: {e}"),
            }
        }
        t
    }

    /// Active ports from `dev` to `peer` (empty when not linked).
    pub fn ports(&self, dev: i32, peer: i32) -> &[i32] {
        self.ports
            .get(&(dev, peer))
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    /// Number of linked (device, peer) pairs.
    pub fn links(&self) -> usize {
        self.ports.len()
    }
}
