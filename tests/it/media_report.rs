//! The report counts the seconds of audio and video generated and what they
//! cost (issue 19): per provider and model and in the totals, in the JSON
//! report and the command line's table, equal to what ffprobe reads from the
//! generated files. Runs offline on `procedural` (its video needs ffmpeg,
//! which scripts/test installs).

use std::path::Path;
use std::process::Command;

use creative::campaign::spec::{CampaignOptions, Format, Registry, Spec};
use creative::engine::Status;
use creative::ops::media::Ffmpeg;

use crate::common;
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

/// Two jobs, each a 2.5 s voice and a 1.5 s clip; the clip is also passed
/// through a `probe` step, which journals the same clip again: it must count
/// neither as a second clip kept nor as more seconds.
const SPEC: &str = r#"
name = "media-seconds"
concurrency = 2

[providers.voice]
kind = "procedural"
cost_per_audio_second = 0.01

[providers.director]
kind = "procedural"
cost_per_video_second = 0.1

[matrix]
product = ["mug", "lamp"]

[[steps]]
name = "voice"
kind = "generate"
task = "audio"
providers = ["voice"]
prompt = "{{ product }}"
duration_s = 2.5

[[steps]]
name = "clip"
kind = "generate"
task = "video"
providers = ["director"]
prompt = "{{ product }} on a desk"
width = 160
height = 96
duration_s = 1.5

[[steps]]
name = "clip_probed"
kind = "probe"
inputs = ["clip"]
"#;

fn registry() -> Registry {
    let mut reg = Registry::new();
    creative::providers::register(&mut reg);
    creative::ops::register(&mut reg);
    reg
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_seconds_of_generated_audio_and_video_equal_to_their_probed_durations_and_their_cost() {
    let dir = temp_dir("media-report");
    let spec = Spec::parse(SPEC, Format::Toml, "media.toml").unwrap();
    let campaign = spec.build(&registry(), ".").unwrap();
    let opts = CampaignOptions {
        out_dir: Some(dir.join("out")),
        ..CampaignOptions::default()
    };
    let done = campaign.start(opts).unwrap().wait().await.unwrap();
    assert_eq!(done.outcome.status, Status::Succeeded);

    // What the generated files hold, by ffprobe: the voices as delivered, and
    // the clips as the probe step passed them on (the same bytes).
    let ff = Ffmpeg::locate().expect("ffmpeg and ffprobe (scripts/test installs them)");
    let (mut audio, mut video) = (0.0, 0.0);
    for (folder, total) in [("voice", &mut audio), ("clip_probed", &mut video)] {
        let files: Vec<_> = std::fs::read_dir(dir.join("out").join(folder))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 2, "{folder}: {files:?}");
        for f in files {
            *total += ff
                .probe_file(&f, &Default::default())
                .await
                .unwrap()
                .duration_s
                .unwrap();
        }
    }
    assert!(
        close(audio, 5.0) && close(video, 3.0),
        "probed {audio} s audio, {video} s video"
    );

    let r = &done.report;
    assert!(close(r.totals.audio_s, audio), "{:?}", r.totals);
    assert!(close(r.totals.video_s, video), "{:?}", r.totals);
    let row = |p: &str| r.providers.iter().find(|row| row.provider == p).unwrap();
    let (voice, director) = (row("voice"), row("director"));
    assert!(close(voice.audio_s, audio) && voice.video_s == 0.0, "{voice:?}");
    assert!(
        close(director.video_s, video) && director.audio_s == 0.0,
        "{director:?}"
    );
    // Two clips kept, not four: the probe step's copies are the same clips.
    assert_eq!((director.accepted, voice.accepted), (2, 2));
    // Cost: what the provider charged, per second kept.
    assert!(close(voice.cost_usd, 0.05) && close(director.cost_usd, 0.3));
    assert!(close(voice.cost_per_second_usd.unwrap(), 0.01), "{voice:?}");
    assert!(close(director.cost_per_second_usd.unwrap(), 0.1), "{director:?}");
    assert!(close(r.totals.audio_cost_usd, 0.05) && close(r.totals.video_cost_usd, 0.3));
    assert!(
        r.summary_line().contains("video 3.0 s $0.3000, audio 5.0 s $0.0500"),
        "{}",
        r.summary_line()
    );

    // The JSON report on disk carries the same figures.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/report.json")).unwrap()).unwrap();
    assert!(
        close(json["totals"]["video_s"].as_f64().unwrap(), video),
        "{}",
        json["totals"]
    );
    assert!(
        close(json["totals"]["audio_s"].as_f64().unwrap(), audio),
        "{}",
        json["totals"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_command_line_report_lists_media_seconds_and_cost_per_provider() {
    let dir = temp_dir("media-report-cli");
    let spec = dir.join("media.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let o = Command::new(BIN)
        .args(["run"])
        .arg(&spec)
        .arg("--out")
        .arg(dir.join("out"))
        .env_remove("RUST_LOG")
        .env_remove("COLUMNS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("media by provider/model"), "{stdout}");
    // The media table's rows: name, video s, audio s, cost $, $/s.
    let media_rows: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("media by provider/model"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.contains('/'))
        .collect();
    let cells = |l: &str| -> Vec<String> {
        l.split(|c: char| c.is_whitespace() || c == '|')
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    let rows: Vec<Vec<String>> = media_rows.iter().map(|l| cells(l)).collect();
    let row = |p: &str| {
        rows.iter()
            .find(|r| r[0].starts_with(&format!("{p}/")))
            .map(|r| r[1..].to_vec())
            .unwrap_or_else(|| panic!("no media row for {p}: {rows:?}\n{stdout}"))
    };
    assert_eq!(row("director"), ["3.0", "0.0", "0.3000", "0.1000"], "{stdout}");
    assert_eq!(row("voice"), ["0.0", "5.0", "0.0500", "0.0100"], "{stdout}");
    assert!(Path::new(&dir.join("out/report.json")).is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
