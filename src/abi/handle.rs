//! The opaque handles C holds, one kind each: created from a Rust value, borrowed for the
//! length of a call, destroyed once. Borrowing NULL is INVALID_ARGUMENT naming the handle;
//! destroying NULL is a no-op.

use crate::engine::Error;
use std::marker::PhantomData;

/// One kind of handle: C sees `*mut Opaque`, the library owns a boxed `Value` behind it.
pub(crate) struct Kind<Opaque, Value> {
    what: &'static str,
    _types: PhantomData<(*mut Opaque, *mut Value)>,
}

// SAFETY: a `Kind` holds only a name; the PhantomData of raw pointers only fixes the types.
unsafe impl<O, V> Sync for Kind<O, V> {}

impl<Opaque, Value> Kind<Opaque, Value> {
    pub(crate) const fn new(what: &'static str) -> Self {
        Kind {
            what,
            _types: PhantomData,
        }
    }

    /// Hands `v` to C.
    pub(crate) fn create(&self, v: Value) -> *mut Opaque {
        Box::into_raw(Box::new(v)).cast::<Opaque>()
    }

    /// The value behind a handle, for the length of one call.
    ///
    /// # Safety
    /// `h` is NULL or was returned by [`Kind::create`] of this kind and not destroyed yet.
    pub(crate) unsafe fn borrow<'a>(&self, h: *const Opaque) -> Result<&'a Value, Error> {
        if h.is_null() {
            return Err(Error::invalid(format!("{} is NULL", self.what)));
        }
        // SAFETY: non-NULL, and a live Box<Value> made by `create` (contract); the library only
        // ever takes shared references to it until `destroy`.
        Ok(unsafe { &*h.cast::<Value>() })
    }

    /// Takes the value back (dropping it ends it); NULL is a no-op.
    ///
    /// # Safety
    /// As [`Kind::borrow`]; `h` is not used afterwards.
    pub(crate) unsafe fn destroy(&self, h: *mut Opaque) {
        if !h.is_null() {
            // SAFETY: a live Box<Value> made by `create`, given back once (contract).
            drop(unsafe { Box::from_raw(h.cast::<Value>()) });
        }
    }
}
