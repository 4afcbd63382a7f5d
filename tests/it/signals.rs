//! The runner treats SIGTERM and SIGHUP (a farm's or systemd's stop, a closed
//! terminal) like Ctrl-C: it cancels the run, keeps finished steps and exits 130,
//! instead of dying with work left running on remote servers.
#![cfg(unix)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

fn spec(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("campaign.toml");
    std::fs::write(
        &path,
        r#"
name = "signals"
concurrency = 1

[providers.art]
kind = "procedural"
latency_ms = 150

[matrix]
n = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "image {{ n }}"
size = "64x64"
"#,
    )
    .unwrap();
    path
}

/// Start a run, wait until one step is journaled, send `signal`, and return the
/// exit status and stderr.
fn stop_with(signal: &str) -> (std::process::ExitStatus, String) {
    let dir = temp_dir(&format!("signal-{signal}"));
    let out = dir.join("out");
    let journal = out.join(".creative").join("journal.jsonl");
    let child = Command::new(BIN)
        .args([
            "run",
            spec(&dir).to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::fs::read_to_string(&journal).map_or(true, |j| j.lines().count() == 0) {
        assert!(started.elapsed() < Duration::from_secs(60), "the run made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    std::fs::remove_dir_all(&dir).ok();
    (o.status, err)
}

#[test]
fn sigterm_cancels_the_run_like_ctrl_c() {
    let (status, err) = stop_with("TERM");
    assert_eq!(status.code(), Some(130), "status {status:?}, stderr: {err}");
    assert!(err.contains("cancelling"), "{err}");
}

#[test]
fn sighup_cancels_the_run_like_ctrl_c() {
    let (status, err) = stop_with("HUP");
    assert_eq!(status.code(), Some(130), "status {status:?}, stderr: {err}");
    assert!(err.contains("cancelling"), "{err}");
}
