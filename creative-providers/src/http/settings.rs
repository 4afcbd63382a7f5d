//! Settings every HTTP backend shares ([`HttpSettings::parse`]), and the
//! reading of a backend's own settings from what is left.

use std::time::Duration;

use super::{ApiKey, Auth, Transport, TransportBuilder, Url, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES};
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
