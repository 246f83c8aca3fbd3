//! Engine tests on the in-process fake runtime ([`super::fake`]): copies on every path, and
//! the life of tasks, sub-batches and the transport.

mod compact;
mod copies;
mod lifecycle;

use crate::engine::fake::Fake;
use crate::engine::transport::*;
use crate::engine::{code, Error, Host, Request, Result};
use crate::engine::{status, RemoteBuffer, OP_READ, OP_WRITE};
use crate::tang::Runtime;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct TestHost {
    remote: Mutex<Vec<RemoteBuffer>>,
    lookups: AtomicU64,
    refreshes: AtomicU64,
    notified: AtomicU64,
    machine: Option<String>,
}

impl Host for TestHost {
    fn lookup_remote_buffer(
        &self,
        _s: u64,
        addr: u64,
        len: u64,
        refresh: bool,
    ) -> Result<RemoteBuffer> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if refresh {
            self.refreshes.fetch_add(1, Ordering::SeqCst);
        }
        self.remote
            .lock()
            .unwrap()
            .iter()
            .find(|b| b.base <= addr && addr + len <= b.base + b.length)
            .cloned()
            .ok_or_else(|| Error::new(code::NEEDS_REFRESH_CACHE, "not found"))
    }
    fn notify_progress(&self, _t: u64) {
        self.notified.fetch_add(1, Ordering::SeqCst);
    }
    fn local_machine_id(&self) -> Option<String> {
        self.machine.clone()
    }
}

fn setup(fake: Fake, cfg: &str) -> (Arc<Fake>, Arc<TestHost>, Transport) {
    let fake = Arc::new(fake);
    let host = Arc::new(TestHost {
        machine: Some("m1".into()),
        ..Default::default()
    });
    let t = Transport::new(host.clone(), RuntimeSource::Given(fake.clone()));
    t.install(Some(cfg)).unwrap();
    (fake, host, t)
}

fn wait(t: &Transport, h: u64, id: u64) -> (u8, u64) {
    for _ in 0..5000 {
        let s = t.status(h, id).unwrap();
        if s.0 != status::PENDING && s.0 != status::INITIAL {
            return s;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("task {id} did not finish");
}

fn req(op: u32, source: u64, target_id: u64, target_offset: u64, length: u64) -> Request {
    Request {
        opcode: op,
        source,
        target_id,
        target_offset,
        length,
    }
}
