//! The host as the engine sees it: the callbacks a host gave to `sunrise_link_transport_create`,
//! behind the engine's `Host` trait.

use super::args;
use super::types::{
    sunrise_link_host_callbacks_t, sunrise_link_log_fn, sunrise_link_lookup_remote_buffer_fn,
    sunrise_link_notify_progress_fn, sunrise_link_remote_buffer_t,
};
use crate::engine::{Error, Host, RemoteBuffer};
use std::ffi::{c_char, c_void};

/// A copy of the host's callbacks, taken at create.
pub(crate) struct CHost {
    user_data: usize,
    lookup: sunrise_link_lookup_remote_buffer_fn,
    notify: sunrise_link_notify_progress_fn,
    machine_id: Option<String>,
    /// The optional log sink, installed by `create` once the transport exists.
    pub(crate) log: sunrise_link_log_fn,
}

impl CHost {
    /// Reads the versioned callbacks struct: `abi_version` 0 or a `struct_size` below 8 is
    /// INVALID_ARGUMENT; fields past `struct_size` count as NULL.
    ///
    /// # Safety
    /// `p` is NULL or points to at least `p->struct_size` readable bytes (and at least 8);
    /// `local_machine_id`, if inside that size, is NULL or a NUL-terminated string.
    pub(crate) unsafe fn read(p: *const sunrise_link_host_callbacks_t) -> Result<CHost, Error> {
        let none = sunrise_link_host_callbacks_t {
            abi_version: 0,
            struct_size: 0,
            user_data: std::ptr::null_mut(),
            lookup_remote_buffer: None,
            log: None,
            notify_progress: None,
            local_machine_id: std::ptr::null(),
        };
        // SAFETY: forwarded contract; every field is a pointer, an Option of a fn pointer or an
        // integer (a NULL-or-valid pattern as the host wrote it).
        let cb = unsafe { args::read_versioned(p, none, "callbacks") }?;
        if cb.abi_version == 0 {
            return Err(Error::invalid(
                "callbacks->abi_version is 0; set it to SUNRISE_LINK_ABI_VERSION",
            ));
        }
        // SAFETY: NULL, or the host's NUL-terminated string (contract).
        let machine_id = unsafe { args::opt_str(cb.local_machine_id, "local_machine_id") }?
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        Ok(CHost {
            user_data: cb.user_data as usize,
            lookup: cb.lookup_remote_buffer,
            notify: cb.notify_progress,
            machine_id,
            log: cb.log,
        })
    }

    pub(crate) fn user_data(&self) -> *mut c_void {
        self.user_data as *mut c_void
    }
}

/// A fixed-size string field of `sunrise_link_remote_buffer_t`.
fn field_str(a: &[c_char], what: &str) -> Result<String, Error> {
    let bytes: Vec<u8> = a.iter().map(|&c| c as u8).collect();
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| Error::invalid(format!("remote buffer {what} is not NUL-terminated")))?;
    String::from_utf8(bytes[..end].to_vec())
        .map_err(|_| Error::invalid(format!("remote buffer {what} is not UTF-8")))
}

impl Host for CHost {
    fn lookup_remote_buffer(
        &self,
        segment: u64,
        addr: u64,
        length: u64,
        refresh: bool,
    ) -> crate::engine::Result<RemoteBuffer> {
        let Some(f) = self.lookup else {
            return Err(Error::invalid(
                "the host gave no lookup_remote_buffer callback; remote segments are unreachable",
            ));
        };
        let mut out = sunrise_link_remote_buffer_t {
            base: 0,
            length: 0,
            location: [0; super::consts::SUNRISE_LINK_LOCATION_LEN],
            shm_path: [0; super::consts::SUNRISE_LINK_SHM_PATH_LEN],
            machine_id: [0; super::consts::SUNRISE_LINK_MACHINE_ID_LEN],
        };
        // SAFETY: the host's callback (valid until destroy, which cannot run while a copy does),
        // with its own user_data and our own writable out struct.
        let rc = unsafe {
            f(
                self.user_data(),
                segment,
                addr,
                length,
                refresh as i32,
                &mut out,
            )
        };
        if rc != 0 {
            return Err(Error::new(
                rc,
                format!("host lookup_remote_buffer returned {rc}"),
            ));
        }
        Ok(RemoteBuffer {
            base: out.base,
            length: out.length,
            location: field_str(&out.location, "location")?,
            shm_path: field_str(&out.shm_path, "shm_path")?,
            machine_id: field_str(&out.machine_id, "machine_id")?,
        })
    }

    fn notify_progress(&self, token: u64) {
        if let Some(f) = self.notify {
            // SAFETY: the host's callback with its own user_data, valid until destroy.
            unsafe { f(self.user_data(), token) };
        }
    }

    fn local_machine_id(&self) -> Option<String> {
        self.machine_id.clone()
    }
}
