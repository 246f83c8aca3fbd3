//! Reliability suites on the emulated Tang runtime: injected runtime faults, seeded fuzzing of
//! the parsers and of the whole ABI against a model, and multi-threaded, two-process stress.

#[path = "../support/mod.rs"]
mod support;

mod faults;
mod fuzz;
mod stress;
