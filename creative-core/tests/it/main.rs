//! The engine's integration tests, one binary: each former `tests/*.rs` file is
//! a module here, so CI links one executable instead of one per file.

mod bounds;
mod canonical;
mod engine;
mod preset;
mod trust;
