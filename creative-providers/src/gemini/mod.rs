//! `gemini`: the Gemini API (Google AI) for text, image output, Imagen and Veo.
//!
//! | task | model | endpoint |
//! | --- | --- | --- |
//! | `text` | `model` (default `gemini-2.5-flash`) | `POST {base}/models/{model}:generateContent` |
//! | `image`, `image_edit` | `image_model` (default `gemini-2.5-flash-image`) | `:generateContent` with `responseModalities: ["TEXT", "IMAGE"]`; images come back as `inlineData` base64 |
//! | `image` | a model named `imagen-*` | `POST {base}/models/{model}:predict` |
//! | `video` | `video_model` (default `veo-3.0-generate-001`) | `POST {base}/models/{model}:predictLongRunning`, then `GET {base}/{operation}` until `done`, then the video URI is downloaded |
//!
//! The key goes in the `x-goog-api-key` header (default variable
//! `GEMINI_API_KEY`). Parameters: `temperature`, `max_tokens`, `seed`, `count`
//! (`candidateCount`, `sampleCount`), `aspect_ratio`, `system`, `negative_prompt`
//! (Imagen, Veo), `duration_s` (Veo `durationSeconds`). `Request::raw` is merged
//! last and deeply (see [`crate::http::merge_raw`]): a raw `generationConfig` or
//! `parameters` table adds to the one built from the typed parameters, its keys
//! winning, so the seed and temperature stay unless raw names them. Floats go
//! out as written (`0.7`, not `0.699999988079071`).
//!
//! Preflight: `GET {base}/models/{model}`, which catches a wrong key, a
//! `base_url` without `/v1beta` and an unknown model before any job runs.
//!
//! Refusals: a `promptFeedback.blockReason`, a candidate finishing with `SAFETY`,
//! `PROHIBITED_CONTENT`, `BLOCKLIST`, `SPII`, `IMAGE_SAFETY` or `RECITATION` and no
//! output, Imagen answers whose predictions were all filtered (`raiFilteredReason`),
//! and Veo operations whose samples were all filtered (`raiMediaFilteredReasons`)
//! are `ContentPolicy`. A 400 saying the API key is invalid is `Auth`. The delay
//! in a 429's `RetryInfo` is honoured.
//!
//! On cancellation while a Veo operation runs, `POST {base}/{operation}:cancel` is
//! sent (best effort) before returning.
//!
//! Settings (besides those of [`HttpSettings`]): `image_model`, `video_model`,
//! `poll_interval_s` (first delay between operation polls, default 5, growing to 4x).
//!
//! This file holds the settings, generateContent and Imagen, and the provider;
//! `wire.rs` the shapes of their answers; `veo.rs` the video jobs, which run
//! long (submit, poll the operation with backoff, cancel on drop) and have
//! shapes of their own.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use creative_core::{
    Artifact, CallCtx, Capabilities, ConfigError, ErrorKind, Generation, MediaType, Provider, ProviderError, Request,
    Task, Usage,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::http::{
    backend_settings, decode_base64, encode_base64, http_setters, merge_raw, sniff_media, wire_f32, Auth, ErrorInfo,
    HttpRequest, HttpSettings, HttpSettingsBuilder, SettingsDefaults, Transport,
};
use crate::pricing::{self, gemini_defaults, PriceTable};

mod veo;
mod wire;

use wire::{GenerateContentResponse, PredictResponse};

// ---------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------

const DEFAULTS: SettingsDefaults = SettingsDefaults {
    base_url: "https://generativelanguage.googleapis.com/v1beta",
    key_env: Some("GEMINI_API_KEY"),
    model: "gemini-2.5-flash",
    timeout: Duration::from_secs(180),
};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    image_model: Option<String>,
    video_model: Option<String>,
    poll_interval_s: Option<f64>,
}

/// The Gemini backend.
#[derive(Debug, Clone)]
pub struct Gemini {
    id: String,
    /// The settings fingerprint, computed once.
    fingerprint: String,
    /// Configuration concerns found at build (a missing key).
    warnings: Vec<String>,
    transport: Transport,
    text_model: String,
    image_model: String,
    video_model: String,
    poll_interval: Duration,
    prices: Arc<PriceTable>,
}

/// Builds a [`Gemini`] provider. Setters never fail; [`build`](Self::build)
/// reports the first bad value, naming the field as a spec's settings table
/// spells it. Debug never shows the key.
///
/// ```no_run
/// # fn main() -> Result<(), creative_core::ConfigError> {
/// use std::time::Duration;
/// use creative_providers::gemini::Gemini;
/// let gemini = Gemini::builder()
///     .api_key_env("GEMINI_API_KEY")
///     .video_model("veo-3.0-generate-001")
///     .poll_interval(Duration::from_secs(10))
///     .build()?;
/// # let _ = gemini; Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct GeminiBuilder {
    id: String,
    http: HttpSettingsBuilder,
    extra: Extra,
}

impl GeminiBuilder {
    http_setters!("gemini");

    /// The model for `image` requests (default `gemini-2.5-flash-image`).
    pub fn image_model(mut self, model: impl Into<String>) -> Self {
        self.extra.image_model = Some(model.into());
        self
    }

    /// The Veo model for `video` requests (default `veo-3.0-generate-001`).
    pub fn video_model(mut self, model: impl Into<String>) -> Self {
        self.extra.video_model = Some(model.into());
        self
    }

    /// How often a video operation is polled (default 5 s); positive and below an hour.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.extra.poll_interval_s = Some(every.as_secs_f64());
        self
    }

    /// Check every value, resolve the key and build the provider.
    pub fn build(self) -> Result<Gemini, ConfigError> {
        let GeminiBuilder { id, http, extra } = self;
        let http = http.build()?;
        let poll = extra.poll_interval_s.unwrap_or(5.0);
        if !(poll.is_finite() && poll > 0.0 && poll < 3600.0) {
            return Err(ConfigError::new(
                "poll_interval_s",
                format!("must be a positive number of seconds below 3600, got {poll}"),
            ));
        }
        let auth = http
            .api_key
            .clone()
            .map(|k| Auth::Header("x-goog-api-key", k))
            .unwrap_or(Auth::None);
        let transport = http.transport(&id, auth).error_refiner(refine_error).build()?;
        let prices = gemini_defaults().with_overrides(http.prices.as_ref())?;
        let fingerprint = http.fingerprint(
            "gemini",
            json!({
                "image_model": extra.image_model.as_deref().unwrap_or("gemini-2.5-flash-image"),
                "video_model": extra.video_model.as_deref().unwrap_or("veo-3.0-generate-001"),
            }),
        );
        Ok(Gemini {
            id,
            fingerprint,
            warnings: http.warnings.clone(),
            transport,
            text_model: http.model.clone(),
            image_model: extra.image_model.unwrap_or_else(|| "gemini-2.5-flash-image".into()),
            video_model: extra.video_model.unwrap_or_else(|| "veo-3.0-generate-001".into()),
            poll_interval: Duration::from_secs_f64(poll),
            prices: Arc::new(prices),
        })
    }
}

impl Gemini {
    /// A builder with every default (see the module docs).
    pub fn builder() -> GeminiBuilder {
        GeminiBuilder {
            id: "gemini".into(),
            http: HttpSettings::builder(DEFAULTS),
            extra: Extra::default(),
        }
    }

    /// Build from a spec's settings table (see the module docs): the table
    /// fills a [`GeminiBuilder`]. The error's field is the refused key.
    pub fn from_settings(id: &str, settings: &Value) -> Result<Self, ConfigError> {
        let (http, rest) = HttpSettingsBuilder::parse(settings, DEFAULTS)?;
        GeminiBuilder {
            id: id.to_string(),
            http,
            extra: backend_settings(rest)?,
        }
        .build()
    }
}

// ---------------------------------------------------------------------------------
// Wire types: `wire.rs` (generateContent, Imagen's `:predict`) and `veo.rs`
// (long-running operations)
// ---------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------
// Request mapping (Veo's body: `veo.rs`)
// ---------------------------------------------------------------------------------

/// How a request is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Content,
    Imagen,
    Veo,
}

impl Gemini {
    fn route(&self, req: &Request) -> Result<(Route, String), ProviderError> {
        Ok(match req.task {
            Task::Text => (
                Route::Content,
                req.model.clone().unwrap_or_else(|| self.text_model.clone()),
            ),
            Task::Image | Task::ImageEdit => {
                let m = req.model.clone().unwrap_or_else(|| self.image_model.clone());
                if m.starts_with("imagen") {
                    if req.task == Task::ImageEdit {
                        return Err(ProviderError::invalid(
                            &self.id,
                            "Imagen models do not edit images here",
                        ));
                    }
                    (Route::Imagen, m)
                } else {
                    (Route::Content, m)
                }
            }
            Task::Video => (
                Route::Veo,
                req.model.clone().unwrap_or_else(|| self.video_model.clone()),
            ),
            other => {
                return Err(ProviderError::invalid(
                    &self.id,
                    format!("task `{}` is not supported", other.as_str()),
                ))
            }
        })
    }

    fn content_body(req: &Request) -> Value {
        let mut parts = vec![json!({"text": req.prompt})];
        for a in &req.inputs {
            parts.push(json!({"inlineData": {"mimeType": a.media().as_str(), "data": encode_base64(a.data())}}));
        }
        let mut config = Map::new();
        if let Some(t) = req.params.temperature.and_then(wire_f32) {
            config.insert("temperature".into(), t);
        }
        if let Some(m) = req.params.max_tokens {
            config.insert("maxOutputTokens".into(), json!(m));
        }
        if let Some(s) = req.params.seed {
            // The API takes a 32-bit seed.
            config.insert("seed".into(), json!(s as u32 as i32));
        }
        if let Some(n) = req.params.count {
            config.insert("candidateCount".into(), json!(n));
        }
        if matches!(req.task, Task::Image | Task::ImageEdit) {
            config.insert("responseModalities".into(), json!(["TEXT", "IMAGE"]));
            if let Some(r) = &req.params.aspect_ratio {
                config.insert("imageConfig".into(), json!({"aspectRatio": r}));
            }
        }
        let mut b = Map::new();
        b.insert("contents".into(), json!([{"role": "user", "parts": parts}]));
        if let Some(s) = &req.params.system {
            b.insert("systemInstruction".into(), json!({"parts": [{"text": s}]}));
        }
        if !config.is_empty() {
            b.insert("generationConfig".into(), Value::Object(config));
        }
        let mut v = Value::Object(b);
        merge_raw(&mut v, &req.raw);
        v
    }

    fn imagen_body(req: &Request) -> Value {
        let mut p = Map::new();
        p.insert("sampleCount".into(), json!(req.params.count.unwrap_or(1)));
        if let Some(r) = &req.params.aspect_ratio {
            p.insert("aspectRatio".into(), json!(r));
        }
        if let Some(n) = &req.negative_prompt {
            p.insert("negativePrompt".into(), json!(n));
        }
        if let Some(s) = req.params.seed {
            p.insert("seed".into(), json!(s as u32 as i32));
        }
        let mut v = json!({"instances": [{"prompt": req.prompt}], "parameters": p});
        merge_raw(&mut v, &req.raw);
        v
    }
}

// ---------------------------------------------------------------------------------
// Response mapping
// ---------------------------------------------------------------------------------

const REFUSALS: &[&str] = &[
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "RECITATION",
];

impl Gemini {
    fn protocol(&self, msg: impl Into<String>) -> ProviderError {
        ProviderError::new(ErrorKind::Protocol, &self.id, msg)
    }

    fn refused(&self, msg: impl Into<String>) -> ProviderError {
        ProviderError::new(ErrorKind::ContentPolicy, &self.id, msg)
    }

    fn content_response(
        &self,
        model: &str,
        req: &Request,
        r: GenerateContentResponse,
    ) -> Result<Generation, ProviderError> {
        if let Some(f) = &r.prompt_feedback {
            if let Some(reason) = &f.block_reason {
                let detail = f.block_reason_message.as_deref().unwrap_or("");
                return Err(self.refused(format!("prompt blocked ({reason}) {detail}").trim().to_string()));
            }
        }
        let model = r.model_version.as_deref().unwrap_or(model);
        let want_image = matches!(req.task, Task::Image | Task::ImageEdit);
        let mut artifacts = Vec::new();
        let mut texts = Vec::new();
        let mut refusal = None;
        for c in &r.candidates {
            let parts = c.content.as_ref().map(|c| c.parts.as_slice()).unwrap_or(&[]);
            let before = artifacts.len() + texts.len();
            for p in parts {
                if p.thought == Some(true) {
                    continue;
                }
                if let Some(d) = &p.inline_data {
                    let data = decode_base64(&self.id, &d.data)?;
                    let media = d.mime_type.parse::<MediaType>().unwrap_or(MediaType::Png);
                    let media = if media.kind() == creative_core::MediaKind::Other {
                        sniff_media(&data).unwrap_or(media)
                    } else {
                        media
                    };
                    let mut a = Artifact::new(media, data);
                    a.provenance_mut().model = Some(model.to_string());
                    artifacts.push(a);
                } else if let Some(t) = &p.text {
                    texts.push(t.clone());
                }
            }
            if artifacts.len() + texts.len() == before {
                if let Some(reason) = c.finish_reason.as_deref().filter(|r| REFUSALS.contains(r)) {
                    refusal = Some(reason.to_string());
                }
            }
        }
        if want_image {
            if artifacts.is_empty() {
                return Err(match refusal {
                    Some(r) => self.refused(format!("no image: finished with {r}")),
                    // The model answered in words only; say what it said.
                    None => self.protocol(format!("no image in the answer; text: {}", texts.join(" "))),
                });
            }
            if !texts.is_empty() {
                let t = texts.join("\n");
                for a in &mut artifacts {
                    a.meta_mut().extra.insert("text".into(), json!(t));
                }
            }
        } else {
            if texts.is_empty() {
                return Err(match refusal {
                    Some(r) => self.refused(format!("no text: finished with {r}")),
                    None => self.protocol("the answer has no text"),
                });
            }
            // One artifact per candidate's text: join the parts of each.
            for t in texts {
                let mut a = Artifact::text_plain(t);
                a.provenance_mut().model = Some(model.to_string());
                artifacts.push(a);
            }
        }
        let mut usage = Usage::default();
        if let Some(u) = &r.usage_metadata {
            let out = match (u.candidates_token_count, u.thoughts_token_count) {
                (None, None) => None,
                (c, t) => Some(c.unwrap_or(0).saturating_add(t.unwrap_or(0))),
            };
            usage.input_tokens = u.prompt_token_count;
            usage.output_tokens = out;
            usage.cost_usd = self
                .prices
                .tokens(model, u.prompt_token_count.unwrap_or(0), out.unwrap_or(0))
                .unwrap_or(0.0);
        }
        if want_image {
            usage.units = Some(artifacts.len() as f64);
            if usage.cost_usd == 0.0 {
                usage.cost_usd = self
                    .prices
                    .images(model, None, None, artifacts.len() as u32)
                    .unwrap_or(0.0);
            }
        }
        Ok(Generation {
            artifacts,
            usage,
            raw: None,
        })
    }

    fn imagen_response(&self, model: &str, r: PredictResponse) -> Result<Generation, ProviderError> {
        let mut artifacts = Vec::new();
        let mut filtered = Vec::new();
        for p in &r.predictions {
            match (&p.bytes_base64_encoded, &p.rai_filtered_reason) {
                (Some(b), _) => {
                    let data = decode_base64(&self.id, b)?;
                    let media = p
                        .mime_type
                        .as_deref()
                        .and_then(|m| m.parse().ok())
                        .or_else(|| sniff_media(&data))
                        .unwrap_or(MediaType::Png);
                    let mut a = Artifact::new(media, data);
                    a.provenance_mut().model = Some(model.to_string());
                    artifacts.push(a);
                }
                (None, Some(reason)) => filtered.push(reason.clone()),
                (None, None) => {}
            }
        }
        if artifacts.is_empty() {
            return Err(if filtered.is_empty() {
                // Imagen answers `{}` when every image was filtered and no reason was asked for.
                self.refused("no image returned (all filtered)")
            } else {
                self.refused(filtered.join("; "))
            });
        }
        let n = artifacts.len() as u32;
        Ok(Generation {
            artifacts,
            usage: Usage {
                cost_usd: self.prices.images(model, None, None, n).unwrap_or(0.0),
                units: Some(f64::from(n)),
                ..Usage::default()
            },
            raw: None,
        })
    }
}

// ---------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------

/// Google answers a bad key with 400 `INVALID_ARGUMENT` and reason `API_KEY_INVALID`.
fn refine_error(e: &ErrorInfo<'_>) -> Option<ErrorKind> {
    let reason_is = |r: &str| {
        e.json
            .and_then(|j| j.pointer("/error/details"))
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x.get("reason").and_then(Value::as_str) == Some(r)))
    };
    if reason_is("API_KEY_INVALID") || e.message.contains("API key not valid") || e.code == Some("UNAUTHENTICATED") {
        return Some(ErrorKind::Auth);
    }
    if e.code == Some("PERMISSION_DENIED") {
        return Some(ErrorKind::Auth);
    }
    None
}

#[async_trait]
impl Provider for Gemini {
    fn id(&self) -> &str {
        &self.id
    }

    /// `GET {base}/models/{model}` for the text model: authenticated and free, it
    /// checks the key, the base URL (a `base_url` without `/v1beta` answers 404
    /// here rather than on every job) and the model name.
    async fn preflight(&self, ctx: &CallCtx) -> Result<(), ProviderError> {
        self.transport
            .send(HttpRequest::get(format!("models/{}", self.text_model)), ctx)
            .await
            .map(|_| ())
    }

    /// The base URL, default model, extra header names and the backend's own
    /// output-shaping settings (see `HttpSettings::fingerprint`).
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tasks: vec![Task::Text, Task::Image, Task::ImageEdit, Task::Video],
            seed: true,
            negative_prompt: true,
            max_count: 4,
        }
    }

    /// The request's model, else this provider's default for the task.
    fn model(&self, req: &Request) -> Option<String> {
        self.route(req).ok().map(|(_, model)| model)
    }

    /// The price of `req` from the price table, `None` for a model it lacks.
    /// A request no route takes is refused before any call, so it costs nothing.
    fn price(&self, req: &Request) -> Option<f64> {
        let Ok((route, model)) = self.route(req) else {
            return Some(0.0);
        };
        let n = req.params.count.unwrap_or(1);
        match (route, req.task) {
            // Seconds asked for, else the model's default (`default_s`, 8 s for Veo).
            (Route::Veo, _) => pricing::estimate(self.prices.get(&model)?, req),
            (Route::Imagen, _) | (Route::Content, Task::Image | Task::ImageEdit) => {
                self.prices.images(&model, None, None, n)
            }
            _ => {
                let input = (req.prompt.len() / 4) as u64 + 16;
                let output = u64::from(req.params.max_tokens.unwrap_or(256));
                self.prices.tokens(&model, input, output)
            }
        }
    }

    async fn generate(&self, req: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        let (route, model) = self.route(req)?;
        match route {
            Route::Content => {
                let body = Self::content_body(req);
                let r: GenerateContentResponse = self
                    .transport
                    .send_json(
                        HttpRequest::post_json(format!("models/{model}:generateContent"), body),
                        ctx,
                    )
                    .await?;
                self.content_response(&model, req, r)
            }
            Route::Imagen => {
                let body = Self::imagen_body(req);
                let r: PredictResponse = self
                    .transport
                    .send_json(HttpRequest::post_json(format!("models/{model}:predict"), body), ctx)
                    .await?;
                self.imagen_response(&model, r)
            }
            Route::Veo => self.veo(&model, req, ctx).await,
        }
    }
}

/// Register the `gemini` kind.
pub fn register(reg: &mut creative_core::registry::Registry) {
    reg.provider(
        "gemini",
        Arc::new(|id: &str, settings: &Value, _: &creative_core::registry::BuildCtx| {
            Gemini::from_settings(id, settings).map(|p| Arc::new(p) as Arc<dyn Provider>)
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_task_and_model() {
        let g = Gemini::from_settings("gemini", &json!({"api_key": "k"})).unwrap();
        let mut r = Request::new(Task::Image, "x");
        assert_eq!(g.route(&r).unwrap(), (Route::Content, "gemini-2.5-flash-image".into()));
        r.model = Some("imagen-4.0-generate-001".into());
        assert_eq!(g.route(&r).unwrap().0, Route::Imagen);
        r.task = Task::Video;
        r.model = None;
        assert_eq!(g.route(&r).unwrap(), (Route::Veo, "veo-3.0-generate-001".into()));
        r.task = Task::Audio;
        assert_eq!(g.route(&r).unwrap_err().kind(), ErrorKind::Invalid);
    }

    #[test]
    fn bad_settings_are_named() {
        let e = Gemini::from_settings("gemini", &json!({"poll_interval_s": -1})).unwrap_err();
        assert!(e.to_string().contains("poll_interval_s"), "{e}");
        let e = Gemini::from_settings("gemini", &json!({"videomodel": "v"})).unwrap_err();
        assert!(e.to_string().contains("videomodel"), "{e}");
    }
}
