//! The dry run's plan: what a campaign would request, job by job, and what it
//! would cost, without calling any provider.

use std::sync::Arc;

use serde::Serialize;

use crate::spec::matrix;
use creative_core::gate::QualityGate;
use creative_core::job::{Job, Vars};

use super::campaign::Campaign;

impl Campaign {
    /// One job of the dry run: the requests its generate steps would make and
    /// their estimated cost.
    pub fn plan_job(&self, index: u64, job: &Job) -> JobPlan {
        let mut requests = Vec::new();
        for (step, g) in &self.generators {
            let Some(pid) = g.chain.first() else { continue };
            // Built specs render every prompt, so this only fails for a
            // job-selected preset that went missing; such a job shows no call.
            let Ok(req) = g.request_for(job) else { continue };
            let p = self.providers.get(pid);
            requests.push(PlannedRequest {
                step: step.clone(),
                gate: None,
                provider: pid.clone(),
                request: req.resolved_json(),
                estimated_cost_usd: p.map(|p| p.estimate_cost(&req)).unwrap_or(0.0),
                priced: p.is_some_and(|p| p.has_price(&req)),
            });
            requests.extend(self.gate_calls(step, &g.gates_for(job), job));
        }
        for (step, gates) in &self.gated {
            requests.extend(self.gate_calls(step, gates, job));
        }
        let cost = requests.iter().map(|r| r.estimated_cost_usd).sum();
        JobPlan {
            index,
            key: job.key().to_string(),
            vars: (**job.vars()).clone(),
            requests,
            estimated_cost_usd: cost,
        }
    }

    /// The provider calls one check by each of `gates` makes for `job`.
    fn gate_calls(&self, step: &str, gates: &[Arc<dyn QualityGate>], job: &Job) -> Vec<PlannedRequest> {
        let mut out = Vec::new();
        for gate in gates {
            for (pid, req) in gate.planned_calls(job.vars()) {
                let p = self.providers.get(&pid);
                out.push(PlannedRequest {
                    step: step.to_string(),
                    gate: Some(gate.name().to_string()),
                    provider: pid,
                    request: req.resolved_json(),
                    estimated_cost_usd: p.map(|p| p.estimate_cost(&req)).unwrap_or(0.0),
                    priced: p.is_some_and(|p| p.has_price(&req)),
                });
            }
        }
        out
    }

    /// Every job of the dry run, in matrix order, made one at a time (for
    /// `--json`, a line each).
    pub fn plan_jobs(&self) -> impl Iterator<Item = JobPlan> + '_ {
        self.jobs.iter_indexed().map(move |(i, job)| self.plan_job(i, &job))
    }

    /// The dry run: the job count, the generations and their estimated cost,
    /// with the first and last jobs in full. Calls no provider.
    ///
    /// The totals are computed, not enumerated: a request depends only on the
    /// variables its step names (prompts, parameters, preset), so one job per
    /// combination of those axes is estimated and counted for every job it
    /// stands for. A shard (whose jobs are picked by hash) is walked instead.
    pub fn plan(&self) -> Plan {
        let job_count = self.jobs.count();
        let (mut generations, mut gate_calls, mut total, mut gate_cost) = (0u64, 0u64, 0.0f64, 0.0f64);
        let (mut unpriced, mut unpriced_gates, mut unpriced_providers) =
            (0u64, 0u64, std::collections::BTreeSet::new());
        let mut count = |r: &PlannedRequest, each: u64| {
            total += r.estimated_cost_usd * each as f64;
            if r.gate.is_some() {
                gate_calls += each;
                gate_cost += r.estimated_cost_usd * each as f64;
            } else {
                generations += each;
            }
            if !r.priced {
                if r.gate.is_some() {
                    unpriced_gates += each;
                } else {
                    unpriced += each;
                }
                unpriced_providers.insert(r.provider.clone());
            }
        };
        if self.jobs.shard_of().is_none() {
            for (step, g) in &self.generators {
                let Some(pid) = g.chain.first() else { continue };
                let names = g.variables();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                // Streamed, never collected: when a prompt names every axis there
                // is one representative per job, a million for a million jobs.
                let reps = self.jobs.representatives(&names);
                // Every representative stands for the same number of jobs (the
                // range under the iterator gives its exact length).
                let each = job_count / (reps.size_hint().0 as u64).max(1);
                for job in reps {
                    let job = &job;
                    let Ok(req) = g.request_for(job) else { continue };
                    let p = self.providers.get(pid);
                    let generation = PlannedRequest {
                        step: step.clone(),
                        gate: None,
                        provider: pid.clone(),
                        request: serde_json::Value::Null,
                        estimated_cost_usd: p.map(|p| p.estimate_cost(&req)).unwrap_or(0.0),
                        priced: p.is_some_and(|p| p.has_price(&req)),
                    };
                    count(&generation, each);
                    // A judge's request depends on its rubric's variables,
                    // which its price hardly does: the step's representatives
                    // stand for it.
                    for r in self.gate_calls(step, &g.gates_for(job), job) {
                        count(&r, each);
                    }
                }
            }
            // Gates on a step that is not a generate step: one check per job,
            // the first job standing for every job.
            if let Some(job) = self.jobs.get(0) {
                for (step, gates) in &self.gated {
                    for r in self.gate_calls(step, gates, &job) {
                        count(&r, job_count);
                    }
                }
            }
        } else {
            for j in self.plan_jobs() {
                for r in &j.requests {
                    count(r, 1);
                }
            }
        }
        let sample = PLAN_SAMPLE as u64;
        let mut jobs: Vec<JobPlan> = Vec::new();
        if self.jobs.shard_of().is_none() {
            let head = job_count.min(sample);
            let tail_from = job_count.saturating_sub(sample).max(head);
            for i in (0..head).chain(tail_from..job_count) {
                if let Some(job) = self.jobs.get(i) {
                    jobs.push(self.plan_job(i, &job));
                }
            }
        } else {
            let mut all = self.plan_jobs();
            jobs.extend(all.by_ref().take(PLAN_SAMPLE));
            let mut tail: std::collections::VecDeque<JobPlan> = std::collections::VecDeque::new();
            for j in all {
                if tail.len() == PLAN_SAMPLE {
                    tail.pop_front();
                }
                tail.push_back(j);
            }
            jobs.extend(tail);
        }
        Plan {
            campaign: self.name.clone(),
            steps: self.steps.clone(),
            deliver: self.deliver.clone(),
            job_count,
            jobs_omitted: job_count - jobs.len() as u64,
            jobs,
            generations,
            gate_calls,
            estimated_cost_usd: total,
            gate_calls_cost_usd: gate_cost,
            unpriced_generations: unpriced,
            unpriced_gate_calls: unpriced_gates,
            unpriced_providers: unpriced_providers.into_iter().collect(),
        }
    }
}

/// One request a dry run would make: a generation, or a gate's call (a judge's)
/// on what a step made.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedRequest {
    /// The step: the generate step, or the step whose output the gate judges.
    pub step: String,
    /// For a gate's call, the gate's name (as in the spec); none for a
    /// generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// The first provider of the step's chain, or the gate's provider.
    pub provider: String,
    /// The resolved request (seed absent when derived or random).
    pub request: serde_json::Value,
    /// The provider's estimate for it.
    pub estimated_cost_usd: f64,
    /// Whether the provider knows its price (when not, the estimate says $0
    /// for a call that may cost money).
    pub priced: bool,
}

/// One job of a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct JobPlan {
    /// Its position in the matrix (0-based, over every shard).
    pub index: u64,
    /// Job key.
    pub key: String,
    /// Variables.
    pub vars: Vars,
    /// Its generations, each followed by its gates' calls (one per gate check
    /// of the first attempt), then the gates' calls of its other steps (one
    /// check each).
    pub requests: Vec<PlannedRequest>,
    /// Their estimated cost.
    pub estimated_cost_usd: f64,
}

/// Jobs a [`Plan`] shows from each end of the matrix.
pub const PLAN_SAMPLE: usize = 10;

/// What a dry run found: the job count, the generations, the gates' provider
/// calls (a judge's: one per gate check) and their estimated cost (first
/// attempt of every generation and one check of its output; retries and
/// regenerations, and the checks they bring, come on top), and the first and
/// last jobs in full. Every job in full is
/// [`Campaign::plan_jobs`], a stream.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Campaign name.
    pub campaign: String,
    /// Step names.
    pub steps: Vec<String>,
    /// Steps whose outputs are delivered.
    pub deliver: Vec<String>,
    /// Jobs in all (of the shard, when restricted to one).
    pub job_count: u64,
    /// The first [`PLAN_SAMPLE`] jobs and the last ones (every job when there
    /// are no more than twice that), in matrix order.
    pub jobs: Vec<JobPlan>,
    /// Jobs between the first and the last ones, not shown.
    pub jobs_omitted: u64,
    /// Generations in all.
    pub generations: u64,
    /// Gates' provider calls in all (a judge's), first attempts only.
    pub gate_calls: u64,
    /// Estimated cost, gate calls included.
    pub estimated_cost_usd: f64,
    /// The part of the estimate that is gate calls.
    pub gate_calls_cost_usd: f64,
    /// Generations whose provider has no price for them: the estimate counts
    /// them as $0, which is not known to be true.
    pub unpriced_generations: u64,
    /// Gate calls whose provider has no price for them, likewise.
    pub unpriced_gate_calls: u64,
    /// The providers of those generations and gate calls.
    pub unpriced_providers: Vec<String>,
}

impl Plan {
    /// The job matrix as a text table, with the estimate.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let names: Vec<String> = self
            .jobs
            .first()
            .map(|j| j.vars.keys().cloned().collect())
            .unwrap_or_default();
        let width = |k: &str| {
            self.jobs
                .iter()
                .map(|j| j.vars.get(k).map(value_text).unwrap_or_default().chars().count())
                .chain([k.len()])
                .max()
                .unwrap_or(4)
                .min(32)
        };
        let widths: Vec<usize> = names.iter().map(|n| width(n)).collect();
        let _ = write!(s, "{:<8} {:<16}", "#", "job");
        for (n, w) in names.iter().zip(&widths) {
            let _ = write!(s, " {n:<w$}");
        }
        let _ = writeln!(s, " {:>6} {:>10}", "calls", "est. $");
        let mut last_index = None;
        for j in &self.jobs {
            if last_index.is_some_and(|l: u64| j.index > l + 1) && self.jobs_omitted > 0 {
                let _ = writeln!(
                    s,
                    "{:<8} ({} more jobs; --json lists every job)",
                    "...",
                    matrix::group_digits(self.jobs_omitted)
                );
            }
            last_index = Some(j.index);
            let _ = write!(s, "{:<8} {:<16}", j.index + 1, j.key);
            for (n, w) in names.iter().zip(&widths) {
                let v: String = j
                    .vars
                    .get(n)
                    .map(value_text)
                    .unwrap_or_default()
                    .chars()
                    .take(*w)
                    .collect();
                let _ = write!(s, " {v:<w$}");
            }
            let _ = writeln!(s, " {:>6} {:>10.4}", j.requests.len(), j.estimated_cost_usd);
        }
        let _ = writeln!(
            s,
            "{} jobs x {} steps ({}), {} generations, estimated cost ${:.4} (first attempts; retries and regenerations add to it); delivers: {}",
            matrix::group_digits(self.job_count),
            self.steps.len(),
            self.steps.join(", "),
            matrix::group_digits(self.generations),
            self.estimated_cost_usd,
            self.deliver.join(", ")
        );
        if self.gate_calls > 0 {
            let _ = writeln!(
                s,
                "of which {} gate calls (judges), ${:.4}: one per gate check of each first attempt; regenerations and retries judge again",
                matrix::group_digits(self.gate_calls),
                self.gate_calls_cost_usd
            );
        }
        if self.unpriced_generations + self.unpriced_gate_calls > 0 {
            let what = match (self.unpriced_generations, self.unpriced_gate_calls) {
                (g, 0) => format!("{} generations", matrix::group_digits(g)),
                (0, c) => format!("{} gate calls", matrix::group_digits(c)),
                (g, c) => format!(
                    "{} generations and {} gate calls",
                    matrix::group_digits(g),
                    matrix::group_digits(c)
                ),
            };
            let _ = writeln!(
                s,
                "{what} have no known price (provider {}): the estimate counts them as $0; give the provider a `prices` table",
                self.unpriced_providers
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        s
    }
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        o => o.to_string(),
    }
}
