//! The panic boundary and argument checks shared by every entry point.
//!
//! Each `extern "C"` function runs its body inside [`guard`] (or [`guard_or`] for
//! functions that return something other than a status): a panic becomes
//! `CREATIVE_STATUS_PANIC` (or the function's fallback value) and a message, never
//! an unwind into C, which would be undefined behaviour.

use std::any::Any;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use crate::status::{creative_status, fail, set_last_error, FfiError};

fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Run an entry point's body; map its error or a panic to a status and message.
pub(crate) fn guard(name: &str, body: impl FnOnce() -> Result<(), FfiError>) -> creative_status {
    // The body only touches state the caller handed over for this call; after a
    // panic that state is reported as possibly unusable (CREATIVE_STATUS_PANIC), so
    // asserting unwind safety is the documented contract, not a guess.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => creative_status::Ok,
        Ok(Err(e)) => fail(FfiError::new(e.status, format!("{name}: {}", e.message))),
        Err(p) => fail(FfiError::new(
            creative_status::Panic,
            format!("{name}: panic caught at the C boundary: {}", panic_text(&*p)),
        )),
    }
}

/// Run an entry point that returns a value; a panic returns `fallback`.
pub(crate) fn guard_or<T>(name: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(p) => {
            set_last_error(&format!("{name}: panic caught at the C boundary: {}", panic_text(&*p)));
            fallback
        }
    }
}

/// Borrow a NUL-terminated UTF-8 argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn text_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, FfiError> {
    if ptr.is_null() {
        return Err(FfiError::null(what));
    }
    // SAFETY: not NULL (checked above), so a NUL-terminated string that outlives
    // `'a` (this function's contract).
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str().map_err(|e| {
        FfiError::new(
            creative_status::InvalidUtf8,
            format!(
                "`{what}` is not valid UTF-8 (first bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// Like [`text_arg`], but NULL means "not given".
///
/// # Safety
/// As [`text_arg`].
pub(crate) unsafe fn opt_text_arg<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>, FfiError> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: this function's contract is `text_arg`'s.
        unsafe { text_arg(ptr, what) }.map(Some)
    }
}

/// An out-parameter checked not to be NULL: the one way the library writes
/// through a pointer the host gave it.
///
/// Checked at the top of each entry point, before any work whose result it will
/// receive (so a NULL out-pointer never costs a started run); writing is then
/// safe.
pub(crate) struct Out<T> {
    ptr: NonNull<T>,
}

impl<T> Out<T> {
    /// Check `ptr`: NULL is a `CREATIVE_STATUS_NULL_POINTER` error naming `what`.
    ///
    /// # Safety
    /// `ptr` is NULL or valid for writes of a `T` (aligned, not freed) as long as
    /// the `Out` is used. Each entry point's doc comment promises the host it
    /// writes there ("Writes `*out_count`", "`*out_json` receives").
    pub(crate) unsafe fn new(ptr: *mut T, what: &str) -> Result<Out<T>, FfiError> {
        NonNull::new(ptr)
            .map(|ptr| Out { ptr })
            .ok_or_else(|| FfiError::null(what))
    }

    /// An optional out-parameter: NULL means "not wanted".
    ///
    /// # Safety
    /// As [`Out::new`].
    pub(crate) unsafe fn optional(ptr: *mut T) -> Option<Out<T>> {
        NonNull::new(ptr).map(|ptr| Out { ptr })
    }

    /// Write `value`; the previous contents are not read or dropped (they may be
    /// uninitialized memory of the host's).
    pub(crate) fn write(&mut self, value: T) {
        // SAFETY: `ptr` is not NULL (checked when the `Out` was made) and valid for
        // writes of a `T` while the `Out` is used (the contract of `Out::new`).
        unsafe { self.ptr.as_ptr().write(value) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::last_error;

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let s = guard("creative_test", || panic!("boom"));
        let v = guard_or("creative_test", 7u32, || panic!("bang"));
        std::panic::set_hook(prev);
        assert_eq!(s, creative_status::Panic);
        assert_eq!(v, 7);
        assert!(last_error().contains("bang"), "{}", last_error());
    }

    #[test]
    fn bad_text_is_an_error_not_a_crash() {
        let bad = [0x66u8, 0xff, 0x00];
        // SAFETY: `bad` is NUL-terminated and outlives the result.
        let e = unsafe { text_arg(bad.as_ptr().cast(), "spec_text") }.unwrap_err();
        assert_eq!(e.status, creative_status::InvalidUtf8);
        assert!(e.message.contains("offset 1"));
        // SAFETY: NULL is allowed.
        let e = unsafe { text_arg(std::ptr::null(), "spec_text") }.unwrap_err();
        assert_eq!(e.status, creative_status::NullPointer);
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { opt_text_arg(std::ptr::null(), "x") }.unwrap(), None);
    }
}
