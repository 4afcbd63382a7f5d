//! The generate step: a provider call (through the engine's resilience layer)
//! followed by quality gates and a policy for when they fail.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::artifact::{Artifact, MediaKind};
use crate::error::StepError;
use crate::events::EventKind;
use crate::gate::{GateCtx, IntoGate, OnGateFail, QualityGate, Verdict};
use crate::job::{derive_seed, Job, SeedPolicy};
use crate::preset::Preset;
use crate::provenance::{GateRecord, RejectedCandidate, MAX_REJECTED_KEPT};
use crate::request::{Params, Request, Task};
use crate::step::{Step, StepCtx, StepInputs};
use crate::template::{Template, UPSTREAM};

/// Generates with the first provider of a chain that succeeds, judges every
/// candidate with the step's gates, and keeps the best that pass.
///
/// Seeds are reproducible: the step's `seed` param if set, else its seed
/// policy, else its preset's, else one derived from the job key and step name;
/// a regeneration round `r` uses `derive_seed(seed, ["regen", r])`. Every
/// candidate's verdicts land in its provenance.
///
/// Settings layer as preset < step: a [`Preset`] fills in what the step does
/// not set itself (see [`preset`](Self::preset)), and a step may pick its
/// preset per job ([`preset_by_var`](Self::preset_by_var)).
///
/// ```
/// use creative_core::{GenerateStep, OnGateFail, Task};
/// let step = GenerateStep::new(Task::Image, ["procedural"], "a {{ color }} mug")
///     .unwrap()
///     .size(512, 512)
///     .on_gate_fail(OnGateFail::Regenerate { max: 2 });
/// ```
#[derive(Clone)]
pub struct GenerateStep {
    task: Task,
    chain: Vec<String>,
    // The step's own settings; its presets' are in `presets`.
    model: Option<String>,
    prompt: Template,
    /// Reviewer notes, as `{% raw %}` blocks put after the (wrapped) prompt.
    appended: String,
    negative: Option<Template>,
    params: Params,
    raw: serde_json::Map<String, serde_json::Value>,
    gates: Vec<Arc<dyn QualityGate>>,
    on_fail: OnGateFail,
    keep: usize,
    /// `None`: the preset's policy, else [`SeedPolicy::Derived`].
    seed: Option<SeedPolicy>,
    presets: Arc<Presets>,
    /// The default variant's params merged with the step's, for
    /// [`resolved_params`](Self::resolved_params).
    resolved: Params,
    /// Why the prompt and a preset given to the infallible
    /// [`preset`](Self::preset) do not make a template: every run fails with it.
    broken: Option<StepError>,
}

/// A step's presets, compiled with its prompt.
#[derive(Clone, Default)]
struct Presets {
    /// The presets given with [`GenerateStep::preset`], merged (the first wins).
    fixed: Option<Preset>,
    choice: Option<Choice>,
    /// The step with `fixed` alone: for a job that picks no preset.
    base: Option<Variant>,
    /// By preset name: `fixed` under the chosen preset.
    chosen: BTreeMap<String, Variant>,
}

/// How a job picks its preset.
#[derive(Clone)]
struct Choice {
    var: String,
    presets: Vec<Preset>,
    default: Option<String>,
}

/// The step under one preset: the preset's settings (the fixed presets under
/// the chosen one) and the templates compiled with them.
#[derive(Clone)]
struct Variant {
    preset: Preset,
    prompt: Template,
    negative: Option<Template>,
}

impl GenerateStep {
    /// A step for `task`, calling the providers of `chain` in order, with a prompt
    /// template over job variables. Fails if the template does not parse.
    pub fn new<I, S>(task: Task, chain: I, prompt: &str) -> Result<Self, StepError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut step = GenerateStep {
            task,
            chain: chain.into_iter().map(Into::into).collect(),
            model: None,
            prompt: Template::new(prompt).map_err(StepError::from)?,
            appended: String::new(),
            negative: None,
            params: Params::default(),
            raw: serde_json::Map::new(),
            gates: Vec::new(),
            on_fail: OnGateFail::default(),
            keep: 1,
            seed: None,
            presets: Arc::default(),
            resolved: Params::default(),
            broken: None,
        };
        step.compile()?;
        Ok(step)
    }

    /// The model (wins over a preset's).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// A negative-prompt template (wins over a preset's).
    pub fn negative(mut self, t: &str) -> Result<Self, StepError> {
        self.negative = Some(Template::new(t).map_err(StepError::from)?);
        self.compile()?;
        Ok(self)
    }

    /// Append literal text to the prompt (a reviewer's note): it is not a
    /// template, so braces in it are kept as written. It goes after a preset's
    /// prompt suffix.
    pub fn append_to_prompt(mut self, text: &str) -> Result<Self, StepError> {
        if text.is_empty() {
            return Ok(self);
        }
        let literal = text.replace("{% endraw %}", "{ % endraw %}");
        self.appended.push_str(&format!("{{% raw %}}{literal}{{% endraw %}}"));
        self.compile()?;
        Ok(self)
    }

    /// Output size.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.params.width = Some(width);
        self.params.height = Some(height);
        self.refresh();
        self
    }

    /// Typed params (overlaid on what is set).
    pub fn params(mut self, p: &Params) -> Self {
        self.params.merge_from(p);
        self.refresh();
        self
    }

    /// Start from a preset (a named style, a brand kit; or bare [`Params`], as
    /// before presets carried more). What the preset sets applies where the
    /// step sets nothing, whether the step's own settings are given before or
    /// after; settings layer as preset < step. Field by field:
    ///
    /// - params, model, seed policy, negative prompt: the step's own win;
    ///   the preset's fill in the rest;
    /// - raw fields: merged key by key, the step's keys winning;
    /// - prompt: the preset's prefix and suffix wrap the step's prompt (the
    ///   step has none of its own); see [`Preset::wrap_prompt`];
    /// - gates: the preset's judge after the step's own.
    ///
    /// A second preset applies under the first (the first wins where both set
    /// something). A preset a job picks ([`preset_by_var`](Self::preset_by_var))
    /// applies over these.
    ///
    /// If the preset's prefix and suffix around the prompt do not parse as a
    /// template, every run of the step fails saying so; [`try_preset`](Self::try_preset)
    /// says it here instead.
    ///
    /// ```
    /// use creative_core::{GenerateStep, Params, Task};
    /// let brand = Params { style: Some("flat".into()), width: Some(1024), ..Default::default() };
    /// let step = GenerateStep::new(Task::Image, ["art"], "a mug").unwrap().size(512, 512).preset(&brand);
    /// assert_eq!(step.resolved_params().width, Some(512));
    /// assert_eq!(step.resolved_params().style.as_deref(), Some("flat"));
    /// ```
    pub fn preset(mut self, preset: impl Into<Preset>) -> Self {
        self.add_fixed(preset.into());
        if let Err(e) = self.compile() {
            self.broken = Some(e);
        }
        self
    }

    /// [`preset`](Self::preset), failing if the preset's prompt prefix and
    /// suffix around the step's prompt, or its negative prompt, do not parse.
    pub fn try_preset(mut self, preset: impl Into<Preset>) -> Result<Self, StepError> {
        self.add_fixed(preset.into());
        self.compile()?;
        Ok(self)
    }

    fn add_fixed(&mut self, preset: Preset) {
        let set = Arc::make_mut(&mut self.presets);
        set.fixed = Some(match set.fixed.take() {
            // The earlier preset wins where both set something.
            Some(first) => {
                let mut p = preset;
                p.merge_from(&first);
                p.name = first.name;
                p
            }
            None => preset,
        });
    }

    /// Let each job pick its preset: the one named by the job variable `var`,
    /// else the one named `default`, else none of them (only those given with
    /// [`preset`](Self::preset)). The picked preset applies over those, under
    /// the step's own settings: preset < picked preset < step.
    ///
    /// Fails if two presets share a name, `default` names none of them, or a
    /// preset's prompt or negative prompt does not parse with the step's. A
    /// job naming a preset that is not among them fails its step with an
    /// invalid-input error naming it.
    ///
    /// ```
    /// use creative_core::{GenerateStep, Job, Preset, Task};
    /// let step = GenerateStep::new(Task::Image, ["art"], "a mug")
    ///     .unwrap()
    ///     .preset_by_var(
    ///         "style",
    ///         [Preset::new("flat").prompt_prefix("flat art of "), Preset::new("photo").prompt_prefix("a photo of ")],
    ///         Some("flat"),
    ///     )
    ///     .unwrap();
    /// let photo = step.request_for(&Job::new([("style", "photo")]), None).unwrap();
    /// assert_eq!(photo.prompt, "a photo of a mug");
    /// let default = step.request_for(&Job::new([("product", "mug")]), None).unwrap();
    /// assert_eq!(default.prompt, "flat art of a mug");
    /// ```
    pub fn preset_by_var(
        mut self,
        var: &str,
        presets: impl IntoIterator<Item = Preset>,
        default: Option<&str>,
    ) -> Result<Self, StepError> {
        let presets: Vec<Preset> = presets.into_iter().collect();
        let mut seen = std::collections::BTreeSet::new();
        for p in &presets {
            if !seen.insert(p.name.as_str()) {
                return Err(StepError::invalid_input(format!(
                    "two presets are named `{}`; a job picks one by its name",
                    p.name
                )));
            }
        }
        if let Some(d) = default {
            if !seen.contains(d) {
                return Err(StepError::invalid_input(format!(
                    "default preset `{d}` is not among the presets ({})",
                    seen.iter().copied().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        Arc::make_mut(&mut self.presets).choice = Some(Choice {
            var: var.to_string(),
            presets,
            default: default.map(str::to_string),
        });
        self.compile()?;
        Ok(self)
    }

    /// How the step chooses its seed (wins over a preset's). Default: the
    /// preset's, else [`SeedPolicy::Derived`]; a `seed` in
    /// [`params`](Self::params) set afterwards fixes it.
    pub fn seed_policy(mut self, policy: SeedPolicy) -> Self {
        self.params.seed = match policy {
            SeedPolicy::Fixed(s) => Some(s),
            _ => None,
        };
        self.seed = Some(policy);
        self.refresh();
        self
    }

    /// The step's params as they stand (its presets' and its own, before job
    /// variables; the seed only if fixed). For a step that picks its preset per
    /// job, with the default preset.
    pub fn resolved_params(&self) -> &Params {
        &self.resolved
    }

    /// Raw provider fields (merged key by key over a preset's, these winning).
    pub fn raw(mut self, raw: serde_json::Map<String, serde_json::Value>) -> Self {
        self.raw = raw;
        self
    }

    /// Add a gate (a gate value, or one shared behind an `Arc`).
    pub fn gate(mut self, g: impl IntoGate) -> Self {
        self.gates.push(g.into_gate());
        self
    }

    /// The step's gates, in the order they judge: its own, then its preset's
    /// (for a step that picks its preset per job, the default preset's; see
    /// [`gates_for`](Self::gates_for)).
    pub fn gates(&self) -> Vec<Arc<dyn QualityGate>> {
        let preset = self
            .default_variant()
            .map(|v| v.preset.gates.as_slice())
            .unwrap_or_default();
        self.gates.iter().chain(preset).cloned().collect()
    }

    /// The gates judging a job's outputs: the step's own, then those of the
    /// preset the job runs with.
    pub fn gates_for(&self, job: &Job) -> Result<Vec<Arc<dyn QualityGate>>, StepError> {
        let v = self.variant(job)?;
        Ok(self.gates.iter().chain(&v.preset.gates).cloned().collect())
    }

    /// How a job's seed is chosen: the step's `seed` param or policy, else its
    /// preset's, else [`SeedPolicy::Derived`].
    pub fn seed_policy_for(&self, job: &Job) -> Result<SeedPolicy, StepError> {
        Ok(self.seed_of(self.variant(job)?))
    }

    /// Every template the step may render (its prompt and negative prompt
    /// under each of its presets), for the job variables they read.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.presets
            .base
            .iter()
            .chain(self.presets.chosen.values())
            .flat_map(|v| std::iter::once(&v.prompt).chain(v.negative.as_ref()))
    }

    /// What to do when candidates fail their gates. Default: regenerate twice.
    pub fn on_gate_fail(mut self, p: OnGateFail) -> Self {
        self.on_fail = p;
        self
    }

    /// How many passing candidates to keep (best first). Default 1. Ask the
    /// provider for more candidates per call with `Params::count`.
    pub fn keep(mut self, n: usize) -> Self {
        self.keep = n.max(1);
        self
    }

    /// The first request the step makes for a job, before any input exists (for
    /// estimates and dry runs): no inputs, the seed set only when it is fixed.
    /// `upstream`, if given, stands in for the outputs of the steps the
    /// prompts read (`steps.NAME.text`...).
    pub fn request_for(&self, job: &Job, upstream: Option<&serde_json::Value>) -> Result<Request, StepError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let v = self.variant(job)?;
        let vars = match upstream {
            Some(up) => {
                let mut vars = (**job.vars()).clone();
                vars.insert(UPSTREAM.into(), up.clone());
                std::borrow::Cow::Owned(vars)
            }
            None => std::borrow::Cow::Borrowed(&**job.vars()),
        };
        let seed = match self.seed_of(v) {
            SeedPolicy::Fixed(s) => Some(s),
            _ => None,
        };
        self.request_with(v, &vars, Vec::new(), seed)
    }

    /// Compile the prompt and negative prompt under every preset, and refresh
    /// the resolved params.
    fn compile(&mut self) -> Result<(), StepError> {
        let variant = |preset: Preset| -> Result<Variant, StepError> {
            let in_preset = |e: crate::template::TemplateError| {
                let e = StepError::from(e);
                if preset.name.is_empty() {
                    e
                } else {
                    StepError::new(e.kind(), format!("with preset `{}`: {e}", preset.name))
                }
            };
            let prompt = if preset.prompt_prefix.is_none() && preset.prompt_suffix.is_none() && self.appended.is_empty()
            {
                self.prompt.clone()
            } else {
                let src = format!("{}{}", preset.wrap_prompt(self.prompt.source()), self.appended);
                Template::new(&src).map_err(in_preset)?
            };
            let negative = match (&self.negative, &preset.negative) {
                (Some(own), _) => Some(own.clone()),
                (None, Some(n)) => Some(Template::new(n).map_err(in_preset)?),
                (None, None) => None,
            };
            Ok(Variant {
                preset,
                prompt,
                negative,
            })
        };
        let fixed = self.presets.fixed.clone();
        let base = variant(fixed.clone().unwrap_or_default())?;
        let mut chosen = BTreeMap::new();
        if let Some(c) = &self.presets.choice {
            for p in &c.presets {
                let mut preset = fixed.clone().unwrap_or_default();
                preset.merge_from(p);
                preset.name = p.name.clone();
                chosen.insert(p.name.clone(), variant(preset)?);
            }
        }
        let set = Arc::make_mut(&mut self.presets);
        set.base = Some(base);
        set.chosen = chosen;
        self.broken = None;
        self.refresh();
        Ok(())
    }

    /// Recompute [`resolved_params`](Self::resolved_params).
    fn refresh(&mut self) {
        let Some(v) = self.default_variant() else { return };
        let mut p = v.preset.params.clone();
        p.merge_from(&self.params);
        p.seed = match self.seed_of(v) {
            SeedPolicy::Fixed(s) => Some(s),
            _ => None,
        };
        self.resolved = p;
    }

    /// The variant a job with no preset variable runs with.
    fn default_variant(&self) -> Option<&Variant> {
        let set = &self.presets;
        set.choice
            .as_ref()
            .and_then(|c| c.default.as_ref())
            .and_then(|d| set.chosen.get(d))
            .or(set.base.as_ref())
    }

    /// The variant a job runs with.
    fn variant(&self, job: &Job) -> Result<&Variant, StepError> {
        let set = &self.presets;
        let picked = set
            .choice
            .as_ref()
            .and_then(|c| job.var_str(&c.var).or_else(|| c.default.clone()));
        match picked {
            Some(name) => set
                .chosen
                .get(&name)
                .ok_or_else(|| StepError::invalid_input(format!("unknown preset `{name}`"))),
            None => set
                .base
                .as_ref()
                .ok_or_else(|| StepError::invalid_input("the step's prompt is not compiled")),
        }
    }

    /// The step's seed policy under a variant: its own `seed` param, its own
    /// policy, the preset's, or derived.
    fn seed_of(&self, v: &Variant) -> SeedPolicy {
        match self.params.seed {
            Some(s) => SeedPolicy::Fixed(s),
            None => self.seed.or(v.preset.seed).unwrap_or_default(),
        }
    }

    fn request(&self, v: &Variant, inputs: &StepInputs, ctx: &StepCtx, seed: u64) -> Result<Request, StepError> {
        let templates = || std::iter::once(&v.prompt).chain(v.negative.as_ref());
        let chained = templates().any(Template::reads_upstream);
        let vars = if chained {
            // Prompt chaining: the templates read the input steps' outputs.
            let mut v = (**ctx.job.vars()).clone();
            v.insert(UPSTREAM.into(), inputs.upstream());
            std::borrow::Cow::Owned(v)
        } else {
            std::borrow::Cow::Borrowed(&**ctx.job.vars())
        };
        // A step whose output the prompt reads feeds the prompt, not the
        // provider: an image model handed the copywriter's text as its first
        // input would take it for an image to edit.
        let mut read: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
        for t in templates() {
            match t.upstream_steps() {
                Some(names) => read.extend(names),
                None => read.extend(inputs.groups().iter().map(|(n, _)| &**n)),
            }
        }
        let inputs = inputs
            .groups()
            .iter()
            .filter(|(n, _)| !(chained && read.contains(&**n)))
            .flat_map(|(_, a)| a.iter().cloned())
            .collect();
        self.request_with(v, &vars, inputs, Some(seed))
    }

    /// The request under a variant: the preset's settings under the step's.
    fn request_with(
        &self,
        v: &Variant,
        vars: &crate::job::Vars,
        inputs: Vec<Artifact>,
        seed: Option<u64>,
    ) -> Result<Request, StepError> {
        let mut params = v.preset.params.clone();
        params.merge_from(&self.params);
        params.seed = seed;
        let mut raw = v.preset.raw.clone();
        for (k, val) in &self.raw {
            raw.insert(k.clone(), val.clone());
        }
        let render = |t: &Template| t.render(vars).map_err(StepError::from);
        Ok(Request {
            task: self.task,
            model: self.model.clone().or_else(|| v.preset.model.clone()),
            prompt: render(&v.prompt)?,
            negative_prompt: v.negative.as_ref().map(render).transpose()?,
            inputs,
            params,
            raw,
        })
    }
}

#[async_trait]
impl Step for GenerateStep {
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
        let mut names = std::collections::BTreeSet::new();
        for t in self.templates() {
            names.extend(t.upstream_steps().into_iter().flatten());
        }
        names.into_iter().map(str::to_string).collect()
    }

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let variant = self.variant(&ctx.job)?;
        let base_seed = self.seed_of(variant).choose(|| ctx.derived_seed());
        let gates: Vec<Arc<dyn QualityGate>> = self.gates.iter().chain(&variant.preset.gates).cloned().collect();
        let gctx = ctx.gate_ctx();
        let parents: Vec<_> = inputs.all().map(|a| a.id().clone()).collect();
        let mut chain_start = 0usize;
        let mut round = 0u32;
        // Candidates the gates refused, by reference, for the provenance of
        // what is finally kept: a reviewer sees what was paid for and why it
        // was refused, without the step holding their payloads.
        let mut rejected: std::collections::VecDeque<RejectedCandidate> = std::collections::VecDeque::new();
        let refuse = |rejected: &mut std::collections::VecDeque<RejectedCandidate>, a: &Artifact| {
            if rejected.len() == MAX_REJECTED_KEPT {
                rejected.pop_front();
            }
            rejected.push_back(RejectedCandidate::of(a));
        };
        let with_rejected = |mut kept: Vec<Artifact>, rejected: &std::collections::VecDeque<RejectedCandidate>| {
            if !rejected.is_empty() {
                for a in &mut kept {
                    a.provenance_mut().rejected = rejected.iter().cloned().collect();
                }
            }
            kept
        };
        loop {
            let seed = if round == 0 {
                base_seed
            } else {
                derive_seed(base_seed, &["regen", &round.to_string()])
            };
            let req = self.request(variant, inputs, ctx, seed)?;
            let out = ctx.call_provider(&self.chain[chain_start..], &req).await?;
            let used = chain_start + out.chain_index;
            let allowed = crate::limits::max_artifacts_for(req.params.count);
            if out.generation.artifacts.len() > allowed {
                // A provider that answers far more than it was asked is broken or
                // hostile: judging, storing and delivering its flood would cost
                // more than the job is worth.
                return Err(StepError::from(crate::error::ProviderError::new(
                    crate::error::ErrorKind::Protocol,
                    out.provider,
                    format!(
                        "provider returned {} outputs for a call that asked {}; at most {allowed} are accepted",
                        out.generation.artifacts.len(),
                        req.params.count.unwrap_or(1)
                    ),
                )));
            }
            let n = out.generation.artifacts.len().max(1);
            let params_json = req.resolved_json();
            // The seed is recorded only where it was sent: a plain provider that
            // says it sends seeds, or the provider's own record (a router's
            // member, a backend that sends a derived seed).
            let sends_seed = ctx
                .provider(&out.provider)
                .is_some_and(|p| !p.is_composite() && p.capabilities().seed);
            let fingerprint = (!out.fingerprint.is_empty()).then(|| out.fingerprint.clone());
            // The params as sent to a backend that took no seed: without one.
            let mut unseeded_json = params_json.clone();
            if let Some(params) = unseeded_json.get_mut("params").and_then(|v| v.as_object_mut()) {
                params.remove("seed");
            }
            let mut scored: Vec<(f64, bool, Artifact)> = Vec::with_capacity(n);
            for mut a in out.generation.artifacts {
                {
                    let p = a.provenance_mut();
                    p.step = ctx.step.to_string();
                    p.provider = Some(out.provider.clone());
                    p.model = req.model.clone().or_else(|| p.model.take()).or_else(|| {
                        // The provider's default, as the attempt events name it.
                        ctx.provider(&out.provider).and_then(|p| p.model(&req))
                    });
                    p.seed = p.seed.or(sends_seed.then_some(seed));
                    p.params = if p.seed.is_some() {
                        params_json.clone()
                    } else {
                        unseeded_json.clone()
                    };
                    p.provider_fingerprint = fingerprint.clone();
                    p.attempt = out.attempt;
                    p.regeneration = round;
                    p.latency_ms = out.latency.as_secs_f64() * 1e3;
                    p.cost_usd = out.generation.usage.cost_usd / n as f64;
                    p.parents = parents.clone();
                    p.cached = out.cached;
                }
                let records = judge(&gates, &a, ctx, &gctx, round).await;
                let failed = records.iter().filter(|r| !r.verdict.passed).count();
                if !records.is_empty() {
                    // Let the provider (a router) learn which of its outputs are accepted.
                    if let Some(p) = ctx.provider(&out.provider) {
                        p.record_verdict(&a, failed == 0);
                    }
                }
                let score: f64 = records.iter().map(|r| r.verdict.score).sum();
                a.provenance_mut().gates = records;
                scored.push((score, failed == 0, a));
            }
            if scored.is_empty() {
                return Err(StepError::from(crate::error::ProviderError::new(
                    crate::error::ErrorKind::Protocol,
                    out.provider,
                    "provider returned no output",
                )));
            }
            scored.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
            let passing: Vec<Artifact> = scored
                .iter()
                .filter(|s| s.1)
                .map(|s| s.2.clone())
                .take(self.keep)
                .collect();
            if !passing.is_empty() {
                for (_, passed, a) in &scored {
                    if !passed {
                        refuse(&mut rejected, a);
                    }
                }
                return Ok(with_rejected(passing, &rejected));
            }
            let failure = || {
                let last = scored[0]
                    .2
                    .provenance()
                    .gates
                    .iter()
                    .rev()
                    .find(|r| !r.verdict.passed)
                    .cloned();
                match last {
                    Some(r) => StepError::gate_failed(r.gate, r.verdict.reasons.join("; ")),
                    None => StepError::gate_failed("?", ""),
                }
            };
            if !matches!(self.on_fail, OnGateFail::Flag) {
                for (_, _, a) in &scored {
                    refuse(&mut rejected, a);
                }
            }
            match self.on_fail {
                OnGateFail::Regenerate { max } if round < max => {
                    round += 1;
                    ctx.record_regeneration();
                    ctx.emit(EventKind::Regenerate {
                        job: ctx.job.key().to_string(),
                        step: ctx.step.to_string(),
                        round,
                        seed: derive_seed(base_seed, &["regen", &round.to_string()]),
                    });
                }
                OnGateFail::Fallback if used + 1 < self.chain.len() => {
                    chain_start = used + 1;
                    ctx.record_fallback();
                    ctx.emit(EventKind::Fallback {
                        job: ctx.job.key().to_string(),
                        step: ctx.step.to_string(),
                        from: self.chain[used].clone(),
                        to: self.chain[chain_start].clone(),
                        reason: failure().to_string(),
                    });
                }
                OnGateFail::Flag => {
                    let kept: Vec<Artifact> = scored
                        .into_iter()
                        .take(self.keep)
                        .map(|(_, _, mut a)| {
                            a.provenance_mut().flagged = true;
                            a
                        })
                        .collect();
                    ctx.record_flagged(kept.len() as u64);
                    return Ok(with_rejected(kept, &rejected));
                }
                _ => return Err(failure()),
            }
        }
    }
}

/// Judge one artifact with every gate, in order: count the checks and failures,
/// emit a `GateVerdict` event per gate, and return the records for provenance.
/// A gate that cannot judge fails the artifact, naming itself.
///
/// This is how any step, not only the built-in generate step, records gate
/// outcomes: they count in the run's statistics and report like the generate
/// step's.
pub async fn judge(
    gates: &[Arc<dyn QualityGate>],
    artifact: &Artifact,
    ctx: &StepCtx,
    gctx: &GateCtx,
    round: u32,
) -> Vec<GateRecord> {
    let mut out = Vec::with_capacity(gates.len());
    for g in gates {
        let verdict = match g.check(artifact, gctx).await {
            Ok(v) => v,
            Err(e) => Verdict::fail(0.0, format!("gate error: {}", e.message)),
        };
        ctx.record_gate_check(verdict.passed);
        ctx.emit(EventKind::GateVerdict {
            job: ctx.job.key().to_string(),
            step: ctx.step.to_string(),
            gate: g.name().to_string(),
            artifact: artifact.id().to_string(),
            passed: verdict.passed,
            score: verdict.score,
            reasons: verdict.reasons.clone(),
            round,
        });
        out.push(GateRecord {
            gate: g.name().to_string(),
            verdict,
        });
    }
    out
}
