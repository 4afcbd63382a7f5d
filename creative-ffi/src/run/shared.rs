//! What a run's handle, its driver task and its delivery thread share: the
//! end state and its condition variable, the progress snapshot, the switch
//! that stops calls into the host; and the output folder lease.

use std::collections::BTreeSet;
use std::ffi::{c_void, CString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use creative_core::{CancellationToken, Event, EventKind, Progress};

use super::{creative_run_state, EventFn, Finished};
use crate::hostthread::{in_host, CallGate, PumpQueue};
use crate::status::{creative_status, FfiError};

pub(crate) struct Done {
    pub(crate) finished: Option<Finished>,
    pub(crate) state: creative_run_state,
    pub(crate) status: creative_status,
    pub(crate) message: String,
}

#[derive(Default)]
struct State {
    done: Option<Arc<Done>>,
    events_done: bool,
}

pub(crate) struct RunShared {
    state: Mutex<State>,
    cond: Condvar,
    pub(super) progress: Mutex<Progress>,
    stop_callbacks: AtomicBool,
    cancel: CancellationToken,
    /// Pump mode: the queue the host drains.
    pub(crate) pump: Option<Arc<PumpQueue>>,
    /// The engine's gate every call into the host passes.
    gate: Arc<CallGate>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere was caught; the data is plain.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RunShared {
    pub(super) fn new(cancel: CancellationToken, pump: Option<Arc<PumpQueue>>, gate: Arc<CallGate>) -> Self {
        RunShared {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            progress: Mutex::new(Progress::default()),
            stop_callbacks: AtomicBool::new(false),
            cancel,
            pump,
            gate,
        }
    }

    /// Never call into the host for this run again: no more events, queued host
    /// calls dropped (they fail), and the run cancelled.
    pub(crate) fn stop_host(&self) {
        self.stop_callbacks.store(true, Ordering::Release);
        self.cancel.cancel();
        if let Some(q) = &self.pump {
            if q.close() {
                // Its end was queued and will never be pumped now.
                self.set_events_done();
            }
        }
    }

    /// Call the host's event callback with `ev` on this thread, unless the run's
    /// callbacks were stopped or the engine shut down.
    pub(super) fn deliver(&self, ev: &Event, cb: EventFn, user_data: *mut c_void) {
        if self.stop_callbacks.load(Ordering::Acquire) {
            return;
        }
        let json = serde_json::to_string(ev).unwrap_or_else(|e| {
            serde_json::json!({"type": "error", "seq": ev.seq, "error": e.to_string()}).to_string()
        });
        let c = CString::new(json).unwrap_or_default();
        let Some(_entered) = self.gate.enter() else {
            return;
        };
        // SAFETY: the host's callback with its own `user_data`, which stays valid
        // until `creative_run_free` returns (`creative_run_start`'s doc); that free
        // waits for the last delivery or, from inside a callback, stops the calls
        // first. `c` outlives the call (`event_json` is valid only during it).
        in_host(|| unsafe { cb(c.as_ptr(), user_data) });
    }

    pub(super) fn set_done(&self, done: Done) {
        let mut s = lock(&self.state);
        if s.done.is_none() {
            s.done = Some(Arc::new(done));
        }
        self.cond.notify_all();
    }

    pub(super) fn set_events_done(&self) {
        lock(&self.state).events_done = true;
        self.cond.notify_all();
    }

    /// The result, once the run has ended and its last event was delivered.
    pub(crate) fn finished(&self) -> Option<Arc<Done>> {
        let s = lock(&self.state);
        if s.events_done {
            s.done.clone()
        } else {
            None
        }
    }

    /// Wait until finished or until `deadline`.
    pub(super) fn wait_until(&self, deadline: Option<Instant>) -> Option<Arc<Done>> {
        let mut s = lock(&self.state);
        loop {
            if s.events_done {
                if let Some(d) = &s.done {
                    return Some(d.clone());
                }
            }
            match deadline {
                None => s = self.cond.wait(s).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    s = self
                        .cond
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    pub(super) fn observe(&self, ev: &Event) {
        let mut p = lock(&self.progress);
        match &ev.kind {
            // The campaign knows its size up front: report it from the start.
            EventKind::RunStarted { jobs_hint: Some(n), .. } => p.jobs_total = p.jobs_total.max(*n),
            EventKind::JobStarted { index, .. } => p.jobs_total = p.jobs_total.max(index + 1),
            EventKind::StepFinished { ok: true, .. } | EventKind::StepResumed { .. } => p.steps_done += 1,
            EventKind::JobFinished { progress, .. } | EventKind::RunFinished { progress, .. } => {
                // Snapshots may trail events already counted: keep every field monotonic.
                p.jobs_total = p.jobs_total.max(progress.jobs_total);
                p.jobs_done = p.jobs_done.max(progress.jobs_done);
                p.jobs_failed = p.jobs_failed.max(progress.jobs_failed);
                p.steps_done = p.steps_done.max(progress.steps_done);
            }
            _ => {}
        }
    }
}

/// Marks the run done with an internal error if the pump is dropped before the
/// run ended (the runtime shut down under it), so no waiter hangs.
pub(super) struct PumpGuard {
    pub(super) shared: Arc<RunShared>,
    pub(super) completed: bool,
    pub(super) events_done_here: bool,
}

impl Drop for PumpGuard {
    fn drop(&mut self) {
        if !self.completed {
            self.shared.set_done(Done {
                finished: None,
                state: creative_run_state::Failed,
                status: creative_status::Internal,
                message: "the engine's runtime stopped before the run ended".into(),
            });
            if self.events_done_here {
                self.shared.set_events_done();
            }
        }
    }
}

/// Releases a run's output folder when the run ends.
pub(crate) struct DirLease {
    pub(crate) dirs: Arc<Mutex<BTreeSet<PathBuf>>>,
    pub(crate) dir: PathBuf,
}

impl DirLease {
    /// Take `dir` for a run, or say which run holds it.
    pub(crate) fn take(dirs: &Arc<Mutex<BTreeSet<PathBuf>>>, dir: PathBuf) -> Result<DirLease, FfiError> {
        let mut set = lock(dirs);
        if !set.insert(dir.clone()) {
            return Err(FfiError::wrong_state(format!(
                "output folder `{}` is in use by a run of this engine that has not ended; wait for it or \
                 choose another `out_dir`",
                dir.display()
            )));
        }
        Ok(DirLease {
            dirs: dirs.clone(),
            dir,
        })
    }
}

impl Drop for DirLease {
    fn drop(&mut self) {
        lock(&self.dirs).remove(&self.dir);
    }
}
