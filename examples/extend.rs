//! Extending the engine from Rust: your own provider, step and quality gate, and
//! a money budget that stops new work cleanly.
//!
//! ```text
//! cargo run --release --example extend
//! ```
//!
//! - `HouseCopywriter` stands for an in-house text service. It honours the
//!   call's cancellation token, classifies its failures (a rate limit carries a
//!   Retry-After the engine waits out; a refusal is a content-policy error that is
//!   never retried) and reports each call's cost.
//! - `LegalLine` is a deterministic step: it appends the legal line of the job's
//!   locale to the copy it receives.
//! - `BrandVoice` is a studio check: it fails copy that uses words the brand
//!   avoids, naming them, so the generate step regenerates with a new seed.
//!
//! The budget allows $0.05: the run stops starting jobs once it is spent, and
//! the jobs never started say so (`BudgetExhausted`) instead of vanishing.

use std::error::Error;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use creative::engine::resilience::Budget;
use creative::engine::{
    Artifact, CallCtx, Capabilities, Dag, Executor, GateCtx, GateError, GenerateStep, Generation, Job, MediaKind,
    OnGateFail, Provider, ProviderError, QualityGate, Request, RunOptions, Step, StepCtx, StepError, StepInputs, Task,
    Usage, Verdict,
};

/// An in-house copy service (simulated): every fourth call is rate limited, and
/// the service refuses prompts about competitors.
struct HouseCopywriter {
    calls: AtomicU32,
}

#[async_trait]
impl Provider for HouseCopywriter {
    fn id(&self) -> &str {
        "house-copy"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tasks: vec![Task::Text],
            seed: true,
            ..Capabilities::default()
        }
    }

    fn estimate_cost(&self, _request: &Request) -> f64 {
        0.004
    }

    async fn generate(&self, request: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        // A real service is awaited here; racing the token lets a cancel stop it.
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(15)) => {}
            () = ctx.cancel.cancelled() => return Err(ProviderError::cancelled(self.id())),
        }
        if request.prompt.contains("competitor") {
            return Err(ProviderError::new(
                creative::engine::ErrorKind::ContentPolicy,
                self.id(),
                "refused: comparative claims need legal review",
            ));
        }
        if n.is_multiple_of(4) {
            return Err(
                ProviderError::rate_limited(self.id(), "too many requests", Some(Duration::from_millis(30)))
                    .with_status(429),
            );
        }
        let seed = request.params.seed.unwrap_or(0);
        let adjectives = ["cheap", "bright", "calm", "bold", "warm", "clever"];
        let adjective = adjectives[(seed % adjectives.len() as u64) as usize];
        let text = format!("{}: {adjective}, made to last.", request.prompt);
        Ok(Generation {
            artifacts: vec![Artifact::text_plain(text)],
            usage: Usage {
                cost_usd: 0.004,
                ..Usage::default()
            },
            raw: None,
        })
    }
}

/// Appends the legal line for the job's `locale` to each text input.
struct LegalLine;

#[async_trait]
impl Step for LegalLine {
    fn kind(&self) -> &str {
        "legal_line"
    }

    fn accepts(&self) -> Option<&[MediaKind]> {
        Some(&[MediaKind::Text])
    }

    fn produces(&self) -> Option<MediaKind> {
        Some(MediaKind::Text)
    }

    fn min_inputs(&self) -> usize {
        1
    }

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let line = match ctx.job.vars().get("locale").and_then(|v| v.as_str()) {
            Some("fr") => "Offre soumise à conditions.",
            Some("de") => "Es gelten die Bedingungen.",
            _ => "Terms apply.",
        };
        inputs
            .all()
            .map(|a| {
                let text = a
                    .text()
                    .ok_or_else(|| StepError::invalid_input(format!("{} is not UTF-8 text", a.id().short())))?;
                Ok(Artifact::text_plain(format!("{text} {line}")))
            })
            .collect()
    }
}

/// Fails copy that uses a word the brand avoids.
struct BrandVoice {
    avoid: Vec<&'static str>,
}

#[async_trait]
impl QualityGate for BrandVoice {
    fn name(&self) -> &str {
        "brand_voice"
    }

    fn accepts(&self) -> Option<&[MediaKind]> {
        Some(&[MediaKind::Text])
    }

    async fn check(&self, artifact: &Artifact, _ctx: &GateCtx) -> Result<Verdict, GateError> {
        let text = artifact.text().unwrap_or_default().to_lowercase();
        let found: Vec<&str> = self.avoid.iter().copied().filter(|w| text.contains(w)).collect();
        Ok(if found.is_empty() {
            Verdict::pass(1.0)
        } else {
            Verdict::fail(0.0, format!("uses {}", found.join(", ")))
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let exec = Executor::builder()
        .provider(Arc::new(HouseCopywriter {
            calls: AtomicU32::new(0),
        }))
        // One call at a time, so the simulated service's rate limits (every fourth
        // call) and the budget land on the same jobs in every run.
        .concurrency(1)
        .build()?;
    let copy = GenerateStep::new(Task::Text, ["house-copy"], "{{ product }} for {{ audience }}")?
        .gate(Arc::new(BrandVoice { avoid: vec!["cheap"] }))
        .on_gate_fail(OnGateFail::Regenerate { max: 3 });
    let dag = Dag::builder("copy")
        .step("copy", copy, &[])
        .step("legal", LegalLine, &["copy"])
        .build()?;

    let mut jobs: Vec<Job> = Vec::new();
    for product in ["Mug", "Lamp", "Chair", "Bag", "Desk", "Shelf"] {
        for (audience, locale) in [("students", "en"), ("étudiants", "fr")] {
            jobs.push(Job::new([
                ("product", product),
                ("audience", audience),
                ("locale", locale),
            ]));
        }
    }
    jobs.insert(
        2,
        Job::new([
            ("product", "Mug vs competitor"),
            ("audience", "everyone"),
            ("locale", "en"),
        ]),
    );

    let run = exec.start(
        Arc::new(dag),
        jobs,
        RunOptions {
            budget: Some(Arc::new(Budget::new().max_cost_usd(0.05))),
            ..RunOptions::default()
        },
    )?;
    let outcome = run.wait().await;
    for job in &outcome.jobs {
        let product = job.job.vars()["product"].as_str().unwrap_or_default().to_string();
        match job.outputs("legal").first().and_then(Artifact::text) {
            Some(text) => {
                let p = job.outputs("copy")[0].provenance().clone();
                println!(
                    "{:?} {product}: \"{text}\" (seed {}, attempt {}, regeneration round {})",
                    job.status,
                    p.seed.unwrap_or_default(),
                    p.attempt,
                    p.regeneration
                );
            }
            None => {
                let why = job
                    .steps
                    .iter()
                    .find_map(|s| s.error.as_ref().map(ToString::to_string))
                    .unwrap_or_else(|| "not started".into());
                println!("{:?} {product}: {why}", job.status);
            }
        }
    }
    let s = outcome.stats;
    println!(
        "\n{:?}: {} attempts, {} gate failures, ${:.3} of a $0.050 budget",
        outcome.status, s.attempts, s.gate_failures, s.cost_usd
    );
    Ok(())
}
