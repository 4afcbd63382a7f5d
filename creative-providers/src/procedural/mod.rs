//! `procedural`: an offline stand-in for a generative model.
//!
//! **This is not a model.** It draws deterministic abstract compositions (a
//! gradient, shapes, stripes, grain) from a hash of the prompt, seed and size, and
//! writes deterministic text from the prompt. For `audio` it writes a
//! voice-like tone sequence (syllables and pauses, 24 kHz mono WAV); for `video`
//! it draws moving shapes frame by frame and has ffmpeg encode them to H.264
//! MP4 (the `ffmpeg` setting, `CREATIVE_FFMPEG`, or `PATH`), `duration_s` long
//! (0.5..=60 s). It exists so that pipelines, gates,
//! examples, benchmarks and tests run anywhere with no network and no keys, with
//! outputs that behave like real ones: real PNG files, different for every prompt
//! and seed, identical for the same ones, never blank or uniform.
//!
//! It can also misbehave on purpose: a configurable latency and an injected failure
//! rate exercise the engine's retries, breakers and fallbacks.
//!
//! This file holds the settings, the provider and its registration; the
//! builder is in `builder.rs`, the pictures in `image.rs`, the copy in `text.rs`,
//! the voice and the clips in `media.rs`.
//!
//! ```
//! use creative_core::{CallCtx, Provider, Request, Task};
//! use creative_providers::procedural::Procedural;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let p = Procedural::new("procedural");
//! let mut req = Request::new(Task::Image, "a red mug");
//! req.params.width = Some(64);
//! req.params.height = Some(64);
//! req.params.seed = Some(1);
//! let g = p.generate(&req, &CallCtx::detached()).await.unwrap();
//! assert_eq!(&g.artifacts[0].data()[..4], b"\x89PNG");
//! # }
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use creative_core::{
    Artifact, CallCtx, Capabilities, ConfigError, ErrorKind, Generation, MediaType, Meta, Provider, ProviderError,
    Request, Task, Usage,
};
use serde::Deserialize;

mod builder;
mod image;
mod media;
mod text;

pub use builder::ProceduralBuilder;
use image::render_png;
use text::compose_text;

/// Settings of the procedural provider, as read from a spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProceduralSettings {
    /// Simulated latency per call, in milliseconds. Default 0.
    pub latency_ms: u64,
    /// Extra random latency, uniform in `[0, latency_jitter_ms]`. Default 0.
    pub latency_jitter_ms: u64,
    /// Probability in `[0, 1]` that a call fails. Default 0.
    pub failure_rate: f64,
    /// The class of injected failures: `transient`, `rate_limited`, `timeout`,
    /// `invalid`, `content_policy`. Default `transient`.
    pub failure_kind: String,
    /// Retry-After sent with injected rate limits, in milliseconds. Default 100.
    pub retry_after_ms: u64,
    /// Simulated price per image, in US dollars. Default 0.002.
    pub cost_per_image: f64,
    /// Simulated price per 1,000 characters of text, in US dollars. Default 0.0005.
    pub cost_per_1k_chars: f64,
    /// Simulated price per second of video, in US dollars. Default 0.05.
    pub cost_per_video_second: f64,
    /// Simulated price per second of audio, in US dollars. Default 0.0005.
    pub cost_per_audio_second: f64,
    /// The ffmpeg that encodes video; default `CREATIVE_FFMPEG`, else `PATH`.
    pub ffmpeg: Option<PathBuf>,
    /// Default size when a request gives none. Default 512.
    pub default_size: u32,
    /// Append one line per call (task, seed, prompt) to this file; for tests that
    /// count calls across processes.
    pub call_log: Option<PathBuf>,
    /// Seed for the failure and jitter draws (not for the images, which depend on
    /// the request only). Default: random.
    pub chaos_seed: Option<u64>,
}

impl Default for ProceduralSettings {
    fn default() -> Self {
        ProceduralSettings {
            latency_ms: 0,
            latency_jitter_ms: 0,
            failure_rate: 0.0,
            failure_kind: "transient".into(),
            retry_after_ms: 100,
            cost_per_image: 0.002,
            cost_per_1k_chars: 0.0005,
            cost_per_video_second: 0.05,
            cost_per_audio_second: 0.0005,
            ffmpeg: None,
            default_size: 512,
            call_log: None,
            chaos_seed: None,
        }
    }
}

/// A serde message as a [`ConfigError`] whose field is the unknown key serde
/// names in backticks.
fn settings_error(msg: &str) -> ConfigError {
    msg.strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| ConfigError::new(name, msg))
        .unwrap_or_else(|| ConfigError::new("", msg))
}
/// The offline stand-in provider. See the module docs.
#[derive(Debug)]
pub struct Procedural {
    id: String,
    settings: ProceduralSettings,
    failure_kind: ErrorKind,
    calls: AtomicU64,
    chaos: Mutex<fastrand::Rng>,
}

/// The largest side the provider draws, to bound memory and time on bad input.
const MAX_SIDE: u32 = 4096;
/// The largest side of a clip, and its default size.
const MAX_VIDEO_SIDE: u32 = 1920;
const VIDEO_SIZE: (u32, u32) = (640, 360);
/// Clip and voice lengths: default and allowed range, in seconds.
const VIDEO_SECONDS: f32 = 4.0;
const AUDIO_SECONDS: f32 = 5.0;
const MEDIA_SECONDS: std::ops::RangeInclusive<f32> = 0.5..=60.0;

impl Procedural {
    /// A provider with default settings (no latency, no failures).
    pub fn new(id: impl Into<String>) -> Self {
        Self::with_settings(id, ProceduralSettings::default()).expect("default settings are valid")
    }

    /// A builder with default settings (no latency, no failures).
    pub fn builder() -> ProceduralBuilder {
        ProceduralBuilder {
            id: "procedural".into(),
            settings: ProceduralSettings::default(),
        }
    }

    /// A provider with the given settings; the error's field is the bad setting.
    pub fn with_settings(id: impl Into<String>, settings: ProceduralSettings) -> Result<Self, ConfigError> {
        if !(0.0..=1.0).contains(&settings.failure_rate) {
            return Err(ConfigError::new(
                "failure_rate",
                format!("must be within 0..=1, got {}", settings.failure_rate),
            ));
        }
        let failure_kind = match settings.failure_kind.as_str() {
            "transient" => ErrorKind::Transient,
            "rate_limited" => ErrorKind::RateLimited,
            "timeout" => ErrorKind::Timeout,
            "invalid" => ErrorKind::Invalid,
            "content_policy" => ErrorKind::ContentPolicy,
            "auth" => ErrorKind::Auth,
            other => {
                return Err(ConfigError::new(
                    "failure_kind",
                    format!("`{other}` is not one of transient, rate_limited, timeout, invalid, content_policy, auth"),
                ))
            }
        };
        for (name, v) in [
            ("cost_per_image", settings.cost_per_image),
            ("cost_per_1k_chars", settings.cost_per_1k_chars),
            ("cost_per_video_second", settings.cost_per_video_second),
            ("cost_per_audio_second", settings.cost_per_audio_second),
        ] {
            if !(v.is_finite() && (0.0..=1000.0).contains(&v)) {
                return Err(ConfigError::new(name, format!("must be within 0..=1000, got {v}")));
            }
        }
        if settings.default_size == 0 || settings.default_size > MAX_SIDE {
            return Err(ConfigError::new(
                "default_size",
                format!("must be within 1..={MAX_SIDE}, got {}", settings.default_size),
            ));
        }
        let rng = match settings.chaos_seed {
            Some(s) => fastrand::Rng::with_seed(s),
            None => fastrand::Rng::new(),
        };
        Ok(Procedural {
            id: id.into(),
            settings,
            failure_kind,
            calls: AtomicU64::new(0),
            chaos: Mutex::new(rng),
        })
    }

    /// Build from a spec's settings table.
    pub fn from_json(id: &str, settings: &serde_json::Value) -> Result<Self, ConfigError> {
        let s: ProceduralSettings = if settings.is_null() {
            ProceduralSettings::default()
        } else {
            serde_json::from_value(settings.clone()).map_err(|e| settings_error(&e.to_string()))?
        };
        Self::with_settings(id, s)
    }

    /// Calls made so far (failed ones included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn draw(&self) -> (f64, u64) {
        let mut r = self.chaos.lock().unwrap_or_else(|p| p.into_inner());
        let jitter = if self.settings.latency_jitter_ms > 0 {
            r.u64(0..=self.settings.latency_jitter_ms)
        } else {
            0
        };
        (r.f64(), jitter)
    }

    fn log_call(&self, req: &Request) -> Result<(), ProviderError> {
        let Some(path) = &self.settings.call_log else {
            return Ok(());
        };
        let line = format!(
            "{}\t{}\t{}\n",
            req.task.as_str(),
            req.params.seed.unwrap_or(0),
            req.prompt.replace(['\n', '\t'], " ")
        );
        // O_APPEND writes of one short line are atomic, so concurrent calls and
        // processes do not interleave.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| ProviderError::invalid(&self.id, format!("call_log {}: {e}", path.display())))
    }

    fn injected_failure(&self) -> ProviderError {
        let msg = "injected failure (procedural failure_rate)";
        match self.failure_kind {
            ErrorKind::RateLimited => {
                ProviderError::rate_limited(&self.id, msg, Some(Duration::from_millis(self.settings.retry_after_ms)))
                    .with_status(429)
            }
            ErrorKind::Transient => ProviderError::transient(&self.id, msg).with_status(503),
            k => ProviderError::new(k, &self.id, msg),
        }
    }
}

#[async_trait]
impl Provider for Procedural {
    fn id(&self) -> &str {
        &self.id
    }

    /// `default_size`, the only setting that shapes an output (latency,
    /// failures and prices do not).
    fn fingerprint(&self) -> String {
        creative_core::settings_fingerprint(
            "procedural",
            &serde_json::json!({ "default_size": self.settings.default_size }),
        )
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tasks: vec![Task::Image, Task::ImageEdit, Task::Text, Task::Audio, Task::Video],
            seed: true,
            negative_prompt: false,
            max_count: 16,
        }
    }

    fn estimate_cost(&self, req: &Request) -> f64 {
        match req.task {
            Task::Text => self.settings.cost_per_1k_chars * 0.4,
            Task::Video => {
                self.settings.cost_per_video_second * f64::from(req.params.duration_s.unwrap_or(VIDEO_SECONDS))
            }
            Task::Audio => {
                self.settings.cost_per_audio_second * f64::from(req.params.duration_s.unwrap_or(AUDIO_SECONDS))
            }
            _ => self.settings.cost_per_image * f64::from(req.params.count.unwrap_or(1).max(1)),
        }
    }

    async fn generate(&self, req: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.log_call(req)?;
        let (roll, jitter) = self.draw();
        let latency = Duration::from_millis(self.settings.latency_ms + jitter);
        if !latency.is_zero() {
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return Err(ProviderError::cancelled(&self.id)),
                _ = tokio::time::sleep(latency) => {}
            }
        }
        if roll < self.settings.failure_rate {
            return Err(self.injected_failure());
        }
        let seed = req.params.seed.unwrap_or(0);
        let count = req.params.count.unwrap_or(1).clamp(1, 16);
        match req.task {
            Task::Text => {
                let text = compose_text(&req.prompt, seed, req.params.max_tokens);
                let cost = self.settings.cost_per_1k_chars * text.len() as f64 / 1000.0;
                let chars = text.len() as f64;
                Ok(Generation {
                    artifacts: vec![Artifact::text_plain(text)],
                    usage: Usage {
                        cost_usd: cost,
                        units: Some(chars),
                        ..Usage::default()
                    },
                    raw: None,
                })
            }
            Task::Image | Task::ImageEdit => {
                let w = req.params.width.unwrap_or(self.settings.default_size);
                let h = req.params.height.unwrap_or(self.settings.default_size);
                if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
                    return Err(ProviderError::invalid(
                        &self.id,
                        format!("size {w}x{h} is outside 1..={MAX_SIDE} per side"),
                    )
                    .with_status(400));
                }
                let prompt = req.prompt.clone();
                // Drawing is CPU work: keep it off the async worker threads.
                let artifacts = tokio::task::spawn_blocking(move || {
                    (0..count)
                        .map(|i| {
                            let s = seed.wrapping_add(u64::from(i));
                            let png = render_png(&prompt, s, w, h);
                            Artifact::new(MediaType::Png, png).with_meta(Meta {
                                width: Some(w),
                                height: Some(h),
                                ..Meta::default()
                            })
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .map_err(|e| ProviderError::new(ErrorKind::Transient, &self.id, format!("render task failed: {e}")))?;
                Ok(Generation {
                    usage: Usage {
                        cost_usd: self.settings.cost_per_image * artifacts.len() as f64,
                        units: Some(artifacts.len() as f64),
                        ..Usage::default()
                    },
                    artifacts,
                    raw: None,
                })
            }
            Task::Audio => {
                let secs = self.media_seconds(req, AUDIO_SECONDS)?;
                let prompt = req.prompt.clone();
                let wav = tokio::task::spawn_blocking(move || {
                    media::wav(&media::voice_samples(&prompt, seed, secs), media::VOICE_RATE)
                })
                .await
                .map_err(|e| ProviderError::new(ErrorKind::Transient, &self.id, format!("render task failed: {e}")))?;
                let mut meta = Meta {
                    duration_s: Some(f64::from(secs)),
                    ..Meta::default()
                };
                meta.extra.insert("sample_rate".into(), media::VOICE_RATE.into());
                meta.extra.insert("channels".into(), 1.into());
                Ok(Generation {
                    artifacts: vec![Artifact::new(MediaType::Wav, wav).with_meta(meta)],
                    usage: Usage {
                        cost_usd: self.settings.cost_per_audio_second * f64::from(secs),
                        units: Some(f64::from(secs)),
                        ..Usage::default()
                    },
                    raw: None,
                })
            }
            Task::Video => {
                let secs = self.media_seconds(req, VIDEO_SECONDS)?;
                let w = req.params.width.unwrap_or(VIDEO_SIZE.0);
                let h = req.params.height.unwrap_or(VIDEO_SIZE.1);
                if !(16..=MAX_VIDEO_SIDE).contains(&w) || !(16..=MAX_VIDEO_SIDE).contains(&h) {
                    return Err(ProviderError::invalid(
                        &self.id,
                        format!("video size {w}x{h} is outside 16..={MAX_VIDEO_SIDE} per side"),
                    )
                    .with_status(400));
                }
                // 4:2:0 chroma needs even sides.
                let (w, h) = (w & !1, h & !1);
                let ffmpeg = media::find_ffmpeg(self.settings.ffmpeg.as_ref())
                    .map_err(|e| ProviderError::invalid(&self.id, e.to_string()))?;
                let frames = (secs * media::FPS as f32).round() as u32;
                let scene = media::Scene::new(&req.prompt, seed, w, h);
                let mp4 = media::encode_clip(&ffmpeg, scene, frames, &ctx.cancel)
                    .await
                    .map_err(|e| match e {
                        media::EncodeError::Cancelled => ProviderError::cancelled(&self.id),
                        media::EncodeError::Failed(m) => ProviderError::new(ErrorKind::Transient, &self.id, m),
                    })?;
                let mut meta = Meta {
                    width: Some(w),
                    height: Some(h),
                    duration_s: Some(f64::from(frames) / f64::from(media::FPS)),
                    ..Meta::default()
                };
                meta.extra.insert("fps".into(), media::FPS.into());
                meta.extra.insert("video_codec".into(), "h264".into());
                Ok(Generation {
                    artifacts: vec![Artifact::new(MediaType::Mp4, mp4).with_meta(meta)],
                    usage: Usage {
                        cost_usd: self.settings.cost_per_video_second * f64::from(secs),
                        units: Some(f64::from(secs)),
                        ..Usage::default()
                    },
                    raw: None,
                })
            }
            other => Err(ProviderError::invalid(
                &self.id,
                format!("procedural cannot do task `{}`", other.as_str()),
            )),
        }
    }
}

impl Procedural {
    /// The requested length of a clip or voice, checked.
    fn media_seconds(&self, req: &Request, default: f32) -> Result<f32, ProviderError> {
        let secs = req.params.duration_s.unwrap_or(default);
        if !MEDIA_SECONDS.contains(&secs) {
            return Err(ProviderError::invalid(
                &self.id,
                format!(
                    "duration_s {secs} is outside {}..={} seconds",
                    MEDIA_SECONDS.start(),
                    MEDIA_SECONDS.end()
                ),
            )
            .with_status(400));
        }
        Ok(secs)
    }
}

/// A deterministic stream of numbers from the prompt and seed.
fn rng_for(prompt: &str, seed: u64, salt: &str) -> fastrand::Rng {
    let mut h = blake3::Hasher::new();
    h.update(salt.as_bytes());
    h.update(&seed.to_le_bytes());
    h.update(prompt.as_bytes());
    let b = h.finalize();
    let b = b.as_bytes();
    fastrand::Rng::with_seed(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
}

/// Register the `procedural` kind.
pub fn register(reg: &mut creative_core::registry::Registry) {
    reg.provider(
        "procedural",
        Arc::new(
            |id: &str, settings: &serde_json::Value, _: &creative_core::registry::BuildCtx| {
                Procedural::from_json(id, settings).map(|p| Arc::new(p) as Arc<dyn Provider>)
            },
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn injected_failures_follow_the_rate_and_kind() {
        let p = Procedural::with_settings(
            "p",
            ProceduralSettings {
                failure_rate: 1.0,
                failure_kind: "rate_limited".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let e = p
            .generate(&Request::new(Task::Text, "x"), &CallCtx::detached())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_millis(100)));
        let p = Procedural::with_settings(
            "p",
            ProceduralSettings {
                failure_rate: 0.3,
                chaos_seed: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        let mut failed = 0;
        for _ in 0..1000 {
            if p.generate(&Request::new(Task::Text, "x"), &CallCtx::detached())
                .await
                .is_err()
            {
                failed += 1;
            }
        }
        assert!((240..360).contains(&failed), "{failed} of 1000 failed at rate 0.3");
    }

    #[tokio::test(start_paused = true)]
    async fn latency_yields_to_cancellation() {
        let p = Procedural::with_settings(
            "p",
            ProceduralSettings {
                latency_ms: 10_000,
                ..Default::default()
            },
        )
        .unwrap();
        let ctx = CallCtx::detached();
        ctx.cancel.cancel();
        let e = p.generate(&Request::new(Task::Text, "x"), &ctx).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Cancelled);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let e = Procedural::from_json("p", &serde_json::json!({"failure_rate": 2.0})).unwrap_err();
        assert!(e.to_string().contains("failure_rate"), "{e}");
        let e = Procedural::from_json("p", &serde_json::json!({"latency": 2})).unwrap_err();
        assert!(e.to_string().contains("latency"), "{e}");
    }

    #[tokio::test]
    async fn oversized_requests_are_invalid_not_oom() {
        let p = Procedural::new("p");
        let mut req = Request::new(Task::Image, "x");
        req.params.width = Some(100_000);
        let e = p.generate(&req, &CallCtx::detached()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
    }
}
