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

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::ffi::{c_char, c_void, CString};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use creative_core::{
    Artifact, CancellationToken, Event, EventKind, Progress, RunOutcome, Status, StepError, StepErrorKind, StepState,
};
use futures::{Stream, StreamExt};

use crate::engine::EngineInner;
use crate::hostthread::{self, in_host, CallGate, PumpItem, PumpQueue};
use crate::panic::{guard, Out};
use crate::status::{creative_status, FfiError};
use crate::strings::owned_c_string;

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

pub(crate) struct ArtifactEntry {
    pub(crate) job: String,
    pub(crate) vars: serde_json::Value,
    pub(crate) step: String,
    /// The delivered file, absolute.
    pub(crate) path: Option<String>,
    pub(crate) artifact: Artifact,
    pub(crate) media: CString,
}

/// A finished run's artifacts (every finished step's outputs): where each
/// one's entry sits in the output folder's artifact list (8 bytes an
/// artifact), and the entries a host has
/// asked for, loaded with their payloads and kept until the run is freed (the
/// bytes are lent). The list file stays open, so a later run into the same
/// folder (which replaces it) does not change what this run reads.
#[derive(Default)]
pub(crate) struct Artifacts {
    source: Option<AssetSource>,
    offsets: Vec<u64>,
    loaded: Mutex<HashMap<usize, Arc<ArtifactEntry>>>,
}

struct AssetSource {
    file: Mutex<std::fs::File>,
    blobs: creative_campaign::store::BlobStore,
    out_dir: PathBuf,
}

impl Artifacts {
    /// The assets a campaign delivered into `out_dir`.
    pub(crate) fn open(out_dir: &std::path::Path) -> Result<Artifacts, FfiError> {
        use std::io::BufRead;
        let state = out_dir.join(creative_campaign::spec::STATE_DIR);
        let path = state.join(creative_campaign::spec::ARTIFACTS_FILE);
        let io = |e: std::io::Error| FfiError::new(creative_status::Io, format!("read {}: {e}", path.display()));
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Artifacts::default()),
            Err(e) => return Err(io(e)),
        };
        let mut offsets = Vec::new();
        let mut at = 0u64;
        let mut reader = std::io::BufReader::new(file.try_clone().map_err(io)?);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(io)?;
            if n == 0 {
                break;
            }
            if line.ends_with(b"\n") {
                offsets.push(at);
            }
            at += n as u64;
        }
        Ok(Artifacts {
            source: Some(AssetSource {
                file: Mutex::new(file),
                blobs: creative_campaign::store::BlobStore::new(state.join("objects")),
                out_dir: out_dir.to_path_buf(),
            }),
            offsets,
            loaded: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Asset `index`, read (once) from the output folder.
    pub(crate) fn get(&self, index: usize) -> Result<Arc<ArtifactEntry>, FfiError> {
        use std::io::{BufRead, Seek};
        let (Some(src), Some(&at)) = (&self.source, self.offsets.get(index)) else {
            return Err(FfiError::invalid(format!(
                "artifact index {index} is out of range: the run has {} artifact(s)",
                self.len()
            )));
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = loaded.get(&index) {
            return Ok(e.clone());
        }
        let io = |e: String| FfiError::new(creative_status::Io, format!("artifact {index}: {e}"));
        let mut line = Vec::new();
        {
            let mut f = src.file.lock().unwrap_or_else(|p| p.into_inner());
            f.seek(std::io::SeekFrom::Start(at)).map_err(|e| io(e.to_string()))?;
            std::io::BufReader::new(&mut *f)
                .read_until(b'\n', &mut line)
                .map_err(|e| io(e.to_string()))?;
        }
        let line: creative_campaign::spec::ArtifactLine =
            serde_json::from_slice(&line).map_err(|e| io(e.to_string()))?;
        let a = line.artifact;
        let data = src
            .blobs
            .get(&a.id, &a.media)
            .map_err(|e| io(e.to_string()))?
            .ok_or_else(|| io(format!("payload {} is missing from the output folder", a.id)))?;
        let entry = Arc::new(ArtifactEntry {
            job: line.job,
            vars: serde_json::to_value(&line.vars).unwrap_or_default(),
            step: line.step,
            path: line.path.as_ref().map(|p| src.out_dir.join(p).display().to_string()),
            // Media types come from MIME strings; a NUL in one is replaced.
            media: CString::new(a.media.as_str().replace('\0', "?")).unwrap_or_default(),
            artifact: a.into_artifact(data),
        });
        loaded.insert(index, entry.clone());
        Ok(entry)
    }
}

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
    progress: Mutex<Progress>,
    stop_callbacks: AtomicBool,
    cancel: CancellationToken,
    /// Pump mode: the queue the host drains.
    pub(crate) pump: Option<Arc<PumpQueue>>,
    /// The engine's gate every call into the host passes.
    gate: Arc<CallGate>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere was caught; the data is plain.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RunShared {
    fn new(cancel: CancellationToken, pump: Option<Arc<PumpQueue>>, gate: Arc<CallGate>) -> Self {
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
    fn deliver(&self, ev: &Event, cb: EventFn, user_data: *mut c_void) {
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

    fn set_done(&self, done: Done) {
        let mut s = lock(&self.state);
        if s.done.is_none() {
            s.done = Some(Arc::new(done));
        }
        self.cond.notify_all();
    }

    fn set_events_done(&self) {
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
    fn wait_until(&self, deadline: Option<Instant>) -> Option<Arc<Done>> {
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

    fn observe(&self, ev: &Event) {
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
struct PumpGuard {
    shared: Arc<RunShared>,
    completed: bool,
    events_done_here: bool,
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

/// The host's `user_data` for a run's callback, moved to the delivery thread.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);
// SAFETY: the library never dereferences the pointer; it only hands it back to the
// host's callback, which `creative_event_fn`'s doc says runs on a thread the
// library starts for the run, and `creative_run_start`'s doc says `user_data`
// stays valid until `creative_run_free` returns. Moving it to that thread is what
// the host agreed to.
unsafe impl Send for UserData {}

fn status_of(outcome: &RunOutcome) -> (creative_run_state, creative_status, String) {
    let s = outcome.summary();
    let counts = format!(
        "{} of {} job(s) succeeded, {} failed, {} artifact(s)",
        s.succeeded, s.jobs, s.failed, s.artifacts
    );
    match outcome.status {
        Status::Succeeded => (creative_run_state::Succeeded, creative_status::Ok, counts),
        Status::Cancelled => (
            creative_run_state::Cancelled,
            creative_status::Cancelled,
            format!("run cancelled: {counts}"),
        ),
        Status::BudgetExhausted => (
            creative_run_state::BudgetExhausted,
            creative_status::BudgetExceeded,
            format!("run stopped, a budget ran out: {counts}"),
        ),
        Status::Degraded => {
            let who: Vec<String> = outcome
                .degraded
                .iter()
                .map(|d| {
                    format!(
                        "`{}` failed {} call(s) ({}: {}), served by {}",
                        d.provider,
                        d.calls,
                        d.class,
                        d.sample,
                        d.served_by.join(", ")
                    )
                })
                .collect();
            (
                creative_run_state::Degraded,
                creative_status::Ok,
                format!("run degraded: {counts}; {}", who.join("; ")),
            )
        }
        _ => {
            let state = if outcome.status == Status::Partial {
                creative_run_state::Partial
            } else {
                creative_run_state::Failed
            };
            let first = outcome.jobs.iter().find_map(|j| {
                j.steps
                    .iter()
                    .find(|st| st.state == StepState::Failed)
                    .map(|st| (j.job.key().to_string(), st.step.to_string(), st.error.clone()))
            });
            let (status, detail) = match first {
                Some((job, step, err)) => {
                    let status = match err.as_ref().map(StepError::kind) {
                        Some(StepErrorKind::Provider) => creative_status::ProviderError,
                        Some(StepErrorKind::GateFailed | StepErrorKind::Gate) => creative_status::GateFailed,
                        Some(StepErrorKind::Budget) => creative_status::BudgetExceeded,
                        Some(StepErrorKind::Io) => creative_status::Io,
                        Some(StepErrorKind::Cancelled) => creative_status::Cancelled,
                        _ => creative_status::StepFailed,
                    };
                    let why = err.map(|e| e.to_string()).unwrap_or_else(|| "no error recorded".into());
                    (status, format!("; first failure: job {job}, step `{step}`: {why}"))
                }
                None => (creative_status::StepFailed, String::new()),
            };
            (
                state,
                status,
                format!("run {}: {counts}{detail}", outcome.status.as_str()),
            )
        }
    }
}

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

/// Start a run that only replays `events` to `callback` and then ends succeeded
/// with no jobs: the event-delivery path alone (pump, delivery thread, JSON, the
/// host's callback), for benchmarks and tests from Rust. Not part of the C ABI.
#[doc(hidden)]
pub fn replay_events(
    engine: &crate::engine::creative_engine,
    events: Vec<Event>,
    callback: creative_event_fn,
    user_data: *mut c_void,
) -> Result<Box<creative_run>, String> {
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
    start(&engine.inner, launch, callback, user_data, None, None).map_err(|e| e.message)
}
