//! # creative-agent
//!
//! Layer 3 of `creative`: from a brief to a campaign a person directs.
//!
//! - [`brief`]: a language model (any text provider) turns a brief into a spec,
//!   constrained by the spec's JSON Schema where the provider supports it,
//!   validated by the spec loader, repaired a bounded number of times, and
//!   written as commented TOML a person reads and edits ([`toml_out`]).
//! - [`advise`]: rule-based findings from a run's report and a reviewer's
//!   decisions, as a diff to the spec; [`rank`]: the same findings ranked and
//!   explained by a language model, when one is configured.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod advise;
pub mod brief;
pub mod rank;
pub mod toml_out;
