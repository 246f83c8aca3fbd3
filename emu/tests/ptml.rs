//! PTML through the cdylib: initialisation rules, device count, topology buffer sizes, versions.
//! Its own test binary (own process), so "before ptmlInit" is really before it.
mod common;

use common::{rt, serial};
use std::ffi::{c_char, CStr};

#[test]
fn ptml_lifecycle_topology_and_versions() {
    let _g = serial();
    let r = rt();
    let mut n = -1;
    let mut topo = [0u8; 100];
    assert_eq!(
        unsafe { (r.ptmlDeviceGetCount)(&mut n) },
        1,
        "before ptmlInit: UNINITIALIZED"
    );
    assert_eq!(unsafe { (r.ptmlPtlinkEnableAll)() }, 1);
    assert_eq!(
        unsafe { (r.ptmlPtlinkPhytopoDetect)(0, 100, topo.as_mut_ptr().cast()) },
        1
    );
    assert_eq!(unsafe { (r.ptmlInit)() }, 0);
    assert_eq!(unsafe { (r.ptmlInit)() }, 3, "ALREADY_INITIALIZED");
    assert_eq!(unsafe { (r.ptmlPtlinkEnableAll)() }, 0);
    assert_eq!(unsafe { (r.ptmlDeviceGetCount)(&mut n) }, 0);
    assert_eq!(n, 8);

    // size is in bytes: 10 entries of 10 bytes are needed
    assert_eq!(
        unsafe { (r.ptmlPtlinkPhytopoDetect)(0, 99, topo.as_mut_ptr().cast()) },
        4
    );
    assert_eq!(
        unsafe { (r.ptmlPtlinkPhytopoDetect)(0, 0, topo.as_mut_ptr().cast()) },
        4
    );
    let mut big = [0xeeu8; 120];
    assert_eq!(
        unsafe { (r.ptmlPtlinkPhytopoDetect)(7, 120, big.as_mut_ptr().cast()) },
        0
    );
    assert!(
        big[100..].iter().all(|&b| b == 0xee),
        "writes 100 bytes, no more"
    );
    // device 7 (last of 8): port p reaches device p
    for p in 0..7 {
        assert_eq!(&big[p * 10..p * 10 + 5], &[7, p as u8, p as u8, 6, 1]);
    }
    assert_eq!(big[74], 0, "port 7 unlinked");
    assert_eq!(
        unsafe { (r.ptmlPtlinkPhytopoDetect)(8, 100, topo.as_mut_ptr().cast()) },
        2
    );
    assert_eq!(
        unsafe { (r.ptmlPtlinkPhytopoDetect)(0, 100, std::ptr::null_mut()) },
        2
    );

    // disable / enable all links
    let mut st = -1;
    assert_eq!(unsafe { (r.ptmlGetPtlinkStatus)(0, 0, &mut st) }, 0);
    assert_eq!(st, 1);
    assert_eq!(unsafe { (r.ptmlPtlinkDisableAll)() }, 0);
    assert_eq!(unsafe { (r.ptmlGetPtlinkStatus)(0, 0, &mut st) }, 0);
    assert_eq!(st, 0);
    assert_eq!(
        unsafe { (r.ptmlPtlinkPhytopoDetect)(0, 100, topo.as_mut_ptr().cast()) },
        0
    );
    assert_eq!(topo[4], 0);
    assert_eq!(unsafe { (r.ptmlPtlinkEnableAll)() }, 0);
    assert_eq!(unsafe { (r.ptmlGetPtlinkStatus)(0, 0, &mut st) }, 0);
    assert_eq!(st, 1);

    // versions
    let mut v = 0;
    assert_eq!(unsafe { (r.ptmlSystemGetTangVersion)(&mut v) }, 0);
    assert_eq!(v, 130);
    let mut rv = 0;
    assert_eq!(unsafe { (r.tangRuntimeGetVersion)(&mut rv) }, 0);
    assert_eq!(rv, v);
    let mut buf = [0 as c_char; 32];
    assert_eq!(
        unsafe { (r.ptmlSystemGetDriverVersion)(buf.as_mut_ptr(), 32) },
        0
    );
    assert!(!unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_bytes()
        .is_empty());
    assert_eq!(
        unsafe { (r.ptmlSystemGetDriverVersion)(buf.as_mut_ptr(), 3) },
        4
    );

    // faults apply to PTML functions too, and PTML calls are counted
    assert_eq!(
        r.configure("[[fault]]\nfunction = \"ptmlPtlinkEnableAll\"\ncode = 9\n"),
        0
    );
    assert_eq!(unsafe { (r.ptmlPtlinkEnableAll)() }, 9);
    unsafe { (r.tangEmuClearFaults)() };
    assert!(r.count("ptmlPtlinkEnableAll") >= 3);

    // teardown (optional symbol) and init again
    let uninit: unsafe extern "C" fn() =
        unsafe { std::mem::transmute(r.sym("ptmlUninit").unwrap()) };
    unsafe { uninit() };
    assert_eq!(unsafe { (r.ptmlDeviceGetCount)(&mut n) }, 1);
    assert_eq!(unsafe { (r.ptmlInit)() }, 0);
}
