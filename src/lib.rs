//! `creative`: the facade over the workspace crates.
//!
//! Applications usually depend on this crate alone: it re-exports the engine
//! ([`core`]), the campaign layer (specs, folder stores, delivery:
//! [`campaign`]), the provider backends ([`providers`]) and the image operations
//! and quality gates ([`ops`]), and layer 3: a brief turned into a spec, and
//! advice on a finished run ([`agent`]).
#![forbid(unsafe_code)]

pub use creative_agent as agent;
pub use creative_campaign as campaign;
pub use creative_core as core;
pub use creative_ops as ops;
pub use creative_providers as providers;

/// What most programs use, in one import: `use creative::prelude::*;`.
///
/// ```
/// use creative::prelude::*;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let exec = Executor::builder()
///     .provider(std::sync::Arc::new(creative::providers::procedural::Procedural::new("art")))
///     .build();
/// let dag = Dag::builder("hero")
///     .step("hero", GenerateStep::new(Task::Image, ["art"], "a {{ product }}")?.size(64, 64), &[])
///     .build()?;
/// let out = exec.run(std::sync::Arc::new(dag), [Job::new([("product", "mug")])]).await?;
/// assert_eq!(out.status, Status::Succeeded);
/// # Ok(()) }
/// ```
pub mod prelude {
    pub use creative_campaign::spec::{Campaign, CampaignOptions, Registry, Spec};
    pub use creative_core::{
        Artifact, CancellationToken, Dag, Event, EventKind, Executor, GenerateStep, Job, OnGateFail, Pipeline,
        Provider, ProviderError, QualityGate, Request, RunOptions, RunOutcome, Status, Step, StepError, Task,
    };
}
