//! Video renditions against the ffmpeg command a person would write by hand.
//!
//! A 10 s 1080p clip (moving test pattern with a tone, made here) is cut into
//! 9:16 (1080x1920), 1:1 (1080x1080) and 16:9 (1920x1080) H.264/AAC MP4s,
//! first by the `video_renditions` step (probe, attention over 5 sampled
//! frames, one decode split into three crop+scale chains, each output
//! probed), then by one hand-written `ffmpeg -filter_complex split=3...` with
//! centred crops and the same encoder settings. Runs alternate so both see
//! the same machine load; the median of each is reported, and the ratio.
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

    // The hand-written command: centred crops, same sizes and encoder settings.
    let plans: Vec<(Rect, (u32, u32))> = vec![
        (Rect::new(656, 0, 608, 1080), (1080, 1920)),
        (Rect::new(420, 0, 1080, 1080), (1080, 1080)),
        (Rect::new(0, 0, 1920, 1080), (1920, 1080)),
    ];
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
    for i in 0..runs {
        let t = Instant::now();
        let st = Command::new(ff.ffmpeg_path())
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(&hand)
            .status()
            .unwrap();
        assert!(st.success());
        theirs.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let out = rt
            .block_on(step.run(
                &inputs,
                &StepCtx::detached(creative_core::Job::new::<&str, &str>([]), "cuts"),
            ))
            .expect("renditions");
        ours.push(t.elapsed().as_secs_f64());
        assert_eq!(out.len(), 3);
        println!("run {}: hand {:.2} s, step {:.2} s", i + 1, theirs[i], ours[i]);
    }
    let (o, h) = (median(ours), median(theirs));
    println!(
        "video_renditions 10 s 1080p -> 3 cuts: step {o:.2} s, hand-written ffmpeg {h:.2} s, ratio {:.3} ({:+.1}%)",
        o / h,
        (o / h - 1.0) * 100.0
    );
}
