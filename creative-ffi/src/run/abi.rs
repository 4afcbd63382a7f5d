//! The C functions on a run handle: wait, poll, progress, cancel, free, pump,
//! and the manifest and report of a finished run.

use std::ffi::c_char;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shared::lock;
use super::{creative_progress, creative_run, creative_run_state, run_ref, CREATIVE_WAIT_FOREVER, DELIVERING};
use crate::hostthread::PumpItem;
use crate::panic::{guard, Out};
use crate::status::{creative_status, FfiError};
use crate::strings::owned_c_string;

/// Wait for a run to end, at most `timeout_ms` milliseconds
/// (`CREATIVE_WAIT_FOREVER` for no limit; 0 to check without blocking).
///
/// Returns `CREATIVE_STATUS_TIMEOUT` if the run has not ended in time. Once it has
/// ended (and its last event callback has returned), returns how it ended:
/// `CREATIVE_STATUS_OK` if every job succeeded, `CREATIVE_STATUS_CANCELLED`,
/// `CREATIVE_STATUS_BUDGET_EXCEEDED`, or for a failed run the class of its first
/// failure (`CREATIVE_STATUS_PROVIDER_ERROR`, `_GATE_FAILED`, `_IO`,
/// `_STEP_FAILED`...), with a summary in `creative_last_error_message()`. A failed
/// run still has its finished artifacts, manifest and report.
///
/// Pump mode: a run started with `"host_calls": "pump"` only moves on while the
/// host pumps it (`creative_run_pump`); waiting runs none of its work, so wait
/// from another thread than the pumping one, or pump instead.
///
/// Thread safety: any thread, several at once; not from the run's own event
/// callback (returns `CREATIVE_STATUS_WRONG_STATE`: it would wait for itself).
#[no_mangle]
pub unsafe extern "C" fn creative_run_wait(run: *const creative_run, timeout_ms: u64) -> creative_status {
    guard("creative_run_wait", || {
        // SAFETY: `run` is NULL or a handle from creative_run_start not yet freed
        // (the `creative_run` doc: create with _start, free with _free).
        let run = unsafe { run_ref(run) }?;
        if run.on_delivery_thread() {
            return Err(FfiError::wrong_state(
                "cannot wait for a run from inside its own event callback (it would wait for itself)",
            ));
        }
        // A timeout too long to represent is no limit at all.
        let deadline = if timeout_ms == CREATIVE_WAIT_FOREVER {
            None
        } else {
            Instant::now().checked_add(Duration::from_millis(timeout_ms))
        };
        match run.shared.wait_until(deadline) {
            None => Err(FfiError::new(
                creative_status::Timeout,
                format!("the run has not ended within {timeout_ms} ms"),
            )),
            Some(d) if d.status == creative_status::Ok => Ok(()),
            Some(d) => Err(FfiError::new(d.status, d.message.clone())),
        }
    })
}

/// How the run stands, without blocking: `CREATIVE_RUN_STATE_RUNNING` until it has
/// ended and its last event was delivered, then how it ended.
///
/// Writes `*out_state`. Thread safety: any thread, including the run's own
/// callback; may be called while another thread waits.
#[no_mangle]
pub unsafe extern "C" fn creative_run_poll(
    run: *const creative_run,
    out_state: *mut creative_run_state,
) -> creative_status {
    guard("creative_run_poll", || {
        // SAFETY: `out_state` is NULL or writable (the doc: "Writes `*out_state`").
        let mut out = unsafe { Out::new(out_state, "out_state") }?;
        // SAFETY: `run` is NULL or a handle from creative_run_start not yet freed
        // (the `creative_run` doc: create with _start, free with _free).
        let run = unsafe { run_ref(run) }?;
        let state = run
            .shared
            .finished()
            .map(|d| d.state)
            .unwrap_or(creative_run_state::Running);
        out.write(state);
        Ok(())
    })
}

/// The run's progress counts so far (final counts once it has ended).
///
/// Writes `*out_progress`. Thread safety: any thread, including the run's own
/// callback.
#[no_mangle]
pub unsafe extern "C" fn creative_run_progress(
    run: *const creative_run,
    out_progress: *mut creative_progress,
) -> creative_status {
    guard("creative_run_progress", || {
        // SAFETY: `out_progress` is NULL or writable (the doc: "Writes
        // `*out_progress`").
        let mut out = unsafe { Out::new(out_progress, "out_progress") }?;
        // SAFETY: `run` is NULL or a handle from creative_run_start not yet freed
        // (the `creative_run` doc: create with _start, free with _free).
        let run = unsafe { run_ref(run) }?;
        let p = *lock(&run.shared.progress);
        out.write(creative_progress {
            jobs_total: p.jobs_total,
            jobs_done: p.jobs_done,
            jobs_failed: p.jobs_failed,
            steps_done: p.steps_done,
        });
        Ok(())
    })
}

/// Ask a run to stop: nothing new starts, running steps stop at their next await,
/// finished artifacts are kept. Returns at once; `creative_run_wait` sees the end.
/// Cancelling an ended run does nothing and returns `CREATIVE_STATUS_OK`.
///
/// Thread safety: any thread, including the run's own callback.
#[no_mangle]
pub unsafe extern "C" fn creative_run_cancel(run: *const creative_run) -> creative_status {
    guard("creative_run_cancel", || {
        // SAFETY: `run` is NULL or a handle from creative_run_start not yet freed
        // (the `creative_run` doc: create with _start, free with _free).
        unsafe { run_ref(run) }?.cancel.cancel();
        Ok(())
    })
}

/// Free a run. NULL is a no-op.
///
/// A run still running is cancelled and joined first: when this returns, the
/// event callback will never be called again and every byte view and string lent
/// by the run is invalid. (From inside the run's own callback, the callback is not
/// called again after this returns and the run is released once it has ended,
/// or, in pump mode, once the callback has returned to `creative_run_pump`.) A
/// run in pump mode is not pumped again: its queued host calls fail without
/// being called.
///
/// Thread safety: any thread, but not concurrently with any other call on the
/// same run.
#[no_mangle]
pub unsafe extern "C" fn creative_run_free(run: *mut creative_run) {
    let _ = guard("creative_run_free", || {
        if !run.is_null() {
            // SAFETY: not NULL, so a live run from `creative_run_start`, used here
            // only through a shared reference while the pump may hold one too.
            let r = unsafe { &*run };
            if r.pumping.load(Ordering::Acquire) && r.on_delivery_thread() {
                // Inside a pumped callback: `creative_run_pump` still uses the run
                // and frees it when the callback returns.
                r.shared.stop_host();
                r.free_requested.store(true, Ordering::Release);
                return Ok(());
            }
            // SAFETY: not NULL, so a run `creative_run_start` made with
            // `Box::into_raw` and the host frees once, not concurrently with any
            // other call on it (the `creative_run` doc and the thread safety
            // above); nothing uses the pointer after this.
            drop(unsafe { Box::from_raw(run) });
        }
        Ok(())
    });
}

/// Drive a run started with `"host_calls": "pump"` from the host's own thread:
/// run its queued host provider, step and gate calls and deliver its queued
/// events, on the calling thread, in order.
///
/// Works for up to `max_ms` milliseconds: it runs what is queued, waits for more
/// while time remains, and returns early once the run has finished (its
/// `run_finished` event delivered). The budget is checked between items: a host
/// call that has started runs to its end. `max_ms` 0 runs what is queued now
/// without waiting (for a UI timer or a game tick); a batch host loops on a
/// larger budget until the run has finished. With 0, work queued while it runs
/// waits for the next call.
///
/// Writes `*out_state` (may be NULL): `CREATIVE_RUN_STATE_RUNNING` until the run
/// has finished, then how it ended.
///
/// The rule for hosts whose API must be called from one thread (bpy, Maya,
/// Houdini, Unreal's game thread): start the run in pump mode and pump it from
/// that thread; the library then never calls the host on a thread of its own.
/// A run in pump mode does not move on without pumping.
///
/// Statuses: `CREATIVE_STATUS_WRONG_STATE` for a run not in pump mode, or from
/// inside a callback of the run being pumped.
///
/// Thread safety: one thread pumps a run at a time (the one its host calls may
/// run on); other threads may poll, cancel or wait meanwhile. Declared
/// `C-unwind`: a forced unwind by the host's runtime passes through.
#[no_mangle]
pub unsafe extern "C-unwind" fn creative_run_pump(
    run: *const creative_run,
    max_ms: u64,
    out_state: *mut creative_run_state,
) -> creative_status {
    let mut work = None;
    let status = guard("creative_run_pump", || {
        // SAFETY: `out_state` is NULL ("may be NULL") or writable.
        let out = unsafe { Out::optional(out_state) };
        // SAFETY: `run` is NULL or a handle from creative_run_start not yet freed
        // (the `creative_run` doc: create with _start, free with _free).
        let r = unsafe { run_ref(run) }?;
        let Some(q) = r.shared.pump.clone() else {
            return Err(FfiError::wrong_state(
                "this run was not started in pump mode (run option \"host_calls\": \"pump\"); its host \
                 calls run on library threads and creative_run_wait waits for it",
            ));
        };
        if r.pumping.swap(true, Ordering::AcqRel) {
            return Err(FfiError::wrong_state(
                "this run is being pumped already (from inside one of its callbacks, or by another thread)",
            ));
        }
        work = Some((out, q));
        Ok(())
    });
    let Some((mut out, q)) = work else {
        return status;
    };
    // Outside the panic boundary from here: the host is called in this loop, and a
    // forced unwind must pass (see `hostthread`). Nothing here panics.
    // SAFETY: checked not NULL above; the run stays alive during this call: a free
    // from inside a callback only sets `free_requested` while `pumping` is set.
    let r = unsafe { &*run };
    let start = Instant::now();
    let deadline = start.checked_add(Duration::from_millis(max_ms));
    // With no budget, only what is queued now: work queued meanwhile waits for
    // the next pump, so a UI timer's tick stays short.
    let mut left = if max_ms == 0 { q.len() } else { usize::MAX };
    loop {
        if r.shared.finished().is_some() || r.free_requested.load(Ordering::Acquire) || left == 0 {
            break;
        }
        left -= 1;
        let item = match deadline {
            _ if max_ms == 0 => q.pop(start),
            Some(d) => q.pop(d),
            None => q.pop(Instant::now() + Duration::from_secs(3600)),
        };
        match item {
            Some(PumpItem::Call(job)) => job(),
            Some(PumpItem::Event(ev)) => {
                if let Some((cb, ud)) = r.pumped_callback {
                    DELIVERING.with(|d| d.set(Arc::as_ptr(&r.shared) as usize));
                    r.shared.deliver(&ev, cb, ud.0);
                    DELIVERING.with(|d| d.set(0));
                }
            }
            Some(PumpItem::End) => {
                r.shared.set_events_done();
                break;
            }
            None if max_ms == 0 || deadline.is_some_and(|d| Instant::now() >= d) => break,
            None if q.is_closed() => {
                // Freed or shut down: nothing will be queued again; the run winds
                // down on its own.
                r.shared.wait_until(deadline);
                break;
            }
            None => {}
        }
        if max_ms != 0 && deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    let state = r
        .shared
        .finished()
        .map(|d| d.state)
        .unwrap_or(creative_run_state::Running);
    if let Some(out) = out.as_mut() {
        out.write(state);
    }
    r.pumping.store(false, Ordering::Release);
    if r.free_requested.load(Ordering::Acquire) {
        // SAFETY: the host freed the run from inside a callback of this pump
        // (`creative_run_free` deferred it to here); nothing uses it after this.
        drop(unsafe { Box::from_raw(run.cast_mut()) });
    }
    creative_status::Ok
}

/// The run's manifest as JSON: one entry per delivered asset (path, hash, full
/// provenance). `CREATIVE_STATUS_WRONG_STATE` until the run has ended.
///
/// Ownership: on success `*out_json` receives a string the caller frees with
/// `creative_string_free`. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn creative_run_manifest_json(
    run: *const creative_run,
    out_json: *mut *mut c_char,
) -> creative_status {
    guard("creative_run_manifest_json", || {
        // SAFETY: `out_json` is NULL or writable (the doc: "`*out_json` receives").
        let mut out = unsafe { Out::new(out_json, "out_json") }?;
        out.write(std::ptr::null_mut());
        // SAFETY: `run` is NULL or a handle from creative_run_start not yet freed
        // (the `creative_run` doc: create with _start, free with _free).
        let done = unsafe { run_ref(run) }?.done("the manifest")?;
        let f = done
            .finished
            .as_ref()
            .ok_or_else(|| FfiError::new(done.status, done.message.clone()))?;
        let json = match &f.manifest_path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| FfiError::new(creative_status::Io, format!("read {}: {e}", p.display())))?,
            None => "{}".into(),
        };
        out.write(owned_c_string(json));
        Ok(())
    })
}

/// The run's report as JSON: per provider and model, attempts, gate pass rate,
/// failure reasons, latency, cost, cost per accepted asset; with the run's status
/// and counts. `CREATIVE_STATUS_WRONG_STATE` until the run has ended.
///
/// Ownership: on success `*out_json` receives a string the caller frees with
/// `creative_string_free`. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn creative_run_report_json(
    run: *const creative_run,
    out_json: *mut *mut c_char,
) -> creative_status {
    guard("creative_run_report_json", || {
        // SAFETY: `out_json` is NULL or writable (the doc: "`*out_json` receives").
        let mut out = unsafe { Out::new(out_json, "out_json") }?;
        out.write(std::ptr::null_mut());
        // SAFETY: `run` is NULL or a handle from creative_run_start not yet freed
        // (the `creative_run` doc: create with _start, free with _free).
        let done = unsafe { run_ref(run) }?.done("the report")?;
        let f = done
            .finished
            .as_ref()
            .ok_or_else(|| FfiError::new(done.status, done.message.clone()))?;
        out.write(owned_c_string(f.report_json.clone()));
        Ok(())
    })
}
