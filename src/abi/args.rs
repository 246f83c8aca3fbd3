//! Reading and writing the raw pointers C passes in: every dereference of a caller's pointer in
//! the library goes through one of these, after its NULL check. Each returns an `Error` naming
//! the argument, for use with `?` inside `export!`.

use crate::engine::Error;
use std::ffi::{c_char, CStr};

/// The last path segment of `T`'s name (`sunrise_link_host_callbacks_t`).
fn type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Fails with INVALID_ARGUMENT when `p` is NULL.
pub(crate) fn non_null<T>(p: *const T, what: &str) -> Result<(), Error> {
    if p.is_null() {
        Err(Error::invalid(format!("{what} is NULL")))
    } else {
        Ok(())
    }
}

/// An output argument, as a reference (written only on success by the caller's code).
///
/// # Safety
/// `p` is NULL or points to a writable `T` that nothing else uses during the call.
pub(crate) unsafe fn out<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Error> {
    non_null(p, what)?;
    // SAFETY: non-NULL (checked above), writable and unaliased per this function's contract.
    Ok(unsafe { &mut *p })
}

/// An optional C string (NULL -> None); not UTF-8 is an error.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(Some)
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// A required C string.
///
/// # Safety
/// As [`opt_str`].
pub(crate) unsafe fn str<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    // SAFETY: forwarded contract.
    unsafe { opt_str(p, what) }?.ok_or_else(|| Error::invalid(format!("{what} is NULL")))
}

/// Copies `s` NUL-terminated into `buf[..len]`; fails (writing nothing) when it does not fit.
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes.
pub(crate) unsafe fn write_str(
    buf: *mut c_char,
    len: usize,
    s: &str,
    what: &str,
) -> Result<(), Error> {
    non_null(buf, what)?;
    if s.len() + 1 > len {
        return Err(Error::invalid(format!(
            "{what}: buffer of {len} bytes is too small for {} bytes",
            s.len() + 1
        )));
    }
    // SAFETY: `buf` is non-NULL with `len` >= s.len() + 1 writable bytes (checked above), and
    // cannot overlap the library's own `s`.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr().cast::<c_char>(), buf, s.len());
        *buf.add(s.len()) = 0;
    }
    Ok(())
}

/// Reads a versioned struct that starts with `abi_version: u32, struct_size: u32`: the first
/// `min(struct_size, size_of::<T>())` bytes over `base` (a newer caller's tail is ignored, an
/// older caller's missing fields keep `base`'s values). A `struct_size` below 8 is refused.
///
/// # Safety
/// `p` is NULL or points to at least `struct_size` readable bytes (and at least 8), and every
/// byte pattern of the copied prefix is a valid `T` prefix (plain C data, `Option` of fn
/// pointers, raw pointers).
pub(crate) unsafe fn read_versioned<T>(p: *const T, base: T, what: &str) -> Result<T, Error> {
    non_null(p, what)?;
    // SAFETY: non-NULL; the caller promised at least 8 readable bytes, and struct_size is the
    // second u32 of every versioned struct.
    let given = unsafe { p.cast::<u32>().add(1).read_unaligned() } as usize;
    if given < 8 {
        return Err(Error::invalid(format!(
            "{what}->struct_size is {given}; set it to sizeof({})",
            type_name::<T>()
        )));
    }
    let mut v = base;
    let n = given.min(std::mem::size_of::<T>());
    // SAFETY: `given` readable bytes at `p` (contract), `n` <= both sizes, distinct objects.
    unsafe { std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&mut v as *mut T).cast::<u8>(), n) };
    Ok(v)
}

/// Writes the first `min(struct_size, size_of::<T>())` bytes of `v` over `*p`, where
/// `struct_size` is what the caller set in `*p`; returns the bytes written. Slots past an older
/// caller's size are not written; a newer caller's tail is left untouched; `struct_size` is
/// set to the bytes written. A `struct_size` below 8 is refused, writing nothing.
///
/// # Safety
/// `p` is NULL or points to at least `struct_size` writable bytes (and at least 8).
pub(crate) unsafe fn write_versioned<T>(p: *mut T, v: &T, what: &str) -> Result<usize, Error> {
    non_null(p, what)?;
    // SAFETY: non-NULL, at least 8 readable bytes (contract); struct_size is the second u32.
    let want = unsafe { p.cast::<u32>().add(1).read_unaligned() } as usize;
    if want < 8 {
        return Err(Error::invalid(format!(
            "{what}->struct_size is {want}; set it to sizeof({})",
            type_name::<T>()
        )));
    }
    let n = want.min(std::mem::size_of::<T>());
    // SAFETY: `want` >= n >= 8 writable bytes at `p` (contract); `v` is the library's own
    // value; struct_size is the second u32.
    unsafe {
        std::ptr::copy_nonoverlapping((v as *const T).cast::<u8>(), p.cast::<u8>(), n);
        p.cast::<u32>().add(1).write_unaligned(n as u32);
    }
    Ok(n)
}
