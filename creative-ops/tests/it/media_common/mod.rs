//! Audio and video made inside the tests: WAV written here, clips from
//! ffmpeg's lavfi sources.
#![allow(dead_code)]

use std::process::Command;
use std::sync::Arc;

use creative_core::{Artifact, MediaType, StepInputs};
use creative_ops::media::{audio, Ffmpeg};

/// ffmpeg as the steps find it; `scripts/test` installs Debian's package.
pub fn ff() -> Arc<Ffmpeg> {
    Arc::new(Ffmpeg::locate().expect("ffmpeg and ffprobe must be installed (scripts/test installs them)"))
}

/// 16-bit PCM WAV of interleaved samples.
pub fn wav(samples: &[f32], rate: u32, channels: u16) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + data_len as usize);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    b.extend_from_slice(&(channels * 2).to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes());
    }
    b
}

/// A voice-like mono signal: syllables of a few harmonics with a moving
/// pitch, short gaps between them.
pub fn voice(rate: u32, secs: f32) -> Vec<f32> {
    let n = (rate as f32 * secs) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let syl = (t * 4.0) % 1.0; // four syllables a second
            let env = if syl < 0.8 {
                (syl / 0.8 * std::f32::consts::PI).sin()
            } else {
                0.0
            };
            let f0 = 140.0 + 30.0 * (t * 1.7).sin();
            let ph = 2.0 * std::f32::consts::PI * f0 * t;
            env * (0.6 * ph.sin() + 0.3 * (2.0 * ph).sin() + 0.15 * (3.0 * ph).sin())
        })
        .collect()
}

/// Scale `s` (mono at `rate`) to integrated loudness `lufs`.
pub fn at_loudness(mut s: Vec<f32>, rate: u32, lufs: f64) -> Vec<f32> {
    let l = audio::measure(&s, 1, rate).unwrap();
    let g = 10f64.powf((lufs - l.integrated_lufs) / 20.0) as f32;
    for x in &mut s {
        *x *= g;
    }
    s
}

pub fn wav_artifact(samples: &[f32], rate: u32) -> Artifact {
    Artifact::new(MediaType::Wav, wav(samples, rate, 1))
}

/// A sine of `freq` Hz and `amp` peak.
pub fn sine(rate: u32, secs: f32, freq: f32, amp: f32) -> Vec<f32> {
    (0..(rate as f32 * secs) as usize)
        .map(|i| amp * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
        .collect()
}

/// Run ffmpeg with `args` writing `out.<ext>` in a temporary directory, and
/// return the file's bytes.
pub fn ffmpeg_make(args: &[&str], ext: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(format!("out.{ext}"));
    let st = Command::new(ff().ffmpeg_path())
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(st.success(), "ffmpeg {args:?} failed");
    std::fs::read(out).unwrap()
}

/// An H.264/AAC MP4 from a lavfi video graph (`[v]` output) of `secs`
/// seconds, with a 440 Hz tone.
pub fn clip_from_graph(graph: &str, secs: f32) -> Artifact {
    let d = secs.to_string();
    let sine = format!("sine=frequency=440:duration={d}");
    let bytes = ffmpeg_make(
        &[
            "-filter_complex",
            graph,
            "-f",
            "lavfi",
            "-i",
            &sine,
            "-map",
            "[v]",
            "-map",
            "0:a",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-t",
            &d,
        ],
        "mp4",
    );
    Artifact::new(MediaType::Mp4, bytes)
}

/// A moving test pattern clip.
pub fn clip(w: u32, h: u32, secs: f32) -> Artifact {
    clip_from_graph(&format!("testsrc2=size={w}x{h}:rate=24:duration={secs}[v]"), secs)
}

pub fn inputs(groups: Vec<(&str, Vec<Artifact>)>) -> StepInputs {
    StepInputs::new(groups.into_iter().map(|(n, a)| (Arc::from(n), Arc::from(a))).collect())
}

/// The duration ffprobe reports.
pub async fn duration(a: &Artifact) -> f64 {
    ff().probe(a, &Default::default()).await.unwrap().duration_s.unwrap()
}
