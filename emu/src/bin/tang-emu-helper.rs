//! A separate program for the multi-process tests: it loads the emulated runtime itself (it is
//! not a fork of the test) and acts on an IPC handle given on its command line.
//!
//! `tang-emu-helper open <device> <handle-hex> <len> <expect-byte> <write-byte>`: opens the
//! handle on `device`, checks that all `len` bytes equal `expect-byte` (read with tangMemcpy
//! device-to-host), writes `write-byte` over them (host-to-device), closes the handle, prints
//! `ok`. `tang-emu-helper open-expect-fail <device> <handle-hex>` prints the error code of
//! tangIpcOpenMemHandle (expected non-zero). `tang-emu-helper export <device> <len> <byte>`
//! allocates `len` bytes on `device`, fills them with `byte`, prints the handle as hex, then
//! waits for a line `check <byte>` on stdin, verifies the memory holds that byte and prints
//! `ok` (or exits non-zero); end of input makes it exit. `tang-emu-helper touch` allocates device memory and
//! reads it from host code (must die of SIGSEGV). `tang-emu-helper info` prints what the
//! environment's configuration yields: `devices <count> <code>`, `malloc <code> <code> <code>`,
//! `peer <code>`. `tang-emu-helper call-cost` times five calls of one function of each cost
//! class (see `emu/README.md`) and prints, per class, `cost <class> <shortest in µs>`.
#[path = "../../tests/common/rt.rs"]
mod rt;

use std::process::exit;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let r = rt::Rt::load();
    match args.get(1).map(String::as_str) {
        Some("open") if args.len() == 7 => {
            let dev: i32 = args[2].parse().unwrap();
            let h = rt::unhex(&args[3]);
            let len: usize = args[4].parse().unwrap();
            let expect: u8 = args[5].parse().unwrap();
            let write: u8 = args[6].parse().unwrap();
            r.set_device(dev);
            let mut p = std::ptr::null_mut();
            let e = unsafe { (r.tangIpcOpenMemHandle)(&mut p, h, 1) };
            if e != 0 {
                println!("open failed {e}");
                exit(2);
            }
            let mut buf = vec![0u8; len];
            let e = r.d2h(&mut buf, p);
            if e != 0 || buf.iter().any(|&b| b != expect) {
                println!("read mismatch (err {e}, first byte {})", buf[0]);
                exit(3);
            }
            let e = r.h2d(p, &vec![write; len]);
            if e != 0 {
                println!("write failed {e}");
                exit(4);
            }
            let e = unsafe { (r.tangIpcCloseMemHandle)(p) };
            if e != 0 || r.live("ipc_open") != 0 {
                println!("close failed {e}");
                exit(5);
            }
            println!("ok");
        }
        Some("open-expect-fail") if args.len() == 4 => {
            let dev: i32 = args[2].parse().unwrap();
            let h = rt::unhex(&args[3]);
            r.set_device(dev);
            let mut p = std::ptr::null_mut();
            let e = unsafe { (r.tangIpcOpenMemHandle)(&mut p, h, 1) };
            println!("{e}");
        }
        Some("export") if args.len() == 5 => {
            use std::io::BufRead;
            let dev: i32 = args[2].parse().unwrap();
            let len: usize = args[3].parse().unwrap();
            let fill: u8 = args[4].parse().unwrap();
            r.set_device(dev);
            let p = r.malloc(len);
            assert_eq!(r.h2d(p, &vec![fill; len]), 0);
            let mut h = [0u64; 8];
            assert_eq!(unsafe { (r.tangIpcGetMemHandle)(&mut h, p) }, 0);
            println!("{}", rt::hex(&h));
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line).unwrap_or(0) == 0 {
                exit(6);
            }
            let want: u8 = line
                .trim()
                .strip_prefix("check ")
                .unwrap_or("x")
                .parse()
                .unwrap_or(0);
            let mut buf = vec![0u8; len];
            assert_eq!(r.d2h(&mut buf, p), 0);
            if buf.iter().any(|&b| b != want) {
                println!("mismatch: first byte {}", buf[0]);
                exit(7);
            }
            assert_eq!(unsafe { (r.tangFree)(p) }, 0);
            println!("ok");
        }
        Some("touch") => {
            let p = r.malloc(4096);
            println!("touching {p:?}");
            let v = unsafe { std::ptr::read_volatile(p as *const u8) };
            println!("read {v} from device memory: should have crashed");
        }
        Some("info") => {
            let mut n = -1;
            let e = unsafe { (r.tangGetDeviceCount)(&mut n) };
            println!("devices {n} {e}");
            if n > 0 {
                let codes: Vec<String> = (0..3)
                    .map(|_| {
                        let mut p = std::ptr::null_mut();
                        unsafe { (r.tangMalloc)(&mut p, 4096) }.to_string()
                    })
                    .collect();
                println!("malloc {}", codes.join(" "));
                let e =
                    unsafe { (r.tangMemcpyPeer)(std::ptr::null_mut(), 1, std::ptr::null(), 0, 0) };
                println!("peer {e}");
            }
        }
        Some("call-cost") => {
            use std::ffi::c_void;
            let n = 64;
            let host = vec![1u8; n];
            let d = r.malloc(n);
            let mut s = std::ptr::null_mut();
            assert_eq!(unsafe { (r.tangStreamCreate)(&mut s) }, 0);
            let mut ev = std::ptr::null_mut();
            assert_eq!(unsafe { (r.tangEventCreate)(&mut ev) }, 0);
            let mut dev = 0;
            let mut at = [0u64; 3];
            let mut h = [0u64; 8];
            let mut count = 0;
            let calls: [(&str, &mut dyn FnMut() -> u32); 7] = [
                ("sync_copy", &mut || unsafe {
                    (r.tangMemcpy)(d, host.as_ptr().cast::<c_void>(), n, 1)
                }),
                ("async_launch", &mut || unsafe {
                    (r.tangMemcpyAsync)(d, host.as_ptr().cast::<c_void>(), n, 1, s)
                }),
                ("device", &mut || unsafe { (r.tangGetDevice)(&mut dev) }),
                ("attributes", &mut || unsafe {
                    (r.tangPointerGetAttributes)(&mut at, d)
                }),
                ("ipc", &mut || unsafe { (r.tangIpcGetMemHandle)(&mut h, d) }),
                // never recorded: complete
                ("event_query", &mut || unsafe { (r.tangEventQuery)(ev) }),
                ("other", &mut || unsafe {
                    (r.tangGetDeviceCount)(&mut count)
                }),
            ];
            for (class, f) in calls {
                let mut best = f64::MAX;
                for _ in 0..5 {
                    let t = std::time::Instant::now();
                    assert_eq!(f(), 0, "{class}");
                    best = best.min(t.elapsed().as_secs_f64() * 1e6);
                }
                println!("cost {class} {best:.1}");
            }
            unsafe {
                assert_eq!((r.tangStreamSynchronize)(s), 0);
                assert_eq!((r.tangEventDestroy)(ev), 0);
                assert_eq!((r.tangStreamDestroy)(s), 0);
                assert_eq!((r.tangFree)(d), 0);
            }
        }
        _ => {
            eprintln!("usage: tang-emu-helper open <dev> <handle> <len> <expect> <write> | open-expect-fail <dev> <handle>");
            exit(64);
        }
    }
}
