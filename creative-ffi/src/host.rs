//! Host extensions: providers, steps and gates written by the host (a DCC tool's
//! "render this in the host", a studio's own check) as structs of function
//! pointers plus `user_data`, registered into an engine as kinds a spec may name.
//!
//! A host callback runs on one of the engine's host threads (never an async
//! worker, so a slow renderer does not stall the engine), or, for a run started
//! in pump mode, on the host's own thread inside `creative_run_pump`. It receives a
//! `creative_host_call` through which it reads its context and inputs and hands
//! back outputs or a verdict; its failure becomes that step's error (or that
//! provider call's, subject to retries and fallbacks), never a crash.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::Arc;

use async_trait::async_trait;
use creative_campaign::spec::{BuildCtx, GateFactory, ProviderFactory, StepFactory};
use creative_core::{
    Artifact, CallCtx, CancellationToken, Capabilities, ConfigError, ErrorKind, GateCtx, GateError, Generation,
    MediaKind, MediaType, Meta, Provider, ProviderError, QualityGate, Request, Step, StepCtx, StepError, StepInputs,
    Task, Usage, Verdict,
};
use serde_json::{json, Value};

use crate::engine::creative_engine;
use crate::hostthread::{in_host, CallGate, Dispatch};
use crate::panic::{guard, opt_text_arg, text_arg, Out};
use crate::status::{creative_status, FfiError};
use crate::strings::creative_bytes;

/// A host callback: does the work of a provider call, a step or a gate check.
///
/// Return `CREATIVE_STATUS_OK` (0) on success, or another `creative_status` value
/// on failure (after `creative_host_call_fail` to say why). `call` is valid only
/// until the callback returns.
///
/// Thread: one of the engine's host threads (started by the library; calls may
/// run concurrently for different jobs, so `user_data` must be safe to use from
/// several threads), or, for a run started with `"host_calls": "pump"`, the
/// thread that calls `creative_run_pump` (the host's main thread, one call at a
/// time). Inside, only `creative_host_call_*` functions may be called on `call`;
/// the callback must not free the engine or a run.
///
/// Unwinding: the callback must not throw (C++ exceptions, longjmp). The host's
/// runtime may end the thread inside it by a forced unwind (`pthread_exit`,
/// Python's finalization): that passes through the library's frames, and the
/// call fails; `creative_engine_shutdown` avoids it altogether.
pub type creative_host_fn =
    Option<unsafe extern "C-unwind" fn(user_data: *mut c_void, call: *mut creative_host_call) -> c_int>;

/// Releases a host extension's `user_data`; called exactly once.
pub type creative_free_fn = Option<unsafe extern "C-unwind" fn(user_data: *mut c_void)>;

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

/// One host callback invocation: its context, inputs, and what it hands back.
///
/// Opaque; valid only during the callback it was passed to.
pub struct creative_host_call {
    role: Role,
    context: CString,
    inputs: Vec<(Artifact, CString)>,
    outputs: Vec<Artifact>,
    verdict: Option<Verdict>,
    cost_usd: Option<f64>,
    error: Option<String>,
    cancel: CancellationToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Provider,
    Step,
    Gate,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Provider => "provider",
            Role::Step => "step",
            Role::Gate => "gate",
        }
    }
}

/// The host's callback and data, shared by every provider, step or gate built
/// from one registration. Dropping the last reference releases `user_data`.
struct HostExt {
    kind: String,
    user_data: *mut c_void,
    free_user_data: creative_free_fn,
    callback: creative_host_fn,
}

// SAFETY: the fields are plain data; the only thing not Send is `user_data`,
// which the library never dereferences, only hands to the host's functions.
// `creative_host_fn`'s doc tells the host its callback runs on the engine's
// blocking pool, so `user_data` must be safe to use from other threads, and
// `free_user_data` runs on whichever thread drops the last reference (the last
// `_free`, as `creative_engine_free`'s doc says).
unsafe impl Send for HostExt {}
// SAFETY: shared references only read the fields and pass `user_data` to the
// callback, which `creative_host_fn`'s doc says may run concurrently ("calls may
// run concurrently ..., so `user_data` must be safe to use from several
// threads").
unsafe impl Sync for HostExt {}

impl Drop for HostExt {
    fn drop(&mut self) {
        if let Some(f) = self.free_user_data {
            // SAFETY: the host's destructor for its own `user_data`
            // (`creative_free_fn`: "called exactly once"): a `HostExt` is made once
            // per registration, shared only through an `Arc`, and dropped once.
            // No callback can still be running: each holds an `Arc` to this.
            unsafe { f(self.user_data) };
        }
    }
}

/// What a finished host call handed back.
struct CallResult {
    code: Result<creative_status, i32>,
    call: creative_host_call,
}

impl creative_host_call {
    fn new(role: Role, context: Value, inputs: Vec<Artifact>, cancel: CancellationToken) -> Self {
        let inputs = inputs
            .into_iter()
            .map(|a| {
                let m = CString::new(a.media().as_str().replace('\0', "?")).unwrap_or_default();
                (a, m)
            })
            .collect();
        creative_host_call {
            role,
            context: CString::new(context.to_string()).unwrap_or_default(),
            inputs,
            outputs: Vec::new(),
            verdict: None,
            cost_usd: None,
            error: None,
            cancel,
        }
    }

    /// The failure message: the host's own words, or the status it returned.
    fn failure(&self, ext: &str, code: &Result<creative_status, i32>) -> String {
        let status = match code {
            Ok(s) => s.name().to_string(),
            Err(n) => format!("unknown status {n}"),
        };
        match &self.error {
            Some(m) => format!("host {} `{ext}` failed ({status}): {m}", self.role.as_str()),
            None => format!("host {} `{ext}` failed ({status})", self.role.as_str()),
        }
    }
}

/// Call the host on this thread (a host thread or the pumping one).
///
/// No `catch_unwind` here: a forced unwind ending this thread must pass (see
/// `hostthread`); a Rust panic cannot come out of the host's C callback.
fn invoke(ext: &HostExt, mut call: creative_host_call) -> CallResult {
    let Some(cb) = ext.callback else {
        call.error = Some("no callback".into());
        return CallResult {
            code: Ok(creative_status::Internal),
            call,
        };
    };
    // SAFETY: the host registered this callback with this `user_data`
    // (`creative_host_fn`: called on a host thread or the pumping thread,
    // concurrently), which stays valid until `free_user_data` runs in our
    // `Drop`; `call` lives on this stack for the whole call and nothing else
    // touches it meanwhile.
    let code = in_host(|| unsafe { cb(ext.user_data, &mut call) });
    CallResult {
        code: creative_status::from_code(code).ok_or(code),
        call,
    }
}

/// Where one run's host calls go, and the engine's gate they pass.
#[derive(Clone)]
pub(crate) struct HostCtx {
    pub(crate) dispatch: Dispatch,
    pub(crate) gate: Arc<CallGate>,
}

impl HostCtx {
    /// Run the host's callback for `call` where this run's host calls go, and
    /// wait (asynchronously) for its answer.
    async fn call(&self, ext: Arc<HostExt>, call: creative_host_call) -> Result<CallResult, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let gate = self.gate.clone();
        let kind = ext.kind.clone();
        let job = Box::new(move || {
            let Some(_entered) = gate.enter() else {
                let _ = tx.send(Err(format!(
                    "host kind `{}` was not called: its engine was shut down",
                    ext.kind
                )));
                return;
            };
            let r = invoke(&ext, call);
            let _ = tx.send(Ok(r));
        });
        self.dispatch
            .submit(job)
            .map_err(|why| format!("host kind `{kind}` was not called: {why}"))?;
        match rx.await {
            Ok(r) => r,
            // The job was dropped without answering: never run (its run was
            // freed or its engine shut down while it waited in a queue), or its
            // thread ended inside the host (a forced unwind).
            Err(_) => Err(format!(
                "host kind `{kind}`: the call did not return (its run was freed, its engine shut down, \
                 or the host ended the thread running it)"
            )),
        }
    }
}

/// The target of a `convert_to` setting, checked when the spec is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConvertTo {
    Png,
    Jpeg,
}

fn convert_to_from(settings: &Value) -> Result<Option<ConvertTo>, String> {
    match settings.get("convert_to") {
        None => Ok(None),
        Some(v) => match v.as_str() {
            Some("image/png") => Ok(Some(ConvertTo::Png)),
            Some("image/jpeg") => Ok(Some(ConvertTo::Jpeg)),
            _ => Err(format!(
                "`convert_to`: expected \"image/png\" or \"image/jpeg\", got {v}"
            )),
        },
    }
}

/// Re-encode the image outputs of a host call into `target`; other media pass
/// through. The pixels are decoded by content (PPM/PGM, PNG, JPEG), whatever
/// media type the host gave.
fn convert_outputs(outputs: Vec<Artifact>, target: Option<ConvertTo>) -> Result<Vec<Artifact>, String> {
    let Some(target) = target else {
        return Ok(outputs);
    };
    let (media, format) = match target {
        ConvertTo::Png => (MediaType::Png, image::ImageFormat::Png),
        ConvertTo::Jpeg => (MediaType::Jpeg, image::ImageFormat::Jpeg),
    };
    outputs
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let is_image = a.media().as_str().starts_with("image/");
            if !is_image || *a.media() == media {
                return Ok(a);
            }
            let img = image::load_from_memory(a.data()).map_err(|e| {
                format!(
                    "output {i} ({}) cannot be converted to {}: {e}",
                    a.media().as_str(),
                    media.as_str()
                )
            })?;
            // JPEG has no alpha channel.
            let img = if target == ConvertTo::Jpeg {
                image::DynamicImage::ImageRgb8(img.to_rgb8())
            } else {
                img
            };
            let mut out = std::io::Cursor::new(Vec::new());
            img.write_to(&mut out, format)
                .map_err(|e| format!("output {i}: encoding {} failed: {e}", media.as_str()))?;
            let mut meta = a.meta().clone();
            meta.width = Some(img.width());
            meta.height = Some(img.height());
            Ok(Artifact::new(media.clone(), out.into_inner()).with_meta(meta))
        })
        .collect()
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

fn caps_from(settings: &Value) -> Result<Capabilities, String> {
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
            .map_err(|e| format!("`tasks`: {e} (expected a list such as [\"image\", \"text\"])"))?,
    };
    let seed = match settings.get("seed") {
        None => true,
        Some(v) => v.as_bool().ok_or("`seed`: expected true or false")?,
    };
    let max_count = match settings.get("max_count") {
        None => 1,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1)
            .ok_or("`max_count`: expected a whole number of at least 1")?,
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
            .map_err(|m| ProviderError::transient(&self.id, m))?;
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
            .map_err(StepError::internal)?;
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
            .map_err(|m| StepError::internal(format!("host step `{}`: {m}", self.ext.kind)))?;
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
            .map_err(|m| GateError::new(&self.ext.kind, m))?;
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

// ----- registration -----

fn check_kind(kind: &str) -> Result<(), FfiError> {
    let ok = !kind.is_empty()
        && kind.len() <= 64
        && kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(FfiError::invalid(format!(
            "kind `{kind}` is not a valid name: use 1 to 64 ASCII letters, digits, `_`, `-` or `.`"
        )))
    }
}

/// Take ownership of the host's data at once, so every failure path below
/// releases it exactly once.
///
/// # Safety
/// `kind` is NULL or a NUL-terminated string; `engine` is NULL or an engine from
/// `creative_engine_new` not yet freed, and stays so for `'a`; `callback` and
/// `free_user_data` may be called with `user_data` as `creative_host_fn` and
/// `creative_free_fn` say (the caller's side of a registration).
unsafe fn adopt<'a>(
    engine: *const creative_engine,
    kind: *const c_char,
    user_data: *mut c_void,
    free_user_data: creative_free_fn,
    callback: creative_host_fn,
    callback_name: &str,
) -> Result<(&'a creative_engine, Arc<HostExt>), FfiError> {
    let mut ext = HostExt {
        kind: String::new(),
        user_data,
        free_user_data,
        callback,
    };
    // SAFETY: `kind` is NULL or a NUL-terminated string (this function's
    // contract); it is copied below, before the caller returns.
    let k = unsafe { text_arg(kind, "kind") }?;
    check_kind(k)?;
    ext.kind = k.to_string();
    if ext.callback.is_none() {
        return Err(FfiError::null(callback_name));
    }
    // SAFETY: NULL (`as_ref` gives None) or a live engine for `'a` (this
    // function's contract).
    let engine = unsafe { engine.as_ref() }.ok_or_else(|| FfiError::null("engine"))?;
    Ok((engine, Arc::new(ext)))
}

/// One registration of a host extension, kept by the engine so a run in pump
/// mode can build its host kinds with its own queue.
#[derive(Clone)]
pub(crate) struct HostKind {
    role: Role,
    ext: Arc<HostExt>,
}

impl HostKind {
    /// Whether `other` is registered under the same name for the same role (a
    /// later registration replaces it, and the earlier one's data is released).
    pub(crate) fn replaces(&self, other: &HostKind) -> bool {
        self.role == other.role && self.ext.kind == other.ext.kind
    }

    /// Put this kind into `registry`, its calls going where `host` says.
    pub(crate) fn install(&self, registry: &mut creative_campaign::spec::Registry, host: HostCtx) {
        let ext = self.ext.clone();
        let kind = ext.kind.clone();
        match self.role {
            Role::Provider => {
                let factory: ProviderFactory = Arc::new(move |id: &str, settings: &Value, _: &BuildCtx| {
                    let what =
                        |e: String| ConfigError::new("", format!("provider `{id}` (host kind `{}`): {e}", ext.kind));
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
                                .map_err(|e| format!("host step kind `{}`: `produces`: {e}", ext.kind))?,
                        ),
                    };
                    let min_inputs = match settings.get("min_inputs") {
                        None => 0,
                        Some(v) => v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                            format!("host step kind `{}`: `min_inputs`: expected a whole number", ext.kind)
                        })?,
                    };
                    let convert =
                        convert_to_from(settings).map_err(|e| format!("host step kind `{}`: {e}", ext.kind))?;
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
        }
    }
}

/// Record a registration on the engine and make its kind available to runs
/// started afterwards (on the engine's host threads unless a run says "pump").
fn register(engine: &creative_engine, role: Role, ext: Arc<HostExt>) {
    let kind = HostKind { role, ext };
    let host = engine.inner.host_ctx(Dispatch::Pool(engine.inner.pool.clone()));
    engine.inner.with_registry(|r| kind.install(r, host));
    engine.inner.add_host_kind(kind);
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
                p.generate,
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
        let (engine, ext) = unsafe { adopt(engine, kind, s.user_data, s.free_user_data, s.run, "step->run") }?;
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
        let (engine, ext) = unsafe { adopt(engine, kind, g.user_data, g.free_user_data, g.check, "gate->check") }?;
        register(engine, Role::Gate, ext);
        Ok(())
    })
}

// ----- the call's accessors -----

/// Borrow the call a host callback was handed; NULL is a
/// `CREATIVE_STATUS_NULL_POINTER` error.
///
/// # Safety
/// `call` is NULL or the pointer `invoke` passed to a host callback that has not
/// returned, and `'a` ends before it returns (`creative_host_fn`: "`call` is
/// valid only until the callback returns").
unsafe fn call_ref<'a>(call: *const creative_host_call) -> Result<&'a creative_host_call, FfiError> {
    // SAFETY: NULL (`as_ref` gives None) or the live call, by this function's
    // contract.
    unsafe { call.as_ref() }.ok_or_else(|| FfiError::null("call"))
}

/// Borrow the call a host callback was handed, to record what it hands back.
///
/// # Safety
/// As [`call_ref`], and no other reference to the call is in use for `'a`: the
/// library does not touch the call while the callback runs (`invoke` lends it
/// for the callback's whole duration), and the callback uses it through one
/// `creative_host_call_*` function at a time.
unsafe fn call_mut<'a>(call: *mut creative_host_call) -> Result<&'a mut creative_host_call, FfiError> {
    // SAFETY: NULL (`as_mut` gives None) or the live call with no other user, by
    // this function's contract.
    unsafe { call.as_mut() }.ok_or_else(|| FfiError::null("call"))
}

/// The call's context as a JSON object: `role` (`provider`, `step`, `gate`),
/// `kind`, `settings` (the spec's table for this provider, step or gate), and per
/// role: `id`, `attempt`, `request` (provider); `step`, `job` {`key`, `vars`},
/// `seed` (step); `job`, `artifact` (gate); `inputs` (descriptions of the inputs).
///
/// Lifetime: `*out_json` is lent until the callback returns; never free it.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_context_json(
    call: *const creative_host_call,
    out_json: *mut *const c_char,
) -> creative_status {
    guard("creative_host_call_context_json", || {
        // SAFETY: `out_json` is NULL or writable (the doc: `*out_json` is lent).
        let mut out = unsafe { Out::new(out_json, "out_json") }?;
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        let c = unsafe { call_ref(call) }?;
        out.write(c.context.as_ptr());
        Ok(())
    })
}

/// How many input artifacts the call has (for a gate: 1, the artifact judged).
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_input_count(
    call: *const creative_host_call,
    out_count: *mut usize,
) -> creative_status {
    guard("creative_host_call_input_count", || {
        // SAFETY: `out_count` is NULL or writable: the out-parameter the host
        // passes for the count.
        let mut out = unsafe { Out::new(out_count, "out_count") }?;
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        let c = unsafe { call_ref(call) }?;
        out.write(c.inputs.len());
        Ok(())
    })
}

/// Input artifact `index`: its bytes and (if `out_media_type` is not NULL) its
/// media type.
///
/// Lifetime: both are lent until the callback returns; never free them.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_input(
    call: *const creative_host_call,
    index: usize,
    out_data: *mut creative_bytes,
    out_media_type: *mut *const c_char,
) -> creative_status {
    guard("creative_host_call_input", || {
        // SAFETY: `out_data` is NULL or writable (the doc: the bytes are lent there).
        let mut out = unsafe { Out::new(out_data, "out_data") }?;
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        let c = unsafe { call_ref(call) }?;
        let (a, m) = c.inputs.get(index).ok_or_else(|| {
            FfiError::invalid(format!(
                "input index {index} is out of range: the call has {} input(s)",
                c.inputs.len()
            ))
        })?;
        out.write(creative_bytes::of(a.data()));
        // SAFETY: `out_media_type` is NULL ("not wanted", as the doc says) or
        // writable.
        if let Some(mut media) = unsafe { Out::optional(out_media_type) } {
            media.write(m.as_ptr());
        }
        Ok(())
    })
}

/// Hand back one output artifact (providers and steps): `len` bytes at `data`
/// (copied; `data` may be NULL when `len` is 0) of `media_type` (such as
/// `"image/png"`), with optional `meta_json` (NULL, or a JSON object with
/// `width`, `height`, `duration_s` and free-form `extra`).
///
/// `CREATIVE_STATUS_WRONG_STATE` from a gate's call.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_add_output(
    call: *mut creative_host_call,
    media_type: *const c_char,
    data: *const u8,
    len: usize,
    meta_json: *const c_char,
) -> creative_status {
    guard("creative_host_call_add_output", || {
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        // Nothing else uses it while this function runs.
        let c = unsafe { call_mut(call) }?;
        if c.role == Role::Gate {
            return Err(FfiError::wrong_state(
                "a gate hands back a verdict (creative_host_call_set_verdict), not outputs",
            ));
        }
        // SAFETY: `media_type` is NULL or NUL-terminated text (the header's
        // conventions), read only during this call.
        let media: MediaType = unsafe { text_arg(media_type, "media_type") }?
            .parse()
            .unwrap_or(MediaType::Other(Arc::from("application/octet-stream")));
        if data.is_null() && len > 0 {
            return Err(FfiError::null("data"));
        }
        if len > isize::MAX as usize {
            return Err(FfiError::invalid(format!(
                "`len` {len} is larger than any buffer can be"
            )));
        }
        let bytes = if len == 0 {
            Vec::new()
        } else {
            // SAFETY: the doc: "`len` bytes at `data`" (copied here, before this
            // returns); `data` is not NULL (checked above: `len` > 0 here), `u8`
            // needs no alignment, and `len` <= isize::MAX (checked above).
            unsafe { std::slice::from_raw_parts(data, len) }.to_vec()
        };
        // SAFETY: `meta_json` is NULL (the doc: "NULL, or a JSON object") or
        // NUL-terminated text, read only during this call.
        let meta = match unsafe { opt_text_arg(meta_json, "meta_json") }? {
            None => Meta::default(),
            Some(t) => serde_json::from_str::<Meta>(t)
                .map_err(|e| FfiError::new(creative_status::Parse, format!("`meta_json`: {e}")))?,
        };
        c.outputs.push(Artifact::new(media, bytes).with_meta(meta));
        Ok(())
    })
}

/// Set a gate's verdict: `passed`, a `score` (higher is better, finite), and an
/// optional `reason` (NULL for none). `CREATIVE_STATUS_WRONG_STATE` outside a
/// gate's call.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_set_verdict(
    call: *mut creative_host_call,
    passed: bool,
    score: f64,
    reason: *const c_char,
) -> creative_status {
    guard("creative_host_call_set_verdict", || {
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        // Nothing else uses it while this function runs.
        let c = unsafe { call_mut(call) }?;
        if c.role != Role::Gate {
            return Err(FfiError::wrong_state(format!(
                "only a gate sets a verdict; this is a {} call",
                c.role.as_str()
            )));
        }
        if !score.is_finite() {
            return Err(FfiError::invalid(format!(
                "`score` must be a finite number, got {score}"
            )));
        }
        // SAFETY: `reason` is NULL (the doc: "NULL for none") or NUL-terminated
        // text, copied before this returns.
        let reasons = unsafe { opt_text_arg(reason, "reason") }?
            .map(|r| vec![r.to_string()])
            .unwrap_or_default();
        c.verdict = Some(Verdict { passed, score, reasons });
        Ok(())
    })
}

/// Report what a provider call cost, in US dollars (finite, not negative).
/// `CREATIVE_STATUS_WRONG_STATE` outside a provider's call.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_set_cost(call: *mut creative_host_call, cost_usd: f64) -> creative_status {
    guard("creative_host_call_set_cost", || {
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        // Nothing else uses it while this function runs.
        let c = unsafe { call_mut(call) }?;
        if c.role != Role::Provider {
            return Err(FfiError::wrong_state("only a provider call has a cost"));
        }
        if !cost_usd.is_finite() || cost_usd < 0.0 {
            return Err(FfiError::invalid(format!(
                "`cost_usd` must be finite and not negative, got {cost_usd}"
            )));
        }
        c.cost_usd = Some(cost_usd);
        Ok(())
    })
}

/// Say why the call failed; the message becomes part of the step's error. Call it
/// before returning a status other than `CREATIVE_STATUS_OK`.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_fail(
    call: *mut creative_host_call,
    message: *const c_char,
) -> creative_status {
    guard("creative_host_call_fail", || {
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        // Nothing else uses it while this function runs.
        let c = unsafe { call_mut(call) }?;
        // SAFETY: `message` is NULL or NUL-terminated text (the header's
        // conventions), copied before this returns.
        c.error = Some(unsafe { text_arg(message, "message") }?.to_string());
        Ok(())
    })
}

/// Whether the run this call belongs to was cancelled; long host work should
/// check it now and then and return `CREATIVE_STATUS_CANCELLED` early.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_cancelled(
    call: *const creative_host_call,
    out_cancelled: *mut bool,
) -> creative_status {
    guard("creative_host_call_cancelled", || {
        // SAFETY: `out_cancelled` is NULL or writable: the out-parameter the host
        // passes for the answer.
        let mut out = unsafe { Out::new(out_cancelled, "out_cancelled") }?;
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        let c = unsafe { call_ref(call) }?;
        out.write(c.cancel.is_cancelled());
        Ok(())
    })
}
