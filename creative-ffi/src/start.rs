//! Starting a run from a spec text: parse (TOML or JSON), build against the
//! engine's registry, start on the engine's runtime.

use std::ffi::{c_char, c_void};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use creative_campaign::spec::{check_out_dir, CampaignOptions, Format, Shard, Spec, SpecError, SpecErrorKind};
use creative_core::CancellationToken;
use serde::Deserialize;

use crate::engine::{creative_engine, EngineInner};
use crate::hostthread::{Dispatch, PumpQueue};
use crate::panic::{guard, opt_text_arg, text_arg, Out};
use crate::run::{creative_event_fn, creative_run, start, DirLease, Finished, Launch};
use crate::status::{creative_status, FfiError};

/// Options of one run, read from JSON. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartOptions {
    /// `toml` or `json`; default: JSON if the text starts with `{`, else TOML.
    #[serde(default)]
    pub(crate) format: Option<String>,
    /// Folder the spec's relative paths resolve against.
    #[serde(default)]
    pub(crate) base_dir: Option<PathBuf>,
    /// Output folder; default the spec's `output.dir`. Never empty nor a root.
    #[serde(default)]
    pub(crate) out_dir: Option<PathBuf>,
    /// Resume from the output folder's journal.
    #[serde(default)]
    pub(crate) resume: bool,
    /// Bypass the generation cache.
    #[serde(default)]
    pub(crate) force: bool,
    /// Plan only: no provider call, no file written.
    #[serde(default)]
    pub(crate) dry_run: bool,
    /// The name the spec is known by in error messages. Default `spec`.
    #[serde(default)]
    pub(crate) origin: Option<String>,
    /// Run only this part of the jobs, `"K/N"` (see `creative_campaign::spec::Shard`).
    #[serde(default)]
    pub(crate) shard: Option<String>,
    /// Check that the providers' servers answer before starting (blocks up to 5 s).
    #[serde(default)]
    pub(crate) preflight: bool,
    /// Where host calls and event callbacks run: `threads` (default) or `pump`.
    #[serde(default)]
    pub(crate) host_calls: Option<String>,
}

impl StartOptions {
    pub(crate) fn parse(text: Option<&str>) -> Result<StartOptions, FfiError> {
        let text = text.map(str::trim).unwrap_or("");
        if text.is_empty() {
            return Ok(StartOptions::default());
        }
        serde_json::from_str(text).map_err(|e| {
            FfiError::new(
                creative_status::Parse,
                format!("run options (JSON) line {} column {}: {e}", e.line(), e.column()),
            )
        })
    }

    /// Whether the run is driven by `creative_run_pump`.
    fn pump(&self) -> Result<bool, FfiError> {
        match self.host_calls.as_deref() {
            None | Some("threads") => Ok(false),
            Some("pump") => Ok(true),
            Some(other) => Err(FfiError::invalid(format!(
                "run options: `host_calls` must be \"threads\" or \"pump\", got \"{other}\""
            ))),
        }
    }

    fn format(&self, spec: &str) -> Result<Format, FfiError> {
        match self.format.as_deref() {
            Some("toml") => Ok(Format::Toml),
            Some("json") => Ok(Format::Json),
            Some(other) => Err(FfiError::invalid(format!(
                "run options: `format` must be \"toml\" or \"json\", got \"{other}\""
            ))),
            None if spec.trim_start().starts_with('{') => Ok(Format::Json),
            None => Ok(Format::Toml),
        }
    }
}

fn spec_error(e: SpecError) -> FfiError {
    let status = match e.kind {
        SpecErrorKind::Syntax | SpecErrorKind::Invalid => creative_status::Parse,
        SpecErrorKind::Io => creative_status::Io,
        _ => creative_status::InvalidSpec,
    };
    FfiError::new(status, e.to_string())
}

/// An absolute, lexically clean form of `p`, so `out` and `./out/` are one folder.
fn normalize(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if let Ok(c) = abs.canonicalize() {
        return c;
    }
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A run ready to be driven: its launch, its output folder's lease, and, in
/// pump mode, the queue its host calls and events wait in.
pub(crate) type Launched = (Launch, Option<DirLease>, Option<Arc<PumpQueue>>);

pub(crate) fn launch(engine: &Arc<EngineInner>, spec_text: &str, opts: StartOptions) -> Result<Launched, FfiError> {
    if engine.gate.is_closed() {
        return Err(FfiError::wrong_state(
            "the engine was shut down (creative_engine_shutdown); it starts no more runs",
        ));
    }
    let format = opts.format(spec_text)?;
    let pump = opts.pump()?.then(|| Arc::new(PumpQueue::default()));
    // Checked as given: joined to `base_dir`, an empty path would silently
    // become the base folder itself.
    if let Some(d) = &opts.out_dir {
        check_out_dir(d).map_err(|e| FfiError::invalid(format!("run options: `out_dir`: {e}")))?;
    }
    let shard = opts
        .shard
        .as_deref()
        .map(|s| {
            s.parse::<Shard>()
                .map_err(|e| FfiError::invalid(format!("run options: {} {}", e.field(), e.reason())))
        })
        .transpose()?;
    let origin = opts.origin.clone().unwrap_or_else(|| "spec".to_string());
    let spec = Spec::parse(spec_text, format, &origin).map_err(spec_error)?;
    let base_dir = match opts.base_dir.clone().or_else(|| engine.config.base_dir.clone()) {
        Some(d) => d,
        None => std::env::current_dir()
            .map_err(|e| FfiError::new(creative_status::Io, format!("cannot read the current directory: {e}")))?,
    };
    let registry = match &pump {
        Some(q) => engine.registry_for(Dispatch::Pump(q.clone())),
        None => engine.registry(),
    };
    let campaign = spec.build(&registry, &base_dir).map_err(spec_error)?;
    if opts.preflight && !opts.dry_run {
        engine
            .handle()
            .block_on(campaign.preflight(std::time::Duration::from_secs(5)))
            .map_err(|e| FfiError::new(creative_status::ProviderError, e.to_string()))?;
    }

    let out_dir = opts
        .out_dir
        .clone()
        .map(|d| if d.is_relative() { base_dir.join(d) } else { d })
        .unwrap_or_else(|| campaign.default_out_dir().to_path_buf());
    let lease = if opts.dry_run {
        None
    } else {
        Some(DirLease::take(&engine.busy_dirs, normalize(&out_dir))?)
    };
    let cancel = CancellationToken::new();
    let copts = CampaignOptions {
        out_dir: Some(out_dir.clone()),
        resume: opts.resume,
        force: opts.force,
        dry_run: opts.dry_run,
        events: true,
        cancel: Some(cancel.clone()),
        shard,
    };
    // `start` spawns the campaign's tasks on the current runtime: ours.
    let mut run = {
        let _rt = engine.handle().enter();
        campaign.start(copts).map_err(|e| {
            let status = match e {
                // Another process holds the folder: the same state as a run of
                // this engine still writing there.
                creative_campaign::spec::CampaignError::OutputInUse { .. } => creative_status::WrongState,
                _ => creative_status::Io,
            };
            FfiError::new(status, format!("cannot start campaign `{}`: {e}", campaign.name()))
        })?
    };
    let events: std::pin::Pin<Box<dyn futures::Stream<Item = creative_core::Event> + Send>> = match run.events() {
        Some(ev) => Box::pin(ev),
        None => Box::pin(futures::stream::empty()),
    };
    let finish = Box::pin(async move {
        let name = run.campaign().name().to_string();
        let o = run
            .wait()
            .await
            .map_err(|e| FfiError::new(creative_status::Io, format!("campaign `{name}`: {e}")))?;
        let to_json = |what: &str, v: serde_json::Result<String>| {
            v.map_err(|e| {
                FfiError::new(
                    creative_status::Internal,
                    format!("cannot write the {what} as JSON: {e}"),
                )
            })
        };
        let mut report = serde_json::to_value(&o.report).unwrap_or_default();
        if let serde_json::Value::Object(m) = &mut report {
            // The engine's own summary of this session, beside the campaign report.
            m.insert(
                "run".into(),
                serde_json::to_value(o.outcome.summary()).unwrap_or_default(),
            );
            if let Some(plan) = &o.plan {
                m.insert("plan".into(), serde_json::to_value(plan).unwrap_or_default());
            }
        }
        let artifacts = if o.plan.is_some() {
            crate::run::Artifacts::default()
        } else {
            crate::run::Artifacts::open(&o.out_dir)?
        };
        Ok(Finished {
            manifest_path: o.manifest.path.clone(),
            report_json: to_json("report", serde_json::to_string(&report))?,
            artifacts,
            outcome: o.outcome,
        })
    });
    Ok((Launch { events, cancel, finish }, lease, pump))
}

/// Start a run of the campaign described by `spec_text` (TOML or JSON) and return
/// at once.
///
/// `options_json` may be NULL, or a JSON object with any of: `format` (`"toml"`
/// or `"json"`; default JSON if the text starts with `{`), `base_dir` (folder the
/// spec's relative paths resolve against; default the engine's `base_dir`, else
/// the current directory), `out_dir` (output folder, relative to `base_dir`;
/// default the spec's `output.dir`; an empty path or a file-system root is
/// `CREATIVE_STATUS_INVALID_ARGUMENT`), `resume` (continue from the folder's
/// journal), `force` (bypass the cache), `dry_run` (plan only: nothing is called
/// or written; the report holds the plan), `origin` (the spec's name in error
/// messages), `shard` (`"K/N"`: run only the K-th of N parts of the jobs, split
/// by job key, for farms that spread a campaign over machines), `preflight`
/// (`true`: first check that the providers' servers answer, such as a local
/// ComfyUI or Ollama; this call then blocks up to 5 s, and a server that does not
/// answer gives `CREATIVE_STATUS_PROVIDER_ERROR` naming it), `host_calls`
/// (`"threads"`, the default: host extensions run on the engine's host threads
/// and `callback` on a thread of the run's; `"pump"`: both run only on the
/// thread that calls `creative_run_pump`, for host APIs bound to their main
/// thread). Unknown fields are an error.
///
/// Paths: `out_dir` and `base_dir` may be relative (to the current directory
/// for `base_dir`); the manifest and `asset_written` events name files
/// relative to the output folder, `creative_run_artifact_info_json` gives them
/// absolute.
///
/// `callback` may be NULL; otherwise it receives every event of the run (see
/// `creative_event_fn` for its thread, ordering and re-entrancy rules) with
/// `user_data`, which the library never reads and which must stay valid until
/// `creative_run_free` returns.
///
/// Statuses: `CREATIVE_STATUS_PARSE` for a spec or options text that does not
/// parse or fit the schema (the message names the field and line),
/// `CREATIVE_STATUS_INVALID_SPEC` for a well-formed spec that cannot be built (an
/// unknown kind, a missing input...), `CREATIVE_STATUS_WRONG_STATE` if a run
/// that has not ended, of this engine or of another process, is writing to the
/// same output folder or the engine was shut down,
/// `CREATIVE_STATUS_PROVIDER_ERROR` if `preflight` found a server that does not
/// answer.
///
/// Ownership: on success `*out_run` receives a run the caller frees with
/// `creative_run_free`; on failure it is set to NULL (when `out_run` is not NULL).
/// Thread safety: any thread; several runs of one engine may run at once (they
/// share its runtime and its providers' limits).
#[no_mangle]
pub unsafe extern "C" fn creative_run_start(
    engine: *const creative_engine,
    spec_text: *const c_char,
    options_json: *const c_char,
    callback: creative_event_fn,
    user_data: *mut c_void,
    out_run: *mut *mut creative_run,
) -> creative_status {
    guard("creative_run_start", || {
        // SAFETY: `out_run` is NULL or writable (the doc: "`*out_run` receives").
        let mut out = unsafe { Out::new(out_run, "out_run") }?;
        out.write(std::ptr::null_mut());
        // SAFETY: `engine` is NULL (`as_ref` gives None) or an engine from
        // creative_engine_new not yet freed (the `creative_engine` doc: create with
        // _new, free with _free), used only during this call.
        let engine = unsafe { engine.as_ref() }.ok_or_else(|| FfiError::null("engine"))?;
        // SAFETY: `spec_text` is NULL or NUL-terminated text (the header's
        // conventions), read only during this call (the spec is parsed into owned
        // values before it returns).
        let spec = unsafe { text_arg(spec_text, "spec_text") }?;
        // SAFETY: `options_json` is NULL ("may be NULL", above) or NUL-terminated
        // text, read only during this call.
        let options = unsafe { opt_text_arg(options_json, "options_json") }?;
        let opts = StartOptions::parse(options)?;
        let (launch, lease, pump) = launch(&engine.inner, spec, opts)?;
        let run = start(&engine.inner, launch, callback, user_data, lease, pump)?;
        out.write(Box::into_raw(run));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_detect_the_format() {
        let o = StartOptions::parse(Some(r#"{"out_dir": "x", "dry_run": true}"#)).unwrap();
        assert!(o.dry_run);
        assert_eq!(o.format("{\"name\": 1}").unwrap(), Format::Json);
        assert_eq!(o.format("  name = 1").unwrap(), Format::Toml);
        let e = StartOptions::parse(Some(r#"{"outdir": "x"}"#)).unwrap_err();
        assert_eq!(e.status, creative_status::Parse);
        assert!(e.message.contains("outdir"));
        let o = StartOptions::parse(Some(r#"{"format": "yaml"}"#)).unwrap();
        assert_eq!(o.format("x").unwrap_err().status, creative_status::InvalidArgument);
        let o = StartOptions::parse(Some(r#"{"shard": "2/4"}"#)).unwrap();
        assert_eq!(o.shard.as_deref(), Some("2/4"));
    }

    #[test]
    fn folders_are_compared_in_a_normal_form() {
        let a = normalize(Path::new("/tmp/creative-ffi-none/./out/../out"));
        let b = normalize(Path::new("/tmp/creative-ffi-none/out"));
        assert_eq!(a, b);
    }
}
