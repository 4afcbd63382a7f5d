//! Failures as [`ErrorKind`]s: the status classes, the provider's message
//! from the usual error body shapes, `Retry-After` and its cousins, and the
//! hook ([`ErrorRefiner`]) a backend refines them with.

use std::time::{Duration, SystemTime};

use creative_core::ErrorKind;
use reqwest::header::HeaderMap;
use serde_json::Value;

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

pub(super) fn classify_status(status: u16) -> ErrorKind {
    match status {
        429 => ErrorKind::RateLimited,
        401 | 402 | 403 | 407 => ErrorKind::Auth,
        408 => ErrorKind::Timeout,
        501 | 505 => ErrorKind::Invalid,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Invalid,
    }
}
