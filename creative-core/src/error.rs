//! Errors, classified so that policy can act on them.
//!
//! The class of a [`ProviderError`] drives every resilience decision: whether to
//! retry, how long to wait, whether to fall back, whether the circuit breaker
//! counts it. Messages keep the provider's own words but never a secret: backends
//! build errors from response bodies and status codes, never from request headers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The class of a provider failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The provider asked us to slow down (HTTP 429 and friends); may carry a delay.
    RateLimited,
    /// A failure that may pass: 5xx, connection reset, truncated body.
    Transient,
    /// The call took longer than its timeout.
    Timeout,
    /// The request is wrong (400, 422, a bad parameter): retrying will not help.
    Invalid,
    /// Credentials missing, wrong or not allowed (401, 403).
    Auth,
    /// The provider refused the content (safety system, moderation).
    ContentPolicy,
    /// A budget (money, attempts, deadline) does not allow the call.
    Budget,
    /// The run was cancelled.
    Cancelled,
    /// The provider is not available right now (circuit open, unknown job state).
    Unavailable,
    /// The provider answered something we could not understand (malformed body).
    Protocol,
}

impl ErrorKind {
    /// Whether a retry of the same call may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::Transient
                | ErrorKind::Timeout
                | ErrorKind::Unavailable
                | ErrorKind::Protocol
        )
    }

    /// Whether a failure of this class should count against the provider's health
    /// (circuit breaker, reliability score). The caller's mistakes and our own
    /// decisions do not.
    pub fn counts_against_provider(self) -> bool {
        matches!(
            self,
            ErrorKind::Transient | ErrorKind::Timeout | ErrorKind::Protocol | ErrorKind::Unavailable
        )
    }

    /// Whether trying another provider may help.
    pub fn allows_fallback(self) -> bool {
        !matches!(self, ErrorKind::Cancelled | ErrorKind::Budget)
    }

    /// Snake-case name, as used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Transient => "transient",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Auth => "auth",
            ErrorKind::ContentPolicy => "content_policy",
            ErrorKind::Budget => "budget",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Protocol => "protocol",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed provider call.
///
/// Ask it questions instead of matching strings:
///
/// ```
/// use std::time::Duration;
/// use creative_core::{ErrorKind, ProviderError};
/// let e = ProviderError::rate_limited("openai", "slow down", Some(Duration::from_secs(2)))
///     .with_status(429);
/// assert!(e.is_retryable());
/// assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
/// assert_eq!(e.kind(), ErrorKind::RateLimited);
/// assert_eq!(e.to_string(), "openai: rate_limited (HTTP 429): slow down");
/// ```
#[derive(Clone)]
pub struct ProviderError {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    provider: String,
    message: String,
    status: Option<u16>,
    retry_after: Option<Duration>,
    request_id: Option<String>,
    body: Option<String>,
}

impl ProviderError {
    /// A new error of `kind` from `provider` with a message.
    pub fn new(kind: ErrorKind, provider: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError {
            inner: Box::new(Inner {
                kind,
                provider: provider.into(),
                message: message.into(),
                status: None,
                retry_after: None,
                request_id: None,
                body: None,
            }),
        }
    }

    /// A rate-limit error, with the delay the provider asked for if it said one.
    pub fn rate_limited(
        provider: impl Into<String>,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        let mut e = Self::new(ErrorKind::RateLimited, provider, message);
        e.inner.retry_after = retry_after;
        e
    }

    /// A transient error.
    pub fn transient(provider: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, provider, message)
    }

    /// An invalid-request error.
    pub fn invalid(provider: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, provider, message)
    }

    /// A cancellation.
    pub fn cancelled(provider: impl Into<String>) -> Self {
        Self::new(ErrorKind::Cancelled, provider, "cancelled")
    }

    /// A timeout after `after`.
    pub fn timeout(provider: impl Into<String>, after: Duration) -> Self {
        Self::new(
            ErrorKind::Timeout,
            provider,
            format!("no answer within {} ms", after.as_millis()),
        )
    }

    /// Attach the HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.inner.status = Some(status);
        self
    }

    /// Attach a retry-after delay.
    pub fn with_retry_after(mut self, d: Option<Duration>) -> Self {
        self.inner.retry_after = d;
        self
    }

    /// Attach the provider's request id.
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.inner.request_id = Some(id.into());
        self
    }

    /// Attach (a prefix of) the response body, for diagnosis.
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        let mut b: String = body.into();
        if b.len() > 2048 {
            let mut cut = 2048;
            while !b.is_char_boundary(cut) {
                cut -= 1;
            }
            b.truncate(cut);
        }
        self.inner.body = Some(b);
        self
    }

    /// The class.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The provider id.
    pub fn provider(&self) -> &str {
        &self.inner.provider
    }

    /// The message (the provider's own words where it gave some).
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The HTTP status, if the failure came with one.
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// The delay the provider asked for before retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The provider's request id, for support tickets.
    pub fn request_id(&self) -> Option<&str> {
        self.inner.request_id.as_deref()
    }

    /// The start of the response body, if kept.
    pub fn body(&self) -> Option<&str> {
        self.inner.body.as_deref()
    }

    /// Whether a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        self.inner.kind.is_retryable()
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.inner.provider, self.inner.kind)?;
        if let Some(s) = self.inner.status {
            write!(f, " (HTTP {s})")?;
        }
        write!(f, ": {}", self.inner.message)
    }
}

impl fmt::Debug for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderError")
            .field("kind", &self.inner.kind)
            .field("provider", &self.inner.provider)
            .field("message", &self.inner.message)
            .field("status", &self.inner.status)
            .field("retry_after", &self.inner.retry_after)
            .field("request_id", &self.inner.request_id)
            .finish()
    }
}

impl std::error::Error for ProviderError {}

/// A failed gate check (the gate could not judge; a failing verdict is not an error).
#[derive(Debug, Clone, thiserror::Error)]
#[error("gate `{gate}`: {message}")]
pub struct GateError {
    /// The gate's name.
    pub gate: String,
    /// What went wrong.
    pub message: String,
}

impl GateError {
    /// A new gate error.
    pub fn new(gate: impl Into<String>, message: impl Into<String>) -> Self {
        GateError {
            gate: gate.into(),
            message: message.into(),
        }
    }
}

/// What kind of failure a [`StepError`] is: the question policy asks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StepErrorKind {
    /// Every provider the step could use failed; the last provider error is kept
    /// ([`StepError::provider_error`]).
    Provider,
    /// The outputs did not pass their gates and the policy was to fail.
    GateFailed,
    /// A gate could not judge.
    Gate,
    /// The step was given inputs (or settings) it cannot use.
    InvalidInput,
    /// A template referred to a variable the job does not have, or failed to render.
    Template,
    /// A local operation failed (decode, encode, file).
    Io,
    /// A budget stopped the step before it could finish.
    Budget,
    /// The run was cancelled.
    Cancelled,
    /// The step panicked or failed in an unexpected way; the run goes on.
    Internal,
}

impl StepErrorKind {
    /// Snake-case name, as used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            StepErrorKind::Provider => "provider",
            StepErrorKind::GateFailed => "gate_failed",
            StepErrorKind::Gate => "gate_error",
            StepErrorKind::InvalidInput => "invalid_input",
            StepErrorKind::Template => "template",
            StepErrorKind::Io => "io",
            StepErrorKind::Budget => "budget",
            StepErrorKind::Cancelled => "cancelled",
            StepErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for StepErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed step.
///
/// Opaque, like [`ProviderError`]: ask it what happened instead of matching
/// its shape, so that new kinds of failure do not break callers.
///
/// ```
/// use creative_core::{ProviderError, StepError, StepErrorKind};
/// let e = StepError::from(ProviderError::transient("openai", "reset"));
/// assert_eq!(e.kind(), StepErrorKind::Provider);
/// assert_eq!(e.provider_error().map(|p| p.provider()), Some("openai"));
/// assert_eq!(e.to_string(), "provider call failed: openai: transient: reset");
/// assert!(std::error::Error::source(&e).is_some());
///
/// let io = StepError::from(std::io::Error::new(std::io::ErrorKind::NotFound, "logo.png"));
/// assert!(io.is_io());
/// assert!(std::error::Error::source(&io).unwrap().downcast_ref::<std::io::Error>().is_some());
/// ```
#[derive(Clone)]
pub struct StepError {
    inner: Box<StepInner>,
}

#[derive(Clone)]
struct StepInner {
    kind: StepErrorKind,
    // The gate's name for `GateFailed`; the message is its reasons.
    gate: Option<String>,
    message: String,
    provider: Option<ProviderError>,
    // Shared so that the error stays `Clone` (results are cloned into outcomes
    // and reports) while keeping the underlying error for `source()`.
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StepError {
    /// A new error of `kind` with a message. Prefer the named constructors.
    pub fn new(kind: StepErrorKind, message: impl Into<String>) -> Self {
        StepError {
            inner: Box::new(StepInner {
                kind,
                gate: None,
                message: message.into(),
                provider: None,
                source: None,
            }),
        }
    }

    /// The step was given inputs or settings it cannot use.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(StepErrorKind::InvalidInput, message)
    }

    /// A template failed to parse or render.
    pub fn template(message: impl Into<String>) -> Self {
        Self::new(StepErrorKind::Template, message)
    }

    /// A local operation failed; keep the underlying error with
    /// [`StepError::with_source`] when there is one.
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(StepErrorKind::Io, message)
    }

    /// A budget stopped the step.
    pub fn budget(message: impl Into<String>) -> Self {
        Self::new(StepErrorKind::Budget, message)
    }

    /// The run was cancelled.
    pub fn cancelled() -> Self {
        Self::new(StepErrorKind::Cancelled, "cancelled")
    }

    /// Something unexpected (a panic, a lost task).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StepErrorKind::Internal, message)
    }

    /// The outputs failed gate `gate` for `reasons` and the policy was to fail.
    pub fn gate_failed(gate: impl Into<String>, reasons: impl Into<String>) -> Self {
        let mut e = Self::new(StepErrorKind::GateFailed, reasons);
        e.inner.gate = Some(gate.into());
        e
    }

    /// Keep the error that caused this one, for [`std::error::Error::source`].
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.inner.source = Some(Arc::new(source));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> StepErrorKind {
        self.inner.kind
    }

    /// A short snake-case class name for reports: the provider error's class
    /// for a provider failure, else the kind's name.
    pub fn class(&self) -> &'static str {
        match &self.inner.provider {
            Some(p) => p.kind().as_str(),
            None => self.inner.kind.as_str(),
        }
    }

    /// The message, without the kind's prefix.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The last provider error, for a provider failure.
    pub fn provider_error(&self) -> Option<&ProviderError> {
        self.inner.provider.as_ref()
    }

    /// The gate that failed (for [`StepErrorKind::GateFailed`]) or could not
    /// judge (for [`StepErrorKind::Gate`]).
    pub fn gate(&self) -> Option<&str> {
        self.inner.gate.as_deref()
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.kind == StepErrorKind::Cancelled
    }

    /// Whether a budget (money, attempts, deadline) stopped the step.
    pub fn is_budget(&self) -> bool {
        self.inner.kind == StepErrorKind::Budget
    }

    /// Whether every provider failed.
    pub fn is_provider(&self) -> bool {
        self.inner.kind == StepErrorKind::Provider
    }

    /// Whether a gate failed the outputs or could not judge them.
    pub fn is_gate(&self) -> bool {
        matches!(self.inner.kind, StepErrorKind::GateFailed | StepErrorKind::Gate)
    }

    /// Whether a local operation (decode, encode, file) failed.
    pub fn is_io(&self) -> bool {
        self.inner.kind == StepErrorKind::Io
    }
}

impl From<ProviderError> for StepError {
    fn from(e: ProviderError) -> Self {
        let mut s = Self::new(StepErrorKind::Provider, e.to_string());
        s.inner.provider = Some(e);
        s
    }
}

impl From<GateError> for StepError {
    fn from(e: GateError) -> Self {
        let mut s = Self::new(StepErrorKind::Gate, e.to_string());
        s.inner.gate = Some(e.gate.clone());
        s.with_source(e)
    }
}

impl From<std::io::Error> for StepError {
    fn from(e: std::io::Error) -> Self {
        Self::io(e.to_string()).with_source(e)
    }
}

impl From<crate::template::TemplateError> for StepError {
    fn from(e: crate::template::TemplateError) -> Self {
        Self::template(e.to_string()).with_source(e)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.inner.message;
        match self.inner.kind {
            StepErrorKind::Provider => write!(f, "provider call failed: {m}"),
            StepErrorKind::GateFailed => {
                write!(
                    f,
                    "quality gate `{}` failed: {m}",
                    self.inner.gate.as_deref().unwrap_or_default()
                )
            }
            StepErrorKind::Gate | StepErrorKind::Io => f.write_str(m),
            StepErrorKind::InvalidInput => write!(f, "invalid input: {m}"),
            StepErrorKind::Template => write!(f, "template: {m}"),
            StepErrorKind::Budget => write!(f, "budget exhausted: {m}"),
            StepErrorKind::Cancelled => f.write_str("cancelled"),
            StepErrorKind::Internal => write!(f, "internal: {m}"),
        }
    }
}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("StepError");
        d.field("kind", &self.inner.kind).field("message", &self.inner.message);
        if let Some(g) = &self.inner.gate {
            d.field("gate", g);
        }
        if let Some(p) = &self.inner.provider {
            d.field("provider", p);
        }
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl std::error::Error for StepError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        if let Some(p) = &self.inner.provider {
            return Some(p);
        }
        self.inner
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// A configuration value the library refused: which field, and why.
///
/// Returned by builders and constructors (for example
/// [`ExecutorBuilder::build`](crate::exec::ExecutorBuilder::build)); the field
/// is a path a user can find (`providers.openai.concurrency`).
///
/// ```
/// use creative_core::ConfigError;
/// let e = ConfigError::new("concurrency", "must be at least 1");
/// assert_eq!(e.field(), "concurrency");
/// assert_eq!(e.to_string(), "concurrency: must be at least 1");
/// assert_eq!(e.at("providers.openai").field(), "providers.openai.concurrency");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: String,
    reason: String,
}

impl ConfigError {
    /// The value at `field` is refused for `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error, its field placed under `prefix` (`prefix.field`).
    pub fn at(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            self.field = if self.field.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{}", self.field)
            };
        }
        self
    }

    /// The path of the refused field.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why it was refused (a sentence naming the allowed range or form).
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A range check does not know the field it checks; its caller places it
        // with `at`, and until then the reason stands alone.
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why a pipeline could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// Two steps share a name.
    #[error("duplicate step name `{0}`")]
    DuplicateStep(String),
    /// A step reads from a step that does not exist.
    #[error("step `{step}` takes input from unknown step `{input}`")]
    UnknownInput {
        /// The reading step.
        step: String,
        /// The missing producer.
        input: String,
    },
    /// A step needs inputs and has none wired.
    #[error("step `{step}` needs {expected} input(s) but has {got}")]
    MissingInput {
        /// The step.
        step: String,
        /// How many it needs at least.
        expected: usize,
        /// How many it has.
        got: usize,
    },
    /// The graph has a cycle; the steps on it are named in order.
    #[error("cycle between steps: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A step's output media cannot feed the step that reads it.
    #[error("step `{step}` accepts {accepts} but input `{input}` produces {produces}")]
    MediaMismatch {
        /// The reading step.
        step: String,
        /// The producer.
        input: String,
        /// What the reader accepts.
        accepts: String,
        /// What the producer makes.
        produces: String,
    },
    /// A step reads (by name, in a template) a step that is not upstream of it.
    #[error("step `{step}` reads the output of step `{reads}`, which is not upstream of it: make `{reads}` an input of `{step}` or of one of its ancestors")]
    NotUpstream {
        /// The reading step.
        step: String,
        /// The step it names.
        reads: String,
    },
    /// The pipeline has no steps.
    #[error("pipeline has no steps")]
    Empty,
    /// A step name is empty or has characters unfit for ids and file names.
    #[error("invalid step name `{0}`: use letters, digits, `_` and `-`")]
    InvalidName(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_error_is_small_and_shareable() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<ProviderError>();
        assert_eq!(std::mem::size_of::<ProviderError>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn step_error_is_small_and_shareable() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<StepError>();
        assert_eq!(std::mem::size_of::<StepError>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn step_error_messages_keep_their_shape() {
        assert_eq!(StepError::invalid_input("x").to_string(), "invalid input: x");
        assert_eq!(
            StepError::gate_failed("sharp", "blurry").to_string(),
            "quality gate `sharp` failed: blurry"
        );
        assert_eq!(StepError::budget("no money").to_string(), "budget exhausted: no money");
        assert_eq!(StepError::cancelled().to_string(), "cancelled");
        assert_eq!(
            StepError::from(GateError::new("g", "down")).to_string(),
            "gate `g`: down"
        );
        assert_eq!(StepError::from(GateError::new("g", "down")).gate(), Some("g"));
        let p = StepError::from(ProviderError::invalid("p", "bad"));
        assert_eq!(p.class(), "invalid");
        assert_eq!(StepError::internal("x").class(), "internal");
    }

    #[test]
    fn config_error_prefixes_nest() {
        let e = ConfigError::new("", "missing").at("retry").at("executor");
        assert_eq!(e.field(), "executor.retry");
        assert_eq!(e.reason(), "missing");
    }

    #[test]
    fn classes_drive_retry() {
        assert!(ErrorKind::Transient.is_retryable());
        assert!(!ErrorKind::Invalid.is_retryable());
        assert!(!ErrorKind::Auth.is_retryable());
        assert!(!ErrorKind::ContentPolicy.is_retryable());
        assert!(!ErrorKind::Cancelled.is_retryable());
    }

    #[test]
    fn body_is_truncated_on_a_char_boundary() {
        let e = ProviderError::transient("p", "m").with_body("é".repeat(2000));
        assert!(e.body().unwrap().len() <= 2048);
    }
}
