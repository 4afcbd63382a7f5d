//! A cancelled ffmpeg run stops its child process. Alone in its binary: it
//! counts this process's ffmpeg children, which other tests would add to.

#[path = "it/media_common/mod.rs"]
mod media_common;

use std::sync::atomic::{AtomicU64, Ordering};

use creative_core::cancel::CancellationToken;
use creative_ops::media::{Control, Ffmpeg};
use creative_ops::OpsError;

/// The pids of this process's children named `name` (Linux /proc).
fn children_named(name: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else { continue };
        let comm = &stat[stat.find('(').unwrap() + 1..close];
        let ppid: u32 = stat[close + 2..]
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == me && comm == name {
            out.push(pid);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_encode_kills_its_ffmpeg_child_and_says_cancelled() {
    let ff = media_common::ff();
    let cancel = CancellationToken::new();
    let reports = AtomicU64::new(0);
    let token = cancel.clone();
    // Cancel as soon as ffmpeg reports progress: the child is certainly running.
    let progress = move |_done: u64, _total: u64| {
        reports.fetch_add(1, Ordering::Relaxed);
        token.cancel();
    };
    let ctl = Control {
        cancel: &cancel,
        progress: Some(&progress),
        total_us: 600_000_000,
    };
    // Ten minutes of 720p encoding: far longer than any test waits.
    let args = [
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=30:duration=600",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-f",
        "null",
        "-",
    ];
    let run = ff.run(args, &ctl);
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("cancel is prompt");
    assert_eq!(r, Err(OpsError::Cancelled));
    assert!(cancel.is_cancelled());
    assert!(
        children_named("ffmpeg").is_empty(),
        "an ffmpeg child survived the cancel"
    );
}

#[test]
fn a_missing_ffmpeg_is_an_error_naming_the_tool_and_the_path() {
    let e = Ffmpeg::at("/nonexistent/bin/ffmpeg", "/nonexistent/bin/ffprobe").unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("ffmpeg:"), "{text}");
    assert!(text.contains("/nonexistent/bin/ffmpeg"), "{text}");
}
