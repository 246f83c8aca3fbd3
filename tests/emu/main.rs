//! The library on the emulated Tang runtime through its plugin table, as TENT reaches it: copy
//! paths, runtime calls per request, two-process IPC, install/uninstall and registration.
//! Each scenario runs in a child process of its own.

#[path = "../support/mod.rs"]
mod support;

mod counts;
mod ipc;
mod lifecycle;
mod paths;
mod submit_ex;
