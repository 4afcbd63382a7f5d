//! The report: per provider and model, what was tried, what passed, what it
//! cost; as JSON and as a terminal table.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::events::{Event, EventKind, Status};
use crate::exec::{RunOutcome, StepState};
use crate::store::JournalRecord;

/// One provider and model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderRow {
    /// Provider id.
    pub provider: String,
    /// Model (`-` when the provider's default was used).
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
    /// Sinks that failed.
    pub delivery_errors: Vec<String>,
    /// The dry run's estimate (first attempt of every generation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_cost_usd: Option<f64>,
}

#[derive(Default)]
struct Acc {
    row: ProviderRow,
    latencies: Vec<f64>,
}

/// Builds a [`Report`] by streaming: feed it the run's events (every
/// session's), its journal records and its delivered assets one at a time, in
/// any amount; it keeps only the per-provider, per-model and per-gate rows, and
/// which provider is serving each job still in progress.
#[derive(Default)]
pub struct ReportBuilder {
    /// Provider and model serving each step of each job not yet finished.
    who: HashMap<String, HashMap<String, (String, String)>>,
    accepted: HashMap<(String, String), u64>,
    rows: BTreeMap<(String, String), Acc>,
    gates: BTreeMap<String, GateRow>,
    totals: Totals,
    sessions: u64,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn acc<'a>(rows: &'a mut BTreeMap<(String, String), Acc>, p: &str, m: &str) -> &'a mut Acc {
    rows.entry((p.to_string(), m.to_string())).or_insert_with(|| Acc {
        row: ProviderRow {
            provider: p.to_string(),
            model: m.to_string(),
            ..ProviderRow::default()
        },
        latencies: Vec::new(),
    })
}

impl ReportBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        ReportBuilder::default()
    }

    fn serving(&mut self, job: &str, step: &str, provider: &str, model: String) {
        self.who
            .entry(job.to_string())
            .or_default()
            .insert(step.to_string(), (provider.to_string(), model));
    }

    /// Feed one event.
    pub fn observe(&mut self, e: &Event) {
        match &e.kind {
            EventKind::RunStarted { .. } => self.sessions += 1,
            EventKind::Attempt {
                job,
                step,
                provider,
                model,
                ..
            } => {
                let m = model.clone().unwrap_or_else(|| "-".into());
                self.serving(job, step, provider, m);
            }
            EventKind::AttemptFinished {
                provider,
                model,
                latency_ms,
                cost_usd,
                error_kind,
                ..
            } => {
                let m = model.clone().unwrap_or_else(|| "-".into());
                let a = acc(&mut self.rows, provider, &m);
                a.row.attempts += 1;
                a.row.cost_usd += cost_usd;
                a.latencies.push(*latency_ms);
                self.totals.attempts += 1;
                self.totals.cost_usd += cost_usd;
                match error_kind {
                    None => a.row.successes += 1,
                    Some(k) => {
                        *a.row.failures.entry(k.clone()).or_default() += 1;
                        self.totals.failed_attempts += 1;
                    }
                }
            }
            EventKind::CacheHit {
                job,
                step,
                provider,
                model,
                saved_usd,
            } => {
                let m = model.clone().unwrap_or_else(|| "-".into());
                let a = acc(&mut self.rows, provider, &m);
                a.row.cache_hits += 1;
                a.row.saved_usd += saved_usd;
                self.totals.cache_hits += 1;
                self.totals.saved_usd += saved_usd;
                self.serving(job, step, provider, m);
            }
            EventKind::GateVerdict {
                job,
                step,
                gate,
                passed,
                reasons,
                ..
            } => {
                self.totals.gate_checks += 1;
                let g = self.gates.entry(gate.clone()).or_insert_with(|| GateRow {
                    gate: gate.clone(),
                    ..GateRow::default()
                });
                g.checks += 1;
                if *passed {
                    g.passes += 1;
                } else {
                    self.totals.gate_failures += 1;
                    for r in reasons {
                        *g.reasons.entry(r.clone()).or_default() += 1;
                    }
                    if reasons.is_empty() {
                        *g.reasons.entry("failed".into()).or_default() += 1;
                    }
                }
                if let Some((p, m)) = self.who.get(job).and_then(|w| w.get(step)).cloned() {
                    let a = acc(&mut self.rows, &p, &m);
                    a.row.gate_checks += 1;
                    if *passed {
                        a.row.gate_passes += 1;
                    }
                }
            }
            EventKind::Retry { .. } => self.totals.retries += 1,
            EventKind::Fallback { .. } => self.totals.fallbacks += 1,
            EventKind::Regenerate { .. } => self.totals.regenerations += 1,
            EventKind::JobFinished { job, .. } => {
                self.who.remove(job);
            }
            _ => {}
        }
    }

    /// Feed one journal record: its outputs are accepted assets of the provider
    /// and model that made them.
    pub fn observe_record(&mut self, r: &JournalRecord) {
        for a in &r.outputs {
            if let Some(p) = &a.provenance.provider {
                let model = a.provenance.model.clone().unwrap_or_else(|| "-".into());
                *self.accepted.entry((p.clone(), model)).or_default() += 1;
            }
        }
    }

    /// Feed one delivered asset.
    pub fn observe_asset(&mut self, a: &super::AssetEntry) {
        self.totals.assets += 1;
        if a.provenance.flagged {
            self.totals.flagged += 1;
        }
    }

    /// Build the report.
    pub fn finish(self, campaign: &str, outcome: Option<&RunOutcome>) -> Report {
        let ReportBuilder {
            accepted,
            mut rows,
            gates,
            mut totals,
            sessions,
            ..
        } = self;
        for ((p, m), n) in &accepted {
            acc(&mut rows, p, m).row.accepted = *n;
        }
        let providers = rows
            .into_values()
            .map(|mut a| {
                a.latencies
                    .sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
                a.row.latency_p50_ms = percentile(&a.latencies, 50.0);
                a.row.latency_p95_ms = percentile(&a.latencies, 95.0);
                a.row.gate_pass_rate =
                    (a.row.gate_checks > 0).then(|| a.row.gate_passes as f64 / a.row.gate_checks as f64);
                a.row.cost_per_accepted_usd = (a.row.accepted > 0).then(|| a.row.cost_usd / a.row.accepted as f64);
                a.row
            })
            .collect();
        let gates = gates
            .into_values()
            .map(|mut g| {
                g.pass_rate = (g.checks > 0).then(|| g.passes as f64 / g.checks as f64);
                g
            })
            .collect();
        totals.cost_per_asset_usd = (totals.assets > 0).then(|| totals.cost_usd / totals.assets as f64);
        let mut jobs = JobCounts::default();
        let mut failures = Vec::new();
        if let Some(o) = outcome {
            jobs.total = o.counts.total;
            jobs.succeeded = o.counts.succeeded;
            jobs.failed = o.counts.failed;
            jobs.cancelled = o.counts.cancelled;
            jobs.budget_exhausted = o.counts.budget_exhausted;
            jobs.steps_resumed = o.stats.steps_resumed;
            for j in &o.jobs {
                if let Some(s) = j.steps.iter().find(|s| s.state == StepState::Failed) {
                    let (class, error) = match &s.error {
                        Some(e) => (e.class().to_string(), e.to_string()),
                        None => ("failed".into(), String::new()),
                    };
                    failures.push(FailureRow {
                        job: j.job.key().to_string(),
                        vars: (**j.job.vars()).clone(),
                        step: s.step.to_string(),
                        class,
                        error,
                    });
                }
            }
        }
        Report {
            campaign: campaign.to_string(),
            status: outcome.map(|o| o.status),
            elapsed_ms: outcome.map(|o| o.elapsed.as_secs_f64() * 1e3).unwrap_or(0.0),
            sessions,
            jobs,
            totals,
            providers,
            gates,
            failures,
            delivery_errors: Vec::new(),
            estimated_cost_usd: None,
        }
    }
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
            "{status}: jobs {} ({} ok, {} failed{}) | assets {} ({} flagged) | attempts {} ({} failed, {} retries) | gate failures {}/{} | cost ${:.4} | cache {} hits, ${:.4} saved | {:.1} s",
            self.jobs.total,
            self.jobs.succeeded,
            self.jobs.failed,
            if self.jobs.steps_resumed > 0 {
                format!(", {} steps resumed", self.jobs.steps_resumed)
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
            let name = format!("{}/{}", r.provider, r.model);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind) -> Event {
        Event {
            seq: 0,
            at_ms: 0.0,
            kind,
        }
    }

    #[test]
    fn per_provider_rows_count_attempts_failures_gates_and_latency() {
        let mut b = ReportBuilder::new();
        let attempt = |job: &str, lat: f64, err: Option<&str>| {
            ev(EventKind::AttemptFinished {
                job: job.into(),
                step: "hero".into(),
                provider: "p".into(),
                model: Some("m".into()),
                attempt: 1,
                latency_ms: lat,
                cost_usd: if err.is_some() { 0.0 } else { 0.04 },
                error_kind: err.map(String::from),
                error: err.map(String::from),
            })
        };
        for (i, lat) in [10.0, 20.0, 30.0, 40.0].into_iter().enumerate() {
            let job = format!("j{i}");
            b.observe(&ev(EventKind::Attempt {
                job: job.clone(),
                step: "hero".into(),
                provider: "p".into(),
                model: Some("m".into()),
                attempt: 1,
            }));
            b.observe(&attempt(&job, lat, None));
            b.observe(&ev(EventKind::GateVerdict {
                job,
                step: "hero".into(),
                gate: "sharpness".into(),
                artifact: "x".into(),
                passed: i != 0,
                score: 0.0,
                reasons: if i == 0 { vec!["blurry".into()] } else { vec![] },
                round: 0,
            }));
        }
        b.observe(&attempt("j0", 100.0, Some("timeout")));
        let r = b.finish("c", None);
        let row = &r.providers[0];
        assert_eq!((row.provider.as_str(), row.model.as_str()), ("p", "m"));
        assert_eq!(row.attempts, 5);
        assert_eq!(row.successes, 4);
        assert_eq!(row.failures.get("timeout"), Some(&1));
        assert_eq!(row.gate_checks, 4);
        assert_eq!(row.gate_pass_rate, Some(0.75));
        assert_eq!(row.latency_p50_ms, Some(30.0));
        assert_eq!(row.latency_p95_ms, Some(100.0));
        assert!((row.cost_usd - 0.16).abs() < 1e-9);
        assert_eq!(r.gates[0].reasons.get("blurry"), Some(&1));
        assert!(r.table().contains("p/m"));
    }
}
