//! The C ABI of `creative` (see `include/creative.h`, generated from this crate
//! by cbindgen).
//!
//! # Shape
//!
//! Few functions; structure crosses as JSON or TOML text, objects as opaque
//! handles, payloads as `(pointer, length)` views lent without copying:
//!
//! - `creative_abi_version()` and the `CREATIVE_ABI_VERSION` macro;
//! - an engine (`creative_engine_new(config_json)`) owns its async runtime and a
//!   registry of provider, step and gate kinds, built-in and the host's own
//!   (`creative_engine_register_provider`, `_step`, `_gate`, `_sink`);
//! - `creative_brief` turns a brief into a spec with a language model;
//! - a run (`creative_run_start(engine, spec_text, options_json, callback,
//!   user_data)`) is watched with `creative_run_wait`, `_poll`, `_progress`
//!   (or, in pump mode, driven from the host's own thread with `_pump`),
//!   stopped with `_cancel`, read with `_manifest_json`, `_report_json` and the
//!   artifact accessors, and freed with `_free` (which cancels and joins a run
//!   still going).
//!
//! # Rules every function keeps
//!
//! - It returns a `creative_status` (or, for the few that return a value, a
//!   documented fallback) and never unwinds: each body runs inside
//!   `catch_unwind`. On failure, `creative_last_error_message()` says why, per
//!   thread.
//! - NULL pointers, invalid UTF-8, malformed JSON or TOML and calls in the wrong
//!   state are statuses with messages.
//! - What the library allocates has a matching `_free`; `_free(NULL)` is a no-op;
//!   borrowed data says how long it lives.
#![warn(missing_docs)]
// The exported names follow C conventions (`creative_engine`, `creative_status`).
#![allow(non_camel_case_types)]
// Every `unsafe extern "C"` function states its pointer contract in its doc
// comment (which becomes the header's), in C terms rather than a `# Safety` section.
#![allow(clippy::missing_safety_doc)]
// Each unsafe operation sits in its own `unsafe` block with a `// SAFETY:` comment
// naming the contract that makes it sound: the entry point's doc comment, the
// header's conventions, or the `# Safety` section of a crate-private helper.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(clippy::multiple_unsafe_ops_per_block)]

// Declared in the order the header should read (cbindgen follows it; blank
// lines keep rustfmt from sorting them).
/// Status enum and per-thread last error.
pub mod status;

/// The engine: runtime and registry of kinds.
pub mod engine;

/// `creative_run_start`: spec text to a running campaign.
pub mod start;

/// The run handle: wait, poll, progress, cancel, results.
pub mod run;

/// A finished run's artifacts, lent without copying.
pub mod artifact;

/// Host extensions: providers, steps, gates and sinks written by the host.
pub mod host;

/// `creative_brief`: a brief turned into a spec by a language model.
pub mod brief;

/// Strings and byte views the library hands out.
pub mod strings;

mod hostthread;
mod panic;

pub use artifact::*;
pub use brief::*;
pub use engine::*;
pub use host::*;
pub use run::*;
pub use start::*;
pub use status::*;
pub use strings::*;

/// The ABI version this header describes. It changes only when an existing
/// function, struct or enum value changes incompatibly (never within a major
/// release); additions keep it.
pub const CREATIVE_ABI_VERSION: u32 = 1;

/// The ABI version of the loaded library. A host checks at load time that it
/// equals the `CREATIVE_ABI_VERSION` of the header it was compiled with.
///
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn creative_abi_version() -> u32 {
    CREATIVE_ABI_VERSION
}

/// The library's version, such as `"0.1.0"`.
///
/// Ownership: a static string; never free it. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn creative_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
