//! Declarative specs: providers, presets, pipeline, campaign matrix, budgets,
//! outputs, read from TOML or JSON.

mod registry;

pub use registry::{BuildCtx, GateFactory, ProviderFactory, Registry, StepFactory};
