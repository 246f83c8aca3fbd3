//! Gives the shared library a SONAME (`libsunrise_link.so.<major>`), so that programs linked
//! against an installed copy record the ABI major version, as the CMake package installs it.
fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsunrise_link.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
