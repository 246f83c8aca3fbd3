//! The config parser: any text is a config within the documented ranges or an error with a
//! message; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sunrise_link::config::{Config, MAX_SUB_BATCH_LIMIT};

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
                // 0 = not given: chosen at install.
                assert!(c.worker_threads <= 256);
                assert!(c.port_striping_min_size >= 1);
                assert!((1..=MAX_SUB_BATCH_LIMIT).contains(&c.max_sub_batch_size));
            }
            Err(m) => assert!(!m.is_empty()),
        }
    }
});
