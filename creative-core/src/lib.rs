//! # creative-core
//!
//! The engine of `creative`: artifacts and their provenance, the four traits
//! ([`Provider`], [`Step`], [`QualityGate`], [`Pipeline`]), DAG pipelines, and an
//! executor that runs many jobs with bounded concurrency, retries, timeouts,
//! fallbacks, circuit breakers, budgets, quality gates, cancellation and events.
//!
//! ```
//! use std::sync::Arc;
//! use creative_core::{Dag, Executor, GenerateStep, Job, Task};
//! # use creative_core::{Provider, Capabilities, CallCtx, Request, Generation, ProviderError, Artifact};
//! # struct Echo;
//! # #[async_trait::async_trait]
//! # impl Provider for Echo {
//! #     fn id(&self) -> &str { "echo" }
//! #     fn capabilities(&self) -> Capabilities { Capabilities { tasks: vec![Task::Text], ..Default::default() } }
//! #     async fn generate(&self, r: &Request, _: &CallCtx) -> Result<Generation, ProviderError> {
//! #         Ok(Generation { artifacts: vec![Artifact::text_plain(r.prompt.clone())], ..Default::default() })
//! #     }
//! # }
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let exec = Executor::builder().provider(Echo).concurrency(8).build().unwrap();
//! let dag = Dag::builder("tagline")
//!     .step("write", GenerateStep::new(Task::Text, ["echo"], "a tagline for {{ product }}").unwrap(), &[])
//!     .build()
//!     .unwrap();
//! let jobs = ["mug", "lamp"].map(|p| Job::new([("product", p)]));
//! let out = exec.run(Arc::new(dag), jobs).await.unwrap();
//! assert_eq!(out.jobs[0].outputs("write")[0].text(), Some("a tagline for mug"));
//! # }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod artifact;
pub mod cancel;
pub mod canonical;
pub mod dag;
pub mod deliver;
pub mod error;
pub mod events;
pub mod exec;
pub mod gate;
pub mod generate;
pub mod job;
pub mod limits;
pub mod pipeline;
pub mod pixels;
pub mod preset;
pub mod provenance;
pub mod provider;
pub mod registry;
pub mod request;
pub mod resilience;
pub mod step;
pub mod store;
pub mod template;

pub use artifact::{Artifact, ArtifactId, MediaKind, MediaType, Meta};
pub use cancel::CancellationToken;
pub use dag::{Dag, DagBuilder};
pub use deliver::{Delivery, Receipt, Sink, SinkError};
pub use error::{ConfigError, ErrorKind, GateError, PipelineError, ProviderError, StepError, StepErrorKind};
pub use events::{Event, EventKind, EventStream, Progress, Status};
pub use exec::{
    CallOutcome, Executor, ExecutorBuilder, JobCtx, JobResult, JobTally, ProviderLimits, Retain, RunError, RunHandle,
    RunOptions, RunOutcome, RunStats, RunSummary, StepResult, StepState,
};
pub use gate::{GateCtx, OnGateFail, QualityGate, Verdict};
pub use generate::GenerateStep;
pub use job::{derive_seed, Job, SeedPolicy, Vars};
pub use pipeline::Pipeline;
pub use preset::Preset;
pub use provenance::{GateRecord, Provenance, RejectedCandidate};
pub use provider::{
    settings_fingerprint, CallCtx, CallObserver, CallProgress, Capabilities, MemberCall, Provider, RouteReason,
};
pub use registry::{BuildCtx, Registry};
pub use request::{Generation, Params, Request, Task, Usage};
pub use step::{Step, StepCtx, StepInputs};
pub use store::{GenerationCache, Journal, Recorded, StoreError};
pub use template::{Template, TemplateError};
