//! The engine handle: an async runtime of its own, the registry of provider, step
//! and gate kinds (built-in ones and the host's), and the output folders in use.

use std::collections::BTreeSet;
use std::ffi::c_char;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use creative_campaign::spec::Registry;
use serde::Deserialize;

use crate::panic::{guard, opt_text_arg, Out};
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
    /// Most threads running blocking work at once (host callbacks, image codecs).
    /// Default 16.
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
            config,
            busy_dirs: Arc::new(Mutex::new(BTreeSet::new())),
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
}

impl Drop for EngineInner {
    fn drop(&mut self) {
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
