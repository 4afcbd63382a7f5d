use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::resilience::RetryPolicy;
use creative_core::{
    Artifact, CallCtx, GateCtx, GateError, Generation, MediaKind, Provider, QualityGate, Request, Task, Template, Vars,
    Verdict,
};

use crate::error::OpsError;

/// Settings of the `judge` gate.
///
/// Score: the judge's own score, which must be a number within 0..=1.
///
/// ```toml
/// [[gates]]
/// kind = "judge"
/// provider = "openai"        # a provider of the spec that does Task::Text with image inputs
/// model = "gpt-4o-mini"      # optional
/// rubric = "On-brand for {{ brand }}: product clearly visible, no text artefacts, no extra limbs."
/// min_score = 0.7
/// system = "You are a strict art director."   # optional
/// max_tokens = 300                            # optional
/// max_attempts = 3                            # retries on 429/5xx/timeouts (default 3)
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JudgeSettings {
    /// Provider id.
    pub provider: String,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// The rubric, a template over the job's variables.
    pub rubric: String,
    /// Lowest passing score.
    #[serde(default = "min_score")]
    pub min_score: f64,
    /// System prompt.
    #[serde(default)]
    pub system: Option<String>,
    /// Output token limit.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Calls made at most when the judge fails in a way a retry may fix (rate
    /// limit, 5xx, timeout); default 3. A judge that cannot answer would otherwise
    /// fail the artifact and cost a regeneration.
    #[serde(default = "max_attempts")]
    pub max_attempts: u32,
}

fn min_score() -> f64 {
    0.7
}

fn max_attempts() -> u32 {
    3
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    score: f64,
    #[serde(default, alias = "passed")]
    pass: Option<bool>,
    #[serde(default)]
    reasons: Vec<String>,
}

/// Asks a model to score an artifact against a rubric and parses its JSON
/// verdict `{"score": 0..1, "pass": bool, "reasons": [..]}`.
///
/// The artifact goes to the provider as an input (images) or inside the prompt
/// (text), as a `Task::Text` request with temperature 0. The verdict passes when
/// the score reaches `min_score` and the judge did not say `"pass": false`. An
/// answer that is not such an object (prose, a score outside 0..=1, unknown
/// fields), or a failed call, is a `GateError`: the gate could not judge, which
/// the engine counts as a failure, never as a pass.
///
/// Inside a run the call goes through the engine's call path
/// ([`GateCtx::call_provider`]), like a generation: it is reserved against the
/// run's budget before it is made, settled to the provider's reported cost, and
/// counted in the report (under the judge provider's row), the campaign's ledger
/// and `max_cost_usd`. A budget that is exhausted refuses the call: the gate
/// then cannot judge, which fails the artifact. The judge's provider must be
/// registered on the run's executor (a campaign registers every provider of its
/// spec). Outside a run (a context made by [`GateCtx::new`], for using the gate
/// on its own) the provider is called directly, with nothing to bill.
#[derive(Clone)]
pub struct JudgeGate {
    name: String,
    s: Arc<JudgeSettings>,
    rubric: Template,
    provider: Arc<dyn Provider>,
}

impl std::fmt::Debug for JudgeGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgeGate")
            .field("name", &self.name)
            .field("provider", &self.provider.id())
            .finish_non_exhaustive()
    }
}

impl JudgeGate {
    /// Build from settings and the provider named in them.
    pub fn new(s: JudgeSettings, provider: Arc<dyn Provider>) -> Result<Self, OpsError> {
        if !(0.0..=1.0).contains(&s.min_score) {
            return Err(OpsError::settings("min_score", "must be within 0..=1"));
        }
        if s.rubric.trim().is_empty() {
            return Err(OpsError::settings("rubric", "must not be empty"));
        }
        if !provider.capabilities().supports(Task::Text) {
            return Err(OpsError::settings(
                "provider",
                format!(
                    "provider `{}` does not do text tasks, so it cannot judge",
                    provider.id()
                ),
            ));
        }
        let rubric = Template::new(&s.rubric).map_err(|e| OpsError::settings("rubric", e.to_string()))?;
        Ok(JudgeGate {
            name: "judge".into(),
            s: Arc::new(s),
            rubric,
            provider,
        })
    }

    /// Rename the gate.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The judge's request for `a`; `None` stands for an attached artifact
    /// not known yet (a plan's estimate), which is left out.
    fn request(&self, a: Option<&Artifact>, rubric: &str) -> Request {
        let media = a.map_or_else(|| "asset".to_string(), |a| a.media().to_string());
        let mut prompt = format!("Judge the attached {media} against this rubric.\n<rubric>\n{rubric}\n</rubric>\n");
        let mut inputs = Vec::new();
        match a.map(|a| (a, a.text())) {
            Some((_, Some(t))) => prompt.push_str(&format!("<asset>\n{t}\n</asset>\n")),
            Some((a, None)) => inputs.push(a.clone()),
            None => {}
        }
        prompt.push_str(
            "Answer with one JSON object and nothing else, exactly of this shape:\n\
             {\"score\": <number from 0 to 1>, \"pass\": <true or false>, \"reasons\": [\"<short reason>\"]}",
        );
        let mut req = Request::new(Task::Text, prompt);
        req.model.clone_from(&self.s.model);
        req.inputs = inputs;
        req.params.temperature = Some(0.0);
        req.params.max_tokens = self.s.max_tokens;
        req.params.system.clone_from(&self.s.system);
        req
    }

    /// The call of a gate used outside a run: straight to the provider, with
    /// the gate's retries and the context's cancellation, billed to nothing.
    async fn call_detached(&self, req: &Request, ctx: &GateCtx, policy: &RetryPolicy) -> Result<Generation, GateError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let call = CallCtx {
                cancel: ctx.cancel.clone(),
                attempt,
                deadline: None,
                observer: None,
            };
            let result = tokio::select! {
                g = self.provider.generate(req, &call) => g,
                _ = ctx.cancel.cancelled() => return Err(GateError::new(&self.name, "cancelled")),
            };
            match result {
                Ok(g) => return Ok(g),
                Err(e) => match policy.delay_for(attempt, &e) {
                    Some(d) => tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = ctx.cancel.cancelled() => return Err(GateError::new(&self.name, "cancelled")),
                    },
                    None => {
                        return Err(GateError::new(
                            &self.name,
                            format!("judge call failed after {attempt} attempt(s): {e}"),
                        ))
                    }
                },
            }
        }
    }

    /// Parse a judge's answer into a verdict, or say why it is malformed.
    pub fn parse(&self, answer: &str) -> Result<Verdict, GateError> {
        let err = |why: &str| {
            let mut shown: String = answer.chars().take(200).collect();
            if shown.len() < answer.len() {
                shown.push('…');
            }
            GateError::new(&self.name, format!("malformed judge answer ({why}): {shown:?}"))
        };
        let (start, end) = match (answer.find('{'), answer.rfind('}')) {
            (Some(s), Some(e)) if s < e => (s, e),
            _ => return Err(err("no JSON object")),
        };
        let parsed: Answer =
            serde_json::from_str(&answer[start..=end]).map_err(|e| err(&format!("not a verdict object: {e}")))?;
        if !(0.0..=1.0).contains(&parsed.score) {
            return Err(err(&format!("score {} is outside 0..=1", parsed.score)));
        }
        let passed = parsed.score >= self.s.min_score && parsed.pass != Some(false);
        let mut reasons = parsed.reasons;
        if !passed && parsed.score < self.s.min_score {
            reasons.insert(0, format!("judge score {} is below {}", parsed.score, self.s.min_score));
        }
        Ok(Verdict {
            passed,
            score: parsed.score,
            reasons,
        })
    }
}

#[async_trait]
impl QualityGate for JudgeGate {
    fn name(&self) -> &str {
        &self.name
    }
    fn accepts(&self) -> Option<&[MediaKind]> {
        None
    }
    /// One call to the judge's provider per check (retries come on top); the
    /// request is the one sent for an image, the image left out. A rubric that
    /// does not render for these variables plans the unrendered rubric.
    fn planned_calls(&self, vars: &Vars) -> Vec<(String, Request)> {
        let rubric = self.rubric.render(vars).unwrap_or_else(|_| self.s.rubric.clone());
        vec![(self.provider.id().to_string(), self.request(None, &rubric))]
    }
    async fn check(&self, a: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        let rubric = self
            .rubric
            .render(&ctx.vars)
            .map_err(|e| GateError::new(&self.name, format!("rubric: {e}")))?;
        let req = self.request(Some(a), &rubric);
        let generation = if ctx.in_run() {
            match ctx
                .call_provider(&self.name, self.provider.id(), &req, Some(self.s.max_attempts))
                .await
            {
                Ok(out) => out.generation,
                Err(e) if e.is_cancelled() => return Err(GateError::new(&self.name, "cancelled")),
                Err(e) if e.is_budget() => {
                    let why = e.message();
                    let id = self.provider.id();
                    let msg =
                        format!("the run's budget refused the judge call to `{id}`, so it could not judge: {why}");
                    return Err(GateError::new(&self.name, msg));
                }
                Err(e) => {
                    return Err(GateError::new(
                        &self.name,
                        format!("judge call to `{}` failed: {e}", self.provider.id()),
                    ))
                }
            }
        } else {
            let policy = RetryPolicy {
                max_attempts: self.s.max_attempts.max(1),
                max_rate_limited: self.s.max_attempts.max(1),
                ..Default::default()
            };
            self.call_detached(&req, ctx, &policy).await?
        };
        let answer = generation
            .artifacts
            .iter()
            .find_map(|x| x.text())
            .ok_or_else(|| GateError::new(&self.name, "the judge answered no text"))?;
        self.parse(answer)
    }
}
