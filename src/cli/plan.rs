//! The dry run: the job matrix and a plan worth reading: expected and
//! worst-case cost and time, set against the budget and the deadline, saying
//! which limit the run would meet first. It calls no provider and needs no key.
//!
//! Expected: every generation and gate call succeeds at its first attempt.
//! Worst case: every call uses every attempt of `[retry]` (default 3), every
//! gated generation every regeneration round (`on_gate_fail`, default 2 more),
//! and every fallback provider of its step. Time comes from each provider's
//! latency (learned from the output folder's last `report.json` when there is
//! one, else its `latency_ms` setting, else a typical figure for its kind), its
//! concurrency and its requests per minute; providers work in parallel, so the
//! slowest one sets the pace.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Value};

use creative::campaign::spec::{Campaign, JobPlan, Spec, PLAN_SAMPLE};
use creative::engine::deliver::Report;

use super::out;
use super::progress::duration_text;

/// Calls of one provider and what they cost.
#[derive(Debug, Default, Clone)]
struct Load {
    calls: u64,
    cost: f64,
    worst_calls: u64,
    worst_cost: f64,
    unpriced: u64,
    unpriced_gate_calls: u64,
}

/// A provider's pace.
#[derive(Debug, Clone)]
struct Pace {
    p50_s: f64,
    p95_s: f64,
    source: &'static str,
    parallel: f64,
    per_minute: Option<f64>,
}

impl Pace {
    /// Seconds to make `calls` calls at latency `latency_s`.
    fn seconds(&self, calls: u64, latency_s: f64) -> f64 {
        let by_parallel = calls as f64 * latency_s / self.parallel.max(1.0);
        let by_rate = self.per_minute.map(|r| calls as f64 * 60.0 / r).unwrap_or(0.0);
        by_parallel.max(by_rate)
    }
}

/// The estimate of a whole plan.
#[derive(Debug, Default)]
pub struct Estimate {
    /// Jobs.
    pub jobs: u64,
    /// Generations (first attempts).
    pub generations: u64,
    /// Gate calls (first attempts).
    pub gate_calls: u64,
    /// Expected cost.
    pub cost_usd: f64,
    /// Worst-case cost.
    pub worst_cost_usd: f64,
    /// Expected provider calls.
    pub attempts: u64,
    /// Worst-case provider calls.
    pub worst_attempts: u64,
    /// Expected wall time, seconds.
    pub time_s: f64,
    /// Worst-case wall time, seconds.
    pub worst_time_s: f64,
    /// Generations with no known price.
    pub unpriced: u64,
    /// Gate calls with no known price.
    pub unpriced_gate_calls: u64,
}

/// How many times a first attempt may be repeated, per step: attempts per
/// provider x providers in the chain x regeneration rounds.
fn worst_factor(spec: &Spec, step: &str, gate: bool) -> u64 {
    let doc = &spec.doc;
    let attempts = u64::from(doc.retry.max_attempts.unwrap_or(3).max(1));
    let Some(s) = doc.steps.iter().find(|s| s.name == step) else {
        return attempts;
    };
    let providers = s
        .settings
        .get("providers")
        .and_then(Value::as_array)
        .map_or(1, |p| p.len().max(1) as u64);
    let rounds = if s.gates.is_empty() {
        1
    } else {
        match &s.on_gate_fail {
            None => 3,
            Some(Value::String(p)) if p == "regenerate" => 3,
            Some(Value::Object(o)) if o.get("action") == Some(&json!("regenerate")) => {
                1 + o.get("max").and_then(Value::as_u64).unwrap_or(2)
            }
            Some(Value::String(p)) if p == "fallback" => providers,
            _ => 1,
        }
    };
    if gate {
        attempts * rounds
    } else {
        attempts * providers * rounds
    }
}

/// A provider's pace: learned, set, or typical for its kind.
fn pace(spec: &Spec, id: &str, learned: Option<&Report>) -> Pace {
    let doc = &spec.doc;
    let p = doc.providers.get(id);
    let global = doc.concurrency.unwrap_or(creative::engine::limits::DEFAULT_CONCURRENCY) as f64;
    let parallel = p.and_then(|p| p.concurrency).map_or(global, |c| (c as f64).min(global));
    let per_minute = p.and_then(|p| p.requests_per_minute).map(f64::from);
    let learned_row = learned.and_then(|r| {
        r.providers
            .iter()
            .filter(|row| row.provider == id && row.router.is_none())
            .find_map(|row| Some((row.latency_p50_ms?, row.latency_p95_ms.or(row.latency_p50_ms)?)))
    });
    let (p50_s, p95_s, source) = if let Some((p50, p95)) = learned_row {
        (p50 / 1e3, p95 / 1e3, "learned from the last run")
    } else if let Some(ms) = p.and_then(|p| p.settings.get("latency_ms")).and_then(Value::as_f64) {
        let jitter = p
            .and_then(|p| p.settings.get("latency_jitter_ms"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        ((ms + jitter / 2.0) / 1e3, (ms + jitter) / 1e3, "its latency_ms setting")
    } else {
        let kind = p.map(|p| p.kind.as_str()).unwrap_or("");
        let (a, b) = match kind {
            "procedural" => (0.01, 0.05),
            "openai" | "gemini" | "stability" | "replicate" | "fal" => (12.0, 40.0),
            "anthropic" | "ollama" => (4.0, 15.0),
            "comfyui" => (10.0, 30.0),
            _ => (10.0, 30.0),
        };
        (a, b, "typical for its kind")
    };
    // A call can take no longer than its timeout.
    let cap = p.and_then(|p| p.call_timeout_s).unwrap_or(f64::MAX);
    Pace {
        p50_s: p50_s.min(cap),
        p95_s: p95_s.min(cap),
        source,
        parallel,
        per_minute,
    }
}

/// `creative run --dry-run`.
pub fn dry_run(spec: &Spec, campaign: &Campaign, out_dir: Option<&Path>, json: bool) -> ExitCode {
    let learned: Option<Report> = {
        let dir = out_dir.unwrap_or(campaign.default_out_dir());
        std::fs::read(dir.join("report.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    };
    let mut loads: BTreeMap<String, Load> = BTreeMap::new();
    let mut est = Estimate::default();
    let mut head: Vec<JobPlan> = Vec::new();
    let mut tail: VecDeque<JobPlan> = VecDeque::new();
    let mut stream = json.then(out::Stream::new);
    let mut factors: BTreeMap<(String, bool), u64> = BTreeMap::new();
    for job in campaign.plan_jobs() {
        est.jobs += 1;
        for r in &job.requests {
            let gate = r.gate.is_some();
            let f = *factors
                .entry((r.step.clone(), gate))
                .or_insert_with(|| worst_factor(spec, &r.step, gate));
            let l = loads.entry(r.provider.clone()).or_default();
            l.calls += 1;
            l.cost += r.estimated_cost_usd;
            l.worst_calls += f;
            l.worst_cost += r.estimated_cost_usd * f as f64;
            if !r.priced && gate {
                l.unpriced_gate_calls += 1;
            } else if !r.priced {
                l.unpriced += 1;
            }
            if gate {
                est.gate_calls += 1;
            } else {
                est.generations += 1;
            }
        }
        if let Some(s) = stream.as_mut() {
            if !s.line(&serde_json::to_string(&job).unwrap_or_default()) {
                return ExitCode::SUCCESS;
            }
            continue;
        }
        if head.len() < PLAN_SAMPLE {
            head.push(job);
        } else {
            tail.push_back(job);
            if tail.len() > PLAN_SAMPLE {
                tail.pop_front();
            }
        }
    }
    let mut providers = Vec::new();
    for (id, l) in &loads {
        let p = pace(spec, id, learned.as_ref());
        let t = p.seconds(l.calls, p.p50_s);
        let wt = p.seconds(l.worst_calls, p.p95_s);
        est.cost_usd += l.cost;
        est.worst_cost_usd += l.worst_cost;
        est.attempts += l.calls;
        est.worst_attempts += l.worst_calls;
        est.unpriced += l.unpriced;
        est.unpriced_gate_calls += l.unpriced_gate_calls;
        est.time_s = est.time_s.max(t);
        est.worst_time_s = est.worst_time_s.max(wt);
        providers.push((id.clone(), l.clone(), p, t, wt));
    }
    let limits = limits(spec, campaign, &est);
    if let Some(s) = stream {
        let totals = json!({
            "campaign": campaign.name(),
            "steps": campaign.steps(),
            "deliver": campaign.deliver_steps(),
            "job_count": est.jobs,
            "generations": est.generations,
            "gate_calls": est.gate_calls,
            "estimated_cost_usd": est.cost_usd,
            "worst_case_cost_usd": est.worst_cost_usd,
            "estimated_attempts": est.attempts,
            "worst_case_attempts": est.worst_attempts,
            "estimated_time_s": est.time_s.round(),
            "worst_case_time_s": est.worst_time_s.round(),
            "unpriced_generations": est.unpriced,
            "unpriced_gate_calls": est.unpriced_gate_calls,
            "providers": providers.iter().map(|(id, l, p, t, wt)| json!({
                "provider": id, "calls": l.calls, "worst_case_calls": l.worst_calls,
                "cost_usd": l.cost, "worst_case_cost_usd": l.worst_cost,
                "latency_p50_s": p.p50_s, "latency_p95_s": p.p95_s, "latency_from": p.source,
                "parallel": p.parallel, "requests_per_minute": p.per_minute,
                "time_s": t.round(), "worst_case_time_s": wt.round(),
            })).collect::<Vec<_>>(),
            "limits": limits.iter().map(|l| json!({
                "limit": l.name, "value": l.value, "expected": l.expected, "worst_case": l.worst,
                "hit_at_expected_fraction": l.fraction(false), "hit_at_worst_case_fraction": l.fraction(true),
            })).collect::<Vec<_>>(),
        });
        let mut s = s;
        if s.line(&totals.to_string()) {
            s.finish();
        }
        return ExitCode::SUCCESS;
    }
    let shown: Vec<JobPlan> = head.into_iter().chain(tail).collect();
    let mut text = super::tables::plan_jobs(&shown, est.jobs - shown.len() as u64);
    let mut prose = String::new();
    prose.push_str(&format!(
        "\n{} jobs x {} steps ({}), {} generations, estimated cost ${:.4} (first attempts); delivers: {}\n",
        group(est.jobs),
        campaign.steps().len(),
        campaign.steps().join(", "),
        group(est.generations),
        est.cost_usd,
        campaign.deliver_steps().join(", ")
    ));
    if est.gate_calls > 0 {
        prose.push_str(&format!("of which {} gate calls (judges)\n", group(est.gate_calls)));
    }
    text.push_str(&super::tables::wrap_text(&prose));
    let mut prose = String::new();
    let mut t = super::tables::table(&[
        "provider",
        "calls",
        "worst calls",
        "cost $",
        "worst $",
        "latency",
        "pace",
        "time",
        "worst time",
    ]);
    for (id, l, p, tt, wt) in &providers {
        t.add_row(vec![
            id.clone(),
            group(l.calls),
            group(l.worst_calls),
            format!("{:.4}", l.cost),
            format!("{:.4}", l.worst_cost),
            format!("{:.1}-{:.1} s ({})", p.p50_s, p.p95_s, p.source),
            match p.per_minute {
                Some(r) => format!("{} at once, {r}/min", p.parallel),
                None => format!("{} at once", p.parallel),
            },
            duration_text(*tt),
            duration_text(*wt),
        ]);
    }
    super::tables::numbers(&mut t, [1, 2, 3, 4, 7, 8]);
    text.push('\n');
    text.push_str(&t.to_string());
    prose.push_str(&format!(
        "\nexpected: ${:.4}, {} calls, {}; worst case (every retry, regeneration and fallback): ${:.4}, {} calls, {}\n",
        est.cost_usd,
        group(est.attempts),
        duration_text(est.time_s),
        est.worst_cost_usd,
        group(est.worst_attempts),
        duration_text(est.worst_time_s)
    ));
    if est.unpriced + est.unpriced_gate_calls > 0 {
        let who: Vec<&str> = loads
            .iter()
            .filter(|(_, l)| l.unpriced + l.unpriced_gate_calls > 0)
            .map(|(p, _)| p.as_str())
            .collect();
        let what = match (est.unpriced, est.unpriced_gate_calls) {
            (g, 0) => format!("{} generations", group(g)),
            (0, c) => format!("{} gate calls", group(c)),
            (g, c) => format!("{} generations and {} gate calls", group(g), group(c)),
        };
        prose.push_str(&format!(
            "{what} have no known price (provider {}): the estimate counts them as $0; give the provider a `prices` table\n",
            who.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    prose.push_str(&limits_text(&limits));
    text.push_str(&super::tables::wrap_text(&prose));
    out::print(&text);
    ExitCode::SUCCESS
}

/// A limit of the run and the plan's use of it.
#[derive(Debug)]
struct Limit {
    name: &'static str,
    value: f64,
    expected: f64,
    worst: f64,
}

impl Limit {
    /// The share of the plan done when the limit is reached (None: never).
    fn fraction(&self, worst: bool) -> Option<f64> {
        let use_ = if worst { self.worst } else { self.expected };
        (use_ > self.value && use_ > 0.0).then(|| self.value / use_)
    }

    fn show(&self, v: f64) -> String {
        match self.name {
            "budget.max_cost_usd" => format!("${v:.2}"),
            "budget.max_minutes" => duration_text(v * 60.0),
            _ => group(v.round() as u64),
        }
    }
}

fn limits(spec: &Spec, _campaign: &Campaign, est: &Estimate) -> Vec<Limit> {
    let b = &spec.doc.budget;
    let mut v = Vec::new();
    if let Some(c) = b.max_cost_usd {
        v.push(Limit {
            name: "budget.max_cost_usd",
            value: c,
            expected: est.cost_usd,
            worst: est.worst_cost_usd,
        });
    }
    if let Some(m) = b.max_minutes {
        v.push(Limit {
            name: "budget.max_minutes",
            value: m,
            expected: est.time_s / 60.0,
            worst: est.worst_time_s / 60.0,
        });
    }
    if let Some(a) = b.max_attempts {
        v.push(Limit {
            name: "budget.max_attempts",
            value: a as f64,
            expected: est.attempts as f64,
            worst: est.worst_attempts as f64,
        });
    }
    v
}

fn limits_text(limits: &[Limit]) -> String {
    if limits.is_empty() {
        return "no budget: [budget] sets max_cost_usd, max_minutes and max_attempts\n".into();
    }
    let mut s = String::new();
    for l in limits {
        let verdict = match (l.fraction(false), l.fraction(true)) {
            (Some(f), _) => format!("EXCEEDED: the run would stop about {:.0}% of the way", f * 100.0),
            (None, Some(f)) => format!(
                "fits as expected; the worst case would stop about {:.0}% of the way",
                f * 100.0
            ),
            (None, None) => "fits, even in the worst case".into(),
        };
        s.push_str(&format!(
            "{} = {}: expected {}, worst case {}: {verdict}\n",
            l.name,
            l.show(l.value),
            l.show(l.expected),
            l.show(l.worst)
        ));
    }
    let first = |worst: bool| {
        limits
            .iter()
            .filter_map(|l| l.fraction(worst).map(|f| (f, l.name)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    };
    if let Some((f, name)) = first(false) {
        s.push_str(&format!(
            "the run would stop at {name} first, about {:.0}% of the way through (exit 5; raise it and --resume)\n",
            f * 100.0
        ));
    } else if let Some((f, name)) = first(true) {
        s.push_str(&format!(
            "in the worst case {name} would be reached first, about {:.0}% of the way through\n",
            f * 100.0
        ));
    }
    s
}

/// 1234567 as `1,234,567`.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_below_the_expected_use_is_hit_at_its_share_of_the_plan() {
        let l = Limit {
            name: "budget.max_cost_usd",
            value: 100.0,
            expected: 40_000.0,
            worst: 120_000.0,
        };
        assert_eq!(l.fraction(false), Some(0.0025));
        let roomy = Limit { value: 1e6, ..l };
        assert_eq!(roomy.fraction(false), None);
        assert_eq!(roomy.fraction(true), None);
    }

    #[test]
    fn the_limit_reached_first_is_named() {
        let limits = [
            Limit {
                name: "budget.max_cost_usd",
                value: 50.0,
                expected: 100.0,
                worst: 300.0,
            },
            Limit {
                name: "budget.max_minutes",
                value: 10.0,
                expected: 40.0,
                worst: 90.0,
            },
        ];
        let t = limits_text(&limits);
        assert!(
            t.contains("the run would stop at budget.max_minutes first, about 25%"),
            "{t}"
        );
    }

    #[test]
    fn big_numbers_are_grouped_by_thousands() {
        assert_eq!(group(1_000_000), "1,000,000");
        assert_eq!(group(999), "999");
    }
}
