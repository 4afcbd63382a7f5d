//! `stability`: Stability AI's REST v2beta stable-image generate endpoints.
//!
//! `POST /v2beta/stable-image/generate/{core|ultra|sd3}` with a multipart form
//! (`prompt`, `negative_prompt`, `aspect_ratio`, `seed`, `output_format`,
//! `style_preset`, and for sd3 `model`, `cfg_scale` and `mode`; an input image goes
//! in `image`) and `Authorization: Bearer`. The `model` setting is `core`, `ultra`,
//! `sd3`, or an sd3 model name such as `sd3.5-large` (sent as the form's `model`).
//!
//! Two answer modes (setting `accept`): `image` (default) asks `accept: image/*`
//! and reads the bytes with the `finish-reason` and `seed` headers; `json` asks
//! `application/json` and reads `{image (base64), finish_reason, seed}`. A
//! `CONTENT_FILTERED` finish reason, or a 403 `content_moderation` error, is a
//! `ContentPolicy` refusal. Error bodies are `{name, errors[]}`.
//!
//! One call makes one image; a request for several makes that many calls, each
//! with the next seed. `Request.raw` fields are added to the form last (strings as
//! is, other JSON as text; `null` removes a field). Cost: credits at $0.01 (core
//! 3, ultra 8, sd3.5-large 6.5, sd3.5-large-turbo 4, sd3.5-medium 3.5,
//! sd3.5-flash 2.5), overridable with `prices`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use creative_core::{
    Artifact, CallCtx, Capabilities, ConfigError, ErrorKind, Generation, MediaType, Provider, ProviderError, Request,
    Task, Usage,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{
    backend_settings, decode_base64, http_setters, sniff_media, Auth, FormPart, HttpRequest, HttpSettings,
    HttpSettingsBuilder, SettingsDefaults, Transport,
};
use crate::pricing::{ModelPrice, PriceTable};

const DEFAULTS: SettingsDefaults = SettingsDefaults {
    base_url: "https://api.stability.ai",
    key_env: Some("STABILITY_API_KEY"),
    model: "core",
    timeout: Duration::from_secs(120),
};

/// The aspect ratios the v2beta endpoints accept.
pub const ASPECT_RATIOS: &[&str] = &["21:9", "16:9", "3:2", "5:4", "1:1", "4:5", "2:3", "9:16", "9:21"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    accept: Option<String>,
    max_count: Option<u32>,
}

const DEFAULT_MAX_COUNT: u32 = 4;

/// Stability prices (dollars per image: credits at $0.01) as defaults.
pub fn default_prices() -> PriceTable {
    let mut t = PriceTable::new();
    for (m, credits) in [
        ("core", 3.0),
        ("ultra", 8.0),
        ("sd3", 6.5),
        ("sd3.5-large", 6.5),
        ("sd3.5-large-turbo", 4.0),
        ("sd3.5-medium", 3.5),
        ("sd3.5-flash", 2.5),
    ] {
        t.set(m, ModelPrice::flat_image(credits * 0.01));
    }
    t
}

/// The Stability backend. See the [module docs](self).
#[derive(Debug)]
pub struct Stability {
    id: String,
    /// The settings fingerprint, computed once.
    fingerprint: String,
    transport: Transport,
    model: String,
    json: bool,
    prices: PriceTable,
    max_count: u32,
}

/// The closest accepted aspect ratio to `width` x `height`.
pub fn nearest_aspect_ratio(width: u32, height: u32) -> &'static str {
    let want = (f64::from(width.max(1)) / f64::from(height.max(1))).ln();
    ASPECT_RATIOS
        .iter()
        .min_by(|a, b| {
            let r = |s: &str| {
                let (w, h) = s.split_once(':').unwrap_or(("1", "1"));
                (w.parse::<f64>().unwrap_or(1.0) / h.parse::<f64>().unwrap_or(1.0)).ln()
            };
            (r(a) - want).abs().total_cmp(&(r(b) - want).abs())
        })
        .copied()
        .unwrap_or("1:1")
}

/// The seed as the API takes it: at most 4294967294.
fn wire_seed(s: u64) -> u64 {
    s % 4_294_967_295
}

/// Builds a [`Stability`] provider. Setters never fail; [`build`](Self::build)
/// reports the first bad value, naming the field as a spec's settings table
/// spells it. Debug never shows the key.
///
/// ```no_run
/// # fn main() -> Result<(), creative_core::ConfigError> {
/// use creative_providers::stability::Stability;
/// let sd = Stability::builder().api_key_env("STABILITY_API_KEY").model("sd3.5-large").build()?;
/// # let _ = sd; Ok(()) }
/// ```
///
/// An unknown model is refused by name:
///
/// ```
/// use creative_providers::stability::Stability;
/// let e = Stability::builder().api_key("k").model("dalle").build().unwrap_err();
/// assert_eq!(e.field(), "model");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct StabilityBuilder {
    id: String,
    http: HttpSettingsBuilder,
    extra: Extra,
}

impl StabilityBuilder {
    http_setters!("stability");

    /// How images come back: `image` (raw bytes, the default) or `json` (base64
    /// with the finish reason).
    pub fn accept(mut self, accept: impl Into<String>) -> Self {
        self.extra.accept = Some(accept.into());
        self
    }

    /// Most images asked in one call (default 4); 0 counts as 1.
    pub fn max_count(mut self, n: u32) -> Self {
        self.extra.max_count = Some(n);
        self
    }

    /// Check every value, resolve the key and build the provider.
    pub fn build(self) -> Result<Stability, ConfigError> {
        let StabilityBuilder { id, http, extra } = self;
        let http = http.build()?;
        let json = match extra.accept.as_deref() {
            None | Some("image") => false,
            Some("json") => true,
            Some(o) => {
                return Err(ConfigError::new(
                    "accept",
                    format!("must be `image` or `json`, got `{o}`"),
                ))
            }
        };
        endpoint(&http.model)?;
        let key = http.api_key.clone().ok_or_else(|| {
            ConfigError::new(
                "api_key_env",
                "no Stability API key: set STABILITY_API_KEY or `api_key_env`",
            )
        })?;
        let transport = http
            .transport(&id, Auth::Bearer(key))
            .error_refiner(refine_error)
            .build()?;
        let prices = default_prices().with_overrides(http.prices.as_ref())?;
        let fingerprint = http.fingerprint("stability", json!({}));
        Ok(Stability {
            id,
            fingerprint,
            transport,
            model: http.model,
            json,
            prices,
            max_count: extra.max_count.unwrap_or(DEFAULT_MAX_COUNT).max(1),
        })
    }
}

impl Stability {
    /// A builder with every default (see the module docs).
    pub fn builder() -> StabilityBuilder {
        StabilityBuilder {
            id: "stability".into(),
            http: HttpSettings::builder(DEFAULTS),
            extra: Extra::default(),
        }
    }

    /// Build from a spec's settings table (see the module docs): the table
    /// fills a [`StabilityBuilder`]. The error's field is the refused key.
    pub fn from_settings(id: &str, settings: &Value) -> Result<Self, ConfigError> {
        let (http, rest) = HttpSettingsBuilder::parse(settings, DEFAULTS)?;
        StabilityBuilder {
            id: id.to_string(),
            http,
            extra: backend_settings(rest)?,
        }
        .build()
    }

    fn err(&self, kind: ErrorKind, msg: impl Into<String>) -> ProviderError {
        ProviderError::new(kind, self.id.clone(), msg)
    }

    /// The endpoint path and form fields for one image of `req` with `seed`.
    pub fn form(&self, req: &Request, seed: Option<u64>) -> Result<(String, Vec<FormPart>), ProviderError> {
        let model = req.model.as_deref().unwrap_or(&self.model);
        let ep = endpoint(model).map_err(|e| self.err(ErrorKind::Invalid, e.to_string()))?;
        let p = &req.params;
        let mut fields: Vec<(String, String)> = vec![("prompt".into(), req.prompt.clone())];
        if ep == "sd3" && model != "sd3" {
            fields.push(("model".into(), model.to_string()));
        }
        if let Some(n) = &req.negative_prompt {
            fields.push(("negative_prompt".into(), n.clone()));
        }
        let ratio = match (&p.aspect_ratio, p.width, p.height) {
            (Some(r), _, _) => Some(r.clone()),
            (None, Some(w), Some(h)) => Some(nearest_aspect_ratio(w, h).to_string()),
            _ => None,
        };
        if req.inputs.is_empty() {
            if let Some(r) = ratio {
                fields.push(("aspect_ratio".into(), r));
            }
        }
        if let Some(s) = seed {
            fields.push(("seed".into(), wire_seed(s).to_string()));
        }
        fields.push(("output_format".into(), p.format.clone().unwrap_or_else(|| "png".into())));
        if let Some(s) = &p.style {
            fields.push(("style_preset".into(), s.clone()));
        }
        if let (Some(g), "sd3") = (p.guidance, ep) {
            fields.push(("cfg_scale".into(), g.to_string()));
        }
        if ep == "sd3" {
            let mode = if req.inputs.is_empty() {
                "text-to-image"
            } else {
                "image-to-image"
            };
            fields.push(("mode".into(), mode.into()));
        }
        if !req.inputs.is_empty() && ep != "core" {
            fields.push(("strength".into(), "0.7".into()));
        }
        for (k, v) in &req.raw {
            fields.retain(|(f, _)| f != k);
            match v {
                Value::Null => {}
                Value::String(s) => fields.push((k.clone(), s.clone())),
                other => fields.push((k.clone(), other.to_string())),
            }
        }
        let mut parts: Vec<FormPart> = fields.into_iter().map(|(k, v)| FormPart::text(k, v)).collect();
        if let Some(a) = req.inputs.first() {
            if ep == "core" {
                return Err(self.err(
                    ErrorKind::Invalid,
                    "stable-image core takes no input image; use ultra or sd3",
                ));
            }
            parts.push(FormPart::file(
                "image",
                a.data().clone(),
                format!("input.{}", a.media().extension()),
                a.media().as_str(),
            ));
        }
        Ok((format!("v2beta/stable-image/generate/{ep}"), parts))
    }

    async fn one(&self, req: &Request, seed: Option<u64>, ctx: &CallCtx) -> Result<Artifact, ProviderError> {
        let sent = seed.map(wire_seed);
        let (path, parts) = self.form(req, seed)?;
        let accept = if self.json { "application/json" } else { "image/*" };
        let resp = self
            .transport
            .send(HttpRequest::post_multipart(path, parts).header("accept", accept), ctx)
            .await?;
        let (data, finish, seed) = if self.json || resp.content_type() == Some("application/json") {
            #[derive(Deserialize)]
            struct J {
                image: Option<String>,
                finish_reason: Option<String>,
                seed: Option<u64>,
            }
            let j: J = resp.json(&self.id)?;
            let data = match &j.image {
                Some(b64) => decode_base64(&self.id, b64)?,
                None => bytes::Bytes::new(),
            };
            (data, j.finish_reason, j.seed)
        } else {
            let finish = resp.header("finish-reason").map(String::from);
            let seed = resp.header("seed").and_then(|s| s.trim().parse().ok());
            (resp.body.clone(), finish, seed)
        };
        match finish.as_deref() {
            Some("CONTENT_FILTERED") => {
                return Err(self.err(
                    ErrorKind::ContentPolicy,
                    "the output was filtered by Stability's content moderation (finish reason CONTENT_FILTERED)",
                ))
            }
            Some("ERROR") => return Err(self.err(ErrorKind::Transient, "generation ended with finish reason ERROR")),
            _ => {}
        }
        if data.is_empty() {
            return Err(self.err(ErrorKind::Protocol, "the answer holds no image"));
        }
        let media = sniff_media(&data)
            .or_else(|| {
                resp.media_type()
                    .filter(|m| m.kind() == creative_core::MediaKind::Image)
            })
            .unwrap_or(MediaType::Png);
        let mut a = Artifact::new(media, data);
        // The seed this image was made with, as sent (each image of a call has its own).
        a.provenance_mut().seed = sent;
        if let Some(s) = seed {
            a.meta_mut().extra.insert("seed".into(), s.into());
        }
        if let Some(f) = finish {
            a.meta_mut().extra.insert("finish_reason".into(), f.into());
        }
        Ok(a)
    }
}

fn endpoint(model: &str) -> Result<&'static str, ConfigError> {
    match model {
        "core" | "stable-image-core" => Ok("core"),
        "ultra" | "stable-image-ultra" => Ok("ultra"),
        m if m.starts_with("sd3") => Ok("sd3"),
        m => Err(ConfigError::new(
            "model",
            format!("unknown model `{m}` (expected core, ultra, sd3 or an sd3.5 model name)"),
        )),
    }
}

fn refine_error(info: &crate::http::ErrorInfo<'_>) -> Option<ErrorKind> {
    // Stability names its errors: `content_moderation` comes with 403, which would
    // otherwise read as an auth failure.
    match info.code {
        Some("content_moderation") => Some(ErrorKind::ContentPolicy),
        Some("payment_required") => Some(ErrorKind::Auth),
        _ => None,
    }
}

#[async_trait]
impl Provider for Stability {
    fn id(&self) -> &str {
        &self.id
    }

    /// `GET /v1/user/balance`: authenticated and free, it checks the key and the
    /// base URL without generating anything.
    async fn preflight(&self, ctx: &CallCtx) -> Result<(), ProviderError> {
        self.transport
            .send(HttpRequest::get("v1/user/balance"), ctx)
            .await
            .map(|_| ())
    }

    /// The base URL, default model, extra header names and the backend's own
    /// output-shaping settings (see `HttpSettings::fingerprint`).
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tasks: vec![Task::Image, Task::ImageEdit],
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
        self.prices
            .images(model, None, None, req.params.count.unwrap_or(1).max(1))
    }

    async fn generate(&self, req: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        if !matches!(req.task, Task::Image | Task::ImageEdit) {
            return Err(self.err(
                ErrorKind::Invalid,
                format!("stability makes images, not `{}`", req.task.as_str()),
            ));
        }
        let n = req.params.count.unwrap_or(1).clamp(1, self.max_count);
        let mut artifacts = Vec::with_capacity(n as usize);
        for i in 0..n {
            let seed = req.params.seed.map(|s| s.wrapping_add(u64::from(i)));
            artifacts.push(self.one(req, seed, ctx).await?);
        }
        let model = req.model.as_deref().unwrap_or(&self.model);
        let cost = self.prices.images(model, None, None, n).unwrap_or(0.0);
        Ok(Generation {
            usage: Usage {
                cost_usd: cost,
                units: Some(f64::from(n)),
                ..Usage::default()
            },
            raw: Some(
                json!({ "seeds": artifacts.iter().map(|a| a.meta().extra.get("seed").cloned()).collect::<Vec<_>>() }),
            ),
            artifacts,
        })
    }
}

/// Register the `stability` kind.
///
/// Settings: the shared HTTP ones (`model`: `core` (default), `ultra`, `sd3` or an
/// sd3.5 model name; the key comes from `STABILITY_API_KEY` by default), plus
/// `accept` (`image` or `json`) and `max_count` (4).
pub fn register(reg: &mut creative_core::registry::Registry) {
    reg.provider(
        "stability",
        Arc::new(|id: &str, settings: &Value, _: &creative_core::registry::BuildCtx| {
            Stability::from_settings(id, settings).map(|p| Arc::new(p) as Arc<dyn Provider>)
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_to_the_nearest_accepted_ratio() {
        assert_eq!(nearest_aspect_ratio(1024, 1024), "1:1");
        assert_eq!(nearest_aspect_ratio(1920, 1080), "16:9");
        assert_eq!(nearest_aspect_ratio(1080, 1920), "9:16");
        assert_eq!(nearest_aspect_ratio(1200, 1000), "5:4");
    }
}
