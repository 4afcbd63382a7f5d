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
    Artifact, CallCtx, Capabilities, ErrorKind, Generation, MediaType, Provider, ProviderError, Request, Task, Usage,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::http::{
    backend_settings, encode_base64, looks_like_content_policy, merge_raw, rebase_onto, sniff_media, wire_f32, Auth,
    HttpRequest, HttpSettings, LongJob, PollBackoff, SettingsDefaults, Transport,
};
use crate::pricing::{self, ModelPrice, PriceTable};

const DEFAULTS: SettingsDefaults = SettingsDefaults {
    base_url: "https://api.replicate.com/v1",
    key_env: Some("REPLICATE_API_TOKEN"),
    model: "black-forest-labs/flux-schnell",
    timeout: Duration::from_secs(120),
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    #[serde(default = "default_wait")]
    wait_s: u64,
    #[serde(default = "default_poll_ms")]
    poll_interval_ms: u64,
    #[serde(default = "default_poll_max_ms")]
    poll_max_ms: u64,
    #[serde(default = "default_max_count")]
    max_count: u32,
}

fn default_wait() -> u64 {
    60
}
fn default_poll_ms() -> u64 {
    500
}
fn default_poll_max_ms() -> u64 {
    5000
}
fn default_max_count() -> u32 {
    4
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
    pub fn parse(s: &str) -> Result<ModelRef, String> {
        let s = s.trim();
        if let Some((_, v)) = s.split_once(':') {
            if v.is_empty() {
                return Err(format!("model `{s}`: empty version after `:`"));
            }
            return Ok(ModelRef::Version(v.to_string()));
        }
        match s.split_once('/') {
            Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => Ok(ModelRef::Model {
                owner: o.to_string(),
                name: n.to_string(),
            }),
            None if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) => Ok(ModelRef::Version(s.to_string())),
            _ => Err(format!(
                "model `{s}`: expected `owner/name`, `owner/name:version` or a version id"
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

impl Replicate {
    /// Build from a spec's settings (see [`register`]).
    pub fn from_settings(id: &str, settings: &Value) -> Result<Self, String> {
        let (http, rest) = HttpSettings::parse(settings, DEFAULTS)?;
        let extra: Extra = backend_settings(rest)?;
        ModelRef::parse(&http.model).map_err(|e| format!("`model`: {e}"))?;
        if extra.wait_s > 60 {
            return Err("`wait_s` must be between 0 and 60 (Replicate's `Prefer: wait` limit)".into());
        }
        let key = http
            .api_key
            .clone()
            .ok_or("no Replicate API token: set REPLICATE_API_TOKEN or `api_key_env`")?;
        let transport = http
            .transport(id, Auth::Bearer(key))
            .error_refiner(refine_error)
            .build()?;
        let prices = default_prices().with_overrides(http.prices.as_ref())?;
        let fingerprint = http.fingerprint("replicate", json!({}));
        Ok(Replicate {
            id: id.to_string(),
            fingerprint,
            transport,
            model: http.model,
            prices,
            wait_s: extra.wait_s,
            poll: (
                Duration::from_millis(extra.poll_interval_ms.max(1)),
                Duration::from_millis(extra.poll_max_ms.max(extra.poll_interval_ms).max(1)),
            ),
            max_count: extra.max_count.max(1),
        })
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
        let mref = ModelRef::parse(model).map_err(|e| self.err(ErrorKind::Invalid, e))?;
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
