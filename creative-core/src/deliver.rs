//! What delivery speaks: the [`Sink`] trait and the data a sink is handed (a
//! manifest's entries, its summary, the report).
//!
//! The engine defines these so a sink (a webhook, a DAM, a host's own) depends
//! on the engine alone; the campaign layer (`creative-campaign`) builds the
//! manifest and report from the journal and owns the folder sink.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::artifact::{Artifact, ArtifactId, MediaType, Meta};
use crate::events::Status;
use crate::job::Vars;
use crate::provenance::Provenance;

/// A failed delivery.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("sink `{sink}`: {message}")]
pub struct SinkError {
    /// The sink's name.
    pub sink: String,
    /// What went wrong.
    pub message: String,
}

impl SinkError {
    /// A new error.
    pub fn new(sink: impl Into<String>, message: impl Into<String>) -> Self {
        SinkError {
            sink: sink.into(),
            message: message.into(),
        }
    }
}

/// Somewhere finished assets go: a folder, a webhook, a DAM, a host's own.
///
/// `deliver` is called once per delivered asset (after the directory sink has
/// written it, so `asset.path` is set), for a few assets at once and in no
/// particular order, then `finish` once with the manifest's summary and the report. A failing sink does not fail the run: its errors are listed in the
/// report. When the run is cancelled, a call in progress is dropped at its next
/// await and no further calls are made (files and manifest are still written);
/// a resume delivers the rest, so sinks should be idempotent.
#[async_trait]
pub trait Sink: Send + Sync {
    /// A name for reports.
    fn name(&self) -> &str;

    /// Deliver one asset.
    async fn deliver(&self, asset: &AssetEntry, artifact: &Artifact) -> Result<(), SinkError>;

    /// Called once when every asset has been delivered, with the manifest
    /// counted (`manifest.path` names `manifest.json`, for a sink that wants
    /// every entry) and the report.
    async fn finish(&self, _manifest: &ManifestSummary, _report: &Report) -> Result<(), SinkError> {
        Ok(())
    }

    /// Deliver one asset as an event of a run: what the campaign layer calls.
    /// `delivery` names the run and the event (the same id on every retry and
    /// every resume of this run, so a receiver can drop duplicates) and where
    /// the sinks before this one put the asset. A sink that stores the asset
    /// somewhere reachable says where in its [`Receipt`]; the campaign records
    /// the receipt, so a resumed run skips the sinks that already acknowledged
    /// the asset. By default: [`deliver`](Self::deliver), with no URL.
    async fn deliver_event(
        &self,
        _delivery: &Delivery,
        asset: &AssetEntry,
        artifact: &Artifact,
    ) -> Result<Receipt, SinkError> {
        self.deliver(asset, artifact).await.map(|()| Receipt::default())
    }

    /// [`finish`](Self::finish) as an event of a run (its id changes when a
    /// resume delivers more). By default: [`finish`](Self::finish).
    async fn finish_event(
        &self,
        _delivery: &Delivery,
        manifest: &ManifestSummary,
        report: &Report,
    ) -> Result<(), SinkError> {
        self.finish(manifest, report).await
    }
}

/// The run and event a sink is handed an asset (or the end of a run) for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// The run's id: new for every fresh run of a spec, kept by its resumes.
    pub run: String,
    /// The event's id: unique per run and asset (or per run and end), the same
    /// across retries and resumes.
    pub event: String,
    /// Where the sinks before this one put the asset: `(sink, url)`, in the
    /// order the spec lists the sinks.
    pub urls: Vec<(String, String)>,
}

impl Delivery {
    /// The first URL an earlier sink gave the asset, if any.
    pub fn url(&self) -> Option<&str> {
        self.urls.first().map(|(_, u)| u.as_str())
    }
}

/// What a sink reports back for a delivered asset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Where the asset can now be fetched (an object's URL), when the sink
    /// stores it somewhere reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A delivered asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetEntry {
    /// The job's key.
    pub job: String,
    /// The job's variables.
    pub vars: Vars,
    /// The step that made it.
    pub step: String,
    /// Its position among the step's outputs.
    pub index: usize,
    /// Content hash (BLAKE3).
    pub id: ArtifactId,
    /// Media type.
    pub media: MediaType,
    /// Size in bytes.
    pub bytes: u64,
    /// Where the directory sink wrote it, relative to the output folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Metadata.
    #[serde(default)]
    pub meta: Meta,
    /// When the step that made it finished (UTC, RFC 3339), as its journal
    /// record says: a resume reads it back rather than restamping it. `None`
    /// for a record written before steps were stamped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Provenance, as recorded when the step ran: model, prompt, params and
    /// seed, and that run's `latency_ms`, `attempt` and `cached` (which differ
    /// from run to run, so compare manifests of different runs without them).
    pub provenance: Provenance,
    /// The artifacts it was made from, within its job, each with its provenance:
    /// a rendition's generation, with its prompt, model, params and seed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceEntry>,
}

/// An artifact an asset was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceEntry {
    /// Content hash.
    pub id: ArtifactId,
    /// Media type.
    pub media: MediaType,
    /// Provenance.
    pub provenance: Provenance,
}

/// A job of the campaign and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEntry {
    /// The job's key.
    pub key: String,
    /// Its variables.
    pub vars: Vars,
    /// Whether every step finished.
    pub complete: bool,
    /// Steps finished.
    pub steps_done: Vec<String>,
}

/// What a campaign delivered. Written as `manifest.json`.
///
/// Built from journal records in job and step order. Each asset carries what
/// was recorded when its step ran (latency, attempt, whether the cache served
/// it, when the step finished), so a resume does not change an asset's entry;
/// only the run's own fields ([`Manifest::started_at`],
/// [`Manifest::finished_at`]) and those recorded values differ between a
/// resumed run and an uninterrupted one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The campaign's name.
    pub campaign: String,
    /// BLAKE3 of the spec's canonical JSON.
    pub spec_hash: String,
    /// The version of the library that wrote it (empty in a manifest written
    /// before it was recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub library_version: String,
    /// When the run (or merge) that wrote it started (UTC, RFC 3339). A resumed
    /// run gives its own start; the assets keep their steps' times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the run (or merge) that wrote it finished delivering (UTC, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Every job.
    pub jobs: Vec<JobEntry>,
    /// Every delivered asset.
    pub assets: Vec<AssetEntry>,
}

impl AssetEntry {
    /// Whether the asset is flagged for review: a gate with the `flag` policy
    /// failed it, or one of the artifacts it was made from (a rendition of a
    /// flagged generation is flagged too). The report's count and the contact
    /// sheet both ask this.
    pub fn flagged(&self) -> bool {
        self.provenance.flagged || self.sources.iter().any(|s| s.provenance.flagged)
    }

    /// Variables for file-name templates: the job's, plus `step`, `index`, `ext`,
    /// `id` (short hash) and `job` (key).
    pub fn name_vars(&self) -> Vars {
        let mut v = self.vars.clone();
        v.insert("step".into(), self.step.clone().into());
        v.insert("index".into(), self.index.into());
        v.insert("ext".into(), self.media.extension().into());
        v.insert("id".into(), self.id.short().into());
        v.insert("job".into(), self.job.clone().into());
        v
    }
}

/// A written manifest, counted: what a finished campaign returns instead of
/// holding every entry (read the entries with [`Manifest::read`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSummary {
    /// The campaign's name.
    pub campaign: String,
    /// BLAKE3 of the spec's canonical JSON.
    pub spec_hash: String,
    /// Jobs listed.
    pub jobs: u64,
    /// Jobs whose every step finished.
    pub jobs_complete: u64,
    /// Assets listed.
    pub assets: u64,
    /// Where `manifest.json` was written, when it was (read its entries with
    /// [`Manifest::read`]).
    #[serde(skip)]
    pub path: Option<std::path::PathBuf>,
}

impl ManifestSummary {
    /// Whether every job finished.
    pub fn complete(&self) -> bool {
        self.jobs_complete == self.jobs
    }
}

/// One provider and model, or one member of a router and its model.
///
/// Rows are keyed by the model the provider actually used: the step's `model`,
/// else the provider's default for the task ([`crate::Provider::model`]), so a
/// step that names no model has its attempts, cost and accepted assets in one
/// row. A router has its own row (the engine's calls to it) and a row per
/// member and model (the router's calls to that member, each one a call its
/// server saw), marked by `router`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderRow {
    /// Provider id (on a member row, the member's).
    pub provider: String,
    /// Set on a member row: the router whose calls to the member it counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
    /// Model (`-` for a provider without models, and on a router's own row
    /// when the step names none: its members' rows name theirs).
    pub model: String,
    /// Calls made (retries included, cache hits excluded).
    pub attempts: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Failed calls by error class (`rate_limited`, `timeout`...).
    pub failures: BTreeMap<String, u64>,
    /// Gate checks on its outputs.
    pub gate_checks: u64,
    /// Gate checks passed.
    pub gate_passes: u64,
    /// `gate_passes / gate_checks`, when any.
    pub gate_pass_rate: Option<f64>,
    /// Median call latency.
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile call latency.
    pub latency_p95_ms: Option<f64>,
    /// Money spent.
    pub cost_usd: f64,
    /// Assets kept (passed their gates, or flagged and kept).
    pub accepted: u64,
    /// `cost_usd / accepted`, when any.
    pub cost_per_accepted_usd: Option<f64>,
    /// Generations served from the cache.
    pub cache_hits: u64,
    /// Money the cache saved.
    pub saved_usd: f64,
    /// On a member row: its calls by why the router chose it (`exploited`,
    /// `explored`, `waited`, `spilled`, `fallback`; see
    /// [`crate::RouteReason`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routed: BTreeMap<String, u64>,
    /// Seconds of audio among its accepted assets: the sum of each one's
    /// `Meta::duration_s` (an asset whose Meta has none counts nothing).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub audio_s: f64,
    /// Seconds of video among its accepted assets, likewise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub video_s: f64,
    /// `cost_usd / (audio_s + video_s)`, when it made any audio or video: what
    /// a kept second cost, rejected attempts included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_second_usd: Option<f64>,
}

/// Whether a figure is zero, so a report of stills only does not list media seconds.
fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// One gate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateRow {
    /// Gate name.
    pub gate: String,
    /// Checks.
    pub checks: u64,
    /// Passes.
    pub passes: u64,
    /// `passes / checks`.
    pub pass_rate: Option<f64>,
    /// Failure reasons, counted.
    pub reasons: BTreeMap<String, u64>,
}

/// A job that did not finish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRow {
    /// Job key.
    pub job: String,
    /// Job variables.
    pub vars: crate::job::Vars,
    /// The step that failed.
    pub step: String,
    /// Error class.
    pub class: String,
    /// The error.
    pub error: String,
    /// The gate, when a gate failed the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
}

/// Failed jobs grouped by error class and, for gate failures, gate: messages
/// that differ only in numbers (sizes, scores, retry times) are one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureGroup {
    /// Error class (`gate_failed`, `rate_limited`, `timeout`...).
    pub class: String,
    /// The gate, for gate failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// Jobs that failed so.
    pub count: u64,
    /// One of their messages (the first job's, in job key order).
    pub sample: String,
}

impl FailureGroup {
    /// Group failed jobs by class and gate: sorted by count (most first), then
    /// class and gate, each with the message of its first job by key.
    pub fn group(failures: &[FailureRow]) -> Vec<FailureGroup> {
        let mut groups: BTreeMap<(&str, Option<&str>), (u64, &FailureRow)> = BTreeMap::new();
        for f in failures {
            let g = groups.entry((&f.class, f.gate.as_deref())).or_insert((0, f));
            g.0 += 1;
            if f.job < g.1.job {
                g.1 = f;
            }
        }
        let mut out: Vec<FailureGroup> = groups
            .into_iter()
            .map(|((class, gate), (count, first))| FailureGroup {
                class: class.to_string(),
                gate: gate.map(String::from),
                count,
                sample: first.error.clone(),
            })
            .collect();
        // Stable: equal counts keep class and gate order.
        out.sort_by_key(|g| std::cmp::Reverse(g.count));
        out
    }
}

/// Jobs by how they ended (this session; steps restored from the journal count
/// as done).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobCounts {
    /// All jobs.
    pub total: u64,
    /// Every step done.
    pub succeeded: u64,
    /// A step failed.
    pub failed: u64,
    /// Stopped by cancellation.
    pub cancelled: u64,
    /// Stopped by a budget.
    pub budget_exhausted: u64,
    /// Steps restored from the journal instead of run.
    pub steps_resumed: u64,
    /// Steps the journal recorded that ran again because an edit changed their
    /// definition or inputs.
    #[serde(default)]
    pub steps_changed: u64,
}

impl JobCounts {
    /// How the jobs ended, in words: `3 ok, 1 failed`, then the jobs stopped by
    /// the budget, cancelled, or never started, when there are any.
    pub fn outcomes(&self) -> String {
        let mut s = format!("{} ok, {} failed", self.succeeded, self.failed);
        if self.budget_exhausted > 0 {
            let _ = write!(s, ", {} stopped by the budget", self.budget_exhausted);
        }
        if self.cancelled > 0 {
            let _ = write!(s, ", {} cancelled", self.cancelled);
        }
        let ended = self.succeeded + self.failed + self.budget_exhausted + self.cancelled;
        if self.total > ended {
            let _ = write!(s, ", {} not run", self.total - ended);
        }
        s
    }
}

/// Totals over the whole campaign (every session since the output folder was
/// started fresh).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Provider calls.
    pub attempts: u64,
    /// Failed provider calls.
    pub failed_attempts: u64,
    /// Retries.
    pub retries: u64,
    /// Moves to a next provider.
    pub fallbacks: u64,
    /// Regenerations after a gate failure.
    pub regenerations: u64,
    /// Gate checks.
    pub gate_checks: u64,
    /// Failed gate checks.
    pub gate_failures: u64,
    /// Assets delivered.
    pub assets: u64,
    /// Delivered assets flagged for review.
    pub flagged: u64,
    /// Cache hits.
    pub cache_hits: u64,
    /// Money saved by the cache.
    pub saved_usd: f64,
    /// Money spent.
    pub cost_usd: f64,
    /// `cost_usd / assets`, when any.
    pub cost_per_asset_usd: Option<f64>,
    /// Seconds of audio generated and accepted (each asset counted once per job).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub audio_s: f64,
    /// Seconds of video generated and accepted, likewise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub video_s: f64,
    /// What the audio cost: each provider row's cost, shared between its audio
    /// and video by their seconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub audio_cost_usd: f64,
    /// What the video cost, likewise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub video_cost_usd: f64,
}

impl Totals {
    /// ` | video 18.0 s $0.9000, audio 6.0 s $0.0018`, or nothing when no audio
    /// or video was generated.
    fn media_part(&self) -> String {
        let mut parts = Vec::new();
        if self.video_s > 0.0 {
            parts.push(format!("video {:.1} s ${:.4}", self.video_s, self.video_cost_usd));
        }
        if self.audio_s > 0.0 {
            parts.push(format!("audio {:.1} s ${:.4}", self.audio_s, self.audio_cost_usd));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" | {}", parts.join(", "))
        }
    }
}

/// What a campaign did and cost. Written as `report.json`; [`Report::table`]
/// renders it for a terminal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Campaign name.
    pub campaign: String,
    /// How this session ended.
    pub status: Option<Status>,
    /// Wall time of this session.
    pub elapsed_ms: f64,
    /// Sessions that worked on this output folder (1 + resumes).
    pub sessions: u64,
    /// Jobs.
    pub jobs: JobCounts,
    /// Totals.
    pub totals: Totals,
    /// Per provider and model.
    pub providers: Vec<ProviderRow>,
    /// Per gate.
    pub gates: Vec<GateRow>,
    /// Jobs that did not finish, with why.
    pub failures: Vec<FailureRow>,
    /// The failures grouped by class and gate, counted, with a sample message.
    #[serde(default)]
    pub failure_groups: Vec<FailureGroup>,
    /// Sinks that failed.
    pub delivery_errors: Vec<String>,
    /// Providers whose failures a fallback covered this session (the run is
    /// then `degraded` when every job succeeded): which, how often, served by
    /// whom, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub degraded: Vec<crate::exec::Degradation>,
    /// The dry run's estimate (first attempt of every generation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_cost_usd: Option<f64>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "-".into())
}

impl Report {
    /// One line: jobs, assets, attempts, gate failures, cost, time.
    pub fn summary_line(&self) -> String {
        let t = &self.totals;
        let status = self
            .status
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| "-".into());
        format!(
            "{status}: jobs {} ({}{}) | assets {} ({} flagged) | attempts {} ({} failed, {} retries) | gate failures {}/{} | cost ${:.4}{} | cache {} hits, ${:.4} saved | {:.1} s",
            self.jobs.total,
            self.jobs.outcomes(),
            if self.jobs.steps_resumed + self.jobs.steps_changed > 0 {
                format!(
                    ", {} steps kept, {} changed",
                    self.jobs.steps_resumed, self.jobs.steps_changed
                )
            } else {
                String::new()
            },
            t.assets,
            t.flagged,
            t.attempts,
            t.failed_attempts,
            t.retries,
            t.gate_failures,
            t.gate_checks,
            t.cost_usd,
            t.media_part(),
            t.cache_hits,
            t.saved_usd,
            self.elapsed_ms / 1e3
        )
    }

    /// A plain-text table per provider and model, then per gate.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<28} {:>8} {:>6} {:>6} {:>7} {:>8} {:>8} {:>10} {:>8} {:>10} {:>6}",
            "provider/model",
            "attempts",
            "ok",
            "fail",
            "gate%",
            "p50 ms",
            "p95 ms",
            "cost $",
            "accepted",
            "$/accepted",
            "cache"
        );
        for r in &self.providers {
            let name = match &r.router {
                Some(router) => format!("{router}:{}/{}", r.provider, r.model),
                None => format!("{}/{}", r.provider, r.model),
            };
            let _ = writeln!(
                s,
                "{:<28} {:>8} {:>6} {:>6} {:>7} {:>8} {:>8} {:>10.4} {:>8} {:>10} {:>6}",
                name,
                r.attempts,
                r.successes,
                r.attempts - r.successes,
                opt(r.gate_pass_rate.map(|x| x * 100.0), 1),
                opt(r.latency_p50_ms, 0),
                opt(r.latency_p95_ms, 0),
                r.cost_usd,
                r.accepted,
                opt(r.cost_per_accepted_usd, 4),
                r.cache_hits
            );
            if !r.failures.is_empty() {
                let f: Vec<String> = r.failures.iter().map(|(k, n)| format!("{k} {n}")).collect();
                let _ = writeln!(s, "  failures: {}", f.join(", "));
            }
            if !r.routed.is_empty() {
                let f: Vec<String> = r.routed.iter().map(|(k, n)| format!("{k} {n}")).collect();
                let _ = writeln!(s, "  routed: {}", f.join(", "));
            }
            if r.audio_s > 0.0 || r.video_s > 0.0 {
                let _ = writeln!(
                    s,
                    "  media: video {:.1} s, audio {:.1} s, ${}/s",
                    r.video_s,
                    r.audio_s,
                    opt(r.cost_per_second_usd, 4)
                );
            }
        }
        if !self.gates.is_empty() {
            let _ = writeln!(
                s,
                "\n{:<28} {:>8} {:>8} {:>7}  top failure reasons",
                "gate", "checks", "passed", "pass%"
            );
            for g in &self.gates {
                let mut reasons: Vec<(&String, &u64)> = g.reasons.iter().collect();
                reasons.sort_by(|a, b| b.1.cmp(a.1));
                let top: Vec<String> = reasons.iter().take(3).map(|(r, n)| format!("{r} ({n})")).collect();
                let _ = writeln!(
                    s,
                    "{:<28} {:>8} {:>8} {:>7}  {}",
                    g.gate,
                    g.checks,
                    g.passes,
                    opt(g.pass_rate.map(|x| x * 100.0), 1),
                    top.join("; ")
                );
            }
        }
        if !self.failure_groups.is_empty() {
            let _ = writeln!(s, "\nfailure reasons:");
            for g in &self.failure_groups {
                let what = match &g.gate {
                    Some(gate) => format!("{} ({gate})", g.class),
                    None => g.class.clone(),
                };
                let _ = writeln!(s, "  {what} x{}: e.g. {}", g.count, g.sample);
            }
        }
        if !self.failures.is_empty() {
            let _ = writeln!(s, "\nfailed jobs:");
            for f in self.failures.iter().take(20) {
                let _ = writeln!(s, "  {} [{}] {}: {}", f.job, f.step, f.class, f.error);
            }
            if self.failures.len() > 20 {
                let _ = writeln!(s, "  ... and {} more (report.json)", self.failures.len() - 20);
            }
        }
        for e in &self.delivery_errors {
            let _ = writeln!(s, "delivery error: {e}");
        }
        s
    }
}

impl Manifest {
    /// Read a `manifest.json`.
    pub fn read(path: &std::path::Path) -> Result<Manifest, crate::store::StoreError> {
        let f =
            std::fs::File::open(path).map_err(|e| crate::store::StoreError(format!("open {}: {e}", path.display())))?;
        serde_json::from_reader(std::io::BufReader::new(f))
            .map_err(|e| crate::store::StoreError(format!("read {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_failures_differing_only_in_numbers_are_one_group_with_a_count_and_a_sample() {
        let mut failures: Vec<FailureRow> = (0..30)
            .map(|i| FailureRow {
                job: format!("job-{i:02}"),
                vars: Vars::default(),
                step: "hero".into(),
                class: "gate_failed".into(),
                error: format!("gate `format` failed: width {} < 1024", 500 + i * 7),
                gate: Some("format".into()),
            })
            .collect();
        failures.push(FailureRow {
            job: "job-99".into(),
            vars: Vars::default(),
            step: "hero".into(),
            class: "rate_limited".into(),
            error: "429, retry after 12 s".into(),
            gate: None,
        });
        // Completion order does not matter.
        failures.reverse();
        let groups = FailureGroup::group(&failures);
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(
            (groups[0].class.as_str(), groups[0].gate.as_deref(), groups[0].count),
            ("gate_failed", Some("format"), 30)
        );
        assert_eq!(
            groups[0].sample, "gate `format` failed: width 500 < 1024",
            "the first job's"
        );
        assert_eq!((groups[1].class.as_str(), groups[1].count), ("rate_limited", 1));
        let report = Report {
            failures,
            failure_groups: groups,
            ..Report::default()
        };
        let table = report.table();
        assert!(
            table.contains("gate_failed (format) x30: e.g. gate `format` failed: width 500 < 1024"),
            "{table}"
        );
    }

    #[test]
    fn a_budget_stop_that_delivered_nothing_says_its_jobs_were_stopped_by_the_budget() {
        let mut report = Report {
            status: Some(Status::BudgetExhausted),
            jobs: JobCounts {
                total: 24,
                budget_exhausted: 24,
                ..JobCounts::default()
            },
            ..Report::default()
        };
        let line = report.summary_line();
        assert!(
            line.starts_with("budget_exhausted: jobs 24 (0 ok, 0 failed, 24 stopped by the budget) |"),
            "{line}"
        );
        report.jobs = JobCounts {
            total: 10,
            succeeded: 4,
            failed: 1,
            cancelled: 3,
            budget_exhausted: 2,
            ..JobCounts::default()
        };
        let line = report.summary_line();
        assert!(
            line.contains("jobs 10 (4 ok, 1 failed, 2 stopped by the budget, 3 cancelled) |"),
            "{line}"
        );
    }
}
