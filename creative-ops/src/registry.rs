//! Registration of this crate's step and gate kinds with a spec registry.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use creative_core::registry::{BuildCtx, Registry};
use creative_core::{ConfigError, QualityGate, Step};

use crate::caption::Font;
use crate::error::OpsError;
use crate::gates::{
    CompositeGate, CompositeMode, ConsistencyGate, ConsistencySettings, DedupeGate, DedupeSettings, ExposureGate,
    ExposureSettings, FormatGate, FormatSettings, JudgeGate, JudgeSettings, Named, PaletteGate, PaletteSettings,
    SharpnessGate, SharpnessSettings, TextGate, TextSettings,
};
use crate::raster::Raster;
use crate::steps::{
    ConvertSettings, ConvertStep, CropSettings, CropStep, MetadataSettings, MetadataStep, OverlaySettings, OverlayStep,
    PadSettings, PadStep, ReframeSettings, ReframeStep, RenditionsSettings, RenditionsStep, ResizeSettings, ResizeStep,
    WatermarkSettings, WatermarkStep,
};

/// The step kinds [`register`] adds.
pub const STEP_KINDS: &[&str] = &[
    "audio_concat",
    "audio_transcode",
    "audio_trim",
    "captions",
    "convert",
    "crop",
    "loudness_normalize",
    "metadata",
    "mux",
    "overlay",
    "pad",
    "poster",
    "probe",
    "reframe",
    "renditions",
    "resize",
    "subtitles",
    "video_renditions",
    "video_transcode",
    "video_trim",
    "watermark",
];

/// The gate kinds [`register`] adds.
pub const GATE_KINDS: &[&str] = &[
    "black_frames",
    "clipping",
    "composite",
    "consistency",
    "dedupe",
    "duration",
    "exposure",
    "format",
    "frame_rate",
    "frames",
    "frozen_frames",
    "judge",
    "loudness",
    "palette",
    "resolution",
    "sharpness",
    "silence",
    "text",
];

/// A settings table refused by serde: the field is the one its message names
/// (`unknown field `x``, `missing field `x``), else the table itself.
fn parse<S: DeserializeOwned>(kind: &str, v: &Value) -> Result<S, ConfigError> {
    let v = if v.is_null() {
        Value::Object(Default::default())
    } else {
        v.clone()
    };
    serde_json::from_value(v).map_err(|e| {
        let text = e.to_string();
        let field = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| text.strip_prefix(p))
            .and_then(|rest| rest.split('`').next())
            .unwrap_or("");
        ConfigError::new(field, format!("{kind}: {text}"))
    })
}

/// An ops error refusing a kind's settings: a settings error names its field.
fn msg(kind: &str) -> impl Fn(OpsError) -> ConfigError + '_ {
    move |e| {
        let field = match &e {
            OpsError::Settings { field, .. } => *field,
            _ => "",
        };
        ConfigError::new(field, format!("{kind}: {e}"))
    }
}

fn step<S, T>(reg: &mut Registry, kind: &'static str, build: fn(S, &BuildCtx) -> Result<T, OpsError>)
where
    S: DeserializeOwned + 'static,
    T: Step + 'static,
{
    reg.step(
        kind,
        Arc::new(move |v: &Value, ctx: &BuildCtx| {
            let s: S = parse(kind, v)?;
            let built = build(s, ctx).map_err(msg(kind))?;
            Ok(Arc::new(built) as Arc<dyn Step>)
        }),
    );
}

fn gate<S, T>(reg: &mut Registry, kind: &'static str, build: fn(S, &BuildCtx) -> Result<T, OpsError>)
where
    S: DeserializeOwned + 'static,
    T: QualityGate + 'static,
{
    reg.gate(
        kind,
        Arc::new(move |v: &Value, ctx: &BuildCtx| {
            let s: S = parse(kind, v)?;
            let built = build(s, ctx).map_err(msg(kind))?;
            Ok(Arc::new(built) as Arc<dyn QualityGate>)
        }),
    );
}

fn load_image(ctx: &BuildCtx, field: &'static str, path: &str) -> Result<Raster, OpsError> {
    let p = ctx.resolve(path);
    let bytes = std::fs::read(&p).map_err(|e| OpsError::File {
        path: p.display().to_string(),
        message: format!("{e} (setting `{field}`)"),
    })?;
    Ok(Raster::decode(&bytes, &p.display().to_string())?.0)
}

/// Register every step and gate kind of this crate.
///
/// Steps: `resize` ([`ResizeSettings`]), `crop` ([`CropSettings`]), `reframe`
/// ([`ReframeSettings`]), `renditions` ([`RenditionsSettings`]), `pad`
/// ([`PadSettings`]), `convert` ([`ConvertSettings`]), `overlay`
/// ([`OverlaySettings`]), `watermark` ([`WatermarkSettings`]), `metadata`
/// ([`MetadataSettings`]).
///
/// Gates: `format` ([`FormatSettings`]), `sharpness` ([`SharpnessSettings`]),
/// `exposure` ([`ExposureSettings`]), `palette` ([`PaletteSettings`]), `dedupe`
/// ([`DedupeSettings`]), `consistency` ([`ConsistencySettings`]), `text`
/// ([`TextSettings`]), `judge` ([`JudgeSettings`]), `composite` (see
/// [`CompositeGate`]).
///
/// Audio and video kinds (see [`crate::media`]) find ffmpeg when built, so a
/// spec using one fails to build, naming the missing tool, before any job runs.
/// `frames` runs image gate kinds (looked up as for `composite`) on sampled
/// video frames.
///
/// Every settings struct rejects unknown fields, and every error names the kind
/// and the setting. Relative paths (`font`, `path`, `reference`, `schema_path`)
/// are resolved against [`BuildCtx::base_dir`]; files are read when the spec is
/// built, so a missing file fails before any job runs.
///
/// A `composite` gate's members are entries of its `gates` list, each with a
/// `kind`, an optional `name` and `weight` (default 1), and that kind's
/// settings. Member kinds are looked up in the registry as it stood when
/// `register` was called (plus `composite` itself, so composites nest): register
/// a host's own gate kinds before calling this to use them as members.
///
/// ```
/// let mut reg = creative_core::registry::Registry::new();
/// creative_ops::register(&mut reg);
/// assert!(reg.step_kinds().any(|k| k == "reframe"));
/// assert!(reg.gate_kinds().any(|k| k == "judge"));
/// let f = reg.step_factory("resize").unwrap();
/// let e = f(&serde_json::json!({ "widht": 10 }), &Default::default()).err().unwrap();
/// assert_eq!(e.field(), "widht");
/// assert!(e.reason().contains("unknown field `widht`"), "{e}");
/// ```
pub fn register(reg: &mut Registry) {
    step(reg, "resize", |s: ResizeSettings, _| ResizeStep::new(s));
    step(reg, "crop", |s: CropSettings, _| CropStep::new(s));
    step(reg, "reframe", |s: ReframeSettings, _| ReframeStep::new(s));
    step(reg, "renditions", |s: RenditionsSettings, _| RenditionsStep::new(s));
    step(reg, "pad", |s: PadSettings, _| PadStep::new(s));
    step(reg, "convert", |s: ConvertSettings, _| ConvertStep::new(s));
    step(reg, "overlay", |s: OverlaySettings, ctx| {
        let font = match &s.font {
            Some(p) => Some(Font::from_file(&ctx.resolve(p))?),
            None => None,
        };
        OverlayStep::new(s, font)
    });
    step(reg, "watermark", |s: WatermarkSettings, ctx| {
        let logo = match &s.path {
            Some(p) => Some(load_image(ctx, "path", p)?),
            None => None,
        };
        WatermarkStep::new(s, logo)
    });
    step(reg, "metadata", |s: MetadataSettings, _| Ok(MetadataStep::new(s)));

    gate(reg, "format", |s: FormatSettings, _| FormatGate::new(s));
    gate(reg, "sharpness", |s: SharpnessSettings, _| SharpnessGate::new(s));
    gate(reg, "exposure", |s: ExposureSettings, _| ExposureGate::new(s));
    gate(reg, "palette", |s: PaletteSettings, _| PaletteGate::new(s));
    gate(reg, "dedupe", |s: DedupeSettings, _| DedupeGate::new(s));
    gate(reg, "consistency", |s: ConsistencySettings, ctx| {
        let reference = load_image(ctx, "reference", &s.reference)?;
        ConsistencyGate::new(&reference, s.max_distance, s.hash)
    });
    gate(reg, "text", |mut s: TextSettings, ctx| {
        if let Some(p) = &s.schema_path {
            if s.json_schema.is_some() {
                return Err(OpsError::settings(
                    "schema_path",
                    "give `json_schema` or `schema_path`, not both",
                ));
            }
            let path = ctx.resolve(p);
            let file = |message: String| OpsError::File {
                path: path.display().to_string(),
                message,
            };
            let text = std::fs::read_to_string(&path).map_err(|e| file(e.to_string()))?;
            s.json_schema = Some(serde_json::from_str(&text).map_err(|e| file(format!("not JSON: {e}")))?);
        }
        TextGate::new(s)
    });
    gate(reg, "judge", |s: JudgeSettings, ctx| {
        let provider = ctx.providers.get(&s.provider).cloned().ok_or_else(|| {
            let known: Vec<&str> = ctx.providers.keys().map(String::as_str).collect();
            OpsError::settings(
                "provider",
                format!("no provider `{}`; the spec declares [{}]", s.provider, known.join(", ")),
            )
        })?;
        JudgeGate::new(s, provider)
    });

    register_media(reg);

    let snapshot = Arc::new(reg.clone());
    let frames_snapshot = snapshot.clone();
    reg.gate(
        "composite",
        Arc::new(move |v: &Value, ctx: &BuildCtx| build_composite(v, ctx, &snapshot)),
    );
    reg.gate(
        "frames",
        Arc::new(move |v: &Value, ctx: &BuildCtx| build_frames(v, ctx, &frames_snapshot)),
    );
}

/// The audio and video kinds: each finds ffmpeg when built, so a spec that
/// uses one fails to build, naming the missing tool, before any job runs.
fn register_media(reg: &mut Registry) {
    use crate::media::{self, audio, gates as mg, video};
    step(reg, "probe", |_: media::ProbeSettings, _| {
        Ok(media::ProbeStep::new(media::tool()?))
    });
    step(reg, "loudness_normalize", |s: audio::LoudnessNormalizeSettings, _| {
        audio::LoudnessNormalizeStep::new(s, media::tool()?)
    });
    step(reg, "audio_transcode", |s: audio::AudioTranscodeSettings, _| {
        audio::AudioTranscodeStep::new(s, media::tool()?)
    });
    step(reg, "audio_trim", |s: audio::AudioTrimSettings, _| {
        audio::AudioTrimStep::new(s, media::tool()?)
    });
    step(reg, "audio_concat", |s: audio::AudioConcatSettings, _| {
        audio::AudioConcatStep::new(s, media::tool()?)
    });
    step(reg, "video_transcode", |s: video::VideoTranscodeSettings, _| {
        video::VideoTranscodeStep::new(s, media::tool()?)
    });
    step(reg, "video_renditions", |s: video::VideoRenditionsSettings, _| {
        video::VideoRenditionsStep::new(s, media::tool()?)
    });
    step(reg, "video_trim", |s: video::VideoTrimSettings, _| {
        video::VideoTrimStep::new(s, media::tool()?)
    });
    step(reg, "poster", |s: video::PosterSettings, _| {
        video::PosterStep::new(s, media::tool()?)
    });
    step(reg, "captions", |s: video::CaptionsSettings, ctx| {
        let font = match &s.font {
            Some(p) => Some(Font::from_file(&ctx.resolve(p))?),
            None => None,
        };
        video::CaptionsStep::new(s, font, media::tool()?)
    });
    step(reg, "subtitles", |s: video::SubtitlesSettings, _| {
        video::SubtitlesStep::new(s, media::tool()?)
    });
    step(reg, "mux", |s: video::MuxSettings, _| {
        video::MuxStep::new(s, media::tool()?)
    });

    gate(reg, "duration", |s: mg::DurationSettings, _| {
        mg::DurationGate::new(s, media::tool()?)
    });
    gate(reg, "loudness", |s: mg::LoudnessSettings, _| {
        mg::LoudnessGate::new(s, media::tool()?)
    });
    gate(reg, "silence", |s: mg::SilenceSettings, _| {
        mg::SilenceGate::new(s, media::tool()?)
    });
    gate(reg, "clipping", |s: mg::ClippingSettings, _| {
        mg::ClippingGate::new(s, media::tool()?)
    });
    gate(reg, "resolution", |s: mg::ResolutionSettings, _| {
        mg::ResolutionGate::new(s, media::tool()?)
    });
    gate(reg, "frame_rate", |s: mg::FrameRateSettings, _| {
        mg::FrameRateGate::new(s, media::tool()?)
    });
    gate(reg, "black_frames", |s: mg::BlackFramesSettings, _| {
        mg::BlackFramesGate::new(s, media::tool()?)
    });
    gate(reg, "frozen_frames", |s: mg::FrozenFramesSettings, _| {
        mg::FrozenFramesGate::new(s, media::tool()?)
    });
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FramesSettings {
    #[serde(default = "five")]
    samples: u32,
    gates: Vec<serde_json::Map<String, Value>>,
}

fn five() -> u32 {
    5
}

/// The `frames` gate: image gates (any registered kind) on sampled frames.
fn build_frames(v: &Value, ctx: &BuildCtx, reg: &Registry) -> Result<Arc<dyn QualityGate>, ConfigError> {
    let s: FramesSettings = parse("frames", v)?;
    let mut members = Vec::with_capacity(s.gates.len());
    for (i, mut entry) in s.gates.into_iter().enumerate() {
        let at = |m: String| ConfigError::new(format!("gates[{i}]"), format!("frames: gates[{i}]: {m}"));
        let inner = |e: ConfigError| {
            ConfigError::new(e.field(), format!("frames: gates[{i}]: {}", e.reason())).at(&format!("gates[{i}]"))
        };
        let kind = match entry.remove("kind") {
            Some(Value::String(k)) => k,
            _ => return Err(at("needs a `kind` string".into())),
        };
        let f = reg.gate_factory(&kind).ok_or_else(|| {
            let kinds: Vec<&str> = reg.gate_kinds().collect();
            at(format!("unknown gate kind `{kind}`; kinds: {}", kinds.join(", ")))
        })?;
        let gate = f(&Value::Object(entry), ctx).map_err(inner)?;
        if !gate
            .accepts()
            .is_some_and(|k| k.contains(&creative_core::MediaKind::Image))
        {
            return Err(at(format!("`{kind}` does not judge images")));
        }
        members.push(gate);
    }
    let ff = crate::media::tool().map_err(msg("frames"))?;
    Ok(Arc::new(
        crate::media::gates::FramesGate::new(s.samples, members, ff).map_err(msg("frames"))?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompositeSettings {
    #[serde(default)]
    mode: CompositeMode,
    #[serde(default = "half")]
    min_score: f64,
    gates: Vec<serde_json::Map<String, Value>>,
}

fn half() -> f64 {
    0.5
}

fn build_composite(v: &Value, ctx: &BuildCtx, reg: &Registry) -> Result<Arc<dyn QualityGate>, ConfigError> {
    let s: CompositeSettings = parse("composite", v)?;
    let mut members = Vec::with_capacity(s.gates.len());
    for (i, entry) in s.gates.into_iter().enumerate() {
        let mut entry = entry;
        let at = |m: String| ConfigError::new(format!("gates[{i}]"), format!("composite: gates[{i}]: {m}"));
        let inner = |e: ConfigError| {
            ConfigError::new(e.field(), format!("composite: gates[{i}]: {}", e.reason())).at(&format!("gates[{i}]"))
        };
        let kind = match entry.remove("kind") {
            Some(Value::String(k)) => k,
            _ => return Err(at("needs a `kind` string".into())),
        };
        let name = match entry.remove("name") {
            None => None,
            Some(Value::String(n)) => Some(n),
            Some(_) => return Err(at("`name` must be a string".into())),
        };
        let weight = match entry.remove("weight") {
            None => 1.0,
            Some(w) => w.as_f64().ok_or_else(|| at("`weight` must be a number".into()))?,
        };
        let settings = Value::Object(entry);
        let gate = if kind == "composite" {
            build_composite(&settings, ctx, reg).map_err(inner)?
        } else {
            let f = reg.gate_factory(&kind).ok_or_else(|| {
                let kinds: Vec<&str> = reg.gate_kinds().chain(["composite"]).collect();
                at(format!("unknown gate kind `{kind}`; kinds: {}", kinds.join(", ")))
            })?;
            f(&settings, ctx).map_err(inner)?
        };
        let gate: Arc<dyn QualityGate> = match name {
            Some(n) => Arc::new(Named::new(n, gate)),
            None => gate,
        };
        members.push((gate, weight));
    }
    Ok(Arc::new(
        CompositeGate::new(s.mode, s.min_score, members).map_err(msg("composite"))?,
    ))
}
