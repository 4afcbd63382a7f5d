//! `replicate`: predictions on Replicate.
//!
//! The model setting picks the form:
//!
//! - `owner/name` (an official or deployment-less model): `POST
//!   /v1/models/{owner}/{name}/predictions` with `{input}`;
//! - `owner/name:version` or a bare 64-hex version id: `POST /v1/predictions` with
//!   `{version, input}`.
//!
//! The request carries `Prefer: wait=N` (setting `wait_s`, default 60; 0 disables
//! it), so a quick model answers in the creation call. Otherwise the prediction is
//! polled at `urls.get` until a final state (`succeeded`, `failed`, `canceled`,
//! `aborted`: the last is a prediction stopped before it started, such as by a
//! deadline). `urls.get` and `urls.cancel` are moved onto the configured
//! `base_url` (see [`crate::http::rebase_onto`]), so behind a gateway the polls
//! go through it with the key. If the call is cancelled, times out or is
//! dropped while the prediction runs, the prediction is cancelled (`POST
//! urls.cancel`, without a body, as the API defines it) so no GPU time is
//! wasted.
//!
//! Preflight: `GET /account`, the cheapest authenticated call (it checks the
//! token and the base URL).
//!
//! Request mapping into `input`: `prompt`, `negative_prompt`, `width`, `height`,
//! `aspect_ratio`, `seed`, `num_outputs` (count), `num_inference_steps` (steps),
//! `guidance_scale` (guidance), `output_format` (format), the first input image as a
//! data URL in `image`; then `Request.raw` merged last into `input` (the escape
//! hatch: models name their inputs freely).
//!
//! Output URLs (or data URLs) are downloaded through the shared HTTP layer (https
//! only, size-limited); text models' output (a list of tokens) becomes one text
//! artifact. A failed prediction's `error` is classified (NSFW and safety refusals
//! are `ContentPolicy`).
//!
//! Cost (see [`crate::pricing::estimate`] and [`crate::pricing::bill`]): Replicate
//! bills official models per output (or per megapixel, or per second of video)
//! and other models by GPU time. Images are priced per megapixel of their
//! decoded size where the table says so (`per_megapixel`), else per output
//! (`image`); video and audio at `per_second` times their duration (the MP4
//! container's, else the requested `duration_s`, else the model's
//! `default_s`); a model with none of these at `per_gpu_second` times
//! `metrics.predict_time`, estimated before the call from `est_gpu_s`.

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
    backend_settings, encode_base64, http_setters, looks_like_content_policy, merge_raw, rebase_onto, sniff_media,
    wire_f32, Auth, HttpRequest, HttpSettings, HttpSettingsBuilder, LongJob, PollBackoff, SettingsDefaults, Transport,
};
use crate::pricing::{self, ModelPrice, PriceTable};

const DEFAULTS: SettingsDefaults = SettingsDefaults {
    base_url: "https://api.replicate.com/v1",
    key_env: Some("REPLICATE_API_TOKEN"),
    model: "black-forest-labs/flux-schnell",
    timeout: Duration::from_secs(120),
};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    wait_s: Option<u64>,
    poll_interval_ms: Option<u64>,
    poll_max_ms: Option<u64>,
    max_count: Option<u32>,
}

/// Replicate's own longest `Prefer: wait`, the default.
const DEFAULT_WAIT_S: u64 = 60;

/// Whole milliseconds of a duration, saturating (a poll wait has no use for more).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Replicate list prices (dollars) for a few popular models as defaults; a spec's
/// `prices` table overrides or adds models (`image."*"` per output,
/// `per_megapixel`, `per_second` of output video or audio, `per_gpu_second` of
/// `metrics.predict_time`). These official models are billed per output image
/// whatever the size; the figures are the earlier table's, not re-confirmed.
pub fn default_prices() -> PriceTable {
    let mut t = PriceTable::new();
    for (m, p) in [
        ("black-forest-labs/flux-schnell", 0.003),
        ("black-forest-labs/flux-dev", 0.025),
        ("black-forest-labs/flux-1.1-pro", 0.04),
        ("black-forest-labs/flux-pro", 0.055),
        ("stability-ai/stable-diffusion-3.5-large", 0.065),
        ("ideogram-ai/ideogram-v2", 0.08),
        ("recraft-ai/recraft-v3", 0.04),
    ] {
        t.set(m, ModelPrice::flat_image(p));
    }
    t
}

/// How a model setting addresses Replicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// `owner/name`: the models endpoint.
    Model {
        /// The owner.
        owner: String,
        /// The name.
        name: String,
    },
    /// A version id (from `owner/name:version` or a bare id).
    Version(String),
}

impl ModelRef {
    /// Parse a model setting.
    /// The error's field is `model`.
    pub fn parse(s: &str) -> Result<ModelRef, ConfigError> {
        let s = s.trim();
        if let Some((_, v)) = s.split_once(':') {
            if v.is_empty() {
                return Err(ConfigError::new("model", format!("`{s}`: empty version after `:`")));
            }
            return Ok(ModelRef::Version(v.to_string()));
        }
        match s.split_once('/') {
            Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => Ok(ModelRef::Model {
                owner: o.to_string(),
                name: n.to_string(),
            }),
            None if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) => Ok(ModelRef::Version(s.to_string())),
            _ => Err(ConfigError::new(
                "model",
                format!("`{s}`: expected `owner/name`, `owner/name:version` or a version id"),
            )),
        }
    }
}

/// The Replicate backend. See the [module docs](self).
#[derive(Debug)]
pub struct Replicate {
    id: String,
    /// The settings fingerprint, computed once.
    fingerprint: String,
    transport: Transport,
    model: String,
    prices: PriceTable,
    wait_s: u64,
    poll: (Duration, Duration),
    max_count: u32,
}

#[derive(Debug, Clone, Deserialize)]
struct Prediction {
    id: String,
    status: String,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    error: Value,
    #[serde(default)]
    urls: Urls,
    /// Read tolerantly: odd metrics must not throw away a finished prediction.
    #[serde(default, deserialize_with = "lenient_metrics")]
    metrics: Metrics,
}

fn lenient_metrics<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Metrics, D::Error> {
    Ok(crate::http::lenient_block::<D, Metrics>(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Urls {
    get: Option<String>,
    cancel: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Metrics {
    predict_time: Option<f64>,
}

impl Prediction {
    /// `metrics.predict_time` when it is a usable duration; a negative or
    /// non-finite one is logged and ignored (it would bill a negative cost).
    fn predict_time(&self) -> Option<f64> {
        let t = self.metrics.predict_time?;
        if t.is_finite() && t >= 0.0 {
            Some(t)
        } else {
            tracing::warn!(prediction = %self.id, predict_time = t, "ignoring an unusable predict_time");
            None
        }
    }

    /// Whether the status is one Replicate's spec calls terminal; anything else
    /// (`starting`, `processing`, or a status added later) is polled again.
    fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "canceled" | "aborted")
    }
}

/// Builds a [`Replicate`] provider. Setters never fail; [`build`](Self::build)
/// reports the first bad value, naming the field as a spec's settings table
/// spells it. Debug never shows the key.
///
/// ```no_run
/// # fn main() -> Result<(), creative_core::ConfigError> {
/// use creative_providers::replicate::Replicate;
/// let flux = Replicate::builder()
///     .api_key_env("REPLICATE_API_TOKEN")
///     .model("black-forest-labs/flux-schnell")
///     .wait_s(30)
///     .build()?;
/// # let _ = flux; Ok(()) }
/// ```
///
/// A value out of its range is refused by name:
///
/// ```
/// use creative_providers::replicate::Replicate;
/// let e = Replicate::builder().api_key("k").wait_s(90).build().unwrap_err();
/// assert_eq!(e.field(), "wait_s");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ReplicateBuilder {
    id: String,
    http: HttpSettingsBuilder,
    extra: Extra,
}

impl ReplicateBuilder {
    http_setters!("replicate");

    /// How long the first request waits for the prediction (`Prefer: wait`),
    /// in seconds: 0 to 60 (default 60).
    pub fn wait_s(mut self, seconds: u64) -> Self {
        self.extra.wait_s = Some(seconds);
        self
    }

    /// First wait between polls of a running job (default 500 ms); it doubles up to
    /// [`poll_max`](Self::poll_max). Below a millisecond counts as one.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.extra.poll_interval_ms = Some(millis(every));
        self
    }

    /// Longest wait between polls (default 5 s); never below the first wait.
    pub fn poll_max(mut self, most: Duration) -> Self {
        self.extra.poll_max_ms = Some(millis(most));
        self
    }

    /// Most outputs asked in one call (default 4); 0 counts as 1.
    pub fn max_count(mut self, n: u32) -> Self {
        self.extra.max_count = Some(n);
        self
    }

    /// Check every value, resolve the key and build the provider.
    pub fn build(self) -> Result<Replicate, ConfigError> {
        let ReplicateBuilder { id, http, extra } = self;
        let http = http.build()?;
        ModelRef::parse(&http.model)?;
        let wait_s = extra.wait_s.unwrap_or(DEFAULT_WAIT_S);
        if wait_s > 60 {
            return Err(ConfigError::new(
                "wait_s",
                format!("must be between 0 and 60 (Replicate's `Prefer: wait` limit), got {wait_s}"),
            ));
        }
        let key = http.api_key.clone().ok_or_else(|| {
            ConfigError::new(
                "api_key_env",
                "no Replicate API token: set REPLICATE_API_TOKEN or `api_key_env`",
            )
        })?;
        let transport = http
            .transport(&id, Auth::Bearer(key))
            .error_refiner(refine_error)
            .build()?;
        let prices = default_prices().with_overrides(http.prices.as_ref())?;
        let fingerprint = http.fingerprint("replicate", json!({}));
        let every = extra.poll_interval_ms.unwrap_or(500);
        let most = extra.poll_max_ms.unwrap_or(5000);
        Ok(Replicate {
            id,
            fingerprint,
            transport,
            model: http.model,
            prices,
            wait_s,
            poll: (
                Duration::from_millis(every.max(1)),
                Duration::from_millis(most.max(every).max(1)),
            ),
            max_count: extra.max_count.unwrap_or(4).max(1),
        })
    }
}

impl Replicate {
    /// A builder with every default (see the module docs).
    pub fn builder() -> ReplicateBuilder {
        ReplicateBuilder {
            id: "replicate".into(),
            http: HttpSettings::builder(DEFAULTS),
            extra: Extra::default(),
        }
    }

    /// Build from a spec's settings table (see the module docs): the table
    /// fills a [`ReplicateBuilder`]. The error's field is the refused key.
    pub fn from_settings(id: &str, settings: &Value) -> Result<Self, ConfigError> {
        let (http, rest) = HttpSettingsBuilder::parse(settings, DEFAULTS)?;
        ReplicateBuilder {
            id: id.to_string(),
            http,
            extra: backend_settings(rest)?,
        }
        .build()
    }

    fn err(&self, kind: ErrorKind, msg: impl Into<String>) -> ProviderError {
        ProviderError::new(kind, self.id.clone(), msg)
    }

    /// Where a poll or cancel goes: the URL the prediction named, moved onto the
    /// configured base URL; else `fallback` under the base URL.
    fn follow_up(&self, given: Option<&str>, fallback: &str) -> String {
        given
            .and_then(|u| rebase_onto(self.transport.base_url(), u))
            .unwrap_or_else(|| fallback.to_string())
    }

    /// The creation request for `req`: (path, body).
    pub fn creation(&self, req: &Request) -> Result<(String, Value), ProviderError> {
        let model = req.model.as_deref().unwrap_or(&self.model);
        let mref = ModelRef::parse(model).map_err(|e| self.err(ErrorKind::Invalid, e.to_string()))?;
        let mut input = Map::new();
        let p = &req.params;
        if !req.prompt.is_empty() {
            input.insert("prompt".into(), req.prompt.clone().into());
        }
        if let Some(n) = &req.negative_prompt {
            input.insert("negative_prompt".into(), n.clone().into());
        }
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                input.insert(k.into(), v);
            }
        };
        put("width", p.width.map(Value::from));
        put("height", p.height.map(Value::from));
        put("aspect_ratio", p.aspect_ratio.clone().map(Value::from));
        put("seed", p.seed.map(Value::from));
        put("num_outputs", p.count.filter(|c| *c > 1).map(Value::from));
        put("num_inference_steps", p.steps.map(Value::from));
        put("guidance_scale", p.guidance.and_then(wire_f32));
        put("output_format", p.format.clone().map(Value::from));
        put("max_tokens", p.max_tokens.map(Value::from));
        put("temperature", p.temperature.and_then(wire_f32));
        put("system_prompt", p.system.clone().map(Value::from));
        if let Some(a) = req.inputs.first() {
            let url = format!("data:{};base64,{}", a.media(), encode_base64(a.data()));
            input.insert("image".into(), url.into());
        }
        let mut input = Value::Object(input);
        merge_raw(&mut input, &req.raw);
        Ok(match mref {
            ModelRef::Model { owner, name } => {
                (format!("models/{owner}/{name}/predictions"), json!({ "input": input }))
            }
            ModelRef::Version(v) => ("predictions".into(), json!({ "version": v, "input": input })),
        })
    }

    fn failure(&self, p: &Prediction) -> ProviderError {
        let msg = match &p.error {
            Value::String(s) => s.clone(),
            Value::Null => format!("prediction {} {}", p.id, p.status),
            other => other.to_string(),
        };
        let lower = msg.to_ascii_lowercase();
        // Cancelled by someone, or aborted before it started (a deadline passed
        // while it queued): neither says anything against the input.
        let kind = if p.status == "canceled" || p.status == "aborted" {
            ErrorKind::Transient
        } else if lower.contains("nsfw") || lower.contains("sensitive") || looks_like_content_policy(None, &msg) {
            ErrorKind::ContentPolicy
        } else if lower.contains("validation") || lower.contains("invalid input") {
            ErrorKind::Invalid
        } else {
            // Model crashes, out-of-memory, interrupted workers: worth another try.
            ErrorKind::Transient
        };
        self.err(kind, format!("prediction {} {}: {msg}", p.id, p.status))
    }

    async fn outputs(&self, req: &Request, p: &Prediction, ctx: &CallCtx) -> Result<Vec<Artifact>, ProviderError> {
        if req.task == Task::Text {
            let text = match &p.output {
                Value::String(s) => s.clone(),
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect::<String>(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            return Ok(vec![Artifact::text_plain(text)]);
        }
        let mut urls = Vec::new();
        collect_urls(&p.output, &mut urls);
        if urls.is_empty() {
            return Err(self.err(
                ErrorKind::Protocol,
                format!("prediction {} succeeded without output files: {}", p.id, p.output),
            ));
        }
        let mut out = Vec::with_capacity(urls.len());
        for u in urls {
            let d = self.transport.download(&u, ctx).await?;
            let media = sniff_media(&d.data)
                .or(d.media)
                .unwrap_or(MediaType::Other(Arc::from("application/octet-stream")));
            let mut a = Artifact::new(media, d.data);
            a.meta_mut()
                .extra
                .insert("replicate_prediction".into(), p.id.clone().into());
            out.push(a);
        }
        Ok(out)
    }

    fn cost(&self, model: &str, req: &Request, outputs: &[Artifact], p: &Prediction) -> f64 {
        let base = model.split(':').next().unwrap_or(model);
        match self
            .prices
            .get(base)
            .and_then(|mp| pricing::bill(mp, req, outputs, p.predict_time()))
        {
            Some(c) => c,
            None => {
                tracing::debug!(provider = %self.id, model, "no price for this model; cost counted as 0");
                0.0
            }
        }
    }
}

fn collect_urls(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.starts_with("https://") || s.starts_with("http://") || s.starts_with("data:") => {
            out.push(s.clone())
        }
        Value::Array(a) => a.iter().for_each(|x| collect_urls(x, out)),
        Value::Object(m) => m.values().for_each(|x| collect_urls(x, out)),
        _ => {}
    }
}

fn refine_error(info: &crate::http::ErrorInfo<'_>) -> Option<ErrorKind> {
    let m = info.message.to_ascii_lowercase();
    if m.contains("nsfw") || m.contains("flagged as sensitive") {
        return Some(ErrorKind::ContentPolicy);
    }
    // 402: the account has no credit left; retrying will not help.
    (info.status == 402).then_some(ErrorKind::Auth)
}

#[async_trait]
impl Provider for Replicate {
    fn id(&self) -> &str {
        &self.id
    }

    /// The base URL, default model, extra header names and the backend's own
    /// output-shaping settings (see `HttpSettings::fingerprint`).
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tasks: vec![Task::Image, Task::ImageEdit, Task::Video, Task::Audio, Task::Text],
            seed: true,
            negative_prompt: true,
            max_count: self.max_count,
        }
    }

    /// The request's model, else this provider's default for the task.
    fn model(&self, req: &Request) -> Option<String> {
        Some(req.model.clone().unwrap_or_else(|| self.model.clone()))
    }

    /// The price of `req` from the price table, `None` for a model it lacks.
    fn price(&self, req: &Request) -> Option<f64> {
        let model = req.model.as_deref().unwrap_or(&self.model);
        let base = model.split(':').next().unwrap_or(model);
        pricing::estimate(self.prices.get(base)?, req)
    }

    /// `GET /account`: checks the token and the base URL without running anything.
    async fn preflight(&self, ctx: &CallCtx) -> Result<(), ProviderError> {
        self.transport.send(HttpRequest::get("account"), ctx).await.map(|_| ())
    }

    async fn generate(&self, req: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        let (path, body) = self.creation(req)?;
        let mut create = HttpRequest::post_json(path, body);
        if self.wait_s > 0 {
            create = create.header("prefer", &format!("wait={}", self.wait_s));
        }
        let mut p: Prediction = self.transport.send_json(create, ctx).await?;
        let mut job = LongJob::new(&self.id, PollBackoff::new(self.poll.0, self.poll.1));
        while !p.is_final() {
            let cancel = self.follow_up(p.urls.cancel.as_deref(), &format!("predictions/{}/cancel", p.id));
            // The cancel endpoint takes no body: a JSON content type with `{}` is
            // refused by a server that validates against the spec (415).
            job.guard().arm_request(&self.transport, HttpRequest::post(cancel));
            job.wait(ctx).await?;
            let get = self.follow_up(p.urls.get.as_deref(), &format!("predictions/{}", p.id));
            p = job.poll(self.transport.send_json(HttpRequest::get(get), ctx)).await?;
        }
        job.done();
        if p.status != "succeeded" {
            return Err(self.failure(&p));
        }
        let artifacts = self.outputs(req, &p, ctx).await?;
        let model = req.model.as_deref().unwrap_or(&self.model);
        let cost = self.cost(model, req, &artifacts, &p);
        Ok(Generation {
            usage: Usage {
                cost_usd: cost,
                units: Some(artifacts.len() as f64),
                ..Usage::default()
            },
            artifacts,
            raw: Some(json!({
                "id": p.id,
                "status": p.status,
                "predict_time": p.predict_time(),
                "polls": job.polls(),
            })),
        })
    }
}

/// Register the `replicate` kind.
///
/// Settings: the shared HTTP ones (`model` is `owner/name`, `owner/name:version` or
/// a version id; the key comes from `REPLICATE_API_TOKEN` by default), plus
/// `wait_s` (0..=60, default 60), `poll_interval_ms` (500), `poll_max_ms` (5000),
/// `max_count` (4).
pub fn register(reg: &mut creative_core::registry::Registry) {
    reg.provider(
        "replicate",
        Arc::new(|id: &str, settings: &Value, _: &creative_core::registry::BuildCtx| {
            Replicate::from_settings(id, settings).map(|p| Arc::new(p) as Arc<dyn Provider>)
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_refs_parse() {
        assert_eq!(
            ModelRef::parse("black-forest-labs/flux-schnell").unwrap(),
            ModelRef::Model {
                owner: "black-forest-labs".into(),
                name: "flux-schnell".into()
            }
        );
        assert_eq!(
            ModelRef::parse("stability-ai/sdxl:7762fd07").unwrap(),
            ModelRef::Version("7762fd07".into())
        );
        let v = "a".repeat(64);
        assert_eq!(ModelRef::parse(&v).unwrap(), ModelRef::Version(v.clone()));
        assert!(ModelRef::parse("flux").is_err());
        assert!(ModelRef::parse("a/b:").is_err());
    }
}
