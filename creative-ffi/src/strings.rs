//! Strings the library hands out, and the byte view.

use std::ffi::{c_char, CString};

use crate::panic::guard;

/// A view of bytes lent by the library: `len` bytes starting at `ptr`.
///
/// The view never owns its bytes; the function that fills it says how long they
/// stay valid. `ptr` is non-NULL even when `len` is 0. This struct never changes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct creative_bytes {
    /// First byte.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl creative_bytes {
    pub(crate) fn of(b: &[u8]) -> creative_bytes {
        creative_bytes {
            // A slice's pointer is never NULL (an empty one is dangling but aligned).
            ptr: b.as_ptr(),
            len: b.len(),
        }
    }

    pub(crate) fn empty() -> creative_bytes {
        creative_bytes::of(&[])
    }
}

/// Turn a Rust string into a C string the caller frees with
/// `creative_string_free`. Interior NULs cannot occur in JSON the library writes
/// (serde escapes them); anything else that has one is escaped the same way.
pub(crate) fn owned_c_string(s: String) -> *mut c_char {
    let c = CString::new(s).unwrap_or_else(|e| {
        let s = String::from_utf8_lossy(&e.into_vec()).replace('\0', "\\u0000");
        CString::new(s).unwrap_or_default()
    });
    c.into_raw()
}

/// Free a string returned by the library (`creative_run_manifest_json`,
/// `creative_run_report_json`, `creative_run_artifact_info_json`,
/// `creative_engine_kinds_json`). NULL is a no-op.
///
/// Only strings the library allocated may be passed here, and only once.
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn creative_string_free(s: *mut c_char) {
    let _ = guard("creative_string_free", || {
        if !s.is_null() {
            // SAFETY: not NULL, so (the doc above: "Only strings the library
            // allocated may be passed here, and only once") a pointer from
            // `owned_c_string`'s `CString::into_raw`, freed here the one time.
            drop(unsafe { CString::from_raw(s) });
        }
        Ok(())
    });
}
