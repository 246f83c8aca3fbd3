//! The usage example of `docs/abi.md`, as it stands in the document: compiled as C11 with
//! `-Wall -Wextra -Werror`, linked with `-lsunrise_link` (the shared library of this build) and
//! run on the emulator.

use crate::support::{cdylib, emu_root, lib_dir};
use std::path::PathBuf;
use std::process::Command;

const MARKER: &str = "<!-- example: compiled and run by make test -->";

/// The C block right after the marker.
fn example() -> String {
    let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/abi.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let after = &text[text
        .find(MARKER)
        .expect("docs/abi.md lost its example marker")..];
    let start = after.find("```c\n").expect("a ```c block after the marker") + 5;
    let len = after[start..].find("\n```").expect("the end of the block");
    after[start..start + len + 1].to_string()
}

#[test]
fn the_abi_doc_example_compiles_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("example.c");
    std::fs::write(&src, example()).unwrap();
    // Link as a user does (-lsunrise_link), and find the SONAME (libsunrise_link.so.0) at run time.
    let lib = cdylib();
    let libs = dir.path().join("lib");
    std::fs::create_dir(&libs).unwrap();
    for name in ["libsunrise_link.so", "libsunrise_link.so.0"] {
        std::os::unix::fs::symlink(&lib, libs.join(name)).unwrap();
    }
    let exe = dir.path().join("example");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(root.join("include"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", libs.display()))
        .arg("-lsunrise_link")
        .arg(format!("-Wl,-rpath,{}", libs.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the example of docs/abi.md does not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe)
        .env("MC_TANGRT_LIB_DIR", lib_dir(&emu_root()))
        .env("TANG_EMU_DEVICES", "2")
        .env_remove("TANG_EMU_CONFIG")
        .env_remove("TANG_EMU_FAULTS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.contains("copied 1048576 bytes from cuda:0 to cuda:1"),
        "the example of docs/abi.md failed ({}):\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
}
