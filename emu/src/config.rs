//! Emulator configuration: topology, link model and faults, from TOML and the environment.
//!
//! The schema is documented in `emu/README.md`; keep the two in step.

use crate::cost::{self, CLASSES};
use std::collections::HashMap;

pub const PORTS: u32 = 10;
pub const MAX_DEVICES: u32 = 128;
pub const DEFAULT_DEVICES: u32 = 8;
pub const DEFAULT_MEMORY: u64 = 16 << 30;

/// One physical link: (device, port) <-> (device, port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub a: (u32, u32),
    pub b: (u32, u32),
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PortModel {
    /// Bytes per second; `None` = unthrottled.
    pub bandwidth: Option<f64>,
    pub latency_us: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FaultMode {
    Always,
    /// Only the n-th call (1-based) counted from when the fault was installed.
    Nth(u64),
    /// Every call from the n-th on.
    After(u64),
    Probability {
        p: f64,
        seed: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpec {
    pub function: String,
    pub code: u32,
    pub mode: FaultMode,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub devices: u32,
    pub memory_per_device: u64,
    pub links: Vec<Link>,
    pub model_default: PortModel,
    pub model_ports: HashMap<(u32, u32), PortModel>,
    pub faults: Vec<FaultSpec>,
    pub memcpy_peer_unsupported: bool,
    pub removed_devices: Vec<u32>,
    /// (device, port): the link at that port is down (at both of its ends).
    pub down_links: Vec<(u32, u32)>,
    /// `tangPointerGetAttributes` on device memory fails unless its device is current (what
    /// Mooncake observed on some stacks).
    pub attributes_need_current_device: bool,
    /// Busy-wait per runtime call, by class (`cost::NAMES`), in microseconds.
    pub call_cost_us: [f64; CLASSES],
}

impl Default for Config {
    fn default() -> Self {
        Config {
            devices: DEFAULT_DEVICES,
            memory_per_device: DEFAULT_MEMORY,
            links: full_mesh(DEFAULT_DEVICES),
            model_default: PortModel::default(),
            model_ports: HashMap::new(),
            faults: Vec::new(),
            memcpy_peer_unsupported: false,
            removed_devices: Vec::new(),
            down_links: Vec::new(),
            attributes_need_current_device: false,
            call_cost_us: [0.0; CLASSES],
        }
    }
}

/// The default topology.
///
/// Up to 11 devices: a full mesh, device `d` reaching device `e` on its port `e` if `e < d`,
/// else `e - 1` (the index of `e` among the other devices).
///
/// More than 11 devices: a ring with chords, each device linked to its 10 nearest neighbours:
/// port `2k` reaches `(d + k + 1) mod n`, port `2k + 1` reaches `(d - k - 1) mod n`, k = 0..4.
pub fn full_mesh(n: u32) -> Vec<Link> {
    let mut links = Vec::new();
    if n <= PORTS + 1 {
        for d in 0..n {
            for e in d + 1..n {
                links.push(Link {
                    a: (d, e - 1),
                    b: (e, d),
                });
            }
        }
    } else {
        for d in 0..n {
            for k in 0..PORTS / 2 {
                let e = (d + k + 1) % n;
                links.push(Link {
                    a: (d, 2 * k),
                    b: (e, 2 * k + 1),
                });
            }
        }
    }
    links
}

impl Config {
    /// Defaults, then the file named by `TANG_EMU_CONFIG`, then `TANG_EMU_DEVICES`,
    /// `TANG_EMU_FAULTS` and `TANG_EMU_CALL_COST_US`. A malformed setting is reported on stderr and ignored (the runtime must
    /// still load).
    pub fn from_env() -> Config {
        let mut cfg = Config::default();
        if let Ok(path) = std::env::var("TANG_EMU_CONFIG") {
            if !path.is_empty() {
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        if let Err(e) = cfg.apply_toml(&text, true) {
                            eprintln!("tang-emu: ignoring {path}: {e}");
                        }
                    }
                    Err(e) => eprintln!("tang-emu: cannot read TANG_EMU_CONFIG={path}: {e}"),
                }
            }
        }
        if let Ok(v) = std::env::var("TANG_EMU_DEVICES") {
            match v.trim().parse::<u32>() {
                Ok(n) if n <= MAX_DEVICES => {
                    if cfg.devices != n {
                        cfg.devices = n;
                        cfg.links = full_mesh(n);
                    }
                }
                _ => {
                    eprintln!("tang-emu: ignoring TANG_EMU_DEVICES={v}: expected 0..={MAX_DEVICES}")
                }
            }
        }
        if let Ok(v) = std::env::var("TANG_EMU_FAULTS") {
            if let Err(e) = cfg.apply_fault_spec(&v) {
                eprintln!("tang-emu: ignoring TANG_EMU_FAULTS: {e}");
            }
        }
        if let Ok(v) = std::env::var("TANG_EMU_CALL_COST_US") {
            if let Err(e) = cfg.apply_call_cost_spec(&v) {
                eprintln!("tang-emu: ignoring TANG_EMU_CALL_COST_US={v}: {e}");
            }
        }
        cfg
    }

    /// Applies a TOML document: every key present replaces that setting; absent keys keep
    /// theirs. `full` is false when only runtime-changeable keys are wanted (checked by caller).
    pub fn apply_toml(&mut self, text: &str, _full: bool) -> Result<(), String> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let mut next = self.clone();
        for key in doc.keys() {
            match key.as_str() {
                "devices"
                | "memory_per_device"
                | "topology"
                | "link"
                | "link_model"
                | "fault"
                | "memcpy_peer_unsupported"
                | "removed_devices"
                | "down_links"
                | "attributes_need_current_device"
                | "call_cost_us" => {}
                other => return Err(format!("unknown key `{other}`")),
            }
        }
        let mut topology_changed = false;
        if let Some(v) = doc.get("devices") {
            let n = as_u64(v, "devices")?;
            if n > MAX_DEVICES as u64 {
                return Err(format!("devices = {n}: at most {MAX_DEVICES}"));
            }
            next.devices = n as u32;
            topology_changed = true;
        }
        if let Some(v) = doc.get("memory_per_device") {
            next.memory_per_device = as_bytes(v, "memory_per_device")?;
        }
        if doc.contains_key("topology") || doc.contains_key("link") || topology_changed {
            let base = match doc.get("topology") {
                None => "full_mesh",
                Some(toml::Value::String(s)) => s.as_str(),
                Some(_) => return Err("topology: expected \"full_mesh\" or \"none\"".into()),
            };
            let mut links = match base {
                "full_mesh" => full_mesh(next.devices),
                "none" => Vec::new(),
                other => return Err(format!("topology = {other:?}: expected full_mesh or none")),
            };
            if let Some(v) = doc.get("link") {
                let arr = v
                    .as_array()
                    .ok_or("link: expected an array of tables [[link]]")?;
                for item in arr {
                    let t = item.as_table().ok_or("link: expected tables")?;
                    let a = as_pair(t.get("a").ok_or("link: missing a = [device, port]")?, "a")?;
                    let b = as_pair(t.get("b").ok_or("link: missing b = [device, port]")?, "b")?;
                    links.push(Link { a, b });
                }
            }
            next.links = links;
        }
        if let Some(v) = doc.get("link_model") {
            let t = v.as_table().ok_or("link_model: expected a table")?;
            next.model_default = parse_model(t, PortModel::default())?;
            next.model_ports.clear();
            if let Some(ports) = t.get("port") {
                let arr = ports
                    .as_array()
                    .ok_or("link_model.port: expected [[link_model.port]]")?;
                for item in arr {
                    let pt = item.as_table().ok_or("link_model.port: expected tables")?;
                    let dev = as_u64(
                        pt.get("device").ok_or("link_model.port: missing device")?,
                        "device",
                    )?;
                    let port = as_u64(
                        pt.get("port").ok_or("link_model.port: missing port")?,
                        "port",
                    )?;
                    let m = parse_model(pt, next.model_default)?;
                    next.model_ports.insert((dev as u32, port as u32), m);
                }
            }
        }
        if let Some(v) = doc.get("fault") {
            let arr = v.as_array().ok_or("fault: expected [[fault]] tables")?;
            let mut faults = Vec::new();
            for item in arr {
                let t = item.as_table().ok_or("fault: expected tables")?;
                faults.push(parse_fault(t)?);
            }
            next.faults = faults;
        }
        if let Some(v) = doc.get("memcpy_peer_unsupported") {
            next.memcpy_peer_unsupported = v
                .as_bool()
                .ok_or("memcpy_peer_unsupported: expected true or false")?;
        }
        if let Some(v) = doc.get("attributes_need_current_device") {
            next.attributes_need_current_device = v
                .as_bool()
                .ok_or("attributes_need_current_device: expected true or false")?;
        }
        if let Some(v) = doc.get("removed_devices") {
            let arr = v.as_array().ok_or("removed_devices: expected an array")?;
            next.removed_devices = arr
                .iter()
                .map(|x| as_u64(x, "removed_devices").map(|n| n as u32))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = doc.get("down_links") {
            let arr = v
                .as_array()
                .ok_or("down_links: expected [[device, port], ...]")?;
            next.down_links = arr
                .iter()
                .map(|x| as_pair(x, "down_links"))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = doc.get("call_cost_us") {
            next.call_cost_us = parse_call_cost(v)?;
        }
        next.validate()?;
        *self = next;
        Ok(())
    }

    /// `TANG_EMU_CALL_COST_US` syntax (see README): a number of microseconds for every class,
    /// or entries `CLASS=US` separated by `,` or `;`, where CLASS is a class name or `all`
    /// (`all` is applied first, whatever its position). Classes not named keep their setting.
    pub fn apply_call_cost_spec(&mut self, spec: &str) -> Result<(), String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Ok(());
        }
        if let Ok(v) = spec.parse::<f64>() {
            self.call_cost_us = [check_cost(v, "all")?; CLASSES];
            return Ok(());
        }
        let mut next = self.call_cost_us;
        let mut named: Vec<(usize, f64)> = Vec::new();
        for entry in spec
            .split([',', ';'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (k, v) = entry
                .split_once('=')
                .ok_or(format!("bad entry `{entry}`: expected CLASS=MICROSECONDS"))?;
            let (k, v) = (k.trim(), v.trim());
            let us: f64 = v
                .parse()
                .map_err(|_| format!("bad entry `{entry}`: {v:?} is not a number"))?;
            let us = check_cost(us, k)?;
            if k == "all" {
                next = [us; CLASSES];
            } else {
                let c = cost::class_named(k).ok_or_else(|| unknown_class(k))?;
                named.push((c, us));
            }
        }
        for (c, us) in named {
            next[c] = us;
        }
        self.call_cost_us = next;
        Ok(())
    }

    /// `TANG_EMU_FAULTS` syntax (see README): entries separated by `;` or `,`:
    /// `NAME:CODE[:always|:nth=N|:after=N|:p=P[:seed=S]]`, `memcpy_peer_unsupported`,
    /// `remove_device=D`, `link_down=D.P`. Entries are added to the configured ones.
    pub fn apply_fault_spec(&mut self, spec: &str) -> Result<(), String> {
        let mut next = self.clone();
        for entry in spec
            .split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if entry == "memcpy_peer_unsupported" {
                next.memcpy_peer_unsupported = true;
                continue;
            }
            if entry == "attributes_need_current_device" {
                next.attributes_need_current_device = true;
                continue;
            }
            if let Some(d) = entry.strip_prefix("remove_device=") {
                next.removed_devices
                    .push(d.parse().map_err(|_| format!("bad entry `{entry}`"))?);
                continue;
            }
            if let Some(dp) = entry.strip_prefix("link_down=") {
                let (d, p) = dp
                    .split_once('.')
                    .ok_or(format!("bad entry `{entry}`: link_down=D.P"))?;
                let d = d.parse().map_err(|_| format!("bad entry `{entry}`"))?;
                let p = p.parse().map_err(|_| format!("bad entry `{entry}`"))?;
                next.down_links.push((d, p));
                continue;
            }
            let mut parts = entry.split(':');
            let function = parts.next().unwrap_or_default().to_string();
            let code: u32 = parts
                .next()
                .ok_or(format!("bad entry `{entry}`: expected NAME:CODE[:MODE]"))?
                .parse()
                .map_err(|_| format!("bad entry `{entry}`: CODE must be an integer"))?;
            let mut mode = FaultMode::Always;
            let mut seed = 0u64;
            let mut p = None;
            for m in parts {
                if m == "always" {
                    mode = FaultMode::Always;
                } else if let Some(n) = m.strip_prefix("nth=") {
                    mode = FaultMode::Nth(n.parse().map_err(|_| format!("bad nth in `{entry}`"))?);
                } else if let Some(n) = m.strip_prefix("after=") {
                    mode =
                        FaultMode::After(n.parse().map_err(|_| format!("bad after in `{entry}`"))?);
                } else if let Some(x) = m.strip_prefix("p=") {
                    p = Some(
                        x.parse::<f64>()
                            .map_err(|_| format!("bad p in `{entry}`"))?,
                    );
                } else if let Some(x) = m.strip_prefix("seed=") {
                    seed = x.parse().map_err(|_| format!("bad seed in `{entry}`"))?;
                } else {
                    return Err(format!("bad mode `{m}` in `{entry}`"));
                }
            }
            if let Some(p) = p {
                mode = FaultMode::Probability { p, seed };
            }
            next.faults.push(FaultSpec {
                function,
                code,
                mode,
            });
        }
        next.validate()?;
        *self = next;
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        let mut used: HashMap<(u32, u32), ()> = HashMap::new();
        for l in &self.links {
            for end in [l.a, l.b] {
                if end.0 >= self.devices {
                    return Err(format!(
                        "link {:?}-{:?}: device {} out of range",
                        l.a, l.b, end.0
                    ));
                }
                if end.1 >= PORTS {
                    return Err(format!(
                        "link {:?}-{:?}: port {} out of range 0..9",
                        l.a, l.b, end.1
                    ));
                }
                if used.insert(end, ()).is_some() {
                    return Err(format!(
                        "port {} of device {} is linked twice",
                        end.1, end.0
                    ));
                }
            }
            if l.a.0 == l.b.0 {
                return Err(format!(
                    "link {:?}-{:?} connects a device to itself",
                    l.a, l.b
                ));
            }
        }
        for f in &self.faults {
            if let FaultMode::Probability { p, .. } = f.mode {
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!(
                        "fault {}: probability {p} outside 0..1",
                        f.function
                    ));
                }
            }
            if f.function.is_empty() {
                return Err("fault: empty function name".into());
            }
        }
        Ok(())
    }

    /// The far end of `(dev, port)`, if a link is configured there.
    pub fn peer_of(&self, dev: u32, port: u32) -> Option<(u32, u32)> {
        self.links.iter().find_map(|l| {
            if l.a == (dev, port) {
                Some(l.b)
            } else if l.b == (dev, port) {
                Some(l.a)
            } else {
                None
            }
        })
    }

    /// Whether the link at `(dev, port)` is up (configured, not down at either end, and neither
    /// device removed).
    pub fn link_up(&self, dev: u32, port: u32) -> Option<(u32, u32)> {
        let far = self.peer_of(dev, port)?;
        if self.down_links.contains(&(dev, port))
            || self.down_links.contains(&far)
            || self.removed_devices.contains(&dev)
            || self.removed_devices.contains(&far.0)
        {
            return None;
        }
        Some(far)
    }

    pub fn model(&self, dev: u32, port: u32) -> PortModel {
        self.model_ports
            .get(&(dev, port))
            .copied()
            .unwrap_or(self.model_default)
    }
}

fn parse_model(t: &toml::Table, base: PortModel) -> Result<PortModel, String> {
    let mut m = base;
    for key in t.keys() {
        match key.as_str() {
            "bandwidth" | "latency_us" | "port" | "device" => {}
            other => return Err(format!("link_model: unknown key `{other}`")),
        }
    }
    if let Some(v) = t.get("bandwidth") {
        let bw = match v {
            toml::Value::Integer(i) if *i > 0 => *i as f64,
            toml::Value::Float(f) if *f > 0.0 => *f,
            toml::Value::String(s) => parse_size(s.trim_end_matches("/s"))? as f64,
            _ => return Err("bandwidth: expected bytes per second > 0".into()),
        };
        m.bandwidth = Some(bw);
    }
    if let Some(v) = t.get("latency_us") {
        m.latency_us = match v {
            toml::Value::Integer(i) if *i >= 0 => *i as f64,
            toml::Value::Float(f) if *f >= 0.0 => *f,
            _ => return Err("latency_us: expected a number >= 0".into()),
        };
    }
    Ok(m)
}

fn unknown_class(k: &str) -> String {
    format!(
        "unknown call class `{k}` (expected all, {})",
        cost::NAMES.join(", ")
    )
}

fn check_cost(us: f64, what: &str) -> Result<f64, String> {
    if !us.is_finite() || !(0.0..=cost::MAX_US).contains(&us) {
        return Err(format!(
            "call_cost_us.{what} = {us}: expected microseconds in 0..={}",
            cost::MAX_US
        ));
    }
    Ok(us)
}

/// `call_cost_us = US` (every class) or a table `[call_cost_us]` with `all` and/or class keys;
/// replaces the whole setting (classes not given are 0).
fn parse_call_cost(v: &toml::Value) -> Result<[f64; CLASSES], String> {
    let num = |v: &toml::Value, what: &str| -> Result<f64, String> {
        match v {
            toml::Value::Integer(i) => check_cost(*i as f64, what),
            toml::Value::Float(f) => check_cost(*f, what),
            _ => Err(format!(
                "call_cost_us.{what}: expected a number of microseconds"
            )),
        }
    };
    let t = match v {
        toml::Value::Integer(_) | toml::Value::Float(_) => {
            return Ok([num(v, "all")?; CLASSES]);
        }
        toml::Value::Table(t) => t,
        _ => {
            return Err(
                "call_cost_us: expected a table [call_cost_us] (or a number for every class)"
                    .into(),
            )
        }
    };
    let mut out = [0.0; CLASSES];
    if let Some(v) = t.get("all") {
        out = [num(v, "all")?; CLASSES];
    }
    for (k, v) in t {
        if k == "all" {
            continue;
        }
        let c =
            cost::class_named(k).ok_or_else(|| format!("call_cost_us: {}", unknown_class(k)))?;
        out[c] = num(v, k)?;
    }
    Ok(out)
}

fn parse_fault(t: &toml::Table) -> Result<FaultSpec, String> {
    for key in t.keys() {
        match key.as_str() {
            "function" | "code" | "mode" | "nth" | "after" | "probability" | "seed" => {}
            other => return Err(format!("fault: unknown key `{other}`")),
        }
    }
    let function = t
        .get("function")
        .and_then(|v| v.as_str())
        .ok_or("fault: missing function = \"name\"")?
        .to_string();
    let code = as_u64(t.get("code").ok_or("fault: missing code")?, "code")? as u32;
    let mode = if let Some(n) = t.get("nth") {
        FaultMode::Nth(as_u64(n, "nth")?)
    } else if let Some(n) = t.get("after") {
        FaultMode::After(as_u64(n, "after")?)
    } else if let Some(p) = t.get("probability") {
        let p = match p {
            toml::Value::Float(f) => *f,
            toml::Value::Integer(i) => *i as f64,
            _ => return Err("probability: expected a number".into()),
        };
        let seed = match t.get("seed") {
            Some(s) => as_u64(s, "seed")?,
            None => 0,
        };
        FaultMode::Probability { p, seed }
    } else {
        FaultMode::Always
    };
    Ok(FaultSpec {
        function,
        code,
        mode,
    })
}

fn as_u64(v: &toml::Value, what: &str) -> Result<u64, String> {
    match v {
        toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
        _ => Err(format!("{what}: expected a non-negative integer")),
    }
}

fn as_bytes(v: &toml::Value, what: &str) -> Result<u64, String> {
    match v {
        toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
        toml::Value::String(s) => parse_size(s),
        _ => Err(format!(
            "{what}: expected bytes (integer) or a size such as \"16GiB\""
        )),
    }
}

fn as_pair(v: &toml::Value, what: &str) -> Result<(u32, u32), String> {
    match v.as_array().map(|a| a.as_slice()) {
        Some([d, p]) => Ok((as_u64(d, what)? as u32, as_u64(p, what)? as u32)),
        _ => Err(format!("{what}: expected [device, port]")),
    }
}

/// "64MiB", "16GiB", "10GB", "4096", "1.5GiB".
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "K" | "KiB" => 1024.0,
        "M" | "MiB" => 1024.0 * 1024.0,
        "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "T" | "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        other => return Err(format!("bad size unit {other:?} in {s:?}")),
    };
    Ok((n * mult) as u64)
}
