//! The one pooled client and the [`Transport`] that sends through it:
//! timeouts, size limits, cancellation, auth only to the base origin, redirects
//! by hand, downloads, and failures mapped once.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::errors::classify_status;
use super::messages::request_id;
use super::{
    body_retry_delay, decode_base64, looks_like_content_policy, parse_error_body, retry_after, ApiKey, Auth, AuthMode,
    Body, Download, ErrorInfo, ErrorRefiner, FormPart, HttpRequest, HttpResponse, PartValue, Url,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT,
};
use bytes::{Bytes, BytesMut};
use creative_core::{CallCtx, ConfigError, ErrorKind, ProviderError};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How many redirects a GET follows.
const MAX_REDIRECTS: usize = 5;

// The one place a client is built (clippy.toml forbids it elsewhere).
#[allow(clippy::disallowed_methods)]
fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        // No cap on idle connections per host: the pool never holds more than
        // were open at once (the run's concurrency), and a cap below it closed
        // the surplus after each wave only to open them again (measured: 7% of
        // a 10,000-job run's CPU went to new connections at concurrency 256).
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        // Redirects are followed by hand in `Transport::send`, so that an API key is
        // never carried to another origin.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("creative/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::new("", format!("cannot build the HTTP client: {e}")))
}

/// The process-wide pooled client (connect timeout [`DEFAULT_CONNECT_TIMEOUT`]).
///
/// Every transport with the default connect timeout shares it, so connections to
/// a provider are reused across providers, steps and runs.
pub fn shared_client() -> Result<reqwest::Client, ConfigError> {
    static CLIENT: OnceLock<Result<reqwest::Client, ConfigError>> = OnceLock::new();
    CLIENT.get_or_init(|| build_client(DEFAULT_CONNECT_TIMEOUT)).clone()
}

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

    /// Build it; the error names the first refused setting (`base_url`,
    /// `headers.<name>`, `api_key`, `max_response_bytes`), never a secret.
    pub fn build(self) -> Result<Transport, ConfigError> {
        let base = Url::parse(&self.base_url)
            .map_err(|e| ConfigError::new("base_url", format!("`{}` is not a URL: {e}", self.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(ConfigError::new(
                "base_url",
                format!("`{}` must be an http(s) URL with a host", self.base_url),
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
                        .map_err(|_| ConfigError::new("api_key", format!("auth header `{h}` is not a header name")))?,
                    k.expose().to_string(),
                )),
                Some(k.clone()),
            ),
        };
        let auth = match auth {
            Some((name, value)) => {
                // The error never includes the value: it is the secret.
                let mut v = HeaderValue::from_str(&value)
                    .map_err(|_| ConfigError::new("api_key", "the key has characters not allowed in an HTTP header"))?;
                v.set_sensitive(true);
                Some((name, v))
            }
            None => None,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            let field = || format!("headers.{k}");
            let name =
                HeaderName::from_bytes(k.as_bytes()).map_err(|_| ConfigError::new(field(), "not a header name"))?;
            let mut value =
                HeaderValue::from_str(v).map_err(|_| ConfigError::new(field(), "not a valid header value"))?;
            // Extra headers may carry organisation ids or other tokens: keep them out of Debug.
            value.set_sensitive(true);
            headers.append(name, value);
        }
        if self.max_response_bytes == 0 {
            return Err(ConfigError::new("max_response_bytes", "must be positive"));
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
