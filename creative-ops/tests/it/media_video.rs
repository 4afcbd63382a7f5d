//! The video steps and gates, on clips made in each test with ffmpeg's lavfi
//! sources.

use crate::common;
use crate::media_common;

use std::sync::Arc;

use creative_core::{Artifact, MediaKind, QualityGate, Step};
use creative_ops::gates::{SharpnessGate, SharpnessSettings};
use creative_ops::media::gates::{
    BlackFramesGate, BlackFramesSettings, FrameRateGate, FrameRateSettings, FramesGate, FrozenFramesGate,
    FrozenFramesSettings, ResolutionGate, ResolutionSettings,
};
use creative_ops::media::video::{
    CaptionsSettings, CaptionsStep, MuxSettings, MuxStep, PosterSettings, PosterStep, Sampling, SubtitleFormat,
    SubtitlesSettings, SubtitlesStep, VideoCodec, VideoOutput, VideoRenditionsSettings, VideoRenditionsStep,
    VideoTranscodeSettings, VideoTranscodeStep, VideoTrimSettings, VideoTrimStep,
};
use creative_ops::steps::RenditionSpec;
use creative_ops::{Attention, Raster};
use media_common::*;

fn fast() -> VideoOutput {
    VideoOutput {
        preset: "ultrafast".into(),
        ..VideoOutput::default()
    }
}

/// Frame at `t` seconds, decoded by ffmpeg to PNG.
fn frame(a: &Artifact, t: f32) -> Raster {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(format!("v.{}", a.media().extension()));
    std::fs::write(&p, a.data()).unwrap();
    let png = ffmpeg_make(
        &["-ss", &t.to_string(), "-i", p.to_str().unwrap(), "-frames:v", "1"],
        "png",
    );
    Raster::decode(&png, "frame").unwrap().0
}

fn ctx() -> creative_core::GateCtx {
    common::gate_ctx("j")
}

#[tokio::test]
async fn transcode_writes_vp9_opus_webm_and_h264_aac_mp4_at_a_quality() {
    let src = clip(320, 240, 1.0);
    let mut sizes = Vec::new();
    for (codec, quality, media, v, a) in [
        (VideoCodec::Vp9, 60, "video/webm", "vp9", "opus"),
        (VideoCodec::H264, 30, "video/mp4", "h264", "aac"),
        (VideoCodec::H264, 95, "video/mp4", "h264", "aac"),
    ] {
        let step = VideoTranscodeStep::new(
            VideoTranscodeSettings {
                width: Some(160),
                output: VideoOutput {
                    codec,
                    quality,
                    preset: "ultrafast".into(),
                    audio_bitrate_kbps: None,
                },
                ..Default::default()
            },
            ff(),
        )
        .unwrap();
        let out = step
            .run(&common::inputs("c", vec![src.clone()]), &common::step_ctx("t"))
            .await
            .unwrap();
        let m = out[0].meta();
        assert_eq!(out[0].media().as_str(), media);
        assert_eq!((m.width, m.height), (Some(160), Some(120)));
        assert_eq!(
            (m.extra["video_codec"].as_str(), m.extra["audio_codec"].as_str()),
            (Some(v), Some(a))
        );
        sizes.push(out[0].data().len());
    }
    assert!(sizes[2] > sizes[1], "higher quality, more bytes: {sizes:?}");
}

#[tokio::test]
async fn renditions_cut_every_aspect_from_one_decode_and_keep_an_off_centre_subject_in_frame() {
    // Detail (a moving test pattern) on the left of a flat grey frame.
    let src = clip_from_graph(
        "color=c=gray:s=640x360:r=24:d=2[bg];testsrc2=s=160x360:r=24:d=2[fg];[bg][fg]overlay=x=20:y=0[v]",
        2.0,
    );
    let step = VideoRenditionsStep::new(
        VideoRenditionsSettings {
            renditions: vec![
                RenditionSpec {
                    name: Some("story".into()),
                    aspect: "9:16".parse().unwrap(),
                    width: Some(180),
                    height: None,
                },
                RenditionSpec {
                    name: None,
                    aspect: "1:1".parse().unwrap(),
                    width: Some(200),
                    height: None,
                },
                RenditionSpec {
                    name: None,
                    aspect: "16:9".parse().unwrap(),
                    width: Some(320),
                    height: None,
                },
            ],
            attention: Attention::Entropy,
            samples: 3,
            sampling: Sampling::Keyframes,
            output: fast(),
        },
        ff(),
    )
    .unwrap();
    let out = step
        .run(&common::inputs("c", vec![src.clone()]), &common::step_ctx("cuts"))
        .await
        .unwrap();
    let got: Vec<(Option<u32>, Option<u32>, &str)> = out
        .iter()
        .map(|a| {
            (
                a.meta().width,
                a.meta().height,
                a.meta().extra["rendition"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(180), Some(320), "story"),
            (Some(200), Some(200), "1x1"),
            (Some(320), Some(180), "16x9")
        ]
    );
    let crop = &out[0].provenance().params["crop"];
    let (x, w) = (crop["x"].as_u64().unwrap(), crop["width"].as_u64().unwrap());
    assert!(
        x <= 20 && x + w >= 180,
        "the 9:16 window holds the subject at x 20..180: {crop}"
    );
    for a in &out {
        assert!(a.meta().extra.contains_key("audio_codec"), "audio is kept");
        assert_eq!(a.provenance().parents, vec![src.id().clone()]);
    }
    let gate = ResolutionGate::new(
        ResolutionSettings {
            aspect: Some("9:16".parse().unwrap()),
            min_width: Some(180),
            ..Default::default()
        },
        ff(),
    )
    .unwrap();
    assert!(gate.check(&out[0], &ctx()).await.unwrap().passed);
    let v = gate.check(&out[1], &ctx()).await.unwrap();
    assert!(!v.passed && v.reasons[0].contains("is not 9:16"), "{v:?}");
}

/// A 2 s clip of 24 fps with a keyframe every `gop` frames.
fn clip_with_gop(gop: u32) -> Artifact {
    let g = gop.to_string();
    let bytes = ffmpeg_make(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=24:duration=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            &g,
            "-pix_fmt",
            "yuv420p",
        ],
        "mp4",
    );
    Artifact::new(creative_core::MediaType::Mp4, bytes)
}

async fn samples_measured(src: &Artifact, samples: u32, sampling: Sampling) -> u64 {
    let step = VideoRenditionsStep::new(
        VideoRenditionsSettings {
            renditions: vec![RenditionSpec {
                name: None,
                aspect: "1:1".parse().unwrap(),
                width: Some(90),
                height: None,
            }],
            attention: Attention::Entropy,
            samples,
            sampling,
            output: fast(),
        },
        ff(),
    )
    .unwrap();
    let out = step
        .run(&common::inputs("c", vec![src.clone()]), &common::step_ctx("cuts"))
        .await
        .unwrap();
    out[0].provenance().params["samples"].as_u64().unwrap()
}

#[tokio::test]
async fn keyframe_sampling_measures_up_to_samples_keyframes_and_records_how_many() {
    // Keyframes at 0, 0.5, 1 and 1.5 s: three even times (0, 0.67, 1.33 s)
    // each find one, all four are more than three asked for.
    let every_half_second = clip_with_gop(12);
    assert_eq!(samples_measured(&every_half_second, 3, Sampling::Keyframes).await, 3);
    assert_eq!(samples_measured(&every_half_second, 8, Sampling::Keyframes).await, 4);
    // One keyframe in the clip: attention sees that one, and says so.
    let one_keyframe = clip_with_gop(250);
    assert_eq!(samples_measured(&one_keyframe, 3, Sampling::Keyframes).await, 1);
    // Even sampling decodes the clip and measures as many frames as asked.
    assert_eq!(samples_measured(&one_keyframe, 3, Sampling::Even).await, 3);
}

#[tokio::test]
async fn trim_keeps_the_asked_span() {
    let src = clip(160, 120, 3.0);
    let step = VideoTrimStep::new(
        VideoTrimSettings {
            start_s: 0.5,
            duration_s: Some(1.0),
            output: fast(),
        },
        ff(),
    )
    .unwrap();
    let out = step
        .run(&common::inputs("c", vec![src]), &common::step_ctx("trim"))
        .await
        .unwrap();
    assert!(
        (out[0].meta().duration_s.unwrap() - 1.0).abs() < 0.1,
        "{:?}",
        out[0].meta()
    );
}

#[tokio::test]
async fn the_poster_is_an_image_of_the_frame_at_the_asked_time() {
    let src = clip(320, 240, 2.0);
    let step = PosterStep::new(
        PosterSettings {
            at_s: Some(1.0),
            ..Default::default()
        },
        ff(),
    )
    .unwrap();
    let out = step
        .run(&common::inputs("c", vec![src.clone()]), &common::step_ctx("poster"))
        .await
        .unwrap();
    assert_eq!(out[0].media().kind(), MediaKind::Image);
    let img = common::decode(&out[0]);
    assert_eq!((img.width(), img.height()), (320, 240));
    // testsrc2 moves: the poster matches the frame at 1 s, not the first one.
    let diff = |a: &Raster, b: &Raster| {
        a.luma()
            .iter()
            .zip(b.luma())
            .map(|(x, y)| f64::from(x.abs_diff(y)))
            .sum::<f64>()
            / a.luma().len() as f64
    };
    assert!(diff(&img, &frame(&src, 1.0)) < diff(&img, &frame(&src, 0.0)));
}

fn script() -> Artifact {
    Artifact::text_plain("Meet the new mug. It keeps coffee hot for hours.")
}

#[tokio::test]
async fn captions_burn_the_script_into_the_lower_band_one_cue_at_a_time() {
    let src = clip_from_graph("color=c=0x336699:s=320x240:r=24:d=2[v]", 2.0);
    let step = CaptionsStep::new(
        serde_json::from_value::<CaptionsSettings>(serde_json::json!({ "output": { "preset": "ultrafast" } })).unwrap(),
        None,
        ff(),
    )
    .unwrap();
    let ins = inputs(vec![("clip", vec![src.clone()]), ("script", vec![script()])]);
    let out = step.run(&ins, &common::step_ctx("captioned")).await.unwrap();
    assert_eq!(out.len(), 1);
    let cues = out[0].provenance().params["cues"].as_array().unwrap().clone();
    assert_eq!(cues.len(), 2, "{cues:?}");
    assert_eq!(cues[0]["text"], "Meet the new mug.");
    let band = |r: &Raster, top: bool| -> f64 {
        let l = r.luma();
        let (w, h) = (r.width() as usize, r.height() as usize);
        let rows = if top { 0..h / 2 } else { h * 4 / 5..h * 9 / 10 };
        let v: Vec<u8> = rows.flat_map(|y| l[y * w..(y + 1) * w].to_vec()).collect();
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / v.len() as f64
    };
    for t in [0.3f32, 1.6] {
        let f = frame(&out[0], t);
        assert!(band(&f, false) > 100.0, "text in the lower band at {t} s");
        assert!(band(&f, true) < 5.0, "the upper half stays flat at {t} s");
    }
    // The two cues show different text.
    let (a, b) = (frame(&out[0], 0.3).luma(), frame(&out[0], 1.6).luma());
    assert!(a.iter().zip(&b).filter(|(x, y)| x.abs_diff(**y) > 40).count() > 100);
    assert_eq!(out[0].provenance().parents.len(), 2);
}

#[tokio::test]
async fn subtitles_time_the_same_cues_over_the_voice_as_srt_and_webvtt() {
    let voice = wav_artifact(&voice(48_000, 4.0), 48_000);
    let step = SubtitlesStep::new(
        SubtitlesSettings {
            formats: vec![SubtitleFormat::Srt, SubtitleFormat::Vtt],
            max_chars: 60,
            duration_s: None,
        },
        ff(),
    )
    .unwrap();
    let ins = inputs(vec![("script", vec![script()]), ("voice", vec![voice])]);
    let out = step.run(&ins, &common::step_ctx("subs")).await.unwrap();
    let srt = std::str::from_utf8(out[0].data()).unwrap();
    let vtt = std::str::from_utf8(out[1].data()).unwrap();
    assert_eq!(out[0].media().as_str(), "application/x-subrip");
    assert_eq!(out[1].media().as_str(), "text/vtt");
    // 17 of the cues' 47 characters, of 4 s: the first cue ends at 1.447 s.
    assert!(
        srt.starts_with("1\n00:00:00,000 --> 00:00:01,447\nMeet the new mug.\n\n2\n"),
        "{srt}"
    );
    assert!(
        srt.contains("--> 00:00:04,000\nIt keeps coffee hot for hours."),
        "{srt}"
    );
    assert!(
        vtt.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:01.447\nMeet the new mug.\n"),
        "{vtt}"
    );
}

#[tokio::test]
async fn mux_puts_the_voice_on_the_video_and_keeps_the_video_length() {
    let silent = Artifact::new(
        creative_core::MediaType::Mp4,
        ffmpeg_make(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=s=160x120:r=24:d=2",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ],
            "mp4",
        ),
    );
    let before = ff().probe(&silent, &Default::default()).await.unwrap();
    assert!(!before.has_audio());
    let voice = wav_artifact(&voice(48_000, 1.0), 48_000);
    let ins = inputs(vec![("clip", vec![silent.clone()]), ("voice", vec![voice.clone()])]);
    let out = MuxStep::new(MuxSettings::default(), ff())
        .unwrap()
        .run(&ins, &common::step_ctx("mux"))
        .await
        .unwrap();
    let m = out[0].meta();
    assert_eq!(m.extra["audio_codec"], "aac");
    assert_eq!(m.extra["video_codec"], "h264");
    assert!((m.duration_s.unwrap() - 2.0).abs() < 0.1, "{m:?}");
    assert_eq!(
        out[0].provenance().parents,
        vec![silent.id().clone(), voice.id().clone()]
    );
}

fn black_gate() -> BlackFramesGate {
    BlackFramesGate::new(
        BlackFramesSettings {
            max_black_s: 0.5,
            luma_threshold: 32,
            pixel_share: 0.98,
        },
        ff(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_clip_with_a_black_second_fails_the_black_frame_gate() {
    let black = clip_from_graph(
        "testsrc2=s=160x120:r=24:d=1[a];color=c=black:s=160x120:r=24:d=1[b];testsrc2=s=160x120:r=24:d=1[c];\
         [a][b][c]concat=n=3:v=1:a=0[v]",
        3.0,
    );
    let v = black_gate().check(&black, &ctx()).await.unwrap();
    assert!(!v.passed, "{v:?}");
    assert!(v.reasons[0].starts_with("1.0 s of black frames"), "{v:?}");
    let v = black_gate().check(&clip(160, 120, 3.0), &ctx()).await.unwrap();
    assert!(v.passed, "{v:?}");
}

#[tokio::test]
async fn a_picture_that_stands_still_fails_the_frozen_frame_gate() {
    let gate = FrozenFramesGate::new(
        FrozenFramesSettings {
            max_frozen_s: 1.0,
            max_change: 0.5,
        },
        ff(),
    )
    .unwrap();
    let frozen = clip_from_graph(
        "testsrc2=s=160x120:r=24:d=1,tpad=stop_mode=clone:stop_duration=2[v]",
        3.0,
    );
    let v = gate.check(&frozen, &ctx()).await.unwrap();
    // Two seconds held, sampled 10 a second: 19 or 20 unchanged steps.
    assert!(
        !v.passed && (v.reasons[0].contains("frozen for 1.9 s") || v.reasons[0].contains("frozen for 2.0 s")),
        "{v:?}"
    );
    assert!(gate.check(&clip(160, 120, 3.0), &ctx()).await.unwrap().passed);
}

#[tokio::test]
async fn the_frame_rate_gate_reads_the_stream_rate() {
    let gate = FrameRateGate::new(
        FrameRateSettings {
            min_fps: Some(25.0),
            max_fps: None,
        },
        ff(),
    )
    .unwrap();
    let v = gate.check(&clip(160, 120, 1.0), &ctx()).await.unwrap();
    assert!(!v.passed && v.reasons[0].contains("24.000 fps is below 25"), "{v:?}");
}

#[tokio::test]
async fn image_gates_judge_sampled_frames_and_name_the_frame_time() {
    let sharp: Arc<dyn QualityGate> = Arc::new(SharpnessGate::new(SharpnessSettings { min_variance: 50.0 }).unwrap());
    let gate = FramesGate::new(3, vec![sharp], ff()).unwrap();
    assert!(gate.check(&clip(320, 240, 1.5), &ctx()).await.unwrap().passed);
    let flat = clip_from_graph("color=c=gray:s=320x240:r=24:d=1.5[v]", 1.5);
    let v = gate.check(&flat, &ctx()).await.unwrap();
    assert!(!v.passed, "{v:?}");
    assert_eq!(v.reasons.len(), 3);
    assert!(v.reasons[0].starts_with("frame at 0.00 s: sharpness: "), "{v:?}");
    assert!(v.reasons[1].starts_with("frame at 0.50 s: sharpness: "), "{v:?}");
}

#[test]
fn a_bad_preset_or_quality_is_an_error_naming_the_setting() {
    let e = VideoTranscodeStep::new(
        VideoTranscodeSettings {
            output: VideoOutput {
                preset: "warp".into(),
                ..VideoOutput::default()
            },
            ..Default::default()
        },
        ff(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("output.preset"), "{e}");
    let e = VideoTranscodeStep::new(
        VideoTranscodeSettings {
            output: VideoOutput {
                quality: 0,
                ..VideoOutput::default()
            },
            ..Default::default()
        },
        ff(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("output.quality"), "{e}");
}

/// The facts a step records from an MP4's header are ffprobe's.
async fn header_agrees_with_ffprobe(a: &Artifact) {
    let header = creative_ops::media::MediaInfo::from_mp4_header(a.data()).expect("an MP4 header it reads");
    let probed = ff().probe(a, &Default::default()).await.unwrap();
    let near = |x: Option<f64>, y: Option<f64>, tol: f64| match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() <= tol,
        (x, y) => x == y,
    };
    assert!(
        near(header.duration_s, probed.duration_s, 0.0015) && near(header.fps, probed.fps, 0.01),
        "header {header:?}\nffprobe {probed:?}"
    );
    let facts = |i: &creative_ops::media::MediaInfo| {
        (
            i.container.clone(),
            i.width,
            i.height,
            i.video_codec.clone(),
            i.audio_codec.clone(),
            i.sample_rate,
            i.channels,
        )
    };
    assert_eq!(facts(&header), facts(&probed));
    // And that is what the step recorded.
    let m = a.meta();
    assert_eq!(
        (m.width, m.height, m.duration_s),
        (header.width, header.height, header.duration_s)
    );
}

#[tokio::test]
async fn every_mp4_a_video_step_writes_records_the_facts_ffprobe_reads_from_it() {
    let src = clip_from_graph("testsrc2=size=320x240:rate=25:duration=2[v]", 2.0);
    let ctx = common::step_ctx("s");
    let mut outputs = Vec::new();
    let transcode = VideoTranscodeStep::new(
        VideoTranscodeSettings {
            width: Some(160),
            fps: Some(30.0),
            output: fast(),
            ..Default::default()
        },
        ff(),
    )
    .unwrap();
    outputs.extend(
        transcode
            .run(&common::inputs("c", vec![src.clone()]), &ctx)
            .await
            .unwrap(),
    );
    let trim = VideoTrimStep::new(
        VideoTrimSettings {
            start_s: 0.3,
            duration_s: Some(1.1),
            output: fast(),
        },
        ff(),
    )
    .unwrap();
    outputs.extend(trim.run(&common::inputs("c", vec![src.clone()]), &ctx).await.unwrap());
    let renditions = VideoRenditionsStep::new(
        VideoRenditionsSettings {
            renditions: vec![
                RenditionSpec {
                    name: None,
                    aspect: "9:16".parse().unwrap(),
                    width: Some(90),
                    height: None,
                },
                RenditionSpec {
                    name: None,
                    aspect: "1:1".parse().unwrap(),
                    width: Some(120),
                    height: None,
                },
            ],
            attention: Attention::Entropy,
            samples: 3,
            sampling: Sampling::Keyframes,
            output: fast(),
        },
        ff(),
    )
    .unwrap();
    outputs.extend(
        renditions
            .run(&common::inputs("c", vec![src.clone()]), &ctx)
            .await
            .unwrap(),
    );
    let voice = wav_artifact(&voice(44_100, 1.5), 44_100);
    let mux = MuxStep::new(MuxSettings::default(), ff()).unwrap();
    outputs.extend(
        mux.run(
            &media_common::inputs(vec![("v", vec![src.clone()]), ("a", vec![voice])]),
            &ctx,
        )
        .await
        .unwrap(),
    );
    assert_eq!(outputs.len(), 5);
    for a in &outputs {
        header_agrees_with_ffprobe(a).await;
    }
    // What it cannot read with certainty, it leaves to ffprobe.
    let webm = transcode_vp9(&src).await;
    assert!(creative_ops::media::MediaInfo::from_mp4_header(webm.data()).is_none());
    assert!(creative_ops::media::MediaInfo::from_mp4_header(b"\0\0\0\x08moov").is_none());
}

async fn transcode_vp9(src: &Artifact) -> Artifact {
    let step = VideoTranscodeStep::new(
        VideoTranscodeSettings {
            width: Some(96),
            output: VideoOutput {
                codec: VideoCodec::Vp9,
                preset: "ultrafast".into(),
                ..VideoOutput::default()
            },
            ..Default::default()
        },
        ff(),
    )
    .unwrap();
    let out = step
        .run(&common::inputs("c", vec![src.clone()]), &common::step_ctx("w"))
        .await
        .unwrap();
    assert_eq!(out[0].meta().width, Some(96), "ffprobe recorded the WebM's facts");
    out[0].clone()
}
