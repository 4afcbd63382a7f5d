//! The providers' integration tests, one binary: each former `tests/*.rs`
//! file is a module here (a backend's file is compiled only with its
//! feature, by its own `#![cfg]`), so CI links one executable instead of one
//! per file. `secrets.rs` stays a binary of its own: it reads the HTTP
//! layer's logs through a thread's tracing subscriber, and callsites that
//! other tests' threads register first (with no subscriber) stay silent for
//! the whole process.

mod support;

mod answers;
mod builders;
mod comfyui;
mod comfyui_pool;
mod elevenlabs;
mod fal;
mod fault_injection;
mod fingerprint;
mod fuzz_responses;
mod gemini;
mod http;
mod objects;
mod ollama;
mod openai;
mod replicate;
mod router;
mod router_bounds;
mod stability;
mod webhook;
