//! The calling thread's current device, handled once per call into the library.
//!
//! The Tang runtime keeps one current device per OS thread, and several calls act on it
//! (`tangMemcpy`, stream and event creation, IPC open). The library runs on the host's
//! threads, so it must leave the host's choice as it found it. A [`DeviceGuard`] lives for one
//! call into the library (one submit, one registration): it asks the runtime for the current
//! device only when a copy first needs a particular one, switches only when needed, and
//! restores the caller's device when dropped. A submit whose copies need no current device
//! (peer copies take explicit device ids) makes no device call at all.

use super::{Error, Result};
use crate::tang::{RtResult, Runtime};

/// Lazy current-device handling for one call into the library.
pub struct DeviceGuard<'r> {
    rt: &'r dyn Runtime,
    /// The caller's device, once asked (`Some(-1)` when the runtime could not say).
    saved: Option<i32>,
    /// The device this guard believes current (−1 = unknown).
    cur: i32,
}

impl<'r> DeviceGuard<'r> {
    /// A guard that has asked nothing yet.
    pub fn new(rt: &'r dyn Runtime) -> Self {
        DeviceGuard {
            rt,
            saved: None,
            cur: -1,
        }
    }

    /// The runtime this guard works with.
    pub fn runtime(&self) -> &'r dyn Runtime {
        self.rt
    }

    /// The current device (asked once per guard).
    pub fn current(&mut self) -> i32 {
        if self.saved.is_none() {
            let d = self.rt.get_device().unwrap_or(-1);
            self.saved = Some(d);
            self.cur = d;
        }
        self.cur
    }

    /// Makes `dev` current unless it already is.
    pub fn ensure(&mut self, dev: i32) -> Result<()> {
        if self.current() == dev {
            return Ok(());
        }
        if let Err(e) = self.rt.set_device(dev) {
            self.cur = -1;
            return Err(Error::runtime(&e, format!("making device {dev} current")));
        }
        self.cur = dev;
        Ok(())
    }

    /// Runs `f` with `dev` current (the caller's device comes back when the guard drops).
    pub fn on<T>(&mut self, dev: i32, f: impl FnOnce() -> RtResult<T>) -> Result<T> {
        self.ensure(dev)?;
        f().map_err(|e| Error::runtime(&e, format!("on device {dev}")))
    }
}

impl Drop for DeviceGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(s) = self.saved.filter(|&s| s >= 0 && s != self.cur) {
            restore(self.rt, s);
        }
    }
}

/// Makes the caller's device `s` current again (out of line: most guards changed nothing).
#[cold]
#[inline(never)]
fn restore(rt: &dyn Runtime, s: i32) {
    if let Err(e) = rt.set_device(s) {
        log::warn!("restoring the caller's device {s}: {e}");
    }
}

/// Runs `f` with `dev` current on the calling thread, restoring the caller's device.
pub fn on_device<T>(rt: &dyn Runtime, dev: i32, f: impl FnOnce() -> RtResult<T>) -> Result<T> {
    DeviceGuard::new(rt).on(dev, f)
}
