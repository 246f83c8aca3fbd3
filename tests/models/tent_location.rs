//! A model of TENT's `LocationParser`, shared by the deterministic fuzzer
//! (`tests/reliability/fuzz.rs`) and the libFuzzer target (`fuzz/fuzz_targets/location.rs`).

/// TENT's LocationParser: type before the first ':', index by `std::stoi` (leading C
/// whitespace, an optional sign, digits; no digits or out of int range: −1).
pub fn tent_location(loc: &str) -> (String, i32) {
    let Some((t, rest)) = loc.split_once(':') else {
        return ("*".into(), -1);
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
        return (t.into(), -1);
    }
    (t.into(), rest[start..i].parse::<i32>().unwrap_or(-1))
}
