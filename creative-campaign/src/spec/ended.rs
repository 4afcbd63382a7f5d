//! Which jobs of a running campaign have ended, for the pass that places their
//! files and writes their manifest entries while the run goes on (see
//! `spec::finish`).
//!
//! That pass follows the matrix in order and takes a job only once the job has
//! ended, so its records are all committed. Jobs end roughly in matrix order
//! (the engine starts them in order, `concurrency` at a time), so the marks of
//! jobs that ended ahead of the one the pass waits for are few; a job held up
//! far behind the others could let them pile up, so past [`MAX_PENDING`] marks
//! the pass stops following the run and takes the rest once it is over, reading
//! them from the journal as a pass after the run always did.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Marks that wake a pass waiting for one of them: a pass that keeps up with
/// the run would otherwise be woken for every job (a futex call and a context
/// switch on each side); this way it takes jobs a few dozen at a time, a few
/// dozen behind the run.
const WAKE_AFTER: usize = 64;

/// Marks of ended jobs the pass has not reached yet, at most (about 20 bytes
/// each): past it the pass waits for the end of the run instead.
const MAX_PENDING: usize = 1 << 16;

/// The jobs that ended and the pass has not taken yet, shared by the run (which
/// marks them) and the pass (which waits for them).
#[derive(Debug, Default)]
pub(crate) struct Ended {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Ended jobs not taken yet, by a hash of their key (a count: a matrix may
    /// hold the same job twice).
    pending: HashMap<u64, u32>,
    /// The job the pass is waiting for, if it is.
    waiting: Option<u64>,
    /// Too many marks were pending: the pass waits for the end of the run.
    overflowed: bool,
    /// The run is over: every job that will end this session has.
    over: bool,
    /// The pass was abandoned: it stops at the next job.
    abandoned: bool,
}

/// What [`Ended::wait_for`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The job ended, or the run is over: its records are as final as they
    /// will be this session.
    Go,
    /// The pass was abandoned (the run was dropped without being waited for).
    Stop,
}

fn hash(key: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl Ended {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Job `key` has ended: every record it will make this session is committed.
    pub(crate) fn job_ended(&self, key: &str) {
        let h = hash(key);
        let mut s = self.lock();
        if s.over || s.overflowed || s.abandoned {
            return;
        }
        if s.pending.len() >= MAX_PENDING {
            // Rather than grow with the run, let the pass wait for its end.
            s.overflowed = true;
            s.pending = HashMap::new();
            drop(s);
            self.changed.notify_all();
            return;
        }
        *s.pending.entry(h).or_default() += 1;
        // Only once the job the pass waits for has ended and enough others
        // have (see WAKE_AFTER); the end of the run wakes it in any case.
        if s.waiting
            .is_some_and(|w| s.pending.len() >= WAKE_AFTER && s.pending.contains_key(&w))
        {
            s.waiting = None;
            drop(s);
            self.changed.notify_all();
        }
    }

    /// The run is over: jobs that have not ended will not this session.
    pub(crate) fn run_over(&self) {
        self.lock().over = true;
        self.changed.notify_all();
    }

    /// Stop the pass at its next job.
    pub(crate) fn abandon(&self) {
        self.lock().abandoned = true;
        self.changed.notify_all();
    }

    /// Wait until job `key` has ended or the run is over.
    pub(crate) fn wait_for(&self, key: &str) -> Wait {
        let h = hash(key);
        let mut s = self.lock();
        loop {
            if s.abandoned {
                return Wait::Stop;
            }
            if let Some(n) = s.pending.get_mut(&h) {
                *n -= 1;
                if *n == 0 {
                    s.pending.remove(&h);
                }
                s.waiting = None;
                return Wait::Go;
            }
            if s.over {
                s.waiting = None;
                return Wait::Go;
            }
            s.waiting = (!s.overflowed).then_some(h);
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A pass on a thread of its own, returned once it waits for `key`.
    fn waiting_pass(e: &Arc<Ended>, key: &'static str) -> std::thread::JoinHandle<Wait> {
        let pass = {
            let e = e.clone();
            std::thread::spawn(move || e.wait_for(key))
        };
        while e.lock().waiting != Some(hash(key)) {
            std::thread::yield_now();
        }
        pass
    }

    #[test]
    fn a_job_that_ended_before_the_pass_reached_it_is_taken_without_waiting() {
        let e = Ended::default();
        e.job_ended("b");
        e.job_ended("a");
        assert_eq!(e.wait_for("a"), Wait::Go);
        assert_eq!(e.wait_for("b"), Wait::Go);
        assert!(e.lock().pending.is_empty(), "taken marks are forgotten");
    }

    #[test]
    fn the_pass_waits_for_the_job_it_needs_and_no_other() {
        let e = Arc::new(Ended::default());
        let pass = waiting_pass(&e, "a");
        e.job_ended("b");
        assert_eq!(e.lock().waiting, Some(hash("a")), "b's end does not release the pass");
        e.job_ended("a");
        // Woken once enough jobs have ended, not at every one.
        for i in 2..WAKE_AFTER {
            assert_eq!(e.lock().waiting, Some(hash("a")), "still asleep after {i} marks");
            e.job_ended(&format!("job {i}"));
        }
        assert_eq!(pass.join().unwrap(), Wait::Go);
        assert_eq!(e.wait_for("b"), Wait::Go, "b's mark is still there");
    }

    #[test]
    fn a_job_listed_twice_is_waited_for_twice() {
        let e = Ended::default();
        e.job_ended("a");
        assert_eq!(e.wait_for("a"), Wait::Go);
        e.run_over();
        // Over: the second "a" never ended this session, and the pass goes on.
        assert_eq!(e.wait_for("a"), Wait::Go);
    }

    #[test]
    fn the_end_of_the_run_releases_a_pass_waiting_for_a_job_that_never_ran() {
        let e = Arc::new(Ended::default());
        let pass = waiting_pass(&e, "never");
        e.run_over();
        assert_eq!(pass.join().unwrap(), Wait::Go);
    }

    #[test]
    fn marks_stop_piling_up_behind_a_held_up_job_and_the_pass_waits_for_the_end() {
        let e = Ended::default();
        for i in 0..=MAX_PENDING {
            e.job_ended(&format!("job {i}"));
        }
        let s = e.lock();
        assert!(s.overflowed);
        assert!(s.pending.is_empty(), "the marks were dropped");
        drop(s);
        e.job_ended("late");
        assert!(e.lock().pending.is_empty(), "no mark is kept once overflowed");
        e.run_over();
        assert_eq!(e.wait_for("job 0"), Wait::Go);
    }

    #[test]
    fn an_abandoned_pass_stops() {
        let e = Ended::default();
        e.job_ended("a");
        e.abandon();
        assert_eq!(e.wait_for("a"), Wait::Stop);
    }
}
