//! The stand-in's audio and video: a voice-like tone sequence written as WAV,
//! and animated shapes drawn frame by frame and encoded to H.264 MP4 by ffmpeg.
//! Both depend only on the prompt, seed and size, like the images.

use std::path::PathBuf;
use std::process::Stdio;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use creative_core::cancel::CancellationToken;

use super::image::hsv;
use super::rng_for;

/// The sample rate of the stand-in's voice: speech-band, small files.
pub(crate) const VOICE_RATE: u32 = 24_000;
/// The frame rate of the stand-in's clips.
pub(crate) const FPS: u32 = 24;

/// Vowel formants (F1, F2 in Hz), so syllables differ in colour as speech does.
const VOWELS: &[(f32, f32)] = &[
    (730.0, 1090.0),
    (270.0, 2290.0),
    (530.0, 1840.0),
    (570.0, 840.0),
    (300.0, 870.0),
];

/// A mono voice-like signal: syllables (a gliding pitch with harmonics shaped
/// by a vowel's formants, under a smooth envelope) in words separated by short
/// pauses, at about -26 LUFS, `secs` long.
pub(crate) fn voice_samples(prompt: &str, seed: u64, secs: f32) -> Vec<f32> {
    let mut rng = rng_for(prompt, seed, "voice");
    let n = (VOICE_RATE as f32 * secs) as usize;
    let mut out = vec![0f32; n];
    let base = 95.0 + 120.0 * rng.f32();
    let mut at = (0.05 * VOICE_RATE as f32) as usize;
    while at < n {
        let syllables = 2 + rng.usize(0..3);
        for _ in 0..syllables {
            let len = ((0.12 + 0.18 * rng.f32()) * VOICE_RATE as f32) as usize;
            let (f1, f2) = VOWELS[rng.usize(0..VOWELS.len())];
            let f0 = base * (0.85 + 0.3 * rng.f32());
            let glide = 0.9 + 0.2 * rng.f32();
            let mut phase = 0f32;
            for i in 0..len.min(n.saturating_sub(at)) {
                let p = i as f32 / len as f32;
                let f = f0 * (1.0 + (glide - 1.0) * p);
                phase += std::f32::consts::TAU * f / VOICE_RATE as f32;
                let env = (std::f32::consts::PI * p).sin().powf(0.7);
                let mut v = 0f32;
                for k in 1..=12 {
                    let fk = f * k as f32;
                    // Resonance around each formant, falling with harmonic number.
                    let g = 1.0 / (1.0 + ((fk - f1) / 150.0).powi(2)) + 0.6 / (1.0 + ((fk - f2) / 200.0).powi(2));
                    v += (g + 0.15 / k as f32) * (phase * k as f32).sin();
                }
                out[at + i] += 0.055 * env * v;
            }
            at += len;
        }
        at += ((0.08 + 0.15 * rng.f32()) * VOICE_RATE as f32) as usize;
    }
    out
}

/// 16-bit PCM mono WAV.
pub(crate) fn wav(samples: &[f32], rate: u32) -> Bytes {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + data_len as usize);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes());
    }
    Bytes::from(b)
}

/// One moving shape: a disc or a box on a Lissajous path.
struct Mover {
    colour: [u8; 3],
    size: f32,
    disc: bool,
    ax: f32,
    ay: f32,
    fx: f32,
    fy: f32,
    px: f32,
    py: f32,
}

/// The scene of a clip, drawn one frame at a time.
pub(crate) struct Scene {
    w: u32,
    h: u32,
    bg_a: [f32; 3],
    bg_b: [f32; 3],
    movers: Vec<Mover>,
}

impl Scene {
    pub(crate) fn new(prompt: &str, seed: u64, w: u32, h: u32) -> Scene {
        let mut rng = rng_for(prompt, seed, "video");
        let hue = rng.f32();
        // Bright enough that no frame reads as black.
        let bg_a = hsv(hue, 0.4 + 0.3 * rng.f32(), 0.6 + 0.3 * rng.f32());
        let bg_b = hsv((hue + 0.3 + 0.3 * rng.f32()) % 1.0, 0.5, 0.35 + 0.2 * rng.f32());
        let movers = (0..4 + rng.usize(0..4))
            .map(|_| {
                let c = hsv(rng.f32(), 0.6 + 0.4 * rng.f32(), 0.5 + 0.5 * rng.f32());
                Mover {
                    colour: [(c[0] * 255.0) as u8, (c[1] * 255.0) as u8, (c[2] * 255.0) as u8],
                    size: (0.06 + 0.12 * rng.f32()) * w.min(h) as f32,
                    disc: rng.bool(),
                    ax: 0.15 + 0.3 * rng.f32(),
                    ay: 0.15 + 0.3 * rng.f32(),
                    fx: 0.1 + 0.4 * rng.f32(),
                    fy: 0.1 + 0.4 * rng.f32(),
                    px: rng.f32() * std::f32::consts::TAU,
                    py: rng.f32() * std::f32::consts::TAU,
                }
            })
            .collect();
        Scene {
            w,
            h,
            bg_a,
            bg_b,
            movers,
        }
    }

    /// Frame `i` as packed RGB.
    pub(crate) fn frame(&self, i: u32, out: &mut Vec<u8>) {
        let (w, h) = (self.w as usize, self.h as usize);
        out.clear();
        out.reserve(w * h * 3);
        let t = i as f32 / FPS as f32;
        for y in 0..h {
            // A vertical gradient that drifts slowly.
            let g = ((y as f32 / h as f32) + 0.1 * (t * 0.5).sin()).clamp(0.0, 1.0);
            let px: [u8; 3] = std::array::from_fn(|k| ((self.bg_a[k] * (1.0 - g) + self.bg_b[k] * g) * 255.0) as u8);
            for _ in 0..w {
                out.extend_from_slice(&px);
            }
        }
        let tau = std::f32::consts::TAU;
        for m in &self.movers {
            let cx = self.w as f32 * (0.5 + m.ax * (tau * m.fx * t + m.px).sin());
            let cy = self.h as f32 * (0.5 + m.ay * (tau * m.fy * t + m.py).sin());
            let r = m.size;
            let (x0, x1) = ((cx - r).max(0.0) as usize, ((cx + r) as usize).min(w));
            let (y0, y1) = ((cy - r).max(0.0) as usize, ((cy + r) as usize).min(h));
            for y in y0..y1 {
                for x in x0..x1 {
                    let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                    if !m.disc || dx * dx + dy * dy <= r * r {
                        let o = (y * w + x) * 3;
                        out[o..o + 3].copy_from_slice(&m.colour);
                    }
                }
            }
        }
    }
}

/// Why no ffmpeg was found, naming where it was looked for.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FfmpegNotFound {
    /// The provider's `ffmpeg` setting names no file.
    #[error("setting `ffmpeg` names `{}`, which is not a file", .0.display())]
    Setting(PathBuf),
    /// `CREATIVE_FFMPEG` names no file.
    #[error("CREATIVE_FFMPEG names `{}`, which is not a file", .0.display())]
    Env(PathBuf),
    /// Neither is set and no directory of `PATH` holds it.
    #[error(
        "video needs ffmpeg, which was not found: set the provider's `ffmpeg` setting or CREATIVE_FFMPEG, \
         or install it (Debian: apt-get install ffmpeg); looked in PATH={path}"
    )]
    NotOnPath {
        /// The `PATH` searched, as text.
        path: String,
    },
}

/// ffmpeg as configured (the provider's `ffmpeg` setting, else
/// `CREATIVE_FFMPEG`, else `PATH`).
pub(crate) fn find_ffmpeg(configured: Option<&PathBuf>) -> Result<PathBuf, FfmpegNotFound> {
    if let Some(p) = configured {
        return if p.is_file() {
            Ok(p.clone())
        } else {
            Err(FfmpegNotFound::Setting(p.clone()))
        };
    }
    if let Some(p) = std::env::var_os("CREATIVE_FFMPEG") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(FfmpegNotFound::Env(p))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("ffmpeg"))
        .find(|p| p.is_file())
        .ok_or_else(|| FfmpegNotFound::NotOnPath {
            path: path.to_string_lossy().into_owned(),
        })
}

/// Why an encode failed, or that it was cancelled.
pub(crate) enum EncodeError {
    Cancelled,
    Failed(String),
}

/// Draw `frames` frames of `scene` and encode them with ffmpeg into an H.264
/// MP4 (one encoder thread, no version tags: the same scene gives the same
/// bytes). The ffmpeg child is killed when `cancel` fires.
pub(crate) async fn encode_clip(
    ffmpeg: &std::path::Path,
    scene: Scene,
    frames: u32,
    cancel: &CancellationToken,
) -> Result<Bytes, EncodeError> {
    let dir = std::env::temp_dir().join(format!(
        "creative-procedural-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| EncodeError::Failed(format!("scratch directory: {e}")))?;
    let out_path = dir.join("clip.mp4");
    let size = format!("{}x{}", scene.w, scene.h);
    let rate = FPS.to_string();
    let mut cmd = tokio::process::Command::new(ffmpeg);
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args([
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", &size, "-r", &rate, "-i", "pipe:0",
        ])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-threads", "1",
        ])
        .args([
            "-map_metadata",
            "-1",
            "-fflags",
            "+bitexact",
            "-flags:v",
            "+bitexact",
            "-movflags",
            "+faststart",
        ])
        .arg(&out_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let result = async {
        let mut child = cmd
            .spawn()
            .map_err(|e| EncodeError::Failed(format!("cannot start `{}`: {e}", ffmpeg.display())))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        // Drawing is CPU work: frames are drawn on the blocking pool, two
        // ahead of the pipe; the drawer stops when the receiver goes away.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
        tokio::task::spawn_blocking(move || {
            for i in 0..frames {
                let mut buf = Vec::new();
                scene.frame(i, &mut buf);
                if tx.blocking_send(buf).is_err() {
                    break;
                }
            }
        });
        let feed = async move {
            while let Some(buf) = rx.recv().await {
                if stdin.write_all(&buf).await.is_err() {
                    break; // ffmpeg stopped reading: its status says why
                }
            }
            drop(stdin);
        };
        let errs = async move {
            let mut e = Vec::new();
            let _ = stderr.read_to_end(&mut e).await;
            e
        };
        let done = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            r = async { tokio::join!(feed, errs, child.wait()) } => Some(r),
        };
        let Some(((), err, status)) = done else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(EncodeError::Cancelled);
        };
        let status = status.map_err(|e| EncodeError::Failed(e.to_string()))?;
        if !status.success() {
            return Err(EncodeError::Failed(format!(
                "ffmpeg exited with {status}: {}",
                String::from_utf8_lossy(&err).trim()
            )));
        }
        tokio::fs::read(&out_path)
            .await
            .map(Bytes::from)
            .map_err(|e| EncodeError::Failed(format!("reading the encoded clip: {e}")))
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procedural::Procedural;
    use creative_core::{CallCtx, MediaType, Provider, Request, Task};

    fn req(task: Task, prompt: &str, seed: u64, secs: f32) -> Request {
        let mut r = Request::new(task, prompt);
        r.params.seed = Some(seed);
        r.params.duration_s = Some(secs);
        r
    }

    fn probe(bytes: &[u8]) -> serde_json::Value {
        let dir = tempdir();
        let p = dir.join("c.mp4");
        std::fs::write(&p, bytes).unwrap();
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-print_format", "json", "-show_streams", "-show_format"])
            .arg(&p)
            .output()
            .expect("ffprobe runs (scripts/test installs ffmpeg)");
        let _ = std::fs::remove_dir_all(&dir);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("procedural-test-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn a_clip_is_h264_of_the_asked_size_and_length_and_the_same_for_the_same_seed() {
        let p = Procedural::new("p");
        let mut r = req(Task::Video, "a red mug", 7, 1.0);
        r.params.width = Some(320);
        r.params.height = Some(180);
        let a = p.generate(&r, &CallCtx::detached()).await.unwrap();
        let b = p.generate(&r, &CallCtx::detached()).await.unwrap();
        assert_eq!(a.artifacts[0].media(), &MediaType::Mp4);
        assert_eq!(a.artifacts[0].id(), b.artifacts[0].id(), "deterministic bytes");
        r.params.seed = Some(8);
        let c = p.generate(&r, &CallCtx::detached()).await.unwrap();
        assert_ne!(a.artifacts[0].id(), c.artifacts[0].id());
        let info = probe(a.artifacts[0].data());
        let v = &info["streams"][0];
        assert_eq!(
            (v["codec_name"].as_str(), v["width"].as_u64(), v["height"].as_u64()),
            (Some("h264"), Some(320), Some(180))
        );
        assert_eq!(v["avg_frame_rate"], "24/1");
        let d: f64 = info["format"]["duration"].as_str().unwrap().parse().unwrap();
        assert!((d - 1.0).abs() < 0.05, "{d}");
        assert!((a.usage.cost_usd - 0.05).abs() < 1e-9, "1 s at 0.05 a second");
        assert_eq!(a.usage.units, Some(1.0));
    }

    #[test]
    fn the_shapes_move_and_no_frame_is_dark() {
        let s = Scene::new("city cycling", 3, 160, 90);
        let (mut f0, mut f1) = (Vec::new(), Vec::new());
        s.frame(0, &mut f0);
        s.frame(24, &mut f1);
        let changed = f0.iter().zip(&f1).filter(|(a, b)| a != b).count();
        assert!(
            changed > f0.len() / 50,
            "one second later the picture has moved: {changed}"
        );
        for i in (0..240).step_by(12) {
            s.frame(i, &mut f0);
            let mean = f0.iter().map(|&v| f64::from(v)).sum::<f64>() / f0.len() as f64;
            assert!(mean > 50.0, "frame {i} mean {mean}");
        }
    }

    #[tokio::test]
    async fn a_voice_is_a_deterministic_wav_of_syllables_and_pauses() {
        let p = Procedural::new("p");
        let a = p
            .generate(&req(Task::Audio, "hello", 1, 2.0), &CallCtx::detached())
            .await
            .unwrap();
        let b = p
            .generate(&req(Task::Audio, "hello", 1, 2.0), &CallCtx::detached())
            .await
            .unwrap();
        let c = p
            .generate(&req(Task::Audio, "hello", 2, 2.0), &CallCtx::detached())
            .await
            .unwrap();
        assert_eq!(a.artifacts[0].id(), b.artifacts[0].id());
        assert_ne!(a.artifacts[0].id(), c.artifacts[0].id());
        let data = a.artifacts[0].data();
        assert_eq!(&data[..4], b"RIFF");
        assert_eq!(data.len(), 44 + 2 * 2 * VOICE_RATE as usize);
        let s: Vec<f32> = data[44..]
            .chunks_exact(2)
            .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
            .collect();
        // 20 ms windows: speech has both sounding and quiet ones.
        let rms: Vec<f32> = s
            .chunks(480)
            .map(|w| (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt())
            .collect();
        let loud = rms.iter().filter(|&&r| r > 0.02).count();
        let quiet = rms.iter().filter(|&&r| r < 0.002).count();
        assert!(
            loud > rms.len() / 2 && quiet >= 3,
            "loud {loud}, quiet {quiet} of {}",
            rms.len()
        );
        assert!(s.iter().all(|x| x.abs() < 0.9), "no clipping");
    }

    #[tokio::test]
    async fn a_cancelled_clip_stops_its_encoder_and_says_cancelled() {
        let p = Procedural::new("p");
        let mut r = req(Task::Video, "long", 1, 60.0);
        r.params.width = Some(1920);
        r.params.height = Some(1080);
        let ctx = CallCtx::detached();
        let token = ctx.cancel.clone();
        let run = p.generate(&r, &ctx);
        tokio::pin!(run);
        // Let the encoder start, then cancel: the call returns well before a
        // minute of 1080p could have been drawn and encoded.
        tokio::select! {
            _ = &mut run => panic!("a minute of 1080p finished before the cancel"),
            _ = tokio::task::yield_now() => {}
        }
        token.cancel();
        let e = tokio::time::timeout(std::time::Duration::from_secs(30), run)
            .await
            .expect("prompt")
            .unwrap_err();
        assert_eq!(e.kind(), creative_core::ErrorKind::Cancelled);
    }

    #[tokio::test]
    async fn out_of_range_lengths_and_sizes_are_invalid_requests() {
        let p = Procedural::new("p");
        let e = p
            .generate(&req(Task::Audio, "x", 1, 600.0), &CallCtx::detached())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("duration_s 600"), "{e}");
        let mut r = req(Task::Video, "x", 1, 1.0);
        r.params.width = Some(8000);
        let e = p.generate(&r, &CallCtx::detached()).await.unwrap_err();
        assert!(e.to_string().contains("8000x360"), "{e}");
    }
}
