//! Errors, classified so that policy can act on them.
//!
//! The class of a [`ProviderError`] drives every resilience decision: whether to
//! retry, how long to wait, whether to fall back, whether the circuit breaker
//! counts it. Messages keep the provider's own words but never a secret: backends
//! build errors from response bodies and status codes, never from request headers.

use std::fmt;
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

/// A failed step.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// Every provider the step could use failed; the last error is kept.
    #[error("provider call failed: {0}")]
    Provider(#[from] ProviderError),
    /// The outputs did not pass their gates and the policy was to fail.
    #[error("quality gate `{gate}` failed: {reasons}")]
    GateFailed {
        /// The gate that failed last.
        gate: String,
        /// Its reasons, joined.
        reasons: String,
    },
    /// A gate could not judge.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// The step was given inputs it cannot use.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A template referred to a variable the job does not have, or failed to render.
    #[error("template: {0}")]
    Template(String),
    /// A local operation failed (decode, encode, file).
    #[error("{0}")]
    Io(String),
    /// A budget stopped the step before it could finish.
    #[error("budget exhausted: {0}")]
    Budget(String),
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The step panicked or failed in an unexpected way; the run goes on.
    #[error("internal: {0}")]
    Internal(String),
}

impl StepError {
    /// A short snake-case class name for reports.
    pub fn class(&self) -> &'static str {
        match self {
            StepError::Provider(e) => e.kind().as_str(),
            StepError::GateFailed { .. } => "gate_failed",
            StepError::Gate(_) => "gate_error",
            StepError::InvalidInput(_) => "invalid_input",
            StepError::Template(_) => "template",
            StepError::Io(_) => "io",
            StepError::Budget(_) => "budget",
            StepError::Cancelled => "cancelled",
            StepError::Internal(_) => "internal",
        }
    }
}

/// Why a pipeline could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
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
