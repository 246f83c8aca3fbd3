//! An in-process fake runtime for engine unit tests. Device memory is host memory behind fake
//! addresses; IPC and peer mappings are aliases of them. The fake checks the current-device
//! rules the engine promises (copies run with the copying device current) and counts calls.

use crate::tang::*;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

const DEV_BASE: u64 = 0x7e00_0000_0000;
const ALIAS_BASE: u64 = 0x7c00_0000_0000;

thread_local! {
    static CURRENT: Cell<i32> = const { Cell::new(0) };
}

#[derive(Default)]
struct State {
    /// device address → (device, bytes)
    allocs: BTreeMap<u64, (i32, Vec<u8>)>,
    /// alias base → (target address, len)
    aliases: BTreeMap<u64, (u64, u64)>,
    next: HashMap<i32, u64>,
    next_alias: u64,
    calls: HashMap<&'static str, u64>,
    fail: HashSet<&'static str>,
    events: u64,
    streams: u64,
}

pub struct Fake {
    pub devices: i32,
    pub has_v2: bool,
    pub has_peer_pointer: bool,
    /// (device, peer) → ports
    pub links: Vec<(i32, i32, Vec<u8>)>,
    /// `tangMemcpyPeer` fails unless the source device is current.
    pub peer_needs_current: bool,
    /// Synchronous copies longer than this fail (0: no limit).
    pub fail_longer_than: AtomicU64,
    /// A synchronous copy of exactly this many bytes panics (0: never).
    pub panic_at_len: AtomicU64,
    st: Mutex<State>,
    /// While set, events report "not ready" and waits on them block (bounded).
    hold: (Mutex<bool>, Condvar),
}

impl Fake {
    pub fn new(devices: i32) -> Fake {
        Fake {
            devices,
            has_v2: true,
            has_peer_pointer: true,
            links: Vec::new(),
            peer_needs_current: false,
            fail_longer_than: AtomicU64::new(0),
            panic_at_len: AtomicU64::new(0),
            st: Mutex::new(State::default()),
            hold: (Mutex::new(false), Condvar::new()),
        }
    }

    /// Holds (or releases) every event: queries say "not ready" meanwhile.
    pub fn hold_events(&self, hold: bool) {
        *self.hold.0.lock().unwrap() = hold;
        self.hold.1.notify_all();
    }

    fn held(&self) -> bool {
        *self.hold.0.lock().unwrap()
    }

    fn wait_release(&self) {
        let g = self.hold.0.lock().unwrap();
        let _ = self
            .hold
            .1
            .wait_timeout_while(g, Duration::from_secs(10), |h| *h)
            .unwrap();
    }

    /// The current device of the calling thread.
    pub fn current(&self) -> i32 {
        CURRENT.with(|c| c.get())
    }

    /// Checks a synchronous copy of `len` bytes against the failure and panic settings.
    fn check_len(&self, call: &'static str, len: usize) -> RtResult<()> {
        let p = self.panic_at_len.load(Ordering::Relaxed);
        if p != 0 && p == len as u64 {
            panic!("fake runtime panics in {call} of {len} bytes");
        }
        let f = self.fail_longer_than.load(Ordering::Relaxed);
        if f != 0 && len as u64 > f {
            return Err(RtError::new(call, 1));
        }
        Ok(())
    }

    pub fn fail(&self, call: &'static str) {
        self.st.lock().unwrap().fail.insert(call);
    }

    pub fn calls(&self, call: &str) -> u64 {
        *self.st.lock().unwrap().calls.get(call).unwrap_or(&0)
    }

    /// Every call made so far, by name.
    pub fn call_counts(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.st
            .lock()
            .unwrap()
            .calls
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    pub fn total_calls(&self) -> u64 {
        self.st.lock().unwrap().calls.values().sum()
    }

    /// Allocates device memory directly (no call counted) filled with `fill`.
    pub fn alloc(&self, dev: i32, len: usize, fill: u8) -> u64 {
        let mut s = self.st.lock().unwrap();
        let n = s.next.entry(dev).or_insert(0);
        let addr = DEV_BASE + ((dev as u64) << 36) + *n;
        *n += (len as u64 + 4095) & !4095;
        s.allocs.insert(addr, (dev, vec![fill; len]));
        addr
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let s = self.st.lock().unwrap();
        let (a, off, _) = resolve(&s, addr).expect("device address");
        s.allocs[&a].1[off..off + len].to_vec()
    }

    fn enter(&self, call: &'static str) -> Result<std::sync::MutexGuard<'_, State>, RtError> {
        let mut s = self.st.lock().unwrap();
        *s.calls.entry(call).or_insert(0) += 1;
        if s.fail.contains(call) {
            return Err(RtError::new(call, 999));
        }
        Ok(s)
    }
}

/// Resolves a device (or alias) address to (alloc base, offset, device).
fn resolve(s: &State, addr: u64) -> Option<(u64, usize, i32)> {
    let mut a = addr;
    if let Some((&b, &(t, l))) = s.aliases.range(..=addr).next_back() {
        if addr < b + l {
            a = t + (addr - b);
        }
    }
    let (&b, (dev, v)) = s.allocs.range(..=a).next_back()?;
    ((a - b) < v.len() as u64).then_some((b, (a - b) as usize, *dev))
}

fn copy(s: &mut State, dst: u64, src: u64, len: usize, cur: Option<i32>) -> RtResult<()> {
    let rs = resolve(s, src);
    let rd = resolve(s, dst);
    if let Some(c) = cur {
        let devs: Vec<i32> = [rs, rd].iter().flatten().map(|r| r.2).collect();
        if !devs.is_empty() && !devs.contains(&c) {
            return Err(RtError {
                call: "tangMemcpy",
                code: 1,
                detail: format!("current device {c} is neither side {devs:?}"),
            });
        }
    }
    let data: Vec<u8> = match rs {
        Some((b, off, _)) => {
            let v = &s.allocs[&b].1;
            if off + len > v.len() {
                return Err(RtError::new("tangMemcpy", 1));
            }
            v[off..off + len].to_vec()
        }
        // SAFETY: tests pass valid host buffers of at least `len` bytes.
        None => unsafe { std::slice::from_raw_parts(src as usize as *const u8, len).to_vec() },
    };
    match rd {
        Some((b, off, _)) => {
            let v = &mut s.allocs.get_mut(&b).unwrap().1;
            if off + len > v.len() {
                return Err(RtError::new("tangMemcpy", 1));
            }
            v[off..off + len].copy_from_slice(&data);
        }
        // SAFETY: as above.
        None => unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), dst as usize as *mut u8, len)
        },
    }
    Ok(())
}

impl Runtime for Fake {
    fn device_count(&self) -> RtResult<i32> {
        drop(self.enter("tangGetDeviceCount")?);
        Ok(self.devices)
    }
    fn get_device(&self) -> RtResult<i32> {
        drop(self.enter("tangGetDevice")?);
        Ok(CURRENT.with(|c| c.get()))
    }
    fn set_device(&self, device: i32) -> RtResult<()> {
        drop(self.enter("tangSetDevice")?);
        if device < 0 || device >= self.devices {
            return Err(RtError::new("tangSetDevice", 101));
        }
        CURRENT.with(|c| c.set(device));
        Ok(())
    }
    fn malloc(&self, size: usize) -> RtResult<u64> {
        drop(self.enter("tangMalloc")?);
        Ok(self.alloc(CURRENT.with(|c| c.get()), size, 0))
    }
    fn free(&self, ptr: u64) -> RtResult<()> {
        let mut s = self.enter("tangFree")?;
        s.allocs
            .remove(&ptr)
            .map(|_| ())
            .ok_or(RtError::new("tangFree", 17))
    }
    fn memcpy(&self, dst: u64, src: u64, len: usize, _kind: MemcpyKind) -> RtResult<()> {
        self.check_len("tangMemcpy", len)?;
        let mut s = self.enter("tangMemcpy")?;
        copy(&mut s, dst, src, len, Some(CURRENT.with(|c| c.get())))
    }
    fn memcpy_async(
        &self,
        dst: u64,
        src: u64,
        len: usize,
        _kind: MemcpyKind,
        _stream: Handle,
    ) -> RtResult<()> {
        let mut s = self.enter("tangMemcpyAsync")?;
        copy(&mut s, dst, src, len, Some(CURRENT.with(|c| c.get())))
    }
    fn memcpy_peer(&self, dst: u64, _dd: i32, src: u64, sd: i32, len: usize) -> RtResult<()> {
        self.check_len("tangMemcpyPeer", len)?;
        let mut s = self.enter("tangMemcpyPeer")?;
        if self.peer_needs_current && CURRENT.with(|c| c.get()) != sd {
            return Err(RtError::new("tangMemcpyPeer", 101));
        }
        copy(&mut s, dst, src, len, None)
    }
    fn memcpy_peer_v2(
        &self,
        dst: u64,
        _dd: i32,
        src: u64,
        _sd: i32,
        len: usize,
    ) -> Option<RtResult<()>> {
        if !self.has_v2 {
            return None;
        }
        Some(
            self.enter("tangMemcpyPeer_v2")
                .and_then(|mut s| copy(&mut s, dst, src, len, None)),
        )
    }
    fn peer_pointer(&self, src_device: i32, _port: i32, peer_addr: u64) -> Option<RtResult<u64>> {
        if !self.has_peer_pointer {
            return None;
        }
        let _ = src_device;
        Some(self.enter("tangDeviceGetPeerPointer").map(|mut s| {
            let alias = ALIAS_BASE + s.next_alias;
            s.next_alias += 1 << 32;
            s.aliases.insert(alias, (peer_addr, 1 << 32));
            alias
        }))
    }
    fn pointer_attributes(&self, ptr: u64) -> RtResult<PointerInfo> {
        let s = self.enter("tangPointerGetAttributes")?;
        match resolve(&s, ptr) {
            Some((_, _, dev)) => Ok(PointerInfo {
                memory_type: MEMORY_TYPE_DEVICE,
                device: dev,
                device_pointer: ptr,
                host_pointer: 0,
            }),
            None => Err(RtError::new("tangPointerGetAttributes", 1)),
        }
    }
    fn ipc_get_handle(&self, ptr: u64) -> RtResult<IpcHandle> {
        let s = self.enter("tangIpcGetMemHandle")?;
        // Like the real runtime: the handle names the whole allocation.
        let (b, _, _) = resolve(&s, ptr).ok_or(RtError::new("tangIpcGetMemHandle", 1))?;
        let mut h = [0u8; 64];
        h[..8].copy_from_slice(&b.to_le_bytes());
        h[16] = 0xA5;
        Ok(h)
    }
    fn ipc_open(&self, handle: &IpcHandle, _flags: u32) -> RtResult<u64> {
        let mut s = self.enter("tangIpcOpenMemHandle")?;
        let b = u64::from_le_bytes(handle[..8].try_into().unwrap());
        let len = s
            .allocs
            .get(&b)
            .ok_or(RtError::new("tangIpcOpenMemHandle", 400))?
            .1
            .len();
        let alias = ALIAS_BASE + s.next_alias;
        s.next_alias += 1 << 32;
        s.aliases.insert(alias, (b, len as u64));
        Ok(alias)
    }
    fn ipc_close(&self, ptr: u64) -> RtResult<()> {
        let mut s = self.enter("tangIpcCloseMemHandle")?;
        s.aliases
            .remove(&ptr)
            .map(|_| ())
            .ok_or(RtError::new("tangIpcCloseMemHandle", 1))
    }
    fn stream_create(&self, _flags: u32) -> RtResult<Handle> {
        let mut s = self.enter("tangStreamCreateWithFlags")?;
        s.streams += 1;
        Ok(0x5000 + s.streams)
    }
    fn stream_synchronize(&self, _stream: Handle) -> Option<RtResult<()>> {
        Some(self.enter("tangStreamSynchronize").map(|s| {
            drop(s);
            self.wait_release();
        }))
    }
    fn event_synchronize(&self, _event: Handle) -> Option<RtResult<()>> {
        Some(self.enter("tangEventSynchronize").map(|s| {
            drop(s);
            self.wait_release();
        }))
    }
    fn stream_destroy(&self, _stream: Handle) -> RtResult<()> {
        self.enter("tangStreamDestroy").map(|_| ())
    }
    fn event_create(&self, _flags: u32) -> RtResult<Handle> {
        let mut s = self.enter("tangEventCreateWithFlags")?;
        s.events += 1;
        Ok(0x6000 + s.events)
    }
    fn event_record(&self, _event: Handle, _stream: Handle) -> RtResult<()> {
        self.enter("tangEventRecord").map(|_| ())
    }
    fn event_query(&self, _event: Handle) -> RtResult<bool> {
        drop(self.enter("tangEventQuery")?);
        Ok(!self.held())
    }
    fn event_destroy(&self, _event: Handle) -> RtResult<()> {
        self.enter("tangEventDestroy").map(|_| ())
    }
    fn pci_bus_id(&self, device: i32) -> RtResult<String> {
        drop(self.enter("tangDeviceGetPCIBusId")?);
        Ok(format!("0000:{:02x}:00.0", device + 1))
    }
    fn phytopo_detect(&self, device: i32) -> RtResult<Vec<PhyTopo>> {
        drop(self.enter("ptmlPtlinkPhytopoDetect")?);
        let mut rows = Vec::new();
        for (d, peer, ports) in &self.links {
            if *d == device {
                for p in ports {
                    rows.push(PhyTopo {
                        local_chipid: *d as u8,
                        local_port: *p,
                        remote_chipid: *peer as u8,
                        link_status: 1,
                        ..Default::default()
                    });
                }
            }
        }
        Ok(rows)
    }
    fn runtime_version(&self) -> RtResult<i32> {
        drop(self.enter("tangRuntimeGetVersion")?);
        Ok(130)
    }
}
