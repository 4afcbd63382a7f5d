//! The `Step` trait: one node of a pipeline.

use std::sync::Arc;

use async_trait::async_trait;

use crate::artifact::{Artifact, MediaKind};
use crate::error::StepError;

/// The context a running step gets from the executor (defined in `exec/`,
/// which owns the run's state).
pub use crate::exec::StepCtx;

/// The outputs of a step's input steps, in the order the inputs were declared.
///
/// Artifacts are shared (`Arc<[Artifact]>`), never copied.
#[derive(Debug, Clone, Default)]
pub struct StepInputs {
    items: Vec<(Arc<str>, Arc<[Artifact]>)>,
}

impl StepInputs {
    /// Inputs from `(producer step name, its outputs)` pairs.
    pub fn new(items: Vec<(Arc<str>, Arc<[Artifact]>)>) -> Self {
        StepInputs { items }
    }

    /// Every input artifact, in declaration order.
    pub fn all(&self) -> impl Iterator<Item = &Artifact> {
        self.items.iter().flat_map(|(_, a)| a.iter())
    }

    /// The outputs of one input step.
    pub fn from_step(&self, step: &str) -> Option<&[Artifact]> {
        self.items.iter().find(|(n, _)| &**n == step).map(|(_, a)| &**a)
    }

    /// The input groups, one per input step.
    pub fn groups(&self) -> &[(Arc<str>, Arc<[Artifact]>)] {
        &self.items
    }

    /// A fingerprint of the inputs: BLAKE3 over each producing step's name and
    /// its artifacts' ids, in order. Equal fingerprints mean byte-identical
    /// inputs; the journal records it so a resume notices changed inputs.
    pub fn fingerprint(&self) -> String {
        let mut h = blake3::Hasher::new();
        for (step, artifacts) in &self.items {
            h.update(step.as_bytes());
            h.update(&[0]);
            for a in artifacts.iter() {
                h.update(a.id().as_str().as_bytes());
                h.update(&[1]);
            }
            h.update(&[2]);
        }
        h.finalize().to_hex().to_string()
    }

    /// The first input artifact.
    pub fn first(&self) -> Option<&Artifact> {
        self.all().next()
    }

    /// How many input artifacts there are in all.
    pub fn len(&self) -> usize {
        self.items.iter().map(|(_, a)| a.len()).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One node of a pipeline: generate, transform, check, deliver, or a host's own.
///
/// A step turns its input artifacts into output artifacts. It must be
/// deterministic for the same inputs and job (seeds come from the context), so that
/// a resumed run and a fresh run agree.
#[async_trait]
pub trait Step: Send + Sync {
    /// The kind of step (`generate`, `resize`, `overlay`...), for events and reports.
    fn kind(&self) -> &str;

    /// The media families it accepts as input; `None` means any.
    fn accepts(&self) -> Option<&[MediaKind]> {
        None
    }

    /// The media family it produces, when known before running.
    fn produces(&self) -> Option<MediaKind> {
        None
    }

    /// The fewest input steps it needs.
    fn min_inputs(&self) -> usize {
        0
    }

    /// The provider ids it will call, so a run can check them before starting.
    fn providers(&self) -> Vec<String> {
        Vec::new()
    }

    /// Run once for one job.
    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError>;
}
