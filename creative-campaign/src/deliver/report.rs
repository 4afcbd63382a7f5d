//! The report: per provider and model, what was tried, what passed, what it
//! cost; as JSON and as a terminal table.

use std::collections::{BTreeMap, HashMap};

use creative_core::MediaKind;

use creative_core::deliver::{FailureGroup, FailureRow, GateRow, JobCounts, ProviderRow, Report, Totals};
use creative_core::error::{StepError, StepErrorKind};

use crate::store::JournalRecord;
use creative_core::events::{Event, EventKind};
use creative_core::exec::{RunOutcome, StepState};

/// The key under which a router names, in a routed artifact's `meta.extra`, the
/// member that made it (`creative_providers::router::ROUTED_PROVIDER`).
const ROUTED_PROVIDER: &str = "routed_provider";

/// A row's key: (provider or router, member or "", model). A router's own row
/// and a plain provider's have no member, so a router's member rows sort right
/// after its own.
type Key = (String, String, String);

fn key(provider: &str, member: &str, model: Option<&str>) -> Key {
    (
        provider.to_string(),
        member.to_string(),
        model.unwrap_or("-").to_string(),
    )
}

#[derive(Default)]
struct Acc {
    row: ProviderRow,
    latencies: Vec<f64>,
}

/// Who is serving one step of a job: the row of the engine's attempt, and the
/// member row of the router's last successful member call, if routed.
#[derive(Clone, Default)]
struct Serving {
    row: Option<Key>,
    member: Option<Key>,
    /// Member calls since the engine's last `AttemptFinished`: a router's
    /// attempt that called members is counted in the totals by those calls.
    member_calls: u64,
}

/// Builds a [`Report`] by streaming: feed it the run's events (every
/// session's), its journal records and its delivered assets one at a time, in
/// any amount; it keeps only the per-provider, per-model, per-member and
/// per-gate rows, and which provider is serving each job still in progress.
///
/// Rows are keyed by the model each provider used (the step's, else the
/// provider's default), and accepted assets by the model their provenance
/// names, which the engine fills the same way. A router's calls to its members
/// (`MemberAttemptFinished`) are rows of their own, marked with the router; the
/// totals count those calls instead of the router's, so they add up to what the
/// providers' servers saw.
#[derive(Default)]
pub struct ReportBuilder {
    /// What is serving each step of each job not yet finished.
    who: HashMap<String, HashMap<String, Serving>>,
    accepted: HashMap<Key, u64>,
    /// Seconds of (audio, video) among each row's accepted assets.
    seconds: HashMap<Key, (f64, f64)>,
    rows: BTreeMap<Key, Acc>,
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

fn acc<'a>(rows: &'a mut BTreeMap<Key, Acc>, k: &Key) -> &'a mut Acc {
    rows.entry(k.clone()).or_insert_with(|| {
        let (top, member, model) = k;
        let (provider, router) = if member.is_empty() {
            (top.clone(), None)
        } else {
            (member.clone(), Some(top.clone()))
        };
        Acc {
            row: ProviderRow {
                provider,
                router,
                model: model.clone(),
                ..ProviderRow::default()
            },
            latencies: Vec::new(),
        }
    })
}

/// Count one call's outcome into a row.
fn count_call(a: &mut Acc, latency_ms: f64, cost_usd: f64, error_kind: Option<&String>) {
    a.row.attempts += 1;
    a.row.cost_usd += cost_usd;
    a.latencies.push(latency_ms);
    match error_kind {
        None => a.row.successes += 1,
        Some(k) => *a.row.failures.entry(k.clone()).or_default() += 1,
    }
}

impl ReportBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        ReportBuilder::default()
    }

    fn serving(&mut self, job: &str, step: &str) -> &mut Serving {
        self.who
            .entry(job.to_string())
            .or_default()
            .entry(step.to_string())
            .or_default()
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
                let s = self.serving(job, step);
                s.row = Some(key(provider, "", model.as_deref()));
                s.member = None;
            }
            EventKind::AttemptFinished {
                job,
                step,
                provider,
                model,
                latency_ms,
                cost_usd,
                error_kind,
                ..
            } => {
                let k = key(provider, "", model.as_deref());
                count_call(acc(&mut self.rows, &k), *latency_ms, *cost_usd, error_kind.as_ref());
                let s = self.serving(job, step);
                let routed = std::mem::take(&mut s.member_calls) > 0;
                if !routed {
                    self.totals.attempts += 1;
                    self.totals.cost_usd += cost_usd;
                    if error_kind.is_some() {
                        self.totals.failed_attempts += 1;
                    }
                }
            }
            EventKind::MemberAttemptFinished {
                job,
                step,
                router,
                member,
                model,
                latency_ms,
                cost_usd,
                error_kind,
                reason,
                ..
            } => {
                let k = key(router, member, model.as_deref());
                let a = acc(&mut self.rows, &k);
                count_call(a, *latency_ms, *cost_usd, error_kind.as_ref());
                if let Some(r) = reason {
                    *a.row.routed.entry(r.as_str().to_string()).or_default() += 1;
                }
                self.totals.attempts += 1;
                self.totals.cost_usd += cost_usd;
                if error_kind.is_some() {
                    self.totals.failed_attempts += 1;
                }
                let s = self.serving(job, step);
                s.member_calls += 1;
                if error_kind.is_none() {
                    s.member = Some(k);
                }
            }
            EventKind::CacheHit {
                job,
                step,
                provider,
                model,
                saved_usd,
            } => {
                let k = key(provider, "", model.as_deref());
                let a = acc(&mut self.rows, &k);
                a.row.cache_hits += 1;
                a.row.saved_usd += saved_usd;
                self.totals.cache_hits += 1;
                self.totals.saved_usd += saved_usd;
                let s = self.serving(job, step);
                s.row = Some(k);
                s.member = None;
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
                        *g.reasons.entry(reason_shape(r)).or_default() += 1;
                    }
                    if reasons.is_empty() {
                        *g.reasons.entry("failed".into()).or_default() += 1;
                    }
                }
                let Some(s) = self.who.get(job).and_then(|w| w.get(step)).cloned() else {
                    return;
                };
                for k in [s.row, s.member].into_iter().flatten() {
                    let a = acc(&mut self.rows, &k);
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
    /// and model that made them (and, when a router made them, of the member
    /// and model that did), with the seconds of those that are audio or video.
    /// An output made by an earlier step and passed on unchanged (a `probe`
    /// step's) is that step's asset, already counted.
    pub fn observe_record(&mut self, r: &JournalRecord) {
        for a in &r.outputs {
            let Some(p) = &a.provenance.provider else { continue };
            if a.provenance.step != r.step {
                continue;
            }
            let model = a.provenance.model.as_deref();
            let keys = match a.meta.extra.get(ROUTED_PROVIDER).and_then(|v| v.as_str()) {
                Some(member) => {
                    // The router's own row is keyed by the step's model, if any.
                    let asked = a.provenance.params.get("model").and_then(|v| v.as_str());
                    vec![key(p, "", asked), key(p, member, model)]
                }
                None => vec![key(p, "", model)],
            };
            for k in &keys {
                *self.accepted.entry(k.clone()).or_default() += 1;
            }
            let kind = a.media.kind();
            let Some(d) = a.meta.duration_s.filter(|d| d.is_finite() && *d > 0.0) else {
                continue;
            };
            if !matches!(kind, MediaKind::Audio | MediaKind::Video) {
                continue;
            }
            let (audio, video) = if kind == MediaKind::Audio { (d, 0.0) } else { (0.0, d) };
            self.totals.audio_s += audio;
            self.totals.video_s += video;
            for k in keys {
                let s = self.seconds.entry(k).or_default();
                s.0 += audio;
                s.1 += video;
            }
        }
    }

    /// Feed one delivered asset.
    pub fn observe_asset(&mut self, a: &super::AssetEntry) {
        self.totals.assets += 1;
        if a.flagged() {
            self.totals.flagged += 1;
        }
    }

    /// Add what `records` was fed by [`observe_record`](Self::observe_record)
    /// and [`observe_asset`](Self::observe_asset) (the pass placing files
    /// keeps a builder of its own while the events go to this one).
    pub(crate) fn absorb(&mut self, records: ReportBuilder) {
        for (k, n) in records.accepted {
            *self.accepted.entry(k).or_default() += n;
        }
        for (k, (audio, video)) in records.seconds {
            let s = self.seconds.entry(k).or_default();
            s.0 += audio;
            s.1 += video;
        }
        self.totals.audio_s += records.totals.audio_s;
        self.totals.video_s += records.totals.video_s;
        self.totals.assets += records.totals.assets;
        self.totals.flagged += records.totals.flagged;
    }

    /// Build the report.
    pub fn finish(self, campaign: &str, outcome: Option<&RunOutcome>) -> Report {
        let ReportBuilder {
            accepted,
            seconds,
            mut rows,
            gates,
            mut totals,
            sessions,
            ..
        } = self;
        for (k, n) in &accepted {
            acc(&mut rows, k).row.accepted = *n;
        }
        for (k, (audio, video)) in &seconds {
            let a = acc(&mut rows, k);
            (a.row.audio_s, a.row.video_s) = (*audio, *video);
            let cost = a.row.cost_usd;
            a.row.cost_per_second_usd = Some(cost / (audio + video));
            // A member's calls are inside its router's row: count cost once.
            if a.row.router.is_none() {
                totals.audio_cost_usd += cost * audio / (audio + video);
                totals.video_cost_usd += cost * video / (audio + video);
            }
        }
        let providers = rows
            .into_values()
            .map(|mut a| {
                a.latencies.sort_by(f64::total_cmp);
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
                    failures.push(failure_row(
                        j.job.key(),
                        (**j.job.vars()).clone(),
                        &s.step,
                        s.error.as_ref(),
                    ));
                }
            }
        }
        let failure_groups = FailureGroup::group(&failures);
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
            failure_groups,
            delivery_errors: Vec::new(),
            degraded,
            estimated_cost_usd: None,
        }
    }
}

/// The report's row for a job that failed at `step` with `error`.
fn failure_row(job: &str, vars: creative_core::Vars, step: &str, error: Option<&StepError>) -> FailureRow {
    let (class, message, gate) = match error {
        Some(e) => (
            e.class().to_string(),
            e.to_string(),
            match e.kind() {
                StepErrorKind::GateFailed => e.gate().map(str::to_string),
                _ => None,
            },
        ),
        None => ("failed".into(), String::new(), None),
    };
    FailureRow {
        job: job.to_string(),
        vars,
        step: step.to_string(),
        class,
        error: message,
        gate,
    }
}

/// A gate's failure reason with its figures blanked (`sharpness 12.3 < 40`
/// becomes `sharpness # < #`), so reasons that differ only in the measured
/// numbers count as one.
fn reason_shape(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut in_number = false;
    for c in reason.chars() {
        let numeric = c.is_ascii_digit() || (in_number && c == '.');
        if numeric {
            if !in_number {
                out.push('#');
            }
        } else {
            out.push(c);
        }
        in_number = numeric;
    }
    out
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
    fn gate_reasons_that_differ_only_in_their_numbers_count_as_one() {
        assert_eq!(reason_shape("variance 12.5 below 40"), "variance # below #");
        assert_eq!(reason_shape("1024x768 is not 1:1"), "#x# is not #:#");
        assert_eq!(reason_shape("too dark."), "too dark.");
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

    #[test]
    fn member_calls_are_rows_under_their_router_and_the_totals_count_them_not_the_router_s() {
        let mut b = ReportBuilder::new();
        let member = |job: &str, member: &str, err: Option<&str>| {
            ev(EventKind::MemberAttemptFinished {
                job: job.into(),
                step: "hero".into(),
                router: "images".into(),
                member: member.into(),
                model: Some(format!("{member}-1")),
                attempt: 1,
                latency_ms: 5.0,
                cost_usd: if err.is_some() { 0.0 } else { 0.04 },
                error_kind: err.map(String::from),
                error: err.map(String::from),
                reason: None,
            })
        };
        for i in 0..3 {
            let job = format!("j{i}");
            b.observe(&ev(EventKind::Attempt {
                job: job.clone(),
                step: "hero".into(),
                provider: "images".into(),
                model: None,
                attempt: 1,
            }));
            if i == 0 {
                b.observe(&member(&job, "a", Some("transient")));
                b.observe(&member(&job, "b", None));
            } else {
                b.observe(&member(&job, "a", None));
            }
            b.observe(&ev(EventKind::AttemptFinished {
                job,
                step: "hero".into(),
                provider: "images".into(),
                model: None,
                attempt: 1,
                latency_ms: 12.0,
                cost_usd: 0.04,
                error_kind: None,
                error: None,
            }));
        }
        let r = b.finish("c", None);
        let rows: Vec<(Option<&str>, &str, &str, u64, u64)> = r
            .providers
            .iter()
            .map(|p| {
                (
                    p.router.as_deref(),
                    p.provider.as_str(),
                    p.model.as_str(),
                    p.attempts,
                    p.successes,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (None, "images", "-", 3, 3),
                (Some("images"), "a", "a-1", 3, 2),
                (Some("images"), "b", "b-1", 1, 1),
            ]
        );
        assert_eq!(r.providers[1].failures.get("transient"), Some(&1));
        assert_eq!((r.totals.attempts, r.totals.failed_attempts), (4, 1));
        assert!(
            (r.totals.cost_usd - 0.12).abs() < 1e-9,
            "counted once: {}",
            r.totals.cost_usd
        );
    }

    #[test]
    fn member_rows_count_why_the_router_chose_the_member_in_the_json_and_the_table() {
        let mut b = ReportBuilder::new();
        use creative_core::RouteReason::{self, *};
        let member = |member: &str, reason: Option<RouteReason>| {
            ev(EventKind::MemberAttemptFinished {
                job: "j".into(),
                step: "hero".into(),
                router: "images".into(),
                member: member.into(),
                model: None,
                attempt: 1,
                latency_ms: 5.0,
                cost_usd: 0.02,
                error_kind: None,
                error: None,
                reason,
            })
        };
        for r in [Exploited, Exploited, Waited, Explored] {
            b.observe(&member("a", Some(r)));
        }
        b.observe(&member("b", Some(Spilled)));
        b.observe(&member("b", Some(Fallback)));
        // A composite that does not say why counts its call, not a reason.
        b.observe(&member("b", None));
        let r = b.finish("c", None);
        let (a, b) = (&r.providers[0], &r.providers[1]);
        assert_eq!(
            a.routed,
            BTreeMap::from([("exploited".into(), 2), ("explored".into(), 1), ("waited".into(), 1)])
        );
        assert_eq!(
            b.routed,
            BTreeMap::from([("fallback".into(), 1), ("spilled".into(), 1)])
        );
        assert_eq!(b.attempts, 3);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["providers"][0]["routed"]["exploited"], 2);
        assert_eq!(json["providers"][1]["routed"]["spilled"], 1);
        let table = r.table();
        assert!(table.contains("routed: exploited 2, explored 1, waited 1"), "{table}");
        assert!(table.contains("routed: fallback 1, spilled 1"), "{table}");
    }
}
