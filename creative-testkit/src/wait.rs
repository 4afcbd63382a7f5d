//! Waiting on a condition instead of the clock: a test states what it waits
//! for and the longest it may take, and fails naming it, instead of sleeping
//! a guess and asserting after.

use std::path::Path;
use std::time::{Duration, Instant};

/// A condition that did not hold in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {what}")]
pub struct WaitTimeout {
    /// What was waited for.
    pub what: String,
    /// How long.
    pub waited: Duration,
}

// Short enough that a test does not idle, long enough not to spin a core that
// seven other builds share.
const POLL: Duration = Duration::from_millis(5);

/// Wait (on tokio's clock, so paused time advances through it) until `cond`
/// holds, checking every few milliseconds, for at most `timeout`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// let start = tokio::time::Instant::now();
/// creative_testkit::wait::wait_for("a tick", Duration::from_secs(1), || start.elapsed() > Duration::from_millis(10))
///     .await
///     .unwrap();
/// # }
/// ```
pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<(), WaitTimeout> {
    let start = tokio::time::Instant::now();
    loop {
        if cond() {
            return Ok(());
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(WaitTimeout {
                what: what.to_string(),
                waited,
            });
        }
        tokio::time::sleep(POLL.min(timeout - waited)).await;
    }
}

/// [`wait_for`] on a thread with no runtime (a test driving a child process).
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<(), WaitTimeout> {
    let start = Instant::now();
    loop {
        if cond() {
            return Ok(());
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(WaitTimeout {
                what: what.to_string(),
                waited,
            });
        }
        std::thread::sleep(POLL.min(timeout - waited));
    }
}

/// Wait until `path` exists, for at most `timeout` (blocking).
pub fn wait_for_path(path: &Path, timeout: Duration) -> Result<(), WaitTimeout> {
    wait_until(&format!("{} to exist", path.display()), timeout, || path.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_condition_that_never_holds_times_out_naming_it() {
        let e = wait_for("the moon", Duration::from_secs(5), || false)
            .await
            .unwrap_err();
        assert_eq!(e.what, "the moon");
        assert!(e.waited >= Duration::from_secs(5));
        assert!(e.to_string().ends_with("waiting for the moon"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_condition_is_seen_as_soon_as_it_holds() {
        let start = tokio::time::Instant::now();
        let mut n = 0;
        wait_for("three polls", Duration::from_secs(5), || {
            n += 1;
            n == 3
        })
        .await
        .unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_path_that_appears_is_waited_for() {
        let dir = std::env::temp_dir().join(format!("creative-testkit-wait-{}", std::process::id()));
        let path = dir.join("ready");
        let p = path.clone();
        let writer = std::thread::spawn(move || {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"1").unwrap();
        });
        wait_for_path(&path, Duration::from_secs(10)).unwrap();
        writer.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(wait_for_path(&path, Duration::from_millis(20)).is_err());
    }
}
