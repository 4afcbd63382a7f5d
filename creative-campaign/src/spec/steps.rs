//! The steps a spec builds itself: the generate step with parameter layers and
//! seed policy, and gates around any other step.

use std::sync::Arc;

use async_trait::async_trait;

use crate::spec::schema::{Layer, PARAM_VARS};
use creative_core::artifact::{Artifact, MediaKind};
use creative_core::error::{GateError, StepError};
use creative_core::gate::{GateCtx, OnGateFail, QualityGate, Verdict};
use creative_core::generate::{judge, GenerateStep};
use creative_core::job::{derive_seed, Job, Vars};
use creative_core::request::{Request, Task};
use creative_core::step::{Step, StepCtx, StepInputs};
use creative_core::template::UPSTREAM;
use creative_core::{ConfigError, Preset};

/// The parameter layer a job's variables make: every variable named like a
/// [`Layer`] field (`width`, `size`, `model`, `seed`...). A refused variable is
/// the error's field (see [`job_var_message`]).
pub(crate) fn job_layer(vars: &Vars) -> Result<Layer, ConfigError> {
    let mut m = serde_json::Map::new();
    for name in PARAM_VARS {
        if let Some(v) = vars.get(*name) {
            m.insert((*name).to_string(), v.clone());
        }
    }
    if m.is_empty() {
        return Ok(Layer::default());
    }
    let layer: Layer = serde_path_to_error::deserialize(serde_json::Value::Object(m))
        .map_err(|e| ConfigError::new(e.path().to_string(), e.inner().to_string()))?;
    layer.dimensions()?;
    Ok(layer)
}

/// What a refused job variable says: `job variable `width`: ...`.
pub(crate) fn job_var_message(e: &ConfigError) -> String {
    format!("job variable `{}`: {}", e.field(), e.reason())
}

/// The engine preset of one parameter layer (a `[presets.NAME]`, the
/// defaults, a step's own settings). The palette is the spec's own: it feeds
/// the gates, which the spec builds per preset.
pub(crate) fn preset_of(layer: &Layer, name: &str) -> Result<Preset, ConfigError> {
    let mut p = Preset::new(name).params(&layer.params()?);
    if let Some(seed) = layer.seed {
        p = p.seed(seed.into());
    }
    if let Some(m) = &layer.model {
        p = p.model(m.clone());
    }
    if let Some(raw) = &layer.raw {
        p = p.raw(raw.clone());
    }
    if let Some(t) = &layer.prompt_prefix {
        p = p.prompt_prefix(t.clone());
    }
    if let Some(t) = &layer.prompt_suffix {
        p = p.prompt_suffix(t.clone());
    }
    if let Some(t) = &layer.negative_prompt {
        p = p.negative(t.clone());
    }
    Ok(p)
}

/// A generate step from a spec: the core [`GenerateStep`] carrying the step's
/// presets (defaults < preset < the step's own settings, each a complete
/// engine [`Preset`]; the one a job's `preset` variable names, else the
/// step's), with job variables < overrides layered over them per job and a
/// reviewer's revision applied.
pub(crate) struct SpecGenerate {
    pub task: Task,
    pub chain: Vec<String>,
    pub step: GenerateStep,
    pub overrides: Layer,
    /// What the prompts read of upstream outputs, as placeholders
    /// (`‹steps.copy.text›`), for estimates and dry runs made before those
    /// outputs exist; `None` when the prompts read none.
    pub upstream: Option<serde_json::Value>,
    /// What a reviewer's rejections change, shared with the campaign (which
    /// fills it when a run resumes).
    pub revisions: Arc<std::sync::RwLock<crate::review::Revisions>>,
}

impl SpecGenerate {
    /// The gates judging this step's outputs for a job (those of its preset).
    pub fn gates_for(&self, job: &Job) -> Vec<Arc<dyn QualityGate>> {
        self.step.gates_for(job).unwrap_or_default()
    }

    /// The core step configured for a job: the job's parameter variables, then
    /// the overrides, as the step's own settings over its presets.
    fn configured(&self, job: &Job) -> Result<GenerateStep, StepError> {
        let mut layer = job_layer(job.vars()).map_err(|e| StepError::invalid_input(job_var_message(&e)))?;
        layer.merge_from(&self.overrides);
        let params = layer.params().map_err(|e| StepError::invalid_input(e.reason()))?;
        let mut step = self.step.clone().params(&params);
        if let Some(policy) = layer.seed {
            // The engine draws a random seed per run and records whichever
            // seed it sends in the asset's provenance.
            step = step.seed_policy(policy.into());
        }
        if let Some(m) = &layer.model {
            step = step.model(m.clone());
        }
        if let Some(raw) = &layer.raw {
            step = step.raw(raw.clone());
        }
        Ok(step)
    }

    /// The job variables its requests can depend on: those its prompts name, the
    /// parameter variables (`size`, `model`...) and `preset`.
    pub fn variables(&self) -> Vec<String> {
        let mut names: std::collections::BTreeSet<String> = PARAM_VARS.iter().map(|s| s.to_string()).collect();
        names.insert("preset".into());
        for t in self.step.templates() {
            names.extend(t.variables().map(str::to_string));
        }
        // Upstream outputs are not job variables.
        names.remove(UPSTREAM);
        names.into_iter().collect()
    }

    /// The first request this step would make for a job (for estimates and dry
    /// runs; the seed is left as the policy makes it).
    pub fn request_for(&self, job: &Job) -> Result<Request, StepError> {
        self.configured(job)?.request_for(job, self.upstream.as_ref())
    }
}

#[async_trait]
impl Step for SpecGenerate {
    fn kind(&self) -> &str {
        "generate"
    }

    fn produces(&self) -> Option<MediaKind> {
        Some(self.task.media_kind())
    }

    fn min_inputs(&self) -> usize {
        usize::from(self.task == Task::ImageEdit)
    }

    fn providers(&self) -> Vec<String> {
        self.chain.clone()
    }

    fn reads(&self) -> Vec<String> {
        self.step.reads()
    }

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let mut step = self.configured(&ctx.job)?;
        let revision = {
            let r = self.revisions.read().unwrap_or_else(|p| p.into_inner());
            r.get(ctx.job.key(), &ctx.step).cloned()
        };
        if let Some(rev) = revision {
            // A rejected asset: a new seed derived from the one it had, and the
            // reviewer's notes for the model.
            let base = match step.seed_policy_for(&ctx.job)? {
                creative_core::SeedPolicy::Fixed(s) => s,
                _ => ctx.derived_seed(),
            };
            let params = creative_core::request::Params {
                seed: Some(derive_seed(base, &["review", &rev.round.to_string()])),
                ..Default::default()
            };
            step = step.params(&params).append_to_prompt(&rev.prompt_suffix())?;
        }
        step.run(inputs, ctx).await
    }
}

/// A gate under the name the spec gives it.
pub(crate) struct NamedGate {
    pub name: String,
    pub inner: Arc<dyn QualityGate>,
}

#[async_trait]
impl QualityGate for NamedGate {
    fn name(&self) -> &str {
        &self.name
    }

    fn accepts(&self) -> Option<&[MediaKind]> {
        self.inner.accepts()
    }

    async fn check(&self, artifact: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        self.inner.check(artifact, ctx).await
    }

    fn planned_calls(&self, vars: &Vars) -> Vec<(String, Request)> {
        self.inner.planned_calls(vars)
    }
}

/// Gates around a step that is not a generate step: every output is judged;
/// on failure the step fails (`fail`) or passes the output on flagged (`flag`).
pub(crate) struct GatedStep {
    pub inner: Arc<dyn Step>,
    pub gates: Vec<Arc<dyn QualityGate>>,
    pub on_fail: OnGateFail,
}

#[async_trait]
impl Step for GatedStep {
    fn kind(&self) -> &str {
        self.inner.kind()
    }

    fn accepts(&self) -> Option<&[MediaKind]> {
        self.inner.accepts()
    }

    fn produces(&self) -> Option<MediaKind> {
        self.inner.produces()
    }

    fn min_inputs(&self) -> usize {
        self.inner.min_inputs()
    }

    fn providers(&self) -> Vec<String> {
        self.inner.providers()
    }

    fn reads(&self) -> Vec<String> {
        self.inner.reads()
    }

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let mut outputs = self.inner.run(inputs, ctx).await?;
        let gctx = ctx.gate_ctx();
        for a in &mut outputs {
            let records = judge(&self.gates, a, ctx, &gctx, 0).await;
            let failed = records.iter().find(|r| !r.verdict.passed).cloned();
            a.provenance_mut().gates.extend(records);
            if let Some(r) = failed {
                if self.on_fail == OnGateFail::Flag {
                    a.provenance_mut().flagged = true;
                } else {
                    return Err(StepError::gate_failed(r.gate, r.verdict.reasons.join("; ")));
                }
            }
        }
        Ok(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, serde_json::Value)]) -> Vars {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn a_job_variable_of_the_wrong_type_is_refused_at_its_name() {
        let e = job_layer(&vars(&[("width", "wide".into())])).unwrap_err();
        assert_eq!(e.field(), "width");
        assert!(e.reason().contains("invalid type"), "{e}");
        assert!(job_var_message(&e).starts_with("job variable `width`: "), "{e}");
    }

    #[test]
    fn a_malformed_size_variable_is_refused_at_size() {
        let e = job_layer(&vars(&[("size", "40 by 40".into())])).unwrap_err();
        assert_eq!(e.field(), "size");
        assert_eq!(e.reason(), "size `40 by 40` is not WIDTHxHEIGHT");
    }

    #[test]
    fn a_layer_becomes_an_engine_preset_with_its_size_seed_and_words() {
        let layer = job_layer(&vars(&[
            ("size", "40x30".into()),
            ("seed", 9.into()),
            ("model", "m".into()),
        ]))
        .unwrap();
        let mut layer = layer;
        layer.prompt_prefix = Some("kit ".into());
        let p = preset_of(&layer, "kit").unwrap();
        let step = GenerateStep::new(Task::Image, ["art"], "a mug").unwrap().preset(p);
        let r = step.request_for(&Job::new([("x", 1)]), None).unwrap();
        assert_eq!(
            (r.params.width, r.params.height, r.params.seed),
            (Some(40), Some(30), Some(9))
        );
        assert_eq!(r.model.as_deref(), Some("m"));
        assert_eq!(r.prompt, "kit a mug");
    }
}
