//! The shared library exports only `sunrise_link_*` symbols plus `tent_register_device_plugin`.
//! (That every export runs inside the panic boundary is checked by calling each one: the unit
//! test `abi::tests::every_export_runs_inside_the_boundary`.)

use crate::support::cdylib;
use std::process::Command;

#[test]
fn only_prefixed_symbols_are_exported() {
    let lib = cdylib();
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
        .expect("nm");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut names = Vec::new();
    for l in text.lines() {
        let mut parts = l.split_whitespace().rev();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        if kind == "T" || kind == "D" || kind == "B" || kind == "R" || kind == "W" || kind == "V" {
            names.push(name.to_string());
        }
    }
    let stray: Vec<_> = names
        .iter()
        .filter(|n| !n.starts_with("sunrise_link_") && n.as_str() != "tent_register_device_plugin")
        .collect();
    assert!(stray.is_empty(), "unexpected exports: {stray:?}");
    for want in [
        "sunrise_link_transport_plugin_get",
        "tent_register_device_plugin",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not exported");
    }
}
