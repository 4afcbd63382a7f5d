//! Host sinks: the host is handed each finished asset as it lands (its asset
//! database, its render farm's shelf, a viewport), acknowledges or refuses it,
//! and may be told when the run's delivery ends.
//!
//! A refusal is a failed delivery for the run's delivery ledger: the asset is
//! not acknowledged, the report lists the error, and a resumed run hands the
//! host exactly the assets it refused. A refusal the host marks as passing
//! (`CREATIVE_STATUS_TIMEOUT`, `_IO`, `_PROVIDER_ERROR`) is first tried again
//! within the run, up to the sink's `retries`.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use creative_campaign::spec::{BuildCtx, Registry, SinkFactory};
use creative_core::deliver::{AssetEntry, ManifestSummary, Report};
use creative_core::resilience::Backoff;
use creative_core::{Artifact, CancellationToken, ConfigError, Delivery, Receipt, Sink, SinkError};
use serde_json::{json, Value};

use super::{
    adopt, creative_free_fn, creative_host_call, creative_host_fn, register, Callbacks, HostCtx, HostExt, Role,
};
use crate::engine::creative_engine;
use crate::panic::guard;
use crate::status::{creative_status, FfiError};
use crate::strings::creative_bytes;

/// A host sink's delivery callback: takes one asset.
///
/// Return `CREATIVE_STATUS_OK` (0) to acknowledge the asset (it is recorded in
/// the run's delivery ledger and never handed to this sink again), or another
/// `creative_status` to refuse it (after `creative_host_call_fail` to say why):
/// `CREATIVE_STATUS_TIMEOUT`, `CREATIVE_STATUS_IO` and
/// `CREATIVE_STATUS_PROVIDER_ERROR` say the refusal may pass, and the asset is
/// offered again after a pause, up to the sink's `retries` setting (and once
/// more by the run's last delivery pass); any other status refuses it for this
/// run (it is not offered again until a resume). A refused asset is listed among the report's
/// delivery errors and offered again by `"resume": true`.
///
/// `asset` and `call` are valid only until the callback returns; copy what is
/// kept (the bytes included). `creative_host_call_set_url` records where the host
/// put the asset (kept in the delivery ledger, and told to later sinks);
/// `creative_host_call_context_json` gives the whole manifest entry
/// (provenance, metadata, sources) and the delivery's ids;
/// `creative_host_call_input(call, 0, ...)` is the asset's bytes again.
/// `creative_host_call_cancelled` stays false: when the run is cancelled, the
/// library stops offering assets and a delivery already started is left
/// unacknowledged (a resume offers it again), so a callback finishes what it
/// started.
///
/// Thread, concurrency and unwinding: as `creative_host_fn` (an engine host
/// thread, several assets at once; or the thread calling `creative_run_pump` for
/// a run in pump mode, one at a time; a forced unwind passes through and fails
/// the delivery; the callback must not throw).
pub type creative_sink_fn = Option<
    unsafe extern "C-unwind" fn(
        user_data: *mut c_void,
        asset: *const creative_sink_asset,
        call: *mut creative_host_call,
    ) -> c_int,
>;

/// One asset handed to a host sink, lent for the duration of the callback.
///
/// Every string is NUL-terminated UTF-8. Fields are only ever appended:
/// `struct_size` is this struct's size as the library filled it, so a host
/// built against a later header checks it before reading a newer field.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct creative_sink_asset {
    /// `sizeof(creative_sink_asset)` in the library that filled it.
    pub struct_size: usize,
    /// The run's id: new for every fresh run of a spec, kept by its resumes.
    pub run_id: *const c_char,
    /// The delivery's id: the same on every retry and resume of this run, so
    /// the host can drop a duplicate.
    pub event_id: *const c_char,
    /// The asset's content hash (BLAKE3, hex).
    pub id: *const c_char,
    /// The key of the job that made it.
    pub job: *const c_char,
    /// The step that made it.
    pub step: *const c_char,
    /// Its position among the step's outputs.
    pub index: usize,
    /// Its media type, such as `"image/png"`.
    pub media_type: *const c_char,
    /// Its bytes.
    pub data: creative_bytes,
    /// Where the run wrote it, relative to the output folder; NULL when it was
    /// not written to a file.
    pub path: *const c_char,
    /// The job's variables, as a JSON object.
    pub vars_json: *const c_char,
}

/// A host sink: a spec names its kind in `[[output.sinks]] kind = "..."`.
///
/// The sink's table is handed to the callbacks in the context JSON (`settings`);
/// the engine reads three of its keys: `name` (the sink's name in reports and
/// in the delivery ledger, default the kind; two sinks of one kind in a spec
/// need different names), `retries` (how many more times an asset refused with
/// a passing status is offered within the run, 0 to 10, default 2) and
/// `backoff_ms` (the pause before the first of those, doubling with jitter, 1
/// to 60000, default 200).
///
/// `struct_size` must be `sizeof(creative_host_sink)`: fields are only ever
/// appended, and the library reads those the host's header had.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct creative_host_sink {
    /// `sizeof(creative_host_sink)` as the host compiled it.
    pub struct_size: usize,
    /// Handed to every call; may be NULL.
    pub user_data: *mut c_void,
    /// Called exactly once with `user_data` when the library no longer needs it
    /// (even when registration fails, unless `struct_size` is too small to
    /// find it); may be NULL.
    pub free_user_data: creative_free_fn,
    /// Takes one asset. Must not be NULL.
    pub deliver: creative_sink_fn,
    /// Told once per run (and per resume that delivered more) that delivery
    /// ended, after every asset was offered: the context JSON holds `manifest`
    /// (counts) and `report`. A non-OK return is listed among the report's
    /// delivery errors. May be NULL.
    pub finish: creative_host_fn,
}

/// The asset view lent to `deliver`, and the text it points into.
pub(super) struct SinkView {
    view: creative_sink_asset,
    // Owned here so the view's pointers stay valid as long as it does; never
    // read through these fields.
    _text: [CString; 8],
    _path: Option<CString>,
    _artifact: Artifact,
}

// SAFETY: the raw pointers in `view` point into this struct's own heap data
// (the `CString`s' buffers and the artifact's shared, immutable bytes), which
// moves with it and is never written; nothing else shares them.
unsafe impl Send for SinkView {}

fn c_text(s: &str) -> CString {
    // Interior NULs cannot come from the library's own names and JSON; anything
    // that has one is shown, not cut short.
    CString::new(s.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

impl SinkView {
    fn new(delivery: &Delivery, asset: &AssetEntry, artifact: &Artifact) -> SinkView {
        let vars = serde_json::to_string(&asset.vars).unwrap_or_else(|_| "{}".into());
        let text = [
            c_text(&delivery.run),
            c_text(&delivery.event),
            c_text(asset.id.as_str()),
            c_text(&asset.job),
            c_text(&asset.step),
            c_text(asset.media.as_str()),
            c_text(&vars),
            CString::default(),
        ];
        let path = asset.path.as_deref().map(c_text);
        let artifact = artifact.clone();
        let view = creative_sink_asset {
            struct_size: std::mem::size_of::<creative_sink_asset>(),
            run_id: text[0].as_ptr(),
            event_id: text[1].as_ptr(),
            id: text[2].as_ptr(),
            job: text[3].as_ptr(),
            step: text[4].as_ptr(),
            index: asset.index,
            media_type: text[5].as_ptr(),
            data: creative_bytes::of(artifact.data()),
            path: path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
            vars_json: text[6].as_ptr(),
        };
        SinkView {
            view,
            _text: text,
            _path: path,
            _artifact: artifact,
        }
    }

    pub(super) fn as_ptr(&self) -> *const creative_sink_asset {
        &self.view
    }
}

/// The sink settings the engine reads, checked when the spec is built.
#[derive(Debug, Clone)]
struct SinkSettings {
    name: String,
    retries: u32,
    backoff: Backoff,
}

const MAX_RETRIES: u64 = 10;
const MAX_BACKOFF_MS: u64 = 60_000;

fn sink_settings(kind: &str, settings: &Value) -> Result<SinkSettings, ConfigError> {
    let name = match settings.get("name") {
        None => kind.to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(v) => {
            return Err(ConfigError::new(
                "name",
                format!("expected a non-empty string, got {v}"),
            ))
        }
    };
    let number = |key: &str, default: u64, range: std::ops::RangeInclusive<u64>| -> Result<u64, ConfigError> {
        match settings.get(key) {
            None => Ok(default),
            Some(v) => v.as_u64().filter(|n| range.contains(n)).ok_or_else(|| {
                ConfigError::new(
                    key,
                    format!(
                        "expected a whole number from {} to {}, got {v}",
                        range.start(),
                        range.end()
                    ),
                )
            }),
        }
    };
    let retries = number("retries", 2, 0..=MAX_RETRIES)?;
    let backoff_ms = number("backoff_ms", 200, 1..=MAX_BACKOFF_MS)?;
    let base = Duration::from_millis(backoff_ms);
    let backoff = Backoff::new(base, base.max(Duration::from_secs(10)))
        .map_err(|e| ConfigError::new("backoff_ms", e.to_string()))?;
    Ok(SinkSettings {
        name,
        retries: u32::try_from(retries).unwrap_or(0),
        backoff,
    })
}

/// An asset's identity when no delivery event names it.
fn ledger_key(asset: &AssetEntry) -> String {
    format!("{}/{}/{}/{}", asset.job, asset.step, asset.index, asset.id)
}

/// Whether a refusal may pass, so the asset is offered again within the run.
fn passing(code: &Result<creative_status, i32>) -> bool {
    matches!(
        code,
        Ok(creative_status::Timeout | creative_status::Io | creative_status::ProviderError)
    )
}

struct HostSink {
    ext: Arc<HostExt>,
    host: HostCtx,
    settings: Value,
    own: SinkSettings,
    /// Assets the host refused for this run (by delivery event), with why: the
    /// run's pass at the end offers every unacknowledged asset again, and a
    /// refusal that does not pass must not be asked twice. A sink is built per
    /// run, so a resume asks again.
    refused: Mutex<HashMap<String, String>>,
}

impl HostSink {
    fn context(&self, delivery: &Delivery, extra: Value) -> Value {
        let mut v = json!({
            "kind": self.ext.kind,
            "name": self.own.name,
            "settings": self.settings,
            "run": delivery.run,
            "event": delivery.event,
            "urls": delivery.urls.iter().map(|(sink, url)| json!({"sink": sink, "url": url})).collect::<Vec<_>>(),
        });
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        v
    }

    fn error(&self, message: impl Into<String>) -> SinkError {
        SinkError::new(&self.own.name, message)
    }
}

#[async_trait]
impl Sink for HostSink {
    fn name(&self) -> &str {
        &self.own.name
    }

    async fn deliver(&self, asset: &AssetEntry, artifact: &Artifact) -> Result<(), SinkError> {
        self.deliver_event(&Delivery::default(), asset, artifact)
            .await
            .map(drop)
    }

    async fn deliver_event(
        &self,
        delivery: &Delivery,
        asset: &AssetEntry,
        artifact: &Artifact,
    ) -> Result<Receipt, SinkError> {
        let key = if delivery.event.is_empty() {
            ledger_key(asset)
        } else {
            delivery.event.clone()
        };
        if let Some(why) = self.refused.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Err(self.error(why.clone()));
        }
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let context = self.context(delivery, json!({"role": "sink", "attempt": attempt, "asset": asset}));
            let mut call =
                creative_host_call::new(Role::Sink, context, vec![artifact.clone()], CancellationToken::new());
            call.sink = Some(SinkView::new(delivery, asset, artifact));
            let r = self
                .host
                .call(self.ext.clone(), call)
                .await
                .map_err(|e| self.error(e.to_string()))?;
            if r.code == Ok(creative_status::Ok) {
                return Ok(Receipt { url: r.call.url });
            }
            let message = r.call.failure(&self.ext.kind, &r.code);
            if !passing(&r.code) {
                let why = format!("refused {} for this run: {message}", asset.id.short());
                self.refused
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, why.clone());
                return Err(self.error(why));
            }
            if attempt > self.own.retries {
                return Err(self.error(format!(
                    "refused {} {attempt} time(s), the last: {message}",
                    asset.id.short()
                )));
            }
            pause(self.own.backoff.delay(attempt)).await;
        }
    }

    async fn finish(&self, manifest: &ManifestSummary, report: &Report) -> Result<(), SinkError> {
        self.finish_event(&Delivery::default(), manifest, report).await
    }

    async fn finish_event(
        &self,
        delivery: &Delivery,
        manifest: &ManifestSummary,
        report: &Report,
    ) -> Result<(), SinkError> {
        if !matches!(self.ext.callbacks, Callbacks::Sink { finish: Some(_), .. }) {
            return Ok(());
        }
        let context = self.context(
            delivery,
            json!({"role": "sink_finish", "manifest": manifest, "report": report}),
        );
        let call = creative_host_call::new(Role::SinkFinish, context, Vec::new(), CancellationToken::new());
        let r = self
            .host
            .call(self.ext.clone(), call)
            .await
            .map_err(|e| self.error(e.to_string()))?;
        if r.code == Ok(creative_status::Ok) {
            Ok(())
        } else {
            Err(self.error(r.call.failure(&self.ext.kind, &r.code)))
        }
    }
}

/// The pause before offering a refused asset again: on the run's runtime, so a
/// cancelled run drops it with the delivery.
async fn pause(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Put a sink kind into `registry`, its calls going where `host` says.
pub(super) fn install(ext: &Arc<HostExt>, registry: &mut Registry, host: HostCtx) {
    let kind = ext.kind.clone();
    let ext = ext.clone();
    let factory: SinkFactory = Arc::new(move |settings: &Value, _: &BuildCtx| {
        // The refused key stays the field, so the spec points at it.
        let own = sink_settings(&ext.kind, settings)
            .map_err(|e| ConfigError::new(e.field(), format!("host sink kind `{}`: {}", ext.kind, e.reason())))?;
        Ok(Arc::new(HostSink {
            ext: ext.clone(),
            host: host.clone(),
            settings: settings.clone(),
            own,
            refused: Mutex::new(HashMap::new()),
        }) as Arc<dyn Sink>)
    });
    registry.sink(&kind, factory);
}

/// Register a host sink as kind `kind` of this engine (replacing any sink kind
/// of that name for runs started afterwards).
///
/// `sink->struct_size` smaller than this header's `sizeof(creative_host_sink)`
/// is `CREATIVE_STATUS_INVALID_ARGUMENT` (and nothing is freed: the library
/// cannot tell where the host's fields are); `sink->deliver` NULL is
/// `CREATIVE_STATUS_NULL_POINTER`.
///
/// Ownership: the library owns `sink->user_data` from this call on, whatever it
/// returns (but for the case above): `free_user_data` is called exactly once,
/// when the engine and every run using the kind are freed, or before this
/// returns if registration fails. The struct itself is copied; it need not
/// outlive the call. `sink` NULL is `CREATIVE_STATUS_NULL_POINTER` (and nothing
/// is freed).
/// Thread safety: any thread; runs already started keep the kinds they had.
#[no_mangle]
pub unsafe extern "C" fn creative_engine_register_sink(
    engine: *mut creative_engine,
    kind: *const c_char,
    sink: *const creative_host_sink,
) -> creative_status {
    guard("creative_engine_register_sink", || {
        if sink.is_null() {
            return Err(FfiError::null("sink"));
        }
        // SAFETY: not NULL, so a struct the host filled, valid during this call
        // (the doc: "The struct itself is copied"); its first field (offset 0
        // of a `repr(C)` struct), the size, is there in every version.
        let size = unsafe { sink.cast::<usize>().read() };
        let want = std::mem::size_of::<creative_host_sink>();
        if size < want {
            return Err(FfiError::invalid(format!(
                "`sink->struct_size` is {size}; this library needs at least {want} (sizeof(creative_host_sink)): \
                 set it, and build against the library's header"
            )));
        }
        // SAFETY: the host says (`struct_size`, checked above) that at least this
        // version's fields are there; they are copied at once.
        let s = unsafe { sink.read() };
        // SAFETY: as in `creative_engine_register_provider`: `engine` is NULL or
        // live, `kind` NULL or NUL-terminated, and the callbacks take this
        // `user_data` as `creative_sink_fn` and `creative_host_fn` say.
        let (engine, ext) = unsafe {
            adopt(
                engine,
                kind,
                s.user_data,
                s.free_user_data,
                Callbacks::Sink {
                    deliver: s.deliver,
                    finish: s.finish,
                },
                "sink->deliver",
            )
        }?;
        register(engine, Role::Sink, ext);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_settings_out_of_range_are_refused_naming_the_key_and_range() {
        let s = sink_settings("shelf", &json!({})).unwrap();
        assert_eq!((s.name.as_str(), s.retries), ("shelf", 2));
        let s = sink_settings("shelf", &json!({"name": "dam", "retries": 0, "backoff_ms": 60000})).unwrap();
        assert_eq!((s.name.as_str(), s.retries), ("dam", 0));
        let e = sink_settings("shelf", &json!({"retries": 11})).unwrap_err();
        assert!(
            e.field() == "retries" && e.reason().contains("0 to 10") && e.reason().contains("11"),
            "{e}"
        );
        let e = sink_settings("shelf", &json!({"backoff_ms": 0})).unwrap_err();
        assert!(e.field() == "backoff_ms" && e.reason().contains("1 to 60000"), "{e}");
        let e = sink_settings("shelf", &json!({"name": " "})).unwrap_err();
        assert_eq!(e.field(), "name", "{e}");
    }

    #[test]
    fn only_timeout_io_and_provider_errors_are_passing_refusals() {
        for code in 0..16 {
            let s = creative_status::from_code(code).unwrap();
            let want = matches!(
                s,
                creative_status::Timeout | creative_status::Io | creative_status::ProviderError
            );
            assert_eq!(passing(&Ok(s)), want, "{}", s.name());
        }
        assert!(!passing(&Err(99)));
    }
}
