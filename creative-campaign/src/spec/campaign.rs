//! A built campaign: run it, resume it, dry-run it, deliver it.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::Stream;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::deliver::ReportBuilder;
use crate::deliver::{DeliveryLedger, FileNameTemplate, Manifest, ManifestSummary, Report, Sink, Sinks};
use crate::spec::finish;
use crate::spec::live::{DeliverAsJobsEnd, LiveDelivery};
use crate::spec::matrix::{self, JobMatrix};
use crate::spec::schema::BudgetSpec;
use crate::spec::steps::SpecGenerate;
use crate::store::{
    collect_garbage, lock_out_dir, write_atomic, DiskCache, FileJournal, GcError, GcReport, LockError, PayloadPins,
    StoreError,
};
use creative_core::cancel::CancellationToken;
use creative_core::dag::Dag;
use creative_core::events::{Event, EventKind, Progress};
use creative_core::exec::{Executor, Retain, RunError, RunHandle, RunOptions, RunOutcome};
use creative_core::gate::QualityGate;
use creative_core::job::{Job, Vars};
use creative_core::pipeline::Pipeline;
use creative_core::provider::Provider;
use creative_core::resilience::Budget;

/// A runnable campaign, built from a spec with [`Spec::build`](crate::spec::Spec::build).
#[derive(Clone)]
pub struct Campaign {
    pub(crate) name: String,
    pub(crate) spec_hash: String,
    pub(crate) executor: Executor,
    pub(crate) dag: Arc<Dag>,
    pub(crate) jobs: JobMatrix,
    pub(crate) steps: Vec<String>,
    pub(crate) deliver: Vec<String>,
    pub(crate) budget: BudgetSpec,
    pub(crate) file_names: FileNameTemplate,
    pub(crate) out_dir: PathBuf,
    pub(crate) cache_dir: Option<PathBuf>,
    /// The cache's size cap (`output.cache_max_mb`), in bytes.
    pub(crate) cache_max_bytes: Option<u64>,
    pub(crate) contact_sheet: bool,
    pub(crate) sinks: Vec<Arc<dyn Sink>>,
    /// Marks on delivered files (`output.c2pa` or `output.xmp`), shared by
    /// the early and final passes.
    pub(crate) marking: Option<crate::deliver::Marking>,
    pub(crate) generators: Vec<(String, Arc<SpecGenerate>)>,
    /// The gates around steps that are not generate steps, by step name.
    pub(crate) gated: Vec<(String, Vec<Arc<dyn QualityGate>>)>,
    pub(crate) providers: BTreeMap<String, Arc<dyn Provider>>,
    /// A fingerprint of each step's definition, for the journal.
    pub(crate) definitions: BTreeMap<String, String>,
    /// What a reviewer's rejections change (read from the output folder when
    /// a run resumes), shared with the generate steps.
    pub(crate) revisions: Arc<std::sync::RwLock<crate::review::Revisions>>,
}

/// Which campaign wrote an output folder: `.creative/campaign.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct Identity {
    pub(crate) campaign: String,
    pub(crate) spec_hash: String,
}

impl Identity {
    const FILE: &'static str = "campaign.json";

    /// The identity recorded in a state folder, if any.
    pub(crate) fn read(state_dir: &Path) -> Result<Option<Identity>, StoreError> {
        let path = state_dir.join(Self::FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError(format!("read {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError(format!("read {}: {e}", path.display()))),
        }
    }

    fn write(&self, state_dir: &Path) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| StoreError(e.to_string()))?;
        write_atomic(&state_dir.join(Self::FILE), &json, true)
            .map_err(|e| StoreError(format!("write {}: {e}", state_dir.join(Self::FILE).display())))
    }
}

impl std::fmt::Debug for Campaign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Campaign")
            .field("name", &self.name)
            .field("jobs", &self.jobs.len())
            .field("steps", &self.steps)
            .field("deliver", &self.deliver)
            .finish_non_exhaustive()
    }
}

/// How to run a campaign.
#[derive(Debug, Clone, Default)]
pub struct CampaignOptions {
    /// Output folder; default: the spec's `output.dir`, else `out`.
    pub out_dir: Option<PathBuf>,
    /// Continue the run recorded in the output folder's journal: finished steps
    /// are not run again.
    pub resume: bool,
    /// Bypass the cache (results are still stored in it).
    pub force: bool,
    /// Call no provider: expand the matrix and estimate the cost.
    pub dry_run: bool,
    /// Forward the run's events (take them with [`CampaignRun::events`]).
    pub events: bool,
    /// Cancel the run when this token is cancelled.
    pub cancel: Option<CancellationToken>,
    /// Run only this shard of the jobs (split by job key, so any machine can run
    /// any shard); merge the shards' folders with [`Campaign::merge`].
    pub shard: Option<Shard>,
}

/// One of `count` parts of a campaign: the jobs whose key hashes to `index`.
///
/// Written `K/N` with K from 1 to N, as on the command line:
///
/// ```
/// use creative_campaign::spec::Shard;
/// let s: Shard = "2/4".parse().unwrap();
/// assert_eq!((s.index, s.count), (1, 4));
/// assert_eq!(s.to_string(), "2/4");
/// assert_eq!("5/4".parse::<Shard>().unwrap_err().field(), "shard");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based shard index, below `count`.
    pub index: u32,
    /// How many shards the campaign is split into.
    pub count: u32,
}

impl Shard {
    /// Whether a job belongs to this shard.
    pub fn contains(&self, job: &Job) -> bool {
        job.shard(self.count) == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = creative_core::ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || creative_core::ConfigError::new("shard", format!("`{s}`: write K/N with 1 <= K <= N, such as 2/4"));
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (u32, u32) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || k == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { index: k - 1, count: n })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

/// Why a campaign could not run or finish.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CampaignError {
    /// The journal, cache or output folder failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The executor refused the run.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Another run (in this process or another) is writing the output folder.
    #[error(
        "output folder {} is in use by another run (pid {}); wait for it to end or choose another output folder",
        out_dir.display(),
        holder.map_or_else(|| "unknown".to_string(), |p| p.to_string())
    )]
    OutputInUse {
        /// The folder.
        out_dir: PathBuf,
        /// The holding process, when it could be read.
        holder: Option<u32>,
    },
    /// `--resume` into a folder another campaign wrote (a spec with another
    /// `name`): resuming would mix two campaigns' files and records. An edited
    /// spec of the same campaign resumes, re-running what the edit changed.
    #[error(
        "output folder {} holds campaign `{found}`, not `{expected}`; resume it with its own spec, or run this one into another folder (or without --resume, which starts it afresh)",
        out_dir.display()
    )]
    OtherCampaign {
        /// The folder.
        out_dir: PathBuf,
        /// The campaign that wrote it.
        found: String,
        /// This campaign.
        expected: String,
    },
    /// A folder given to [`Campaign::merge`] is not a shard of this spec.
    #[error("cannot merge {}: {reason}", dir.display())]
    NotAShard {
        /// The folder.
        dir: PathBuf,
        /// Why it does not belong.
        reason: String,
    },
    /// A provider the pipeline calls could not be reached before the run
    /// ([`Campaign::preflight`]).
    #[error("{}", unreachable_text(failures))]
    Unreachable {
        /// Provider id and what went wrong, for each one that failed.
        failures: Vec<(String, String)>,
    },
}

fn unreachable_text(failures: &[(String, String)]) -> String {
    let each: Vec<String> = failures
        .iter()
        .map(|(id, why)| format!("provider `{id}` cannot be reached: {why}"))
        .collect();
    each.join("; ")
}

impl CampaignError {
    fn from_lock(out_dir: &Path, e: LockError) -> Self {
        match e {
            LockError::Busy(holder) => CampaignError::OutputInUse {
                out_dir: out_dir.to_path_buf(),
                holder,
            },
            LockError::Store(e) => CampaignError::Store(e),
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

/// Everything a finished campaign left: the engine's outcome, the manifest and
/// the report (also written to the output folder as `manifest.json`,
/// `report.json` and `contact_sheet.html`).
#[derive(Debug, Clone)]
pub struct CampaignOutcome {
    /// The engine's outcome of this session.
    pub outcome: RunOutcome,
    /// The manifest, counted (its entries are in `manifest.json`:
    /// [`CampaignOutcome::read_manifest`]).
    pub manifest: ManifestSummary,
    /// The report.
    pub report: Report,
    /// The output folder.
    pub out_dir: PathBuf,
    /// The plan, for a dry run.
    pub plan: Option<Plan>,
}

impl CampaignOutcome {
    /// Read the manifest's entries back from `manifest.json` (a dry run has
    /// none). The whole manifest is in memory then: for a large campaign,
    /// stream the file instead.
    pub fn read_manifest(&self) -> Result<Manifest, StoreError> {
        if self.plan.is_some() {
            return Ok(Manifest {
                campaign: self.manifest.campaign.clone(),
                spec_hash: self.manifest.spec_hash.clone(),
                ..Manifest::default()
            });
        }
        Manifest::read(&self.out_dir.join("manifest.json"))
    }
}

/// A campaign's events, forwarded while they are also written to the output
/// folder's event log.
pub struct CampaignEvents {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl CampaignEvents {
    /// The next event; `None` once the run is over.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl Stream for CampaignEvents {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

enum RunState {
    Dry(Plan),
    Live {
        handle: RunHandle,
        /// Writes the event log; returns the report's view of this session's
        /// events (none on a resume, whose earlier sessions are in the log).
        pump: tokio::task::JoinHandle<Option<ReportBuilder>>,
        /// Held until the outputs are written.
        lock: fs::File,
        /// Feeds the sinks as jobs end.
        live: Option<LiveDelivery>,
        /// When the run started: the manifest's `started_at`.
        started: SystemTime,
    },
}

/// A campaign that is running. Dropping it does not stop it; call
/// [`CampaignRun::cancel`].
pub struct CampaignRun {
    campaign: Campaign,
    out_dir: PathBuf,
    state: RunState,
    events: Option<CampaignEvents>,
}

/// The folder inside the output folder that holds the journal, payloads, cache
/// and event log.
pub const STATE_DIR: &str = ".creative";
pub(crate) const EVENTS_FILE: &str = "events.jsonl";

impl Campaign {
    /// The revisions the output folder's review decisions ask for, each on
    /// the generate steps it comes from.
    fn review_revisions(&self, out_dir: &Path) -> Result<crate::review::Revisions, StoreError> {
        let decisions = crate::review::read(out_dir).map_err(|e| StoreError(e.to_string()))?;
        let revisions = crate::review::Revisions::from_decisions(&decisions);
        if revisions.is_empty() {
            return Ok(revisions);
        }
        let is_generator = |s: &str| self.generators.iter().any(|(n, _)| n == s);
        let graph = self.dag.graph();
        let upstream = |step: &str| {
            let mut found = Vec::new();
            let mut todo: Vec<usize> = graph.index_of(step).into_iter().collect();
            let mut seen = std::collections::HashSet::new();
            while let Some(n) = todo.pop() {
                for &i in graph.inputs(n) {
                    if seen.insert(i) {
                        let name = graph.name(i).to_string();
                        if is_generator(&name) {
                            found.push(name);
                        } else {
                            todo.push(i);
                        }
                    }
                }
            }
            found
        };
        Ok(revisions.onto_generators(is_generator, upstream))
    }

    /// The campaign's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The jobs, streamed from the matrix (restricted to a shard when started
    /// with one): count them with [`JobMatrix::count`], walk them with
    /// [`JobMatrix::iter`]; none is held in memory.
    pub fn jobs(&self) -> &JobMatrix {
        &self.jobs
    }

    /// The pipeline.
    pub fn dag(&self) -> &Arc<Dag> {
        &self.dag
    }

    /// The executor, with the spec's providers, limits and retry policy.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// Step names, in spec order.
    pub fn steps(&self) -> &[String] {
        &self.steps
    }

    /// Steps whose outputs are delivered.
    pub fn deliver_steps(&self) -> &[String] {
        &self.deliver
    }

    /// The spec's output folder (`out` unless the spec says otherwise).
    pub fn default_out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// BLAKE3 of the spec.
    pub fn spec_hash(&self) -> &str {
        &self.spec_hash
    }

    /// A fresh budget with the spec's limits.
    pub fn budget(&self) -> Budget {
        let mut b = Budget::new();
        if let Some(c) = self.budget.max_cost_usd {
            b = b.max_cost_usd(c);
        }
        if let Some(a) = self.budget.max_attempts {
            b = b.max_attempts(a);
        }
        if let Some(m) = self.budget.max_minutes {
            b = b.deadline_in(Duration::from_secs_f64(m * 60.0));
        }
        b
    }

    /// Add a sink of the host's own.
    pub fn add_sink(&mut self, sink: Arc<dyn Sink>) {
        self.sinks.push(sink);
    }

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
            requests.extend(self.gate_calls(step, g.gates_for(job), job));
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
                    for r in self.gate_calls(step, g.gates_for(job), job) {
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

    /// Start the campaign on the current tokio runtime.
    ///
    /// The output folder gets `.creative/` (journal, payloads, cache, event
    /// log); [`CampaignRun::wait`] then delivers the assets and writes
    /// `manifest.json`, `report.json` and `contact_sheet.html`. Without
    /// `resume`, a previous journal in the folder is moved aside and every step
    /// runs again (the cache still saves the provider calls unless `force`).
    pub fn start(&self, opts: CampaignOptions) -> Result<CampaignRun, CampaignError> {
        match opts.shard {
            // The shard's campaign is this one with its jobs only, so its manifest
            // and report account for exactly the work it did.
            Some(shard) => self.shard(shard).start_all(opts),
            None => self.start_all(opts),
        }
    }

    /// This campaign restricted to one shard of its jobs (its plan, manifest and
    /// report then account for exactly that part).
    ///
    /// Each shard gets its share of the spec's money and attempt limits (the
    /// limit divided by the shard count), so N shards together never spend more
    /// than the spec allows. The deadline is not divided: shards run at once.
    pub fn shard(&self, shard: Shard) -> Campaign {
        let mut part = self.clone();
        part.jobs = self.jobs.shard(shard);
        let n = f64::from(shard.count);
        part.budget.max_cost_usd = self.budget.max_cost_usd.map(|c| c / n);
        part.budget.max_attempts = self.budget.max_attempts.map(|a| a / u64::from(shard.count));
        part
    }

    /// Concerns about the providers' configuration that do not stop a build but
    /// would make calls fail (no API key for a hosted service), each naming its
    /// provider. `creative check` and the runner print them.
    pub fn warnings(&self) -> Vec<String> {
        self.providers
            .iter()
            .flat_map(|(id, p)| p.warnings().into_iter().map(move |w| format!("provider `{id}`: {w}")))
            .collect()
    }

    /// The money limit this campaign (or shard) runs under, if any.
    pub fn max_cost_usd(&self) -> Option<f64> {
        self.budget.max_cost_usd
    }

    /// Ask every provider the pipeline calls whether it can be reached
    /// ([`Provider::preflight`]), all at once, each within `timeout`. Call it
    /// before [`start`](Self::start) to fail fast on a server that is not running
    /// or a wrong base URL, rather than retrying and waiting on open circuits.
    pub async fn preflight(&self, timeout: Duration) -> Result<(), CampaignError> {
        let used: std::collections::BTreeSet<String> = self.dag.providers().into_iter().collect();
        let checks = used.into_iter().filter_map(|id| {
            let p = self.providers.get(&id)?.clone();
            Some(async move {
                let ctx = creative_core::provider::CallCtx {
                    cancel: CancellationToken::new(),
                    attempt: 1,
                    deadline: Some(std::time::Instant::now() + timeout),
                    observer: None,
                };
                let r = match tokio::time::timeout(timeout, p.preflight(&ctx)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {:.1} s", timeout.as_secs_f64())),
                };
                (id, r)
            })
        });
        let failures: Vec<(String, String)> = futures::future::join_all(checks)
            .await
            .into_iter()
            .filter_map(|(id, r)| r.err().map(|e| (id, e)))
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(CampaignError::Unreachable { failures })
        }
    }

    /// Merge the output folders of a campaign's shards into `out_dir`: their
    /// journals, payloads and event logs are combined, then the assets, manifest,
    /// report and contact sheet are made as for one run. The manifest equals that
    /// of an unsharded run but for the run-specific fields: each asset keeps what
    /// its shard recorded (latency, attempt, cached, `finished_at`), and
    /// `started_at` and `finished_at` at the top are the merge's.
    pub async fn merge(
        &self,
        out_dir: &Path,
        shard_dirs: &[PathBuf],
    ) -> Result<(ManifestSummary, Report), CampaignError> {
        let started = SystemTime::now();
        // Every part must be a run of this very spec: a part of another
        // campaign, or of an edited spec, would merge another campaign's
        // figures under this one's name.
        for dir in shard_dirs {
            let not = |reason: String| CampaignError::NotAShard {
                dir: dir.clone(),
                reason,
            };
            match Identity::read(&dir.join(STATE_DIR))? {
                None => return Err(not("it holds no campaign run (no .creative/campaign.json)".into())),
                Some(id) if id.campaign != self.name => {
                    return Err(not(format!(
                        "it was written by campaign `{}`, not `{}`",
                        id.campaign, self.name
                    )))
                }
                Some(id) if id.spec_hash != self.spec_hash => {
                    return Err(not(format!(
                        "it was run from another version of the spec (spec hash {} here, {} there); run that shard again with this spec, with --resume",
                        short(&self.spec_hash),
                        short(&id.spec_hash)
                    )))
                }
                Some(_) => {}
            }
        }
        let state = out_dir.join(STATE_DIR);
        let lock = lock_out_dir(&state).map_err(|e| CampaignError::from_lock(out_dir, e))?;
        let sources: Vec<PathBuf> = shard_dirs.iter().map(|d| d.join(STATE_DIR)).collect();
        let dest = state.clone();
        tokio::task::spawn_blocking(move || merge_state(&dest, &sources))
            .await
            .map_err(|e| StoreError(format!("merge task failed: {e}")))??;
        Identity {
            campaign: self.name.clone(),
            spec_hash: self.spec_hash.clone(),
        }
        .write(&state)?;
        let done = self.finalize_until(out_dir, None, None, started, None).await;
        drop(lock);
        done
    }

    /// Store housekeeping for the output folder `out_dir` (default: the spec's):
    /// remove the payloads that neither the journal nor the cache nor the last
    /// run's lists name, stale temporaries and `journal.jsonl.prev`; with
    /// `dry_run`, only count them. Refuses while a run holds the folder. See
    /// [`collect_garbage`].
    ///
    /// A cache with its own folder (`output.cache_dir`, perhaps shared by other
    /// campaigns) is left alone: its size cap bounds it.
    pub fn gc(&self, out_dir: Option<&Path>, dry_run: bool) -> Result<GcReport, GcError> {
        let out_dir = out_dir.unwrap_or(&self.out_dir);
        crate::spec::check_out_dir(out_dir)?;
        collect_garbage(out_dir, dry_run)
    }

    fn start_all(&self, opts: CampaignOptions) -> Result<CampaignRun, CampaignError> {
        let started = SystemTime::now();
        let out_dir = opts.out_dir.clone().unwrap_or_else(|| self.out_dir.clone());
        crate::spec::check_out_dir(&out_dir)?;
        if opts.dry_run {
            return Ok(CampaignRun {
                campaign: self.clone(),
                out_dir,
                state: RunState::Dry(self.plan()),
                events: None,
            });
        }
        let state_dir = out_dir.join(STATE_DIR);
        let lock = lock_out_dir(&state_dir).map_err(|e| CampaignError::from_lock(&out_dir, e))?;
        if opts.resume {
            if let Some(found) = Identity::read(&state_dir)? {
                if found.campaign != self.name {
                    return Err(CampaignError::OtherCampaign {
                        out_dir,
                        found: found.campaign,
                        expected: self.name.clone(),
                    });
                }
            }
        }
        Identity {
            campaign: self.name.clone(),
            spec_hash: self.spec_hash.clone(),
        }
        .write(&state_dir)?;
        let revisions = if opts.resume {
            self.review_revisions(&out_dir)?
        } else {
            crate::review::Revisions::default()
        };
        let journal = FileJournal::open(&state_dir, opts.resume)?
            .with_definitions(self.definitions.clone())
            .with_revisions(revisions.fingerprints());
        *self.revisions.write().unwrap_or_else(|p| p.into_inner()) = revisions;
        let cache = DiskCache::open(self.cache_dir.clone().unwrap_or_else(|| state_dir.clone()))?
            .with_blob_store(journal.blobs());
        let (journal, cache) = match self.cache_max_bytes {
            // A capped cache sharing the journal's payloads evicts none the
            // journal names. A cache of its own shares no payload with it.
            Some(cap) if self.cache_dir.is_none() => {
                let pins = Arc::new(PayloadPins::new());
                (
                    journal.with_pins(pins.clone())?,
                    cache.with_max_bytes(cap).with_pins(pins),
                )
            }
            Some(cap) => (journal, cache.with_max_bytes(cap)),
            None => (journal, cache),
        };
        let blobs = journal.blobs().clone();
        let (journal, cache) = (Arc::new(journal), Arc::new(cache));
        let log_path = state_dir.join(EVENTS_FILE);
        // The ledger: what earlier sessions of this run paid and tried, read from
        // their event log, counts against the limits, so a budget holds across
        // `--resume` instead of restarting each session.
        let spent = if opts.resume {
            Ledger::read(&log_path)?
        } else {
            Ledger::default()
        };
        let budget = self.budget().already_spent(spent.cost_usd, spent.attempts);
        let log = open_event_log(&log_path, opts.resume)?;
        // The run's token, known before the run starts, so the queue feeding
        // the sinks stops waiting when the run is cancelled.
        let cancel = opts.cancel.clone().unwrap_or_default();
        let (queue, live) = if self.sinks.is_empty() {
            (None, None)
        } else {
            let ledger = DeliveryLedger::open(&state_dir, !opts.resume)?;
            let (q, l) = LiveDelivery::start(
                Sinks::new(&self.sinks),
                ledger,
                crate::spec::finish::SINK_CONCURRENCY,
                cancel.clone(),
            );
            (Some(q), Some(l))
        };
        let run_opts = RunOptions {
            budget: Some(Arc::new(budget)),
            cache: Some(cache),
            force: opts.force,
            journal: Some(journal),
            cancel: Some(cancel),
            jobs_hint: Some(self.jobs.count()),
            // The journal is the record: finished jobs leave memory as they end.
            retain: Retain::Failures,
        };
        let pipeline = Arc::new(DeliverAsJobsEnd {
            inner: self.dag.clone(),
            dir: self.directory_sink(&out_dir, blobs),
            deliver: self.deliver.clone().into(),
            thumbnails: self.contact_sheet,
            sinks: queue,
        });
        let mut handle = self.executor.start(pipeline, self.jobs.iter(), run_opts)?;
        let mut stream = handle
            .events()
            .ok_or_else(|| StoreError("the executor gave no event stream".into()))?;
        let (tx, rx) = if opts.events {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(CampaignEvents { rx }))
        } else {
            (None, None)
        };
        // A fresh run's report is made from the events as they pass, not read
        // back from the log at the end (a quarter of the end of a 10,000-job run).
        let mut observed = (!opts.resume).then(ReportBuilder::new);
        let pump = tokio::spawn(async move {
            let mut log = Some(log);
            let mut buf = Vec::with_capacity(64 * 1024);
            while let Some(first) = stream.recv().await {
                // Every event already waiting goes out with this one in one
                // write, as soon as it is seen (a killed run keeps every event
                // up to the kill for the report; the busier the run, the fewer
                // writes per event).
                let mut next = Some(first);
                while let Some(e) = next {
                    if log.is_some() {
                        let at = buf.len();
                        match serde_json::to_writer(&mut buf, &e) {
                            Ok(()) => buf.push(b'\n'),
                            Err(_) => buf.truncate(at),
                        }
                    }
                    if let Some(b) = &mut observed {
                        b.observe(&e);
                    }
                    if let Some(tx) = &tx {
                        let _ = tx.send(e);
                    }
                    next = if buf.len() < 64 * 1024 { stream.try_recv() } else { None };
                }
                if let Some(f) = &mut log {
                    if let Err(err) = f.write_all(&buf) {
                        tracing::warn!(error = %err, "event log write failed; the report may undercount");
                        log = None;
                    }
                }
                buf.clear();
            }
            observed
        });
        Ok(CampaignRun {
            campaign: self.clone(),
            out_dir,
            state: RunState::Live {
                handle,
                pump,
                lock,
                live,
                started,
            },
            events: rx,
        })
    }

    /// Deliver and account for what the journal in `out_dir` records (after a
    /// run, or to rebuild the outputs from a merged journal). The manifest's
    /// `started_at` is the time of this call.
    pub async fn finalize(
        &self,
        out_dir: &Path,
        outcome: Option<&RunOutcome>,
    ) -> Result<(ManifestSummary, Report), CampaignError> {
        self.finalize_until(out_dir, outcome, None, SystemTime::now(), None)
            .await
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Money and attempts a run's earlier sessions spent, from its event log.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Ledger {
    pub(crate) cost_usd: f64,
    pub(crate) attempts: u64,
}

impl Ledger {
    /// Sum the settled attempts of an event log (none when there is no log).
    pub(crate) fn read(path: &Path) -> Result<Ledger, StoreError> {
        let mut l = Ledger::default();
        if !path.exists() {
            return Ok(l);
        }
        finish::read_events(path, |e| {
            if let EventKind::AttemptFinished { cost_usd, .. } = e.kind {
                l.cost_usd += cost_usd;
                l.attempts += 1;
            }
        })?;
        Ok(l)
    }
}

fn open_event_log(path: &Path, resume: bool) -> Result<fs::File, StoreError> {
    if !resume && path.exists() {
        let prev = path.with_extension("jsonl.prev");
        fs::rename(path, &prev).map_err(|e| StoreError(format!("move {} aside: {e}", path.display())))?;
    }
    if resume {
        // Cut a line torn by a kill so the next event starts on its own line.
        if let Ok(text) = fs::read(path) {
            let keep = text.iter().rposition(|&b| b == b'\n').map(|i| i + 1).unwrap_or(0);
            if keep < text.len() {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| StoreError(format!("open {}: {e}", path.display())))?;
                f.set_len(keep as u64)
                    .map_err(|e| StoreError(format!("truncate {}: {e}", path.display())))?;
            }
        }
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| StoreError(format!("open {}: {e}", path.display())))
}

/// Every event in an event log (unreadable lines are skipped).
/// Combine shards' state folders into `dest`: journal records (streamed, torn
/// lines dropped, the latest record of each step), content-addressed payloads
/// (linked or copied once), event logs.
fn merge_state(dest: &Path, sources: &[PathBuf]) -> Result<(), StoreError> {
    use std::io::BufWriter;
    let io = |what: &str, p: &Path, e: std::io::Error| StoreError(format!("{what} {}: {e}", p.display()));
    fs::create_dir_all(dest).map_err(|e| io("create", dest, e))?;
    let journal_path = dest.join(FileJournal::FILE);
    let events_path = dest.join(EVENTS_FILE);
    let (journal_tmp, events_tmp) = (
        crate::store::temp_path(&journal_path),
        crate::store::temp_path(&events_path),
    );
    let mut journal = BufWriter::new(fs::File::create(&journal_tmp).map_err(|e| io("create", &journal_tmp, e))?);
    let mut events = BufWriter::new(fs::File::create(&events_tmp).map_err(|e| io("create", &events_tmp, e))?);
    for src in sources {
        let index = FileJournal::index(&src.join(FileJournal::FILE))?;
        if index.is_empty() {
            return Err(StoreError(format!("{} holds no finished step to merge", src.display())));
        }
        for r in index.iter() {
            serde_json::to_writer(&mut journal, &r?).map_err(|e| StoreError(e.to_string()))?;
            journal.write_all(b"\n").map_err(|e| io("write", &journal_tmp, e))?;
        }
        copy_tree(&src.join("objects"), &dest.join("objects"))?;
        finish::read_events(&src.join(EVENTS_FILE), |e| {
            if let Ok(mut line) = serde_json::to_vec(&e) {
                line.push(b'\n');
                let _ = events.write_all(&line);
            }
        })?;
    }
    for (w, tmp, path) in [
        (journal, &journal_tmp, &journal_path),
        (events, &events_tmp, &events_path),
    ] {
        let f = w.into_inner().map_err(|e| io("write", tmp, e.into_error()))?;
        f.sync_all().map_err(|e| io("sync", tmp, e))?;
        fs::rename(tmp, path).map_err(|e| io("rename", path, e))?;
    }
    crate::store::sync_dir(&journal_path).map_err(|e| io("sync", dest, e))?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), StoreError> {
    let io = |what: &str, p: &Path, e: std::io::Error| StoreError(format!("{what} {}: {e}", p.display()));
    let entries = match fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("read", from, e)),
    };
    fs::create_dir_all(to).map_err(|e| io("create", to, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io("read", from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst)?;
        } else if !dst.exists() {
            // Payloads are named by their hash: one already there is the same
            // bytes. A link costs no copy; across file systems, copy.
            if fs::hard_link(&src, &dst).is_err() {
                let data = fs::read(&src).map_err(|e| io("read", &src, e))?;
                write_atomic(&dst, &data, false).map_err(|e| io("write", &dst, e))?;
            }
        }
    }
    Ok(())
}

impl CampaignRun {
    /// The run's events (once; `None` unless asked for in the options, and for
    /// dry runs).
    pub fn events(&mut self) -> Option<CampaignEvents> {
        self.events.take()
    }

    /// The engine's handle (`None` for a dry run).
    pub fn handle(&self) -> Option<&RunHandle> {
        match &self.state {
            RunState::Live { handle, .. } => Some(handle),
            RunState::Dry(_) => None,
        }
    }

    /// Progress so far.
    pub fn progress(&self) -> Progress {
        match &self.state {
            RunState::Live { handle, .. } => handle.progress(),
            RunState::Dry(p) => Progress {
                jobs_total: p.job_count,
                ..Progress::default()
            },
        }
    }

    /// Cancel: nothing new starts; finished steps stay in the journal, so the run
    /// can be resumed.
    pub fn cancel(&self) {
        if let RunState::Live { handle, .. } = &self.state {
            handle.cancel();
        }
    }

    /// The output folder.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// The campaign.
    pub fn campaign(&self) -> &Campaign {
        &self.campaign
    }

    /// Wait for the end, deliver, and write the manifest, report and contact
    /// sheet.
    pub async fn wait(self) -> Result<CampaignOutcome, CampaignError> {
        match self.state {
            RunState::Dry(plan) => {
                let mut report = Report {
                    campaign: self.campaign.name.clone(),
                    estimated_cost_usd: Some(plan.estimated_cost_usd),
                    ..Report::default()
                };
                report.jobs.total = plan.job_count;
                Ok(CampaignOutcome {
                    outcome: RunOutcome {
                        status: creative_core::events::Status::Succeeded,
                        jobs: Vec::new(),
                        counts: Default::default(),
                        stats: Default::default(),
                        progress: Progress {
                            jobs_total: plan.job_count,
                            ..Progress::default()
                        },
                        elapsed: Duration::ZERO,
                        degraded: Vec::new(),
                    },
                    manifest: ManifestSummary {
                        campaign: self.campaign.name.clone(),
                        spec_hash: self.campaign.spec_hash.clone(),
                        ..ManifestSummary::default()
                    },
                    report,
                    out_dir: self.out_dir,
                    plan: Some(plan),
                })
            }
            RunState::Live {
                handle,
                pump,
                lock,
                live,
                started,
            } => {
                let cancel = handle.cancel_token();
                let outcome = handle.wait().await;
                // The stream ends when the run's last sender is dropped.
                let observed = pump.await.ok().flatten();
                if let Some(live) = live {
                    live.close(&cancel).await;
                }
                let (manifest, report) = self
                    .campaign
                    .finalize_until(&self.out_dir, Some(&outcome), Some(&cancel), started, observed)
                    .await?;
                drop(lock);
                Ok(CampaignOutcome {
                    outcome,
                    manifest,
                    report,
                    out_dir: self.out_dir,
                    plan: None,
                })
            }
        }
    }
}
