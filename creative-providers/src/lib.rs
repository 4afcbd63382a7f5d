//! Provider backends for `creative`.
//!
//! Each backend is a module behind its own cargo feature. [`register`] adds every
//! enabled kind to a spec [`Registry`](creative_core::spec::Registry).
#![warn(missing_docs)]

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "ollama")]
pub mod ollama;
#[cfg(feature = "openai")]
pub mod openai;
pub mod pricing;
#[cfg(feature = "procedural")]
pub mod procedural;
pub mod secret;
pub mod router;

/// Register every enabled provider kind.
pub fn register(reg: &mut creative_core::spec::Registry) {
    #[cfg(feature = "procedural")]
    procedural::register(reg);
    #[cfg(feature = "openai")]
    openai::register(reg);
    #[cfg(feature = "ollama")]
    ollama::register(reg);
    router::register(reg);
    let _ = reg;
}
