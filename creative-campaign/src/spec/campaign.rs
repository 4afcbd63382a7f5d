//! A built campaign: run it, resume it, dry-run it, deliver it.

use std::collections::BTreeMap;
use std::fs::{self};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::deliver::{FileNameTemplate, ManifestSummary, Report, Sink};
use crate::spec::finish;
use crate::spec::matrix::JobMatrix;
use crate::spec::run::CampaignRun;
use crate::spec::schema::BudgetSpec;
use crate::spec::steps::SpecGenerate;
use crate::store::{
    collect_garbage, lock_out_dir, write_atomic, FileJournal, GcError, GcReport, LockError, StoreError,
};
use creative_core::cancel::CancellationToken;
use creative_core::dag::Dag;
use creative_core::exec::{Executor, RunError, RunOutcome};
use creative_core::gate::QualityGate;
use creative_core::job::Job;
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

    pub(crate) fn write(&self, state_dir: &Path) -> Result<(), StoreError> {
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
    pub(crate) fn from_lock(out_dir: &Path, e: LockError) -> Self {
        match e {
            LockError::Busy(holder) => CampaignError::OutputInUse {
                out_dir: out_dir.to_path_buf(),
                holder,
            },
            LockError::Store(e) => CampaignError::Store(e),
        }
    }
}

/// The folder inside the output folder that holds the journal, payloads, cache
/// and event log.
pub const STATE_DIR: &str = ".creative";
pub(crate) const EVENTS_FILE: &str = "events.jsonl";

impl Campaign {
    /// The revisions the output folder's review decisions ask for, each on
    /// the generate steps it comes from.
    pub(crate) fn review_revisions(&self, out_dir: &Path) -> Result<crate::review::Revisions, StoreError> {
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
        let done = self.finalize_until(out_dir, None, None, started, None, None).await;
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

    /// Deliver and account for what the journal in `out_dir` records (after a
    /// run, or to rebuild the outputs from a merged journal). The manifest's
    /// `started_at` is the time of this call.
    pub async fn finalize(
        &self,
        out_dir: &Path,
        outcome: Option<&RunOutcome>,
    ) -> Result<(ManifestSummary, Report), CampaignError> {
        self.finalize_until(out_dir, outcome, None, SystemTime::now(), None, None)
            .await
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
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
