//! The IPC handle codec: any text either decodes to 64 bytes that encode back to the same
//! text (upper-cased), or is refused with a message; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sunrise_link::tang::{hex_upper, parse_ipc_handle};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let valid = s.len() == 128 && s.bytes().all(|b| b.is_ascii_hexdigit());
        match parse_ipc_handle(s) {
            Ok(h) => {
                assert!(valid);
                assert_eq!(hex_upper(&h), s.to_uppercase());
            }
            Err(m) => {
                assert!(!valid);
                assert!(!m.is_empty());
            }
        }
    }
    if data.len() == 64 {
        let h = hex_upper(data);
        assert_eq!(parse_ipc_handle(&h).unwrap().as_slice(), data);
    }
});
