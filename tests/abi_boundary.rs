//! Every `extern "C"` function in src/abi/ runs its body inside the panic boundary
//! (`ffi_status!` / `ffi_value!`), and the shared library exports only `sunrise_link_*`
//! symbols plus `tent_register_device_plugin`.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (file, function name, whether its body starts inside the boundary)
fn extern_fns() -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root().join("src/abi")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().map_or(true, |x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("extern \"C\" fn ") {
            let line_start = rest[..i].rfind('\n').map(|n| n + 1).unwrap_or(0);
            let prefix = rest[line_start..i].trim();
            let after = &rest[i + "extern \"C\" fn ".len()..];
            rest = after;
            // Definitions only: not fn-pointer types (`Option<unsafe extern "C" fn(`).
            let is_def = prefix.is_empty()
                || prefix == "pub"
                || prefix.ends_with("unsafe") && !prefix.contains('<');
            let Some(paren) = after.find('(') else {
                continue;
            };
            let name = after[..paren].trim().to_string();
            if !is_def || name.is_empty() {
                continue;
            }
            let Some(open) = after.find("{\n") else {
                continue;
            };
            let body = after[open + 1..].trim_start();
            let guarded = ["ffi_status!", "ffi_value!", "status_to_int(ffi_status!"]
                .iter()
                .any(|g| body.starts_with(g));
            out.push((
                p.file_name().unwrap().to_string_lossy().into_owned(),
                name,
                guarded,
            ));
        }
    }
    out
}

#[test]
fn every_export_runs_inside_the_panic_boundary() {
    let fns = extern_fns();
    assert!(
        fns.len() >= 25,
        "found only {} extern fns: {fns:?}",
        fns.len()
    );
    let bad: Vec<_> = fns.iter().filter(|f| !f.2).collect();
    assert!(
        bad.is_empty(),
        "extern \"C\" fns without ffi_status!/ffi_value!: {bad:?}"
    );
}

fn cdylib() -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/libsunrise_link.so
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("libsunrise_link.so")
}

#[test]
fn only_prefixed_symbols_are_exported() {
    let lib = cdylib();
    if !lib.exists() {
        // `cargo test` builds only the rlib; build the shared object of this profile too.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "sunrise-link", "--lib", "--manifest-path"])
            .arg(root().join("Cargo.toml"));
        if lib.parent().is_some_and(|p| p.ends_with("release")) {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("running cargo build");
        assert!(st.success(), "cargo build --lib failed");
    }
    assert!(lib.exists(), "{} not built", lib.display());
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
