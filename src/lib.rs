//! sunrise-link: the Sunrise Link transport of Mooncake TENT as a Rust library.
//!
//! The layout follows `design.md`: `abi` (every `extern "C"` item), `engine` (the transport in
//! safe Rust), `tang` (the vendor runtime behind a trait) and `config`.

// The engine, the runtime trait and the config are public only for the project's own tests,
// fuzz targets and the emulator tests; the library's interface is the C ABI (`abi`).
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod engine;
#[doc(hidden)]
pub mod tang;

/// The library version, as in `Cargo.toml`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod abi;
