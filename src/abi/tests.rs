//! The C boundary as a whole: every function the header declares, and every slot of TENT's
//! device plugin, runs inside `export!`; layouts; versioned structs.

use super::boundary::panic_hook;
use super::device_plugin::*;
use super::*;
use std::ffi::{c_char, c_void, CStr};
use std::ptr::{null, null_mut};

fn last_error() -> String {
    // SAFETY: the library's own NUL-terminated thread-local message.
    unsafe { CStr::from_ptr(sunrise_link_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// The functions `include/sunrise_link.h` declares (the header test keeps it current).
fn header_functions() -> Vec<String> {
    let h = include_str!("../../include/sunrise_link.h");
    let mut names: Vec<String> = h
        .lines()
        .filter(|l| {
            l.contains('(')
                && !l.starts_with([' ', '#', '/', '}', '\t'])
                && !l.starts_with("typedef")
        })
        .filter_map(|l| {
            let head = &l[..l.find('(')?];
            let name = head.rsplit([' ', '*']).next()?;
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect();
    names.sort();
    names
}

/// Calls `f` with the boundary's panic armed: it must have run inside `export!` (the injected
/// panic fired and was caught, so the export returned its fallback).
fn through_boundary<R>(name: &str, f: impl FnOnce() -> R) -> R {
    panic_hook::arm();
    let r = f();
    assert!(
        !panic_hook::armed(),
        "{name} returned without entering the boundary (export!)"
    );
    r
}

/// One export called with NULL arguments; true when it returned its panic fallback.
type Call = Box<dyn Fn() -> bool>;

#[test]
fn every_export_runs_inside_the_boundary() {
    const E: i32 = SUNRISE_LINK_INTERNAL_ERROR;
    let t = null_mut::<sunrise_link_transport_t>();
    // SAFETY: with the panic armed, each export panics on entry inside its
    // boundary and touches none of its (NULL) arguments.
    let calls: Vec<(&str, Call)> = unsafe {
        vec![
            (
                "sunrise_link_last_error",
                Box::new(|| !sunrise_link_last_error().is_null()),
            ),
            (
                "sunrise_link_version",
                Box::new(|| !sunrise_link_version().is_null()),
            ),
            (
                "sunrise_link_transport_name",
                Box::new(|| !sunrise_link_transport_name().is_null()),
            ),
            (
                "sunrise_link_transport_plugin_get",
                Box::new(|| sunrise_link_transport_plugin_get(null_mut()) == E),
            ),
            (
                "sunrise_link_transport_create",
                Box::new(|| sunrise_link_transport_create(null(), null_mut()) == E),
            ),
            (
                "sunrise_link_transport_destroy",
                Box::new(move || sunrise_link_transport_destroy(t) == E),
            ),
            (
                "sunrise_link_transport_install",
                Box::new(move || sunrise_link_transport_install(t, null()) == E),
            ),
            (
                "sunrise_link_transport_uninstall",
                Box::new(move || sunrise_link_transport_uninstall(t) == E),
            ),
            (
                "sunrise_link_transport_capabilities_get",
                Box::new(move || sunrise_link_transport_capabilities_get(t, null_mut()) == E),
            ),
            (
                "sunrise_link_transport_bandwidth_get",
                Box::new(move || sunrise_link_transport_bandwidth_get(t, null_mut()) == E),
            ),
            (
                "sunrise_link_sub_batch_allocate",
                Box::new(move || sunrise_link_sub_batch_allocate(t, 1, 0, null_mut()) == E),
            ),
            (
                "sunrise_link_sub_batch_free",
                Box::new(move || sunrise_link_sub_batch_free(t, 1) == E),
            ),
            (
                "sunrise_link_sub_batch_recycle",
                Box::new(move || sunrise_link_sub_batch_recycle(t, 1, 1, 0, null_mut()) == E),
            ),
            (
                "sunrise_link_sub_batch_size",
                Box::new(move || sunrise_link_sub_batch_size(t, 1, null_mut()) == E),
            ),
            (
                "sunrise_link_transfer_submit",
                Box::new(move || sunrise_link_transfer_submit(t, 1, null(), 0) == E),
            ),
            (
                "sunrise_link_transfer_submit_ex",
                Box::new(move || sunrise_link_transfer_submit_ex(t, 1, null(), 0, null_mut()) == E),
            ),
            (
                "sunrise_link_task_status_get",
                Box::new(move || sunrise_link_task_status_get(t, 1, 0, null_mut()) == E),
            ),
            (
                "sunrise_link_task_cancel",
                Box::new(move || sunrise_link_task_cancel(t, 1, 0) == E),
            ),
            (
                "sunrise_link_task_error_get",
                Box::new(move || sunrise_link_task_error_get(t, 1, 0, null_mut(), 0) == E),
            ),
            (
                "sunrise_link_buffer_add",
                Box::new(move || {
                    sunrise_link_buffer_add(t, null_mut(), 0, null(), null_mut(), 0) == E
                }),
            ),
            (
                "sunrise_link_buffer_remove",
                Box::new(move || sunrise_link_buffer_remove(t, null_mut(), 0) == E),
            ),
            (
                "sunrise_link_segment_invalidate",
                Box::new(move || sunrise_link_segment_invalidate(t, 0) == E),
            ),
            (
                "sunrise_link_stats_get",
                Box::new(move || sunrise_link_stats_get(t, null_mut()) == E),
            ),
            (
                "tent_register_device_plugin",
                Box::new(|| tent_register_device_plugin(null_mut()) == -1),
            ),
        ]
    };
    let mut covered: Vec<String> = calls.iter().map(|c| c.0.to_string()).collect();
    covered.sort();
    assert_eq!(
        covered,
        header_functions(),
        "every function of the header, and only those, is checked here"
    );
    for (name, call) in &calls {
        assert!(
            through_boundary(name, call),
            "{name}: not its panic fallback"
        );
        assert!(
            last_error().contains("injected by the boundary test"),
            "{name}"
        );
    }

    // TENT's device plugin: its slots are exports too, reached through the table.
    let mut p = std::mem::MaybeUninit::<sunrise_link_device_plugin_t>::zeroed();
    // SAFETY: a writable device_plugin_t.
    assert_eq!(unsafe { tent_register_device_plugin(p.as_mut_ptr()) }, 0);
    // SAFETY: filled by the call above.
    let p = unsafe { p.assume_init() };
    let c = null_mut::<c_void>();
    // SAFETY: as above, nothing is touched once the injected panic fires.
    unsafe {
        through_boundary("create_plugin", || {
            assert!((p.create_plugin.unwrap())().is_null())
        });
        through_boundary("destroy_plugin", || {
            assert_eq!((p.destroy_plugin.unwrap())(c), -1)
        });
        through_boundary("alloc", || {
            assert_eq!((p.alloc.unwrap())(c, null_mut(), 0, null()), -1)
        });
        through_boundary("free", || {
            assert_eq!((p.free.unwrap())(c, null_mut(), 0), -1)
        });
        through_boundary("memcpy_sync", || {
            assert_eq!((p.memcpy_sync.unwrap())(c, null_mut(), null_mut(), 0), -1)
        });
        through_boundary("query_location", || {
            assert_eq!(
                (p.query_location.unwrap())(c, null_mut(), 0, null_mut(), 0),
                0
            )
        });
        through_boundary("get_device_count", || {
            assert_eq!((p.get_device_count.unwrap())(c), -1)
        });
        through_boundary("get_device_pci_bus_id", || {
            assert_eq!((p.get_device_pci_bus_id.unwrap())(c, 0, null_mut(), 0), -1)
        });
    }
}

#[test]
fn null_handles_and_outputs_are_invalid_argument_with_a_message() {
    // SAFETY: NULL handles are refused before anything is read.
    unsafe {
        let t = null_mut::<sunrise_link_transport_t>();
        assert_eq!(
            sunrise_link_transport_install(t, null()),
            SUNRISE_LINK_INVALID_ARGUMENT
        );
        assert_eq!(last_error(), "transport is NULL");
        assert_eq!(
            sunrise_link_transport_destroy(t),
            SUNRISE_LINK_OK,
            "destroy(NULL) is a no-op"
        );
        let mut p = std::mem::MaybeUninit::<sunrise_link_device_plugin_t>::zeroed();
        assert_eq!(tent_register_device_plugin(p.as_mut_ptr()), 0);
        let p = p.assume_init();
        assert_eq!((p.get_device_count.unwrap())(null_mut()), -1);
        assert_eq!(last_error(), "plugin context is NULL");
        assert_eq!(
            (p.destroy_plugin.unwrap())(null_mut()),
            0,
            "destroy(NULL) is a no-op"
        );
    }
}

fn callbacks(abi_version: u32, struct_size: u32) -> sunrise_link_host_callbacks_t {
    sunrise_link_host_callbacks_t {
        abi_version,
        struct_size,
        user_data: null_mut(),
        lookup_remote_buffer: None,
        log: None,
        notify_progress: None,
        local_machine_id: null(),
    }
}

#[test]
fn host_callbacks_struct_size_is_honoured() {
    unsafe extern "C" fn must_not_be_called(_: *mut c_void, _: i32, _: *const c_char) {
        std::process::abort()
    }
    // An older host that knows only the fields up to `lookup_remote_buffer`: the `log` slot
    // and the machine id past its size are garbage here and must be ignored.
    let cb = sunrise_link_host_callbacks_t {
        log: Some(must_not_be_called),
        local_machine_id: 1 as *const c_char,
        // abi_version + struct_size + user_data + lookup_remote_buffer
        ..callbacks(1, 24)
    };
    let mut t = null_mut();
    // SAFETY: valid callbacks of `struct_size` bytes and a writable out pointer.
    unsafe {
        assert_eq!(sunrise_link_transport_create(&cb, &mut t), 0);
        assert!(!t.is_null());
        // A failing install logs an error; nothing reaches the ignored slot.
        assert_eq!(
            sunrise_link_transport_install(t, b"{\"worker_threads\": 0}\0".as_ptr().cast()),
            SUNRISE_LINK_INVALID_ARGUMENT
        );
        assert_eq!(sunrise_link_transport_destroy(t), 0);
    }
}

#[test]
fn create_refuses_an_unset_version_or_a_short_struct() {
    for (cb, want) in [
        (callbacks(0, 48), "callbacks->abi_version is 0"),
        (callbacks(1, 4), "callbacks->struct_size is 4"),
        (callbacks(1, 0), "callbacks->struct_size is 0"),
    ] {
        let mut t = 7 as *mut sunrise_link_transport_t;
        // SAFETY: valid callbacks and a writable out pointer.
        let rc = unsafe { sunrise_link_transport_create(&cb, &mut t) };
        assert_eq!(rc, SUNRISE_LINK_INVALID_ARGUMENT, "{want}");
        assert!(last_error().starts_with(want), "{}", last_error());
        assert_eq!(t as usize, 7, "no output on failure");
    }
    // A newer host (a version above ours) is accepted: struct_size says what to read.
    let mut t = null_mut();
    // SAFETY: as above.
    unsafe {
        assert_eq!(sunrise_link_transport_create(&callbacks(9, 48), &mut t), 0);
        assert_eq!(sunrise_link_transport_destroy(t), 0);
    }
}

#[test]
fn plugin_get_honours_the_callers_size_and_refuses_below_8() {
    let full = std::mem::size_of::<sunrise_link_transport_plugin_t>();
    for size in [0u32, 4, 7] {
        let mut raw = [0xAAu8; 256];
        raw[4..8].copy_from_slice(&size.to_ne_bytes());
        // SAFETY: 256 writable bytes, more than the table.
        let rc = unsafe { sunrise_link_transport_plugin_get(raw.as_mut_ptr().cast()) };
        assert_eq!(rc, SUNRISE_LINK_INVALID_ARGUMENT, "size {size}");
        assert!(last_error().contains(&format!("out->struct_size is {size}")));
        assert!(
            raw[..4].iter().chain(&raw[8..]).all(|&b| b == 0xAA),
            "nothing written"
        );
    }
    // An older caller that knows 3 slots (8 + 3 pointers) gets exactly those.
    let mut raw = [0xAAu8; 256];
    raw[4..8].copy_from_slice(&32u32.to_ne_bytes());
    // SAFETY: as above.
    let rc = unsafe { sunrise_link_transport_plugin_get(raw.as_mut_ptr().cast()) };
    assert_eq!(rc, 0);
    assert_eq!(
        u32::from_ne_bytes(raw[0..4].try_into().unwrap()),
        SUNRISE_LINK_ABI_VERSION
    );
    assert_eq!(u32::from_ne_bytes(raw[4..8].try_into().unwrap()), 32);
    assert!(
        raw[32..].iter().all(|&b| b == 0xAA),
        "nothing past the caller's size"
    );
    // A newer caller: our table, then its own tail untouched.
    let mut raw = [0xAAu8; 512];
    raw[4..8].copy_from_slice(&512u32.to_ne_bytes());
    // SAFETY: as above.
    let rc = unsafe { sunrise_link_transport_plugin_get(raw.as_mut_ptr().cast()) };
    assert_eq!(rc, 0);
    assert_eq!(
        u32::from_ne_bytes(raw[4..8].try_into().unwrap()) as usize,
        full
    );
    assert!(raw[full..].iter().all(|&b| b == 0xAA));
}

#[test]
fn layouts() {
    use std::mem::size_of;
    assert_eq!(size_of::<sunrise_link_request_t>(), 40);
    assert_eq!(size_of::<sunrise_link_task_status_t>(), 16);
    assert_eq!(size_of::<sunrise_link_host_callbacks_t>(), 48);
    assert_eq!(
        size_of::<sunrise_link_remote_buffer_t>(),
        16 + 64 + 256 + 256
    );
    assert_eq!(size_of::<sunrise_link_capabilities_t>(), 8);
    assert_eq!(size_of::<sunrise_link_stats_t>(), (8 * 3 + 6 + 40) * 8);
    assert_eq!(size_of::<sunrise_link_transport_plugin_t>(), 8 + 24 * 8);
    assert_eq!(size_of::<sunrise_link_submit_ex_t>(), 48);
    assert_eq!(size_of::<sunrise_link_device_plugin_t>(), 72);
    assert_eq!(size_of::<sunrise_link_location_t>(), 48);
}
