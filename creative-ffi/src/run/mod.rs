//! The run handle: a started campaign seen through a synchronous face.
//!
//! # Threads
//!
//! A run is driven by one task on the engine's runtime (the *driver*): it reads
//! the run's event stream, keeps a progress snapshot, forwards each event to the
//! host, and awaits the outcome. Events reach the host in one of two ways:
//!
//! - by default, on the run's *delivery thread* (a host thread of its own, see
//!   `hostthread`, only when the host gave a callback), which serializes each
//!   event to JSON and calls the host's callback, one at a time, in order;
//! - in pump mode (`"host_calls": "pump"`), through the run's queue, which the
//!   host drains on its own thread with `creative_run_pump`, together with the
//!   run's host provider, step and gate calls.
//!
//! The run is *finished* when the outcome is known and the last callback has
//! returned, so a host that saw `creative_run_wait` return knows its callback
//! will not be called again.
//!
//! # Where things are
//!
//! This file holds the handle and the types the header shows, and starts the
//! driver ([`start`]). Beside it:
//! - `abi`: the C functions on a run (`creative_run_wait` ... `_report_json`);
//! - `shared`: what the handle, the driver and the delivery thread share, and
//!   the output folder lease;
//! - `outcome`: how an outcome reads to the host (state, status, message);
//! - `artifacts`: a finished run's artifacts, read back on demand.

mod abi;
mod artifacts;
mod outcome;
mod shared;

pub use abi::*;
pub(crate) use artifacts::{ArtifactEntry, Artifacts};
use outcome::status_of;
use shared::PumpGuard;
pub(crate) use shared::{DirLease, Done, RunShared};

use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use creative_core::{CancellationToken, Event, Progress, RunOutcome, Status};
use futures::{Stream, StreamExt};

use crate::engine::EngineInner;
use crate::hostthread::{self, PumpItem, PumpQueue};
use crate::status::{creative_status, FfiError};

/// A started run. Create with `creative_run_start`, free with `creative_run_free`.
///
/// Opaque: its layout is private to the library.
pub struct creative_run {
    pub(crate) shared: Arc<RunShared>,
    cancel: CancellationToken,
    /// Pump mode: the host's callback, called from `creative_run_pump`.
    pumped_callback: Option<(EventFn, UserData)>,
    /// Pump mode: a `creative_run_pump` of this run is in progress.
    pumping: AtomicBool,
    /// Pump mode: `creative_run_free` was called from inside a pumped callback;
    /// the pump frees the run when the callback has returned.
    free_requested: AtomicBool,
    // Keeps the runtime alive while the run is held; dropped last (see `Drop`).
    _engine: Arc<EngineInner>,
}

type EventFn = unsafe extern "C-unwind" fn(event_json: *const c_char, user_data: *mut c_void);

std::thread_local! {
    /// The run (its `RunShared`'s address) whose event callback this thread is
    /// delivering, or 0: a delivery thread for its whole life, a pumping thread
    /// during each callback.
    static DELIVERING: Cell<usize> = const { Cell::new(0) };
}

/// Called with each event of a run, as a NUL-terminated JSON object with a `type`
/// field (`run_started`, `job_started`, `step_started`, `attempt`,
/// `attempt_finished`, `gate_verdict`, `retry`, `fallback`, `step_finished`,
/// `asset_written`, `job_finished`, `run_finished`...), a `seq` number from 0 and
/// `at_ms`.
///
/// Thread: a thread the library starts for the run (never the caller's), or, for
/// a run started with `"host_calls": "pump"`, the thread calling
/// `creative_run_pump`. Ordering: serialized per run: one call at a time, in
/// `seq` order; `run_finished` is always the last call. `event_json` is valid
/// only during the call. Re-entrancy: the callback may call `creative_run_poll`,
/// `creative_run_progress`, `creative_run_cancel` and `creative_run_free` on its
/// own run (`free` from inside stops further callbacks and releases the run once
/// it has ended, or, when pumped, once the callback has returned);
/// `creative_run_wait` and `creative_run_pump` on its own run return
/// `CREATIVE_STATUS_WRONG_STATE`.
///
/// Paths in events: `asset_written`'s `path` is relative to the run's output
/// folder (as in the manifest), and the file may still be renamed before the
/// run ends: load it at once or copy it, and take the final paths from the
/// manifest or `creative_run_artifact_info_json` (absolute there).
///
/// Unwinding: it must not throw (C++ exceptions, longjmp); a forced unwind by
/// the host's runtime (`pthread_exit`) passes through, and the run's later
/// events are not delivered.
pub type creative_event_fn = Option<unsafe extern "C-unwind" fn(event_json: *const c_char, user_data: *mut c_void)>;

/// How a run stands.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum creative_run_state {
    /// Still running (or its last events are still being delivered).
    Running = 0,
    /// Every job succeeded.
    Succeeded = 1,
    /// Every job failed.
    Failed = 2,
    /// Cancelled; finished work is kept.
    Cancelled = 3,
    /// A budget ran out; no new work was started.
    BudgetExhausted = 4,
    /// Every job succeeded, but a fallback provider served work its primary
    /// failed to do (auth, unreachable, refusal, errors past the retries); the
    /// run's message names them.
    Degraded = 5,
    /// Some jobs succeeded and some failed.
    Partial = 6,
}

/// Progress counts of a run. This struct never changes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct creative_progress {
    /// Jobs known so far (the total once every job has started).
    pub jobs_total: u64,
    /// Jobs that ended, in any state.
    pub jobs_done: u64,
    /// Jobs that ended failed.
    pub jobs_failed: u64,
    /// Steps that finished successfully.
    pub steps_done: u64,
}

/// `creative_run_wait` timeout meaning "no limit".
pub const CREATIVE_WAIT_FOREVER: u64 = u64::MAX;

/// What a finished run leaves for the host to read.
pub(crate) struct Finished {
    pub(crate) outcome: RunOutcome,
    /// `manifest.json`, read when the host asks for it (`None`: an empty one).
    pub(crate) manifest_path: Option<PathBuf>,
    pub(crate) report_json: String,
    /// The delivered assets, read back from the output folder on demand.
    pub(crate) artifacts: Artifacts,
}

/// A run as the spec layer (or a test) starts it.
pub(crate) struct Launch {
    /// The run's events; ends when the run is over.
    pub(crate) events: Pin<Box<dyn Stream<Item = Event> + Send>>,
    /// Cancels the run.
    pub(crate) cancel: CancellationToken,
    /// The outcome, or why there is none (the output could not be written...).
    pub(crate) finish: Pin<Box<dyn Future<Output = Result<Finished, FfiError>> + Send>>,
}

/// The host's `user_data` for a run's callback, moved to the delivery thread.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);
// SAFETY: the library never dereferences the pointer; it only hands it back to the
// host's callback, which `creative_event_fn`'s doc says runs on a thread the
// library starts for the run, and `creative_run_start`'s doc says `user_data`
// stays valid until `creative_run_free` returns. Moving it to that thread is what
// the host agreed to.
unsafe impl Send for UserData {}

/// The delivery thread's body: each event to the host's callback, in order; the
/// run's events are done when it ends, however it ends (a forced unwind by the
/// host's runtime included), so waiters never hang on a thread the host ended.
fn deliver_loop(sh: Arc<RunShared>, rx: mpsc::Receiver<Event>, cb: EventFn, ud: UserData) {
    struct Finish(Arc<RunShared>);
    impl Drop for Finish {
        fn drop(&mut self) {
            DELIVERING.with(|d| d.set(0));
            self.0.set_events_done();
        }
    }
    DELIVERING.with(|d| d.set(Arc::as_ptr(&sh) as usize));
    let finish = Finish(sh);
    for ev in rx {
        finish.0.deliver(&ev, cb, ud.0);
    }
}

/// Start driving `launch` on the engine's runtime and return the handle. With
/// `pump`, events and host calls wait in that queue for `creative_run_pump`.
pub(crate) fn start(
    engine: &Arc<EngineInner>,
    launch: Launch,
    callback: creative_event_fn,
    user_data: *mut c_void,
    lease: Option<DirLease>,
    pump: Option<Arc<PumpQueue>>,
) -> Result<Box<creative_run>, FfiError> {
    let Launch {
        mut events,
        cancel,
        finish,
    } = launch;
    let shared = Arc::new(RunShared::new(cancel.clone(), pump.clone(), engine.gate.clone()));
    let ud = UserData(user_data);
    let (tx, pumped_callback) = match (callback, &pump) {
        (Some(cb), None) => {
            let (tx, rx) = mpsc::channel::<Event>();
            let sh = shared.clone();
            hostthread::spawn("creative-events", Box::new(move || deliver_loop(sh, rx, cb, ud)))?;
            (Some(tx), None)
        }
        (Some(cb), Some(_)) => (None, Some((cb, ud))),
        (None, _) => (None, None),
    };
    engine.track(&shared);
    let sh = shared.clone();
    // Without a delivery thread, the driver says when the events are done (in
    // pump mode, when the host pumps the run's end).
    let events_done_here = tx.is_none();
    let pump_events = pumped_callback.is_some();
    engine.handle().spawn(async move {
        let mut guard = PumpGuard {
            shared: sh.clone(),
            completed: false,
            events_done_here,
        };
        let drive = async {
            while let Some(ev) = events.next().await {
                sh.observe(&ev);
                if let Some(tx) = &tx {
                    // The delivery thread only stops early when the run is freed from
                    // inside its callback or the host ended it; then nobody listens.
                    let _ = tx.send(ev);
                } else if let (Some(q), true) = (&pump, pump_events) {
                    // Refused once the run is freed or its engine shut down.
                    q.push(PumpItem::Event(ev));
                }
            }
            drop(tx);
        };
        let ((), finished) = futures::join!(drive, finish);
        drop(lease);
        let done = match finished {
            Ok(finished) => {
                let (state, status, message) = status_of(&finished.outcome);
                Done {
                    finished: Some(finished),
                    state,
                    status,
                    message,
                }
            }
            Err(e) => Done {
                finished: None,
                state: creative_run_state::Failed,
                status: e.status,
                message: e.message,
            },
        };
        sh.set_done(done);
        // In pump mode the host pumps the end, unless the queue is closed (the run
        // freed, its engine shut down): then nobody will.
        let end_queued = pump.as_ref().map(|q| q.push(PumpItem::End));
        if end_queued == Some(false) || (pump.is_none() && events_done_here) {
            sh.set_events_done();
        }
        guard.completed = true;
    });
    Ok(Box::new(creative_run {
        shared,
        cancel,
        pumped_callback,
        pumping: AtomicBool::new(false),
        free_requested: AtomicBool::new(false),
        _engine: engine.clone(),
    }))
}

impl creative_run {
    /// Whether this thread is delivering this run's events (inside its callback,
    /// or its delivery thread).
    fn on_delivery_thread(&self) -> bool {
        DELIVERING.with(|d| d.get()) == Arc::as_ptr(&self.shared) as usize
    }

    /// The finished result, or `WRONG_STATE` naming what was asked.
    pub(crate) fn done(&self, what: &str) -> Result<Arc<Done>, FfiError> {
        self.shared.finished().ok_or_else(|| {
            FfiError::wrong_state(format!(
                "{what} is available once the run has ended; call creative_run_wait first"
            ))
        })
    }
}

impl Drop for creative_run {
    fn drop(&mut self) {
        if self.on_delivery_thread() {
            // Freed from inside its own callback: waiting would wait for ourselves.
            // Stop the callbacks now; the thread drains the rest and exits.
            self.shared.stop_host();
            return;
        }
        if self.shared.pump.is_some() {
            // Nobody will pump any more: queued calls fail, the run is cancelled
            // and ends without calling the host again.
            self.shared.stop_host();
        }
        if self.shared.finished().is_none() {
            self.cancel.cancel();
            self.shared.wait_until(None);
        }
    }
}

/// Borrow a run handle the host passed; NULL is a `CREATIVE_STATUS_NULL_POINTER`
/// error.
///
/// # Safety
/// `run` is NULL or a handle from `creative_run_start` that `creative_run_free`
/// has not freed, and stays so for `'a` (the host's side of the `creative_run`
/// doc: create with `_start`, free with `_free`, not concurrently with another
/// call).
pub(crate) unsafe fn run_ref<'a>(run: *const creative_run) -> Result<&'a creative_run, FfiError> {
    // SAFETY: NULL (`as_ref` gives None) or a live handle, by this function's
    // contract.
    unsafe { run.as_ref() }.ok_or_else(|| FfiError::null("run"))
}

/// Why [`replay_events`] could not start its run: the status and message a C
/// caller of `creative_run_start` would have seen.
#[doc(hidden)]
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.message)]
pub struct ReplayError(FfiError);

impl ReplayError {
    /// The status the C ABI returns for this failure.
    pub fn status(&self) -> creative_status {
        self.0.status
    }
}

/// Start a run that only replays `events` to `callback` and then ends succeeded
/// with no jobs: the event-delivery path alone (pump, delivery thread, JSON, the
/// host's callback), for benchmarks and tests from Rust. Not part of the C ABI.
#[doc(hidden)]
pub fn replay_events(
    engine: &crate::engine::creative_engine,
    events: Vec<Event>,
    callback: creative_event_fn,
    user_data: *mut c_void,
) -> Result<Box<creative_run>, ReplayError> {
    let launch = Launch {
        events: Box::pin(futures::stream::iter(events)),
        cancel: CancellationToken::new(),
        finish: Box::pin(async {
            Ok(Finished {
                outcome: RunOutcome {
                    status: Status::Succeeded,
                    jobs: Vec::new(),
                    counts: Default::default(),
                    stats: Default::default(),
                    progress: Progress::default(),
                    elapsed: Duration::ZERO,
                    degraded: Vec::new(),
                },
                manifest_path: None,
                report_json: "{}".into(),
                artifacts: Artifacts::default(),
            })
        }),
    };
    start(&engine.inner, launch, callback, user_data, None, None).map_err(ReplayError)
}
