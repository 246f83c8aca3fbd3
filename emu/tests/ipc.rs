//! IPC across unrelated processes: the helper binary is a separate program that loads the
//! emulator itself and opens a handle passed on its command line.
mod common;

use common::{helper, rt, serial};
use std::os::unix::fs::PermissionsExt;

fn backing_files() -> Vec<std::path::PathBuf> {
    let dir = std::env::var("TANG_EMU_SHM_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let prefix = format!(
        "tang-emu.{}.{}.",
        unsafe { libc::getuid() },
        std::process::id()
    );
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn two_unrelated_processes_share_device_memory_both_ways() {
    let _g = serial();
    let r = rt();
    let n = 3 << 20;
    let d = r.malloc(n);
    assert_eq!(r.h2d(d, &vec![0x11u8; n]), 0);
    let mut h = [0u64; 8];
    assert_eq!(unsafe { (r.tangIpcGetMemHandle)(&mut h, d) }, 0);
    let out = helper()
        .args([
            "open",
            "1",
            &common::rt::hex(&h),
            &n.to_string(),
            "17",
            "34",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("ok"),
        "helper: {text} {:?}",
        out.stderr
    );
    let mut back = vec![0u8; n];
    assert_eq!(r.d2h(&mut back, d), 0);
    assert!(
        back.iter().all(|&b| b == 34),
        "the other process's write is visible here"
    );
    // and again, the other way round: new bytes from here, checked there
    assert_eq!(r.h2d(d, &vec![0x55u8; n]), 0);
    let out = helper()
        .args(["open", "3", &common::rt::hex(&h), &n.to_string(), "85", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(unsafe { (r.tangFree)(d) }, 0);
}

#[test]
fn memory_exported_by_another_process_is_opened_here() {
    use std::io::{BufRead, BufReader, Write};
    let _g = serial();
    let r = rt();
    let n = 1 << 20;
    let mut child = helper()
        .args(["export", "5", &n.to_string(), "77"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let h = common::rt::unhex(line.trim());
    r.set_device(2);
    let mut p = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangIpcOpenMemHandle)(&mut p, h, 1) }, 0);
    let mut buf = vec![0u8; n];
    assert_eq!(r.d2h(&mut buf, p), 0);
    assert!(buf.iter().all(|&b| b == 77), "the exporter's bytes");
    assert_eq!(r.h2d(p, &vec![99u8; n]), 0);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "check 99").unwrap();
    drop(stdin);
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ok", "the exporter sees this process's bytes");
    assert!(child.wait().unwrap().success());
    // the exporter freed it (and exited): the mapping here reports it destroyed
    assert_eq!(r.d2h(&mut buf, p), 3026);
    assert_eq!(unsafe { (r.tangIpcCloseMemHandle)(p) }, 0);
    r.set_device(0);
}

#[test]
fn backing_files_are_private_and_removed_on_free() {
    let _g = serial();
    let r = rt();
    let before = backing_files().len();
    let d = r.malloc(1 << 20);
    let files = backing_files();
    assert_eq!(files.len(), before + 1);
    let newest = files
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .unwrap();
    let mode = std::fs::metadata(newest).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(unsafe { (r.tangFree)(d) }, 0);
    assert_eq!(backing_files().len(), before);
}

#[test]
fn freed_allocation_is_destroyed_for_openers() {
    let _g = serial();
    let r = rt();
    let n = 4096;
    let d = r.malloc(n);
    let mut h = [0u64; 8];
    assert_eq!(unsafe { (r.tangIpcGetMemHandle)(&mut h, d) }, 0);
    // opened here (same process, another device) before the free
    r.set_device(2);
    let mut o = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangIpcOpenMemHandle)(&mut o, h, 1) }, 0);
    let mut o2 = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangIpcOpenMemHandle)(&mut o2, h, 1) }, 0);
    assert_eq!(o, o2, "opening twice on one device gives the same address");
    assert_eq!(r.live("ipc_open"), 2);
    r.set_device(0);
    assert_eq!(unsafe { (r.tangFree)(d) }, 0);
    let mut buf = vec![0u8; n];
    assert_eq!(r.d2h(&mut buf, o), 3026, "IPC memory destroyed");
    // a later open fails the same way, here and in another process
    let mut o3 = std::ptr::null_mut();
    r.set_device(3);
    assert_eq!(unsafe { (r.tangIpcOpenMemHandle)(&mut o3, h, 1) }, 3026);
    let out = helper()
        .args(["open-expect-fail", "1", &common::rt::hex(&h)])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3026");
    r.set_device(2);
    assert_eq!(unsafe { (r.tangIpcCloseMemHandle)(o) }, 0);
    assert_eq!(unsafe { (r.tangIpcCloseMemHandle)(o) }, 0);
    assert_eq!(unsafe { (r.tangIpcCloseMemHandle)(o) }, 1, "closed already");
    assert_eq!(r.live("ipc_open"), 0);
    r.set_device(0);
}

#[test]
fn handle_of_an_interior_pointer_opens_at_that_pointer() {
    let _g = serial();
    let r = rt();
    let n = 1 << 16;
    let d = r.malloc(n);
    let pat: Vec<u8> = (0..n).map(|i| (i / 256) as u8).collect();
    assert_eq!(r.h2d(d, &pat), 0);
    let inner = unsafe { d.cast::<u8>().add(4096) }.cast();
    let (mut hb, mut hi) = ([0u64; 8], [0u64; 8]);
    assert_eq!(unsafe { (r.tangIpcGetMemHandle)(&mut hb, d) }, 0);
    assert_eq!(unsafe { (r.tangIpcGetMemHandle)(&mut hi, inner) }, 0);
    r.set_device(1);
    let (mut ob, mut oi) = (std::ptr::null_mut(), std::ptr::null_mut());
    assert_eq!(unsafe { (r.tangIpcOpenMemHandle)(&mut ob, hb, 1) }, 0);
    assert_eq!(unsafe { (r.tangIpcOpenMemHandle)(&mut oi, hi, 1) }, 0);
    assert_eq!(
        oi as usize - ob as usize,
        4096,
        "one mapping, pointer at the same offset"
    );
    let mut buf = vec![0u8; 256];
    assert_eq!(r.d2h(&mut buf, oi), 0);
    assert!(buf.iter().all(|&b| b == 16));
    assert_eq!(unsafe { (r.tangIpcCloseMemHandle)(oi) }, 0);
    assert_eq!(unsafe { (r.tangIpcCloseMemHandle)(ob) }, 0);
    assert_eq!(r.live("ipc_open"), 0);
    r.set_device(0);
    assert_eq!(unsafe { (r.tangFree)(d) }, 0);
}

#[test]
fn bad_handles_are_rejected() {
    let _g = serial();
    let r = rt();
    let mut o = std::ptr::null_mut();
    assert_eq!(unsafe { (r.tangIpcOpenMemHandle)(&mut o, [0u64; 8], 1) }, 1);
    let d = r.malloc(64);
    let mut h = [0u64; 8];
    assert_eq!(unsafe { (r.tangIpcGetMemHandle)(&mut h, d) }, 0);
    h[2] ^= 1;
    assert_eq!(
        unsafe { (r.tangIpcOpenMemHandle)(&mut o, h, 1) },
        1,
        "checksum"
    );
    let stack = 0u64;
    assert_eq!(
        unsafe { (r.tangIpcGetMemHandle)(&mut h, (&stack as *const u64) as *mut _) },
        1
    );
    assert_eq!(unsafe { (r.tangFree)(d) }, 0);
}

#[test]
fn leftovers_of_dead_processes_are_cleaned_up() {
    let _g = serial();
    // A helper that is killed keeps no chance to clean up; its files must go at the next start.
    let dir = std::env::var("TANG_EMU_SHM_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let mut child = helper().arg("touch").spawn().unwrap(); // allocates, then dies of SIGSEGV
    let pid = child.id();
    let _ = child.wait();
    // pretend a dead process left a file behind
    let fake = std::path::Path::new(&dir).join(format!(
        "tang-emu.{}.{}.1",
        unsafe { libc::getuid() },
        pid
    ));
    std::fs::write(&fake, b"x").unwrap();
    let out = helper().arg("info").output().unwrap();
    assert!(out.status.success());
    assert!(
        !fake.exists(),
        "stale backing file of dead pid {pid} removed at start"
    );
}
