//! What an adapter hands the transport and gets back: [`HttpRequest`] (with
//! its [`Body`], [`FormPart`]s and [`Auth`]), [`HttpResponse`], [`Download`].

use super::{ApiKey, Url};
use bytes::Bytes;
use creative_core::{ErrorKind, MediaType, ProviderError};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

/// Headers that carry a provider's request id, most common first.
const REQUEST_ID_HEADERS: &[&str] = &[
    "x-request-id",
    "request-id",
    "x-amzn-requestid",
    "x-goog-request-id",
    "cf-ray",
];

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

/// A request as an adapter describes it; the [`Transport`](super::Transport) sends it.
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
    /// carrying the start of the body. `T` may borrow strings from the body.
    pub fn json<'a, T: Deserialize<'a>>(&'a self, provider: &str) -> Result<T, ProviderError> {
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

pub(super) fn request_id(headers: &HeaderMap) -> Option<&str> {
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
