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
    /// Outputs of ancestors that are not inputs, which the step's templates
    /// read ([`Step::reads`]): in [`upstream`](Self::upstream) only, never
    /// among the artifacts handed to a provider.
    context: Vec<(Arc<str>, Arc<[Artifact]>)>,
}

impl StepInputs {
    /// Inputs from `(producer step name, its outputs)` pairs.
    pub fn new(items: Vec<(Arc<str>, Arc<[Artifact]>)>) -> Self {
        StepInputs {
            items,
            context: Vec::new(),
        }
    }

    /// Add the outputs of ancestors that are not inputs, as `(step name,
    /// outputs)` pairs, for the step's templates to read by name.
    pub fn with_context(mut self, context: Vec<(Arc<str>, Arc<[Artifact]>)>) -> Self {
        self.context = context;
        self
    }

    /// The ancestors' outputs handed for templates only (see
    /// [`with_context`](Self::with_context)).
    pub fn context(&self) -> &[(Arc<str>, Arc<[Artifact]>)] {
        &self.context
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
    /// its artifacts' ids, in order, then the same for the ancestors handed as
    /// context (when there are any, so fingerprints without are unchanged).
    /// Equal fingerprints mean byte-identical inputs; the journal records it so
    /// a resume notices changed inputs.
    pub fn fingerprint(&self) -> String {
        let mut h = blake3::Hasher::new();
        for (i, (step, artifacts)) in self.items.iter().chain(&self.context).enumerate() {
            if i == self.items.len() {
                h.update(b"\0context\0");
            }
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

    /// The input steps' outputs (and the ancestors' handed as context) as
    /// templates read them under [`crate::template::UPSTREAM`]: per step name, `text` (its first text
    /// output), `texts` (all of them), `json` (the first text parsed as JSON,
    /// a fenced code block unwrapped, when it parses), `meta` (the first output's
    /// width, height, duration and extra facts), `id`, `media`, `provider`,
    /// `model` and `count`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use creative_core::{Artifact, StepInputs};
    /// let copy = Artifact::text_plain("{\"headline\": \"Hot for 12 hours\"}");
    /// let inputs = StepInputs::new(vec![(Arc::from("copy"), Arc::from(vec![copy]))]);
    /// let up = inputs.upstream();
    /// assert_eq!(up["copy"]["json"]["headline"], "Hot for 12 hours");
    /// ```
    pub fn upstream(&self) -> serde_json::Value {
        let mut steps = serde_json::Map::new();
        for (name, artifacts) in self.items.iter().chain(&self.context) {
            let mut o = serde_json::Map::new();
            let texts: Vec<&str> = artifacts.iter().filter_map(Artifact::text).collect();
            if let Some(t) = texts.first() {
                o.insert("text".into(), (*t).into());
                if let Some(j) = parse_json_text(t) {
                    o.insert("json".into(), j);
                }
            }
            o.insert(
                "texts".into(),
                texts.iter().map(|t| serde_json::Value::from(*t)).collect(),
            );
            if let Some(a) = artifacts.first() {
                o.insert("meta".into(), serde_json::to_value(a.meta()).unwrap_or_default());
                o.insert("id".into(), a.id().as_str().into());
                o.insert("media".into(), a.media().as_str().into());
                let p = a.provenance();
                if let Some(v) = &p.provider {
                    o.insert("provider".into(), v.clone().into());
                }
                if let Some(v) = &p.model {
                    o.insert("model".into(), v.clone().into());
                }
            }
            o.insert("count".into(), artifacts.len().into());
            steps.insert(name.to_string(), serde_json::Value::Object(o));
        }
        serde_json::Value::Object(steps)
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

/// Text as JSON: as is, or the body of a fenced code block (language models
/// often wrap JSON in one even when asked not to).
pub fn parse_json_text(text: &str) -> Option<serde_json::Value> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str(t) {
        return Some(v);
    }
    let body = t.strip_prefix("```")?;
    let body = body.split_once('\n')?.1;
    let body = body.trim_end().strip_suffix("```")?;
    serde_json::from_str(body).ok()
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

    /// Steps whose outputs it reads by name (prompt chaining: `{{ steps.NAME.text }}`)
    /// beyond its inputs. Each must be an ancestor (an input, an input's input,
    /// ...): a [`Dag`](crate::Dag) refuses any other, and hands it their outputs
    /// through [`StepInputs::context`]. Default none.
    fn reads(&self) -> Vec<String> {
        Vec::new()
    }

    /// Run once for one job.
    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError>;
}
