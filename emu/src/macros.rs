//! The boundary every exported function runs in.

/// Defines one exported runtime function returning `tangError_t`.
///
/// The body runs after the call was counted, charged (the cost model) and after injected faults
/// were checked; a panic in it is caught and turned into `tangErrorUnknown`; a non-zero result
/// is stored as the calling thread's last error (except `tangErrorNotReady`, which is a query
/// answer, not an error).
macro_rules! export {
    ($(#[$m:meta])* fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> crate::types::tangError_t {
            enter!($name);
            if let Some(code) = crate::faults::check(stringify!($name)) {
                return crate::errors::record(code);
            }
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                || -> crate::types::tangError_t { $body },
            ))
            .unwrap_or(crate::errors::tangErrorUnknown);
            crate::errors::record(r)
        }
    };
}

/// Returns early with the error code when the expression is an `Err`.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(code) => return code,
        }
    };
}

/// What every counted runtime call does first: count the call, read the configuration (once per
/// process), pay the call's cost (`cost.rs`; one relaxed load when the cost is 0).
macro_rules! enter {
    ($name:ident) => {{
        static COUNTER: crate::counters::Counter =
            crate::counters::Counter::new(stringify!($name), true);
        const CLASS: usize = crate::cost::class_of(stringify!($name));
        COUNTER.hit();
        crate::state::ensure_config();
        crate::cost::pay(CLASS);
    }};
}
