//! Typed configuration of the transport: TENT's `transports/sunrise_link` keys plus ours.
//!
//! Sources: the JSON text of TENT's `transports/sunrise_link` subtree (from the host at
//! install), or, when the host passes none, a TOML file named by `SUNRISE_LINK_CONFIG`
//! (standalone use), or the defaults. Unknown keys are warned about; a wrong type or an
//! out-of-range value is an error naming the key.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;

/// Environment variable naming a TOML config file, used when the host passes no config.
pub const CONFIG_ENV: &str = "SUNRISE_LINK_CONFIG";

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// The largest value `max_sub_batch_size` accepts.
pub const MAX_SUB_BATCH_LIMIT: u64 = 1 << 22;

/// The transport's settings. Each key is read by its own parser (module `key`), so that a
/// wrong type or an out-of-range value is an error naming the key, as `install` reports it;
/// a missing key keeps its default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `enable` (TENT reads it before creating the transport; kept for completeness).
    #[serde(deserialize_with = "key::enable")]
    pub enable: bool,
    /// `async_memcpy_threshold` in bytes; 0 = every copy is synchronous.
    #[serde(deserialize_with = "key::async_memcpy_threshold")]
    pub async_memcpy_threshold: u64,
    /// `enable_port_striping`.
    #[serde(deserialize_with = "key::enable_port_striping")]
    pub enable_port_striping: bool,
    /// `port_striping_min_size` in bytes (upstream: 4 MiB, fixed).
    #[serde(deserialize_with = "key::port_striping_min_size")]
    pub port_striping_min_size: u64,
    /// `worker_threads`: accepted (1..=256) for configurations written for earlier versions,
    /// which ran copies on threads of their own; this version starts none, so it has no effect.
    #[serde(deserialize_with = "key::worker_threads")]
    pub worker_threads: usize,
    /// `runtime_lib_dir`: directory holding `libtangrt_shared.so` and `libptml_shared.so`;
    /// overrides the MC_TANGRT_* lookup.
    #[serde(deserialize_with = "key::runtime_lib_dir")]
    pub runtime_lib_dir: Option<String>,
    /// `max_sub_batch_size`: the largest `max_size` a sub-batch may be allocated with.
    #[serde(deserialize_with = "key::max_sub_batch_size")]
    pub max_sub_batch_size: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enable: true,
            async_memcpy_threshold: 0,
            enable_port_striping: false,
            port_striping_min_size: 4 * MIB,
            worker_threads: 0,
            runtime_lib_dir: None,
            max_sub_batch_size: 1 << 20,
        }
    }
}

/// A config object: the known keys, and whatever else it holds (warned about, then ignored).
#[derive(Deserialize)]
struct Document {
    #[serde(flatten)]
    config: Config,
    #[serde(flatten)]
    unknown: BTreeMap<String, Value>,
}

/// Parses a size: a plain non-negative integer counts in `plain_unit` bytes; a string is a
/// number with an optional unit B, KiB, MiB, GiB (also K/KB, M/MB, G/GB, all binary).
/// Hand-written: size crates read K/KB/M/MB as decimal, which would change documented values.
pub fn parse_size(key: &str, v: &Value, plain_unit: u64) -> Result<u64, String> {
    let overflow = || format!("{key}: value too large");
    match v {
        Value::Number(n) => {
            let Some(u) = n.as_u64() else {
                return Err(format!(
                    "{key}: expected a non-negative integer or a size string, got {n}"
                ));
            };
            u.checked_mul(plain_unit).ok_or_else(overflow)
        }
        Value::String(s) => {
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: u64 = num
                .parse()
                .map_err(|_| format!("{key}: cannot parse size {s:?}"))?;
            let mult = match unit.trim().to_ascii_lowercase().as_str() {
                "" => plain_unit,
                "b" => 1,
                "k" | "kb" | "kib" => KIB,
                "m" | "mb" | "mib" => MIB,
                "g" | "gb" | "gib" => 1024 * MIB,
                other => return Err(format!("{key}: unknown size unit {other:?} in {s:?}")),
            };
            n.checked_mul(mult).ok_or_else(overflow)
        }
        other => Err(format!("{key}: expected a size, got {other}")),
    }
}

fn as_bool(key: &str, v: &Value) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("{key}: expected true or false, got {v}"))
}

fn as_count(key: &str, v: &Value, max: u64) -> Result<u64, String> {
    let n = v
        .as_u64()
        .ok_or_else(|| format!("{key}: expected an integer, got {v}"))?;
    if !(1..=max).contains(&n) {
        return Err(format!("{key}: {n} is out of range 1..={max}"));
    }
    Ok(n)
}

/// One parser per key, for `#[serde(deserialize_with)]`: the value is read as JSON and checked
/// by hand, because serde's own type errors do not name the key and the sizes take units.
mod key {
    use super::*;

    macro_rules! keys {
        ($($name:ident -> $t:ty = $parse:expr;)*) => {$(
            pub(super) fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                let v = Value::deserialize(d)?;
                let parse: fn(&str, &Value) -> Result<$t, String> = $parse;
                parse(stringify!($name), &v).map_err(serde::de::Error::custom)
            }
        )*};
    }

    keys! {
        enable -> bool = as_bool;
        // Plain numbers are KiB, as upstream's code reads them (its docs say MiB).
        async_memcpy_threshold -> u64 = |k, v| parse_size(k, v, KIB);
        enable_port_striping -> bool = as_bool;
        port_striping_min_size -> u64 = |k, v| match parse_size(k, v, 1)? {
            0 => Err(format!("{k}: must be at least 1 byte")),
            n => Ok(n),
        };
        worker_threads -> usize = |k, v| as_count(k, v, 256).map(|n| n as usize);
        runtime_lib_dir -> Option<String> = |k, v| {
            let s = v
                .as_str()
                .ok_or_else(|| format!("{k}: expected a string, got {v}"))?;
            Ok((!s.is_empty()).then(|| s.to_string()))
        };
        // Task slots are made at allocation (about 48 bytes each): 2^22 tasks in one sub-batch
        // is far beyond any TENT batch and still fits in memory.
        max_sub_batch_size -> u64 = |k, v| as_count(k, v, MAX_SUB_BATCH_LIMIT);
    }
}

impl Config {
    /// Builds a config from a JSON object (TENT's subtree). `warn` receives one message per
    /// unknown key.
    pub fn from_value(v: &Value, warn: &mut dyn FnMut(String)) -> Result<Config, String> {
        match v {
            Value::Null => return Ok(Config::default()),
            Value::Object(_) => {}
            other => return Err(format!("config: expected an object, got {other}")),
        }
        let doc = Document::deserialize(v).map_err(|e| e.to_string())?;
        for k in doc.unknown.keys() {
            warn(format!("config: unknown key {k:?} ignored"));
        }
        Ok(doc.config)
    }

    /// Parses the JSON text of TENT's subtree.
    pub fn from_json(text: &str, warn: &mut dyn FnMut(String)) -> Result<Config, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("config: invalid JSON: {e}"))?;
        Config::from_value(&v, warn)
    }

    /// Parses TOML text (keys at the top level, or under `[transports.sunrise_link]`).
    pub fn from_toml(text: &str, warn: &mut dyn FnMut(String)) -> Result<Config, String> {
        let t: toml::Value =
            toml::from_str(text).map_err(|e| format!("config: invalid TOML: {e}"))?;
        let mut v = serde_json::to_value(t).map_err(|e| format!("config: {e}"))?;
        if let Some(sub) = v.pointer("/transports/sunrise_link") {
            v = sub.clone();
        }
        Config::from_value(&v, warn)
    }

    /// The host's JSON when given, else the TOML file named by `SUNRISE_LINK_CONFIG`, else
    /// the defaults.
    pub fn load(json: Option<&str>, warn: &mut dyn FnMut(String)) -> Result<Config, String> {
        if let Some(j) = json {
            return Config::from_json(j, warn);
        }
        match std::env::var(CONFIG_ENV) {
            Ok(path) if !path.is_empty() => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("config: cannot read {path} ({CONFIG_ENV}): {e}"))?;
                Config::from_toml(&text, warn)
            }
            _ => Ok(Config::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(j: &str) -> Result<Config, String> {
        Config::from_json(j, &mut |_| {})
    }

    #[test]
    fn defaults() {
        let c = parse("{}").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.async_memcpy_threshold, 0);
        assert!(!c.enable_port_striping);
        assert_eq!(c.port_striping_min_size, 4 << 20);
    }

    #[test]
    fn threshold_plain_number_is_kib_and_units_are_accepted() {
        assert_eq!(
            parse(r#"{"async_memcpy_threshold": 4}"#)
                .unwrap()
                .async_memcpy_threshold,
            4096
        );
        assert_eq!(
            parse(r#"{"async_memcpy_threshold": "4MiB"}"#)
                .unwrap()
                .async_memcpy_threshold,
            4 << 20
        );
        assert_eq!(
            parse(r#"{"async_memcpy_threshold": "64 KiB"}"#)
                .unwrap()
                .async_memcpy_threshold,
            64 << 10
        );
        assert_eq!(
            parse(r#"{"async_memcpy_threshold": "512B"}"#)
                .unwrap()
                .async_memcpy_threshold,
            512
        );
        // Upstream's int multiply overflowed above 2,097,151; we do not.
        assert_eq!(
            parse(r#"{"async_memcpy_threshold": 3000000}"#)
                .unwrap()
                .async_memcpy_threshold,
            3_000_000 * 1024
        );
    }

    #[test]
    fn wrong_types_and_ranges_are_rejected_with_the_key() {
        for bad in [
            r#"{"async_memcpy_threshold": -1}"#,
            r#"{"async_memcpy_threshold": "4 parsecs"}"#,
            r#"{"async_memcpy_threshold": true}"#,
            r#"{"enable_port_striping": "yes"}"#,
            r#"{"worker_threads": 0}"#,
            r#"{"worker_threads": 1.5}"#,
            r#"{"port_striping_min_size": 0}"#,
            r#"{"max_sub_batch_size": 4294967296}"#,
            r#"{"max_sub_batch_size": 4194305}"#,
            r#"{"async_memcpy_threshold": 18446744073709551615}"#,
            r#"[1]"#,
            r#"{"enable": }"#,
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(':'), "{bad}: {e}");
        }
        assert!(parse(r#"{"worker_threads": 0}"#)
            .unwrap_err()
            .contains("worker_threads"));
        assert_eq!(
            parse(r#"{"max_sub_batch_size": 4194304}"#)
                .unwrap()
                .max_sub_batch_size,
            MAX_SUB_BATCH_LIMIT
        );
    }

    #[test]
    fn messages_name_the_key_exactly() {
        for (bad, want) in [
            (
                r#"{"worker_threads": 0}"#,
                "worker_threads: 0 is out of range 1..=256",
            ),
            (
                r#"{"worker_threads": "2"}"#,
                "worker_threads: expected an integer, got \"2\"",
            ),
            (
                r#"{"enable": null}"#,
                "enable: expected true or false, got null",
            ),
            (
                r#"{"port_striping_min_size": "0MiB"}"#,
                "port_striping_min_size: must be at least 1 byte",
            ),
            (
                r#"{"runtime_lib_dir": 7}"#,
                "runtime_lib_dir: expected a string, got 7",
            ),
            (
                r#"{"async_memcpy_threshold": "4 parsecs"}"#,
                "async_memcpy_threshold: unknown size unit \"parsecs\" in \"4 parsecs\"",
            ),
            (
                r#"{"max_sub_batch_size": 0}"#,
                "max_sub_batch_size: 0 is out of range 1..=4194304",
            ),
            ("7", "config: expected an object, got 7"),
        ] {
            assert_eq!(parse(bad).unwrap_err(), want, "{bad}");
        }
        assert_eq!(parse("null").unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_warn() {
        let mut w = Vec::new();
        let c = Config::from_json(r#"{"enable": true, "bogus": 1}"#, &mut |m| w.push(m)).unwrap();
        assert!(c.enable);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("bogus"));
    }

    #[test]
    fn toml_file_form() {
        let c = Config::from_toml(
            "[transports.sunrise_link]\nenable_port_striping = true\nasync_memcpy_threshold = \"1MiB\"\nworker_threads = 2\n",
            &mut |_| {},
        )
        .unwrap();
        assert!(c.enable_port_striping);
        assert_eq!(c.async_memcpy_threshold, 1 << 20);
        assert_eq!(c.worker_threads, 2);
        let flat = Config::from_toml("runtime_lib_dir = \"/x\"\n", &mut |_| {}).unwrap();
        assert_eq!(flat.runtime_lib_dir.as_deref(), Some("/x"));
    }
}
