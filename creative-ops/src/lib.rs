//! Deterministic image and text operations (resize, crop, reframe, pad, convert,
//! overlay, watermark, metadata) and quality gates for `creative`.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod attention;
pub mod caption;
pub mod color;
pub mod error;
pub mod gates;
pub mod geometry;
pub mod metadata;
pub mod phash;
pub mod raster;
mod registry;
pub mod steps;

pub use attention::Attention;
pub use color::{Color, Lab};
pub use error::OpsError;
pub use geometry::{Anchor, Aspect, Rect};
pub use raster::{EncodeSettings, Filter, Format, PngCompression, Raster};
pub use registry::{register, GATE_KINDS, STEP_KINDS};
pub use steps::Produced;
