//! Every `extern "C"` item of the library, and nothing else. Each exported function's body is
//! one `export!` invocation (`boundary.rs`: panic boundary, status codes, last error); every
//! pointer a caller passes is read through `args.rs` or a handle kind of `handle.rs`, after its
//! NULL check; every constant of the header is defined once, in `consts.rs`.
//!
//! | file | what |
//! |---|---|
//! | `boundary.rs` | `export!`, the last-error message |
//! | `consts.rs` | status codes, task states, opcodes, paths, log levels, sizes |
//! | `args.rs`, `handle.rs` | reading and writing the caller's pointers; opaque handles |
//! | `types.rs` | the C structs and callback types |
//! | `host.rs` | the host's callbacks behind the engine's `Host` trait |
//! | `transport/` | the transport's exports and their plugin table |
//! | `device_plugin.rs` | TENT's `device_plugin_t` |
//! | `logging.rs` | the `log` crate routed to the host or stderr |

#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod args;
pub(crate) mod boundary;
pub mod consts;
pub mod device_plugin;
mod handle;
mod host;
pub mod logging;
pub mod transport;
pub mod types;

#[cfg(test)]
mod tests;

pub use consts::*;
pub use transport::*;
