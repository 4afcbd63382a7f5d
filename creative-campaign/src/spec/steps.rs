//! The steps a spec builds itself: the generate step with parameter layers and
//! seed policy, and gates around any other step.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::spec::schema::{Layer, SeedPolicy, PARAM_VARS};
use creative_core::artifact::{Artifact, MediaKind};
use creative_core::error::{GateError, StepError};
use creative_core::gate::{GateCtx, OnGateFail, QualityGate, Verdict};
use creative_core::generate::{judge, GenerateStep};
use creative_core::job::{derive_seed, Job, Vars};
use creative_core::request::{Request, Task};
use creative_core::step::{Step, StepCtx, StepInputs};
use creative_core::template::{Template, UPSTREAM};

/// The parameter layer a job's variables make: every variable named like a
/// [`Layer`] field (`width`, `size`, `model`, `seed`...).
pub(crate) fn job_layer(vars: &Vars) -> Result<Layer, String> {
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
        .map_err(|e| format!("job variable `{}`: {}", e.path(), e.inner()))?;
    layer.dimensions()?;
    Ok(layer)
}

/// One way a generate step can run: for one preset (or none).
#[derive(Clone)]
pub(crate) struct Variant {
    /// defaults < preset < step, merged.
    pub base: Layer,
    /// The step with its prompt (prefix and suffix applied) compiled.
    pub step: GenerateStep,
    /// The prompt template, for estimates.
    pub prompt: Template,
    /// The negative prompt template.
    pub negative: Option<Template>,
}

/// A generate step from a spec: picks its preset per job (the job's `preset`
/// variable, else the step's), layers parameters (defaults < preset < step <
/// job variables < overrides), applies the seed policy, then runs the core
/// [`GenerateStep`].
pub(crate) struct SpecGenerate {
    pub task: Task,
    pub chain: Vec<String>,
    pub variants: HashMap<Option<String>, Variant>,
    pub default_preset: Option<String>,
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
    fn variant(&self, job: &Job) -> Result<&Variant, StepError> {
        let preset = match job.var_str("preset") {
            Some(p) => Some(p),
            None => self.default_preset.clone(),
        };
        self.variants
            .get(&preset)
            .ok_or_else(|| StepError::invalid_input(format!("unknown preset `{}`", preset.unwrap_or_default())))
    }

    /// The gates judging this step's outputs for a job (those of its preset).
    pub fn gates_for(&self, job: &Job) -> &[Arc<dyn QualityGate>] {
        self.variant(job).map(|v| v.step.gates()).unwrap_or_default()
    }

    /// The fully resolved layer for a job.
    pub fn resolve(&self, job: &Job) -> Result<(&Variant, Layer), StepError> {
        let v = self.variant(job)?;
        let mut layer = v.base.clone();
        layer.merge_from(&job_layer(job.vars()).map_err(StepError::invalid_input)?);
        layer.merge_from(&self.overrides);
        Ok((v, layer))
    }

    /// The core step configured for a job.
    fn configured(&self, job: &Job) -> Result<GenerateStep, StepError> {
        let (v, layer) = self.resolve(job)?;
        let params = layer.params().map_err(StepError::invalid_input)?;
        let mut step = v.step.clone().params(&params);
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
        for v in self.variants.values() {
            names.extend(v.prompt.variables().map(str::to_string));
            if let Some(n) = &v.negative {
                names.extend(n.variables().map(str::to_string));
            }
        }
        // Upstream outputs are not job variables.
        names.remove(UPSTREAM);
        names.into_iter().collect()
    }

    /// The first request this step would make for a job (for estimates and dry
    /// runs; the seed is left as the policy makes it).
    pub fn request_for(&self, job: &Job) -> Result<Request, StepError> {
        let (v, layer) = self.resolve(job)?;
        let vars = match &self.upstream {
            Some(up) => {
                let mut vars = (**job.vars()).clone();
                vars.insert(UPSTREAM.into(), up.clone());
                std::borrow::Cow::Owned(vars)
            }
            None => std::borrow::Cow::Borrowed(&**job.vars()),
        };
        let render = |t: &Template| t.render(&vars).map_err(StepError::from);
        Ok(Request {
            task: self.task,
            model: layer.model.clone(),
            prompt: render(&v.prompt)?,
            negative_prompt: v.negative.as_ref().map(render).transpose()?,
            inputs: Vec::new(),
            params: layer.params().map_err(StepError::invalid_input)?,
            raw: layer.raw.clone().unwrap_or_default(),
        })
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
        // Any preset's prompt may be the one a job runs.
        let mut names: Vec<String> = self.variants.values().flat_map(|v| v.step.reads()).collect();
        names.sort();
        names.dedup();
        names
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
            let (_, layer) = self.resolve(&ctx.job)?;
            let base = match layer.seed {
                Some(SeedPolicy::Fixed(s)) => s,
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
