//! A finished run's artifacts, lent to the host without copying.
//!
//! Artifacts are numbered from 0 in a stable order: by job (in the campaign's job
//! order), then by step (in the pipeline's order), then by output. Every finished
//! step's outputs are listed, intermediate ones included; the info JSON names the
//! job and step so a host can pick what it wants. They are read back from the
//! output folder when the host first asks for one (a run of a hundred thousand
//! images does not hold them all), and stay lent until the run is freed.

use std::ffi::c_char;

use crate::panic::{guard, Out};
use crate::run::{creative_run, run_ref, ArtifactEntry, Done};
use crate::status::{creative_status, FfiError};
use crate::strings::{creative_bytes, owned_c_string};

fn entry(done: &Done, index: usize) -> Result<std::sync::Arc<ArtifactEntry>, FfiError> {
    match &done.finished {
        Some(f) => f.artifacts.get(index),
        None => Err(FfiError::invalid(format!(
            "artifact index {index} is out of range: the run has 0 artifact(s)"
        ))),
    }
}

/// How many artifacts the run finished (0 for a run that produced none).
/// `CREATIVE_STATUS_WRONG_STATE` until the run has ended.
///
/// Writes `*out_count`. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn creative_run_artifact_count(
    run: *const creative_run,
    out_count: *mut usize,
) -> creative_status {
    guard("creative_run_artifact_count", || {
        // SAFETY: `out_count` is NULL or writable (the doc: "Writes `*out_count`").
        let mut out = unsafe { Out::new(out_count, "out_count") }?;
        // SAFETY: `run` is NULL or a handle from creative_run_start not yet freed
        // (the `creative_run` doc: create with _start, free with _free).
        let done = unsafe { run_ref(run) }?.done("artifacts")?;
        let n = done.finished.as_ref().map_or(0, |f| f.artifacts.len());
        out.write(n);
        Ok(())
    })
}

/// The bytes of artifact `index` (PNG, text, WAV...), lent without copying.
///
/// Lifetime: `out_data->ptr` stays valid and unchanged until `creative_run_free`
/// on this run; never free it. `CREATIVE_STATUS_INVALID_ARGUMENT` for an index
/// past the end, `CREATIVE_STATUS_WRONG_STATE` until the run has ended.
/// Thread safety: any thread; the bytes may be read from any thread.
#[no_mangle]
pub unsafe extern "C" fn creative_run_artifact_data(
    run: *const creative_run,
    index: usize,
    out_data: *mut creative_bytes,
) -> creative_status {
    guard("creative_run_artifact_data", || {
        // SAFETY: `out_data` is NULL or writable (the doc: `out_data->ptr` is set).
        let mut out = unsafe { Out::new(out_data, "out_data") }?;
        out.write(creative_bytes::empty());
        // SAFETY: `run` is NULL or a handle from creative_run_start not yet freed
        // (the `creative_run` doc: create with _start, free with _free).
        let run = unsafe { run_ref(run) }?;
        let done = run.done("artifacts")?;
        let e = entry(&done, index)?;
        // The view points into the artifact's shared buffer, kept alive by the run
        // handle (the `Done` is never replaced once set).
        out.write(creative_bytes::of(e.artifact.data()));
        Ok(())
    })
}

/// The media type of artifact `index`, such as `"image/png"`.
///
/// Lifetime: `*out_media_type` is a NUL-terminated string lent until
/// `creative_run_free` on this run; never free it. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn creative_run_artifact_media_type(
    run: *const creative_run,
    index: usize,
    out_media_type: *mut *const c_char,
) -> creative_status {
    guard("creative_run_artifact_media_type", || {
        // SAFETY: `out_media_type` is NULL or writable (the doc: `*out_media_type`
        // is set).
        let mut out = unsafe { Out::new(out_media_type, "out_media_type") }?;
        out.write(std::ptr::null());
        // SAFETY: `run` is NULL or a handle from creative_run_start not yet freed
        // (the `creative_run` doc: create with _start, free with _free).
        let run = unsafe { run_ref(run) }?;
        let done = run.done("artifacts")?;
        let e = entry(&done, index)?;
        out.write(e.media.as_ptr());
        Ok(())
    })
}

/// Everything known about artifact `index` as a JSON object: `index`, `id`
/// (content hash), `job` (key), `vars` (the job's variables), `step`,
/// `media_type`, `size`, `meta`, `provenance`, and `path` when the run wrote it
/// to a file: absolute (the output folder joined with the manifest's path, which
/// is relative to the output folder), and final (the name the file has after the
/// run, which may differ from an `asset_written` event's).
///
/// Ownership: on success `*out_json` receives a string the caller frees with
/// `creative_string_free`. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn creative_run_artifact_info_json(
    run: *const creative_run,
    index: usize,
    out_json: *mut *mut c_char,
) -> creative_status {
    guard("creative_run_artifact_info_json", || {
        // SAFETY: `out_json` is NULL or writable (the doc: "`*out_json` receives").
        let mut out = unsafe { Out::new(out_json, "out_json") }?;
        out.write(std::ptr::null_mut());
        // SAFETY: `run` is NULL or a handle from creative_run_start not yet freed
        // (the `creative_run` doc: create with _start, free with _free).
        let run = unsafe { run_ref(run) }?;
        let done = run.done("artifacts")?;
        let e = entry(&done, index)?;
        let a = &e.artifact;
        let (vars, path) = (&e.vars, &e.path);
        let v = serde_json::json!({
            "index": index,
            "id": a.id().as_str(),
            "job": e.job,
            "vars": vars,
            "step": e.step,
            "media_type": a.media().as_str(),
            "size": a.data().len(),
            "meta": a.meta(),
            "provenance": a.provenance(),
            "path": path,
        });
        out.write(owned_c_string(v.to_string()));
        Ok(())
    })
}
