//! The vendor runtime (Tang + PTML) as a Rust trait, and its libloading implementation.
//!
//! Addresses are plain integers (`u64`) on this side of the trait: the engine never
//! dereferences device memory, and the emulator's device memory is not host-accessible.

pub mod loader;
pub mod paths;

use std::fmt;

/// `tangErrorNotReady`: a query whose work is still running.
pub const TANG_ERROR_NOT_READY: i32 = 600;
/// `tangErrorNoDevice`.
pub const TANG_ERROR_NO_DEVICE: i32 = 100;
/// `PTML_ERROR_ALREADY_INITIALIZED`, treated as success.
pub const PTML_ERROR_ALREADY_INITIALIZED: i32 = 3;
/// `tangIpcMemLazyEnablePeerAccess`.
pub const IPC_LAZY_ENABLE_PEER_ACCESS: u32 = 1;
/// `tangStreamNonBlocking`.
pub const STREAM_NON_BLOCKING: u32 = 1;
/// `tangEventDisableTiming`.
pub const EVENT_DISABLE_TIMING: u32 = 2;
/// Size of `tangIpcMemHandle_t` in bytes.
pub const IPC_HANDLE_SIZE: usize = 64;
/// Ports per device in a PTML physical-topology query (C2C0_0 … C2C4_1).
pub const MAX_PHYTOPO_PORTS: usize = 10;

/// `tangMemcpyKind`, as the integer the runtime takes (4 is never passed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemcpyKind {
    HostToHost = 0,
    HostToDevice = 1,
    DeviceToHost = 2,
    DeviceToDevice = 3,
}

/// `tangMemoryType` value of device memory, as `tangPointerGetAttributes` reports it.
pub const MEMORY_TYPE_DEVICE: i32 = 2;

/// What `tangPointerGetAttributes` reports about one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointerInfo {
    pub memory_type: i32,
    pub device: i32,
    pub device_pointer: u64,
    pub host_pointer: u64,
}

/// One row of `ptmlPtlinkPhytopoDetect` (`ptPhyTopo_t`, 10 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhyTopo {
    pub local_chipid: u8,
    pub local_port: u8,
    pub remote_chipid: u8,
    pub remote_port: u8,
    pub link_status: u8,
    pub is_bif: u8,
    pub max_speed: u8,
    pub cur_speed: u8,
    pub max_bandwidth: u8,
    pub cur_bandwidth: u8,
}

/// The 64 opaque bytes of `tangIpcMemHandle_t`.
pub type IpcHandle = [u8; IPC_HANDLE_SIZE];

/// A stream or event handle, as an integer.
pub type Handle = u64;

/// A failed runtime call: which call, and the integer it returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtError {
    pub call: &'static str,
    pub code: i32,
    pub detail: String,
}

impl RtError {
    pub fn new(call: &'static str, code: i32) -> Self {
        RtError {
            call,
            code,
            detail: String::new(),
        }
    }
}

impl fmt::Display for RtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} returned {}", self.call, self.code)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// Result of one runtime call.
pub type RtResult<T> = Result<T, RtError>;

/// The Tang runtime and PTML as the engine sees them.
///
/// Every method is one runtime call (so call counts can be reasoned about), except where
/// noted. Methods that depend on the current device act on the calling OS thread's device;
/// the caller is responsible for setting it (§8 of the runtime reference).
pub trait Runtime: Send + Sync {
    /// `tangGetDeviceCount`; `tangErrorNoDevice` is reported as `Ok(0)`.
    fn device_count(&self) -> RtResult<i32>;
    fn get_device(&self) -> RtResult<i32>;
    fn set_device(&self, device: i32) -> RtResult<()>;
    /// `tangMalloc` on the current device.
    fn malloc(&self, size: usize) -> RtResult<u64>;
    fn free(&self, ptr: u64) -> RtResult<()>;
    fn memcpy(&self, dst: u64, src: u64, len: usize, kind: MemcpyKind) -> RtResult<()>;
    fn memcpy_async(
        &self,
        dst: u64,
        src: u64,
        len: usize,
        kind: MemcpyKind,
        stream: Handle,
    ) -> RtResult<()>;
    fn memcpy_peer(
        &self,
        dst: u64,
        dst_device: i32,
        src: u64,
        src_device: i32,
        len: usize,
    ) -> RtResult<()>;
    /// `tangMemcpyPeer_v2`; `None` when the library lacks the symbol.
    fn memcpy_peer_v2(
        &self,
        dst: u64,
        dst_device: i32,
        src: u64,
        src_device: i32,
        len: usize,
    ) -> Option<RtResult<()>>;
    /// `tangDeviceGetPeerPointer`; `None` when the library lacks the symbol.
    fn peer_pointer(&self, src_device: i32, port: i32, peer_addr: u64) -> Option<RtResult<u64>>;
    fn pointer_attributes(&self, ptr: u64) -> RtResult<PointerInfo>;
    fn ipc_get_handle(&self, ptr: u64) -> RtResult<IpcHandle>;
    /// `tangIpcOpenMemHandle` into the current device's context.
    fn ipc_open(&self, handle: &IpcHandle, flags: u32) -> RtResult<u64>;
    fn ipc_close(&self, ptr: u64) -> RtResult<()>;
    fn stream_create(&self, flags: u32) -> RtResult<Handle>;
    fn stream_destroy(&self, stream: Handle) -> RtResult<()>;
    /// `tangStreamSynchronize`; `None` when the runtime does not provide it.
    fn stream_synchronize(&self, _stream: Handle) -> Option<RtResult<()>> {
        None
    }
    /// `tangEventSynchronize`; `None` when the runtime does not provide it.
    fn event_synchronize(&self, _event: Handle) -> Option<RtResult<()>> {
        None
    }
    fn event_create(&self, flags: u32) -> RtResult<Handle>;
    fn event_record(&self, event: Handle, stream: Handle) -> RtResult<()>;
    /// `Ok(true)` done, `Ok(false)` still running (600), `Err` anything else.
    fn event_query(&self, event: Handle) -> RtResult<bool>;
    fn event_destroy(&self, event: Handle) -> RtResult<()>;
    fn pci_bus_id(&self, device: i32) -> RtResult<String>;
    /// `ptmlPtlinkPhytopoDetect` for one device.
    fn phytopo_detect(&self, device: i32) -> RtResult<Vec<PhyTopo>>;
    /// `tangRuntimeGetVersion`.
    fn runtime_version(&self) -> RtResult<i32>;
}

/// Encodes bytes as uppercase hex, two characters per byte, high nibble first (as TENT's
/// `serializeBinaryData`): an IPC handle becomes the 128 characters of `BufferDesc::shm_path`.
pub fn hex_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

/// Decodes an IPC handle from hex (either case). Anything but exactly 64 bytes is an error.
pub fn parse_ipc_handle(text: &str) -> Result<IpcHandle, String> {
    if text.len() != IPC_HANDLE_SIZE * 2 {
        return Err(format!(
            "shm_path is {} characters, expected {} hex characters of a Tang IPC handle",
            text.len(),
            IPC_HANDLE_SIZE * 2
        ));
    }
    let mut out = [0u8; IPC_HANDLE_SIZE];
    hex::decode_to_slice(text, &mut out).map_err(|e| match e {
        hex::FromHexError::InvalidHexCharacter { index, .. } => {
            format!("shm_path has a non-hex character at offset {index}")
        }
        other => format!("shm_path is not a Tang IPC handle: {other}"),
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_is_uppercase() {
        let mut h = [0u8; 64];
        for (i, b) in h.iter_mut().enumerate() {
            *b = (i * 37) as u8;
        }
        let s = hex_upper(&h);
        assert_eq!(s.len(), 128);
        assert!(s
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        assert_eq!(&s[..6], "00254A");
        assert_eq!(parse_ipc_handle(&s).unwrap(), h);
        assert_eq!(parse_ipc_handle(&s.to_lowercase()).unwrap(), h);
    }

    #[test]
    fn bad_handles_are_errors_not_panics() {
        assert!(parse_ipc_handle("").is_err());
        assert!(parse_ipc_handle("/dev/shm/mooncake_seg_1").is_err());
        assert!(parse_ipc_handle(&"G".repeat(128)).is_err());
        assert!(parse_ipc_handle(&"0".repeat(126)).is_err());
        assert!(parse_ipc_handle(&"é".repeat(64)).is_err());
        let mut odd = "0".repeat(128);
        odd.replace_range(77..78, "x");
        assert_eq!(
            parse_ipc_handle(&odd).unwrap_err(),
            "shm_path has a non-hex character at offset 77"
        );
    }
}
