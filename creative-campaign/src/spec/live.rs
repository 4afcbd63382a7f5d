//! Delivery as jobs finish.
//!
//! A campaign's pipeline is wrapped so that each job, once it ends, writes its
//! delivered assets into the output folder at once: a host watching the folder
//! sees them arrive, and a killed run has already delivered every job it
//! finished. The pass placing files (which follows the run, see `spec::finish`)
//! stays authoritative: it names every file from the journal in a fixed order,
//! settles collisions, and rewrites what is missing, so early files never change
//! the manifest.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::deliver::{delivered_assets, AssetEntry, DeliveryLedger, DirectorySink, Sinks};
use crate::spec::ended::Ended;
use crate::store::ArtifactRecord;
use creative_core::artifact::Artifact;
use creative_core::cancel::CancellationToken;
use creative_core::dag::Dag;
use creative_core::events::EventKind;
use creative_core::exec::{JobCtx, JobResult};
use creative_core::pipeline::Pipeline;

/// Assets of a job up to this many bytes in all are delivered on the job's
/// own thread (see [`DeliverAsJobsEnd`]).
const INLINE_BYTES: usize = 64 * 1024;

/// A [`Dag`] whose jobs deliver their own assets as they end.
pub(crate) struct DeliverAsJobsEnd {
    pub(crate) inner: Arc<Dag>,
    pub(crate) dir: DirectorySink,
    pub(crate) deliver: Arc<[String]>,
    /// Make the contact sheet's thumbnails here, on the worker pool, as each
    /// job ends, so the end of the run has no image work left.
    pub(crate) thumbnails: bool,
    /// Where each asset goes for the spec's sinks as it lands (none: no sinks).
    pub(crate) sinks: Option<DeliveryQueue>,
    /// Where each job is marked once it has ended, for the pass placing files
    /// that follows the run.
    pub(crate) ended: Option<Arc<Ended>>,
}

/// The sending end of the queue feeding a run's sinks as jobs end.
pub(crate) struct DeliveryQueue {
    tx: mpsc::Sender<(AssetEntry, Artifact)>,
    cancel: CancellationToken,
}

/// What feeds the sinks while a run goes: [`LiveDelivery::close`] it once the
/// run has ended to let it finish what is queued.
pub(crate) struct LiveDelivery {
    close: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl LiveDelivery {
    /// A queue and the task handing what it holds to `sinks`, a few assets at
    /// once, recording acknowledgements in `ledger`. A delivery that fails is
    /// logged here and handed again by the pass at the end of the run, which
    /// reports what still fails.
    pub(crate) fn start(
        sinks: Sinks,
        ledger: DeliveryLedger,
        concurrency: usize,
        cancel: CancellationToken,
    ) -> (DeliveryQueue, LiveDelivery) {
        let (tx, rx) = mpsc::channel::<(AssetEntry, Artifact)>(concurrency * 4);
        let (close_tx, close_rx) = oneshot::channel::<()>();
        let items = futures::stream::unfold((rx, Some(close_rx)), |(mut rx, mut close)| async move {
            loop {
                match close.as_mut() {
                    Some(c) => tokio::select! {
                        item = rx.recv() => return item.map(|i| (i, (rx, close))),
                        _ = c => {
                            // No more sends: what is queued is still handed out.
                            rx.close();
                            close = None;
                        }
                    },
                    None => return rx.recv().await.map(|i| (i, (rx, None))),
                }
            }
        });
        let task = tokio::spawn(async move {
            let (sinks, ledger) = (&sinks, &ledger);
            items
                .for_each_concurrent(concurrency, |(entry, artifact)| async move {
                    for e in sinks.deliver(ledger, &entry, &artifact).await {
                        tracing::debug!(job = %entry.job, step = %entry.step, error = %e, "delivery as the job ended failed; the end of the run tries again");
                    }
                })
                .await;
        });
        (
            DeliveryQueue { tx, cancel },
            LiveDelivery {
                close: Some(close_tx),
                task,
            },
        )
    }

    /// Let the queue empty, then end; a cancel of `cancel` stops it at once
    /// (the pass at the end of the run, or a resume, hands the rest).
    pub(crate) async fn close(mut self, cancel: &CancellationToken) {
        if let Some(c) = self.close.take() {
            let _ = c.send(());
        }
        tokio::select! {
            _ = &mut self.task => {}
            () = cancel.cancelled() => self.task.abort(),
        }
    }
}

#[async_trait]
impl Pipeline for DeliverAsJobsEnd {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn step_names(&self) -> Vec<Arc<str>> {
        self.inner.step_names()
    }

    fn providers(&self) -> Vec<String> {
        self.inner.providers()
    }

    async fn run_job(&self, ctx: &JobCtx) -> JobResult {
        let result = self.run_and_deliver(ctx).await;
        if let Some(ended) = &self.ended {
            ended.job_ended(result.job.key());
        }
        result
    }
}

impl DeliverAsJobsEnd {
    /// Run the job, then write its delivered files (and hand them to the sinks).
    async fn run_and_deliver(&self, ctx: &JobCtx) -> JobResult {
        let result = self.inner.run_job(ctx).await;
        let records: Vec<(&str, Vec<ArtifactRecord>)> = result
            .steps
            .iter()
            .map(|s| (&*s.step, s.outputs.iter().map(ArtifactRecord::of).collect()))
            .collect();
        let outputs: BTreeMap<&str, &[ArtifactRecord]> = records.iter().map(|(s, r)| (*s, &r[..])).collect();
        let mut files: Vec<(AssetEntry, String, Artifact)> = Vec::new();
        // The journal stamps a step's finish when it commits the record; sinks
        // handed the asset as the job ends see none yet.
        for entry in delivered_assets(&result.job, &self.deliver, &outputs, &|_| None) {
            // A name the template refuses is reported by the final pass.
            if let Ok(rel) = self.dir.path_for(&entry) {
                let artifact = result.outputs(&entry.step)[entry.index].clone();
                files.push((entry, rel, artifact));
            }
        }
        if files.is_empty() {
            return result;
        }
        let dir = self.dir.clone();
        let job = result.job.key().to_string();
        let job_outputs: Vec<Artifact> = if dir.marking().is_some() {
            result.steps.iter().flat_map(|s| s.outputs.iter().cloned()).collect()
        } else {
            Vec::new()
        };
        let thumbnails = self.thumbnails;
        // Small assets are written (and their thumbnails made) on this thread:
        // a link and a few kilobytes cost less than the hand-off to a
        // blocking thread and back. Larger ones, and marked ones (signing
        // takes milliseconds), go to the blocking pool.
        let small =
            dir.marking().is_none() && files.iter().map(|(_, _, a)| a.data().len()).sum::<usize>() <= INLINE_BYTES;
        let deliver = move || {
            if thumbnails {
                for (_, rel, a) in &files {
                    if let Err(e) = crate::deliver::make_thumbnail(dir.root(), a) {
                        tracing::debug!(job = %job, path = %rel, error = %e, "thumbnail failed; the sheet links the file");
                    }
                }
            }
            // Marks record an asset's sources as ingredients: this job's
            // outputs, all at hand.
            let source = |s: &creative_core::deliver::SourceEntry| {
                job_outputs.iter().find(|a| a.id() == &s.id).map(|a| a.data().clone())
            };
            files
                .into_iter()
                .filter(|(entry, rel, a)| match write(&dir, rel, entry, a, &source) {
                    Ok(ours) => ours,
                    // Best effort: the final pass retries and reports failures.
                    Err(e) => {
                        tracing::debug!(job = %job, path = %rel, error = %e, "early delivery failed");
                        false
                    }
                })
                .map(|(mut entry, rel, a)| {
                    // Sinks get the marked file as written, not the store's bytes.
                    let a = match dir.marking().and_then(|_| std::fs::read(dir.root().join(&rel)).ok()) {
                        Some(marked) => crate::spec::finish::marked_artifact(&entry, marked.into()),
                        None => a,
                    };
                    entry.path = Some(rel);
                    (entry, a)
                })
                .collect::<Vec<_>>()
        };
        let written = if small {
            deliver()
        } else {
            match tokio::task::spawn_blocking(deliver).await {
                Ok(w) => w,
                Err(_) => return result,
            }
        };
        if ctx.events_listened() {
            for (entry, _) in &written {
                ctx.emit(EventKind::AssetWritten {
                    job: entry.job.clone(),
                    step: entry.step.clone(),
                    index: entry.index,
                    path: entry.path.clone().unwrap_or_default(),
                });
            }
        }
        // Each asset goes to the sinks as it lands, through the delivery
        // queue: a slow receiver holds no worker, only a full queue waits.
        if let Some(queue) = &self.sinks {
            for item in written {
                tokio::select! {
                    sent = queue.tx.send(item) => if sent.is_err() { break },
                    () = queue.cancel.cancelled() => break,
                }
            }
        }
        result
    }
}

/// Write one file as its job ends, marked when the sink marks files.
fn write(
    dir: &DirectorySink,
    rel: &str,
    entry: &AssetEntry,
    artifact: &Artifact,
    source: &dyn Fn(&creative_core::deliver::SourceEntry) -> Option<bytes::Bytes>,
) -> Result<bool, creative_core::deliver::SinkError> {
    if dir.marking().is_some() {
        dir.write_marked_unless_taken(rel, entry, artifact.data(), source)
    } else {
        dir.write_unless_taken(rel, artifact)
    }
}
