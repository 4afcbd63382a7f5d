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
//! - the race of every request against [`CallCtx::cancel`](creative_core::CallCtx::cancel);
//! - one mapping of failures to [`ErrorKind`](creative_core::ErrorKind) (see [`Transport::error_from_response`]):
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
//! One concern per file, everything re-exported here: `settings` (the shared
//! settings), `messages` (requests, responses, auth, form parts), `errors`
//! (status classes, error bodies, `Retry-After`), `transport` (the client and
//! the sending), `polling` (waiting on a remote job, and the guard that takes
//! it back) and `wire` (adapters' helpers for the wire format).
//!
//! ```no_run
//! use creative_core::CallCtx;
//! use creative_providers::http::{Auth, HttpRequest, Transport};
//! use creative_providers::secret::ApiKey;
//! # async fn f() -> Result<(), creative_core::ProviderError> {
//! let t = Transport::builder("openai", "https://api.openai.com/v1")
//!     .auth(Auth::Bearer(ApiKey::new("sk-...")))
//!     .build()
//!     .map_err(|e| creative_core::ProviderError::invalid("openai", e.to_string()))?;
//! let body = serde_json::json!({"model": "gpt-4o-mini", "messages": []});
//! let resp = t.send(HttpRequest::post_json("chat/completions", body), &CallCtx::detached()).await?;
//! let v: serde_json::Value = resp.json(t.provider())?;
//! # let _ = v; Ok(()) }
//! ```

mod errors;
mod messages;
mod polling;
mod settings;
#[cfg(test)]
mod tests;
mod transport;
mod wire;

use std::time::Duration;

pub use reqwest::Url;

pub use crate::secret::ApiKey;
pub use errors::*;
pub use messages::*;
pub use polling::*;
pub use settings::*;
pub use transport::*;
pub use wire::*;

/// Default total timeout of one request: 120 s (image models are slow).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Default connect timeout: 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default response size limit: 64 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
