//! The one HTTP layer every network backend sends through.
//!
//! A backend is an *adapter*: it maps a [`Request`](creative_core::Request) to an
//! [`HttpRequest`] (path, query, headers, body) and an [`HttpResponse`] back to a
//! [`Generation`](creative_core::Generation). It sends nothing itself. The
//! [`Transport`] does the sending, and with it everything that must be the same for
//! every provider:
//!
//! - one pooled `reqwest` client per process ([`shared_client`]), rustls with ring;
//! - a total timeout per request (the smaller of the transport's and the call's
//!   deadline) and a connect timeout;
//! - a response size limit enforced while the body streams in (an oversized body is
//!   an error, never an out-of-memory);
//! - the race of every request against [`CallCtx::cancel`];
//! - one mapping of failures to [`ErrorKind`] (see [`Transport::error_from_response`]):
//!   429 is `RateLimited` with the delay from `Retry-After` (seconds or HTTP date),
//!   `retry-after-ms` or the `x-ratelimit-reset-*` headers; 5xx, resets and truncated
//!   bodies are `Transient`; timeouts are `Timeout`; 400/404/422 are `Invalid`;
//!   401/403 are `Auth`; refusals are `ContentPolicy` (a backend refines with an
//!   [`ErrorRefiner`]); a body that does not parse is `Protocol`. The provider's own
//!   message (parsed from the usual error body shapes), its request id and the
//!   status are kept; the API key is scrubbed from anything kept;
//! - authentication headers marked sensitive, sent only to the configured base
//!   URL's origin (never to a CDN a response points at), and redirects followed by
//!   hand so a key never follows a redirect to another origin;
//! - downloads of output URLs ([`Transport::download`]) with the same size limit,
//!   only over https or from the base URL's origin (and `data:` URLs decoded);
//! - polling helpers for async jobs ([`PollBackoff`], [`sleep_or_cancel`]) that
//!   honour cancellation and the call's deadline.
//!
//! Settings every HTTP backend shares are parsed by [`HttpSettings::parse`], which
//! hands the backend the rest of the table to read with `deny_unknown_fields`.
//!
//! ```no_run
//! use creative_core::CallCtx;
//! use creative_providers::http::{Auth, HttpRequest, Transport};
//! use creative_providers::secret::ApiKey;
//! # async fn f() -> Result<(), creative_core::ProviderError> {
//! let t = Transport::builder("openai", "https://api.openai.com/v1")
//!     .auth(Auth::Bearer(ApiKey::new("sk-...")))
//!     .build()
//!     .map_err(|e| creative_core::ProviderError::invalid("openai", e))?;
//! let body = serde_json::json!({"model": "gpt-4o-mini", "messages": []});
//! let resp = t.send(HttpRequest::post_json("chat/completions", body), &CallCtx::detached()).await?;
//! let v: serde_json::Value = resp.json(t.provider())?;
//! # let _ = v; Ok(()) }
//! ```

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use creative_core::{CallCtx, ErrorKind, MediaType, ProviderError};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use reqwest::Url;

pub use crate::secret::ApiKey;

/// Default total timeout of one request: 120 s (image models are slow).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Default connect timeout: 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default response size limit: 64 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// How many redirects a GET follows.
const MAX_REDIRECTS: usize = 5;
/// Headers that carry a provider's request id, most common first.
const REQUEST_ID_HEADERS: &[&str] = &[
    "x-request-id",
    "request-id",
    "x-amzn-requestid",
    "x-goog-request-id",
    "cf-ray",
];

// ---------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------

// The one place a client is built (clippy.toml forbids it elsewhere).
#[allow(clippy::disallowed_methods)]
fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        // Redirects are followed by hand in `Transport::send`, so that an API key is
        // never carried to another origin.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("creative/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The process-wide pooled client (connect timeout [`DEFAULT_CONNECT_TIMEOUT`]).
///
/// Every transport with the default connect timeout shares it, so connections to
/// a provider are reused across providers, steps and runs.
pub fn shared_client() -> Result<reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT.get_or_init(|| build_client(DEFAULT_CONNECT_TIMEOUT)).clone()
}

// ---------------------------------------------------------------------------------
// Settings shared by every HTTP backend
// ---------------------------------------------------------------------------------

/// What a backend supplies when its settings leave something out.
#[derive(Debug, Clone, Copy)]
pub struct SettingsDefaults {
    /// The provider's public base URL, such as `https://api.openai.com/v1`.
    pub base_url: &'static str,
    /// The conventional environment variable holding the key, such as `OPENAI_API_KEY`.
    pub key_env: Option<&'static str>,
    /// The default model.
    pub model: &'static str,
    /// The default total timeout.
    pub timeout: Duration,
}

/// The settings every HTTP backend accepts, parsed from a spec's provider table.
///
/// | key | meaning | default |
/// | --- | --- | --- |
/// | `base_url` | the API root; any compatible server | the backend's public URL |
/// | `api_key_env` | name of the environment variable holding the key | the backend's usual variable |
/// | `api_key` | the key inline (discouraged: it puts a secret in the spec) | none |
/// | `model` | the default model | the backend's default |
/// | `timeout_s` | total timeout of one request, seconds | the backend's default |
/// | `connect_timeout_s` | connect timeout, seconds | 10 |
/// | `max_response_bytes` | largest accepted response or download | 64 MiB |
/// | `headers` | extra headers sent with every request (table of strings) | none |
/// | `prices` | price table overrides, see [`crate::pricing`] | none |
#[derive(Clone)]
pub struct HttpSettings {
    /// The API root.
    pub base_url: Url,
    /// The key, if one was found.
    pub api_key: Option<ApiKey>,
    /// The default model.
    pub model: String,
    /// Total timeout of one request.
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Largest accepted response body or download.
    pub max_response_bytes: u64,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Price overrides, as given (parsed by [`crate::pricing::PriceTable::with_overrides`]).
    pub prices: Option<Value>,
    /// Concerns that do not stop a build (see
    /// [`Provider::warnings`](creative_core::Provider::warnings)): no key for a
    /// hosted service.
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettings")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &self.api_key)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("headers", &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

fn take_string(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("`{key}` must be a string, got {}", json_type(&other))),
    }
}

fn take_seconds(map: &mut Map<String, Value>, key: &str) -> Result<Option<Duration>, String> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(s) if s > 0.0 && s.is_finite() && s < 1e9 => Ok(Some(Duration::from_secs_f64(s))),
            _ => Err(format!("`{key}` must be a positive number of seconds, got {n}")),
        },
        Some(other) => Err(format!(
            "`{key}` must be a number of seconds, got {}",
            json_type(&other)
        )),
    }
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

impl HttpSettings {
    /// Read the shared keys out of a provider's settings table.
    ///
    /// Returns the parsed settings and the rest of the table, which the backend
    /// reads with its own `deny_unknown_fields` struct so that an unknown key is an
    /// error naming it.
    pub fn parse(settings: &Value, defaults: SettingsDefaults) -> Result<(HttpSettings, Map<String, Value>), String> {
        let mut map = match settings {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            other => return Err(format!("provider settings must be a table, got {}", json_type(other))),
        };
        let base = take_string(&mut map, "base_url")?.unwrap_or_else(|| defaults.base_url.to_string());
        let base_url = Url::parse(&base).map_err(|e| format!("`base_url`: `{base}` is not a URL: {e}"))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(format!("`base_url`: `{base}` must be http or https"));
        }
        let inline = take_string(&mut map, "api_key")?;
        let env = take_string(&mut map, "api_key_env")?;
        let api_key = ApiKey::resolve(inline.as_deref(), env.as_deref(), defaults.key_env)?;
        let model = take_string(&mut map, "model")?.unwrap_or_else(|| defaults.model.to_string());
        let timeout = take_seconds(&mut map, "timeout_s")?.unwrap_or(defaults.timeout);
        let connect_timeout = take_seconds(&mut map, "connect_timeout_s")?.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let max_response_bytes = match map.remove("max_response_bytes") {
            None | Some(Value::Null) => DEFAULT_MAX_RESPONSE_BYTES,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(b) if b > 0 => b,
                _ => return Err(format!("`max_response_bytes` must be a positive integer, got {n}")),
            },
            Some(other) => {
                return Err(format!(
                    "`max_response_bytes` must be a positive integer, got {}",
                    json_type(&other)
                ))
            }
        };
        let headers = match map.remove("headers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(h)) => {
                let mut out = Vec::with_capacity(h.len());
                for (k, v) in h {
                    let Value::String(v) = v else {
                        return Err(format!("`headers.{k}` must be a string"));
                    };
                    HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("`headers.{k}`: not a header name"))?;
                    HeaderValue::from_str(&v).map_err(|_| format!("`headers.{k}`: not a valid header value"))?;
                    out.push((k, v));
                }
                out
            }
            Some(other) => return Err(format!("`headers` must be a table, got {}", json_type(&other))),
        };
        let prices = map.remove("prices").filter(|v| !v.is_null());
        let mut warnings = Vec::new();
        // A hosted service (its own base URL) with no key answers 401 to every
        // call; a local or compatible server may need none.
        if let (None, Some(var)) = (&api_key, defaults.key_env) {
            if base_url.as_str().trim_end_matches('/') == defaults.base_url.trim_end_matches('/')
                && !is_loopback(&base_url)
            {
                warnings.push(format!(
                    "no API key: `{var}` is not set (or name another variable with `api_key_env`); every call to {} will fail with 401",
                    base_url.as_str().trim_end_matches('/')
                ));
            }
        }
        Ok((
            HttpSettings {
                base_url,
                api_key,
                model,
                timeout,
                connect_timeout,
                max_response_bytes,
                headers,
                prices,
                warnings,
            },
            map,
        ))
    }

    /// The settings fingerprint of a backend of `kind` built from these settings
    /// and its own `extra` settings that shape the output (see
    /// [`Provider::fingerprint`](creative_core::Provider::fingerprint)).
    ///
    /// It covers the base URL, the default model, the names of the extra
    /// headers (never their values, which may hold a token) and `extra`; never
    /// the key, timeouts, size limits or prices, which change no output.
    pub fn fingerprint(&self, kind: &str, extra: Value) -> String {
        let mut headers: Vec<String> = self.headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
        headers.sort();
        headers.dedup();
        creative_core::settings_fingerprint(
            kind,
            &serde_json::json!({
                "base_url": self.base_url.as_str(),
                "model": self.model,
                "header_names": headers,
                "extra": extra,
            }),
        )
    }

    /// A transport builder for these settings.
    pub fn transport(&self, provider: &str, auth: Auth) -> TransportBuilder {
        let mut b = Transport::builder(provider, self.base_url.as_str())
            .auth(auth)
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .max_response_bytes(self.max_response_bytes);
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        b
    }
}

/// Whether `url` names this machine (a local server, which may need no key
/// and whose models cost nothing).
pub(crate) fn is_loopback(url: &Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "::1" | "[::1]"))
}

/// Deserialize a backend's own settings (the rest left by [`HttpSettings::parse`]),
/// rejecting unknown keys with a message that names them.
pub fn backend_settings<T: DeserializeOwned>(rest: Map<String, Value>) -> Result<T, String> {
    serde_json::from_value(Value::Object(rest)).map_err(|e| {
        let msg = e.to_string();
        if msg.starts_with("unknown field") {
            format!("{msg}; shared settings are {}", SHARED_KEYS.join(", "))
        } else {
            msg
        }
    })
}

/// The keys [`HttpSettings::parse`] reads.
const SHARED_KEYS: &[&str] = &[
    "base_url",
    "api_key_env",
    "api_key",
    "model",
    "timeout_s",
    "connect_timeout_s",
    "max_response_bytes",
    "headers",
    "prices",
];

// ---------------------------------------------------------------------------------
// Requests and responses
// ---------------------------------------------------------------------------------

/// How a request is authenticated.
#[derive(Clone, Debug)]
pub enum Auth {
    /// No credential.
    None,
    /// `Authorization: Bearer <key>`.
    Bearer(ApiKey),
    /// `Authorization: Key <key>` style: the scheme word, then the key.
    Scheme(&'static str, ApiKey),
    /// The key alone in a named header, such as `x-goog-api-key` or `xi-api-key`.
    Header(&'static str, ApiKey),
}

/// When a request carries the transport's credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Only when the URL has the base URL's origin (scheme, host, port). The default.
    #[default]
    SameOrigin,
    /// Always (for providers whose API spans several hosts).
    Always,
    /// Never.
    Never,
}

/// One field of a multipart form. Parts hold `Bytes`, so rebuilding the form on
/// every attempt costs no copy.
#[derive(Clone, Debug)]
pub struct FormPart {
    /// The field name.
    pub name: String,
    /// The field value.
    pub value: PartValue,
}

/// The value of a [`FormPart`].
#[derive(Clone)]
pub enum PartValue {
    /// A text field.
    Text(String),
    /// A file field.
    File {
        /// The payload.
        data: Bytes,
        /// The file name sent.
        filename: String,
        /// The MIME type sent.
        mime: String,
    },
}

impl std::fmt::Debug for PartValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartValue::Text(t) => f.debug_tuple("Text").field(t).finish(),
            PartValue::File { data, filename, mime } => f
                .debug_struct("File")
                .field("len", &data.len())
                .field("filename", filename)
                .field("mime", mime)
                .finish(),
        }
    }
}

impl FormPart {
    /// A text field.
    pub fn text(name: impl Into<String>, value: impl Into<String>) -> Self {
        FormPart {
            name: name.into(),
            value: PartValue::Text(value.into()),
        }
    }

    /// A file field.
    pub fn file(name: impl Into<String>, data: Bytes, filename: impl Into<String>, mime: impl Into<String>) -> Self {
        FormPart {
            name: name.into(),
            value: PartValue::File {
                data,
                filename: filename.into(),
                mime: mime.into(),
            },
        }
    }
}

/// The body of an [`HttpRequest`].
#[derive(Clone, Debug)]
pub enum Body {
    /// No body.
    Empty,
    /// A JSON document.
    Json(Value),
    /// A multipart form, rebuilt on each send.
    Multipart(Vec<FormPart>),
    /// Raw bytes with a content type.
    Bytes(Bytes, String),
}

/// A request as an adapter describes it; the [`Transport`] sends it.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// A path relative to the base URL (`images/generations`), or an absolute URL.
    pub target: String,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// Extra headers (never put a credential here: use [`Auth`]).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body.
    pub body: Body,
    /// When to send the credential.
    pub auth: AuthMode,
}

impl HttpRequest {
    /// A request with `method` to `target` and no body.
    pub fn new(method: Method, target: impl Into<String>) -> Self {
        HttpRequest {
            method,
            target: target.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Body::Empty,
            auth: AuthMode::SameOrigin,
        }
    }

    /// A GET.
    pub fn get(target: impl Into<String>) -> Self {
        HttpRequest::new(Method::GET, target)
    }

    /// A DELETE.
    pub fn delete(target: impl Into<String>) -> Self {
        HttpRequest::new(Method::DELETE, target)
    }

    /// A POST without a body (and so without a content type), for endpoints that
    /// take none, such as a cancel.
    pub fn post(target: impl Into<String>) -> Self {
        HttpRequest::new(Method::POST, target)
    }

    /// A POST with a JSON body.
    pub fn post_json(target: impl Into<String>, body: Value) -> Self {
        HttpRequest::new(Method::POST, target).body(Body::Json(body))
    }

    /// A POST with a multipart form.
    pub fn post_multipart(target: impl Into<String>, parts: Vec<FormPart>) -> Self {
        HttpRequest::new(Method::POST, target).body(Body::Multipart(parts))
    }

    /// Set the body.
    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// Add a query parameter.
    pub fn query(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.query.push((k.into(), v.into()));
        self
    }

    /// Add a header. Invalid names or values are dropped with a debug log, since
    /// backends only pass constants and validated settings here.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        match (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            (Ok(k), Ok(v)) => self.headers.push((k, v)),
            _ => tracing::debug!(header = k, "dropping an invalid header"),
        }
        self
    }

    /// Choose when the credential is sent.
    pub fn auth(mut self, mode: AuthMode) -> Self {
        self.auth = mode;
        self
    }
}

/// A successful (2xx) response, its body read in full within the size limit.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// The status.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The final URL (after redirects).
    pub url: Url,
}

impl HttpResponse {
    /// Parse the body as JSON; a body that does not parse is a `Protocol` error
    /// carrying the start of the body.
    pub fn json<T: DeserializeOwned>(&self, provider: &str) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let mut err = ProviderError::new(
                ErrorKind::Protocol,
                provider,
                format!("malformed JSON from {}: {e}", self.url.path()),
            )
            .with_status(self.status)
            .with_body(String::from_utf8_lossy(&self.body[..self.body.len().min(2048)]));
            if let Some(id) = self.request_id() {
                err = err.with_request_id(id);
            }
            err
        })
    }

    /// The `Content-Type`, without parameters.
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim())
    }

    /// The media type of the body, from `Content-Type`.
    pub fn media_type(&self) -> Option<MediaType> {
        self.content_type().and_then(|c| c.parse().ok())
    }

    /// The provider's request id, if a known header carries one.
    pub fn request_id(&self) -> Option<&str> {
        request_id(&self.headers)
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn request_id(headers: &HeaderMap) -> Option<&str> {
    REQUEST_ID_HEADERS
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
}

/// A downloaded output.
#[derive(Clone, Debug)]
pub struct Download {
    /// The bytes.
    pub data: Bytes,
    /// The media type the server declared, if any.
    pub media: Option<MediaType>,
}

// ---------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------

/// What the shared layer learnt from a failed response, handed to a backend's
/// [`ErrorRefiner`].
#[derive(Debug)]
pub struct ErrorInfo<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The provider's message (parsed from the body, or the body's start).
    pub message: &'a str,
    /// The provider's error code or type, if the body had one.
    pub code: Option<&'a str>,
    /// The body as JSON, if it was JSON.
    pub json: Option<&'a Value>,
}

/// A backend's hook to classify a failed response its own way (each provider
/// signals content-policy refusals differently). Return `None` to keep the
/// shared mapping.
pub type ErrorRefiner = fn(&ErrorInfo<'_>) -> Option<ErrorKind>;

/// Pull a message and a code out of the common error body shapes:
/// `{"error": {"message", "code"|"type"|"status"}}` (OpenAI, Gemini),
/// `{"error": "..."}` (Ollama), `{"detail": "..." | {"message", "status"} | [{"msg"}]}`
/// (Replicate, fal, ElevenLabs, FastAPI), `{"message", "code"|"name"}`,
/// `{"errors": [...], "name"}` (Stability), `{"title", "detail"}` (problem+json).
pub fn parse_error_body(json: &Value) -> (Option<String>, Option<String>) {
    fn s(v: Option<&Value>) -> Option<String> {
        match v? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
    fn list(v: &[Value]) -> Option<String> {
        let parts: Vec<String> = v
            .iter()
            .filter_map(|e| match e {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => s(o.get("msg")).or_else(|| s(o.get("message"))),
                _ => None,
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
    let Value::Object(o) = json else {
        return (None, None);
    };
    match o.get("error") {
        Some(Value::Object(e)) => {
            let code = s(e.get("code"))
                .filter(|c| c.parse::<u16>().is_err())
                .or_else(|| s(e.get("type")))
                .or_else(|| s(e.get("status")));
            return (s(e.get("message")), code);
        }
        Some(Value::String(m)) => return (Some(m.clone()), s(o.get("code")).or_else(|| s(o.get("type")))),
        _ => {}
    }
    match o.get("detail") {
        Some(Value::String(d)) => {
            let msg = match s(o.get("title")) {
                Some(t) if t != *d => format!("{t}: {d}"),
                _ => d.clone(),
            };
            return (Some(msg), s(o.get("code")).or_else(|| s(o.get("type"))));
        }
        Some(Value::Object(d)) => {
            return (
                s(d.get("message")).or_else(|| s(d.get("msg"))),
                s(d.get("status")).or_else(|| s(d.get("code"))),
            )
        }
        Some(Value::Array(a)) => return (list(a), None),
        _ => {}
    }
    if let Some(Value::Array(a)) = o.get("errors") {
        return (list(a), s(o.get("name")).or_else(|| s(o.get("code"))));
    }
    (
        s(o.get("message")).or_else(|| s(o.get("title"))),
        s(o.get("code"))
            .or_else(|| s(o.get("name")))
            .or_else(|| s(o.get("type"))),
    )
}

/// A retry delay given in the error body: Google's `RetryInfo` detail
/// (`{"error": {"details": [{"@type": "...RetryInfo", "retryDelay": "30s"}]}}`).
pub fn body_retry_delay(json: &Value) -> Option<Duration> {
    json.get("error")?
        .get("details")?
        .as_array()?
        .iter()
        .find_map(|d| d.get("retryDelay")?.as_str().and_then(parse_go_duration))
}

/// The shared guess at a content-policy refusal, from codes and messages the
/// major providers use.
pub fn looks_like_content_policy(code: Option<&str>, message: &str) -> bool {
    let code = code.unwrap_or("").to_ascii_lowercase();
    let msg = message.to_ascii_lowercase();
    [
        "content_policy",
        "moderation",
        "safety",
        "content_filter",
        "content_moderated",
    ]
    .iter()
    .any(|k| code.contains(k))
        || [
            "safety system",
            "content policy",
            "content_policy_violation",
            "moderation_blocked",
        ]
        .iter()
        .any(|k| msg.contains(k))
}

/// The delay a response asks for before retrying, from (in order) `retry-after-ms`,
/// `Retry-After` (seconds or an HTTP date relative to `now`), then the reset
/// headers `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` (durations such
/// as `1s`, `6m0s`, `20ms`; the exhausted one if `x-ratelimit-remaining-*` says
/// which, else the longer) and `x-ratelimit-reset` (seconds, or a Unix time).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    if let Some(v) = get("retry-after") {
        if let Ok(s) = v.parse::<f64>() {
            if s.is_finite() && s >= 0.0 {
                return Some(Duration::from_secs_f64(s));
            }
        }
        if let Ok(t) = httpdate::parse_http_date(v) {
            return Some(t.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    let req = get("x-ratelimit-reset-requests").and_then(parse_go_duration);
    let tok = get("x-ratelimit-reset-tokens").and_then(parse_go_duration);
    let exhausted = |n: &str| get(n).and_then(|v| v.parse::<f64>().ok()) == Some(0.0);
    let pick = match (req, tok) {
        (Some(r), Some(t)) => {
            if exhausted("x-ratelimit-remaining-requests") && !exhausted("x-ratelimit-remaining-tokens") {
                Some(r)
            } else if exhausted("x-ratelimit-remaining-tokens") && !exhausted("x-ratelimit-remaining-requests") {
                Some(t)
            } else {
                Some(r.max(t))
            }
        }
        (r, t) => r.or(t),
    };
    if pick.is_some() {
        return pick;
    }
    if let Some(v) = get("x-ratelimit-reset").and_then(|v| v.parse::<f64>().ok()) {
        if v.is_finite() && v >= 0.0 {
            // Large values are Unix times; small ones are seconds from now.
            if v > 1e9 {
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(v);
                return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
            }
            return Some(Duration::from_secs_f64(v));
        }
    }
    None
}

/// Parse a Go-style duration (`1s`, `6m0s`, `1h2m3.5s`, `250ms`, `10us`), as
/// OpenAI's rate-limit reset headers use.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * factor;
        rest = &rest[unit_end..];
    }
    total.is_finite().then(|| Duration::from_secs_f64(total))
}

fn classify_status(status: u16) -> ErrorKind {
    match status {
        429 => ErrorKind::RateLimited,
        401 | 402 | 403 | 407 => ErrorKind::Auth,
        408 => ErrorKind::Timeout,
        501 | 505 => ErrorKind::Invalid,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Invalid,
    }
}

// ---------------------------------------------------------------------------------
// The transport
// ---------------------------------------------------------------------------------

/// Builds a [`Transport`]. Setters never fail; [`TransportBuilder::build`] reports
/// the first bad input.
#[must_use]
pub struct TransportBuilder {
    provider: String,
    base_url: String,
    auth: Auth,
    timeout: Duration,
    connect_timeout: Duration,
    max_response_bytes: u64,
    headers: Vec<(String, String)>,
    refiner: Option<ErrorRefiner>,
    client: Option<reqwest::Client>,
}

impl TransportBuilder {
    /// The credential (default: none).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Total timeout of one request (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Connect timeout (default [`DEFAULT_CONNECT_TIMEOUT`]); a non-default value
    /// gives this transport a client of its own.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Largest accepted body (default [`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub fn max_response_bytes(mut self, n: u64) -> Self {
        self.max_response_bytes = n;
        self
    }

    /// A header sent with every request.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    /// The backend's error classification hook.
    pub fn error_refiner(mut self, f: ErrorRefiner) -> Self {
        self.refiner = Some(f);
        self
    }

    /// Use this client instead of the shared one (tests, custom proxies).
    pub fn client(mut self, c: reqwest::Client) -> Self {
        self.client = Some(c);
        self
    }

    /// Build it.
    pub fn build(self) -> Result<Transport, String> {
        let base = Url::parse(&self.base_url).map_err(|e| format!("base URL `{}`: {e}", self.base_url))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(format!(
                "base URL `{}` must be an http(s) URL with a host",
                self.base_url
            ));
        }
        let base_str = base.as_str().trim_end_matches('/').to_string();
        let client = match self.client {
            Some(c) => c,
            None if self.connect_timeout == DEFAULT_CONNECT_TIMEOUT => shared_client()?,
            None => build_client(self.connect_timeout)?,
        };
        let (auth, secret) = match &self.auth {
            Auth::None => (None, None),
            Auth::Bearer(k) => (
                Some((reqwest::header::AUTHORIZATION, format!("Bearer {}", k.expose()))),
                Some(k.clone()),
            ),
            Auth::Scheme(s, k) => (
                Some((reqwest::header::AUTHORIZATION, format!("{s} {}", k.expose()))),
                Some(k.clone()),
            ),
            Auth::Header(h, k) => (
                Some((
                    HeaderName::from_bytes(h.as_bytes())
                        .map_err(|_| format!("auth header `{h}`: not a header name"))?,
                    k.expose().to_string(),
                )),
                Some(k.clone()),
            ),
        };
        let auth = match auth {
            Some((name, value)) => {
                // The error never includes the value: it is the secret.
                let mut v = HeaderValue::from_str(&value)
                    .map_err(|_| "the API key has characters not allowed in an HTTP header".to_string())?;
                v.set_sensitive(true);
                Some((name, v))
            }
            None => None,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("header `{k}`: not a header name"))?;
            let mut value = HeaderValue::from_str(v).map_err(|_| format!("header `{k}`: not a valid value"))?;
            // Extra headers may carry organisation ids or other tokens: keep them out of Debug.
            value.set_sensitive(true);
            headers.append(name, value);
        }
        if self.max_response_bytes == 0 {
            return Err("max_response_bytes must be positive".into());
        }
        Ok(Transport {
            inner: Arc::new(TransportInner {
                provider: self.provider,
                base,
                base_str,
                client,
                auth,
                secret,
                headers,
                timeout: self.timeout,
                max_response_bytes: self.max_response_bytes,
                refiner: self.refiner,
            }),
        })
    }
}

/// Sends [`HttpRequest`]s for one provider: base URL, credential, limits and error
/// mapping. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Transport {
    inner: Arc<TransportInner>,
}

struct TransportInner {
    provider: String,
    base: Url,
    base_str: String,
    client: reqwest::Client,
    auth: Option<(HeaderName, HeaderValue)>,
    secret: Option<ApiKey>,
    headers: HeaderMap,
    timeout: Duration,
    max_response_bytes: u64,
    refiner: Option<ErrorRefiner>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("provider", &self.inner.provider)
            .field("base_url", &self.inner.base.as_str())
            .field("auth", &self.inner.auth.as_ref().map(|(n, _)| format!("{n}: ***")))
            .field("timeout", &self.inner.timeout)
            .field("max_response_bytes", &self.inner.max_response_bytes)
            .finish()
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

impl Transport {
    /// A builder for `provider` (its id, used in errors) at `base_url`.
    pub fn builder(provider: impl Into<String>, base_url: impl Into<String>) -> TransportBuilder {
        TransportBuilder {
            provider: provider.into(),
            base_url: base_url.into(),
            auth: Auth::None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            headers: Vec::new(),
            refiner: None,
            client: None,
        }
    }

    /// The provider id used in errors.
    pub fn provider(&self) -> &str {
        &self.inner.provider
    }

    /// The base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// The total timeout of one request.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The response size limit.
    pub fn max_response_bytes(&self) -> u64 {
        self.inner.max_response_bytes
    }

    /// The headers a request to the base URL's origin carries besides its own:
    /// the credential (marked sensitive) and the configured extra headers. For a
    /// connection the transport does not make itself, such as ComfyUI's
    /// websocket behind an authenticating proxy.
    pub fn origin_headers(&self) -> HeaderMap {
        let mut h = self.inner.headers.clone();
        if let Some((n, v)) = &self.inner.auth {
            h.insert(n.clone(), v.clone());
        }
        h
    }

    /// Whether the transport holds a credential.
    pub fn has_auth(&self) -> bool {
        self.inner.auth.is_some()
    }

    /// Resolve a request target: an absolute `http(s)` URL as is, anything else
    /// appended to the base URL with one `/` between.
    pub fn url(&self, target: &str) -> Result<Url, ProviderError> {
        let joined;
        let s = if target.starts_with("https://") || target.starts_with("http://") {
            target
        } else {
            joined = format!("{}/{}", self.inner.base_str, target.trim_start_matches('/'));
            &joined
        };
        Url::parse(s).map_err(|e| self.err(ErrorKind::Invalid, format!("bad URL `{s}`: {e}")))
    }

    fn err(&self, kind: ErrorKind, msg: impl Into<String>) -> ProviderError {
        ProviderError::new(kind, self.inner.provider.as_str(), msg)
    }

    /// Replace the credential, if it appears, with `***`.
    fn scrub(&self, s: &str) -> String {
        match &self.inner.secret {
            Some(k) if !k.expose().is_empty() && s.contains(k.expose()) => s.replace(k.expose(), "***"),
            _ => s.to_string(),
        }
    }

    /// Map a reqwest failure to an error class. Timeouts are `Timeout`; connection
    /// failures, resets and truncated bodies are `Transient`.
    fn map_reqwest(&self, e: &reqwest::Error, after: Duration) -> ProviderError {
        if e.is_timeout() {
            return ProviderError::timeout(self.inner.provider.as_str(), after);
        }
        if e.is_connect() {
            // reqwest's chain (`error sending request for url (...): client error
            // (Connect): tcp connect error: Connection refused (os error 111)`)
            // says one thing three times: keep the address and the root cause.
            let mut root: &dyn std::error::Error = e;
            while let Some(s) = root.source() {
                root = s;
            }
            let to = match e.url() {
                Some(u) => format!("{}{}", u.origin().ascii_serialization(), u.path()),
                None => self.inner.base_str.clone(),
            };
            return self.err(
                ErrorKind::Transient,
                self.scrub(&format!("cannot connect to {to}: {root}; is the server running there?")),
            );
        }
        let phase = if e.is_body() || e.is_decode() {
            "reading the body (truncated or reset)"
        } else {
            "sending the request"
        };
        // reqwest's Display includes the URL, never headers; scrub anyway in case a
        // key was put in a query by a custom base URL.
        let mut msg = format!("{phase}: {e}");
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        self.err(ErrorKind::Transient, self.scrub(&msg))
    }

    /// Build the error for a non-2xx response: class from the status (refined by the
    /// backend's hook and the shared content-policy guess), the provider's message
    /// and code, the delay asked for, the request id, and the start of the body.
    pub fn error_from_response(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> ProviderError {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let (message, code) = json.as_ref().map(parse_error_body).unwrap_or((None, None));
        let text = String::from_utf8_lossy(body);
        let message = message.unwrap_or_else(|| {
            let t = text.trim();
            if let Some(page) = html_page(t) {
                // A web page where the API's JSON was expected: a wrong port or
                // path, or a proxy's error page. Its markup helps no one.
                let reason = StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("error");
                format!(
                    "{reason}: the server answered with a web page{page} instead of the API's JSON; \
                     is `base_url` the API's address?"
                )
            } else if t.is_empty() {
                StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("error")
                    .to_string()
            } else {
                t.chars().take(300).collect()
            }
        });
        let message = self.scrub(&message);
        let info = ErrorInfo {
            status,
            message: &message,
            code: code.as_deref(),
            json: json.as_ref(),
        };
        let kind = self
            .inner
            .refiner
            .and_then(|f| f(&info))
            .unwrap_or_else(|| match classify_status(status) {
                ErrorKind::Invalid | ErrorKind::Auth if looks_like_content_policy(code.as_deref(), &message) => {
                    ErrorKind::ContentPolicy
                }
                ErrorKind::RateLimited if code.as_deref() == Some("insufficient_quota") => ErrorKind::Auth,
                k => k,
            });
        let full = match &code {
            Some(c) if !message.contains(c.as_str()) => format!("{message} [{c}]"),
            _ => message.clone(),
        };
        let mut e = self.err(kind, full).with_status(status).with_body(self.scrub(&text));
        if matches!(
            kind,
            ErrorKind::RateLimited | ErrorKind::Transient | ErrorKind::Unavailable
        ) {
            let delay = retry_after(headers, SystemTime::now()).or_else(|| json.as_ref().and_then(body_retry_delay));
            e = e.with_retry_after(delay);
        }
        if let Some(id) = request_id(headers) {
            e = e.with_request_id(id);
        }
        e
    }

    /// Send `req` and read the whole body within the size limit, racing the call's
    /// cancel token and deadline. A non-2xx answer becomes a classified error.
    pub async fn send(&self, req: HttpRequest, ctx: &CallCtx) -> Result<HttpResponse, ProviderError> {
        let budget = match ctx.deadline {
            Some(d) => self.inner.timeout.min(d.saturating_duration_since(Instant::now())),
            None => self.inner.timeout,
        };
        if budget.is_zero() {
            return Err(ProviderError::timeout(self.inner.provider.as_str(), Duration::ZERO));
        }
        let started = Instant::now();
        let method = req.method.clone();
        let target = req.target.clone();
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => Err(ProviderError::cancelled(self.inner.provider.as_str())),
            r = tokio::time::timeout(budget, self.send_inner(req, budget)) => {
                let r = r.unwrap_or_else(|_| Err(ProviderError::timeout(self.inner.provider.as_str(), budget)));
                match &r {
                    Ok(resp) => tracing::debug!(
                        provider = %self.inner.provider, %method, path = resp.url.path(), status = resp.status,
                        bytes = resp.body.len(), ms = started.elapsed().as_secs_f64() * 1e3, "http call"
                    ),
                    Err(e) => tracing::debug!(
                        provider = %self.inner.provider, %method, target = %self.scrub(&target), error = %e,
                        ms = started.elapsed().as_secs_f64() * 1e3, "http call failed"
                    ),
                }
                r
            }
        }
    }

    /// Send `req` and parse the JSON answer into `T`.
    pub async fn send_json<T: DeserializeOwned>(&self, req: HttpRequest, ctx: &CallCtx) -> Result<T, ProviderError> {
        let resp = self.send(req, ctx).await?;
        resp.json(&self.inner.provider)
    }

    async fn send_inner(&self, req: HttpRequest, budget: Duration) -> Result<HttpResponse, ProviderError> {
        let mut url = self.url(&req.target)?;
        if !req.query.is_empty() {
            url.query_pairs_mut().extend_pairs(req.query.iter());
        }
        let mut hops = 0usize;
        loop {
            let mut rb = self
                .inner
                .client
                .request(req.method.clone(), url.clone())
                .timeout(budget);
            let send_auth = match req.auth {
                AuthMode::SameOrigin => same_origin(&url, &self.inner.base),
                AuthMode::Always => true,
                AuthMode::Never => false,
            };
            if send_auth {
                if let Some((n, v)) = &self.inner.auth {
                    rb = rb.header(n.clone(), v.clone());
                }
                if !self.inner.headers.is_empty() {
                    rb = rb.headers(self.inner.headers.clone());
                }
            }
            for (k, v) in &req.headers {
                rb = rb.header(k.clone(), v.clone());
            }
            rb = match &req.body {
                Body::Empty => rb,
                Body::Json(v) => {
                    let bytes = serde_json::to_vec(v)
                        .map_err(|e| self.err(ErrorKind::Invalid, format!("cannot encode the request body: {e}")))?;
                    rb.header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                        .body(bytes)
                }
                Body::Bytes(b, ct) => rb
                    .header(
                        CONTENT_TYPE,
                        HeaderValue::from_str(ct).map_err(|_| self.err(ErrorKind::Invalid, "bad content type"))?,
                    )
                    .body(b.clone()),
                Body::Multipart(parts) => rb.multipart(self.form(parts)?),
            };
            let resp = rb.send().await.map_err(|e| self.map_reqwest(&e, budget))?;
            let status = resp.status();
            if status.is_redirection() {
                if let Some(loc) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                    if !matches!(req.method, Method::GET | Method::HEAD) {
                        return Err(self
                            .err(
                                ErrorKind::Protocol,
                                format!("unexpected redirect ({status}) of a {}", req.method),
                            )
                            .with_status(status.as_u16()));
                    }
                    hops += 1;
                    if hops > MAX_REDIRECTS {
                        return Err(self.err(ErrorKind::Protocol, "too many redirects"));
                    }
                    url = url
                        .join(loc)
                        .map_err(|e| self.err(ErrorKind::Protocol, format!("bad redirect location: {e}")))?;
                    if url.scheme() != "https" && !same_origin(&url, &self.inner.base) {
                        return Err(self.err(
                            ErrorKind::Invalid,
                            format!(
                                "refusing a redirect to plain http outside the base URL: {}",
                                url.origin().ascii_serialization()
                            ),
                        ));
                    }
                    continue;
                }
            }
            let headers = resp.headers().clone();
            let final_url = resp.url().clone();
            if !status.is_success() {
                // Error bodies are small; a failure to read one must not hide the status.
                let body = self.read_limited(resp, budget).await.unwrap_or_default();
                return Err(self.error_from_response(status.as_u16(), &headers, &body));
            }
            let body = self.read_limited(resp, budget).await?;
            return Ok(HttpResponse {
                status: status.as_u16(),
                headers,
                body,
                url: final_url,
            });
        }
    }

    fn form(&self, parts: &[FormPart]) -> Result<reqwest::multipart::Form, ProviderError> {
        let mut form = reqwest::multipart::Form::new();
        for p in parts {
            form = match &p.value {
                PartValue::Text(t) => form.text(p.name.clone(), t.clone()),
                PartValue::File { data, filename, mime } => {
                    let part = reqwest::multipart::Part::stream_with_length(
                        reqwest::Body::from(data.clone()),
                        data.len() as u64,
                    )
                    .file_name(filename.clone())
                    .mime_str(mime)
                    .map_err(|_| self.err(ErrorKind::Invalid, format!("form part `{}`: bad MIME `{mime}`", p.name)))?;
                    form.part(p.name.clone(), part)
                }
            };
        }
        Ok(form)
    }

    /// Read a body, failing as soon as it passes the size limit.
    async fn read_limited(&self, mut resp: reqwest::Response, budget: Duration) -> Result<Bytes, ProviderError> {
        let limit = self.inner.max_response_bytes;
        let too_big = |n: u64| {
            self.err(
                ErrorKind::Invalid,
                format!("response larger than the limit of {limit} bytes (at least {n}); raise `max_response_bytes`"),
            )
        };
        let declared = resp.content_length();
        if let Some(n) = declared {
            if n > limit {
                return Err(too_big(n));
            }
        }
        // The usual case is one chunk: keep it without copying.
        let mut first: Option<Bytes> = None;
        let mut buf: Option<BytesMut> = None;
        let mut total = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.map_reqwest(&e, budget))? {
            total += chunk.len() as u64;
            if total > limit {
                return Err(too_big(total));
            }
            match (&mut first, &mut buf) {
                (None, None) => first = Some(chunk),
                (Some(f), None) => {
                    let cap = declared.unwrap_or(total * 2).min(limit) as usize;
                    let mut b = BytesMut::with_capacity(cap.max(total as usize));
                    b.extend_from_slice(f);
                    b.extend_from_slice(&chunk);
                    first = None;
                    buf = Some(b);
                }
                (_, Some(b)) => b.extend_from_slice(&chunk),
            }
        }
        if let Some(n) = declared {
            // hyper reports a short body as an error already; this guards other paths.
            if total != n {
                return Err(self.err(
                    ErrorKind::Transient,
                    format!("truncated body: got {total} of {n} bytes"),
                ));
            }
        }
        Ok(match (first, buf) {
            (_, Some(b)) => b.freeze(),
            (Some(f), None) => f,
            (None, None) => Bytes::new(),
        })
    }

    /// Whether an output URL may be fetched: over https, or from the base URL's
    /// origin (a local server, or the loopback mock in tests).
    pub fn download_allowed(&self, url: &Url) -> bool {
        url.scheme() == "https" || same_origin(url, &self.inner.base)
    }

    /// Fetch an output URL with the same size limit, timeout and cancellation;
    /// `data:` URLs are decoded in place. The credential is sent only to the base
    /// URL's origin.
    pub async fn download(&self, url: &str, ctx: &CallCtx) -> Result<Download, ProviderError> {
        if let Some(rest) = url.strip_prefix("data:") {
            return self.decode_data_url(rest);
        }
        let parsed = Url::parse(url).map_err(|e| self.err(ErrorKind::Protocol, format!("output URL: {e}")))?;
        if !self.download_allowed(&parsed) {
            return Err(self.err(
                ErrorKind::Invalid,
                format!(
                    "refusing to download `{}`: only https or the base URL's host are allowed",
                    parsed.origin().ascii_serialization()
                ),
            ));
        }
        let resp = self.send(HttpRequest::get(parsed.as_str()), ctx).await?;
        let media = resp.media_type();
        Ok(Download { data: resp.body, media })
    }

    fn decode_data_url(&self, rest: &str) -> Result<Download, ProviderError> {
        let (head, data) = rest
            .split_once(',')
            .ok_or_else(|| self.err(ErrorKind::Protocol, "data URL without a comma"))?;
        let (mime, b64) = match head.strip_suffix(";base64") {
            Some(m) => (m, true),
            None => (head, false),
        };
        let bytes = if b64 {
            decode_base64(&self.inner.provider, data)?
        } else {
            Bytes::from(data.as_bytes().to_vec())
        };
        if bytes.len() as u64 > self.inner.max_response_bytes {
            return Err(self.err(ErrorKind::Invalid, "data URL larger than the response limit"));
        }
        Ok(Download {
            data: bytes,
            media: (!mime.is_empty()).then(|| mime.parse().ok()).flatten(),
        })
    }
}

/// When `body` is an HTML page: ` ("its title")`, or an empty string for a page
/// without a title. `None` for anything else.
fn html_page(body: &str) -> Option<String> {
    let head: String = body.chars().take(512).collect::<String>().to_ascii_lowercase();
    if !(head.starts_with("<!doctype html") || head.starts_with("<html") || head.contains("<body")) {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let title = lower.find("<title>").and_then(|i| {
        let start = i + "<title>".len();
        let end = start + lower[start..].find("</title>")?;
        // ASCII lowercasing keeps byte offsets, so they index the original.
        body.get(start..end)
            .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
    });
    Some(match title.filter(|t| !t.is_empty()) {
        Some(t) => format!(" (\"{}\")", t.chars().take(80).collect::<String>()),
        None => String::new(),
    })
}

// ---------------------------------------------------------------------------------
// Helpers for adapters
// ---------------------------------------------------------------------------------

/// Merge `raw` into a JSON body last, so the escape hatch wins over anything the
/// adapter set, key by key and at every depth: an object in `raw` is merged into
/// the object the adapter built under the same key (a raw `options` adds to
/// Ollama's `options` instead of dropping the seed and temperature the typed
/// parameters put there); any other value replaces, and `null` removes the key.
/// A non-object body is left as is.
///
/// ```
/// use creative_providers::http::merge_raw;
/// use serde_json::json;
/// let mut body = json!({"options": {"seed": 7, "temperature": 0.7}, "n": 1});
/// let raw = json!({"options": {"temperature": 0.2, "num_ctx": 8192}, "n": null});
/// merge_raw(&mut body, raw.as_object().unwrap());
/// assert_eq!(body, json!({"options": {"seed": 7, "temperature": 0.2, "num_ctx": 8192}}));
/// ```
pub fn merge_raw(body: &mut Value, raw: &Map<String, Value>) {
    if let Value::Object(m) = body {
        merge_object(m, raw);
    }
}

fn merge_object(into: &mut Map<String, Value>, raw: &Map<String, Value>) {
    for (k, v) in raw {
        match (into.get_mut(k), v) {
            (_, Value::Null) => {
                into.remove(k);
            }
            (Some(Value::Object(have)), Value::Object(add)) => merge_object(have, add),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// An `f32` parameter as it goes on the wire: the shortest decimal that reads back
/// as the same `f32` (the value the user wrote), not its `f64` widening
/// (`0.7f32` is `0.699999988079071` as an `f64`). `None` for NaN or infinity,
/// which JSON cannot carry.
///
/// ```
/// use creative_providers::http::wire_f32;
/// assert_eq!(serde_json::to_string(&wire_f32(0.7).unwrap()).unwrap(), "0.7");
/// assert!(wire_f32(f32::NAN).is_none());
/// ```
pub fn wire_f32(x: f32) -> Option<Value> {
    if !x.is_finite() {
        return None;
    }
    // `Display` for f32 prints the shortest round-tripping decimal; read as an
    // f64 it is the nearest f64 to what was written, which serialises the same.
    let shortest: f64 = x.to_string().parse().ok()?;
    serde_json::Number::from_f64(shortest).map(Value::Number)
}

/// A token or unit count from a provider's `usage` block, read tolerantly: a
/// non-negative integer is kept; anything else (negative, fractional, a string,
/// an object) is logged and counted as absent, so a surprising `usage` never
/// throws away the outputs it came with. For `#[serde(deserialize_with)]` on an
/// `Option<u64>` field (with `#[serde(default)]`).
pub fn lenient_count<'de, D>(d: D) -> Result<Option<u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v = <Value as serde::Deserialize>::deserialize(d)?;
    Ok(match &v {
        Value::Null => None,
        Value::Number(n) => match n.as_u64() {
            Some(c) => Some(c),
            // A float with no fraction (`12.0`) is a count some servers write.
            None => match n.as_f64() {
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 9.0e15 => Some(f as u64),
                _ => {
                    tracing::warn!(value = %v, "ignoring a usage count that is not a non-negative integer");
                    None
                }
            },
        },
        _ => {
            tracing::warn!(value = %v, "ignoring a usage count that is not a number");
            None
        }
    })
}

/// A provider's whole `usage` block, read tolerantly: when it is not the shape
/// `T` expects (a string, a list, a field of the wrong type), it is logged and
/// treated as absent instead of failing the call. For
/// `#[serde(deserialize_with)]` on an `Option<T>` field (with `#[serde(default)]`).
pub fn lenient_block<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    let v = <Value as serde::Deserialize>::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    match serde_json::from_value::<T>(v) {
        Ok(t) => Ok(Some(t)),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a usage block of an unexpected shape");
            Ok(None)
        }
    }
}

/// An absolute URL a provider handed back (a job's poll or cancel URL) moved onto
/// the configured base URL: the part of its path below the base URL's path is
/// kept (with its query), the scheme, host, port and path prefix are the base
/// URL's. Behind a gateway or proxy the follow-up calls then go where the
/// configuration says, with the credential, instead of straight to the
/// provider's own host. `None` when the URL's path is not under the base URL's
/// last path segment (then the caller builds the path itself).
///
/// ```
/// use creative_providers::http::{rebase_onto, Url};
/// let base = Url::parse("https://gw.example/replicate/v1").unwrap();
/// assert_eq!(
///     rebase_onto(&base, "https://api.replicate.com/v1/predictions/p1").as_deref(),
///     Some("https://gw.example/replicate/v1/predictions/p1"),
/// );
/// ```
pub fn rebase_onto(base: &Url, url: &str) -> Option<String> {
    let given = Url::parse(url).ok()?;
    let base_path = base.path().trim_end_matches('/');
    let given_path = given.path();
    let tail = if given.origin() == base.origin() && given_path.starts_with(base_path) {
        &given_path[base_path.len()..]
    } else {
        // Another host: match on the base path's last segment (`/v1`), which the
        // provider's own URLs share with a gateway's prefix.
        let last = base_path.rsplit('/').next().filter(|s| !s.is_empty())?;
        let at = given_path.find(&format!("/{last}/"))?;
        &given_path[at + last.len() + 1..]
    };
    let mut out = format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        tail.trim_start_matches('/')
    );
    if let Some(q) = given.query() {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// Decode standard base64 (padding optional); bad input is a `Protocol` error.
pub fn decode_base64(provider: &str, s: &str) -> Result<Bytes, ProviderError> {
    let s = s.trim();
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
        .map(Bytes::from)
        .map_err(|e| {
            ProviderError::new(
                ErrorKind::Protocol,
                provider,
                format!("bad base64 in the response: {e}"),
            )
        })
}

/// Encode bytes as standard base64 (for inline image inputs).
pub fn encode_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Guess an image's media type from its first bytes (PNG, JPEG, WebP, GIF).
pub fn sniff_media(data: &[u8]) -> Option<MediaType> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(MediaType::Png)
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(MediaType::Jpeg)
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some(MediaType::Webp)
    } else if data.starts_with(b"GIF8") {
        Some(MediaType::Other(Arc::from("image/gif")))
    } else if data.starts_with(b"ID3") || data.starts_with(&[0xFF, 0xFB]) || data.starts_with(&[0xFF, 0xF3]) {
        Some(MediaType::Mp3)
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WAVE" {
        Some(MediaType::Wav)
    } else if data.len() >= 8 && &data[4..8] == b"ftyp" {
        Some(MediaType::Mp4)
    } else {
        None
    }
}

/// Sleep for `d`, or stop early with a `Cancelled` error when the call is
/// cancelled, or with a `Timeout` error when the call's deadline comes first.
pub async fn sleep_or_cancel(d: Duration, ctx: &CallCtx, provider: &str) -> Result<(), ProviderError> {
    let (d, hits_deadline) = match ctx.deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            (d.min(left), left <= d)
        }
        None => (d, false),
    };
    tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => Err(ProviderError::cancelled(provider)),
        _ = tokio::time::sleep(d) => {
            if hits_deadline {
                Err(ProviderError::new(
                    ErrorKind::Timeout,
                    provider,
                    "the call's time limit (the provider's `call_timeout_s`) ran out while waiting on the job",
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// The delays between polls of an async job: starts at `initial`, grows by
/// `factor` up to `max`, and gives up after `limit` in total.
///
/// ```
/// use std::time::Duration;
/// use creative_providers::http::PollBackoff;
/// let mut p = PollBackoff::new(Duration::from_millis(500), Duration::from_secs(5));
/// assert_eq!(p.next_delay(), Duration::from_millis(500));
/// assert_eq!(p.next_delay(), Duration::from_millis(750));
/// ```
#[derive(Debug, Clone)]
pub struct PollBackoff {
    next: Duration,
    max: Duration,
    factor: f64,
    waited: Duration,
    limit: Option<Duration>,
    polls: u32,
}

impl PollBackoff {
    /// Delays from `initial` growing by 1.5x up to `max`, with no total limit (the
    /// call's deadline still applies).
    pub fn new(initial: Duration, max: Duration) -> Self {
        PollBackoff {
            next: initial,
            max: max.max(initial),
            factor: 1.5,
            waited: Duration::ZERO,
            limit: None,
            polls: 0,
        }
    }

    /// Change the growth factor (at least 1).
    pub fn factor(mut self, f: f64) -> Self {
        self.factor = if f.is_finite() { f.max(1.0) } else { 1.0 };
        self
    }

    /// Give up (with a `Timeout` error) after waiting `total` in all.
    pub fn limit(mut self, total: Duration) -> Self {
        self.limit = Some(total);
        self
    }

    /// How many waits so far.
    pub fn polls(&self) -> u32 {
        self.polls
    }

    /// The next delay, advancing the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.mul_f64(self.factor).min(self.max);
        self.polls += 1;
        d
    }

    /// Wait the next delay, racing cancellation and the call's deadline.
    pub async fn wait(&mut self, ctx: &CallCtx, provider: &str) -> Result<(), ProviderError> {
        let d = self.next_delay();
        if let Some(limit) = self.limit {
            if self.waited >= limit {
                return Err(ProviderError::new(
                    ErrorKind::Timeout,
                    provider,
                    format!("job not finished after polling for {} s", self.waited.as_secs_f64()),
                ));
            }
        }
        self.waited += d;
        sleep_or_cancel(d, ctx, provider).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hm(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_go_duration("1h2m3.5s"), Some(Duration::from_secs_f64(3723.5)));
        assert_eq!(parse_go_duration("abc"), None);
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn retry_after_reads_every_header_form() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&hm(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&hm(&[("retry-after-ms", "1500")]), now),
            Some(Duration::from_millis(1500))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(
            retry_after(&hm(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&hm(&[("x-ratelimit-reset-requests", "6m0s")]), now),
            Some(Duration::from_secs(360))
        );
        let both = hm(&[
            ("x-ratelimit-reset-requests", "2s"),
            ("x-ratelimit-reset-tokens", "30s"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-remaining-tokens", "100"),
        ]);
        assert_eq!(retry_after(&both, now), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(&hm(&[("x-ratelimit-reset", "1700000010")]), now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn error_bodies_of_every_common_shape_yield_a_message() {
        let cases = [
            (
                json!({"error": {"message": "bad size", "type": "invalid_request_error", "code": null}}),
                "bad size",
                Some("invalid_request_error"),
            ),
            (
                json!({"error": {"code": 400, "message": "API key not valid", "status": "INVALID_ARGUMENT"}}),
                "API key not valid",
                Some("INVALID_ARGUMENT"),
            ),
            (json!({"error": "model not found"}), "model not found", None),
            (json!({"detail": "Invalid token"}), "Invalid token", None),
            (
                json!({"detail": {"status": "quota_exceeded", "message": "over quota"}}),
                "over quota",
                Some("quota_exceeded"),
            ),
            (
                json!({"detail": [{"loc": ["body", "x"], "msg": "field required"}]}),
                "field required",
                None,
            ),
            (
                json!({"id": "1", "name": "content_moderation", "errors": ["flagged"]}),
                "flagged",
                Some("content_moderation"),
            ),
            (
                json!({"title": "Not found", "detail": "no such model"}),
                "Not found: no such model",
                None,
            ),
            (json!({"message": "nope", "code": "E1"}), "nope", Some("E1")),
        ];
        for (body, msg, code) in cases {
            let (m, c) = parse_error_body(&body);
            assert_eq!(m.as_deref(), Some(msg), "{body}");
            assert_eq!(c.as_deref(), code, "{body}");
        }
    }

    fn transport() -> Transport {
        Transport::builder("p", "http://127.0.0.1:9/v1")
            .auth(Auth::Bearer(ApiKey::new("sk-secret-123")))
            .build()
            .unwrap()
    }

    #[test]
    fn statuses_map_to_classes() {
        let t = transport();
        let h = HeaderMap::new();
        let kind = |s: u16, b: &str| t.error_from_response(s, &h, b.as_bytes()).kind();
        assert_eq!(kind(400, "{}"), ErrorKind::Invalid);
        assert_eq!(kind(404, ""), ErrorKind::Invalid);
        assert_eq!(kind(422, ""), ErrorKind::Invalid);
        assert_eq!(kind(401, ""), ErrorKind::Auth);
        assert_eq!(kind(403, ""), ErrorKind::Auth);
        assert_eq!(kind(429, ""), ErrorKind::RateLimited);
        assert_eq!(kind(500, ""), ErrorKind::Transient);
        assert_eq!(kind(503, ""), ErrorKind::Transient);
        assert_eq!(
            kind(
                400,
                r#"{"error":{"message":"Your request was rejected as a result of our safety system.","code":"content_policy_violation"}}"#
            ),
            ErrorKind::ContentPolicy
        );
        assert_eq!(
            kind(429, r#"{"error":{"message":"quota","code":"insufficient_quota"}}"#),
            ErrorKind::Auth
        );
    }

    #[test]
    fn google_retry_info_in_the_body_gives_the_delay() {
        let t = transport();
        let body = br#"{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED",
            "details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"31s"}]}}"#;
        let e = t.error_from_response(429, &HeaderMap::new(), body);
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(31)));
        assert!(e.message().contains("Resource exhausted [RESOURCE_EXHAUSTED]"), "{e}");
    }

    #[test]
    fn the_key_is_scrubbed_from_error_messages_and_bodies() {
        let t = transport();
        let e = t.error_from_response(
            401,
            &HeaderMap::new(),
            br#"{"error":{"message":"bad key sk-secret-123"}}"#,
        );
        assert!(!e.to_string().contains("sk-secret-123"));
        assert!(!e.body().unwrap_or("").contains("sk-secret-123"));
        assert!(!format!("{e:?} {t:?}").contains("sk-secret-123"));
    }

    #[test]
    fn an_html_error_page_is_named_not_dumped() {
        let t = transport();
        let page = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>\
            <p>The requested URL was not found on this server.</p></body></html>";
        let e = t.error_from_response(404, &HeaderMap::new(), page);
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert_eq!(
            e.message(),
            "Not Found: the server answered with a web page (\"404 Not Found\") instead of the API's JSON; \
             is `base_url` the API's address?"
        );
        assert!(!e.message().contains("<h1>"));
    }

    #[test]
    fn the_refiner_overrides_the_shared_mapping() {
        fn refine(i: &ErrorInfo<'_>) -> Option<ErrorKind> {
            (i.status == 400 && i.message.contains("blocked")).then_some(ErrorKind::ContentPolicy)
        }
        let t = Transport::builder("p", "http://127.0.0.1:9")
            .error_refiner(refine)
            .build()
            .unwrap();
        let e = t.error_from_response(400, &HeaderMap::new(), br#"{"error":"prompt blocked"}"#);
        assert_eq!(e.kind(), ErrorKind::ContentPolicy);
        assert_eq!(e.message(), "prompt blocked");
    }

    #[test]
    fn targets_join_the_base_url_with_one_slash() {
        let t = Transport::builder("p", "http://h:1/v1/").build().unwrap();
        assert_eq!(
            t.url("images/generations").unwrap().as_str(),
            "http://h:1/v1/images/generations"
        );
        assert_eq!(t.url("/x").unwrap().as_str(), "http://h:1/v1/x");
        assert_eq!(
            t.url("https://cdn.example/a.png").unwrap().as_str(),
            "https://cdn.example/a.png"
        );
    }

    #[test]
    fn downloads_are_allowed_over_https_or_from_the_base_origin_only() {
        let t = Transport::builder("p", "http://127.0.0.1:8080/v1").build().unwrap();
        assert!(t.download_allowed(&Url::parse("https://cdn.example/a.png").unwrap()));
        assert!(t.download_allowed(&Url::parse("http://127.0.0.1:8080/files/a.png").unwrap()));
        assert!(!t.download_allowed(&Url::parse("http://127.0.0.1:8081/a.png").unwrap()));
        assert!(!t.download_allowed(&Url::parse("http://evil.example/a.png").unwrap()));
    }

    #[test]
    fn settings_parse_and_leave_the_rest() {
        let defaults = SettingsDefaults {
            base_url: "https://api.example/v1",
            key_env: None,
            model: "m1",
            timeout: Duration::from_secs(30),
        };
        let (s, rest) = HttpSettings::parse(
            &json!({"model": "m2", "timeout_s": 5, "api_key": "k", "quality": "hd"}),
            defaults,
        )
        .unwrap();
        assert_eq!(s.model, "m2");
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.base_url.as_str(), "https://api.example/v1");
        assert_eq!(rest.len(), 1);
        assert!(rest.contains_key("quality"));
        assert!(!format!("{s:?}").contains("\"k\""));
        let e = HttpSettings::parse(&json!({"timeout_s": "x"}), defaults).unwrap_err();
        assert!(e.contains("timeout_s"), "{e}");
        let e = HttpSettings::parse(&json!({"base_url": "ftp://x"}), defaults).unwrap_err();
        assert!(e.contains("base_url"), "{e}");
    }

    #[test]
    fn raw_is_merged_last() {
        let mut body = json!({"model": "a", "n": 1});
        let mut raw = Map::new();
        raw.insert("n".into(), json!(4));
        raw.insert("extra".into(), json!({"deep": [1, 2]}));
        merge_raw(&mut body, &raw);
        assert_eq!(body, json!({"model": "a", "n": 4, "extra": {"deep": [1, 2]}}));
    }

    #[test]
    fn media_is_sniffed_from_magic_bytes() {
        assert_eq!(sniff_media(b"\x89PNG\r\n\x1a\n...."), Some(MediaType::Png));
        assert_eq!(sniff_media(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(MediaType::Jpeg));
        assert_eq!(sniff_media(b"RIFF\0\0\0\0WEBPVP8 "), Some(MediaType::Webp));
        assert_eq!(sniff_media(b"hello"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn polling_stops_on_cancel_and_on_the_deadline() {
        let ctx = CallCtx::detached();
        let mut p = PollBackoff::new(Duration::from_secs(1), Duration::from_secs(4));
        p.wait(&ctx, "p").await.unwrap();
        ctx.cancel.cancel();
        assert_eq!(p.wait(&ctx, "p").await.unwrap_err().kind(), ErrorKind::Cancelled);

        let mut ctx = CallCtx::detached();
        ctx.deadline = Some(Instant::now() + Duration::from_millis(10));
        let e = sleep_or_cancel(Duration::from_secs(60), &ctx, "p").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);

        let ctx = CallCtx::detached();
        let mut p = PollBackoff::new(Duration::from_secs(1), Duration::from_secs(1)).limit(Duration::from_secs(2));
        p.wait(&ctx, "p").await.unwrap();
        p.wait(&ctx, "p").await.unwrap();
        assert_eq!(p.wait(&ctx, "p").await.unwrap_err().kind(), ErrorKind::Timeout);
    }
}
