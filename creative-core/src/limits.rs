//! The ranges every number of a spec or host configuration must fall in.
//!
//! A campaign runs unattended, often for hours: a number that is out of any
//! sensible range (a concurrency of 2^63, a retry delay of 584 million years, a
//! regeneration loop of a billion rounds) is a typo or a fuzzer, never an
//! intent. The ranges here are wide enough for a demanding production user and
//! narrow enough that no value inside them can panic, abort on allocation, or
//! hang the engine. `Spec::build` (and so `creative check`) refuses a value
//! outside its range with a message naming the field and the range.
//!
//! The same constants are the engine's own ceilings where it takes numbers from
//! Rust callers (`ExecutorBuilder::build` refuses a concurrency above [`MAX_CONCURRENCY`]),
//! and the decoders' (`creative-ops` refuses images above [`MAX_IMAGE_PIXELS`]).

use std::fmt::Display;

use crate::error::ConfigError;

/// Most steps running at once in a run, and most calls in flight to one
/// provider.
pub const MAX_CONCURRENCY: usize = 10_000;

/// Steps running at once when nothing says otherwise, from Rust
/// ([`ExecutorBuilder`](crate::exec::ExecutorBuilder)) and from a spec alike.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Most requests per minute a provider's rate limit may allow.
pub const MAX_REQUESTS_PER_MINUTE: u32 = 1_000_000;
/// Largest token-bucket burst of a provider's rate limit.
pub const MAX_BURST: u32 = 100_000;
/// Longest per-call timeout, in seconds (one day).
pub const MAX_CALL_TIMEOUT_S: f64 = 86_400.0;
/// Longest run deadline, in minutes (a year of 365 days).
pub const MAX_RUN_MINUTES: f64 = 525_600.0;
/// Most provider attempts a run's budget may allow.
pub const MAX_BUDGET_ATTEMPTS: u64 = 1_000_000_000_000;
/// Most attempts per provider for one call (first call included).
pub const MAX_RETRY_ATTEMPTS: u32 = 100;
/// Longest backoff delay, in milliseconds (one hour).
pub const MAX_BACKOFF_MS: u64 = 3_600_000;
/// Most extra generation rounds after a gate failure.
pub const MAX_REGENERATIONS: u32 = 100;
/// Most passing candidates a generate step keeps.
pub const MAX_KEEP: usize = 1_000;
/// Most candidates asked of a provider in one call (`count`).
pub const MAX_COUNT_PER_CALL: u32 = 64;
/// Most artifacts one provider answer may carry. A provider that returns more
/// than this (or far more than it was asked, see [`max_artifacts_for`]) is
/// broken or hostile, and its answer is refused before anything is judged,
/// stored or billed.
pub const MAX_ARTIFACTS_PER_CALL: usize = 256;
/// Longest side of an image, in pixels, whether asked of a provider, produced
/// by an operation or decoded.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Most pixels of an image (width x height) asked, produced or decoded: 100
/// megapixels, 400 MB as 8-bit RGBA.
pub const MAX_IMAGE_PIXELS: u64 = 100_000_000;
/// Most sampling steps.
pub const MAX_SAMPLING_STEPS: u32 = 1_000;
/// Largest guidance scale.
pub const MAX_GUIDANCE: f64 = 100.0;
/// Largest sampling temperature.
pub const MAX_TEMPERATURE: f64 = 10.0;
/// Most output tokens asked of a text model.
pub const MAX_TOKENS: u32 = 1_000_000;
/// Longest media duration asked of a provider, in seconds (one hour).
pub const MAX_DURATION_S: f64 = 3_600.0;
/// Largest generation cache size cap, in MiB (16 TiB).
pub const MAX_CACHE_MB: u64 = 16 * 1024 * 1024;

/// Most artifacts to accept from one answer to a call that asked for `asked`
/// candidates (`None` when the request did not say).
///
/// A provider may return a few more than asked (some always return a fixed
/// batch), so the allowance is generous, but it is never more than
/// [`MAX_ARTIFACTS_PER_CALL`].
pub fn max_artifacts_for(asked: Option<u32>) -> usize {
    let asked = asked.unwrap_or(1).max(1) as usize;
    asked.saturating_mul(4).clamp(16, MAX_ARTIFACTS_PER_CALL)
}

/// Why a number is out of its range: a sentence naming the range, to follow
/// the field's path.
pub fn out_of_range<T: Display>(value: T, lo: T, hi: T) -> String {
    format!("{value} is out of range: allowed {lo} to {hi}")
}

/// `Ok` when `v` is within `lo..=hi`, else an error whose reason is the
/// message of [`out_of_range`]; the caller names the field with
/// [`ConfigError::at`].
pub fn check_int<T: PartialOrd + Display + Copy>(v: T, lo: T, hi: T) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        Err(ConfigError::new("", out_of_range(v, lo, hi)))
    } else {
        Ok(())
    }
}

/// `Ok` when `v` is a finite number within `lo..=hi` (`lo` itself excluded
/// when `lo_open`), else an error naming the range; the caller names the
/// field with [`ConfigError::at`].
pub fn check_float(v: f64, lo: f64, lo_open: bool, hi: f64) -> Result<(), ConfigError> {
    let low_ok = if lo_open { v > lo } else { v >= lo };
    if v.is_finite() && low_ok && v <= hi {
        Ok(())
    } else {
        let lo_word = if lo_open { "above" } else { "from" };
        Err(ConfigError::new(
            "",
            format!("{v} is out of range: allowed a number {lo_word} {lo} up to {hi}"),
        ))
    }
}

/// `Ok` when an image of `width` x `height` is within [`MAX_IMAGE_SIDE`] and
/// [`MAX_IMAGE_PIXELS`]; the caller names the field with [`ConfigError::at`].
pub fn check_image_size(width: u32, height: u32) -> Result<(), ConfigError> {
    let refuse = |reason: String| Err(ConfigError::new("", reason));
    if width == 0 || height == 0 {
        return refuse(format!("{width}x{height} has no pixels"));
    }
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return refuse(format!(
            "{width}x{height} is too large: each side may be at most {MAX_IMAGE_SIDE} pixels"
        ));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_IMAGE_PIXELS {
        return refuse(format!(
            "{width}x{height} is too large: {pixels} pixels, at most {MAX_IMAGE_PIXELS} allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_artifact_allowance_grows_with_the_ask_but_stays_capped() {
        assert_eq!(max_artifacts_for(None), 16);
        assert_eq!(max_artifacts_for(Some(0)), 16);
        assert_eq!(max_artifacts_for(Some(10)), 40);
        assert_eq!(max_artifacts_for(Some(u32::MAX)), MAX_ARTIFACTS_PER_CALL);
    }

    #[test]
    fn image_sizes_are_bounded_by_side_and_by_pixels() {
        assert!(check_image_size(16_384, 6_000).is_ok());
        assert!(check_image_size(16_385, 1)
            .unwrap_err()
            .reason()
            .contains("at most 16384"));
        assert!(check_image_size(16_384, 16_384)
            .unwrap_err()
            .reason()
            .contains("pixels"));
        assert!(check_image_size(0, 5).is_err());
    }

    #[test]
    fn float_ranges_refuse_nan_and_infinities() {
        assert!(check_float(f64::NAN, 0.0, false, 1.0).is_err());
        assert!(check_float(f64::INFINITY, 0.0, false, f64::MAX).is_err());
        assert!(check_float(0.0, 0.0, true, 1.0).is_err());
        assert!(check_float(0.0, 0.0, false, 1.0).is_ok());
        assert!(check_int(5u32, 1, 4).unwrap_err().reason().contains("allowed 1 to 4"));
    }
}
