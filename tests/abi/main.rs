//! The C ABI from the outside: the generated header, the exported symbols, hostile input to
//! every export, and the usage example of `docs/abi.md`.

#[path = "../support/mod.rs"]
mod support;

mod doc_example;
mod exports;
mod header;
mod hostile;
