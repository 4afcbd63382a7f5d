//! The image and media steps' and gates' integration tests, one binary: each
//! former `tests/*.rs` file is a module here, so CI links one executable
//! instead of one per file. `media_cancel.rs` stays a binary of its own: it
//! counts this process's ffmpeg children, which the other media tests add to.

mod common;
mod media_common;

mod bombs;
mod gates;
mod media_audio;
mod media_progress;
mod media_video;
mod pipeline;
mod steps;
