//! The location parser against TENT's LocationParser (`std::stoi` rules).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sunrise_link::engine::parse_location;

#[path = "../../tests/models/tent_location.rs"]
mod tent_location_model;
use tent_location_model::tent_location;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let (t, i) = tent_location(s);
        assert_eq!(parse_location(s), (t.as_str(), i), "{s:?}");
    }
});
