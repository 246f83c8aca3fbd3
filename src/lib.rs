//! sunrise-link: the Sunrise Link transport of Mooncake TENT as a Rust library.
//!
//! The layout follows `design.md`: `abi` (every `extern "C"` item), `engine` (the transport in
//! safe Rust), `tang` (the vendor runtime behind a trait) and `config`.

pub mod config;
pub mod engine;
pub mod tang;

/// The library version, as in `Cargo.toml`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod abi;
