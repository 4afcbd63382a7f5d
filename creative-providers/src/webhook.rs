//! The webhook sink: POSTs JSON to a URL for every delivered asset and once when
//! the campaign ends, with retries.
//!
//! ```toml
//! [[output.sinks]]
//! kind = "webhook"
//! url = "https://hooks.example.com/creative"
//! bearer_env = "HOOK_TOKEN"   # optional: `Authorization: Bearer $HOOK_TOKEN`
//! retries = 3                 # extra attempts on 5xx, 429, timeouts, resets
//! assets = true               # one POST per asset  {"event": "asset", ...}
//! finished = true             # one POST at the end {"event": "campaign_finished", ...}
//! ```
//!
//! Every POST carries an `Idempotency-Key` header that stays the same across
//! its retries (and across a resumed run), so a receiver can drop duplicates.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use creative_core::deliver::{AssetEntry, Manifest, ManifestSummary, Report, Sink, SinkError};
use creative_core::registry::{BuildCtx, Registry};
use creative_core::resilience::Backoff;
use creative_core::{Artifact, CallCtx};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{Auth, HttpRequest, Transport};
use crate::secret::ApiKey;

/// Webhook settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where to POST.
    pub url: String,
    /// A name for reports. Default `webhook`.
    #[serde(default)]
    pub name: Option<String>,
    /// Environment variable holding a bearer token.
    #[serde(default)]
    pub bearer_env: Option<String>,
    /// Extra attempts after a retryable failure. Default 3.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First retry delay in milliseconds (doubles, with jitter). Default 250.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Per-request timeout in seconds. Default 30.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// POST once per delivered asset. Default true.
    #[serde(default = "yes")]
    pub assets: bool,
    /// POST once when the campaign ends. Default true.
    #[serde(default = "yes")]
    pub finished: bool,
    /// Put the whole manifest in the final POST. Default false.
    #[serde(default)]
    pub include_manifest: bool,
}

fn default_retries() -> u32 {
    3
}
fn default_backoff_ms() -> u64 {
    250
}
fn default_timeout_s() -> f64 {
    30.0
}
fn yes() -> bool {
    true
}

/// POSTs JSON about delivered assets to a URL.
#[derive(Debug)]
pub struct WebhookSink {
    name: String,
    url: String,
    transport: Transport,
    retries: u32,
    backoff: Backoff,
    settings: WebhookSettings,
}

impl WebhookSink {
    /// A sink from settings; errors name the bad setting.
    pub fn new(settings: WebhookSettings) -> Result<Self, String> {
        if !(settings.url.starts_with("http://") || settings.url.starts_with("https://")) {
            return Err(format!("url `{}` must start with http:// or https://", settings.url));
        }
        if !(settings.timeout_s.is_finite() && settings.timeout_s > 0.0) {
            return Err("timeout_s must be a positive number".into());
        }
        let auth = match &settings.bearer_env {
            Some(var) => Auth::Bearer(
                ApiKey::from_env(var).ok_or_else(|| format!("bearer_env: environment variable `{var}` is not set"))?,
            ),
            None => Auth::None,
        };
        let base = Duration::from_millis(settings.backoff_ms.max(1));
        let backoff = Backoff::new(base, base.max(Duration::from_secs(10))).map_err(|e| format!("backoff_ms: {e}"))?;
        let transport = Transport::builder("webhook", settings.url.clone())
            .auth(auth)
            .timeout(Duration::from_secs_f64(settings.timeout_s))
            .build()?;
        Ok(WebhookSink {
            name: settings.name.clone().unwrap_or_else(|| "webhook".into()),
            url: settings.url.clone(),
            transport,
            retries: settings.retries,
            backoff,
            settings,
        })
    }

    /// Build from a spec's settings table.
    pub fn from_json(settings: &Value) -> Result<Self, String> {
        let s: WebhookSettings = serde_json::from_value(settings.clone()).map_err(|e| e.to_string())?;
        Self::new(s)
    }

    /// POST `body`, retrying retryable failures; the idempotency key is the same
    /// for every attempt.
    pub async fn post(&self, body: Value, idempotency_key: &str) -> Result<(), SinkError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let req = HttpRequest::post_json(self.url.clone(), body.clone()).header("idempotency-key", idempotency_key);
            match self.transport.send(req, &CallCtx::detached()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_retryable() && attempt <= self.retries => {
                    let wait = self.backoff.delay(attempt).max(e.retry_after().unwrap_or_default());
                    tracing::debug!(sink = %self.name, attempt, error = %e, "webhook failed; retrying");
                    tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
                }
                Err(e) => {
                    return Err(SinkError::new(
                        &self.name,
                        format!("POST {} failed after {attempt} attempt(s): {e}", self.url),
                    ))
                }
            }
        }
    }
}

#[async_trait]
impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, asset: &AssetEntry, _artifact: &Artifact) -> Result<(), SinkError> {
        if !self.settings.assets {
            return Ok(());
        }
        let body = json!({ "event": "asset", "asset": asset });
        let key = format!(
            "asset-{}-{}-{}-{}",
            asset.job,
            asset.step,
            asset.index,
            asset.id.short()
        );
        self.post(body, &key).await
    }

    async fn finish(&self, summary: &ManifestSummary, report: &Report) -> Result<(), SinkError> {
        if !self.settings.finished {
            return Ok(());
        }
        // The asset list (and the manifest, when asked for) are read back from
        // `manifest.json`: the run itself keeps no list of its assets.
        let manifest = match &summary.path {
            Some(p) => {
                let p = p.clone();
                tokio::task::spawn_blocking(move || Manifest::read(&p))
                    .await
                    .map_err(|e| SinkError::new(self.name(), format!("manifest read failed: {e}")))?
                    .map_err(|e| SinkError::new(self.name(), e.to_string()))?
            }
            None => Manifest {
                campaign: summary.campaign.clone(),
                spec_hash: summary.spec_hash.clone(),
                ..Manifest::default()
            },
        };
        let mut body = json!({
            "event": "campaign_finished",
            "campaign": manifest.campaign,
            "spec_hash": manifest.spec_hash,
            "status": report.status,
            "summary": report.summary_line(),
            "jobs": report.jobs,
            "totals": report.totals,
            "assets": manifest.assets.iter().map(|a| json!({"id": a.id, "path": a.path, "job": a.job, "step": a.step})).collect::<Vec<_>>(),
        });
        if self.settings.include_manifest {
            body["manifest"] = serde_json::to_value(&manifest).unwrap_or(Value::Null);
        }
        let key = format!(
            "finished-{}-{}",
            manifest.spec_hash.get(..16).unwrap_or(""),
            manifest.assets.len()
        );
        self.post(body, &key).await
    }
}

/// Register the `webhook` sink kind.
pub fn register(reg: &mut Registry) {
    reg.sink(
        "webhook",
        Arc::new(|settings: &Value, _: &BuildCtx| {
            WebhookSink::from_json(settings).map(|s| Arc::new(s) as Arc<dyn Sink>)
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_the_problem() {
        let e = WebhookSink::from_json(&json!({"url": "ftp://x"})).unwrap_err();
        assert!(e.contains("http://"), "{e}");
        let e = WebhookSink::from_json(&json!({"url": "http://127.0.0.1:9", "retrys": 2})).unwrap_err();
        assert!(e.contains("retrys"), "{e}");
        let e = WebhookSink::from_json(&json!({"url": "http://127.0.0.1:9", "bearer_env": "CREATIVE_TEST_UNSET_VAR"}))
            .unwrap_err();
        assert!(e.contains("CREATIVE_TEST_UNSET_VAR"), "{e}");
    }
}
