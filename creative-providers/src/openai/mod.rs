//! `openai`: the OpenAI Images API (generations and edits) and chat completions,
//! for OpenAI itself or any OpenAI-compatible server through `base_url`.
//!
//! | task | endpoint |
//! | --- | --- |
//! | `image` | `POST {base}/images/generations` (JSON) |
//! | `image_edit` | `POST {base}/images/edits` (multipart: `image` or `image[]`, `mask`) |
//! | `text` | `POST {base}/chat/completions` (JSON, `stream: false`) |
//!
//! Parameters: `width`x`height` (or `aspect_ratio`) become `size`; `quality`,
//! `count` (`n`), `style` (dall-e-3), `format` (`output_format`, gpt-image models).
//! dall-e models are asked for `b64_json` unless `response_format = "url"` is set,
//! in which case the URLs are downloaded through the HTTP layer. `background`,
//! `output_compression`, `moderation` and anything else go in `Request::raw`.
//! An input artifact whose `meta.extra.role` is `"mask"` is sent as the edit mask.
//!
//! Usage: gpt-image models report tokens (priced per token); dall-e models are
//! priced per image by size and quality; chat models per token. Refusals
//! (`content_policy_violation`, `moderation_blocked`, `finish_reason:
//! content_filter`, a `refusal` message) are `ContentPolicy`.
//!
//! Settings (besides those of [`HttpSettings`]): `text_model` (default
//! `gpt-4o-mini`), `response_format` (`b64_json` or `url`), `max_count` (default 10).
//! The key comes from `api_key_env` (default `OPENAI_API_KEY`).

use std::borrow::Cow;
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
    backend_settings, decode_base64, encode_base64, http_setters, lenient_block, lenient_count, merge_raw, sniff_media,
    wire_f32, Auth, ErrorInfo, FormPart, HttpRequest, HttpSettings, HttpSettingsBuilder, SettingsDefaults, Transport,
};
use crate::pricing::{openai_defaults, PriceTable};

// ---------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------

const DEFAULTS: SettingsDefaults = SettingsDefaults {
    base_url: "https://api.openai.com/v1",
    key_env: Some("OPENAI_API_KEY"),
    model: "gpt-image-1",
    timeout: Duration::from_secs(180),
};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    text_model: Option<String>,
    response_format: Option<String>,
    max_count: Option<u32>,
}

/// The OpenAI backend.
#[derive(Debug, Clone)]
pub struct OpenAi {
    id: String,
    /// The settings fingerprint, computed once.
    fingerprint: String,
    /// Configuration concerns found at build (a missing key).
    warnings: Vec<String>,
    transport: Transport,
    image_model: String,
    text_model: String,
    response_format: Option<String>,
    max_count: u32,
    prices: Arc<PriceTable>,
}

impl OpenAi {
    /// A builder with every default (see the module docs).
    pub fn builder() -> OpenAiBuilder {
        OpenAiBuilder {
            id: "openai".into(),
            http: HttpSettings::builder(DEFAULTS),
            extra: Extra::default(),
        }
    }

    /// Build from a spec's settings table (see the module docs): the table
    /// fills an [`OpenAiBuilder`]. The error's field is the refused key.
    pub fn from_settings(id: &str, settings: &Value) -> Result<Self, ConfigError> {
        let (http, rest) = HttpSettingsBuilder::parse(settings, DEFAULTS)?;
        OpenAiBuilder {
            id: id.to_string(),
            http,
            extra: backend_settings(rest)?,
        }
        .build()
    }

    /// The transport (for tests and tools).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }
}

/// Builds an [`OpenAi`] provider. Setters never fail; [`build`](Self::build)
/// reports the first bad value, naming the field as a spec's settings table
/// spells it. Debug never shows the key.
///
/// ```no_run
/// # fn main() -> Result<(), creative_core::ConfigError> {
/// use creative_providers::openai::OpenAi;
/// let openai = OpenAi::builder()
///     .api_key_env("OPENAI_API_KEY")
///     .model("gpt-image-1")
///     .text_model("gpt-4o-mini")
///     .build()?;
/// # let _ = openai; Ok(()) }
/// ```
///
/// Any OpenAI-compatible server, and a bad value named by its field:
///
/// ```
/// use creative_providers::openai::OpenAi;
/// let local = OpenAi::builder().base_url("http://127.0.0.1:8080/v1").build();
/// assert!(local.is_ok());
/// let e = OpenAi::builder().response_format("png").build().unwrap_err();
/// assert_eq!(e.field(), "response_format");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct OpenAiBuilder {
    id: String,
    http: HttpSettingsBuilder,
    extra: Extra,
}

impl OpenAiBuilder {
    http_setters!("openai");

    /// The chat model for `text` requests (default `gpt-4o-mini`).
    pub fn text_model(mut self, model: impl Into<String>) -> Self {
        self.extra.text_model = Some(model.into());
        self
    }

    /// How dall-e models return images: `b64_json` (the default) or `url`.
    pub fn response_format(mut self, format: impl Into<String>) -> Self {
        self.extra.response_format = Some(format.into());
        self
    }

    /// Most images asked in one call (default 10).
    pub fn max_count(mut self, n: u32) -> Self {
        self.extra.max_count = Some(n);
        self
    }

    /// Check every value, resolve the key and build the provider.
    pub fn build(self) -> Result<OpenAi, ConfigError> {
        let OpenAiBuilder { id, http, extra } = self;
        let http = http.build()?;
        if let Some(f) = &extra.response_format {
            if f != "b64_json" && f != "url" {
                return Err(ConfigError::new(
                    "response_format",
                    format!("must be `b64_json` or `url`, got `{f}`"),
                ));
            }
        }
        let auth = http.api_key.clone().map(Auth::Bearer).unwrap_or(Auth::None);
        let transport = http.transport(&id, auth).error_refiner(refine_error).build()?;
        let prices = openai_defaults().with_overrides(http.prices.as_ref())?;
        let fingerprint = http.fingerprint(
            "openai",
            json!({"text_model": extra.text_model.as_deref().unwrap_or("gpt-4o-mini")}),
        );
        Ok(OpenAi {
            id,
            fingerprint,
            warnings: http.warnings.clone(),
            transport,
            image_model: http.model.clone(),
            text_model: extra.text_model.unwrap_or_else(|| "gpt-4o-mini".into()),
            response_format: extra.response_format,
            max_count: extra.max_count.unwrap_or(10),
            prices: Arc::new(prices),
        })
    }
}

// ---------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------

/// Borrows from the response body: an image's base64 (megabytes) is decoded
/// straight from it rather than copied into a `String` first.
#[derive(Debug, Deserialize)]
struct ImagesResponse<'a> {
    #[serde(default, borrow)]
    data: Vec<ImageData<'a>>,
    #[serde(default)]
    output_format: Option<String>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    quality: Option<String>,
    #[serde(default, deserialize_with = "lenient_block")]
    usage: Option<ImageUsage>,
}

#[derive(Debug, Deserialize)]
struct ImageData<'a> {
    #[serde(default, borrow)]
    b64_json: Option<Base64Text<'a>>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    revised_prompt: Option<String>,
}

/// Base64 text borrowed from the body unless the JSON escapes a character in it
/// (`\/`). A newtype, because serde borrows a `Cow` only as a field of its own,
/// never inside an `Option`.
#[derive(Debug, Deserialize)]
struct Base64Text<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Debug, Deserialize)]
struct ImageUsage {
    #[serde(default, deserialize_with = "lenient_count")]
    input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient_count")]
    output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient_block")]
    input_tokens_details: Option<InputTokenDetails>,
}

#[derive(Debug, Deserialize)]
struct InputTokenDetails {
    #[serde(default, deserialize_with = "lenient_count")]
    text_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient_count")]
    image_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<ChatChoice>,
    #[serde(default, deserialize_with = "lenient_block")]
    usage: Option<ChatUsage>,
}

#[derive(Debug, Deserialize)]
struct ChatChoice {
    message: ChatMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatUsage {
    #[serde(default, deserialize_with = "lenient_count")]
    prompt_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient_count")]
    completion_tokens: Option<u64>,
}

// ---------------------------------------------------------------------------------
// Request mapping
// ---------------------------------------------------------------------------------

fn is_gpt_image(model: &str) -> bool {
    model.starts_with("gpt-image")
}

/// OpenAI's o-series and GPT-5 models, which take `max_completion_tokens`.
fn is_reasoning_model(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    ["o1", "o3", "o4", "gpt-5"].iter().any(|p| {
        m.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '.']))
    })
}

/// The `size` for a request: explicit width x height, else the model's size
/// closest to the aspect ratio.
fn size_for(model: &str, req: &Request) -> Option<String> {
    if let (Some(w), Some(h)) = (req.params.width, req.params.height) {
        return Some(format!("{w}x{h}"));
    }
    let ratio = req.params.aspect_ratio.as_deref()?;
    let (a, b) = ratio.split_once(':')?;
    let (a, b): (f64, f64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    let wide = if model.starts_with("dall-e-3") {
        "1792x1024"
    } else {
        "1536x1024"
    };
    let tall = if model.starts_with("dall-e-3") {
        "1024x1792"
    } else {
        "1024x1536"
    };
    Some(
        if a > b * 1.15 {
            wide
        } else if b > a * 1.15 {
            tall
        } else {
            "1024x1024"
        }
        .to_string(),
    )
}

impl OpenAi {
    fn response_format(&self, model: &str) -> Option<&str> {
        // gpt-image models always answer base64 and reject the parameter.
        if is_gpt_image(model) {
            None
        } else {
            Some(self.response_format.as_deref().unwrap_or("b64_json"))
        }
    }

    fn image_body(&self, model: &str, req: &Request) -> Value {
        let mut b = Map::new();
        b.insert("model".into(), json!(model));
        b.insert("prompt".into(), json!(req.prompt));
        if let Some(n) = req.params.count {
            b.insert("n".into(), json!(n));
        }
        if let Some(s) = size_for(model, req) {
            b.insert("size".into(), json!(s));
        }
        if let Some(q) = &req.params.quality {
            b.insert("quality".into(), json!(q));
        }
        if model.starts_with("dall-e-3") {
            if let Some(s) = &req.params.style {
                b.insert("style".into(), json!(s));
            }
        }
        if is_gpt_image(model) {
            if let Some(f) = &req.params.format {
                b.insert("output_format".into(), json!(f));
            }
        }
        if let Some(f) = self.response_format(model) {
            b.insert("response_format".into(), json!(f));
        }
        let mut v = Value::Object(b);
        merge_raw(&mut v, &req.raw);
        v
    }

    fn edit_form(&self, model: &str, req: &Request) -> Result<Vec<FormPart>, ProviderError> {
        // The body is built as JSON first so `raw` merges the same way, then each
        // field becomes a form field.
        let mut fields = self.image_body(model, req);
        if let Value::Object(m) = &mut fields {
            m.remove("style");
        }
        let mut parts = Vec::new();
        if let Value::Object(m) = fields {
            for (k, v) in m {
                let text = match v {
                    Value::String(s) => s,
                    Value::Null => continue,
                    other => other.to_string(),
                };
                parts.push(FormPart::text(k, text));
            }
        }
        let is_mask = |a: &Artifact| a.meta().extra.get("role").and_then(Value::as_str) == Some("mask");
        let images: Vec<&Artifact> = req.inputs.iter().filter(|a| !is_mask(a)).collect();
        if images.is_empty() {
            return Err(ProviderError::invalid(
                &self.id,
                "image_edit needs at least one input image",
            ));
        }
        // gpt-image models take several images as `image[]`; dall-e-2 takes one `image`.
        let field = if images.len() > 1 { "image[]" } else { "image" };
        for (i, a) in images.iter().enumerate() {
            parts.push(FormPart::file(
                field,
                a.data().clone(),
                format!("image{i}.{}", a.media().extension()),
                a.media().as_str(),
            ));
        }
        if let Some(m) = req.inputs.iter().find(|a| is_mask(a)) {
            parts.push(FormPart::file(
                "mask",
                m.data().clone(),
                format!("mask.{}", m.media().extension()),
                m.media().as_str(),
            ));
        }
        Ok(parts)
    }

    fn chat_body(&self, model: &str, req: &Request) -> Value {
        let mut messages = Vec::new();
        if let Some(s) = &req.params.system {
            messages.push(json!({"role": "system", "content": s}));
        }
        let images: Vec<&Artifact> = req
            .inputs
            .iter()
            .filter(|a| a.media().as_str().starts_with("image/"))
            .collect();
        if images.is_empty() {
            messages.push(json!({"role": "user", "content": req.prompt}));
        } else {
            let mut content = vec![json!({"type": "text", "text": req.prompt})];
            for a in images {
                let url = format!("data:{};base64,{}", a.media(), encode_base64(a.data()));
                content.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            messages.push(json!({"role": "user", "content": content}));
        }
        let mut b = Map::new();
        b.insert("model".into(), json!(model));
        b.insert("messages".into(), Value::Array(messages));
        b.insert("stream".into(), json!(false));
        if let Some(t) = req.params.temperature.and_then(wire_f32) {
            b.insert("temperature".into(), t);
        }
        if let Some(m) = req.params.max_tokens {
            // OpenAI's reasoning models refuse `max_tokens` (its replacement,
            // `max_completion_tokens`, also counts reasoning tokens); compatible
            // servers mostly know only `max_tokens`.
            let key = if is_reasoning_model(model) {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            b.insert(key.into(), json!(m));
        }
        if let Some(s) = req.params.seed {
            b.insert("seed".into(), json!(s));
        }
        if let Some(n) = req.params.count {
            b.insert("n".into(), json!(n));
        }
        let mut v = Value::Object(b);
        merge_raw(&mut v, &req.raw);
        v
    }

    fn model_for(&self, req: &Request) -> String {
        match (&req.model, req.task) {
            (Some(m), _) => m.clone(),
            (None, Task::Text) => self.text_model.clone(),
            (None, _) => self.image_model.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------
// Response mapping
// ---------------------------------------------------------------------------------

fn media_for_format(f: &str) -> Option<MediaType> {
    match f {
        "png" => Some(MediaType::Png),
        "jpeg" | "jpg" => Some(MediaType::Jpeg),
        "webp" => Some(MediaType::Webp),
        _ => None,
    }
}

fn parse_size(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

impl OpenAi {
    async fn images_response(
        &self,
        model: &str,
        req: &Request,
        resp: ImagesResponse<'_>,
        ctx: &CallCtx,
    ) -> Result<Generation, ProviderError> {
        if resp.data.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::Protocol,
                &self.id,
                "the response has no images",
            ));
        }
        let size = resp.size.clone().or_else(|| size_for(model, req));
        let declared = resp
            .output_format
            .as_deref()
            .or(req.params.format.as_deref())
            .and_then(media_for_format);
        let mut artifacts = Vec::with_capacity(resp.data.len());
        for d in &resp.data {
            let (data, served) = match (&d.b64_json, &d.url) {
                (Some(b), _) => (decode_base64(&self.id, &b.0)?, None),
                (None, Some(u)) => {
                    let dl = self.transport.download(u, ctx).await?;
                    (dl.data, dl.media)
                }
                (None, None) => {
                    return Err(ProviderError::new(
                        ErrorKind::Protocol,
                        &self.id,
                        "an image entry has neither b64_json nor url",
                    ))
                }
            };
            let media = sniff_media(&data)
                .or(served)
                .or(declared.clone())
                .unwrap_or(MediaType::Png);
            let mut a = Artifact::new(media, data);
            let meta = a.meta_mut();
            if let Some((w, h)) = size.as_deref().and_then(parse_size) {
                meta.width = Some(w);
                meta.height = Some(h);
            }
            if let Some(p) = &d.revised_prompt {
                meta.extra.insert("revised_prompt".into(), json!(p));
            }
            a.provenance_mut().model = Some(model.to_string());
            artifacts.push(a);
        }
        let n = artifacts.len() as u32;
        let quality = resp.quality.as_deref().or(req.params.quality.as_deref());
        let mut usage = Usage {
            units: Some(f64::from(n)),
            ..Usage::default()
        };
        // Priced by tokens only when the counts it needs are usable; else by image.
        let by_tokens = resp.usage.as_ref().and_then(|u| {
            usage.input_tokens = u.input_tokens;
            usage.output_tokens = u.output_tokens;
            let (input, output) = (u.input_tokens?, u.output_tokens?);
            let (text, image) = match u.input_tokens_details.as_ref() {
                Some(d) => (d.text_tokens?, d.image_tokens.unwrap_or(0)),
                None => (input, 0),
            };
            self.prices.get(model)?.tokens(text, image, output)
        });
        usage.cost_usd = by_tokens
            .or_else(|| {
                self.prices
                    .images(model, size.as_deref(), quality.or(default_quality(model)), n)
            })
            .unwrap_or_else(|| {
                tracing::debug!(provider = %self.id, model, "no price for this model; cost recorded as 0");
                0.0
            });
        Ok(Generation {
            artifacts,
            usage,
            raw: None,
        })
    }

    fn chat_response(&self, model: &str, resp: ChatResponse) -> Result<Generation, ProviderError> {
        let model = resp.model.as_deref().unwrap_or(model);
        let mut artifacts = Vec::new();
        for c in &resp.choices {
            if let Some(r) = &c.message.refusal {
                return Err(ProviderError::new(
                    ErrorKind::ContentPolicy,
                    &self.id,
                    format!("refused: {r}"),
                ));
            }
            if c.finish_reason.as_deref() == Some("content_filter") {
                return Err(ProviderError::new(
                    ErrorKind::ContentPolicy,
                    &self.id,
                    "the output was withheld by the content filter",
                ));
            }
            if let Some(t) = &c.message.content {
                let mut a = Artifact::text_plain(t.clone());
                a.provenance_mut().model = Some(model.to_string());
                artifacts.push(a);
            }
        }
        if artifacts.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::Protocol,
                &self.id,
                "the response has no message content",
            ));
        }
        let mut usage = Usage::default();
        if let Some(u) = &resp.usage {
            usage.input_tokens = u.prompt_tokens;
            usage.output_tokens = u.completion_tokens;
            usage.cost_usd = self
                .prices
                .tokens(model, u.prompt_tokens.unwrap_or(0), u.completion_tokens.unwrap_or(0))
                .unwrap_or(0.0);
        }
        Ok(Generation {
            artifacts,
            usage,
            raw: None,
        })
    }
}

fn default_quality(model: &str) -> Option<&'static str> {
    if model.starts_with("dall-e-3") {
        Some("standard")
    } else if is_gpt_image(model) {
        Some("auto")
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------

/// OpenAI's own signals beyond the shared mapping.
fn refine_error(e: &ErrorInfo<'_>) -> Option<ErrorKind> {
    match e.code {
        Some("content_policy_violation" | "moderation_blocked" | "image_generation_user_error") => {
            Some(ErrorKind::ContentPolicy)
        }
        // Out of money on the account: retrying will not help until someone pays.
        Some("insufficient_quota" | "billing_hard_limit_reached" | "billing_not_active") => Some(ErrorKind::Auth),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------
// The provider
// ---------------------------------------------------------------------------------

#[async_trait]
impl Provider for OpenAi {
    fn id(&self) -> &str {
        &self.id
    }

    /// For a compatible server (any `base_url` but OpenAI's own): `GET models`.
    /// Any HTTP answer but "not found" means a server is there (one that wants a
    /// key still answers 401); a refused connection, a timeout or a 404 (the
    /// base URL misses its `/v1`) fail. OpenAI's own API is not asked.
    async fn preflight(&self, ctx: &CallCtx) -> Result<(), ProviderError> {
        if self.transport.base_url().host_str() == Some("api.openai.com") {
            return Ok(());
        }
        match self.transport.send(HttpRequest::get("models"), ctx).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Err(e),
            Err(e) if e.status().is_some() => Ok(()),
            Err(e) => Err(e),
        }
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
            tasks: vec![Task::Image, Task::ImageEdit, Task::Text],
            seed: false,
            negative_prompt: false,
            max_count: self.max_count,
        }
    }

    /// The request's model, else this provider's default for the task.
    fn model(&self, req: &Request) -> Option<String> {
        Some(self.model_for(req))
    }

    /// The price of `req` from the price table, `None` for a model it lacks.
    fn price(&self, req: &Request) -> Option<f64> {
        let model = self.model_for(req);
        match req.task {
            Task::Text => {
                let input = (req.prompt.len() / 4) as u64 + 16;
                let output = u64::from(req.params.max_tokens.unwrap_or(256));
                self.prices.tokens(&model, input, output)
            }
            _ => {
                let size = size_for(&model, req);
                let q = req.params.quality.as_deref().or(default_quality(&model));
                self.prices
                    .images(&model, size.as_deref(), q, req.params.count.unwrap_or(1))
            }
        }
    }

    async fn generate(&self, req: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        let model = self.model_for(req);
        match req.task {
            Task::Image => {
                let body = self.image_body(&model, req);
                let http = self
                    .transport
                    .send(HttpRequest::post_json("images/generations", body), ctx)
                    .await?;
                self.images_response(&model, req, http.json(&self.id)?, ctx).await
            }
            Task::ImageEdit => {
                let form = self.edit_form(&model, req)?;
                let http = self
                    .transport
                    .send(HttpRequest::post_multipart("images/edits", form), ctx)
                    .await?;
                self.images_response(&model, req, http.json(&self.id)?, ctx).await
            }
            Task::Text => {
                let body = self.chat_body(&model, req);
                let resp: ChatResponse = self
                    .transport
                    .send_json(HttpRequest::post_json("chat/completions", body), ctx)
                    .await?;
                self.chat_response(&model, resp)
            }
            other => Err(ProviderError::invalid(
                &self.id,
                format!("task `{}` is not supported", other.as_str()),
            )),
        }
    }
}

/// Register the `openai` kind.
pub fn register(reg: &mut creative_core::registry::Registry) {
    reg.provider(
        "openai",
        Arc::new(|id: &str, settings: &Value, _: &creative_core::registry::BuildCtx| {
            OpenAi::from_settings(id, settings).map(|p| Arc::new(p) as Arc<dyn Provider>)
        }),
    );
}

#[cfg(test)]
mod tests;
