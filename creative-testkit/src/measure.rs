//! Run a child process and measure it: wall time, user and system CPU and peak
//! RSS, all from the kernel's accounting of that one child (`wait4`), so nothing
//! else running in the parent (a server, the benchmark itself) is counted.
//!
//! A watchdog thread polls the child's `/proc/<pid>/status` and kills it (by its
//! pid, which stays reserved until it is reaped) when it outlives a timeout or
//! its resident memory passes a cap: a benchmark of code that grows with the job
//! count must not take a shared machine's memory.

use std::io;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When to give up on a child.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Kill the child after this long.
    pub timeout: Duration,
    /// Kill the child once its resident memory passes this many bytes.
    pub rss_cap: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(600),
            rss_cap: 8 << 30,
        }
    }
}

/// Why the watchdog stopped a child.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stopped {
    /// It ran past the timeout (the limit, in seconds).
    Timeout(f64),
    /// Its RSS passed the cap (the cap, in bytes).
    RssCap(u64),
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Timeout(s) => write!(f, "over {s:.0} s (killed)"),
            Stopped::RssCap(b) => write!(f, "RSS over {} MB (killed)", b >> 20),
        }
    }
}

/// What a child cost.
#[derive(Debug, Clone)]
pub struct Measured {
    /// From spawn to exit.
    pub wall: Duration,
    /// User CPU time.
    pub user: Duration,
    /// System CPU time.
    pub sys: Duration,
    /// Peak resident set size in bytes (`ru_maxrss`).
    pub max_rss: u64,
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Set when the watchdog killed it.
    pub stopped: Option<Stopped>,
}

impl Measured {
    /// User plus system time.
    pub fn cpu(&self) -> Duration {
        self.user + self.sys
    }

    /// Exited by itself with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0) && self.stopped.is_none()
    }
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

/// Resident set size of a live process, from `/proc/<pid>/status` (`VmRSS`).
pub fn rss_of(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Spawn `cmd`, wait for it under `limits`, and return what it cost.
pub fn run(cmd: &mut Command, limits: Limits) -> io::Result<Measured> {
    let start = Instant::now();
    let child = cmd.spawn()?;
    measure_child(child, start, limits)
}

/// Wait for an already spawned child (started at `start`) under `limits`.
///
/// The child is reaped here with `wait4`; do not call [`Child::wait`] on it afterwards.
pub fn measure_child(child: Child, start: Instant, limits: Limits) -> io::Result<Measured> {
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let stopped: Arc<Mutex<Option<Stopped>>> = Arc::new(Mutex::new(None));
    let watchdog = {
        let (done, stopped) = (done.clone(), stopped.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                let why = if start.elapsed() > limits.timeout {
                    Some(Stopped::Timeout(limits.timeout.as_secs_f64()))
                } else if rss_of(pid).is_some_and(|r| r > limits.rss_cap) {
                    Some(Stopped::RssCap(limits.rss_cap))
                } else {
                    None
                };
                if let Some(why) = why {
                    *stopped.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                    // The pid is still ours: the child is not reaped until the parent's wait4 below,
                    // which runs only after this thread has been told to stop.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };
    // Wait for the exit without reaping, so the pid cannot be reused while the watchdog may signal it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            done.store(true, Ordering::Release);
            let _ = watchdog.join();
            return Err(e);
        }
    }
    let wall = start.elapsed();
    done.store(true, Ordering::Release);
    let _ = watchdog.join();
    let mut status: libc::c_int = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // The std handle must not try to reap it again; dropping a Child neither waits nor kills.
    drop(child);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let stopped = *stopped.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Measured {
        wall,
        user: timeval(ru.ru_utime),
        sys: timeval(ru.ru_stime),
        // Linux reports ru_maxrss in kilobytes.
        max_rss: (ru.ru_maxrss.max(0) as u64) * 1024,
        code,
        stopped,
    })
}

/// CPU time (user + system) of this process so far.
pub fn self_cpu() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    timeval(ru.ru_utime) + timeval(ru.ru_stime)
}
