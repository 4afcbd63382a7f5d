//! Probing, the audio steps and the audio gates, on media made in each test.

use crate::common;
use crate::media_common;

use creative_core::{Artifact, MediaKind, QualityGate, Step};
use creative_ops::media::audio::{
    self, AudioConcatSettings, AudioConcatStep, AudioFormat, AudioOutput, AudioTranscodeSettings, AudioTranscodeStep,
    AudioTrimSettings, AudioTrimStep, LoudnessNormalizeSettings, LoudnessNormalizeStep,
};
use creative_ops::media::gates::{
    ClippingGate, ClippingSettings, DurationGate, DurationSettings, LoudnessGate, LoudnessSettings, SilenceGate,
    SilenceSettings,
};
use creative_ops::media::ProbeStep;
use media_common::*;

const RATE: u32 = 48_000;

fn loudness_gate() -> LoudnessGate {
    LoudnessGate::new(
        LoudnessSettings {
            target_lufs: -16.0,
            tolerance_lu: 1.0,
            max_true_peak_db: -1.0,
        },
        ff(),
    )
    .unwrap()
}

async fn measured(a: &Artifact) -> audio::Loudness {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(format!("a.{}", a.media().extension()));
    std::fs::write(&p, a.data()).unwrap();
    let s = {
        let out = std::process::Command::new(ff().ffmpeg_path())
            .args(["-v", "error", "-i"])
            .arg(&p)
            .args(["-f", "f32le", "-ac", "1", "-ar", "48000", "pipe:1"])
            .output()
            .unwrap();
        out.stdout
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<_>>()
    };
    audio::measure(&s, 1, RATE).unwrap()
}

#[tokio::test]
async fn probing_records_duration_sample_rate_channels_and_codec_in_meta() {
    let a = wav_artifact(&voice(RATE, 2.0), RATE);
    let out = ProbeStep::new(ff())
        .run(&common::inputs("voice", vec![a.clone()]), &common::step_ctx("probe"))
        .await
        .unwrap();
    assert_eq!(out[0].id(), a.id(), "probing does not change the bytes");
    let m = out[0].meta();
    assert!((m.duration_s.unwrap() - 2.0).abs() < 0.01, "{m:?}");
    assert_eq!(m.extra["sample_rate"], 48000);
    assert_eq!(m.extra["channels"], 1);
    assert_eq!(m.extra["audio_codec"], "pcm_s16le");
    assert_eq!(m.width, None);
}

#[tokio::test]
async fn probing_a_video_records_resolution_frame_rate_and_both_codecs() {
    let v = clip(320, 240, 1.0);
    let info = ff().probe(&v, &Default::default()).await.unwrap();
    assert_eq!((info.width, info.height), (Some(320), Some(240)));
    assert_eq!(info.fps, Some(24.0));
    assert_eq!(info.video_codec.as_deref(), Some("h264"));
    assert_eq!(info.audio_codec.as_deref(), Some("aac"));
    assert!((info.duration_s.unwrap() - 1.0).abs() < 0.1, "{info:?}");
}

#[tokio::test]
async fn probing_bytes_that_are_not_media_is_a_decode_error_naming_the_input() {
    let junk = Artifact::new(creative_core::MediaType::Mp4, b"not a video at all".to_vec());
    let e = ff().probe(&junk, &Default::default()).await.unwrap_err().to_string();
    assert!(e.contains(junk.id().short()) && e.contains("video/mp4"), "{e}");
}

#[tokio::test]
async fn a_minus_30_lufs_voice_is_normalised_to_within_1_lu_of_minus_16_and_passes_the_loudness_gate() {
    let quiet = wav_artifact(&at_loudness(voice(RATE, 4.0), RATE, -30.0), RATE);
    let gate = loudness_gate();
    let before = gate.check(&quiet, &common::gate_ctx("j")).await.unwrap();
    assert!(!before.passed, "the -30 LUFS input fails first: {before:?}");

    let step = LoudnessNormalizeStep::new(
        LoudnessNormalizeSettings {
            target_lufs: -16.0,
            max_true_peak_db: -1.0,
            output: AudioOutput::default(),
        },
        ff(),
    )
    .unwrap();
    let out = step
        .run(&common::inputs("voice", vec![quiet.clone()]), &common::step_ctx("norm"))
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    let l = measured(&out[0]).await;
    assert!((l.integrated_lufs + 16.0).abs() <= 1.0, "{l:?}");
    assert!(l.true_peak_dbtp <= -1.0, "{l:?}");
    let after = gate.check(&out[0], &common::gate_ctx("j")).await.unwrap();
    assert!(after.passed, "{after:?}");
    let p = &out[0].provenance().params;
    assert!((p["measured_lufs"].as_f64().unwrap() + 30.0).abs() < 0.2, "{p}");
    assert_eq!(out[0].provenance().parents, vec![quiet.id().clone()]);
    assert!((out[0].meta().duration_s.unwrap() - 4.0).abs() < 0.01);
}

#[tokio::test]
async fn normalising_a_peaky_signal_limits_the_true_peak_under_the_ceiling() {
    // Short loud clicks on a quiet bed: +14 dB of gain would clip them.
    let mut s = at_loudness(voice(RATE, 3.0), RATE, -30.0);
    for k in 0..6 {
        s[k * 20_000 + 100] = 0.9;
    }
    let a = wav_artifact(&s, RATE);
    let step = LoudnessNormalizeStep::new(
        LoudnessNormalizeSettings {
            target_lufs: -16.0,
            max_true_peak_db: -1.0,
            output: AudioOutput::default(),
        },
        ff(),
    )
    .unwrap();
    let out = step
        .run(&common::inputs("v", vec![a]), &common::step_ctx("norm"))
        .await
        .unwrap();
    assert_eq!(out[0].provenance().params["limited"], true);
    let l = measured(&out[0]).await;
    assert!(l.true_peak_dbtp <= -0.9, "{l:?}");
    assert!((l.integrated_lufs + 16.0).abs() <= 1.0, "{l:?}");
}

#[tokio::test]
async fn the_loudness_gate_fails_a_true_peak_above_the_ceiling_and_says_so() {
    // A square-ish wave at full scale: loud and peaking at 0 dBFS.
    let s: Vec<f32> = sine(RATE, 2.0, 100.0, 1.0)
        .into_iter()
        .map(|x| x.signum() * 0.999)
        .collect();
    let v = LoudnessGate::new(
        LoudnessSettings {
            target_lufs: -5.0,
            tolerance_lu: 10.0,
            max_true_peak_db: -1.0,
        },
        ff(),
    )
    .unwrap()
    .check(&wav_artifact(&s, RATE), &common::gate_ctx("j"))
    .await
    .unwrap();
    assert!(!v.passed);
    assert!(v.reasons.iter().any(|r| r.contains("true peak")), "{v:?}");
}

#[tokio::test]
async fn trim_keeps_the_span_and_fades_both_ends() {
    let a = wav_artifact(&sine(RATE, 4.0, 440.0, 0.5), RATE);
    let probed = ProbeStep::new(ff())
        .run(&common::inputs("a", vec![a]), &common::step_ctx("p"))
        .await
        .unwrap();
    let step = AudioTrimStep::new(
        AudioTrimSettings {
            start_s: 1.0,
            duration_s: Some(1.5),
            fade_in_s: 0.3,
            fade_out_s: 0.3,
            output: AudioOutput::default(),
        },
        ff(),
    )
    .unwrap();
    let out = step
        .run(&common::inputs("a", probed), &common::step_ctx("trim"))
        .await
        .unwrap();
    assert!((duration(&out[0]).await - 1.5).abs() < 0.01);
    // Samples after the 44-byte header: the first and last 10 ms are near silent,
    // the middle is at full level.
    let pcm: Vec<i16> = out[0].data()[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    let peak = |s: &[i16]| s.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
    assert!(peak(&pcm[..480]) < 1000, "fade in: {}", peak(&pcm[..480]));
    assert!(peak(&pcm[pcm.len() - 480..]) < 1000, "fade out");
    assert!(peak(&pcm[pcm.len() / 2..pcm.len() / 2 + 480]) > 15000, "middle");
}

#[tokio::test]
async fn trim_past_the_end_is_an_error_naming_the_input() {
    let a = wav_artifact(&sine(RATE, 1.0, 440.0, 0.5), RATE);
    let probed = ProbeStep::new(ff())
        .run(&common::inputs("a", vec![a]), &common::step_ctx("p"))
        .await
        .unwrap();
    let step = AudioTrimStep::new(
        AudioTrimSettings {
            start_s: 5.0,
            ..Default::default()
        },
        ff(),
    )
    .unwrap();
    let e = step
        .run(&common::inputs("a", probed.clone()), &common::step_ctx("trim"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains(probed[0].id().short()), "{e}");
}

#[tokio::test]
async fn concat_joins_every_input_in_order() {
    let a = wav_artifact(&sine(RATE, 1.0, 300.0, 0.5), RATE);
    let b = wav_artifact(&sine(RATE, 2.0, 600.0, 0.5), 24_000);
    let step = AudioConcatStep::new(
        AudioConcatSettings {
            sample_rate: 48_000,
            channels: 2,
            output: AudioOutput::default(),
        },
        ff(),
    )
    .unwrap();
    let ins = inputs(vec![("a", vec![a.clone()]), ("b", vec![b.clone()])]);
    let out = step.run(&ins, &common::step_ctx("cat")).await.unwrap();
    assert_eq!(out.len(), 1);
    // b was written as 24 kHz: two seconds of samples play as four.
    assert!((duration(&out[0]).await - 5.0).abs() < 0.02);
    assert_eq!(out[0].meta().extra["channels"], 2);
    assert_eq!(out[0].provenance().parents, vec![a.id().clone(), b.id().clone()]);
}

#[tokio::test]
async fn transcode_writes_each_format_with_its_codec() {
    let a = wav_artifact(&voice(RATE, 1.0), RATE);
    for (format, codec, media) in [
        (AudioFormat::Mp3, "mp3", "audio/mpeg"),
        (AudioFormat::Opus, "opus", "audio/ogg"),
        (AudioFormat::Aac, "aac", "audio/mp4"),
        (AudioFormat::Flac, "flac", "audio/flac"),
    ] {
        let step = AudioTranscodeStep::new(
            AudioTranscodeSettings {
                output: AudioOutput {
                    format,
                    bitrate_kbps: Some(64),
                    ..Default::default()
                },
            },
            ff(),
        )
        .unwrap();
        let out = step
            .run(&common::inputs("a", vec![a.clone()]), &common::step_ctx("t"))
            .await
            .unwrap();
        assert_eq!(out[0].media().as_str(), media);
        assert_eq!(out[0].media().kind(), MediaKind::Audio);
        assert_eq!(out[0].meta().extra["audio_codec"], codec, "{format:?}");
    }
}

#[test]
fn out_of_range_settings_name_the_setting() {
    let e = LoudnessNormalizeStep::new(
        LoudnessNormalizeSettings {
            target_lufs: 3.0,
            max_true_peak_db: -1.0,
            output: AudioOutput::default(),
        },
        ff(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("target_lufs"), "{e}");
    let e = AudioTranscodeStep::new(
        AudioTranscodeSettings {
            output: AudioOutput {
                bitrate_kbps: Some(4000),
                ..Default::default()
            },
        },
        ff(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("output.bitrate_kbps"), "{e}");
}

#[tokio::test]
async fn the_silence_gate_fails_a_long_gap_and_passes_continuous_sound() {
    let mut s = sine(RATE, 1.0, 440.0, 0.3);
    s.extend(std::iter::repeat_n(0.0, RATE as usize * 2));
    s.extend(sine(RATE, 1.0, 440.0, 0.3));
    let gate = SilenceGate::new(
        SilenceSettings {
            threshold_db: -50.0,
            max_silence_s: 1.0,
        },
        ff(),
    )
    .unwrap();
    let v = gate
        .check(&wav_artifact(&s, RATE), &common::gate_ctx("j"))
        .await
        .unwrap();
    assert!(!v.passed && v.reasons[0].contains("2.00 s of silence"), "{v:?}");
    let v = gate
        .check(
            &wav_artifact(&sine(RATE, 3.0, 440.0, 0.3), RATE),
            &common::gate_ctx("j"),
        )
        .await
        .unwrap();
    assert!(v.passed, "{v:?}");
}

#[tokio::test]
async fn the_clipping_gate_fails_a_clipped_sine_and_passes_a_clean_one() {
    let gate = ClippingGate::new(
        ClippingSettings {
            max_clipped_share: 0.001,
        },
        ff(),
    )
    .unwrap();
    let clipped: Vec<f32> = sine(RATE, 1.0, 440.0, 2.0)
        .into_iter()
        .map(|x| x.clamp(-1.0, 1.0))
        .collect();
    let v = gate
        .check(&wav_artifact(&clipped, RATE), &common::gate_ctx("j"))
        .await
        .unwrap();
    assert!(!v.passed && v.reasons[0].contains("clipped"), "{v:?}");
    let v = gate
        .check(
            &wav_artifact(&sine(RATE, 1.0, 440.0, 0.8), RATE),
            &common::gate_ctx("j"),
        )
        .await
        .unwrap();
    assert!(v.passed, "{v:?}");
}

#[tokio::test]
async fn the_duration_gate_checks_the_range_on_audio_and_video() {
    let gate = DurationGate::new(
        DurationSettings {
            min_s: Some(1.5),
            max_s: Some(3.0),
        },
        ff(),
    )
    .unwrap();
    let short = wav_artifact(&sine(RATE, 1.0, 440.0, 0.3), RATE);
    let v = gate.check(&short, &common::gate_ctx("j")).await.unwrap();
    assert!(!v.passed && v.reasons[0].contains("below 1.5"), "{v:?}");
    let ok = clip(160, 120, 2.0);
    assert!(gate.check(&ok, &common::gate_ctx("j")).await.unwrap().passed);
    let img = common::png(&common::detailed(8, 8, 1));
    let e = gate.check(&img, &common::gate_ctx("j")).await.unwrap_err();
    assert!(e.message.contains("needs audio or video"), "{e:?}");
}
