// The emulated runtime starts worker threads and registers exit hooks, so it must never be
// unmapped by dlclose while they run: mark the shared object "nodelete".
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
