//! The generate step: a provider call (through the engine's resilience layer)
//! followed by quality gates and a policy for when they fail.

use std::sync::Arc;

use async_trait::async_trait;

use crate::artifact::{Artifact, MediaKind};
use crate::error::StepError;
use crate::events::EventKind;
use crate::gate::{GateCtx, IntoGate, OnGateFail, QualityGate, Verdict};
use crate::job::{derive_seed, SeedPolicy};
use crate::provenance::{GateRecord, RejectedCandidate, MAX_REJECTED_KEPT};
use crate::request::{Params, Request, Task};
use crate::step::{Step, StepCtx, StepInputs};
use crate::template::{Template, UPSTREAM};

/// Generates with the first provider of a chain that succeeds, judges every
/// candidate with the step's gates, and keeps the best that pass.
///
/// Seeds are reproducible: the step's `seed` param if set, else one derived from
/// the job key and step name; a regeneration round `r` uses
/// `derive_seed(seed, ["regen", r])`. Every candidate's verdicts land in its
/// provenance.
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
    model: Option<String>,
    prompt: Template,
    negative: Option<Template>,
    params: Params,
    raw: serde_json::Map<String, serde_json::Value>,
    gates: Vec<Arc<dyn QualityGate>>,
    on_fail: OnGateFail,
    keep: usize,
    seed: SeedPolicy,
}

impl GenerateStep {
    /// A step for `task`, calling the providers of `chain` in order, with a prompt
    /// template over job variables. Fails if the template does not parse.
    pub fn new<I, S>(task: Task, chain: I, prompt: &str) -> Result<Self, StepError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Ok(GenerateStep {
            task,
            chain: chain.into_iter().map(Into::into).collect(),
            model: None,
            prompt: Template::new(prompt).map_err(StepError::from)?,
            negative: None,
            params: Params::default(),
            raw: serde_json::Map::new(),
            gates: Vec::new(),
            on_fail: OnGateFail::default(),
            keep: 1,
            seed: SeedPolicy::Derived,
        })
    }

    /// The model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// A negative-prompt template.
    pub fn negative(mut self, t: &str) -> Result<Self, StepError> {
        self.negative = Some(Template::new(t).map_err(StepError::from)?);
        Ok(self)
    }

    /// Append literal text to the prompt (a reviewer's note): it is not a
    /// template, so braces in it are kept as written.
    pub fn append_to_prompt(mut self, text: &str) -> Result<Self, StepError> {
        if text.is_empty() {
            return Ok(self);
        }
        let literal = text.replace("{% endraw %}", "{ % endraw %}");
        let src = format!("{}{{% raw %}}{literal}{{% endraw %}}", self.prompt.source());
        self.prompt = Template::new(&src).map_err(StepError::from)?;
        Ok(self)
    }

    /// Output size.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.params.width = Some(width);
        self.params.height = Some(height);
        self
    }

    /// Typed params (overlaid on what is set).
    pub fn params(mut self, p: &Params) -> Self {
        self.params.merge_from(p);
        self
    }

    /// Start from a preset (a named style, a brand kit): its params apply
    /// where the step sets none, whether the step's own are set before or
    /// after. Parameters layer as defaults < preset < step < job.
    ///
    /// ```
    /// use creative_core::{GenerateStep, Params, Task};
    /// let brand = Params { style: Some("flat".into()), width: Some(1024), ..Default::default() };
    /// let step = GenerateStep::new(Task::Image, ["art"], "a mug").unwrap().size(512, 512).preset(&brand);
    /// assert_eq!(step.resolved_params().width, Some(512));
    /// assert_eq!(step.resolved_params().style.as_deref(), Some("flat"));
    /// ```
    pub fn preset(mut self, preset: &Params) -> Self {
        let mut p = preset.clone();
        p.merge_from(&self.params);
        self.params = p;
        self
    }

    /// How the step chooses its seed. Default [`SeedPolicy::Derived`]; a
    /// `seed` in [`params`](Self::params) set afterwards fixes it.
    pub fn seed_policy(mut self, policy: SeedPolicy) -> Self {
        self.params.seed = match policy {
            SeedPolicy::Fixed(s) => Some(s),
            _ => None,
        };
        self.seed = policy;
        self
    }

    /// The step's params as they stand (presets and its own, before job
    /// variables and the seed).
    pub fn resolved_params(&self) -> &Params {
        &self.params
    }

    /// Raw provider fields.
    pub fn raw(mut self, raw: serde_json::Map<String, serde_json::Value>) -> Self {
        self.raw = raw;
        self
    }

    /// Add a gate (a gate value, or one shared behind an `Arc`).
    pub fn gate(mut self, g: impl IntoGate) -> Self {
        self.gates.push(g.into_gate());
        self
    }

    /// The step's gates, in the order they judge.
    pub fn gates(&self) -> &[Arc<dyn QualityGate>] {
        &self.gates
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

    fn request(&self, inputs: &StepInputs, ctx: &StepCtx, seed: u64) -> Result<Request, StepError> {
        let templates = || std::iter::once(&self.prompt).chain(self.negative.as_ref());
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
        let mut params = self.params.clone();
        params.seed = Some(seed);
        let render = |t: &Template| t.render(&vars).map_err(StepError::from);
        Ok(Request {
            task: self.task,
            model: self.model.clone(),
            prompt: render(&self.prompt)?,
            negative_prompt: self.negative.as_ref().map(render).transpose()?,
            inputs: inputs
                .groups()
                .iter()
                .filter(|(n, _)| !(chained && read.contains(&**n)))
                .flat_map(|(_, a)| a.iter().cloned())
                .collect(),
            params,
            raw: self.raw.clone(),
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
        let mut names = std::collections::BTreeSet::new();
        for t in std::iter::once(&self.prompt).chain(self.negative.as_ref()) {
            names.extend(t.upstream_steps().into_iter().flatten());
        }
        names.into_iter().map(str::to_string).collect()
    }

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let base_seed = match self.params.seed {
            Some(s) => s,
            None => self.seed.choose(|| ctx.derived_seed()),
        };
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
            let req = self.request(inputs, ctx, seed)?;
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
                let records = judge(&self.gates, &a, ctx, &gctx, round).await;
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
