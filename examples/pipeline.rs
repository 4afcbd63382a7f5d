//! A pipeline built in Rust code, without a spec file, run offline.
//!
//! ```text
//! cargo run --release --example pipeline
//! ```
//!
//! Two `procedural` stand-ins play a flaky primary provider (one call in four
//! fails, like a busy API) and a backup. Each job generates a hero image judged
//! by sharpness and exposure gates, makes three channel renditions from it, and
//! writes a tagline judged by a text gate. The event stream shows retries,
//! fallbacks and gate verdicts as they happen; the results keep every artifact's
//! provenance (provider, seed, attempt, cost, verdicts).

use std::error::Error;
use std::sync::Arc;

use creative::engine::resilience::{Backoff, RetryPolicy};
use creative::engine::{Dag, EventKind, Executor, GenerateStep, Job, OnGateFail, ProviderLimits, RunOptions, Task};
use creative::ops::gates::{ExposureGate, ExposureSettings, SharpnessGate, SharpnessSettings, TextGate, TextSettings};
use creative::ops::steps::{RenditionsSettings, RenditionsStep};
use creative::providers::procedural::{Procedural, ProceduralSettings};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The providers: a flaky primary behind a per-provider limit, and a backup.
    let primary = Procedural::with_settings(
        "studio",
        ProceduralSettings {
            latency_ms: 20,
            failure_rate: 0.25,
            chaos_seed: Some(7),
            ..ProceduralSettings::default()
        },
    )?;
    let exec = Executor::builder()
        .provider_with_limits(
            Arc::new(primary),
            ProviderLimits {
                concurrency: Some(4),
                ..ProviderLimits::default()
            },
        )
        .provider(Arc::new(Procedural::new("backup")))
        .concurrency(8)
        .retry(RetryPolicy {
            max_attempts: 2,
            backoff: Backoff::new(
                std::time::Duration::from_millis(5),
                std::time::Duration::from_millis(50),
            )?,
            ..RetryPolicy::default()
        })
        .build()?;

    // The steps. Prompts are templates over each job's variables.
    let hero = GenerateStep::new(
        Task::Image,
        ["studio", "backup"],
        "studio photo of a {{ product }}, {{ mood }} light",
    )?
    .size(768, 768)
    .gate(Arc::new(SharpnessGate::new(SharpnessSettings::default())?))
    .gate(Arc::new(ExposureGate::new(ExposureSettings::default())?))
    .on_gate_fail(OnGateFail::Regenerate { max: 2 });
    let channels = RenditionsStep::new(serde_json::from_value::<RenditionsSettings>(serde_json::json!({
        "renditions": [
            { "aspect": "1:1", "width": 512 },
            { "aspect": "9:16", "width": 360 },
            { "aspect": "16:9", "width": 640 },
        ],
        "output": { "format": "webp", "quality": 85 },
    }))?)?;
    let tagline = GenerateStep::new(Task::Text, ["studio", "backup"], "a short tagline for a {{ product }}")?.gate(
        Arc::new(TextGate::new(TextSettings {
            min_chars: Some(10),
            max_chars: Some(200),
            ..TextSettings::default()
        })?),
    );
    let dag = Dag::builder("product-shots")
        .step("hero", hero, &[])
        .step("channels", channels, &["hero"])
        .step("tagline", tagline, &[])
        .build()?;

    // The jobs: a small matrix, one job per combination.
    let jobs: Vec<Job> = ["mug", "lamp", "chair", "bag"]
        .iter()
        .flat_map(|p| ["warm", "cool"].map(|m| Job::new([("product", *p), ("mood", m)])))
        .collect();

    let mut run = exec.start(
        Arc::new(dag),
        jobs,
        RunOptions {
            ..RunOptions::default()
        },
    )?;
    let mut events = run.events().ok_or("no event stream")?;
    while let Some(e) = events.next().await {
        match e.kind {
            EventKind::Retry {
                step, provider, reason, ..
            } => println!("  retry    {step} on {provider}: {reason}"),
            EventKind::Fallback { step, from, to, .. } => println!("  fallback {step}: {from} -> {to}"),
            EventKind::GateVerdict {
                step,
                gate,
                passed: false,
                reasons,
                ..
            } => println!("  gate     {step}/{gate} failed: {}", reasons.join("; ")),
            EventKind::JobFinished { status, progress, .. } => {
                println!("job {}/{} {status:?}", progress.jobs_done, progress.jobs_total)
            }
            _ => {}
        }
    }
    let outcome = run.wait().await;

    println!();
    for job in &outcome.jobs {
        let vars = job.job.vars();
        let hero = job.outputs("hero");
        let Some(h) = hero.first() else {
            println!("{} / {}: {:?}", vars["product"], vars["mood"], job.status);
            continue;
        };
        let p = h.provenance();
        let sizes: Vec<String> = job
            .outputs("channels")
            .iter()
            .map(|a| format!("{} B", a.data().len()))
            .collect();
        let tagline = job
            .outputs("tagline")
            .first()
            .and_then(|a| std::str::from_utf8(a.data()).ok().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "{:<6} {:<5} hero by {} (seed {}, attempt {}, {} gate verdicts), renditions {}, tagline \"{}\"",
            vars["product"].as_str().unwrap_or_default(),
            vars["mood"].as_str().unwrap_or_default(),
            p.provider.as_deref().unwrap_or("?"),
            p.seed.unwrap_or_default(),
            p.attempt,
            p.gates.len(),
            sizes.join(", "),
            tagline.trim()
        );
    }
    let s = outcome.stats;
    println!(
        "\n{:?}: {} attempts ({} failed, {} retries), {} gate failures, ${:.4}, {:.0} ms",
        outcome.status,
        s.attempts,
        s.failed_attempts,
        s.retries,
        s.gate_failures,
        s.cost_usd,
        outcome.elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}
