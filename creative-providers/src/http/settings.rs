//! Settings every HTTP backend shares ([`HttpSettings::parse`]), and the
//! reading of a backend's own settings from what is left.

use std::time::Duration;

use super::{ApiKey, Auth, Transport, TransportBuilder, Url, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES};
use creative_core::ConfigError;
use reqwest::header::{HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

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

fn take_string(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ConfigError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ConfigError::new(
            key,
            format!("must be a string, got {}", json_type(&other)),
        )),
    }
}

fn take_seconds(map: &mut Map<String, Value>, key: &str) -> Result<Option<Duration>, ConfigError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(s) => check_seconds(s).map(Some).map_err(|e| e.at(key)),
            None => Err(ConfigError::new(
                key,
                format!("must be a positive number of seconds, got {n}"),
            )),
        },
        Some(other) => Err(ConfigError::new(
            key,
            format!("must be a number of seconds, got {}", json_type(&other)),
        )),
    }
}

/// Longest timeout a setting may give, in seconds (about 31 years): beyond it
/// a `Duration` is no longer meaningful and a typo is more likely than intent.
pub const MAX_TIMEOUT_S: f64 = 1e9;

/// `Ok` with the duration when `s` is a positive finite number of seconds
/// below [`MAX_TIMEOUT_S`]; the caller names the field with [`ConfigError::at`].
pub fn check_seconds(s: f64) -> Result<Duration, ConfigError> {
    if s > 0.0 && s.is_finite() && s < MAX_TIMEOUT_S {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(ConfigError::new(
            "",
            format!("must be a positive number of seconds below {MAX_TIMEOUT_S}, got {s}"),
        ))
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
    /// error naming it. The error's field is the refused key.
    pub fn parse(
        settings: &Value,
        defaults: SettingsDefaults,
    ) -> Result<(HttpSettings, Map<String, Value>), ConfigError> {
        let (b, rest) = HttpSettingsBuilder::parse(settings, defaults)?;
        Ok((b.build()?, rest))
    }

    /// A builder for the shared settings, starting from a backend's defaults;
    /// what each backend's own builder (`OpenAi::builder()`, ...) fills.
    pub fn builder(defaults: SettingsDefaults) -> HttpSettingsBuilder {
        HttpSettingsBuilder {
            defaults,
            base_url: None,
            api_key: None,
            api_key_env: None,
            model: None,
            timeout: None,
            connect_timeout: None,
            max_response_bytes: None,
            headers: Vec::new(),
            prices: None,
        }
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
/// rejecting unknown keys with an error whose field is the unknown key.
pub fn backend_settings<T: DeserializeOwned>(rest: Map<String, Value>) -> Result<T, ConfigError> {
    serde_json::from_value(Value::Object(rest)).map_err(|e| serde_error(&e.to_string()))
}

/// A serde message as a [`ConfigError`]: serde names an unknown field in
/// backticks at the start, which becomes the error's field.
pub(crate) fn serde_error(msg: &str) -> ConfigError {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((name, _)) = rest.split_once('`') {
            return ConfigError::new(name, format!("{msg}; shared settings are {}", SHARED_KEYS.join(", ")));
        }
    }
    ConfigError::new("", msg)
}

/// A serde message about a settings table as a [`ConfigError`]: an unknown
/// field (or a missing one) named in backticks becomes the error's field.
pub fn field_error(msg: &str) -> ConfigError {
    for prefix in ["unknown field `", "missing field `"] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            if let Some((name, _)) = rest.split_once('`') {
                return ConfigError::new(name, msg);
            }
        }
    }
    ConfigError::new("", msg)
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

/// Builds [`HttpSettings`] from typed values. Setters never fail;
/// [`build`](Self::build) reports the first bad value, naming its field as the
/// settings table spells it (`base_url`, `timeout_s`, `headers.<name>`...).
///
/// Debug never shows the key, inline or read from the environment.
#[must_use]
#[derive(Clone)]
pub struct HttpSettingsBuilder {
    defaults: SettingsDefaults,
    base_url: Option<String>,
    api_key: Option<ApiKey>,
    api_key_env: Option<String>,
    model: Option<String>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    max_response_bytes: Option<u64>,
    headers: Vec<(String, String)>,
    prices: Option<Value>,
}

impl std::fmt::Debug for HttpSettingsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettingsBuilder")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("api_key_env", &self.api_key_env)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("headers", &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

impl HttpSettingsBuilder {
    /// Read the shared keys of a settings table into a builder; returns it
    /// and the rest of the table, for the backend's own keys.
    pub fn parse(settings: &Value, defaults: SettingsDefaults) -> Result<(Self, Map<String, Value>), ConfigError> {
        let mut map = match settings {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            other => {
                return Err(ConfigError::new(
                    "",
                    format!("provider settings must be a table, got {}", json_type(other)),
                ))
            }
        };
        let mut b = HttpSettings::builder(defaults);
        if let Some(u) = take_string(&mut map, "base_url")? {
            b = b.base_url(u);
        }
        if let Some(k) = take_string(&mut map, "api_key")? {
            b = b.api_key(k);
        }
        if let Some(var) = take_string(&mut map, "api_key_env")? {
            b = b.api_key_env(var);
        }
        if let Some(m) = take_string(&mut map, "model")? {
            b = b.model(m);
        }
        if let Some(t) = take_seconds(&mut map, "timeout_s")? {
            b = b.timeout(t);
        }
        if let Some(t) = take_seconds(&mut map, "connect_timeout_s")? {
            b = b.connect_timeout(t);
        }
        match map.remove("max_response_bytes") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => match n.as_u64() {
                Some(n) => b = b.max_response_bytes(n),
                None => {
                    return Err(ConfigError::new(
                        "max_response_bytes",
                        format!("must be a positive integer, got {n}"),
                    ))
                }
            },
            Some(other) => {
                return Err(ConfigError::new(
                    "max_response_bytes",
                    format!("must be a positive integer, got {}", json_type(&other)),
                ))
            }
        }
        match map.remove("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(h)) => {
                for (k, v) in h {
                    let Value::String(v) = v else {
                        return Err(ConfigError::new(format!("headers.{k}"), "must be a string"));
                    };
                    b = b.header(k, v);
                }
            }
            Some(other) => {
                return Err(ConfigError::new(
                    "headers",
                    format!("must be a table, got {}", json_type(&other)),
                ))
            }
        }
        if let Some(p) = map.remove("prices").filter(|v| !v.is_null()) {
            b = b.prices(p);
        }
        Ok((b, map))
    }

    /// The API root (default: the backend's public URL); any compatible server.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The key itself. Prefer [`api_key_env`](Self::api_key_env), which keeps the
    /// secret out of code and configuration.
    pub fn api_key(mut self, key: impl AsRef<str>) -> Self {
        let key = key.as_ref();
        self.api_key = (!key.trim().is_empty()).then(|| ApiKey::new(key));
        self
    }

    /// The environment variable holding the key (default: the backend's usual
    /// variable, such as `OPENAI_API_KEY`). Named explicitly, it must be set.
    pub fn api_key_env(mut self, var: impl Into<String>) -> Self {
        self.api_key_env = Some(var.into());
        self
    }

    /// The default model (default: the backend's).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Total timeout of one request (default: the backend's); positive and
    /// below [`MAX_TIMEOUT_S`] seconds.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Connect timeout (default 10 s); positive and below [`MAX_TIMEOUT_S`] seconds.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = Some(d);
        self
    }

    /// Largest accepted response body or download (default 64 MiB); at least 1.
    pub fn max_response_bytes(mut self, n: u64) -> Self {
        self.max_response_bytes = Some(n);
        self
    }

    /// An extra header sent with every request (its value never printed).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Price table overrides, as a spec's `prices` table (see [`crate::pricing`]).
    pub fn prices(mut self, prices: Value) -> Self {
        self.prices = Some(prices);
        self
    }

    /// Whether a base URL was set (a backend with a pool refuses one beside it).
    pub(crate) fn has_base_url(&self) -> bool {
        self.base_url.is_some()
    }

    /// Check every value and resolve the key.
    pub fn build(self) -> Result<HttpSettings, ConfigError> {
        let defaults = self.defaults;
        let base = self.base_url.unwrap_or_else(|| defaults.base_url.to_string());
        let base_url =
            Url::parse(&base).map_err(|e| ConfigError::new("base_url", format!("`{base}` is not a URL: {e}")))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(ConfigError::new("base_url", format!("`{base}` must be http or https")));
        }
        let api_key = match self.api_key {
            Some(k) => Some(k),
            None => ApiKey::resolve(None, self.api_key_env.as_deref(), defaults.key_env)?,
        };
        let model = self.model.unwrap_or_else(|| defaults.model.to_string());
        let seconds = |d: Option<Duration>, default: Duration, field: &str| match d {
            None => Ok(default),
            Some(d) => check_seconds(d.as_secs_f64()).map(|_| d).map_err(|e| e.at(field)),
        };
        let timeout = seconds(self.timeout, defaults.timeout, "timeout_s")?;
        let connect_timeout = seconds(self.connect_timeout, DEFAULT_CONNECT_TIMEOUT, "connect_timeout_s")?;
        let max_response_bytes = self.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        if max_response_bytes == 0 {
            return Err(ConfigError::new(
                "max_response_bytes",
                "must be a positive integer, got 0",
            ));
        }
        for (k, v) in &self.headers {
            let field = || format!("headers.{k}");
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| ConfigError::new(field(), "not a header name"))?;
            HeaderValue::from_str(v).map_err(|_| ConfigError::new(field(), "not a valid header value"))?;
        }
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
        Ok(HttpSettings {
            base_url,
            api_key,
            model,
            timeout,
            connect_timeout,
            max_response_bytes,
            headers: self.headers,
            prices: self.prices,
            warnings,
        })
    }
}

/// The setters every HTTP backend's builder shares: the provider id and the
/// [`HttpSettingsBuilder`] values, which the builder keeps in `id` and `http`.
macro_rules! http_setters {
    ($kind:literal) => {
        #[doc = concat!("The provider id, as steps and reports name it (default `", $kind, "`).")]
        pub fn id(mut self, id: impl Into<String>) -> Self {
            self.id = id.into();
            self
        }

        /// The API root (default: the backend's public URL); any compatible server.
        pub fn base_url(mut self, url: impl Into<String>) -> Self {
            self.http = self.http.base_url(url);
            self
        }

        /// The key itself. Prefer [`api_key_env`](Self::api_key_env), which keeps
        /// the secret out of code and configuration; neither ever prints it.
        pub fn api_key(mut self, key: impl AsRef<str>) -> Self {
            self.http = self.http.api_key(key);
            self
        }

        /// The environment variable holding the key (default: the backend's
        /// usual variable). Named explicitly, it must be set when `build` runs.
        pub fn api_key_env(mut self, var: impl Into<String>) -> Self {
            self.http = self.http.api_key_env(var);
            self
        }

        /// The default model (default: the backend's).
        pub fn model(mut self, model: impl Into<String>) -> Self {
            self.http = self.http.model(model);
            self
        }

        /// Total timeout of one request (default: the backend's); positive and
        /// below [`MAX_TIMEOUT_S`](crate::http::MAX_TIMEOUT_S) seconds.
        pub fn timeout(mut self, d: std::time::Duration) -> Self {
            self.http = self.http.timeout(d);
            self
        }

        /// Connect timeout (default 10 s); positive and below
        /// [`MAX_TIMEOUT_S`](crate::http::MAX_TIMEOUT_S) seconds.
        pub fn connect_timeout(mut self, d: std::time::Duration) -> Self {
            self.http = self.http.connect_timeout(d);
            self
        }

        /// Largest accepted response body or download (default 64 MiB); at least 1.
        pub fn max_response_bytes(mut self, n: u64) -> Self {
            self.http = self.http.max_response_bytes(n);
            self
        }

        /// An extra header sent with every request (its value never printed).
        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.http = self.http.header(name, value);
            self
        }

        /// Price table overrides, as a spec's `prices` table (see [`crate::pricing`]).
        pub fn prices(mut self, prices: serde_json::Value) -> Self {
            self.http = self.http.prices(prices);
            self
        }
    };
}
pub(crate) use http_setters;
