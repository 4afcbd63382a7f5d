//! Cancellation, re-exported so hosts need no extra dependency.

pub use tokio_util::sync::CancellationToken;
