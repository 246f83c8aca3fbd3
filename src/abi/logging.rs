//! Routes the `log` crate to the host's log callback (the most recently created transport
//! that gave one), or, standalone, to stderr at the level named by `SUNRISE_LINK_LOG`
//! (error, warn, info, debug, trace). Without either the library prints nothing.

use parking_lot::RwLock;
use std::ffi::{c_char, c_void, CString};
use std::sync::Once;

/// Environment variable with the stderr log level for standalone use.
pub const LOG_ENV: &str = "SUNRISE_LINK_LOG";

/// The host's log callback type.
pub type LogFn = unsafe extern "C" fn(*mut c_void, i32, *const c_char);

#[derive(Clone, Copy)]
struct Sink {
    owner: usize,
    f: LogFn,
    user_data: usize,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

thread_local! {
    /// Set while this thread runs the host's log callback.
    static IN_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
static INIT: Once = Once::new();

struct Logger;

static LOGGER: Logger = Logger;

fn level_code(l: log::Level) -> i32 {
    match l {
        log::Level::Error => 0,
        log::Level::Warn => 1,
        log::Level::Info => 2,
        log::Level::Debug => 3,
        log::Level::Trace => 4,
    }
}

fn env_level() -> Option<log::LevelFilter> {
    std::env::var(LOG_ENV).ok().and_then(|v| v.parse().ok())
}

impl log::Log for Logger {
    fn enabled(&self, _m: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        if !r.target().starts_with("sunrise_link") {
            return;
        }
        // A message logged from inside the host's callback (on this thread) is dropped: the
        // lock below is already held here.
        if IN_CALLBACK.with(|c| c.get()) {
            return;
        }
        // The read lock is held while the callback runs, so `clear_sink` (at destroy) waits
        // for calls in progress: the host may free `user_data` once destroy returns.
        let sink = SINK.read();
        match *sink {
            Some(s) => {
                let msg = CString::new(r.args().to_string().replace('\0', " ")).unwrap_or_default();
                IN_CALLBACK.with(|c| c.set(true));
                // SAFETY: the host promised a thread-safe callback valid until the transport
                // that registered it is destroyed (which unregisters it first).
                unsafe {
                    (s.f)(
                        s.user_data as *mut c_void,
                        level_code(r.level()),
                        msg.as_ptr(),
                    )
                };
                IN_CALLBACK.with(|c| c.set(false));
            }
            None => eprintln!("[sunrise_link {}] {}", r.level(), r.args()),
        }
    }
    fn flush(&self) {}
}

fn init() {
    INIT.call_once(|| {
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(env_level().unwrap_or(log::LevelFilter::Off));
        }
    });
}

/// Called once per library use: standalone stderr logging if `SUNRISE_LINK_LOG` is set.
pub fn ensure_init() {
    init();
}

/// Routes logs to `f` on behalf of transport `owner`.
pub fn set_sink(owner: usize, f: LogFn, user_data: *mut c_void) {
    init();
    *SINK.write() = Some(Sink {
        owner,
        f,
        user_data: user_data as usize,
    });
    if log::max_level() == log::LevelFilter::Off {
        log::set_max_level(env_level().unwrap_or(log::LevelFilter::Info));
    }
}

/// Stops routing to the sink of `owner`, if it is the current one.
pub fn clear_sink(owner: usize) {
    let mut g = SINK.write();
    if g.is_some_and(|s| s.owner == owner) {
        *g = None;
        if env_level().is_none() {
            log::set_max_level(log::LevelFilter::Off);
        }
    }
}
