//! The offline video spot (`examples/specs/video_spot.toml`) runs end to end
//! through the command line: script, voice normalised to -16 LUFS, clip,
//! three aspect cuts with captions and the voice, gates, delivery, and a
//! contact sheet that plays them. Needs ffmpeg (scripts/test installs it).

use std::path::Path;
use std::process::Command;

use crate::common;
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

fn probe(path: &Path) -> serde_json::Value {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_streams", "-show_format"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    serde_json::from_slice(&o.stdout).unwrap()
}

fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[test]
fn the_video_spot_example_runs_offline_and_delivers_three_captioned_cuts_with_the_voice() {
    let out = temp_dir("video-spot");
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/specs/video_spot.toml");
    let o = Command::new(BIN)
        .args(["run"])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("succeeded: jobs 1 (1 ok, 0 failed)"), "{stdout}");

    // Three cuts, each H.264 with AAC, at its aspect, six seconds long.
    let mut sizes = Vec::new();
    for f in files_in(&out.join("spot")) {
        let info = probe(&f);
        let streams = info["streams"].as_array().unwrap();
        let v = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
        let a = streams
            .iter()
            .find(|s| s["codec_type"] == "audio")
            .expect("the voice is muxed");
        assert_eq!(v["codec_name"], "h264");
        assert_eq!(a["codec_name"], "aac");
        sizes.push((v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap()));
        let d: f64 = info["format"]["duration"].as_str().unwrap().parse().unwrap();
        assert!((d - 6.0).abs() < 0.2, "{f:?}: {d} s");
    }
    sizes.sort();
    assert_eq!(sizes, vec![(360, 360), (360, 640), (640, 360)]);

    // The voice, normalised; subtitles in both formats; a poster per cut.
    assert_eq!(files_in(&out.join("voice_norm")).len(), 1);
    let subs = files_in(&out.join("subs"));
    let exts: Vec<_> = subs
        .iter()
        .map(|p| p.extension().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(exts, vec!["srt", "vtt"]);
    assert!(std::fs::read_to_string(&subs[1])
        .unwrap()
        .starts_with("WEBVTT\n\n00:00:00.000 --> "));
    assert_eq!(files_in(&out.join("poster")).len(), 3);

    // Every gate ran and passed, the loudness ones included.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let gates = report["gates"].as_array().unwrap();
    for kind in [
        "loudness",
        "black_frames",
        "frozen_frames",
        "duration",
        "frame_rate",
        "frames",
        "clipping",
        "silence",
    ] {
        let g = gates
            .iter()
            .find(|g| g["gate"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {gates:?}"));
        assert_eq!(g["checks"], g["passes"], "{g}");
    }

    // The contact sheet plays the cuts and the voice.
    let sheet = std::fs::read_to_string(out.join("contact_sheet.html")).unwrap();
    assert_eq!(sheet.matches("<video controls").count(), 3, "{sheet}");
    assert_eq!(sheet.matches("<audio controls").count(), 1);
    let _ = std::fs::remove_dir_all(&out);
}
