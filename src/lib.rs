//! `creative`: the facade over the workspace crates.
//!
//! Applications usually depend on this crate alone: it re-exports the engine
//! ([`engine`]), the campaign layer (specs, folder stores, delivery:
//! [`campaign`]), the provider backends ([`providers`]) and the image operations
//! and quality gates ([`ops`]), and layer 3: a brief turned into a spec, and
//! advice on a finished run ([`agent`]).
#![forbid(unsafe_code)]

pub use creative_agent as agent;
pub use creative_campaign as campaign;
// Not `core`: that name is the language's own crate, and a re-export under it
// shadows `core::` paths in the users' code and macros.
pub use creative_core as engine;
pub use creative_ops as ops;
pub use creative_providers as providers;

/// What most programs use, in one import: `use creative::prelude::*;`.
///
/// ```
/// use creative::prelude::*;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let exec = Executor::builder()
///     .provider(creative::providers::procedural::Procedural::new("art"))
///     .build()?;
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
        Artifact, CancellationToken, Dag, Event, EventKind, Executor, GenerateStep, Job, OnGateFail, Pipeline, Preset,
        Provider, ProviderError, QualityGate, Request, RunOptions, RunOutcome, Status, Step, StepError, Task,
    };
}
