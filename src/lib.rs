//! `creative`: the facade over the workspace crates.
//!
//! Applications usually depend on this crate alone: it re-exports the engine
//! ([`core`]), the campaign layer (specs, folder stores, delivery:
//! [`campaign`]), the provider backends ([`providers`]) and the image operations
//! and quality gates ([`ops`]).
#![forbid(unsafe_code)]

pub use creative_campaign as campaign;
pub use creative_core as core;
pub use creative_ops as ops;
pub use creative_providers as providers;
