//! The location parser against TENT's LocationParser (`std::stoi` rules).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sunrise_link::engine::parse_location;

fn tent(loc: &str) -> (&str, i32) {
    let Some((t, rest)) = loc.split_once(':') else {
        return ("*", -1);
    };
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let start = i;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == digits {
        return (t, -1);
    }
    (t, rest[start..i].parse::<i32>().unwrap_or(-1))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        assert_eq!(parse_location(s), tent(s), "{s:?}");
    }
});
