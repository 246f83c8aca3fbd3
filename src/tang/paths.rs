//! Where the runtime libraries are found: the same environment lookup as upstream
//! (`MC_TANGRT_LIB_DIR`; else `MC_TANGRT_ROOT` + `/lib/<MC_TANGRT_LIB_ARCH>/`, falling back to
//! `<root>/lib/`), or an explicit directory from the config, which wins over the environment.

use std::path::{Path, PathBuf};

/// File name of the Tang runtime.
pub const TANGRT_LIB: &str = "libtangrt_shared.so";
/// File name of PTML.
pub const PTML_LIB: &str = "libptml_shared.so";
/// Default SDK root.
pub const DEFAULT_ROOT: &str = "/usr/local/tangrt";
/// Default library architecture directory.
pub const DEFAULT_ARCH: &str = "linux-x86_64";

fn strip_trailing_slashes(s: &str) -> &str {
    let t = s.trim_end_matches('/');
    if t.is_empty() && s.starts_with('/') {
        "/"
    } else {
        t
    }
}

/// Resolves the path of `soname` from an explicit directory (config) or the environment,
/// given an environment accessor (so tests need not mutate the process environment).
pub fn resolve_with(
    soname: &str,
    explicit_dir: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> PathBuf {
    let non_empty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(dir) = explicit_dir.filter(|d| !d.is_empty()) {
        return Path::new(strip_trailing_slashes(dir)).join(soname);
    }
    if let Some(dir) = non_empty("MC_TANGRT_LIB_DIR") {
        return Path::new(strip_trailing_slashes(&dir)).join(soname);
    }
    let root = non_empty("MC_TANGRT_ROOT").unwrap_or_else(|| DEFAULT_ROOT.to_string());
    let root = strip_trailing_slashes(&root).to_string();
    let arch = non_empty("MC_TANGRT_LIB_ARCH").unwrap_or_else(|| DEFAULT_ARCH.to_string());
    let arch_path = Path::new(&root).join("lib").join(arch).join(soname);
    if readable(&arch_path) {
        arch_path
    } else {
        Path::new(&root).join("lib").join(soname)
    }
}

/// Resolves `soname` against the real process environment.
pub fn resolve(soname: &str, explicit_dir: Option<&str>) -> PathBuf {
    resolve_with(soname, explicit_dir, &|k| std::env::var(k).ok())
}

fn readable(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path; access() only reads it.
    unsafe { libc::access(c.as_ptr(), libc::R_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn lib_dir_wins_and_strips_slashes() {
        let e = env_of(&[("MC_TANGRT_LIB_DIR", "/opt/x//"), ("MC_TANGRT_ROOT", "/r")]);
        assert_eq!(
            resolve_with(TANGRT_LIB, None, &e),
            PathBuf::from("/opt/x/libtangrt_shared.so")
        );
    }

    #[test]
    fn explicit_dir_beats_environment() {
        let e = env_of(&[("MC_TANGRT_LIB_DIR", "/opt/x")]);
        assert_eq!(
            resolve_with(PTML_LIB, Some("/cfg/"), &e),
            PathBuf::from("/cfg/libptml_shared.so")
        );
    }

    #[test]
    fn root_arch_then_flat_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        let e = env_of(&[
            ("MC_TANGRT_ROOT", &root),
            ("MC_TANGRT_LIB_ARCH", "linux-aarch64"),
        ]);
        // Not present under lib/<arch>: flat lib/.
        assert_eq!(
            resolve_with(TANGRT_LIB, None, &e),
            dir.path().join("lib").join(TANGRT_LIB)
        );
        let arch = dir.path().join("lib/linux-aarch64");
        std::fs::create_dir_all(&arch).unwrap();
        std::fs::write(arch.join(TANGRT_LIB), b"").unwrap();
        assert_eq!(resolve_with(TANGRT_LIB, None, &e), arch.join(TANGRT_LIB));
    }

    #[test]
    fn empty_values_mean_unset() {
        let e = env_of(&[("MC_TANGRT_LIB_DIR", ""), ("MC_TANGRT_ROOT", "")]);
        assert_eq!(
            resolve_with(TANGRT_LIB, Some(""), &e),
            PathBuf::from("/usr/local/tangrt/lib/libtangrt_shared.so")
        );
    }
}
