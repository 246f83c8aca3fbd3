//! Emulated Tang runtime (`libtangrt_shared.so`).
//!
//! Every exported C function lives in `api.rs` (the runtime API) or `control.rs` (the
//! emulator-only `tangEmu*` control functions and the hooks the emulated PTML forwards to).
//! Each export body runs inside `export!`, which counts the call, charges its modelled cost
//! (`cost.rs`), applies injected faults, catches panics (a panic becomes `tangErrorUnknown`) and
//! records the per-thread last error.
#![allow(non_snake_case, non_camel_case_types)]
// The exports take raw pointers from C by design; their contracts are the C header's.
#![allow(clippy::missing_safety_doc)]

#[macro_use]
mod macros;
mod api;
mod config;
mod control;
mod cost;
mod counters;
mod errors;
mod faults;
mod fork;
mod mem;
mod state;
mod stream;
mod types;
