//! Video renditions against the ffmpeg command a person would write by hand.
//!
//! A 10 s 1080p clip (moving test pattern with a tone, made here; x264's
//! default GOP, so keyframes at 0 and 8.3 s) is cut into 9:16 (1080x1920),
//! 1:1 (1080x1080) and 16:9 (1920x1080) H.264/AAC MP4s (x264 veryfast, CRF
//! 23): by the `video_renditions` step (ffprobe of the input, attention over
//! sampled frames, one decode split into three crop+scale chains, each
//! output's facts read from its MP4 header), with keyframe sampling (the
//! default) and with even sampling (a full decode), and by one hand-written
//! `ffmpeg -filter_complex split=3...` with the same crops, sizes and encoder
//! settings. Each round runs the three in a rotated order so all see the same
//! machine load; the median of each is reported, and the ratios, for wall time
//! and for CPU time (user + system of this process and its waited-for
//! children, from /proc/self/stat: steadier than wall time on a shared
//! machine; the step's own work, attention and header reads, is in it).
//!
//!   cargo bench -p creative-ops --bench video_renditions [-- ROUNDS]
//!
//! Measured 2026-12-07 on the 2-core development machine shared with five
//! other builds (it was never idle that day): 3 rounds, load average 8.7
//! before and 15.6 after (1-minute figures). Wall times under that load are
//! noise (a round's three runs differed by up to 40%); CPU times held within
//! 4% across rounds and are the figure to read. Attention saw the clip's 2
//! keyframes (of 5 samples asked).
//!
//! ```text
//!                     wall s    CPU s      wall       CPU
//! hand                 29.17    20.03     +0.0%     +0.0%
//! step (keyframes)     28.47    20.29     -2.4%     +1.3%
//! step (even)          21.21    22.05    -27.3%    +10.1%
//! ```
//!
//! Before this change (last session, same bench): step +12.3% CPU, +8.1%
//! wall against the hand-written command; the extra was the full decode for
//! attention sampling and an ffprobe run per output.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use creative_core::{Artifact, MediaType, Step, StepCtx, StepInputs};
use creative_ops::geometry::Rect;
use creative_ops::media::video::{renditions_args, VideoOutput, VideoRenditionsSettings, VideoRenditionsStep};
use creative_ops::media::Ffmpeg;

const PRESET: &str = "veryfast";

fn settings(sampling: &str) -> VideoRenditionsSettings {
    serde_json::from_value(serde_json::json!({
        "renditions": [
            { "aspect": "9:16", "width": 1080 },
            { "aspect": "1:1", "width": 1080 },
            { "aspect": "16:9", "width": 1920 },
        ],
        "attention": "entropy",
        "samples": 5,
        "sampling": sampling,
        "output": { "codec": "h264", "quality": 70, "preset": PRESET },
    }))
    .expect("settings")
}

fn make_clip(ff: &Ffmpeg, dir: &Path) -> Vec<u8> {
    let out = dir.join("src.mp4");
    let st = Command::new(ff.ffmpeg_path())
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30:duration=10"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=10"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "18",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ])
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(st.success());
    std::fs::read(out).unwrap()
}

/// CPU seconds (user + system) of this process and its waited-for children,
/// from /proc/self/stat (fields 14 to 17, in clock ticks of 1/100 s on Linux).
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm)", field 3 (state) is index 0.
    let tick = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(14) + tick(15) + tick(16) + tick(17)) / 100.0
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    let ff = Arc::new(Ffmpeg::locate().expect("ffmpeg"));
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(&ff, dir.path());
    let src = dir.path().join("src.mp4");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let keyframes = VideoRenditionsStep::new(settings("keyframes"), ff.clone()).unwrap();
    let even = VideoRenditionsStep::new(settings("even"), ff.clone()).unwrap();
    let input = Artifact::new(MediaType::Mp4, clip);
    let inputs = StepInputs::new(vec![(Arc::from("clip"), Arc::from(vec![input]))]);
    let ctx = || StepCtx::detached(creative_core::Job::new::<&str, &str>([]), "cuts");

    // The hand-written command for the same outputs: the crops the step
    // chooses (read from a warm-up run's provenance), the same sizes and
    // encoder settings, so the comparison is of the work around the encode.
    let warm = rt.block_on(keyframes.run(&inputs, &ctx())).expect("renditions");
    let plans: Vec<(Rect, (u32, u32))> = warm
        .iter()
        .map(|a| {
            let crop: Rect = serde_json::from_value(a.provenance().params["crop"].clone()).expect("crop");
            (crop, (a.meta().width.unwrap(), a.meta().height.unwrap()))
        })
        .collect();
    println!(
        "attention measured on {} keyframes",
        warm[0].provenance().params["samples"]
    );
    let outs: Vec<_> = (0..3).map(|i| dir.path().join(format!("hand{i}.mp4"))).collect();
    let output = VideoOutput {
        preset: PRESET.into(),
        ..VideoOutput::default()
    };
    let hand = renditions_args(&src, &plans, &outs, &output, true);
    println!(
        "hand-written: ffmpeg {}",
        hand.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );

    let timed = |f: &dyn Fn()| {
        let (t, c) = (Instant::now(), cpu());
        f();
        (t.elapsed().as_secs_f64(), cpu() - c)
    };
    let run_hand = || {
        let st = Command::new(ff.ffmpeg_path())
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(&hand)
            .status()
            .unwrap();
        assert!(st.success());
    };
    let run_step = |step: &VideoRenditionsStep| {
        let out = rt.block_on(step.run(&inputs, &ctx())).expect("renditions");
        assert_eq!(out.len(), 3);
    };
    let names = ["hand", "step (keyframes)", "step (even)"];
    let load_before = load();
    // Per contestant: wall seconds, CPU seconds.
    let mut got: [(Vec<f64>, Vec<f64>); 3] = Default::default();
    for round in 0..rounds {
        let mut line = format!("round {}:", round + 1);
        // Rotate the order, so none always runs first.
        for k in 0..3 {
            let i = (k + round) % 3;
            let (w, c) = match i {
                0 => timed(&run_hand),
                1 => timed(&|| run_step(&keyframes)),
                _ => timed(&|| run_step(&even)),
            };
            got[i].0.push(w);
            got[i].1.push(c);
            line.push_str(&format!(" {} {w:.2} s ({c:.2} s CPU);", names[i]));
        }
        println!("{line}");
    }
    let med: Vec<(f64, f64)> = got
        .iter()
        .map(|(w, c)| (median(w.clone()), median(c.clone())))
        .collect();
    println!("load average before {load_before}, after {}", load());
    println!("video_renditions 10 s 1080p -> 3 cuts, median of {rounds} rounds:");
    println!("  {:<18} {:>8} {:>8} {:>9} {:>9}", "", "wall s", "CPU s", "wall", "CPU");
    for (i, (w, c)) in med.iter().enumerate() {
        println!(
            "  {:<18} {w:>8.2} {c:>8.2} {:>+8.1}% {:>+8.1}%",
            names[i],
            (w / med[0].0 - 1.0) * 100.0,
            (c / med[0].1 - 1.0) * 100.0
        );
    }
}
