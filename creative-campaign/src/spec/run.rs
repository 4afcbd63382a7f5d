//! A campaign's run: starting it (journal, cache, event log, live delivery),
//! watching it, and waiting for its outcome.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::Stream;
use tokio::sync::mpsc;

use crate::deliver::ReportBuilder;
use crate::deliver::{DeliveryLedger, Manifest, ManifestSummary, Report, Sinks};
use crate::spec::campaign::{Campaign, CampaignError, CampaignOptions, Identity, EVENTS_FILE, STATE_DIR};
use crate::spec::finish;
use crate::spec::live::{DeliverAsJobsEnd, LiveDelivery};
use crate::spec::plan::Plan;
use crate::store::{lock_out_dir, DiskCache, FileJournal, PayloadPins, StoreError};
use creative_core::events::{Event, EventKind, Progress};
use creative_core::exec::{Retain, RunHandle, RunOptions, RunOutcome};

impl Campaign {
    pub(crate) fn start_all(&self, opts: CampaignOptions) -> Result<CampaignRun, CampaignError> {
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
        // The campaign's own cache lives in the output folder this run holds
        // locked; one of `output.cache_dir` may be shared with other runs.
        let cache = match &self.cache_dir {
            Some(dir) => DiskCache::open(dir)?,
            None => DiskCache::open_owned(&state_dir)?,
        }
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
        // The pass placing files follows the run, job by job, as they end.
        let finisher = finish::Finisher::start(self.clone(), out_dir.clone(), journal.live_records())?;
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
            ended: Some(finisher.ended()),
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
                finisher,
            },
            events: rx,
        })
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
        /// Places the files of the jobs that ended, in matrix order.
        finisher: finish::Finisher,
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
                finisher,
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
                    .finalize_until(
                        &self.out_dir,
                        Some(&outcome),
                        Some(&cancel),
                        started,
                        observed,
                        Some(finisher),
                    )
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
