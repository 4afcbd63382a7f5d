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

use std::collections::BTreeMap;

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
    /// Dollars per thousand characters of input (speech).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_1k_chars: Option<f64>,
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
            per_1k_chars
        );
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
    pub fn with_overrides(mut self, overrides: Option<&Value>) -> Result<Self, String> {
        let Some(v) = overrides else {
            return Ok(self);
        };
        let Value::Object(map) = v else {
            return Err("`prices` must be a table of models".into());
        };
        for (model, entry) in map {
            let p: ModelPrice = serde_json::from_value(entry.clone()).map_err(|e| format!("`prices.{model}`: {e}"))?;
            let all = p.image.values().copied().chain(
                [
                    p.input_per_mtok,
                    p.image_input_per_mtok,
                    p.output_per_mtok,
                    p.per_second,
                    p.per_1k_chars,
                ]
                .into_iter()
                .flatten(),
            );
            for x in all {
                if !(x.is_finite() && x >= 0.0) {
                    return Err(format!(
                        "`prices.{model}`: prices must be finite and not negative, got {x}"
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
    for (m, p) in [
        ("veo-2.0-generate", 0.35),
        ("veo-3.0-generate", 0.4),
        ("veo-3.0-fast-generate", 0.15),
    ] {
        t.set(
            m,
            ModelPrice {
                per_second: Some(p),
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
        assert!(e.contains("prices.m") && e.contains("per_image"), "{e}");
        let e = PriceTable::new()
            .with_overrides(Some(&json!({"m": {"per_second": -1.0}})))
            .unwrap_err();
        assert!(e.contains("prices.m"), "{e}");
    }

    #[test]
    fn seconds_and_characters() {
        assert_eq!(gemini_defaults().seconds("veo-2.0-generate-001", 8.0), Some(2.8));
        let c = elevenlabs_defaults()
            .characters("eleven_multilingual_v2", 2000)
            .unwrap();
        assert!((c - 0.6).abs() < 1e-9);
    }
}
