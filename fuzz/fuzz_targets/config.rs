//! The config parser: any text is a config within the documented ranges or an error with a
//! message; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sunrise_link::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for parsed in [
        Config::from_json(s, &mut |_| {}),
        Config::from_toml(s, &mut |_| {}),
    ] {
        match parsed {
            Ok(c) => {
                assert!((1..=256).contains(&c.worker_threads));
                assert!(c.port_striping_min_size >= 1);
                assert!((1..=1u64 << 32).contains(&c.max_sub_batch_size));
            }
            Err(m) => assert!(!m.is_empty()),
        }
    }
});
