//! Declarative specs: providers, presets, pipeline, campaign matrix, budgets,
//! outputs, read from TOML or JSON.

mod registry;

pub use registry::{GateFactory, ProviderFactory, Registry, StepFactory};
