//! Video renditions against the ffmpeg command a person would write by hand.
//!
//! A 10 s 1080p clip (moving test pattern with a tone, made here) is cut into
//! 9:16 (1080x1920), 1:1 (1080x1080) and 16:9 (1920x1080) H.264/AAC MP4s,
//! first by the `video_renditions` step (probe, attention over 5 sampled
//! frames, one decode split into three crop+scale chains, each output
//! probed), then by one hand-written `ffmpeg -filter_complex split=3...` with
//! the same crops, sizes and encoder settings. Runs alternate (ABBA) so both
//! see the same machine load; the median of each is reported, and the ratio,
//! for wall time and for the CPU time of the child processes (user + system,
//! from /proc/self/stat: steadier than wall time on a shared machine).
//!
//!   cargo bench -p creative-ops --bench video_renditions [-- RUNS]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use creative_core::{Artifact, MediaType, Step, StepCtx, StepInputs};
use creative_ops::geometry::Rect;
use creative_ops::media::video::{renditions_args, VideoOutput, VideoRenditionsSettings, VideoRenditionsStep};
use creative_ops::media::Ffmpeg;

const PRESET: &str = "veryfast";

fn settings() -> VideoRenditionsSettings {
    serde_json::from_value(serde_json::json!({
        "renditions": [
            { "aspect": "9:16", "width": 1080 },
            { "aspect": "1:1", "width": 1080 },
            { "aspect": "16:9", "width": 1920 },
        ],
        "attention": "entropy",
        "samples": 5,
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

/// CPU seconds (user + system) of this process's waited-for children, from
/// /proc/self/stat (fields 16 and 17, in clock ticks of 1/100 s on Linux).
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm)", field 3 (state) is index 0: cutime is field 16, cstime 17.
    let tick = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(16) + tick(17)) / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    let ff = Arc::new(Ffmpeg::locate().expect("ffmpeg"));
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(&ff, dir.path());
    let src = dir.path().join("src.mp4");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let step = VideoRenditionsStep::new(settings(), ff.clone()).unwrap();
    let input = Artifact::new(MediaType::Mp4, clip);
    let inputs = StepInputs::new(vec![(Arc::from("clip"), Arc::from(vec![input]))]);

    // The hand-written command for the same outputs: the crops the step
    // chooses (read from a warm-up run's provenance), the same sizes and
    // encoder settings, so the comparison is of the work around the encode.
    let warm = rt
        .block_on(step.run(
            &inputs,
            &StepCtx::detached(creative_core::Job::new::<&str, &str>([]), "cuts"),
        ))
        .expect("renditions");
    let plans: Vec<(Rect, (u32, u32))> = warm
        .iter()
        .map(|a| {
            let crop: Rect = serde_json::from_value(a.provenance().params["crop"].clone()).expect("crop");
            (crop, (a.meta().width.unwrap(), a.meta().height.unwrap()))
        })
        .collect();
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

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut ours_cpu, mut theirs_cpu) = (Vec::new(), Vec::new());
    let run_hand = || {
        let (t, c) = (Instant::now(), children_cpu());
        let st = Command::new(ff.ffmpeg_path())
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(&hand)
            .status()
            .unwrap();
        assert!(st.success());
        (t.elapsed().as_secs_f64(), children_cpu() - c)
    };
    let run_step = || {
        let (t, c) = (Instant::now(), children_cpu());
        let ctx = StepCtx::detached(creative_core::Job::new::<&str, &str>([]), "cuts");
        let out = rt.block_on(step.run(&inputs, &ctx)).expect("renditions");
        assert_eq!(out.len(), 3);
        (t.elapsed().as_secs_f64(), children_cpu() - c)
    };
    for i in 0..runs {
        // ABBA: neither side always runs first.
        let (h, o) = if i % 2 == 0 {
            let h = run_hand();
            (h, run_step())
        } else {
            let o = run_step();
            (run_hand(), o)
        };
        theirs.push(h.0);
        theirs_cpu.push(h.1);
        ours.push(o.0);
        ours_cpu.push(o.1);
        println!(
            "run {}: hand {:.2} s ({:.2} s CPU), step {:.2} s ({:.2} s CPU)",
            i + 1,
            h.0,
            h.1,
            o.0,
            o.1
        );
    }
    let (o, h) = (median(ours), median(theirs));
    let (oc, hc) = (median(ours_cpu), median(theirs_cpu));
    println!(
        "video_renditions 10 s 1080p -> 3 cuts (median of {runs}): wall step {o:.2} s vs hand {h:.2} s ({:+.1}%); \
         CPU step {oc:.2} s vs hand {hc:.2} s ({:+.1}%)",
        (o / h - 1.0) * 100.0,
        (oc / hc - 1.0) * 100.0
    );
}
