//! The report: per provider and model, what was tried, what passed, what it
//! cost; as JSON and as a terminal table.

use std::collections::{BTreeMap, HashMap};

use creative_core::deliver::{FailureRow, GateRow, JobCounts, ProviderRow, Report, Totals};

use crate::store::JournalRecord;
use creative_core::events::{Event, EventKind};
use creative_core::exec::{RunOutcome, StepState};

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
        let mut degraded = Vec::new();
        if let Some(o) = outcome {
            jobs.total = o.counts.total;
            jobs.succeeded = o.counts.succeeded;
            jobs.failed = o.counts.failed;
            jobs.cancelled = o.counts.cancelled;
            jobs.budget_exhausted = o.counts.budget_exhausted;
            jobs.steps_resumed = o.stats.steps_resumed;
            jobs.steps_changed = o.stats.steps_changed;
            degraded = o.degraded.clone();
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
            degraded,
            estimated_cost_usd: None,
        }
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
