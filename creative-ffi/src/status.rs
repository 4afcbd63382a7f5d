//! The status enum every entry point returns, and the per-thread last-error
//! message that explains it.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

/// What a call did. `CREATIVE_STATUS_OK` (0) is success; every other value is a
/// class of failure, explained in words by `creative_last_error_message()`.
///
/// Values are stable: new classes are only ever appended.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum creative_status {
    /// Success.
    Ok = 0,
    /// An argument has a value the call cannot use (an unknown option, a number out
    /// of range, an index past the end).
    InvalidArgument = 1,
    /// A pointer argument that must not be NULL was NULL.
    NullPointer = 2,
    /// Text that must be UTF-8 was not.
    InvalidUtf8 = 3,
    /// A JSON or TOML text did not parse, or did not fit its schema.
    Parse = 4,
    /// The call is not allowed in the object's current state (reading the results
    /// of a run still running, waiting from inside the run's own callback...).
    WrongState = 5,
    /// The run was cancelled.
    Cancelled = 6,
    /// The wait ended before the run did.
    Timeout = 7,
    /// A provider call failed (after retries and fallbacks).
    ProviderError = 8,
    /// An artifact did not pass a quality gate, or a gate could not judge it.
    GateFailed = 9,
    /// A budget (money, attempts, wall time) ran out.
    BudgetExceeded = 10,
    /// Reading or writing a file failed.
    Io = 11,
    /// A step failed for another reason (bad input, template, host step...).
    StepFailed = 12,
    /// A spec or config is well-formed but wrong (an unknown kind, a missing input,
    /// a cycle...).
    InvalidSpec = 13,
    /// A panic was caught at the boundary; the object involved may be unusable.
    Panic = 14,
    /// An internal error (the async runtime could not start, a thread could not be
    /// spawned).
    Internal = 15,
}

impl creative_status {
    /// The status's stable name, such as `"CREATIVE_STATUS_OK"`.
    pub fn name(self) -> &'static str {
        match self {
            creative_status::Ok => "CREATIVE_STATUS_OK",
            creative_status::InvalidArgument => "CREATIVE_STATUS_INVALID_ARGUMENT",
            creative_status::NullPointer => "CREATIVE_STATUS_NULL_POINTER",
            creative_status::InvalidUtf8 => "CREATIVE_STATUS_INVALID_UTF8",
            creative_status::Parse => "CREATIVE_STATUS_PARSE",
            creative_status::WrongState => "CREATIVE_STATUS_WRONG_STATE",
            creative_status::Cancelled => "CREATIVE_STATUS_CANCELLED",
            creative_status::Timeout => "CREATIVE_STATUS_TIMEOUT",
            creative_status::ProviderError => "CREATIVE_STATUS_PROVIDER_ERROR",
            creative_status::GateFailed => "CREATIVE_STATUS_GATE_FAILED",
            creative_status::BudgetExceeded => "CREATIVE_STATUS_BUDGET_EXCEEDED",
            creative_status::Io => "CREATIVE_STATUS_IO",
            creative_status::StepFailed => "CREATIVE_STATUS_STEP_FAILED",
            creative_status::InvalidSpec => "CREATIVE_STATUS_INVALID_SPEC",
            creative_status::Panic => "CREATIVE_STATUS_PANIC",
            creative_status::Internal => "CREATIVE_STATUS_INTERNAL",
        }
    }

    /// The status with this numeric value, if there is one. Host callbacks return
    /// a plain `int`, so an out-of-range value from C is never turned into an
    /// invalid enum.
    pub fn from_code(code: i32) -> Option<creative_status> {
        use creative_status::*;
        const ALL: [creative_status; 16] = [
            Ok,
            InvalidArgument,
            NullPointer,
            InvalidUtf8,
            Parse,
            WrongState,
            Cancelled,
            Timeout,
            ProviderError,
            GateFailed,
            BudgetExceeded,
            Io,
            StepFailed,
            InvalidSpec,
            Panic,
            Internal,
        ];
        usize::try_from(code).ok().and_then(|i| ALL.get(i).copied())
    }
}

/// A failure on its way to the boundary: the status the call returns and the
/// message kept for `creative_last_error_message()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FfiError {
    pub(crate) status: creative_status,
    pub(crate) message: String,
}

impl FfiError {
    pub(crate) fn new(status: creative_status, message: impl Into<String>) -> Self {
        FfiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn null(what: &str) -> Self {
        FfiError::new(creative_status::NullPointer, format!("`{what}` must not be NULL"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        FfiError::new(creative_status::InvalidArgument, message)
    }

    pub(crate) fn wrong_state(message: impl Into<String>) -> Self {
        FfiError::new(creative_status::WrongState, message)
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Keep `message` as this thread's last error. Interior NULs (which C cannot
/// show) are replaced so the message is never cut short silently.
pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\u{FFFD}")).unwrap_or_default();
    // `try_with` so a call during thread teardown cannot panic.
    let _ = LAST_ERROR.try_with(|l| *l.borrow_mut() = c);
}

/// The message kept for the last failure on this thread (for tests).
#[cfg(test)]
pub(crate) fn last_error() -> String {
    LAST_ERROR.with(|l| l.borrow().to_string_lossy().into_owned())
}

/// Record a failure and return its status.
pub(crate) fn fail(e: FfiError) -> creative_status {
    set_last_error(&e.message);
    e.status
}

/// The message explaining the last call on this thread that returned a status
/// other than `CREATIVE_STATUS_OK`; an empty string if there was none.
///
/// Ownership: borrowed from the library; never free it. Lifetime: valid until the
/// next `creative_` call on the same thread (copy it to keep it).
/// Thread safety: each thread has its own message; never NULL.
#[no_mangle]
pub extern "C" fn creative_last_error_message() -> *const c_char {
    static EMPTY: &[u8] = b"\0";
    crate::panic::guard_or("creative_last_error_message", EMPTY.as_ptr().cast(), || {
        LAST_ERROR
            .try_with(|l| l.borrow().as_ptr())
            .unwrap_or(EMPTY.as_ptr().cast())
    })
}

/// The stable name of a status, such as `"CREATIVE_STATUS_TIMEOUT"`; `"CREATIVE_STATUS_UNKNOWN"`
/// for a value outside the enum.
///
/// Ownership: a static string; never free it. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn creative_status_name(status: i32) -> *const c_char {
    fn cstr(s: &'static str) -> *const c_char {
        // The names are ASCII literals; the table below adds the NUL.
        s.as_ptr().cast()
    }
    const NAMES: [&str; 16] = [
        "CREATIVE_STATUS_OK\0",
        "CREATIVE_STATUS_INVALID_ARGUMENT\0",
        "CREATIVE_STATUS_NULL_POINTER\0",
        "CREATIVE_STATUS_INVALID_UTF8\0",
        "CREATIVE_STATUS_PARSE\0",
        "CREATIVE_STATUS_WRONG_STATE\0",
        "CREATIVE_STATUS_CANCELLED\0",
        "CREATIVE_STATUS_TIMEOUT\0",
        "CREATIVE_STATUS_PROVIDER_ERROR\0",
        "CREATIVE_STATUS_GATE_FAILED\0",
        "CREATIVE_STATUS_BUDGET_EXCEEDED\0",
        "CREATIVE_STATUS_IO\0",
        "CREATIVE_STATUS_STEP_FAILED\0",
        "CREATIVE_STATUS_INVALID_SPEC\0",
        "CREATIVE_STATUS_PANIC\0",
        "CREATIVE_STATUS_INTERNAL\0",
    ];
    match usize::try_from(status).ok().and_then(|i| NAMES.get(i)) {
        Some(n) => cstr(n),
        None => cstr("CREATIVE_STATUS_UNKNOWN\0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn names_match_the_enum_and_codes_round_trip() {
        for code in 0..16 {
            let s = creative_status::from_code(code).unwrap();
            assert_eq!(s as i32, code);
            // SAFETY: creative_status_name returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(creative_status_name(code)) }.to_str().unwrap();
            assert_eq!(name, s.name());
        }
        assert_eq!(creative_status::from_code(16), None);
        assert_eq!(creative_status::from_code(-1), None);
        // SAFETY: as above, for a value outside the enum too.
        let unknown = unsafe { CStr::from_ptr(creative_status_name(99)) };
        assert_eq!(unknown.to_str().unwrap(), "CREATIVE_STATUS_UNKNOWN");
    }

    #[test]
    fn last_error_is_per_thread() {
        set_last_error("main thread");
        std::thread::spawn(|| {
            assert_eq!(last_error(), "");
            set_last_error("other");
        })
        .join()
        .unwrap();
        // SAFETY: never NULL, NUL-terminated, and valid until the next call on this
        // thread (its doc); read before any other.
        let m = unsafe { CStr::from_ptr(creative_last_error_message()) };
        assert_eq!(m.to_str().unwrap(), "main thread");
    }
}
