//! The checked-in header is what the pinned cbindgen generates from src/abi/, and it compiles
//! as C11 and C++17 with -Wall -Wextra -Werror; its slot-check macro works in both.
//!
//! Regenerate after changing src/abi/:
//!   SUNRISE_LINK_REGEN_HEADER=1 cargo test -p sunrise-link --test abi header

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate() -> String {
    let mut cfg = cbindgen::Config::from_file(root().join("cbindgen.toml")).expect("cbindgen.toml");
    // The constants are defined once in src/abi/consts.rs (several take the engine's values,
    // which cbindgen cannot evaluate): the header gets them from the library itself.
    cfg.after_includes = Some(sunrise_link::abi::consts::c_defines());
    // Only src/abi/ (mod.rs and the modules it declares) is parsed: every C item lives there,
    // nothing else leaks into the header.
    let bindings = cbindgen::Builder::new()
        .with_config(cfg)
        .with_src(root().join("src/abi/mod.rs"))
        .generate()
        .expect("cbindgen failed");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn header_is_up_to_date() {
    let path = root().join("include/sunrise_link.h");
    let fresh = generate();
    if std::env::var_os("SUNRISE_LINK_REGEN_HEADER").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == fresh,
        "include/sunrise_link.h is stale; regenerate it with\n  \
         SUNRISE_LINK_REGEN_HEADER=1 cargo test -p sunrise-link --test abi header"
    );
}

#[test]
fn header_defines_the_abi_version_from_rust() {
    let h = generate();
    let want = format!(
        "#define SUNRISE_LINK_ABI_VERSION {}",
        sunrise_link::abi::SUNRISE_LINK_ABI_VERSION
    );
    assert!(h.contains(&want), "missing {want}");
    for (name, _, value) in sunrise_link::abi::consts::C_CONSTANTS {
        let want = format!("#define {name} {value}\n");
        assert!(h.contains(&want), "missing {want}");
    }
    for f in [
        "SUNRISE_LINK_CHECK_OP",
        "sunrise_link_transport_plugin_get",
        "sunrise_link_last_error",
        "sunrise_link_version",
        "tent_register_device_plugin",
    ] {
        assert!(h.contains(f), "{f} not declared");
    }
}

fn compile(compiler: &str, std: &str, ext: &str, dir: &Path) {
    let src = dir.join(format!("use_header.{ext}"));
    let exe = dir.join(format!("use_header_{ext}"));
    std::fs::write(
        &src,
        "#include \"sunrise_link.h\"\n\
         static const char *version(void) { return \"\"; }\n\
         int main(void) {\n\
           sunrise_link_transport_plugin_t t;\n\
           t.abi_version = SUNRISE_LINK_ABI_VERSION;\n\
           t.struct_size = (uint32_t)sizeof t;\n\
           t.stats_get = 0;\n\
           t.notification_send = 0;\n\
           if (SUNRISE_LINK_CHECK_OP(&t, sunrise_link_transport_plugin_t, stats_get)) return 1;\n\
           t.struct_size = 16;\n\
           t.version = version;\n\
           if (SUNRISE_LINK_CHECK_OP(&t, sunrise_link_transport_plugin_t, version)) return 2;\n\
           t.struct_size = 24;\n\
           if (!SUNRISE_LINK_CHECK_OP(&t, sunrise_link_transport_plugin_t, version)) return 3;\n\
           return SUNRISE_LINK_OK;\n\
         }\n",
    )
    .unwrap();
    let out = Command::new(compiler)
        .args([std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(root().join("include"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
    assert!(
        out.status.success(),
        "{compiler} {std} rejected the header:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The slot-check macro: a NULL slot, a slot past struct_size and a present slot.
    let st = Command::new(&exe).status().unwrap();
    assert_eq!(
        st.code(),
        Some(0),
        "SUNRISE_LINK_CHECK_OP misjudged a slot ({compiler})"
    );
}

#[test]
fn header_compiles_as_c11_and_cxx17() {
    let dir = tempfile::tempdir().unwrap();
    compile("gcc", "-std=c11", "c", dir.path());
    compile("g++", "-std=c++17", "cpp", dir.path());
}
