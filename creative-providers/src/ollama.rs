//! `ollama`: Ollama's native API, non-streaming.
//!
//! | task | endpoint |
//! | --- | --- |
//! | `text` (`endpoint = "chat"`, the default) | `POST {base}/api/chat` |
//! | `text` (`endpoint = "generate"`) | `POST {base}/api/generate` |
//!
//! Both are sent with `stream: false`. Input images (vision models) go as base64
//! in `images`. `temperature`, `seed` and `max_tokens` (`num_predict`) go in
//! `options`; anything else (`format`, `keep_alive`, `think`, more `options`) goes
//! in `Request::raw`, merged last and deeply: a raw `options` table adds to the
//! typed ones, its keys winning (see [`crate::http::merge_raw`]). Ollama's native API has no image output, so the
//! backend offers text only; for image models behind an OpenAI-compatible server
//! use the `openai` kind with `base_url`.
//!
//! Usage: `prompt_eval_count` and `eval_count` tokens; local models are free
//! unless a `prices` table says otherwise. Errors come as `{"error": "..."}`; a
//! 200 answer carrying `error` is a failure too.
//!
//! Settings (besides those of [`HttpSettings`]): `endpoint` (`chat` or
//! `generate`). `base_url` defaults to `http://localhost:11434`; a key (for
//! Ollama's cloud) is read from `api_key_env` (default `OLLAMA_API_KEY`) and sent
//! as a bearer token.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use creative_core::{
    Artifact, CallCtx, Capabilities, ConfigError, ErrorKind, Generation, Provider, ProviderError, Request, Task, Usage,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::http::{
    backend_settings, encode_base64, http_setters, lenient_count, merge_raw, wire_f32, Auth, HttpRequest, HttpSettings,
    HttpSettingsBuilder, SettingsDefaults, Transport,
};
use crate::pricing::PriceTable;

// ---------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------

const DEFAULTS: SettingsDefaults = SettingsDefaults {
    base_url: "http://localhost:11434",
    key_env: Some("OLLAMA_API_KEY"),
    model: "llama3.2",
    timeout: Duration::from_secs(300),
};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    endpoint: Option<String>,
}

/// Which native endpoint text requests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Generate,
}

/// The Ollama backend.
#[derive(Debug, Clone)]
pub struct Ollama {
    id: String,
    /// The settings fingerprint, computed once.
    fingerprint: String,
    transport: Transport,
    model: String,
    endpoint: Endpoint,
    prices: Arc<PriceTable>,
    /// Served from this machine: a model without a price is free, not unknown.
    local: bool,
}

/// Builds a [`Ollama`] provider. Setters never fail; [`build`](Self::build)
/// reports the first bad value, naming the field as a spec's settings table
/// spells it. Debug never shows the key.
///
/// ```
/// # fn main() -> Result<(), creative_core::ConfigError> {
/// use creative_providers::ollama::Ollama;
/// let local = Ollama::builder().model("llama3.2").endpoint("generate").build()?;
/// # let _ = local;
/// let e = Ollama::builder().endpoint("stream").build().unwrap_err();
/// assert_eq!(e.field(), "endpoint");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct OllamaBuilder {
    id: String,
    http: HttpSettingsBuilder,
    extra: Extra,
}

impl OllamaBuilder {
    http_setters!("ollama");

    /// The native endpoint text requests use: `chat` (the default) or `generate`.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.extra.endpoint = Some(endpoint.into());
        self
    }

    /// Check every value and build the provider.
    pub fn build(self) -> Result<Ollama, ConfigError> {
        let OllamaBuilder { id, http, extra } = self;
        let http = http.build()?;
        let endpoint = match extra.endpoint.as_deref() {
            None | Some("chat") => Endpoint::Chat,
            Some("generate") => Endpoint::Generate,
            Some(other) => {
                return Err(ConfigError::new(
                    "endpoint",
                    format!("must be `chat` or `generate`, got `{other}`"),
                ))
            }
        };
        let auth = http.api_key.clone().map(Auth::Bearer).unwrap_or(Auth::None);
        let transport = http.transport(&id, auth).build()?;
        let prices = PriceTable::new().with_overrides(http.prices.as_ref())?;
        let fingerprint = http.fingerprint(
            "ollama",
            json!({"endpoint": format!("{endpoint:?}").to_ascii_lowercase()}),
        );
        Ok(Ollama {
            id,
            fingerprint,
            transport,
            model: http.model.clone(),
            endpoint,
            prices: Arc::new(prices),
            local: crate::http::is_loopback(&http.base_url),
        })
    }
}

impl Ollama {
    /// A builder with every default (see the module docs).
    pub fn builder() -> OllamaBuilder {
        OllamaBuilder {
            id: "ollama".into(),
            http: HttpSettings::builder(DEFAULTS),
            extra: Extra::default(),
        }
    }

    /// Build from a spec's settings table (see the module docs): the table
    /// fills a [`OllamaBuilder`]. The error's field is the refused key.
    pub fn from_settings(id: &str, settings: &Value) -> Result<Self, ConfigError> {
        let (http, rest) = HttpSettingsBuilder::parse(settings, DEFAULTS)?;
        OllamaBuilder {
            id: id.to_string(),
            http,
            extra: backend_settings(rest)?,
        }
        .build()
    }
}

// ---------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct GenerateResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    message: Option<ChatMessage>,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default, deserialize_with = "lenient_count")]
    prompt_eval_count: Option<u64>,
    #[serde(default, deserialize_with = "lenient_count")]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    #[serde(default)]
    content: String,
}

// ---------------------------------------------------------------------------------
// Request mapping
// ---------------------------------------------------------------------------------

impl Ollama {
    fn options(req: &Request) -> Map<String, Value> {
        let mut o = Map::new();
        if let Some(t) = req.params.temperature.and_then(wire_f32) {
            o.insert("temperature".into(), t);
        }
        if let Some(s) = req.params.seed {
            o.insert("seed".into(), json!(s));
        }
        if let Some(n) = req.params.max_tokens {
            o.insert("num_predict".into(), json!(n));
        }
        o
    }

    fn images(req: &Request) -> Vec<Value> {
        req.inputs
            .iter()
            .filter(|a| a.media().as_str().starts_with("image/"))
            .map(|a| Value::String(encode_base64(a.data())))
            .collect()
    }

    fn body(&self, model: &str, req: &Request) -> (&'static str, Value) {
        let mut b = Map::new();
        b.insert("model".into(), json!(model));
        b.insert("stream".into(), json!(false));
        let images = Self::images(req);
        let path = match self.endpoint {
            Endpoint::Generate => {
                b.insert("prompt".into(), json!(req.prompt));
                if let Some(s) = &req.params.system {
                    b.insert("system".into(), json!(s));
                }
                if !images.is_empty() {
                    b.insert("images".into(), Value::Array(images));
                }
                "api/generate"
            }
            Endpoint::Chat => {
                let mut messages = Vec::new();
                if let Some(s) = &req.params.system {
                    messages.push(json!({"role": "system", "content": s}));
                }
                let mut user = json!({"role": "user", "content": req.prompt});
                if !images.is_empty() {
                    user["images"] = Value::Array(images);
                }
                messages.push(user);
                b.insert("messages".into(), Value::Array(messages));
                "api/chat"
            }
        };
        let options = Self::options(req);
        if !options.is_empty() {
            b.insert("options".into(), Value::Object(options));
        }
        let mut v = Value::Object(b);
        merge_raw(&mut v, &req.raw);
        (path, v)
    }
}

// ---------------------------------------------------------------------------------
// Response mapping
// ---------------------------------------------------------------------------------

impl Ollama {
    fn generation(&self, model: &str, r: GenerateResponse) -> Result<Generation, ProviderError> {
        if let Some(e) = r.error {
            // A 200 with an error: the model failed mid-answer. An empty one
            // still has to say something.
            let e = if e.trim().is_empty() {
                "the answer carries an empty `error`".to_string()
            } else {
                e
            };
            return Err(ProviderError::transient(&self.id, e));
        }
        let text = match (r.response, r.message) {
            (Some(t), _) => t,
            (None, Some(m)) => m.content,
            (None, None) => {
                return Err(ProviderError::new(
                    ErrorKind::Protocol,
                    &self.id,
                    "the answer has neither `response` nor `message`",
                ))
            }
        };
        let model = r.model.as_deref().unwrap_or(model);
        let mut a = Artifact::text_plain(text);
        a.provenance_mut().model = Some(model.to_string());
        if let Some(d) = r.done_reason {
            a.meta_mut().extra.insert("done_reason".into(), json!(d));
        }
        let (i, o) = (r.prompt_eval_count.unwrap_or(0), r.eval_count.unwrap_or(0));
        Ok(Generation {
            artifacts: vec![a],
            usage: Usage {
                cost_usd: self.prices.tokens(model, i, o).unwrap_or(0.0),
                input_tokens: r.prompt_eval_count,
                output_tokens: r.eval_count,
                units: None,
            },
            raw: None,
        })
    }
}

// ---------------------------------------------------------------------------------
// Error mapping: the shared one (`{"error": "..."}` bodies, status classes).
// ---------------------------------------------------------------------------------

#[async_trait]
impl Provider for Ollama {
    fn id(&self) -> &str {
        &self.id
    }

    /// `GET /api/version`: cheap, and needs no model loaded.
    async fn preflight(&self, ctx: &CallCtx) -> Result<(), ProviderError> {
        self.transport
            .send(HttpRequest::get("api/version"), ctx)
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
            tasks: vec![Task::Text],
            seed: true,
            negative_prompt: false,
            max_count: 1,
        }
    }

    /// A local server's models cost nothing; a remote one (Ollama's cloud, a
    /// hosted server) needs a `prices` entry.
    fn has_price(&self, req: &Request) -> bool {
        let model = req.model.as_deref().unwrap_or(&self.model);
        self.local || self.prices.get(model).is_some()
    }

    /// The request's model, else this provider's default for the task.
    fn model(&self, req: &Request) -> Option<String> {
        Some(req.model.clone().unwrap_or_else(|| self.model.clone()))
    }

    fn estimate_cost(&self, req: &Request) -> f64 {
        let model = req.model.as_deref().unwrap_or(&self.model);
        let input = (req.prompt.len() / 4) as u64 + 16;
        let output = u64::from(req.params.max_tokens.unwrap_or(256));
        self.prices.tokens(model, input, output).unwrap_or(0.0)
    }

    async fn generate(&self, req: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        if req.task != Task::Text {
            return Err(ProviderError::invalid(
                &self.id,
                format!("task `{}` is not supported by Ollama's native API", req.task.as_str()),
            ));
        }
        let model = req.model.clone().unwrap_or_else(|| self.model.clone());
        let (path, body) = self.body(&model, req);
        let resp: GenerateResponse = self
            .transport
            .send_json(HttpRequest::post_json(path, body), ctx)
            .await?;
        self.generation(&model, resp)
    }
}

/// Register the `ollama` kind.
pub fn register(reg: &mut creative_core::registry::Registry) {
    reg.provider(
        "ollama",
        Arc::new(|id: &str, settings: &Value, _: &creative_core::registry::BuildCtx| {
            Ollama::from_settings(id, settings).map(|p| Arc::new(p) as Arc<dyn Provider>)
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_carry_the_typed_params() {
        let o = Ollama::from_settings("ollama", &json!({"endpoint": "generate"})).unwrap();
        let mut r = Request::new(Task::Text, "hi");
        r.params.seed = Some(3);
        r.params.max_tokens = Some(9);
        r.raw.insert("keep_alive".into(), json!("5m"));
        let (path, b) = o.body("m", &r);
        assert_eq!(path, "api/generate");
        assert_eq!(b["options"], json!({"seed": 3, "num_predict": 9}));
        assert_eq!(b["keep_alive"], "5m");
        assert_eq!(b["stream"], false);
    }

    #[test]
    fn a_bad_endpoint_is_named() {
        let e = Ollama::from_settings("ollama", &json!({"endpoint": "stream"})).unwrap_err();
        assert!(e.to_string().contains("endpoint"), "{e}");
        let e = Ollama::from_settings("ollama", &json!({"temprature": 1})).unwrap_err();
        assert!(e.to_string().contains("temprature"), "{e}");
    }
}
