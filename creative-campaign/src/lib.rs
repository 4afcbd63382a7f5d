//! # creative-campaign
//!
//! The application layer of `creative`, shared by the `creative` runner and the
//! C ABI: declarative specs and the campaign matrix ([`spec`]), the folder
//! stores that make a run cached and resumable ([`store`]), and delivery: the
//! folder sink, the manifest, the report and the contact sheet ([`deliver`]),
//! and a reviewer's decisions on the assets ([`review`]).
//!
//! The engine (`creative-core`) knows none of this: no files, TOML or HTML. It
//! defines the seams this crate fills (`GenerationCache`, `Journal`, `Sink`,
//! the kind `Registry`).
//!
//! ```
//! use creative_campaign::spec::{Format, Spec};
//! let spec = Spec::parse(
//!     "name = \"demo\"\n[matrix]\nproduct = [\"mug\", \"lamp\"]\n[[steps]]\nname = \"hero\"\nkind = \"generate\"\nproviders = [\"art\"]\nprompt = \"a {{ product }}\"\n",
//!     Format::Toml,
//!     "demo.toml",
//! )
//! .unwrap();
//! assert_eq!(spec.jobs().unwrap().len(), 2);
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod deliver;
pub mod review;
pub mod spec;
pub mod store;

/// The library's version (the workspace shares one), as recorded in every
/// `manifest.json`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
