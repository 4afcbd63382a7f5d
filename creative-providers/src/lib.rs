//! Provider backends for `creative`.
//!
//! Each backend is a module behind its own cargo feature. [`register`] adds every
//! enabled kind to a spec [`Registry`](creative_core::registry::Registry).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "comfyui")]
pub mod comfyui;
#[cfg(feature = "elevenlabs")]
pub mod elevenlabs;
#[cfg(feature = "fal")]
pub mod fal;
#[cfg(feature = "gemini")]
pub mod gemini;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "object-store")]
pub mod objects;
#[cfg(feature = "ollama")]
pub mod ollama;
#[cfg(feature = "openai")]
pub mod openai;
pub mod pricing;
#[cfg(feature = "procedural")]
pub mod procedural;
#[cfg(feature = "replicate")]
pub mod replicate;
pub mod router;
pub mod secret;
#[cfg(feature = "stability")]
pub mod stability;
#[cfg(feature = "webhook")]
pub mod webhook;

/// Register every enabled provider kind.
pub fn register(reg: &mut creative_core::registry::Registry) {
    #[cfg(feature = "procedural")]
    procedural::register(reg);
    #[cfg(feature = "openai")]
    openai::register(reg);
    #[cfg(feature = "ollama")]
    ollama::register(reg);
    #[cfg(feature = "gemini")]
    gemini::register(reg);
    #[cfg(feature = "elevenlabs")]
    elevenlabs::register(reg);
    #[cfg(feature = "comfyui")]
    comfyui::register(reg);
    #[cfg(feature = "stability")]
    stability::register(reg);
    #[cfg(feature = "replicate")]
    replicate::register(reg);
    #[cfg(feature = "fal")]
    fal::register(reg);
    router::register(reg);
    #[cfg(feature = "webhook")]
    webhook::register(reg);
    #[cfg(feature = "object-store")]
    objects::register(reg);
    let _ = reg;
}
