//! The registry of named kinds: how a spec's `kind = "openai"` or
//! `kind = "resize"` becomes a provider, step or gate.
//!
//! The core knows no backend: each crate registers its own kinds
//! (`creative_providers::register`, `creative_ops::register`), and a host may add
//! its own before building a spec.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::deliver::Sink;
use crate::error::ConfigError;
use crate::gate::QualityGate;
use crate::provider::Provider;
use crate::step::Step;

/// What a factory may use besides its own settings.
#[derive(Clone, Default)]
pub struct BuildCtx {
    /// The folder relative paths in the spec are resolved against (the spec's own
    /// folder).
    pub base_dir: PathBuf,
    /// The providers built so far, by id (a judge gate or a host step calls one).
    pub providers: BTreeMap<String, Arc<dyn Provider>>,
}

impl std::fmt::Debug for BuildCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildCtx")
            .field("base_dir", &self.base_dir)
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl BuildCtx {
    /// Resolve a path from the spec against the spec's folder.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        if p.is_absolute() {
            p
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Builds a provider from its id and its settings table (the spec's
/// `[providers.<id>]` minus `kind`). The error's field is the refused key
/// within the table; the spec loader places it under `providers.<id>` and adds
/// the file and line.
pub type ProviderFactory =
    Arc<dyn Fn(&str, &serde_json::Value, &BuildCtx) -> Result<Arc<dyn Provider>, ConfigError> + Send + Sync>;

/// Builds a step from its settings table (the spec's step entry minus the fields
/// the engine itself reads: `name`, `kind`, `inputs`). The error's field is the
/// refused key within the table (empty for the table as a whole); the spec
/// loader places it under `steps[i]`.
pub type StepFactory = Arc<dyn Fn(&serde_json::Value, &BuildCtx) -> Result<Arc<dyn Step>, ConfigError> + Send + Sync>;

/// Builds a gate from its settings table (minus `kind` and `name`). The error's
/// field is the refused key within the table, as for [`StepFactory`].
pub type GateFactory =
    Arc<dyn Fn(&serde_json::Value, &BuildCtx) -> Result<Arc<dyn QualityGate>, ConfigError> + Send + Sync>;

/// Builds a sink from its settings table (the spec's `[[output.sinks]]` entry
/// minus `kind`). The error's field is the refused key within the table.
pub type SinkFactory = Arc<dyn Fn(&serde_json::Value, &BuildCtx) -> Result<Arc<dyn Sink>, ConfigError> + Send + Sync>;

/// Named factories for providers, steps, gates and sinks.
///
/// ```
/// use std::sync::Arc;
/// use creative_core::{registry::Registry, ConfigError};
/// let mut reg = Registry::new();
/// reg.provider("null", Arc::new(|id: &str, _: &serde_json::Value, _: &_| Err(ConfigError::new("", format!("{id}: not available here")))));
/// assert!(reg.provider_kinds().any(|k| k == "null"));
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    providers: BTreeMap<String, ProviderFactory>,
    steps: BTreeMap<String, StepFactory>,
    gates: BTreeMap<String, GateFactory>,
    sinks: BTreeMap<String, SinkFactory>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("steps", &self.steps.keys().collect::<Vec<_>>())
            .field("gates", &self.gates.keys().collect::<Vec<_>>())
            .field("sinks", &self.sinks.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Register (or replace) a provider kind.
    pub fn provider(&mut self, kind: &str, f: ProviderFactory) -> &mut Self {
        self.providers.insert(kind.to_string(), f);
        self
    }

    /// Register (or replace) a step kind.
    pub fn step(&mut self, kind: &str, f: StepFactory) -> &mut Self {
        self.steps.insert(kind.to_string(), f);
        self
    }

    /// Register (or replace) a gate kind.
    pub fn gate(&mut self, kind: &str, f: GateFactory) -> &mut Self {
        self.gates.insert(kind.to_string(), f);
        self
    }

    /// Register (or replace) a sink kind.
    pub fn sink(&mut self, kind: &str, f: SinkFactory) -> &mut Self {
        self.sinks.insert(kind.to_string(), f);
        self
    }

    /// The sink factory for a kind.
    pub fn sink_factory(&self, kind: &str) -> Option<&SinkFactory> {
        self.sinks.get(kind)
    }

    /// Registered sink kinds.
    pub fn sink_kinds(&self) -> impl Iterator<Item = &str> {
        self.sinks.keys().map(String::as_str)
    }

    /// The provider factory for a kind.
    pub fn provider_factory(&self, kind: &str) -> Option<&ProviderFactory> {
        self.providers.get(kind)
    }

    /// The step factory for a kind.
    pub fn step_factory(&self, kind: &str) -> Option<&StepFactory> {
        self.steps.get(kind)
    }

    /// The gate factory for a kind.
    pub fn gate_factory(&self, kind: &str) -> Option<&GateFactory> {
        self.gates.get(kind)
    }

    /// Registered provider kinds.
    pub fn provider_kinds(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// Registered step kinds.
    pub fn step_kinds(&self) -> impl Iterator<Item = &str> {
        self.steps.keys().map(String::as_str)
    }

    /// Registered gate kinds.
    pub fn gate_kinds(&self) -> impl Iterator<Item = &str> {
        self.gates.keys().map(String::as_str)
    }
}
