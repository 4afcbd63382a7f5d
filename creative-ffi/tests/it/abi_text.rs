//! Text across the ABI as every module's tests pass and read it: a C string
//! in, the thread's last error and an owned string out.

use std::ffi::{c_char, CStr, CString};

use creative_ffi::*;

/// A C string of `s` (which has no NUL).
pub fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// This thread's `creative_last_error_message()`, copied.
pub fn last_error() -> String {
    unsafe { CStr::from_ptr(creative_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

/// An owned string the library returned, copied and freed.
pub fn take(s: *mut c_char) -> String {
    assert!(!s.is_null());
    let out = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    unsafe { creative_string_free(s) };
    out
}
