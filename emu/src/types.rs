//! C types of the runtime ABI (see `include/tang_rt/driver_types.h`).

use std::ffi::c_void;
use std::os::raw::{c_int, c_ulong};

/// `enum tangError`: 4-byte unsigned on gcc; carried as a plain integer.
pub type tangError_t = u32;
pub type tangMemcpyKind = u32;

pub const MEMCPY_H2H: u32 = 0;
pub const MEMCPY_H2D: u32 = 1;
pub const MEMCPY_D2H: u32 = 2;
pub const MEMCPY_D2D: u32 = 3;

pub const MEM_TYPE_UNREGISTERED: u32 = 0;
pub const MEM_TYPE_HOST: u32 = 1;
pub const MEM_TYPE_DEVICE: u32 = 2;

pub const HOST_ALLOC_PORTABLE: u32 = 0x01;
pub const HOST_ALLOC_MAPPED: u32 = 0x02;
pub const HOST_ALLOC_WRITE_COMBINED: u32 = 0x04;
pub const HOST_ALLOC_MAP_DEVICE_MEMORY: u32 = 0x100;

pub const STREAM_NON_BLOCKING: u32 = 0x01;

pub const EVENT_BLOCKING_SYNC: u32 = 0x1;
pub const EVENT_DISABLE_TIMING: u32 = 0x2;
pub const EVENT_INTERPROCESS: u32 = 0x4;

#[repr(C)]
pub struct tangPointerAttributes {
    pub type_: u32,
    pub device: c_int,
    pub devicePointer: *mut c_void,
    pub hostPointer: *mut c_void,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct tangIpcMemHandle_t {
    pub reserved: [c_ulong; 8],
}

/// `tangDeviceProp`: packed, 540 bytes.
#[repr(C, packed)]
pub struct tangDeviceProp {
    pub name: [u8; 256],
    pub uuid: [u8; 16],
    pub totalGlobalMem: u64,
    /// The 65 `int` fields, in header order.
    pub ints: [c_int; 65],
}

const _: () = assert!(std::mem::size_of::<tangDeviceProp>() == 540);
const _: () = assert!(std::mem::size_of::<tangPointerAttributes>() == 24);
const _: () = assert!(std::mem::size_of::<tangIpcMemHandle_t>() == 64);

/// Index into `tangDeviceProp::ints` of selected fields.
pub mod prop {
    pub const WARP_SIZE: usize = 2;
    pub const MAX_THREADS_PER_BLOCK: usize = 4;
    pub const MULTI_PROCESSOR_COUNT: usize = (332 - 280) / 4;
    pub const ASYNC_ENGINE_COUNT: usize = (340 - 280) / 4;
    pub const CAN_MAP_HOST_MEMORY: usize = (280 + 4 * 35 - 280) / 4;
    pub const MAJOR: usize = (484 - 280) / 4;
    pub const MINOR: usize = (488 - 280) / 4;
    pub const PCI_BUS_ID: usize = (492 - 280) / 4;
    pub const PCI_DEVICE_ID: usize = (496 - 280) / 4;
    pub const PCI_DOMAIN_ID: usize = (500 - 280) / 4;
}
