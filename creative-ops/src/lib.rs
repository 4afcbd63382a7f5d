//! Deterministic image and text operations (resize, crop, reframe, convert,
//! overlay) and quality gates for `creative`.
#![warn(missing_docs)]
