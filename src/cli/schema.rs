//! `creative schema` and `creative explain`: the JSON Schema of the spec, made
//! from the same Rust types the spec is read with (schemars), with every step
//! and gate kind's settings; and the Markdown reference (`docs/spec.md`) and
//! per-kind explanations drawn from that schema, so the three cannot disagree.
//!
//! A step's or gate's settings sit beside its `kind` in the same table, so the
//! schema says, for each kind, which keys that table may have (`if kind is X
//! then these properties, nothing else`): editors then complete and check the
//! settings of the kind that is written.

use std::process::ExitCode;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use creative::campaign::spec::{generate_settings_schema, Layer, SpecDoc};
use creative::ops::gates::{
    ConsistencySettings, DedupeSettings, ExposureSettings, FormatSettings, JudgeSettings, PaletteSettings,
    SharpnessSettings, TextSettings,
};
use creative::ops::steps::{
    ConvertSettings, CropSettings, MetadataSettings, OverlaySettings, PadSettings, ReframeSettings, RenditionsSettings,
    ResizeSettings, WatermarkSettings,
};

use creative::ops::media::{audio as media_audio, gates as media_gates, video as media_video, ProbeSettings};

use super::args::{ExplainArgs, SchemaArgs, SchemaFormat};
use super::out;

/// Where editors find the schema: the `#:schema` line at the top of a spec.
pub const SCHEMA_FILE: &str = "creative.schema.json";

/// What a `generate` step is, for the reference (its settings struct is the
/// spec's own and has no doc of its own).
const GENERATE_DOC: &str = "Call a provider: a prompt (a template over the job's variables) becomes an \
image, text or other media. Any parameter of [defaults] (model, size, steps, seed...) may also be set here; \
a preset, the job's variables and [overrides] layer on top.\n\n```toml\n[[steps]]\nname = \"hero\"\n\
kind = \"generate\"\nproviders = [\"art\"]          # the first is tried first; the others are fallbacks\n\
prompt = \"a {{ product }} on a table, {{ style }}\"\nsize = \"1024x1024\"\n\
gates = [{ kind = \"sharpness\" }]\non_gate_fail = { action = \"regenerate\", max = 2 }\n```";

const FRAMES_DOC: &str = "Image gates on frames sampled evenly through a video: every member must \
pass on every frame; the score is the lowest member score.\n\n```toml\ngates = [{ kind = \"frames\", samples = 5, \
gates = [\n  { kind = \"sharpness\", min_variance = 50.0 },\n  { kind = \"exposure\" },\n] }]\n```";

const COMPOSITE_DOC: &str = "Combine gates: `all` must pass, `any` may pass, or a `weighted` score of \
the members' scores must reach `min_score`.\n\n```toml\ngates = [{ kind = \"composite\", mode = \"weighted\", \
min_score = 0.6, gates = [\n  { kind = \"sharpness\", weight = 2 },\n  { kind = \"exposure\" },\n] }]\n```";

/// A kind and the JSON Schema of its settings.
pub struct Kind {
    /// The kind's name in a spec.
    pub name: &'static str,
    /// `step` or `gate`.
    pub family: &'static str,
    /// Its settings (an object schema with `properties`).
    pub settings: Value,
}

fn settings_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    T::json_schema(g).to_value()
}

/// Every step and gate kind this build has a schema for.
fn kinds(g: &mut SchemaGenerator) -> Vec<Kind> {
    let mut generate = generate_settings_schema(g).to_value();
    let layer = Layer::json_schema(g).to_value();
    if let (Some(own), Some(layer)) = (
        generate.get_mut("properties").and_then(Value::as_object_mut),
        layer.get("properties").and_then(Value::as_object),
    ) {
        for (k, v) in layer {
            own.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    generate["description"] = Value::String(GENERATE_DOC.into());
    let composite = json!({
        "description": COMPOSITE_DOC,
        "type": "object",
        "properties": {
            "mode": {
                "description": "How the members' verdicts combine: `all`, `any` or `weighted`.",
                "type": "string", "enum": ["all", "any", "weighted"], "default": "all"
            },
            "min_score": {
                "description": "The weighted score (0 to 1) a `weighted` composite must reach.",
                "type": "number", "minimum": 0, "maximum": 1, "default": 0.5
            },
            "gates": {
                "description": "The member gates: each a gate table (`kind`, its settings, an optional `name`) with an optional `weight` (default 1).",
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kind"],
                    "properties": {
                        "kind": { "type": "string" },
                        "name": { "type": "string" },
                        "weight": { "type": "number", "minimum": 0, "default": 1 }
                    }
                }
            }
        },
        "required": ["gates"]
    });
    let frames = json!({
        "description": FRAMES_DOC,
        "type": "object",
        "properties": {
            "samples": {
                "description": "How many frames are sampled, evenly through the clip.",
                "type": "integer", "minimum": 1, "maximum": 60, "default": 5
            },
            "gates": {
                "description": "The image gates: each a gate table (`kind` and its settings).",
                "type": "array",
                "items": { "type": "object", "required": ["kind"], "properties": { "kind": { "type": "string" } } }
            }
        },
        "required": ["gates"]
    });
    let step = |name, settings| Kind {
        name,
        family: "step",
        settings,
    };
    let gate = |name, settings| Kind {
        name,
        family: "gate",
        settings,
    };
    vec![
        step("generate", generate),
        step("convert", settings_of::<ConvertSettings>(g)),
        step("crop", settings_of::<CropSettings>(g)),
        step("metadata", settings_of::<MetadataSettings>(g)),
        step("overlay", settings_of::<OverlaySettings>(g)),
        step("pad", settings_of::<PadSettings>(g)),
        step("reframe", settings_of::<ReframeSettings>(g)),
        step("renditions", settings_of::<RenditionsSettings>(g)),
        step("resize", settings_of::<ResizeSettings>(g)),
        step("watermark", settings_of::<WatermarkSettings>(g)),
        step("probe", settings_of::<ProbeSettings>(g)),
        step(
            "loudness_normalize",
            settings_of::<media_audio::LoudnessNormalizeSettings>(g),
        ),
        step("audio_transcode", settings_of::<media_audio::AudioTranscodeSettings>(g)),
        step("audio_trim", settings_of::<media_audio::AudioTrimSettings>(g)),
        step("audio_concat", settings_of::<media_audio::AudioConcatSettings>(g)),
        step("video_transcode", settings_of::<media_video::VideoTranscodeSettings>(g)),
        step(
            "video_renditions",
            settings_of::<media_video::VideoRenditionsSettings>(g),
        ),
        step("video_trim", settings_of::<media_video::VideoTrimSettings>(g)),
        step("poster", settings_of::<media_video::PosterSettings>(g)),
        step("captions", settings_of::<media_video::CaptionsSettings>(g)),
        step("subtitles", settings_of::<media_video::SubtitlesSettings>(g)),
        step("mux", settings_of::<media_video::MuxSettings>(g)),
        gate("composite", composite),
        gate("consistency", settings_of::<ConsistencySettings>(g)),
        gate("dedupe", settings_of::<DedupeSettings>(g)),
        gate("exposure", settings_of::<ExposureSettings>(g)),
        gate("format", settings_of::<FormatSettings>(g)),
        gate("judge", settings_of::<JudgeSettings>(g)),
        gate("palette", settings_of::<PaletteSettings>(g)),
        gate("sharpness", settings_of::<SharpnessSettings>(g)),
        gate("text", settings_of::<TextSettings>(g)),
        gate("duration", settings_of::<media_gates::DurationSettings>(g)),
        gate("loudness", settings_of::<media_gates::LoudnessSettings>(g)),
        gate("silence", settings_of::<media_gates::SilenceSettings>(g)),
        gate("clipping", settings_of::<media_gates::ClippingSettings>(g)),
        gate("resolution", settings_of::<media_gates::ResolutionSettings>(g)),
        gate("frame_rate", settings_of::<media_gates::FrameRateSettings>(g)),
        gate("black_frames", settings_of::<media_gates::BlackFramesSettings>(g)),
        gate("frozen_frames", settings_of::<media_gates::FrozenFramesSettings>(g)),
        gate("frames", frames),
    ]
}

/// The schema and the kinds it was made with.
pub struct SpecSchema {
    /// The whole JSON Schema (draft 7, which editors' TOML and JSON plugins read).
    pub schema: Value,
    /// The step and gate kinds.
    pub kinds: Vec<Kind>,
    /// The provider kinds this build registers.
    pub provider_kinds: Vec<String>,
    /// The sink kinds this build registers.
    pub sink_kinds: Vec<String>,
}

/// Make the schema of the spec.
pub fn spec_schema() -> SpecSchema {
    let mut g = SchemaSettings::draft07().into_generator();
    let kinds = kinds(&mut g);
    let mut schema = g.into_root_schema_for::<SpecDoc>().to_value();
    let reg = super::run::registry();
    let provider_kinds: Vec<String> = sorted(reg.provider_kinds());
    let sink_kinds: Vec<String> = sorted(reg.sink_kinds());
    schema["$id"] = Value::String(format!("https://example.invalid/creative/{SCHEMA_FILE}"));
    schema["title"] = Value::String("creative campaign spec".into());
    let defs = schema
        .get_mut("definitions")
        .and_then(Value::as_object_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let mut defs = defs;
    by_kind(&mut defs, "StepSpec", &kinds, "step");
    by_kind(&mut defs, "GateSpec", &kinds, "gate");
    set_kind_enum(&mut defs, "ProviderSpec", &provider_kinds);
    set_kind_enum(&mut defs, "SinkSpec", &sink_kinds);
    schema["definitions"] = Value::Object(defs);
    // Sorted keys: the same schema and reference whether or not serde_json
    // keeps insertion order (a dependency's `preserve_order` feature, such as
    // the C2PA SDK's, turns that on for the whole build).
    let mut kinds = kinds;
    for k in &mut kinds {
        k.settings.sort_all_objects();
    }
    schema.sort_all_objects();
    SpecSchema {
        schema,
        kinds,
        provider_kinds,
        sink_kinds,
    }
}

fn sorted<'a>(it: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = it.map(String::from).collect();
    v.sort();
    v.dedup();
    v
}

fn set_kind_enum(defs: &mut Map<String, Value>, def: &str, kinds: &[String]) {
    if let Some(kind) = defs.get_mut(def).and_then(|d| d.pointer_mut("/properties/kind")) {
        kind["enum"] = json!(kinds);
    }
}

/// A step or gate table: its common keys, its `kind` among the known ones, and
/// for each kind exactly that kind's settings beside the common keys.
fn by_kind(defs: &mut Map<String, Value>, def: &str, kinds: &[Kind], family: &str) {
    let Some(spec) = defs.get_mut(def) else { return };
    let common = spec.get("properties").cloned().unwrap_or_else(|| json!({}));
    let names: Vec<&str> = kinds.iter().filter(|k| k.family == family).map(|k| k.name).collect();
    spec["properties"]["kind"]["enum"] = json!(names);
    let branches: Vec<Value> = kinds
        .iter()
        .filter(|k| k.family == family)
        .map(|k| {
            let mut props = common.as_object().cloned().unwrap_or_default();
            if let Some(own) = k.settings.get("properties").and_then(Value::as_object) {
                for (n, v) in own {
                    props.insert(n.clone(), v.clone());
                }
            }
            let mut then = json!({ "properties": props, "additionalProperties": false });
            if let Some(req) = k.settings.get("required") {
                then["required"] = req.clone();
            }
            json!({
                "if": { "properties": { "kind": { "const": k.name } }, "required": ["kind"] },
                "then": then
            })
        })
        .collect();
    spec["allOf"] = Value::Array(branches);
    if let Some(o) = spec.as_object_mut() {
        o.remove("additionalProperties");
    }
}

/// `creative schema`.
pub fn schema(a: SchemaArgs) -> ExitCode {
    let s = spec_schema();
    match a.format {
        SchemaFormat::Json => out::println(&serde_json::to_string_pretty(&s.schema).unwrap_or_default()),
        SchemaFormat::Markdown => out::print(&markdown(&s)),
    }
    ExitCode::SUCCESS
}

/// `creative explain [KIND]`.
pub fn explain(a: ExplainArgs) -> ExitCode {
    let s = spec_schema();
    let Some(kind) = a.kind else {
        let list = |family: &str| {
            s.kinds
                .iter()
                .filter(|k| k.family == family)
                .map(|k| k.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        out::println(&format!(
            "step kinds: {}\ngate kinds: {}\nprovider kinds: {}\nsink kinds: {}\nsections: budget, retry, output, c2pa, matrix, defaults\n\n`creative explain KIND` prints a kind's settings; `creative schema` the whole JSON Schema.",
            list("step"),
            list("gate"),
            s.provider_kinds.join(", "),
            s.sink_kinds.join(", ")
        ));
        return ExitCode::SUCCESS;
    };
    let defs = s.schema.get("definitions").cloned().unwrap_or_default();
    let mut text = String::new();
    if let Some(k) = s.kinds.iter().find(|k| k.name == kind) {
        kind_section(&mut text, k, &defs, "#");
    } else if let Some((title, def)) = section(&kind) {
        let d = defs.get(def).cloned().unwrap_or_default();
        object_section(&mut text, &format!("# {title}"), &d, &defs);
    } else if s.provider_kinds.contains(&kind) {
        text = format!("# provider kind `{kind}`\n\n{}\n", provider_text(&kind, &defs));
    } else {
        let mut all: Vec<String> = s.kinds.iter().map(|k| k.name.to_string()).collect();
        all.extend(s.provider_kinds.iter().cloned());
        all.extend(["budget", "retry", "output", "c2pa", "matrix", "defaults"].map(String::from));
        let near = nearest(&kind, &all);
        eprintln!(
            "error: no kind or section `{kind}`{}; `creative explain` lists them",
            near.map(|n| format!(" (did you mean `{n}`?)")).unwrap_or_default()
        );
        return ExitCode::from(super::run::DID_NOT_START);
    }
    out::print(&text);
    ExitCode::SUCCESS
}

fn section(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        "budget" => ("[budget]", "BudgetSpec"),
        "retry" => ("[retry]", "RetrySpec"),
        "output" => ("[output]", "OutputSpec"),
        "c2pa" | "output.c2pa" => ("[output.c2pa]", "C2paSpec"),
        "matrix" => ("[matrix]", "MatrixSpec"),
        "defaults" | "overrides" | "presets" | "layer" => ("[defaults], [overrides], [presets.NAME]", "Layer"),
        _ => return None,
    })
}

fn provider_text(kind: &str, defs: &Value) -> String {
    let mut s = String::new();
    object_section(
        &mut s,
        &format!("## The engine's settings of every provider (`[providers.ID]`, kind = \"{kind}\")"),
        defs.get("ProviderSpec").unwrap_or(&Value::Null),
        defs,
    );
    s.push_str("The kind's own settings (base_url, api_key_env, model, prices...) are passed to it and checked when the spec is built: `creative check` names any it does not know.\n");
    s
}

/// The closest name by edit distance, if close enough to be a typo.
pub fn nearest<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The reference page: every section, kind, option, default and example.
pub fn markdown(s: &SpecSchema) -> String {
    let defs = s.schema.get("definitions").cloned().unwrap_or_default();
    let mut m = String::new();
    m.push_str("# Campaign spec reference\n\n");
    m.push_str("<!-- Generated by `creative schema --format markdown`; do not edit: a test keeps it in sync. -->\n\n");
    m.push_str(&format!(
        "A campaign is a TOML (or JSON) file. Its JSON Schema is `creative schema > {SCHEMA_FILE}`; \
put `#:schema ./{SCHEMA_FILE}` on a spec's first line and editors with a TOML language server \
(taplo, Even Better TOML) complete and check it. `creative explain KIND` prints one section of this page, \
`creative init` writes a commented starter.\n\n"
    ));
    m.push_str("Contents: [top level](#top-level), [sections](#sections), [step kinds](#step-kinds), [gate kinds](#gate-kinds), [providers](#providers), [value types](#value-types).\n\n");
    object_section(&mut m, "## Top level", &s.schema, &defs);
    m.push_str("## Sections\n\n");
    for name in ["budget", "retry", "output", "output.c2pa", "matrix", "defaults"] {
        if let Some((title, def)) = section(name) {
            object_section(
                &mut m,
                &format!("### {title}"),
                defs.get(def).unwrap_or(&Value::Null),
                &defs,
            );
        }
    }
    m.push_str("## Step kinds\n\n");
    object_section(
        &mut m,
        "### Keys of every step",
        &json!({
            "description": "Every `[[steps]]` table has these keys; the rest are its kind's settings, below.",
            "properties": defs.pointer("/StepSpec/properties").cloned().unwrap_or_default(),
            "required": ["name", "kind"]
        }),
        &defs,
    );
    for k in s.kinds.iter().filter(|k| k.family == "step") {
        kind_section(&mut m, k, &defs, "###");
    }
    m.push_str("## Gate kinds\n\n");
    object_section(
        &mut m,
        "### Keys of every gate",
        &json!({
            "description": "Every entry of a step's `gates` has these keys; the rest are its kind's settings, below.",
            "properties": defs.pointer("/GateSpec/properties").cloned().unwrap_or_default(),
            "required": ["kind"]
        }),
        &defs,
    );
    for k in s.kinds.iter().filter(|k| k.family == "gate") {
        kind_section(&mut m, k, &defs, "###");
    }
    m.push_str("## Providers\n\n");
    m.push_str(&format!(
        "Provider kinds: {}. Sink kinds (`[[output.sinks]]`): {}.\n\n",
        s.provider_kinds
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", "),
        s.sink_kinds
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    object_section(
        &mut m,
        "### `[providers.ID]`",
        defs.get("ProviderSpec").unwrap_or(&Value::Null),
        &defs,
    );
    m.push_str("## Value types\n\n");
    let mut names: Vec<&String> = defs.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    names.sort();
    for n in names {
        let d = &defs[n.as_str()];
        if d.get("properties").is_some() && !matches!(n.as_str(), "EncodeSettings" | "RenditionSpec" | "TextBox") {
            continue;
        }
        if d.get("properties").is_some() {
            object_section(&mut m, &format!("### {n}"), d, &defs);
        } else {
            m.push_str(&format!(
                "### {n}\n\n{} {}\n\n",
                one_line(description(d)),
                type_text(d, &defs)
            ));
        }
    }
    m
}

fn kind_section(m: &mut String, k: &Kind, defs: &Value, level: &str) {
    let title = format!("{level} {} `{}`", k.family, k.name);
    object_section(m, &title, &k.settings, defs);
}

/// A heading, the description (its TOML example as a code block), and a table
/// of the options.
fn object_section(m: &mut String, title: &str, schema: &Value, defs: &Value) {
    m.push_str(title);
    m.push_str("\n\n");
    let desc = description(schema);
    if !desc.is_empty() {
        m.push_str(desc.trim());
        m.push_str("\n\n");
    }
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    m.push_str("| option | type | default | description |\n|---|---|---|---|\n");
    for (name, p) in props {
        let default = if required.contains(&name.as_str()) {
            "required".to_string()
        } else {
            match p.get("default") {
                Some(Value::Null) | None => "-".into(),
                Some(v) => format!("`{}`", toml_value(v)),
            }
        };
        m.push_str(&format!(
            "| `{name}` | {} | {default} | {} |\n",
            cell(&type_text(p, defs)),
            cell(&one_line(description(p)))
        ));
    }
    m.push('\n');
}

fn description(v: &Value) -> &str {
    v.get("description").and_then(Value::as_str).unwrap_or("")
}

/// The text of a description up to its first code example, on one line.
fn one_line(d: &str) -> String {
    let text = d.split("```").next().unwrap_or("");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// A value as it would be written in TOML.
fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!("[{}]", a.iter().map(toml_value).collect::<Vec<_>>().join(", ")),
        Value::Object(o) if o.is_empty() => "{}".into(),
        Value::Object(o) => format!(
            "{{ {} }}",
            o.iter()
                .map(|(k, v)| format!("{k} = {}", toml_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// A property's type in words: `integer (1 to 10000)`, `"fit" | "fill"`,
/// `list of Colour`, `table`...
pub fn type_text(p: &Value, defs: &Value) -> String {
    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        let d = defs.get(name).unwrap_or(&Value::Null);
        if d.get("properties").is_some() {
            return format!("table ({name})");
        }
        return type_text(d, defs);
    }
    if let Some(e) = p.get("enum").and_then(Value::as_array) {
        return e.iter().map(toml_value).collect::<Vec<_>>().join(" \\| ");
    }
    if let Some(c) = p.get("const") {
        return toml_value(c);
    }
    if let Some([one]) = p.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        return type_text(one, defs);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = p.get(key).and_then(Value::as_array) {
            let parts: Vec<String> = alts
                .iter()
                .filter(|a| a.get("type") != Some(&json!("null")))
                .map(|a| type_text(a, defs))
                .collect();
            return parts.join(" or ");
        }
    }
    if let Some(t) = p.get("title").and_then(Value::as_str) {
        if p.get("properties").is_none() {
            return t.to_lowercase();
        }
    }
    let types: Vec<&str> = match p.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
        _ => vec![],
    };
    let words: Vec<String> = types
        .iter()
        .map(|t| match *t {
            "array" => format!(
                "list of {}",
                p.get("items")
                    .map(|i| type_text(i, defs))
                    .unwrap_or_else(|| "values".into())
            ),
            "object" => "table".into(),
            "integer" | "number" => {
                let lo = p.get("minimum").map(|v| v.to_string());
                let hi = p.get("maximum").map(|v| v.to_string());
                let word = if *t == "integer" { "integer" } else { "number" };
                match (lo, hi) {
                    (Some(lo), Some(hi)) => format!("{word} ({lo} to {hi})"),
                    (Some(lo), None) => format!("{word} (at least {lo})"),
                    (None, Some(hi)) => format!("{word} (at most {hi})"),
                    (None, None) => word.into(),
                }
            }
            "boolean" => "true or false".into(),
            other => other.into(),
        })
        .collect();
    if words.is_empty() {
        "any".into()
    } else {
        words.join(" or ")
    }
}

/// Say a deserializer's message in the spec's terms: TOML tables and lists,
/// never a Rust type name (`expected struct RenditionSpec`).
pub fn spec_terms(message: &str) -> String {
    let mut s = message
        .replace("invalid type: map", "invalid type: table")
        .replace("invalid type: sequence", "invalid type: list")
        .replace("expected a map", "expected a table")
        .replace("expected a sequence", "expected a list")
        .replace("unknown variant", "unknown value")
        .replace("expected unit", "expected nothing");
    for (word, with) in [("struct ", "a table"), ("enum ", "one of its names")] {
        while let Some(i) = s.find(&format!("expected {word}")) {
            let start = i + "expected ".len();
            let name_end = s[start + word.len()..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map(|e| start + word.len() + e)
                .unwrap_or(s.len());
            s.replace_range(start..name_end, with);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_struct_or_enum_name_in_an_error_becomes_spec_words() {
        assert_eq!(
            spec_terms("steps[1]: invalid type: string \"9:16\", expected struct RenditionSpec at line 3"),
            "steps[1]: invalid type: string \"9:16\", expected a table at line 3"
        );
        assert_eq!(
            spec_terms("invalid type: map, expected enum Mode"),
            "invalid type: table, expected one of its names"
        );
        assert_eq!(
            spec_terms("unknown variant `fitt`, expected one of `fit`, `fill`"),
            "unknown value `fitt`, expected one of `fit`, `fill`"
        );
    }

    #[test]
    fn a_typo_of_a_kind_finds_the_kind_and_a_stranger_finds_none() {
        let kinds: Vec<String> = ["reframe", "renditions", "resize"].map(String::from).to_vec();
        assert_eq!(nearest("refrme", &kinds), Some("reframe"));
        assert_eq!(nearest("watermark", &kinds), None);
    }

    #[test]
    fn every_registered_step_and_gate_kind_has_settings_in_the_schema() {
        let s = spec_schema();
        let reg = crate::cli::run::registry();
        for k in reg.step_kinds().chain(["generate"]) {
            assert!(s.kinds.iter().any(|x| x.family == "step" && x.name == k), "step {k}");
        }
        for k in reg.gate_kinds() {
            assert!(s.kinds.iter().any(|x| x.family == "gate" && x.name == k), "gate {k}");
        }
    }

    #[test]
    fn a_step_kind_allows_its_own_settings_and_the_common_keys_only() {
        let s = spec_schema();
        let branches = s
            .schema
            .pointer("/definitions/StepSpec/allOf")
            .and_then(Value::as_array)
            .unwrap();
        let reframe = branches
            .iter()
            .find(|b| b.pointer("/if/properties/kind/const") == Some(&json!("reframe")))
            .unwrap();
        let props = reframe.pointer("/then/properties").and_then(Value::as_object).unwrap();
        for key in ["aspect_var", "aspect", "inputs", "gates", "name", "kind"] {
            assert!(props.contains_key(key), "{key}");
        }
        assert!(!props.contains_key("renditions"));
        assert_eq!(reframe.pointer("/then/additionalProperties"), Some(&json!(false)));
    }
}
