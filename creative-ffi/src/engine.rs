//! The engine handle: an async runtime of its own, the registry of provider, step
//! and gate kinds (built-in ones and the host's), and the output folders in use.

use std::collections::BTreeSet;
use std::ffi::c_char;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use creative_campaign::spec::Registry;
use serde::Deserialize;

use crate::host::{HostCtx, HostKind};
use crate::hostthread::{host_depth, CallGate, Dispatch, HostPool};
use crate::panic::{guard, opt_text_arg, Out};
use crate::run::RunShared;
use crate::status::{creative_status, FfiError};
use crate::strings::owned_c_string;

/// An engine: owns a multi-thread async runtime and the registry of kinds a spec
/// may name. Create with `creative_engine_new`, free with `creative_engine_free`.
///
/// Opaque: its layout is private to the library.
pub struct creative_engine {
    pub(crate) inner: Arc<EngineInner>,
}

/// The engine's configuration, read from JSON. Every field is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EngineConfig {
    /// Worker threads of the async runtime. Default 2.
    #[serde(default = "default_workers")]
    pub(crate) worker_threads: usize,
    /// Most threads running blocking work at once (image codecs), and most host
    /// threads running host callbacks at once. Default 16.
    #[serde(default = "default_blocking")]
    pub(crate) max_blocking_threads: usize,
    /// Folder relative paths of a spec are resolved against when a run's options
    /// do not say. Default: the process's current directory.
    #[serde(default)]
    pub(crate) base_dir: Option<PathBuf>,
}

fn default_workers() -> usize {
    2
}

fn default_blocking() -> usize {
    16
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            worker_threads: default_workers(),
            max_blocking_threads: default_blocking(),
            base_dir: None,
        }
    }
}

impl EngineConfig {
    pub(crate) fn parse(text: Option<&str>) -> Result<EngineConfig, FfiError> {
        let text = text.map(str::trim).unwrap_or("");
        if text.is_empty() {
            return Ok(EngineConfig::default());
        }
        let cfg: EngineConfig = serde_json::from_str(text).map_err(|e| {
            FfiError::new(
                creative_status::Parse,
                format!("engine config (JSON) line {} column {}: {e}", e.line(), e.column()),
            )
        })?;
        if cfg.worker_threads == 0 || cfg.worker_threads > 1024 {
            return Err(FfiError::invalid(format!(
                "engine config: `worker_threads` must be between 1 and 1024, got {}",
                cfg.worker_threads
            )));
        }
        if cfg.max_blocking_threads == 0 || cfg.max_blocking_threads > 4096 {
            return Err(FfiError::invalid(format!(
                "engine config: `max_blocking_threads` must be between 1 and 4096, got {}",
                cfg.max_blocking_threads
            )));
        }
        Ok(cfg)
    }
}

/// What an engine handle and its runs share. The runtime is dropped last by
/// whichever handle goes last (the engine or one of its runs).
pub(crate) struct EngineInner {
    runtime: Option<tokio::runtime::Runtime>,
    pub(crate) registry: RwLock<Registry>,
    pub(crate) config: EngineConfig,
    /// Output folders of the runs in progress, so two runs never write into one.
    pub(crate) busy_dirs: Arc<Mutex<BTreeSet<PathBuf>>>,
    /// The threads host extensions run on (runs not in pump mode).
    pub(crate) pool: Arc<HostPool>,
    /// Every call into the host passes here; closed by `creative_engine_shutdown`.
    pub(crate) gate: Arc<CallGate>,
    /// The host's registrations, in order, for runs that build them anew.
    host_kinds: Mutex<Vec<HostKind>>,
    /// The runs started, to cancel them at shutdown.
    runs: Mutex<Vec<Weak<RunShared>>>,
}

impl EngineInner {
    pub(crate) fn new(config: EngineConfig) -> Result<EngineInner, FfiError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads)
            .max_blocking_threads(config.max_blocking_threads)
            .thread_name("creative-worker")
            // Timers for retries and polling, sockets for every HTTP provider.
            .enable_time()
            .enable_io()
            .build()
            .map_err(|e| {
                FfiError::new(
                    creative_status::Internal,
                    format!("cannot start the async runtime: {e}"),
                )
            })?;
        let mut registry = Registry::new();
        creative_providers::register(&mut registry);
        creative_ops::register(&mut registry);

        Ok(EngineInner {
            runtime: Some(runtime),
            registry: RwLock::new(registry),
            pool: HostPool::new(config.max_blocking_threads),
            config,
            busy_dirs: Arc::new(Mutex::new(BTreeSet::new())),
            gate: Arc::new(CallGate::default()),
            host_kinds: Mutex::new(Vec::new()),
            runs: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        // `runtime` is only taken in `drop`.
        match &self.runtime {
            Some(rt) => rt.handle(),
            None => unreachable!("the runtime is only taken when the engine is dropped"),
        }
    }

    pub(crate) fn registry(&self) -> Registry {
        self.registry.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut reg = self.registry.write().unwrap_or_else(PoisonError::into_inner);
        f(&mut reg)
    }

    /// Host calls of a run going to `dispatch`, through this engine's gate.
    pub(crate) fn host_ctx(&self, dispatch: Dispatch) -> HostCtx {
        HostCtx {
            dispatch,
            gate: self.gate.clone(),
        }
    }

    pub(crate) fn add_host_kind(&self, kind: HostKind) {
        let mut kinds = self.host_kinds.lock().unwrap_or_else(PoisonError::into_inner);
        // Dropped outside the lock: the last reference calls the host's
        // `free_user_data`.
        let replaced: Vec<HostKind> = kinds.extract_if(.., |k| kind.replaces(k)).collect();
        kinds.push(kind);
        drop(kinds);
        drop(replaced);
    }

    /// The registry with every host kind sending its calls to `dispatch`.
    pub(crate) fn registry_for(&self, dispatch: Dispatch) -> Registry {
        let mut reg = self.registry();
        let host = self.host_ctx(dispatch);
        for k in self.host_kinds.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            k.install(&mut reg, host.clone());
        }
        reg
    }

    /// Remember a started run, for `shutdown`.
    pub(crate) fn track(&self, run: &Arc<RunShared>) {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.retain(|r| r.strong_count() > 0);
        runs.push(Arc::downgrade(run));
    }

    /// Stop every call into the host; see `creative_engine_shutdown`. Returns how
    /// many host calls were still running at `deadline`.
    pub(crate) fn shutdown(&self, deadline: Option<Instant>) -> usize {
        let runs: Vec<Arc<RunShared>> = self
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        // Closed first, so no call starts between a run's cancellation and the wait.
        self.gate.close();
        for r in &runs {
            r.stop_host();
        }
        self.gate.close_and_wait(deadline, host_depth())
    }
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        // Queued host calls are dropped (their runs are gone), and the host
        // threads finish the calls they are in: after this, no host callback
        // of this engine runs, and the host's data can be released.
        self.pool.close();
        if let Some(rt) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Dropped from inside a runtime (a host callback freed the last
                // handle): waiting for our own threads would deadlock, so let them
                // finish in the background. Host data is still released only when
                // the last callback using it returns (the callbacks hold it).
                rt.shutdown_background();
            } else {
                // Waits for every task and every blocking host callback to end, so
                // nothing runs after the last handle is freed.
                drop(rt);
            }
        }
    }
}

/// Create an engine from a JSON config text.
///
/// `config_json` may be NULL or empty for the defaults, or a JSON object with any
/// of: `worker_threads` (async worker threads, default 2), `max_blocking_threads`
/// (threads for host callbacks and other blocking work, default 16), `base_dir`
/// (folder a spec's relative paths are resolved against when a run does not say;
/// default the current directory). Unknown fields are an error.
///
/// The engine knows every built-in provider, step and gate kind; add the host's
/// own with `creative_engine_register_provider`, `_step` and `_gate`.
///
/// Ownership: on `CREATIVE_STATUS_OK`, `*out_engine` receives a new engine the
/// caller frees with `creative_engine_free`; on failure it is set to NULL (when
/// `out_engine` is not NULL).
/// Thread safety: any thread. The engine itself may be used from several threads
/// at once (start runs, register kinds), and holds no global state: several
/// engines may live in one process.
#[no_mangle]
pub unsafe extern "C" fn creative_engine_new(
    config_json: *const c_char,
    out_engine: *mut *mut creative_engine,
) -> creative_status {
    guard("creative_engine_new", || {
        // SAFETY: `out_engine` is NULL or writable (the doc: "`*out_engine`
        // receives").
        let mut out = unsafe { Out::new(out_engine, "out_engine") }?;
        out.write(std::ptr::null_mut());
        // SAFETY: `config_json` is NULL ("may be NULL", above) or NUL-terminated
        // text (the header's conventions), read only during this call.
        let config = unsafe { opt_text_arg(config_json, "config_json") }?;
        let cfg = EngineConfig::parse(config)?;
        let engine = Box::new(creative_engine {
            inner: Arc::new(EngineInner::new(cfg)?),
        });
        out.write(Box::into_raw(engine));
        Ok(())
    })
}

/// Free an engine. NULL is a no-op.
///
/// Runs started from the engine keep what they need alive: they may be waited on,
/// read and freed after the engine is freed. The runtime stops when the engine and
/// all its runs are freed; that last free waits for host callbacks still running,
/// then releases every host extension (`free_user_data` is called then).
///
/// Thread safety: any thread, but not concurrently with another call on the same
/// engine; never from inside a host callback of this engine.
#[no_mangle]
pub unsafe extern "C" fn creative_engine_free(engine: *mut creative_engine) {
    let _ = guard("creative_engine_free", || {
        if !engine.is_null() {
            // SAFETY: not NULL, so an engine `creative_engine_new` made with
            // `Box::into_raw` and the host frees once, not concurrently with
            // another call on it (the `creative_engine` doc and the thread safety
            // above); nothing uses the pointer after this.
            drop(unsafe { Box::from_raw(engine) });
        }
        Ok(())
    });
}

/// Stop calling into the host: for hosts that are about to exit or unload
/// (an interpreter's exit hook, a plugin's unload).
///
/// From this call on, the library never calls this engine's host code again:
/// no event callback of any of its runs, no host provider, step or gate call
/// (calls not yet started fail, and their runs end as failed or cancelled).
/// Every run in progress is cancelled; `creative_run_start` on this engine
/// returns `CREATIVE_STATUS_WRONG_STATE` afterwards. Then waits up to
/// `timeout_ms` (`CREATIVE_WAIT_FOREVER` for no limit, 0 not at all) for host
/// code already running to return: `CREATIVE_STATUS_OK` when none runs any more,
/// `CREATIVE_STATUS_TIMEOUT` when some still does (it is not called again once
/// it returns). Calling it again is allowed (it waits again).
///
/// The engine and its runs stay valid and must still be freed; their results
/// stay readable. `free_user_data` of host extensions is still called, at the
/// last free, on the freeing thread.
///
/// Rule for hosts with a runtime of their own (Python, .NET, a game engine's
/// scripting VM): call this, then free runs and engines, before that runtime
/// finalizes; the Python binding does it in an `atexit` hook.
///
/// Thread safety: any thread, including from inside a host callback or event
/// callback of this engine (that callback itself is not waited for).
#[no_mangle]
pub unsafe extern "C" fn creative_engine_shutdown(engine: *const creative_engine, timeout_ms: u64) -> creative_status {
    guard("creative_engine_shutdown", || {
        // SAFETY: `engine` is NULL (`as_ref` gives None) or an engine from
        // creative_engine_new not yet freed (the `creative_engine` doc), used only
        // during this call.
        let engine = unsafe { engine.as_ref() }.ok_or_else(|| FfiError::null("engine"))?;
        // A timeout too long to represent is no limit at all.
        let deadline = Instant::now().checked_add(Duration::from_millis(timeout_ms));
        match engine.inner.shutdown(deadline) {
            0 => Ok(()),
            n => Err(FfiError::new(
                creative_status::Timeout,
                format!("{n} host callback(s) still running after {timeout_ms} ms; they are not called again"),
            )),
        }
    })
}

/// The kinds a spec may name with this engine, as JSON:
/// `{"providers": [...], "steps": [...], "gates": [...]}` (built-in and host kinds).
///
/// Ownership: on success `*out_json` receives a string the caller frees with
/// `creative_string_free`. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn creative_engine_kinds_json(
    engine: *const creative_engine,
    out_json: *mut *mut c_char,
) -> creative_status {
    guard("creative_engine_kinds_json", || {
        // SAFETY: `out_json` is NULL or writable (the doc: "`*out_json` receives").
        let mut out = unsafe { Out::new(out_json, "out_json") }?;
        out.write(std::ptr::null_mut());
        // SAFETY: `engine` is NULL (`as_ref` gives None) or an engine from
        // creative_engine_new not yet freed (the `creative_engine` doc: create with
        // _new, free with _free), used only during this call.
        let engine = unsafe { engine.as_ref() }.ok_or_else(|| FfiError::null("engine"))?;
        let reg = engine.inner.registry();
        let v = serde_json::json!({
            "providers": reg.provider_kinds().collect::<Vec<_>>(),
            "steps": reg.step_kinds().collect::<Vec<_>>(),
            "gates": reg.gate_kinds().collect::<Vec<_>>(),
        });
        out.write(owned_c_string(v.to_string()));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_errors() {
        let c = EngineConfig::parse(None).unwrap();
        assert_eq!(c.worker_threads, 2);
        let c = EngineConfig::parse(Some(r#"{"worker_threads": 3}"#)).unwrap();
        assert_eq!(c.worker_threads, 3);
        let e = EngineConfig::parse(Some(r#"{"workers": 3}"#)).unwrap_err();
        assert_eq!(e.status, creative_status::Parse);
        assert!(e.message.contains("workers"), "{}", e.message);
        let e = EngineConfig::parse(Some(r#"{"worker_threads": 0}"#)).unwrap_err();
        assert_eq!(e.status, creative_status::InvalidArgument);
        let e = EngineConfig::parse(Some("{")).unwrap_err();
        assert!(e.message.contains("line 1"), "{}", e.message);
    }
}
