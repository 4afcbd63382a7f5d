//! Host extensions: providers, steps, gates and sinks written by the host (a
//! DCC tool's "render this in the host", a studio's own check, its asset
//! database) as structs of function pointers plus `user_data`, registered into
//! an engine as kinds a spec may name.
//!
//! A host callback runs on one of the engine's host threads (never an async
//! worker, so a slow renderer does not stall the engine), or, for a run started
//! in pump mode, on the host's own thread inside `creative_run_pump`. It receives a
//! `creative_host_call` through which it reads its context and inputs and hands
//! back outputs, a verdict or a receipt; its failure becomes that step's error
//! (or that provider call's, subject to retries and fallbacks, or that
//! delivery's), never a crash.
//!
//! This file holds what every role shares (the call, the host's data, where a
//! call runs, registration); `steps` the providers, steps and gates, `sinks`
//! the sinks, `call` the accessors a callback uses on its call.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::Arc;

use creative_core::{Artifact, CancellationToken, Verdict};
use serde_json::Value;

use crate::engine::creative_engine;
use crate::hostthread::{in_host, CallGate, Dispatch, DispatchError};
use crate::panic::text_arg;
use crate::status::{creative_status, FfiError};

mod call;
mod convert;
mod sinks;
mod steps;

pub use call::*;
pub use sinks::*;
pub use steps::*;

/// A host callback: does the work of a provider call, a step or a gate check, or
/// takes a sink's end of delivery (`creative_host_sink.finish`).
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
    /// A sink's delivery: the asset view lent to `deliver` (taken out of the
    /// call for the callback's duration).
    sink: Option<sinks::SinkView>,
    /// A sink's receipt: where it put the asset.
    url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Provider,
    Step,
    Gate,
    /// A sink handed one asset.
    Sink,
    /// A sink told the run's delivery ended.
    SinkFinish,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Provider => "provider",
            Role::Step => "step",
            Role::Gate => "gate",
            Role::Sink => "sink",
            Role::SinkFinish => "sink_finish",
        }
    }
}

/// The host's callbacks and data, shared by every provider, step, gate or sink
/// built from one registration. Dropping the last reference releases
/// `user_data`.
struct HostExt {
    kind: String,
    user_data: *mut c_void,
    free_user_data: creative_free_fn,
    callbacks: Callbacks,
}

/// The functions a registration handed over, by role.
#[derive(Clone, Copy)]
enum Callbacks {
    /// A provider's `generate`, a step's `run`, a gate's `check`.
    One(creative_host_fn),
    /// A sink's `deliver` and (optional) `finish`.
    Sink {
        deliver: sinks::creative_sink_fn,
        finish: creative_host_fn,
    },
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
            sink: None,
            url: None,
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

/// Call the host on this thread (a host thread or the pumping one): the
/// callback the call's role names.
///
/// No `catch_unwind` here: a forced unwind ending this thread must pass (see
/// `hostthread`); a Rust panic cannot come out of the host's C callback.
fn invoke(ext: &HostExt, mut call: creative_host_call) -> CallResult {
    let missing = |mut call: creative_host_call| {
        call.error = Some("no callback".into());
        CallResult {
            code: Ok(creative_status::Internal),
            call,
        }
    };
    let code = match (ext.callbacks, call.role) {
        (Callbacks::Sink { deliver, .. }, Role::Sink) => {
            let (Some(cb), Some(view)) = (deliver, call.sink.take()) else {
                return missing(call);
            };
            // SAFETY: the host registered `deliver` with this `user_data`
            // (`creative_sink_fn`: called on a host thread or the pumping
            // thread, concurrently), which stays valid until `free_user_data`
            // runs in our `Drop`; the view and `call` live on this stack for
            // the whole call, apart (the view was taken out of the call), and
            // nothing else touches them meanwhile.
            in_host(|| unsafe { cb(ext.user_data, view.as_ptr(), &mut call) })
        }
        (Callbacks::Sink { finish, .. }, _) | (Callbacks::One(finish), _) => {
            let Some(cb) = finish else {
                return missing(call);
            };
            // SAFETY: the host registered this callback with this `user_data`
            // (`creative_host_fn`: called on a host thread or the pumping thread,
            // concurrently), which stays valid until `free_user_data` runs in our
            // `Drop`; `call` lives on this stack for the whole call and nothing
            // else touches it meanwhile.
            in_host(|| unsafe { cb(ext.user_data, &mut call) })
        }
    };
    CallResult {
        code: creative_status::from_code(code).ok_or(code),
        call,
    }
}

/// Why a host callback gave no answer. The host's own refusals are not here:
/// they come back as a status in the call's result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostCallError {
    /// The engine was shut down before the call's turn came.
    #[error("host kind `{kind}` was not called: its engine was shut down")]
    ShutDown {
        /// The registered kind.
        kind: String,
    },
    /// The call could not be handed to a thread (or to the pump queue).
    #[error("host kind `{kind}` was not called: {why}")]
    NotDispatched {
        /// The registered kind.
        kind: String,
        /// Why not.
        why: DispatchError,
    },
    /// The call was dropped unanswered: never run (its run freed or its engine
    /// shut down while it waited in a queue), or its thread ended inside the
    /// host (a forced unwind).
    #[error(
        "host kind `{kind}`: the call did not return (its run was freed, its engine shut down, or the host \
         ended the thread running it)"
    )]
    NoAnswer {
        /// The registered kind.
        kind: String,
    },
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
    async fn call(&self, ext: Arc<HostExt>, call: creative_host_call) -> Result<CallResult, HostCallError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let gate = self.gate.clone();
        let kind = ext.kind.clone();
        let job = Box::new(move || {
            // Nobody waits for the answer any more (the run was cancelled or
            // freed while the call was queued, or a sink's delivery dropped):
            // the host is not asked for work that would be thrown away.
            if tx.is_closed() {
                return;
            }
            let Some(_entered) = gate.enter() else {
                let _ = tx.send(Err(HostCallError::ShutDown { kind: ext.kind.clone() }));
                return;
            };
            let r = invoke(&ext, call);
            let _ = tx.send(Ok(r));
        });
        self.dispatch.submit(job).map_err(|why| HostCallError::NotDispatched {
            kind: kind.clone(),
            why,
        })?;
        match rx.await {
            Ok(r) => r,
            // The job was dropped without answering: never run (its run was
            // freed or its engine shut down while it waited in a queue), or its
            // thread ended inside the host (a forced unwind).
            Err(_) => Err(HostCallError::NoAnswer { kind }),
        }
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
/// `creative_free_fn` say (the caller's side of a registration), or
/// `creative_sink_fn` for a sink's `deliver`.
unsafe fn adopt<'a>(
    engine: *const creative_engine,
    kind: *const c_char,
    user_data: *mut c_void,
    free_user_data: creative_free_fn,
    callbacks: Callbacks,
    callback_name: &str,
) -> Result<(&'a creative_engine, Arc<HostExt>), FfiError> {
    let mut ext = HostExt {
        kind: String::new(),
        user_data,
        free_user_data,
        callbacks,
    };
    // SAFETY: `kind` is NULL or a NUL-terminated string (this function's
    // contract); it is copied below, before the caller returns.
    let k = unsafe { text_arg(kind, "kind") }?;
    check_kind(k)?;
    ext.kind = k.to_string();
    let required = match ext.callbacks {
        Callbacks::One(f) => f.is_some(),
        Callbacks::Sink { deliver, .. } => deliver.is_some(),
    };
    if !required {
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
        match self.role {
            Role::Sink | Role::SinkFinish => sinks::install(&self.ext, registry, host),
            role => steps::install(role, &self.ext, registry, host),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// These messages reach a host through `creative_last_error_message()`:
    /// each names the host kind and why it was not answered.
    #[test]
    fn a_host_call_error_names_the_kind_and_why() {
        let kind = || "blender".to_string();
        let refused = HostCallError::NotDispatched {
            kind: kind(),
            why: DispatchError::ShuttingDown,
        };
        assert_eq!(
            refused.to_string(),
            "host kind `blender` was not called: the engine is shutting down"
        );
        let closed = HostCallError::NotDispatched {
            kind: kind(),
            why: DispatchError::RunClosed,
        };
        assert!(
            closed
                .to_string()
                .ends_with("the run was freed or its engine shut down"),
            "{closed}"
        );
        assert_eq!(
            HostCallError::ShutDown { kind: kind() }.to_string(),
            "host kind `blender` was not called: its engine was shut down"
        );
        let lost = HostCallError::NoAnswer { kind: kind() }.to_string();
        assert!(
            lost.starts_with("host kind `blender`: the call did not return"),
            "{lost}"
        );
    }
}
