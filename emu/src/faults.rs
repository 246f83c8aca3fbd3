//! Injected failures of named functions.

use crate::config::{FaultMode, FaultSpec};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

struct Active {
    spec: FaultSpec,
    /// Calls of the function seen since the fault was installed.
    calls: AtomicU64,
    rng: Mutex<u64>,
}

static ANY: AtomicBool = AtomicBool::new(false);
static FAULTS: RwLock<Vec<Active>> = RwLock::new(Vec::new());

/// Replaces the installed faults.
pub fn install(specs: &[FaultSpec]) {
    let mut f = FAULTS.write().unwrap_or_else(|e| e.into_inner());
    *f = specs
        .iter()
        .map(|s| Active {
            spec: s.clone(),
            calls: AtomicU64::new(0),
            rng: Mutex::new(match s.mode {
                FaultMode::Probability { seed, .. } => seed ^ 0x9e37_79b9_7f4a_7c15,
                _ => 0,
            }),
        })
        .collect();
    ANY.store(!f.is_empty(), Ordering::Release);
}

/// The code a call of `name` must fail with, if a fault says so. The caller has made sure the
/// configuration (and so `TANG_EMU_FAULTS`) was read (`state::ensure_config`).
pub fn check(name: &str) -> Option<u32> {
    if !ANY.load(Ordering::Acquire) {
        return None;
    }
    let f = FAULTS.read().unwrap_or_else(|e| e.into_inner());
    for a in f.iter().filter(|a| a.spec.function == name) {
        let n = a.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let fire = match a.spec.mode {
            FaultMode::Always => true,
            FaultMode::Nth(k) => n == k,
            FaultMode::After(k) => n >= k,
            FaultMode::Probability { p, .. } => {
                let mut s = a.rng.lock().unwrap_or_else(|e| e.into_inner());
                // splitmix64: deterministic for a given seed.
                *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = *s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                ((z >> 11) as f64 / (1u64 << 53) as f64) < p
            }
        };
        if fire {
            return Some(a.spec.code);
        }
    }
    None
}

/// Held across `fork` (see `fork.rs`).
pub fn lock_for_fork() -> Box<dyn std::any::Any> {
    Box::new(FAULTS.write().unwrap_or_else(|e| e.into_inner()))
}
