//! The [`ProceduralBuilder`]: typed setters over [`ProceduralSettings`], checked
//! by [`Procedural::with_settings`] when built. Apart from the provider so its
//! misbehaviour knobs (latency, failure rate and kind, chaos seed) read as one
//! list.

use std::path::PathBuf;
use std::time::Duration;

use creative_core::{ConfigError, ErrorKind};

use super::{Procedural, ProceduralSettings};

/// Builds a [`Procedural`] stand-in with typed values. Setters never fail;
/// [`build`](Self::build) reports the first bad value by its field.
///
/// ```
/// use std::time::Duration;
/// use creative_core::ErrorKind;
/// use creative_providers::procedural::Procedural;
/// let flaky = Procedural::builder()
///     .id("flaky")
///     .latency(Duration::from_millis(20))
///     .failure_rate(0.3)
///     .failure_kind(ErrorKind::RateLimited)
///     .chaos_seed(7)
///     .build()
///     .unwrap();
/// # let _ = flaky;
/// let e = Procedural::builder().failure_rate(1.5).build().unwrap_err();
/// assert_eq!(e.field(), "failure_rate");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ProceduralBuilder {
    pub(super) id: String,
    pub(super) settings: ProceduralSettings,
}

impl ProceduralBuilder {
    /// The provider id (default `procedural`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Simulated latency per call (default none).
    pub fn latency(mut self, d: Duration) -> Self {
        self.settings.latency_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Extra random latency, uniform up to this (default none).
    pub fn latency_jitter(mut self, d: Duration) -> Self {
        self.settings.latency_jitter_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Probability that a call fails, 0 to 1 (default 0).
    pub fn failure_rate(mut self, p: f64) -> Self {
        self.settings.failure_rate = p;
        self
    }

    /// The class of injected failures (default transient): transient,
    /// rate-limited, timeout, invalid, content policy or auth.
    pub fn failure_kind(mut self, kind: ErrorKind) -> Self {
        self.settings.failure_kind = kind.as_str().to_string();
        self
    }

    /// Retry-After sent with injected rate limits (default 100 ms).
    pub fn retry_after(mut self, d: Duration) -> Self {
        self.settings.retry_after_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Simulated price per image, in US dollars, 0 to 1000 (default 0.002).
    pub fn cost_per_image(mut self, usd: f64) -> Self {
        self.settings.cost_per_image = usd;
        self
    }

    /// Simulated price per 1,000 characters of text, 0 to 1000 (default 0.0005).
    pub fn cost_per_1k_chars(mut self, usd: f64) -> Self {
        self.settings.cost_per_1k_chars = usd;
        self
    }

    /// Simulated price per second of video, 0 to 1000 (default 0.05).
    pub fn cost_per_video_second(mut self, usd: f64) -> Self {
        self.settings.cost_per_video_second = usd;
        self
    }

    /// Simulated price per second of audio, 0 to 1000 (default 0.0005).
    pub fn cost_per_audio_second(mut self, usd: f64) -> Self {
        self.settings.cost_per_audio_second = usd;
        self
    }

    /// The ffmpeg that encodes video (default `CREATIVE_FFMPEG`, else `PATH`).
    pub fn ffmpeg(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.ffmpeg = Some(path.into());
        self
    }

    /// Side of an image when a request gives no size, 1 to 4096 (default 512).
    pub fn default_size(mut self, side: u32) -> Self {
        self.settings.default_size = side;
        self
    }

    /// Append one line per call to this file (tests counting calls across processes).
    pub fn call_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.call_log = Some(path.into());
        self
    }

    /// Seed of the failure and jitter draws (default random).
    pub fn chaos_seed(mut self, seed: u64) -> Self {
        self.settings.chaos_seed = Some(seed);
        self
    }

    /// Check every value and build the provider.
    pub fn build(self) -> Result<Procedural, ConfigError> {
        Procedural::with_settings(self.id, self.settings)
    }
}
