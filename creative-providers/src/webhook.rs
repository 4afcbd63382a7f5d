//! The webhook sink: signed POSTs, per the [Standard Webhooks] convention, as
//! each asset is delivered and once when the campaign ends, with retries.
//!
//! ```toml
//! [[output.sinks]]
//! kind = "webhook"
//! url = "https://hooks.example.com/creative"
//! secret_env = "HOOK_SECRET"  # `whsec_<base64>`: sign every POST (HMAC-SHA256)
//! bearer_env = "HOOK_TOKEN"   # optional: `Authorization: Bearer $HOOK_TOKEN`
//! public_base_url = "https://cdn.example.com/summer/"  # optional: the assets' URLs
//! retries = 5                 # extra attempts on 5xx, 429, timeouts, resets
//! backoff_ms = 500            # first retry delay (doubles, with jitter, up to 60 s)
//! deadline_s = 300            # give an event up after this long, retries included
//! assets = true               # one POST per asset:  {"type": "asset.delivered", ...}
//! finished = true             # one POST at the end: {"type": "campaign.finished", ...}
//! ```
//!
//! Every POST carries `webhook-id` (the event's id: the same on every retry
//! and every resume of the run, new for another run; also sent as
//! `Idempotency-Key`), `webhook-timestamp` (Unix seconds when sent) and, with a
//! secret, `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
//! keyed with the secret's decoded bytes. The body is
//! `{"type", "timestamp", "data"}`; an asset's `data` holds its URL (the
//! public base URL joined with its path, else where an object store sink
//! before this one put it), its SHA-256, media type, variables and provenance.
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use creative_core::deliver::{AssetEntry, Delivery, Manifest, ManifestSummary, Receipt, Report, Sink, SinkError};
use creative_core::registry::{BuildCtx, Registry};
use creative_core::resilience::Backoff;
use creative_core::{Artifact, CallCtx, ConfigError};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::http::{field_error, Auth, Body, HttpRequest, Transport};
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
    /// Environment variable holding the signing secret, `whsec_` and the
    /// base64 of 24 to 64 random bytes. Without it, POSTs are not signed.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Environment variable holding a bearer token.
    #[serde(default)]
    pub bearer_env: Option<String>,
    /// The assets' public URLs: this base joined with each asset's path.
    #[serde(default)]
    pub public_base_url: Option<String>,
    /// Extra attempts after a retryable failure, 0 to 100. Default 5.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First retry delay in milliseconds, 1 to 600000 (doubles, with jitter,
    /// up to 60 s; a longer `Retry-After` is honoured). Default 500.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Per-request timeout in seconds, above 0 and at most 600. Default 30.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Give an event up this many seconds after its first attempt, retries
    /// included; above 0 and at most 86400. Default 300.
    #[serde(default = "default_deadline_s")]
    pub deadline_s: f64,
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
    5
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_timeout_s() -> f64 {
    30.0
}
fn default_deadline_s() -> f64 {
    300.0
}
fn yes() -> bool {
    true
}

/// A Standard Webhooks signing secret: the decoded key bytes, never printed.
#[derive(Clone)]
pub struct WebhookSecret(Arc<[u8]>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl WebhookSecret {
    /// Parse `whsec_<base64>` (24 to 64 bytes once decoded). The error never
    /// holds the secret.
    /// The error names no field (the caller knows where the secret came from).
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError::new("", reason);
        let b64 = s
            .trim()
            .strip_prefix("whsec_")
            .ok_or_else(|| bad("the secret must start with `whsec_`".into()))?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad("the secret after `whsec_` is not valid base64".into()))?;
        if !(24..=64).contains(&key.len()) {
            return Err(bad(format!(
                "the secret decodes to {} bytes; Standard Webhooks secrets hold 24 to 64",
                key.len()
            )));
        }
        Ok(WebhookSecret(key.into()))
    }

    /// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`: the value of the
    /// `webhook-signature` header.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        // Any key length is valid for HMAC.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag))
    }
}

/// POSTs signed JSON about delivered assets to a URL.
#[derive(Debug)]
pub struct WebhookSink {
    name: String,
    url: String,
    transport: Transport,
    secret: Option<WebhookSecret>,
    public_base: Option<reqwest::Url>,
    retries: u32,
    backoff: Backoff,
    deadline: Duration,
    settings: WebhookSettings,
}

fn in_range(name: &str, v: f64, max: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 && v <= max {
        Ok(())
    } else {
        Err(ConfigError::new(
            name,
            format!("must be above 0 and at most {max}, not {v}"),
        ))
    }
}

impl WebhookSink {
    /// A sink from settings; the error's field is the bad setting.
    pub fn new(settings: WebhookSettings) -> Result<Self, ConfigError> {
        if !(settings.url.starts_with("http://") || settings.url.starts_with("https://")) {
            return Err(ConfigError::new(
                "url",
                format!("`{}` must start with http:// or https://", settings.url),
            ));
        }
        in_range("timeout_s", settings.timeout_s, 600.0)?;
        in_range("deadline_s", settings.deadline_s, 86_400.0)?;
        if settings.retries > 100 {
            return Err(ConfigError::new(
                "retries",
                format!("must be 0 to 100, not {}", settings.retries),
            ));
        }
        if !(1..=600_000).contains(&settings.backoff_ms) {
            return Err(ConfigError::new(
                "backoff_ms",
                format!("must be 1 to 600000, not {}", settings.backoff_ms),
            ));
        }
        let auth =
            match &settings.bearer_env {
                Some(var) => Auth::Bearer(ApiKey::from_env(var).ok_or_else(|| {
                    ConfigError::new("bearer_env", format!("environment variable `{var}` is not set"))
                })?),
                None => Auth::None,
            };
        let secret = match &settings.secret_env {
            Some(var) => {
                let raw = std::env::var(var)
                    .ok()
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| {
                        ConfigError::new("secret_env", format!("environment variable `{var}` is not set"))
                    })?;
                Some(
                    WebhookSecret::parse(&raw)
                        .map_err(|e| ConfigError::new("secret_env", format!("`{var}`: {}", e.reason())))?,
                )
            }
            None => None,
        };
        let public_base = match &settings.public_base_url {
            Some(u) => {
                let mut url =
                    reqwest::Url::parse(u).map_err(|e| ConfigError::new("public_base_url", format!("`{u}`: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
                    return Err(ConfigError::new(
                        "public_base_url",
                        format!("`{u}` must be an http:// or https:// URL"),
                    ));
                }
                // A base names a folder: `.../summer` and `.../summer/` both
                // put `hero/mug.png` under `summer/`.
                if !url.path().ends_with('/') {
                    let path = format!("{}/", url.path());
                    url.set_path(&path);
                }
                Some(url)
            }
            None => None,
        };
        let base = Duration::from_millis(settings.backoff_ms);
        let backoff = Backoff::new(base, base.max(Duration::from_secs(60)))
            .map_err(|e| ConfigError::new("backoff_ms", e.to_string()))?;
        let transport = Transport::builder("webhook", settings.url.clone())
            .auth(auth)
            .timeout(Duration::from_secs_f64(settings.timeout_s))
            .build()
            .map_err(|e| {
                if e.field() == "base_url" {
                    ConfigError::new("url", e.reason())
                } else {
                    e
                }
            })?;
        Ok(WebhookSink {
            name: settings.name.clone().unwrap_or_else(|| "webhook".into()),
            url: settings.url.clone(),
            transport,
            secret,
            public_base,
            retries: settings.retries,
            backoff,
            deadline: Duration::from_secs_f64(settings.deadline_s),
            settings,
        })
    }

    /// Build from a spec's settings table.
    pub fn from_json(settings: &Value) -> Result<Self, ConfigError> {
        let s: WebhookSettings = serde_json::from_value(settings.clone()).map_err(|e| field_error(&e.to_string()))?;
        Self::new(s)
    }

    /// The public URL of an asset at `path` (relative to the output folder),
    /// when a public base URL is set: each path segment percent-encoded.
    pub fn public_url(&self, path: &str) -> Option<String> {
        let mut url = self.public_base.clone()?;
        {
            let mut segs = url.path_segments_mut().ok()?;
            segs.pop_if_empty();
            segs.extend(path.split('/'));
        }
        Some(url.into())
    }

    /// POST `body` as event `id`, retrying retryable failures until the retries
    /// or the deadline run out. Every attempt carries the same id, a fresh
    /// timestamp and a signature over both and the body.
    pub async fn post(&self, body: Value, id: &str) -> Result<(), SinkError> {
        let body = Bytes::from(serde_json::to_vec(&body).map_err(|e| SinkError::new(&self.name, e.to_string()))?);
        let start = tokio::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let left = self.deadline.saturating_sub(start.elapsed());
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let mut req = HttpRequest::post(self.url.clone())
                .body(Body::Bytes(body.clone(), "application/json".into()))
                .header("webhook-id", id)
                .header("webhook-timestamp", &timestamp.to_string())
                .header("idempotency-key", id);
            if let Some(secret) = &self.secret {
                req = req.header("webhook-signature", &secret.sign(id, timestamp, &body));
            }
            let sent = match tokio::time::timeout(left, self.transport.send(req, &CallCtx::detached())).await {
                Ok(r) => r.map(|_| ()).map_err(|e| {
                    let wait = e
                        .is_retryable()
                        .then(|| self.backoff.delay(attempt).max(e.retry_after().unwrap_or_default()));
                    (e.to_string(), wait)
                }),
                Err(_) => Err((
                    format!("no answer within the {:.0} s deadline", self.deadline.as_secs_f64()),
                    None,
                )),
            };
            let (error, wait) = match sent {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let left = self.deadline.saturating_sub(start.elapsed());
            match wait {
                Some(wait) if attempt <= self.retries && wait < left => {
                    tracing::debug!(sink = %self.name, attempt, error = %error, "webhook failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                _ => {
                    let why = if wait.is_some() && attempt <= self.retries {
                        " (the next retry would pass the deadline)"
                    } else {
                        ""
                    };
                    return Err(SinkError::new(
                        &self.name,
                        format!("POST {} failed after {attempt} attempt(s){why}: {error}", self.url),
                    ));
                }
            }
        }
    }

    /// The `data` of an `asset.delivered` event.
    fn asset_data(&self, delivery: &Delivery, asset: &AssetEntry, artifact: &Artifact) -> Value {
        let url = asset
            .path
            .as_deref()
            .and_then(|p| self.public_url(p))
            .or_else(|| delivery.url().map(String::from));
        json!({
            "run": delivery.run,
            "job": asset.job,
            "step": asset.step,
            "index": asset.index,
            "vars": asset.vars,
            "url": url,
            "path": asset.path,
            "id": asset.id,
            "sha256": hex(&Sha256::digest(artifact.data())),
            "media_type": asset.media,
            "bytes": asset.bytes,
            "flagged": asset.flagged(),
            "meta": asset.meta,
            "provenance": asset.provenance,
            "sources": asset.sources,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Now as RFC 3339 in UTC, to the second (`2026-12-07T11:59:01Z`).
fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    // Days to civil date (H. Hinnant's algorithm), valid for any date after 1970.
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The event id of an asset handed over without a run (a sink used on its
/// own): stable for the asset, so retries and repeats share it.
fn standalone_id(asset: &AssetEntry) -> String {
    let key = format!("{}/{}/{}/{}", asset.job, asset.step, asset.index, asset.id);
    format!("msg_{}", &blake3::hash(key.as_bytes()).to_hex()[..32])
}

#[async_trait]
impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, asset: &AssetEntry, artifact: &Artifact) -> Result<(), SinkError> {
        let delivery = Delivery {
            event: standalone_id(asset),
            ..Delivery::default()
        };
        self.deliver_event(&delivery, asset, artifact).await.map(|_| ())
    }

    async fn deliver_event(
        &self,
        delivery: &Delivery,
        asset: &AssetEntry,
        artifact: &Artifact,
    ) -> Result<Receipt, SinkError> {
        if !self.settings.assets {
            return Ok(Receipt::default());
        }
        let body = json!({
            "type": "asset.delivered",
            "timestamp": now_rfc3339(),
            "data": self.asset_data(delivery, asset, artifact),
        });
        self.post(body, &delivery.event).await?;
        Ok(Receipt::default())
    }

    async fn finish(&self, summary: &ManifestSummary, report: &Report) -> Result<(), SinkError> {
        let key = format!(
            "finished/{}/{}/{}",
            summary.spec_hash, summary.assets, summary.jobs_complete
        );
        let delivery = Delivery {
            event: format!("msg_{}", &blake3::hash(key.as_bytes()).to_hex()[..32]),
            ..Delivery::default()
        };
        self.finish_event(&delivery, summary, report).await
    }

    async fn finish_event(
        &self,
        delivery: &Delivery,
        summary: &ManifestSummary,
        report: &Report,
    ) -> Result<(), SinkError> {
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
        let assets: Vec<Value> = manifest
            .assets
            .iter()
            .map(|a| {
                let url = a.path.as_deref().and_then(|p| self.public_url(p));
                json!({"id": a.id, "path": a.path, "url": url, "job": a.job, "step": a.step, "index": a.index})
            })
            .collect();
        let mut data = json!({
            "run": delivery.run,
            "campaign": manifest.campaign,
            "spec_hash": manifest.spec_hash,
            "status": report.status,
            "summary": report.summary_line(),
            "jobs": report.jobs,
            "totals": report.totals,
            "assets": assets,
        });
        if self.settings.include_manifest {
            data["manifest"] = serde_json::to_value(&manifest).unwrap_or(Value::Null);
        }
        let body = json!({"type": "campaign.finished", "timestamp": now_rfc3339(), "data": data});
        self.post(body, &delivery.event).await
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
        assert!(e.to_string().contains("http://"), "{e}");
        let e = WebhookSink::from_json(&json!({"url": "http://127.0.0.1:9", "retrys": 2})).unwrap_err();
        assert!(e.to_string().contains("retrys"), "{e}");
        let e = WebhookSink::from_json(&json!({"url": "http://127.0.0.1:9", "bearer_env": "CREATIVE_TEST_UNSET_VAR"}))
            .unwrap_err();
        assert!(e.to_string().contains("CREATIVE_TEST_UNSET_VAR"), "{e}");
        for (k, v) in [
            ("retries", json!(101)),
            ("backoff_ms", json!(0)),
            ("deadline_s", json!(0)),
            ("timeout_s", json!(601)),
        ] {
            let e = WebhookSink::from_json(&json!({"url": "http://127.0.0.1:9", k: v})).unwrap_err();
            assert!(e.to_string().contains(k), "{k}: {e}");
        }
        let e =
            WebhookSink::from_json(&json!({"url": "http://127.0.0.1:9", "public_base_url": "ftp://x/"})).unwrap_err();
        assert!(e.to_string().contains("public_base_url"), "{e}");
    }

    #[test]
    fn a_secret_must_be_whsec_base64_of_24_to_64_bytes_and_never_prints() {
        assert!(WebhookSecret::parse("c2VjcmV0")
            .unwrap_err()
            .to_string()
            .contains("whsec_"));
        assert!(WebhookSecret::parse("whsec_!!!")
            .unwrap_err()
            .to_string()
            .contains("base64"));
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=")
            .unwrap_err()
            .to_string()
            .contains("5 bytes"));
        let s = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{s:?}"), "WebhookSecret(***)");
    }

    #[test]
    fn signatures_match_the_standard_webhooks_reference_vector() {
        // The test vector of the Standard Webhooks reference libraries.
        let s = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = s.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1614265330), "2021-02-25T15:02:10Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn public_urls_join_the_base_and_encode_each_segment() {
        let s = WebhookSink::from_json(
            &json!({"url": "http://127.0.0.1:9", "public_base_url": "https://cdn.example.com/summer"}),
        )
        .unwrap();
        assert_eq!(
            s.public_url("hero/mug cup#1.png").unwrap(),
            "https://cdn.example.com/summer/hero/mug%20cup%231.png"
        );
    }
}
