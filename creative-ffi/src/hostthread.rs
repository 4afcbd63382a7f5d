//! Where the library calls into the host: threads a host may end by a forced
//! unwind, a pool of them for host extensions, a per-run queue the host drains
//! itself (pump mode), and the gate that stops every call into the host once the
//! engine is shut down.
//!
//! # Why not `std::thread` or tokio's blocking pool
//!
//! A host may end a thread that is inside one of its callbacks by a forced
//! unwind: Python's finalization does (`PyThread_exit_thread` is `pthread_exit`),
//! and so does `pthread_cancel`. The unwinder runs every frame's cleanups up to
//! the thread's start; a `catch_unwind` frame on the way (std's thread start,
//! tokio's task harness, an entry point's panic boundary) catches it and deleting
//! the foreign exception aborts the process ("FATAL: exception not rethrown").
//! So the host's callbacks are typed `extern "C-unwind"` and called only on
//! threads started here: their start routine is `extern "C-unwind"` too, and no
//! frame between it and the callback catches. Rust panics of the library's own
//! code on these threads are still caught, around that code alone.
//!
//! When such a thread is ended, the frames' destructors run: the call's reply
//! channel closes (the step fails with "the host thread ended"), the gate and
//! pool counts go down, and the run still finishes.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::status::{creative_status, FfiError};

/// Work that calls into the host.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere was caught; the data is plain.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The system refused a thread for host calls (`pthread_create`'s error).
#[derive(Debug, thiserror::Error)]
#[error("cannot start a thread for host calls: {0}")]
pub(crate) struct SpawnError(#[source] std::io::Error);

impl From<SpawnError> for FfiError {
    fn from(e: SpawnError) -> Self {
        FfiError::new(creative_status::Internal, e.to_string())
    }
}

/// Why host work was not handed to a thread (the work is dropped; its caller
/// sees the call fail).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DispatchError {
    /// The engine's pool was closed by `creative_engine_shutdown` or `_free`.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// Pump mode: the run's queue was closed (the run freed, its engine shut
    /// down).
    #[error("the run was freed or its engine shut down")]
    RunClosed,
    /// No thread could be started and none was running to take the work.
    #[error(transparent)]
    NoThread(#[from] SpawnError),
}

/// Start a detached thread named `name` running `f`, on which a forced unwind
/// passes through to the thread's start instead of aborting the process.
pub(crate) fn spawn(name: &'static str, f: Job) -> Result<(), SpawnError> {
    spawn_impl(name, f).map_err(SpawnError)
}

#[cfg(unix)]
mod sys {
    use super::*;

    // `libc::pthread_create` types its start routine `extern "C"`, whose
    // frame aborts on any unwind; this declaration of the same symbol says what
    // glibc's and the BSDs' `start_thread` support: a start routine a forced
    // unwind passes through (they catch it themselves, above it).
    extern "C" {
        #[link_name = "pthread_create"]
        fn pthread_create_unwinding(
            thread: *mut libc::pthread_t,
            attr: *const libc::pthread_attr_t,
            start: unsafe extern "C-unwind" fn(*mut c_void) -> *mut c_void,
            arg: *mut c_void,
        ) -> libc::c_int;
    }

    struct Start {
        name: &'static str,
        f: Job,
    }

    unsafe extern "C-unwind" fn start(arg: *mut c_void) -> *mut c_void {
        // SAFETY: `arg` is the `Box<Start>` that `spawn_impl` leaked for this
        // thread alone; it is taken back exactly once, here.
        let start = unsafe { Box::from_raw(arg.cast::<Start>()) };
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let name = std::ffi::CString::new(start.name).unwrap_or_default();
            // SAFETY: no precondition: the calling thread's own id.
            let me = unsafe { libc::pthread_self() };
            // SAFETY: names this very thread with a NUL-terminated string of at
            // most 15 bytes (every name given is); failure only loses the name.
            unsafe { libc::pthread_setname_np(me, name.as_ptr()) };
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = start.name;
        (start.f)();
        std::ptr::null_mut()
    }

    pub(super) fn spawn_impl(name: &'static str, f: Job) -> std::io::Result<()> {
        let arg = Box::into_raw(Box::new(Start { name, f })).cast::<c_void>();
        let mut tid: libc::pthread_t = 0;
        // SAFETY: `tid` is writable; a NULL attribute means the defaults; `start`
        // takes back `arg`, which nothing else uses once the thread exists.
        let rc = unsafe { pthread_create_unwinding(&mut tid, std::ptr::null(), start, arg) };
        if rc != 0 {
            // SAFETY: the thread was not created, so `arg` is still ours alone.
            drop(unsafe { Box::from_raw(arg.cast::<Start>()) });
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        // Nobody joins it: completion is signalled through the pool's and the
        // run's own state, which destructors update even on a forced unwind.
        // SAFETY: `tid` is the thread just created, detached once.
        unsafe { libc::pthread_detach(tid) };
        Ok(())
    }
}

#[cfg(not(unix))]
mod sys {
    use super::*;

    // Windows ends threads with `_endthreadex`/`ExitThread`, which does not
    // unwind: std's threads serve.
    pub(super) fn spawn_impl(name: &'static str, f: Job) -> std::io::Result<()> {
        std::thread::Builder::new().name(name.into()).spawn(f).map(drop)
    }
}

use sys::spawn_impl;

/// Counts the host code running for one engine and, once the engine is shut
/// down, refuses to start more: after `creative_engine_shutdown` the library
/// never calls into a host that may be finalizing.
#[derive(Default)]
pub(crate) struct CallGate {
    state: Mutex<GateState>,
    idle: Condvar,
}

#[derive(Default)]
struct GateState {
    active: usize,
    closed: bool,
}

/// Held while host code runs; dropped (even by a forced unwind) when it returns.
pub(crate) struct Entered<'a>(&'a CallGate);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let mut s = lock(&self.0.state);
        s.active -= 1;
        if s.active == 0 {
            self.0.idle.notify_all();
        }
    }
}

impl CallGate {
    /// Permission to call into the host now, or `None` once shut down.
    pub(crate) fn enter(&self) -> Option<Entered<'_>> {
        let mut s = lock(&self.state);
        if s.closed {
            return None;
        }
        s.active += 1;
        Some(Entered(self))
    }

    /// Refuse every later call.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
    }

    /// Whether the engine was shut down.
    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// Refuse every later call, then wait until none is running or `deadline`
    /// passes; returns how many are still running. Host code running on the
    /// calling thread (a callback shutting its own engine down) is not waited
    /// for: `own` of them are discounted.
    pub(crate) fn close_and_wait(&self, deadline: Option<Instant>, own: usize) -> usize {
        let mut s = lock(&self.state);
        s.closed = true;
        loop {
            if s.active <= own {
                return 0;
            }
            match deadline {
                None => s = self.idle.wait(s).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return s.active - own;
                    }
                    s = self
                        .idle
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }
}

std::thread_local! {
    /// How many host calls this thread is inside of (for the gate's `own`).
    static IN_HOST: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Whether this thread belongs to a host pool (so dropping the last engine
    /// handle here does not wait for itself).
    static ON_POOL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` (which calls into the host) counted as host code on this thread.
pub(crate) fn in_host<R>(f: impl FnOnce() -> R) -> R {
    struct Out;
    impl Drop for Out {
        fn drop(&mut self) {
            IN_HOST.with(|c| c.set(c.get().saturating_sub(1)));
        }
    }
    IN_HOST.with(|c| c.set(c.get() + 1));
    let _out = Out;
    f()
}

/// How many host calls the current thread is inside of.
pub(crate) fn host_depth() -> usize {
    IN_HOST.with(|c| c.get())
}

/// Whether the current thread is one of a host pool's.
pub(crate) fn on_pool_thread() -> bool {
    ON_POOL.with(|c| c.get())
}

/// The engine's threads for host providers, steps and gates (the default mode):
/// started on demand up to a maximum, ended after a while idle.
pub(crate) struct HostPool {
    state: Mutex<PoolState>,
    work: Condvar,
    exited: Condvar,
    max: usize,
    keep_alive: Duration,
}

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    closed: bool,
}

impl HostPool {
    pub(crate) fn new(max: usize) -> Arc<HostPool> {
        Arc::new(HostPool {
            state: Mutex::new(PoolState::default()),
            work: Condvar::new(),
            exited: Condvar::new(),
            max: max.max(1),
            keep_alive: Duration::from_secs(10),
        })
    }

    /// Queue `job`; says why not if the pool was closed or no thread can start
    /// (the job is dropped: its caller sees the call fail).
    pub(crate) fn submit(self: &Arc<Self>, job: Job) -> Result<(), DispatchError> {
        let mut s = lock(&self.state);
        if s.closed {
            drop(s);
            drop(job);
            return Err(DispatchError::ShuttingDown);
        }
        s.queue.push_back(job);
        if s.idle >= s.queue.len() {
            self.work.notify_one();
            return Ok(());
        }
        if s.threads < self.max {
            s.threads += 1;
            drop(s);
            let pool = self.clone();
            if let Err(e) = spawn("creative-host", Box::new(move || pool.work_loop())) {
                let mut s = lock(&self.state);
                s.threads -= 1;
                // Queued work still runs on the threads there are; with none,
                // the job that could not get one is given back.
                if s.threads == 0 {
                    let job = s.queue.pop_back();
                    drop(s);
                    drop(job);
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    fn work_loop(self: Arc<Self>) {
        /// Counts this thread out however it ends, a forced unwind included.
        struct Member<'a>(&'a HostPool);
        impl Drop for Member<'_> {
            fn drop(&mut self) {
                let mut s = lock(&self.0.state);
                s.threads -= 1;
                self.0.exited.notify_all();
            }
        }
        ON_POOL.with(|c| c.set(true));
        let _member = Member(&self);
        let mut s = lock(&self.state);
        loop {
            if let Some(job) = s.queue.pop_front() {
                drop(s);
                // The host is called in here, without a catch around it (see the
                // module doc); the job itself catches nothing but the host.
                job();
                s = lock(&self.state);
                continue;
            }
            if s.closed {
                return;
            }
            s.idle += 1;
            let (next, timeout) = self
                .work
                .wait_timeout(s, self.keep_alive)
                .unwrap_or_else(PoisonError::into_inner);
            s = next;
            s.idle -= 1;
            if timeout.timed_out() && s.queue.is_empty() {
                return;
            }
        }
    }

    /// Refuse new work, drop what is queued (its callers see the call fail) and,
    /// unless called from one of the pool's own threads, wait for every thread
    /// to exit.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut s = lock(&self.state);
            s.closed = true;
            self.work.notify_all();
            std::mem::take(&mut s.queue)
        };
        drop(dropped);
        if on_pool_thread() {
            return;
        }
        let mut s = lock(&self.state);
        while s.threads > 0 {
            s = self.exited.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// What a pump-mode run hands its host, in order.
pub(crate) enum PumpItem {
    /// A host provider, step or gate call.
    Call(Job),
    /// An event for the run's callback.
    Event(creative_core::Event),
    /// The run has ended: everything before this was delivered.
    End,
}

/// A pump-mode run's queue: host calls and events wait here until the host
/// drains them from its own thread with `creative_run_pump`.
#[derive(Default)]
pub(crate) struct PumpQueue {
    state: Mutex<PumpState>,
    ready: Condvar,
}

#[derive(Default)]
struct PumpState {
    items: VecDeque<PumpItem>,
    closed: bool,
}

impl PumpQueue {
    /// Queue `item`; false (and `item` dropped) once the queue is closed.
    pub(crate) fn push(&self, item: PumpItem) -> bool {
        let mut s = lock(&self.state);
        if s.closed {
            return false;
        }
        s.items.push_back(item);
        self.ready.notify_all();
        true
    }

    /// Queue a host call; gives it back once the queue is closed.
    pub(crate) fn push_call(&self, job: Job) -> Result<(), Job> {
        let mut s = lock(&self.state);
        if s.closed {
            return Err(job);
        }
        s.items.push_back(PumpItem::Call(job));
        self.ready.notify_all();
        Ok(())
    }

    /// The next item, waiting for one until `deadline`.
    pub(crate) fn pop(&self, deadline: Instant) -> Option<PumpItem> {
        let mut s = lock(&self.state);
        loop {
            if let Some(item) = s.items.pop_front() {
                return Some(item);
            }
            let now = Instant::now();
            if s.closed || now >= deadline {
                return None;
            }
            s = self
                .ready
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// How many items wait now.
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).items.len()
    }

    /// Whether the queue was closed.
    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// Refuse new items and drop the queued ones (queued calls fail, events are
    /// not delivered); returns whether the run's end was among them.
    pub(crate) fn close(&self) -> bool {
        let items = {
            let mut s = lock(&self.state);
            s.closed = true;
            self.ready.notify_all();
            std::mem::take(&mut s.items)
        };
        items.into_iter().any(|i| matches!(i, PumpItem::End))
    }
}

/// Where a run's host calls execute.
#[derive(Clone)]
pub(crate) enum Dispatch {
    /// On the engine's host threads.
    Pool(Arc<HostPool>),
    /// On the host's own thread, from `creative_run_pump`.
    Pump(Arc<PumpQueue>),
}

impl Dispatch {
    /// Hand `job` over, or say why it cannot run (and drop it).
    pub(crate) fn submit(&self, job: Job) -> Result<(), DispatchError> {
        match self {
            Dispatch::Pool(p) => p.submit(job),
            Dispatch::Pump(q) => q.push_call(job).map_err(|_job| DispatchError::RunClosed),
        }
    }
}
