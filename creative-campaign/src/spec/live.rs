//! Delivery as jobs finish.
//!
//! A campaign's pipeline is wrapped so that each job, once it ends, writes its
//! delivered assets into the output folder at once: a host watching the folder
//! sees them arrive, and a killed run has already delivered every job it
//! finished. The pass at the end of the run stays authoritative: it names every
//! file from the journal in a fixed order, settles collisions, and rewrites what
//! is missing, so early files never change the manifest.

use std::sync::Arc;

use async_trait::async_trait;

use crate::deliver::{AssetEntry, DirectorySink};
use creative_core::artifact::Artifact;
use creative_core::events::EventKind;
use creative_core::exec::{JobCtx, JobResult};
use creative_core::pipeline::{Dag, Pipeline};

/// A [`Dag`] whose jobs deliver their own assets as they end.
pub(crate) struct DeliverAsJobsEnd {
    pub(crate) inner: Arc<Dag>,
    pub(crate) dir: DirectorySink,
    pub(crate) deliver: Arc<[String]>,
    /// Make the contact sheet's thumbnails here, on the worker pool, as each
    /// job ends, so the end of the run has no image work left.
    pub(crate) thumbnails: bool,
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
        let result = self.inner.run_job(ctx).await;
        let mut files: Vec<(String, usize, String, Artifact)> = Vec::new();
        for step in self.deliver.iter() {
            for (index, a) in result.outputs(step).iter().enumerate() {
                let entry = AssetEntry {
                    job: result.job.key().to_string(),
                    vars: (**result.job.vars()).clone(),
                    step: step.clone(),
                    index,
                    id: a.id().clone(),
                    media: a.media().clone(),
                    bytes: a.data().len() as u64,
                    path: None,
                    meta: Default::default(),
                    finished_at: None,
                    provenance: Default::default(),
                    sources: Vec::new(),
                };
                // A name the template refuses is reported by the final pass.
                if let Ok(rel) = self.dir.path_for(&entry) {
                    files.push((step.clone(), index, rel, a.clone()));
                }
            }
        }
        if !files.is_empty() {
            let dir = self.dir.clone();
            let job = result.job.key().to_string();
            let thumbnails = self.thumbnails;
            let written = tokio::task::spawn_blocking(move || {
                if thumbnails {
                    for (_, _, rel, a) in &files {
                        if let Err(e) = crate::deliver::make_thumbnail(dir.root(), a) {
                            tracing::debug!(job = %job, path = %rel, error = %e, "thumbnail failed; the sheet links the file");
                        }
                    }
                }
                files
                    .into_iter()
                    .filter(|(_, _, rel, a)| match dir.write_unless_taken(rel, a) {
                        Ok(ours) => ours,
                        // Best effort: the final pass retries and reports failures.
                        Err(e) => {
                            tracing::debug!(job = %job, path = %rel, error = %e, "early delivery failed");
                            false
                        }
                    })
                    .map(|(step, index, path, _)| (step, index, path))
                    .collect::<Vec<_>>()
            });
            if let Ok(written) = written.await {
                if ctx.events_listened() {
                    for (step, index, path) in written {
                        ctx.emit(EventKind::AssetWritten {
                            job: result.job.key().to_string(),
                            step,
                            index,
                            path,
                        });
                    }
                }
            }
        }
        result
    }
}
