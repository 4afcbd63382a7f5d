//! Price tables: what a call costs, per model.
//!
//! Images, video and audio are priced per output (image by size and quality,
//! seconds of video, characters of speech), text per million tokens. Each backend
//! starts from a default table (list prices when this was written; they change, so
//! a spec overrides them) and a spec's `prices` table overrides entries field by
//! field:
//!
//! ```toml
//! [providers.openai.prices."gpt-image-1"]
//! image = { "1024x1024/high" = 0.167, "*/low" = 0.011, "*" = 0.042 }
//! input_per_mtok = 5.0
//! output_per_mtok = 40.0
//! ```
//!
//! A model is found by exact name, then by the longest table entry its name starts
//! with (`gpt-4o-mini-2024-07-18` uses `gpt-4o-mini`). An unknown model costs
//! nothing and the backend logs it once per call at debug level.
//!
//! Size- and duration-aware prices (fal, Replicate, Veo):
//!
//! ```toml
//! # fal bills FLUX.1 [dev] per megapixel of output, rounded up to whole ones.
//! [providers.fal.prices."fal-ai/flux/dev"]
//! per_megapixel = 0.025
//! megapixel_px = 1048576
//! megapixels_round_up = true
//! image = { "*" = 0.025 }        # a call that names no size
//!
//! # A video model billed per second of output; 5 s when the request names none.
//! [providers.fal.prices."fal-ai/kling-video/v2.1/standard/text-to-video"]
//! per_second = 0.05
//! default_s = 5.0
//!
//! # A model billed by GPU time (Replicate's `metrics.predict_time`).
//! [providers.replicate.prices."me/my-sdxl"]
//! per_gpu_second = 0.000725
//! est_gpu_s = 8.0                 # what a call usually takes, for estimates
//! ```
//!
//! [`estimate`] prices a request before the call from what it asks for (size,
//! duration, count); [`bill`] prices what came back, from the decoded outputs
//! (image header, video container) where they say, else from the request.

use std::collections::BTreeMap;

use creative_core::artifact::probe;
use creative_core::{Artifact, ConfigError, MediaKind, Request, Task};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The prices of one model. Every field is optional; a call is priced by the
/// fields that apply to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Dollars per image, keyed `SIZE/QUALITY`, `SIZE`, `*/QUALITY` or `*`, most
    /// specific first (`1024x1024/hd`, `1024x1024`, `*/hd`, `*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub image: BTreeMap<String, f64>,
    /// Dollars per million input (prompt) tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_per_mtok: Option<f64>,
    /// Dollars per million input image tokens, where priced apart from text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_input_per_mtok: Option<f64>,
    /// Dollars per million output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_per_mtok: Option<f64>,
    /// Dollars per second of output (video, audio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<f64>,
    /// Seconds of output a call makes when the request names no duration (the
    /// model's default), for [`per_second`](Self::per_second) estimates. Without
    /// it a request with no `duration_s` has no per-second price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_s: Option<f64>,
    /// Dollars per thousand characters of input (speech).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_1k_chars: Option<f64>,
    /// Dollars per megapixel of output image. When set and the size is known it
    /// takes precedence over [`image`](Self::image); a request that names no
    /// size falls back to `image` (usually `*`, the price at the model's default
    /// size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_megapixel: Option<f64>,
    /// Pixels in one billed megapixel (default 1,000,000; fal counts 1024x1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub megapixel_px: Option<u64>,
    /// Bill whole megapixels, rounded up (fal), instead of the exact fraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub megapixels_round_up: Option<bool>,
    /// Dollars per second of compute (Replicate's `metrics.predict_time`, fal's
    /// `timings.inference`), for models billed by GPU time. Used after a call
    /// when no per-output price applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_gpu_second: Option<f64>,
    /// Typical compute seconds of one call, to estimate a
    /// [`per_gpu_second`](Self::per_gpu_second) model before the call. Without
    /// it such a model has no estimate (it is unpriced under a money budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub est_gpu_s: Option<f64>,
}

impl ModelPrice {
    /// One price per image whatever its size and quality (key `*`).
    pub fn flat_image(usd: f64) -> Self {
        ModelPrice {
            image: image_prices(&[("*", usd)]),
            ..ModelPrice::default()
        }
    }

    fn overlay(&mut self, o: ModelPrice) {
        self.image.extend(o.image);
        macro_rules! take {
            ($($f:ident),*) => { $( if o.$f.is_some() { self.$f = o.$f; } )* };
        }
        take!(
            input_per_mtok,
            image_input_per_mtok,
            output_per_mtok,
            per_second,
            default_s,
            per_1k_chars,
            per_megapixel,
            megapixel_px,
            megapixels_round_up,
            per_gpu_second,
            est_gpu_s
        );
    }

    /// The per-megapixel price of one `width` x `height` image: `None` without
    /// [`per_megapixel`](Self::per_megapixel).
    pub fn megapixels(&self, width: u32, height: u32) -> Option<f64> {
        let per = self.per_megapixel?;
        let unit = self.megapixel_px.unwrap_or(1_000_000).max(1) as f64;
        let mut mp = f64::from(width) * f64::from(height) / unit;
        if self.megapixels_round_up.unwrap_or(false) {
            mp = mp.ceil();
        }
        Some(mp * per)
    }

    /// The price of one image: per megapixel when the size is known and the
    /// model is priced so, else from [`image`](Self::image) by size and quality.
    pub fn image_cost(&self, size: Option<(u32, u32)>, quality: Option<&str>) -> Option<f64> {
        if let Some((w, h)) = size {
            if let Some(c) = self.megapixels(w, h) {
                return Some(c);
            }
        }
        let key = size.map(|(w, h)| format!("{w}x{h}"));
        self.per_image(key.as_deref(), quality)
    }

    /// The price of one video or audio output of `seconds` (else the model's
    /// [`default_s`](Self::default_s)) at [`per_second`](Self::per_second);
    /// else a flat price per output (`image."*"`).
    pub fn media_cost(&self, seconds: Option<f64>) -> Option<f64> {
        if let Some(per) = self.per_second {
            if let Some(s) = seconds.or(self.default_s) {
                return Some(per * s);
            }
        }
        self.image.get("*").copied()
    }

    /// The price of `seconds` of compute, `None` without
    /// [`per_gpu_second`](Self::per_gpu_second).
    pub fn gpu_cost(&self, seconds: f64) -> Option<f64> {
        self.per_gpu_second.map(|p| p * seconds.max(0.0))
    }

    /// The price of one image of `size` and `quality`.
    pub fn per_image(&self, size: Option<&str>, quality: Option<&str>) -> Option<f64> {
        let mut keys: Vec<String> = Vec::with_capacity(4);
        if let (Some(s), Some(q)) = (size, quality) {
            keys.push(format!("{s}/{q}"));
        }
        if let Some(s) = size {
            keys.push(s.to_string());
        }
        if let Some(q) = quality {
            keys.push(format!("*/{q}"));
        }
        keys.push("*".to_string());
        keys.iter().find_map(|k| self.image.get(k).copied())
    }

    /// The price of a call that used these tokens; `None` when the model has no
    /// token prices.
    pub fn tokens(&self, input: u64, image_input: u64, output: u64) -> Option<f64> {
        if self.input_per_mtok.is_none() && self.output_per_mtok.is_none() {
            return None;
        }
        let inp = self.input_per_mtok.unwrap_or(0.0);
        let img = self.image_input_per_mtok.unwrap_or(inp);
        Some(
            (input as f64 * inp + image_input as f64 * img + output as f64 * self.output_per_mtok.unwrap_or(0.0)) / 1e6,
        )
    }
}

/// Prices by model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable {
    models: BTreeMap<String, ModelPrice>,
}

impl PriceTable {
    /// An empty table (everything free).
    pub fn new() -> Self {
        PriceTable::default()
    }

    /// Set a model's prices.
    pub fn set(&mut self, model: &str, price: ModelPrice) -> &mut Self {
        self.models.insert(model.to_string(), price);
        self
    }

    /// Overlay a spec's `prices` table: `{ model: { field: value } }`. Fields given
    /// replace the defaults; image entries are added to the default ones.
    ///
    /// The error's field is `prices` or `prices.<model>`.
    pub fn with_overrides(mut self, overrides: Option<&Value>) -> Result<Self, ConfigError> {
        let Some(v) = overrides else {
            return Ok(self);
        };
        let Value::Object(map) = v else {
            return Err(ConfigError::new("prices", "must be a table of models"));
        };
        for (model, entry) in map {
            let field = || format!("prices.{model}");
            let p: ModelPrice =
                serde_json::from_value(entry.clone()).map_err(|e| ConfigError::new(field(), e.to_string()))?;
            if p.megapixel_px == Some(0) {
                return Err(ConfigError::new(
                    format!("{}.megapixel_px", field()),
                    "must be at least 1",
                ));
            }
            let all = p.image.values().copied().chain(
                [
                    p.input_per_mtok,
                    p.image_input_per_mtok,
                    p.output_per_mtok,
                    p.per_second,
                    p.default_s,
                    p.per_1k_chars,
                    p.per_megapixel,
                    p.per_gpu_second,
                    p.est_gpu_s,
                ]
                .into_iter()
                .flatten(),
            );
            for x in all {
                if !(x.is_finite() && x >= 0.0) {
                    return Err(ConfigError::new(
                        field(),
                        format!("prices must be finite and not negative, got {x}"),
                    ));
                }
            }
            self.models.entry(model.clone()).or_default().overlay(p);
        }
        Ok(self)
    }

    /// The prices of `model`: exact name, else the longest entry it starts with.
    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        self.models.get(model).or_else(|| {
            self.models
                .iter()
                .filter(|(k, _)| model.starts_with(k.as_str()))
                .max_by_key(|(k, _)| k.len())
                .map(|(_, v)| v)
        })
    }

    /// The cost of `count` images.
    pub fn images(&self, model: &str, size: Option<&str>, quality: Option<&str>, count: u32) -> Option<f64> {
        self.get(model)?.per_image(size, quality).map(|p| p * f64::from(count))
    }

    /// The cost of tokens.
    pub fn tokens(&self, model: &str, input: u64, output: u64) -> Option<f64> {
        self.get(model)?.tokens(input, 0, output)
    }

    /// The cost of `seconds` of output.
    pub fn seconds(&self, model: &str, seconds: f64) -> Option<f64> {
        self.get(model)?.per_second.map(|p| p * seconds)
    }

    /// The cost of `chars` characters.
    pub fn characters(&self, model: &str, chars: u64) -> Option<f64> {
        self.get(model)?.per_1k_chars.map(|p| p * chars as f64 / 1000.0)
    }
}

/// The requested output size, when the request names both sides.
fn requested_size(req: &Request) -> Option<(u32, u32)> {
    req.params.width.zip(req.params.height)
}

/// The estimated cost of `req` under `price`, before the call; `None` when the
/// table cannot price it (the model is then unpriced, see `Provider::has_price`).
///
/// Images: `count` times [`ModelPrice::image_cost`] at the requested size and
/// quality. Video and audio: `count` times [`ModelPrice::media_cost`] of the
/// requested `duration_s`, else the model's `default_s`. Other tasks: `count`
/// times the flat `image."*"` price. When none of these applies, a model
/// billed by GPU time is estimated at `per_gpu_second` times `est_gpu_s`.
pub fn estimate(price: &ModelPrice, req: &Request) -> Option<f64> {
    let n = f64::from(req.params.count.unwrap_or(1).max(1));
    let one = match req.task {
        Task::Image | Task::ImageEdit => price.image_cost(requested_size(req), req.params.quality.as_deref()),
        Task::Video | Task::Audio => price.media_cost(req.params.duration_s.map(f64::from)),
        _ => price.per_image(None, req.params.quality.as_deref()),
    };
    one.map(|c| c * n)
        .or_else(|| price.est_gpu_s.and_then(|s| price.gpu_cost(s)))
}

/// The size of an image output: its decoded header, else what the answer said
/// (`meta`), else the requested size.
fn output_size(a: &Artifact, req: &Request) -> Option<(u32, u32)> {
    probe(a.media(), a.data())
        .ok()
        .and_then(|p| p.width.zip(p.height))
        .or_else(|| a.meta().width.zip(a.meta().height))
        .or_else(|| requested_size(req))
}

/// The duration of a video or audio output: its container (MP4/MOV `mvhd`),
/// else what the answer said (`meta`), else the requested duration (and then
/// the model's default, in [`ModelPrice::media_cost`]).
fn output_seconds(a: &Artifact, req: &Request) -> Option<f64> {
    mp4_duration_s(a.data())
        .or(a.meta().duration_s)
        .or(req.params.duration_s.map(f64::from))
}

/// What a finished call cost under `price`, from its `outputs`; `None` when the
/// table cannot price it.
///
/// Each output is priced by its kind: an image by its decoded size (see
/// [`ModelPrice::image_cost`]), a video or audio output by its duration as its
/// container says, else as the answer or the request said (see
/// [`ModelPrice::media_cost`]), anything else by the flat `image."*"` price.
/// When an output has no per-output price, the call is billed by compute
/// instead: `per_gpu_second` times `gpu_s` (the provider's own measure).
pub fn bill(price: &ModelPrice, req: &Request, outputs: &[Artifact], gpu_s: Option<f64>) -> Option<f64> {
    let per_output: Option<f64> = outputs
        .iter()
        .map(|a| match a.media().kind() {
            MediaKind::Image => price.image_cost(output_size(a, req), req.params.quality.as_deref()),
            MediaKind::Video | MediaKind::Audio => price.media_cost(output_seconds(a, req)),
            _ => price.per_image(None, req.params.quality.as_deref()),
        })
        .sum();
    per_output.or_else(|| gpu_s.and_then(|s| price.gpu_cost(s)))
}

/// The duration in seconds an ISO base media file (MP4, MOV, M4A) states in its
/// movie header (`moov/mvhd`), or `None` when the bytes hold no readable one.
/// Only box headers are read, never the media.
pub fn mp4_duration_s(data: &[u8]) -> Option<f64> {
    let moov = find_box(data, b"moov")?;
    let mvhd = find_box(moov, b"mvhd")?;
    let be32 = |at: usize| -> Option<u64> {
        let b: [u8; 4] = mvhd.get(at..at + 4)?.try_into().ok()?;
        Some(u64::from(u32::from_be_bytes(b)))
    };
    let (timescale, duration) = match *mvhd.first()? {
        0 => {
            let d = be32(16)?;
            (be32(12)?, (d != u64::from(u32::MAX)).then_some(d)?)
        }
        1 => {
            let b: [u8; 8] = mvhd.get(24..32)?.try_into().ok()?;
            let d = u64::from_be_bytes(b);
            (be32(20)?, (d != u64::MAX).then_some(d)?)
        }
        _ => return None,
    };
    if timescale == 0 {
        return None;
    }
    let s = duration as f64 / timescale as f64;
    (s.is_finite() && s > 0.0).then_some(s)
}

/// The body of the first box of type `kind` among the boxes laid end to end in
/// `data` (ISO/IEC 14496-12: 32-bit size, type, optional 64-bit size).
fn find_box<'a>(mut data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    while data.len() >= 8 {
        let size: [u8; 4] = data.get(0..4)?.try_into().ok()?;
        let (header, size) = match u32::from_be_bytes(size) {
            0 => (8usize, data.len() as u64),
            1 => {
                let big: [u8; 8] = data.get(8..16)?.try_into().ok()?;
                (16usize, u64::from_be_bytes(big))
            }
            s => (8usize, u64::from(s)),
        };
        if size < header as u64 {
            return None;
        }
        let end = usize::try_from(size).unwrap_or(usize::MAX).min(data.len());
        if data.get(4..8)? == kind {
            return data.get(header..end);
        }
        data = data.get(end..)?;
    }
    None
}

fn image_prices(entries: &[(&str, f64)]) -> BTreeMap<String, f64> {
    entries.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn tok(input: f64, output: f64) -> ModelPrice {
    ModelPrice {
        input_per_mtok: Some(input),
        output_per_mtok: Some(output),
        ..ModelPrice::default()
    }
}

/// OpenAI list prices (dollars) as defaults.
pub fn openai_defaults() -> PriceTable {
    let mut t = PriceTable::new();
    t.set(
        "gpt-image-1",
        ModelPrice {
            image: image_prices(&[
                ("1024x1024/low", 0.011),
                ("1024x1536/low", 0.016),
                ("1536x1024/low", 0.016),
                ("1024x1024/medium", 0.042),
                ("1024x1536/medium", 0.063),
                ("1536x1024/medium", 0.063),
                ("1024x1024/high", 0.167),
                ("1024x1536/high", 0.25),
                ("1536x1024/high", 0.25),
                // `auto` quality is billed by what the model picks; estimate as high.
                ("*/auto", 0.167),
                ("*", 0.167),
            ]),
            input_per_mtok: Some(5.0),
            image_input_per_mtok: Some(10.0),
            output_per_mtok: Some(40.0),
            ..ModelPrice::default()
        },
    );
    t.set(
        "dall-e-3",
        ModelPrice {
            image: image_prices(&[
                ("1024x1024/standard", 0.04),
                ("1024x1792/standard", 0.08),
                ("1792x1024/standard", 0.08),
                ("1024x1024/hd", 0.08),
                ("1024x1792/hd", 0.12),
                ("1792x1024/hd", 0.12),
                ("*/hd", 0.12),
                ("*", 0.04),
            ]),
            ..ModelPrice::default()
        },
    );
    t.set(
        "dall-e-2",
        ModelPrice {
            image: image_prices(&[("256x256", 0.016), ("512x512", 0.018), ("1024x1024", 0.02), ("*", 0.02)]),
            ..ModelPrice::default()
        },
    );
    t.set("gpt-4o", tok(2.5, 10.0));
    t.set("gpt-4o-mini", tok(0.15, 0.6));
    t.set("gpt-4.1", tok(2.0, 8.0));
    t.set("gpt-4.1-mini", tok(0.4, 1.6));
    t.set("gpt-4.1-nano", tok(0.1, 0.4));
    t
}

/// Gemini API list prices (dollars) as defaults.
pub fn gemini_defaults() -> PriceTable {
    let mut t = PriceTable::new();
    t.set("gemini-2.0-flash", tok(0.1, 0.4));
    t.set("gemini-2.5-flash", tok(0.3, 2.5));
    t.set("gemini-2.5-pro", tok(1.25, 10.0));
    // Image output is billed as output tokens (1290 per image at $30/M = $0.039).
    t.set(
        "gemini-2.5-flash-image",
        ModelPrice {
            image: image_prices(&[("*", 0.039)]),
            input_per_mtok: Some(0.3),
            output_per_mtok: Some(30.0),
            ..ModelPrice::default()
        },
    );
    t.set(
        "gemini-2.0-flash-preview-image-generation",
        ModelPrice {
            image: image_prices(&[("*", 0.039)]),
            input_per_mtok: Some(0.1),
            output_per_mtok: Some(30.0),
            ..ModelPrice::default()
        },
    );
    for (m, p) in [
        ("imagen-3.0-generate", 0.03),
        ("imagen-4.0-generate", 0.04),
        ("imagen-4.0-ultra-generate", 0.06),
        ("imagen-4.0-fast-generate", 0.02),
    ] {
        t.set(m, ModelPrice::flat_image(p));
    }
    // Veo is billed per second of video made. A request with no `duration_s`
    // sends no `durationSeconds` and gets the model's default, 8 s for these
    // models (Gemini API video docs: Veo 3 makes 8 s; Veo 2 takes 5 to 8, 8 when
    // unset).
    for (m, p) in [
        ("veo-2.0-generate", 0.35),
        ("veo-3.0-generate", 0.4),
        ("veo-3.0-fast-generate", 0.15),
    ] {
        t.set(
            m,
            ModelPrice {
                per_second: Some(p),
                default_s: Some(8.0),
                ..ModelPrice::default()
            },
        );
    }
    t
}

/// ElevenLabs prices (dollars per thousand characters, API overage rates) as
/// defaults; plans differ, so a spec should set its own.
pub fn elevenlabs_defaults() -> PriceTable {
    let mut t = PriceTable::new();
    for (m, p) in [
        ("eleven_multilingual_v2", 0.3),
        ("eleven_v3", 0.3),
        ("eleven_turbo_v2", 0.15),
        ("eleven_flash_v2", 0.15),
    ] {
        t.set(
            m,
            ModelPrice {
                per_1k_chars: Some(p),
                ..ModelPrice::default()
            },
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn image_prices_fall_back_from_specific_to_general() {
        let t = openai_defaults();
        assert_eq!(t.images("dall-e-3", Some("1024x1024"), Some("hd"), 1), Some(0.08));
        assert_eq!(t.images("dall-e-3", Some("1792x1024"), Some("standard"), 2), Some(0.16));
        assert_eq!(t.images("dall-e-3", Some("512x512"), Some("hd"), 1), Some(0.12));
        assert_eq!(t.images("dall-e-3", None, None, 1), Some(0.04));
        assert_eq!(t.images("no-such-model", None, None, 1), None);
    }

    #[test]
    fn models_match_by_longest_prefix() {
        let t = openai_defaults();
        let c = t.tokens("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000).unwrap();
        assert!((c - 0.75).abs() < 1e-9, "{c}");
        let c = t.tokens("gpt-4o-2024-08-06", 1_000_000, 0).unwrap();
        assert!((c - 2.5).abs() < 1e-9, "{c}");
    }

    #[test]
    fn overrides_replace_fields_and_add_images() {
        let t = openai_defaults()
            .with_overrides(Some(&json!({
                "dall-e-3": {"image": {"1024x1024/hd": 0.5}},
                "my-local": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
            })))
            .unwrap();
        assert_eq!(t.images("dall-e-3", Some("1024x1024"), Some("hd"), 1), Some(0.5));
        assert_eq!(t.images("dall-e-3", Some("1024x1024"), Some("standard"), 1), Some(0.04));
        assert_eq!(t.tokens("my-local", 500_000, 500_000), Some(1.5));
    }

    #[test]
    fn bad_overrides_name_the_model_and_field() {
        let e = PriceTable::new()
            .with_overrides(Some(&json!({"m": {"per_image": 1.0}})))
            .unwrap_err();
        assert!(
            e.to_string().contains("prices.m") && e.to_string().contains("per_image"),
            "{e}"
        );
        let e = PriceTable::new()
            .with_overrides(Some(&json!({"m": {"per_second": -1.0}})))
            .unwrap_err();
        assert!(e.to_string().contains("prices.m"), "{e}");
    }

    #[test]
    fn seconds_and_characters() {
        assert_eq!(gemini_defaults().seconds("veo-2.0-generate-001", 8.0), Some(2.8));
        let c = elevenlabs_defaults()
            .characters("eleven_multilingual_v2", 2000)
            .unwrap();
        assert!((c - 0.6).abs() < 1e-9);
    }

    #[test]
    fn megapixels_round_up_to_the_unit_the_table_names() {
        let fal = ModelPrice {
            per_megapixel: Some(0.025),
            megapixel_px: Some(1024 * 1024),
            megapixels_round_up: Some(true),
            ..ModelPrice::default()
        };
        assert_eq!(fal.image_cost(Some((1024, 768)), None), Some(0.025));
        assert_eq!(fal.image_cost(Some((1024, 1024)), None), Some(0.025));
        assert_eq!(fal.image_cost(Some((1536, 1024)), None), Some(0.05));
        assert_eq!(fal.image_cost(None, None), None, "no size and no `*`: unpriced");
        let exact = ModelPrice {
            per_megapixel: Some(0.01),
            ..ModelPrice::flat_image(0.5)
        };
        let c = exact.image_cost(Some((1000, 1500)), None).unwrap();
        assert!((c - 0.015).abs() < 1e-12, "{c}");
        assert_eq!(exact.image_cost(None, None), Some(0.5));
    }

    #[test]
    fn media_prices_need_a_duration_or_a_default() {
        let mut p = ModelPrice {
            per_second: Some(0.1),
            ..ModelPrice::default()
        };
        assert_eq!(p.media_cost(None), None);
        assert!((p.media_cost(Some(3.0)).unwrap() - 0.3).abs() < 1e-12);
        p.default_s = Some(5.0);
        assert_eq!(p.media_cost(None), Some(0.5));
    }

    #[test]
    fn new_fields_are_checked_in_overrides() {
        let t = PriceTable::new()
            .with_overrides(Some(&json!({"m": {"per_megapixel": 0.02, "default_s": 4.0}})))
            .unwrap();
        assert_eq!(t.get("m").unwrap().per_megapixel, Some(0.02));
        for bad in [
            json!({"m": {"megapixel_px": 0}}),
            json!({"m": {"per_megapixel": -1.0}}),
            json!({"m": {"est_gpu_s": -2.0}}),
        ] {
            let e = PriceTable::new().with_overrides(Some(&bad)).unwrap_err();
            assert!(e.to_string().contains("prices.m"), "{e}");
        }
    }

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = u32::try_from(body.len() + 8).unwrap().to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn mp4_movie_headers_give_the_duration() {
        let mut v0 = vec![0u8; 12];
        v0.extend_from_slice(&600u32.to_be_bytes());
        v0.extend_from_slice(&4500u32.to_be_bytes());
        let mut file = bx(b"ftyp", b"isom");
        file.extend(bx(b"moov", &bx(b"mvhd", &v0)));
        assert_eq!(mp4_duration_s(&file), Some(7.5));

        let mut v1 = vec![1u8, 0, 0, 0];
        v1.extend_from_slice(&[0; 16]);
        v1.extend_from_slice(&1000u32.to_be_bytes());
        v1.extend_from_slice(&12_000u64.to_be_bytes());
        let mut file = bx(b"ftyp", b"isom");
        file.extend(bx(b"moov", &bx(b"mvhd", &v1)));
        assert_eq!(mp4_duration_s(&file), Some(12.0));

        // No movie header, a truncated one, a zero timescale, garbage: no duration.
        assert_eq!(mp4_duration_s(&bx(b"ftyp", b"isom")), None);
        assert_eq!(mp4_duration_s(&bx(b"moov", &bx(b"mvhd", &[0, 0, 0, 0, 1]))), None);
        let mut zero = vec![0u8; 12];
        zero.extend_from_slice(&[0; 8]);
        assert_eq!(mp4_duration_s(&bx(b"moov", &bx(b"mvhd", &zero))), None);
        assert_eq!(mp4_duration_s(b"\0\0\0\x01moov\0\0"), None);
        assert_eq!(mp4_duration_s(&[0xff; 64]), None);
    }
}
