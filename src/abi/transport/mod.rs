//! The transport: its exported functions (`exports.rs`, the submits in `submit.rs`) and the
//! plugin table that lists them (`plugin.rs`). Hosts and tests import everything of the transport ABI from here: the
//! functions, the table, the C types and the constants.

mod exports;
mod plugin;
mod submit;

pub use super::consts::*;
pub use super::types::*;
pub use exports::*;
pub use plugin::*;
pub use submit::*;
