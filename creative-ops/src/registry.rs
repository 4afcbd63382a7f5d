//! Registration of this crate's step and gate kinds with a spec registry.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use creative_core::registry::{BuildCtx, Registry};
use creative_core::{QualityGate, Step};

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
    "convert",
    "crop",
    "metadata",
    "overlay",
    "pad",
    "reframe",
    "renditions",
    "resize",
    "watermark",
];

/// The gate kinds [`register`] adds.
pub const GATE_KINDS: &[&str] = &[
    "composite",
    "consistency",
    "dedupe",
    "exposure",
    "format",
    "judge",
    "palette",
    "sharpness",
    "text",
];

fn parse<S: DeserializeOwned>(kind: &str, v: &Value) -> Result<S, String> {
    let v = if v.is_null() {
        Value::Object(Default::default())
    } else {
        v.clone()
    };
    serde_json::from_value(v).map_err(|e| format!("{kind}: {e}"))
}

fn msg(kind: &str) -> impl Fn(OpsError) -> String + '_ {
    move |e| format!("{kind}: {e}")
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
/// assert!(e.contains("unknown field `widht`"), "{e}");
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

    let snapshot = Arc::new(reg.clone());
    reg.gate(
        "composite",
        Arc::new(move |v: &Value, ctx: &BuildCtx| build_composite(v, ctx, &snapshot)),
    );
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

fn build_composite(v: &Value, ctx: &BuildCtx, reg: &Registry) -> Result<Arc<dyn QualityGate>, String> {
    let s: CompositeSettings = parse("composite", v)?;
    let mut members = Vec::with_capacity(s.gates.len());
    for (i, entry) in s.gates.into_iter().enumerate() {
        let mut entry = entry;
        let at = |m: String| format!("composite: gates[{i}]: {m}");
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
            build_composite(&settings, ctx, reg).map_err(at)?
        } else {
            let f = reg.gate_factory(&kind).ok_or_else(|| {
                let kinds: Vec<&str> = reg.gate_kinds().chain(["composite"]).collect();
                at(format!("unknown gate kind `{kind}`; kinds: {}", kinds.join(", ")))
            })?;
            f(&settings, ctx).map_err(at)?
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
