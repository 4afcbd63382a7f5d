//! Host providers, steps and gates: the host does a provider call, a
//! pipeline step or a gate check through one callback.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use async_trait::async_trait;
use creative_campaign::spec::{BuildCtx, GateFactory, ProviderFactory, Registry, StepFactory};
use creative_core::{
    Artifact, CallCtx, Capabilities, ConfigError, ErrorKind, GateCtx, GateError, Generation, MediaKind, Provider,
    ProviderError, QualityGate, Request, Step, StepCtx, StepError, StepInputs, Task, Usage, Verdict,
};
use serde_json::{json, Value};

use super::convert::{convert_outputs, convert_to_from, ConvertTo};
use super::{
    adopt, creative_free_fn, creative_host_call, creative_host_fn, register, Callbacks, HostCtx, HostExt, Role,
};
use crate::engine::creative_engine;
use crate::panic::guard;
use crate::status::{creative_status, FfiError};

/// A host provider: a spec names its kind in `[providers.<id>] kind = "..."`.
///
/// Its settings table is handed to the callback in the context JSON; the engine
/// reads four of them: `tasks` (the tasks it performs, default all),
/// `seed` (whether it honours seeds, default true), `max_count` (most
/// candidates per call, default 1) and `convert_to` (see
/// `creative_host_step`). This struct never changes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct creative_host_provider {
    /// Handed to every call; may be NULL.
    pub user_data: *mut c_void,
    /// Called exactly once with `user_data` when the library no longer needs it
    /// (even when registration fails); may be NULL.
    pub free_user_data: creative_free_fn,
    /// Performs one provider call: reads the request from the context JSON
    /// (`request`: task, model, prompt, params, raw...) and input artifacts, adds
    /// the generated artifacts with `creative_host_call_add_output`, may report the
    /// cost with `creative_host_call_set_cost`. Must not be NULL.
    pub generate: creative_host_fn,
}

/// A host step: a spec names its kind in a pipeline step (`kind = "..."`).
///
/// Its settings (the step entry minus `name`, `kind`, `inputs`) are handed to the
/// callback in the context JSON; the engine reads `produces` (`image`, `text`,
/// `audio`, `video`, `model3d`), `min_inputs` and `convert_to` when present.
/// `convert_to` (`"image/png"` or `"image/jpeg"`) makes the library convert every
/// image the callback hands back (PPM/PGM, PNG, JPEG) into that format, so a host
/// that renders to a format other tools cannot read still delivers one they can.
/// This struct never changes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct creative_host_step {
    /// Handed to every call; may be NULL.
    pub user_data: *mut c_void,
    /// Called exactly once with `user_data` when the library no longer needs it
    /// (even when registration fails); may be NULL.
    pub free_user_data: creative_free_fn,
    /// Runs the step for one job: reads the inputs, adds outputs with
    /// `creative_host_call_add_output`. Must not be NULL.
    pub run: creative_host_fn,
}

/// A host quality gate: a spec names its kind where gates are listed.
///
/// The artifact judged is input 0 of the call. This struct never changes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct creative_host_gate {
    /// Handed to every call; may be NULL.
    pub user_data: *mut c_void,
    /// Called exactly once with `user_data` when the library no longer needs it
    /// (even when registration fails); may be NULL.
    pub free_user_data: creative_free_fn,
    /// Judges one artifact and sets the verdict with
    /// `creative_host_call_set_verdict`. A failing verdict is a normal answer
    /// (return OK); a non-OK return means the gate could not judge, which fails
    /// the check. Must not be NULL.
    pub check: creative_host_fn,
}

fn artifact_json(a: &Artifact) -> Value {
    json!({
        "id": a.id().as_str(),
        "media_type": a.media().as_str(),
        "size": a.data().len(),
        "meta": a.meta(),
    })
}

// ----- provider -----

struct HostProvider {
    id: String,
    ext: Arc<HostExt>,
    host: HostCtx,
    settings: Value,
    caps: Capabilities,
    convert: Option<ConvertTo>,
}

fn caps_from(settings: &Value) -> Result<Capabilities, ConfigError> {
    let all = vec![
        Task::Text,
        Task::Image,
        Task::ImageEdit,
        Task::Video,
        Task::Audio,
        Task::Model3d,
    ];
    let tasks = match settings.get("tasks") {
        None => all,
        Some(v) => serde_json::from_value::<Vec<Task>>(v.clone())
            .map_err(|e| ConfigError::new("tasks", format!("{e} (expected a list such as [\"image\", \"text\"])")))?,
    };
    let seed = match settings.get("seed") {
        None => true,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| ConfigError::new("seed", "expected true or false"))?,
    };
    let max_count = match settings.get("max_count") {
        None => 1,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| ConfigError::new("max_count", "expected a whole number of at least 1"))?,
    };
    Ok(Capabilities {
        tasks,
        seed,
        negative_prompt: true,
        max_count,
    })
}

fn provider_error(id: &str, kind_of: &Result<creative_status, i32>, message: String) -> ProviderError {
    let kind = match kind_of {
        Ok(creative_status::Timeout) => ErrorKind::Timeout,
        Ok(creative_status::Cancelled) => ErrorKind::Cancelled,
        Ok(creative_status::BudgetExceeded) => ErrorKind::Budget,
        Ok(creative_status::ProviderError) | Ok(creative_status::Io) | Ok(creative_status::Internal) => {
            ErrorKind::Transient
        }
        _ => ErrorKind::Invalid,
    };
    ProviderError::new(kind, id, message)
}

#[async_trait]
impl Provider for HostProvider {
    fn id(&self) -> &str {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }

    async fn generate(&self, request: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        let context = json!({
            "role": "provider",
            "kind": self.ext.kind,
            "id": self.id,
            "settings": self.settings,
            "attempt": ctx.attempt,
            "request": request.resolved_json(),
            "inputs": request.inputs.iter().map(artifact_json).collect::<Vec<_>>(),
        });
        let call = creative_host_call::new(Role::Provider, context, request.inputs.clone(), ctx.cancel.clone());
        let r = self
            .host
            .call(self.ext.clone(), call)
            .await
            .map_err(|e| ProviderError::transient(&self.id, e.to_string()))?;
        if r.code != Ok(creative_status::Ok) {
            let msg = r.call.failure(&self.ext.kind, &r.code);
            return Err(provider_error(&self.id, &r.code, msg));
        }
        if r.call.outputs.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::Protocol,
                &self.id,
                format!(
                    "host provider `{}` returned OK without adding an output (creative_host_call_add_output)",
                    self.ext.kind
                ),
            ));
        }
        let artifacts = convert_outputs(r.call.outputs, self.convert).map_err(|m| {
            ProviderError::new(
                ErrorKind::Protocol,
                &self.id,
                format!("host provider `{}`: {m}", self.ext.kind),
            )
        })?;
        Ok(Generation {
            artifacts,
            usage: Usage {
                cost_usd: r.call.cost_usd.unwrap_or(0.0),
                ..Usage::default()
            },
            raw: None,
        })
    }
}

// ----- step -----

struct HostStep {
    ext: Arc<HostExt>,
    host: HostCtx,
    settings: Value,
    produces: Option<MediaKind>,
    min_inputs: usize,
    convert: Option<ConvertTo>,
}

#[async_trait]
impl Step for HostStep {
    fn kind(&self) -> &str {
        &self.ext.kind
    }

    fn produces(&self) -> Option<MediaKind> {
        self.produces
    }

    fn min_inputs(&self) -> usize {
        self.min_inputs
    }

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let described: Vec<Value> = inputs
            .groups()
            .iter()
            .flat_map(|(from, arts)| {
                arts.iter().map(move |a| {
                    let mut v = artifact_json(a);
                    v["from_step"] = json!(&**from);
                    v
                })
            })
            .collect();
        let context = json!({
            "role": "step",
            "kind": self.ext.kind,
            "step": &*ctx.step,
            "job": {"key": ctx.job.key(), "vars": &**ctx.job.vars()},
            "seed": ctx.derived_seed(),
            "settings": self.settings,
            "inputs": described,
        });
        let parents: Vec<_> = inputs.all().map(|a| a.id().clone()).collect();
        let call = creative_host_call::new(Role::Step, context, inputs.all().cloned().collect(), ctx.cancel.clone());
        let r = self
            .host
            .call(self.ext.clone(), call)
            .await
            .map_err(|e| StepError::internal(e.to_string()).with_source(e))?;
        if r.code != Ok(creative_status::Ok) {
            let msg = r.call.failure(&self.ext.kind, &r.code);
            return Err(match r.code {
                Ok(creative_status::Cancelled) => StepError::cancelled(),
                Ok(creative_status::InvalidArgument) => StepError::invalid_input(msg),
                Ok(creative_status::Io) => StepError::io(msg),
                Ok(creative_status::BudgetExceeded) => StepError::budget(msg),
                _ => StepError::internal(msg),
            });
        }
        let outputs = convert_outputs(r.call.outputs, self.convert)
            .map_err(|e| StepError::internal(format!("host step `{}`: {e}", self.ext.kind)).with_source(e))?;
        Ok(outputs
            .into_iter()
            .map(|mut a| {
                let p = a.provenance_mut();
                p.step = ctx.step.to_string();
                p.parents = parents.clone();
                a
            })
            .collect())
    }
}

// ----- gate -----

struct HostGate {
    ext: Arc<HostExt>,
    host: HostCtx,
    settings: Value,
}

#[async_trait]
impl QualityGate for HostGate {
    fn name(&self) -> &str {
        &self.ext.kind
    }

    async fn check(&self, artifact: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        let mut art = artifact_json(artifact);
        art["provenance"] = serde_json::to_value(artifact.provenance()).unwrap_or_default();
        let context = json!({
            "role": "gate",
            "kind": self.ext.kind,
            "job": {"key": ctx.job_key, "vars": &*ctx.vars},
            "settings": self.settings,
            "artifact": art,
        });
        let call = creative_host_call::new(Role::Gate, context, vec![artifact.clone()], ctx.cancel.clone());
        let r = self
            .host
            .call(self.ext.clone(), call)
            .await
            .map_err(|e| GateError::new(&self.ext.kind, e.to_string()))?;
        if r.code != Ok(creative_status::Ok) {
            return Err(GateError::new(&self.ext.kind, r.call.failure(&self.ext.kind, &r.code)));
        }
        r.call.verdict.ok_or_else(|| {
            GateError::new(
                &self.ext.kind,
                "the host gate returned OK without a verdict (call creative_host_call_set_verdict)",
            )
        })
    }
}

/// Put a provider, step or gate kind into `registry`, its calls going where
/// `host` says.
pub(super) fn install(role: Role, ext: &Arc<HostExt>, registry: &mut Registry, host: HostCtx) {
    let ext = ext.clone();
    let kind = ext.kind.clone();
    match role {
        Role::Provider => {
            let factory: ProviderFactory = Arc::new(move |id: &str, settings: &Value, _: &BuildCtx| {
                // The refused key stays the field, so the spec points at it.
                let what = |e: ConfigError| {
                    ConfigError::new(
                        e.field(),
                        format!("provider `{id}` (host kind `{}`): {}", ext.kind, e.reason()),
                    )
                };
                let caps = caps_from(settings).map_err(what)?;
                let convert = convert_to_from(settings).map_err(what)?;
                Ok(Arc::new(HostProvider {
                    id: id.to_string(),
                    ext: ext.clone(),
                    host: host.clone(),
                    settings: settings.clone(),
                    caps,
                    convert,
                }) as Arc<dyn Provider>)
            });
            registry.provider(&kind, factory);
        }
        Role::Step => {
            let factory: StepFactory = Arc::new(move |settings: &Value, _: &BuildCtx| {
                let produces = match settings.get("produces") {
                    None => None,
                    Some(v) => Some(
                        serde_json::from_value::<MediaKind>(v.clone())
                            .map_err(|e| ConfigError::new("produces", format!("host step kind `{}`: {e}", ext.kind)))?,
                    ),
                };
                let min_inputs = match settings.get("min_inputs") {
                    None => 0,
                    Some(v) => v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                        ConfigError::new(
                            "min_inputs",
                            format!("host step kind `{}`: expected a whole number", ext.kind),
                        )
                    })?,
                };
                let convert = convert_to_from(settings).map_err(|e| {
                    ConfigError::new(e.field(), format!("host step kind `{}`: {}", ext.kind, e.reason()))
                })?;
                Ok(Arc::new(HostStep {
                    ext: ext.clone(),
                    host: host.clone(),
                    settings: settings.clone(),
                    produces,
                    min_inputs,
                    convert,
                }) as Arc<dyn Step>)
            });
            registry.step(&kind, factory);
        }
        Role::Gate => {
            let factory: GateFactory = Arc::new(move |settings: &Value, _: &BuildCtx| {
                Ok(Arc::new(HostGate {
                    ext: ext.clone(),
                    host: host.clone(),
                    settings: settings.clone(),
                }) as Arc<dyn QualityGate>)
            });
            registry.gate(&kind, factory);
        }
        Role::Sink | Role::SinkFinish => unreachable!("sinks are installed by `sinks::install`"),
    }
}

/// Register a host provider as kind `kind` of this engine (replacing any kind of
/// that name for runs started afterwards).
///
/// Ownership: the library owns `provider->user_data` from this call on, whatever
/// it returns: `free_user_data` is called exactly once, when the engine and every
/// run using the kind are freed, or before this returns if registration fails.
/// The struct itself is copied; it need not outlive the call. `provider` NULL is
/// `CREATIVE_STATUS_NULL_POINTER` (and nothing is freed).
/// Thread safety: any thread; runs already started keep the kinds they had.
#[no_mangle]
pub unsafe extern "C" fn creative_engine_register_provider(
    engine: *mut creative_engine,
    kind: *const c_char,
    provider: *const creative_host_provider,
) -> creative_status {
    guard("creative_engine_register_provider", || {
        // SAFETY: `provider` is NULL (`as_ref` gives None) or points to a struct
        // valid during this call (the doc: "The struct itself is copied; it need
        // not outlive the call"); it is copied at once.
        let p = unsafe { provider.as_ref() }
            .copied()
            .ok_or_else(|| FfiError::null("provider"))?;
        // SAFETY: the registration's contract, passed on: `engine` is NULL or a
        // live engine (the `creative_engine` doc), `kind` is NULL or NUL-terminated
        // text (the header's conventions), and the struct's callbacks take its
        // `user_data` as `creative_host_fn` says.
        let (engine, ext) = unsafe {
            adopt(
                engine,
                kind,
                p.user_data,
                p.free_user_data,
                Callbacks::One(p.generate),
                "provider->generate",
            )
        }?;
        register(engine, Role::Provider, ext);
        Ok(())
    })
}

/// Register a host step as kind `kind` of this engine (replacing any kind of that
/// name for runs started afterwards).
///
/// Ownership and thread safety as `creative_engine_register_provider`.
#[no_mangle]
pub unsafe extern "C" fn creative_engine_register_step(
    engine: *mut creative_engine,
    kind: *const c_char,
    step: *const creative_host_step,
) -> creative_status {
    guard("creative_engine_register_step", || {
        // SAFETY: `step` is NULL or points to a struct valid during this call
        // (as `creative_engine_register_provider`'s doc says); it is copied at once.
        let s = unsafe { step.as_ref() }
            .copied()
            .ok_or_else(|| FfiError::null("step"))?;
        // SAFETY: as in `creative_engine_register_provider`.
        let (engine, ext) = unsafe {
            adopt(
                engine,
                kind,
                s.user_data,
                s.free_user_data,
                Callbacks::One(s.run),
                "step->run",
            )
        }?;
        register(engine, Role::Step, ext);
        Ok(())
    })
}

/// Register a host quality gate as kind `kind` of this engine (replacing any kind
/// of that name for runs started afterwards).
///
/// Ownership and thread safety as `creative_engine_register_provider`.
#[no_mangle]
pub unsafe extern "C" fn creative_engine_register_gate(
    engine: *mut creative_engine,
    kind: *const c_char,
    gate: *const creative_host_gate,
) -> creative_status {
    guard("creative_engine_register_gate", || {
        // SAFETY: `gate` is NULL or points to a struct valid during this call (as
        // `creative_engine_register_provider`'s doc says); it is copied at once.
        let g = unsafe { gate.as_ref() }
            .copied()
            .ok_or_else(|| FfiError::null("gate"))?;
        // SAFETY: as in `creative_engine_register_provider`.
        let (engine, ext) = unsafe {
            adopt(
                engine,
                kind,
                g.user_data,
                g.free_user_data,
                Callbacks::One(g.check),
                "gate->check",
            )
        }?;
        register(engine, Role::Gate, ext);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_provider_capabilities_are_refused_at_their_own_keys() {
        for (settings, field) in [
            (json!({"tasks": ["paint"]}), "tasks"),
            (json!({"seed": "yes"}), "seed"),
            (json!({"max_count": 0}), "max_count"),
        ] {
            let e = caps_from(&settings).unwrap_err();
            assert_eq!(e.field(), field, "{settings}: {e}");
        }
        assert_eq!(caps_from(&json!({"max_count": 4})).unwrap().max_count, 4);
    }
}
