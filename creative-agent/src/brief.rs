//! A brief turned into a campaign spec by a language model.
//!
//! The model is asked for one JSON object, `{"spec": {...}, "why": {...}}`: the
//! spec, and the reason for each choice by field path. Where the provider kind
//! supports structured output the answer is constrained by the spec's JSON
//! Schema (OpenAI `response_format` json_schema, Ollama `format`, Gemini
//! `responseJsonSchema`); everywhere the schema is also in the prompt. The
//! answer is written as commented TOML and validated by the caller's loader
//! (the same one `creative check` uses); its errors go back to the model for a
//! bounded number of repairs, so what is returned is a spec that builds.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use creative_core::error::{ErrorKind, ProviderError};
use creative_core::provider::{CallCtx, Provider};
use creative_core::request::{Request, Task};
use creative_core::step::parse_json_text;

use crate::toml_out::to_commented_toml;

/// Most repair rounds a caller may ask for: each is a paid call with the whole
/// schema in it, and a model that has not fixed a spec in ten tries will not.
pub const MAX_REPAIRS: u32 = 10;

/// Largest brief accepted, in bytes (256 KiB): a brief is a page or two; more
/// is a wrong file, and it would be sent on every round.
pub const MAX_BRIEF_BYTES: usize = 256 * 1024;

/// How the brief is turned into a spec.
#[derive(Debug, Clone, PartialEq)]
pub struct BriefOptions {
    /// Repair rounds after the first answer (0 to [`MAX_REPAIRS`]). Default 3.
    pub max_repairs: u32,
    /// Sampling temperature (0 to 2). Default 0.2: a spec wants the likely
    /// reading of the brief, not a creative one.
    pub temperature: f32,
    /// Most output tokens per answer (256 to 65,536), when set.
    pub max_tokens: Option<u32>,
}

impl Default for BriefOptions {
    fn default() -> Self {
        BriefOptions {
            max_repairs: 3,
            temperature: 0.2,
            max_tokens: None,
        }
    }
}

impl BriefOptions {
    /// Check every number against its range.
    pub fn check(&self) -> Result<(), BriefError> {
        if self.max_repairs > MAX_REPAIRS {
            return Err(BriefError::Settings(format!(
                "max_repairs must be 0 to {MAX_REPAIRS}, got {}",
                self.max_repairs
            )));
        }
        if !(self.temperature.is_finite() && (0.0..=2.0).contains(&self.temperature)) {
            return Err(BriefError::Settings(format!(
                "temperature must be 0 to 2, got {}",
                self.temperature
            )));
        }
        if let Some(t) = self.max_tokens {
            if !(256..=65_536).contains(&t) {
                return Err(BriefError::Settings(format!(
                    "max_tokens must be 256 to 65536, got {t}"
                )));
            }
        }
        Ok(())
    }
}

/// What turning a brief into a spec produced.
#[derive(Debug, Clone)]
pub struct BriefOutcome {
    /// The spec as commented TOML, validated.
    pub toml: String,
    /// The spec as JSON.
    pub spec: Value,
    /// The reasons the model gave, by field path.
    pub why: BTreeMap<String, String>,
    /// Answers asked for (1 + the repairs used).
    pub rounds: u32,
    /// What the loader said about each refused answer, in order.
    pub refused: Vec<String>,
    /// Money the calls cost, in US dollars.
    pub cost_usd: f64,
}

/// Why no spec came out.
#[derive(Debug, thiserror::Error)]
pub enum BriefError {
    /// An option or input is out of range or empty.
    #[error("brief: {0}")]
    Settings(String),
    /// The provider call failed (its kind says whether a retry may help).
    #[error("brief: the model call failed: {0}")]
    Provider(#[from] ProviderError),
    /// Every answer was refused by the loader.
    #[error("brief: no valid spec after {rounds} answer(s); the last was refused with: {last}")]
    Unusable {
        /// Answers asked for.
        rounds: u32,
        /// What the loader said about the last one.
        last: String,
    },
}

impl BriefError {
    /// The class of the failure, for policy: a provider's own kind, `Invalid`
    /// for bad options and for answers that never validated.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BriefError::Provider(e) => e.kind(),
            BriefError::Settings(_) | BriefError::Unusable { .. } => ErrorKind::Invalid,
        }
    }
}

/// The schema of the answer: the spec and the reasons, with the spec schema's
/// definitions moved to the root so its `$ref`s still resolve.
pub fn answer_schema(spec_schema: &Value) -> Value {
    let mut spec = spec_schema.clone();
    let mut defs = Value::Null;
    if let Value::Object(m) = &mut spec {
        for k in ["$schema", "$id", "title"] {
            m.remove(k);
        }
        defs = m
            .remove("definitions")
            .or_else(|| m.remove("$defs"))
            .unwrap_or(Value::Null);
    }
    let mut out = json!({
        "type": "object",
        "required": ["spec", "why"],
        "properties": {
            "spec": spec,
            "why": {
                "type": "object",
                "description": "The reason for each choice, by field path: `matrix.locale`, `steps[1].prompt`, `budget.max_cost_usd`.",
                "additionalProperties": {"type": "string"}
            }
        }
    });
    if !defs.is_null() {
        out["definitions"] = defs;
    }
    out
}

/// The provider fields that constrain the answer to `schema`, for the provider
/// kinds that support structured output; empty for the others.
pub fn structured_output(provider_kind: &str, schema: &Value) -> serde_json::Map<String, Value> {
    structured_output_named(provider_kind, "campaign_spec", schema)
}

/// [`structured_output`] for an answer of another kind, `name`d as OpenAI
/// asks (letters, digits, `_` and `-`).
pub fn structured_output_named(provider_kind: &str, name: &str, schema: &Value) -> serde_json::Map<String, Value> {
    let v = match provider_kind {
        // Not strict: strict mode wants every property required and no open
        // maps, which the spec's settings tables are.
        "openai" => json!({"response_format": {"type": "json_schema", "json_schema": {
            "name": name, "schema": schema, "strict": false}}}),
        "ollama" => json!({"format": schema}),
        // `responseJsonSchema` takes JSON Schema with `$ref`; `responseSchema`
        // (an OpenAPI subset) does not, and the spec's schema needs them.
        "gemini" => json!({"generationConfig": {
            "responseMimeType": "application/json", "responseJsonSchema": schema}}),
        _ => json!({}),
    };
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

const SYSTEM: &str = "You turn a creative brief into a campaign spec for `creative`, a runner that generates, checks and delivers creative assets. \
Answer with one JSON object and nothing else: {\"spec\": <the campaign spec>, \"why\": {<field path>: <one sentence: why this choice, citing the brief>}}. \
The spec must validate against the JSON Schema below. Put the brief's products, locales, channels and sizes in [matrix] (zip channels with their sizes), \
its tone and brand kit in [presets] with prompt_prefix/prompt_suffix, its budget in budget.max_cost_usd, and give providers prices when there is a money budget. \
Chain steps where it helps: a text step (task = \"text\") may return JSON checked by a text gate's json_schema, and a later step reads it as {{ steps.NAME.json.FIELD }} when NAME is upstream of it (in its inputs, or its inputs' inputs). \
Add quality gates a person would ask for. Give a `why` entry for every choice a person would question.";

/// Ask `provider` (of kind `provider_kind`) for a spec of `brief` (read from
/// `source`, named in the spec's header comment), check each answer with
/// `validate` (given the TOML that would be written; `Err` is the loader's
/// refusal, whose message goes back to the model) and repair up to
/// `opts.max_repairs` times.
pub async fn spec_from_brief<E: std::fmt::Display>(
    provider: &dyn Provider,
    provider_kind: &str,
    spec_schema: &Value,
    brief: &str,
    source: &str,
    validate: &(dyn Fn(&str) -> Result<(), E> + Sync),
    opts: &BriefOptions,
) -> Result<BriefOutcome, BriefError> {
    opts.check()?;
    if brief.trim().is_empty() {
        return Err(BriefError::Settings(format!("`{source}` is empty")));
    }
    if brief.len() > MAX_BRIEF_BYTES {
        return Err(BriefError::Settings(format!(
            "`{source}` is {} bytes; a brief may be at most {MAX_BRIEF_BYTES}",
            brief.len()
        )));
    }
    let schema = answer_schema(spec_schema);
    let raw = structured_output(provider_kind, &schema);
    let system = format!("{SYSTEM}\n\nJSON Schema of the answer:\n{schema}");
    let header = format!(
        "Written by a language model from {source}; every choice has its reason above it.\nCheck it with `creative check`, see its plan and cost with `creative run --dry-run`, then edit freely."
    );
    let (mut refused, mut cost) = (Vec::new(), 0.0);
    let mut previous: Option<(String, String)> = None;
    for round in 1..=opts.max_repairs + 1 {
        let mut prompt = format!("The brief ({source}):\n\n{brief}");
        if let Some((answer, error)) = &previous {
            prompt.push_str(&format!(
                "\n\nYour previous answer:\n```json\n{answer}\n```\nThe spec loader refused it:\n{error}\nAnswer again with the whole corrected JSON object."
            ));
        }
        let mut req = Request::new(Task::Text, prompt);
        req.params.system = Some(system.clone());
        req.params.temperature = Some(opts.temperature);
        req.params.max_tokens = opts.max_tokens;
        req.raw = raw.clone();
        let g = provider.generate(&req, &CallCtx::detached()).await?;
        cost += g.usage.cost_usd;
        let text = g
            .artifacts
            .iter()
            .find_map(|a| a.text())
            .unwrap_or_default()
            .to_string();
        // Either refusal is sent back to the model as text, and kept as text.
        let verdict = read_answer(&text).map_err(|e| e.to_string()).and_then(|(spec, why)| {
            let toml = to_commented_toml(&spec, &why, &header);
            validate(&toml).map(|()| (spec, why, toml)).map_err(|e| e.to_string())
        });
        match verdict {
            Ok((spec, why, toml)) => {
                return Ok(BriefOutcome {
                    toml,
                    spec,
                    why,
                    rounds: round,
                    refused,
                    cost_usd: cost,
                })
            }
            Err(e) => {
                refused.push(e.clone());
                previous = Some((text, e));
            }
        }
    }
    Err(BriefError::Unusable {
        rounds: opts.max_repairs + 1,
        last: refused.last().cloned().unwrap_or_default(),
    })
}

/// Why an answer holds no spec; the message goes back to the model.
#[derive(Debug, thiserror::Error)]
enum AnswerError {
    /// Not JSON at all (prose, a cut-off answer).
    #[error("the answer is not JSON (it begins: {begins:?})")]
    NotJson {
        /// Its first 200 characters.
        begins: String,
    },
    /// JSON, but a list or a scalar.
    #[error("the answer is JSON but not an object")]
    NotObject,
    /// The envelope's `spec` is not a table.
    #[error("`spec` is not an object")]
    SpecNotObject,
}

/// The spec and the reasons from an answer; a bare spec (no envelope) is taken
/// as is, with no reasons.
fn read_answer(text: &str) -> Result<(Value, BTreeMap<String, String>), AnswerError> {
    let v = parse_json_text(text).ok_or_else(|| AnswerError::NotJson {
        begins: text.chars().take(200).collect(),
    })?;
    let Value::Object(mut m) = v else {
        return Err(AnswerError::NotObject);
    };
    let (spec, why) = match m.remove("spec") {
        Some(spec) => (spec, m.remove("why").unwrap_or(Value::Null)),
        None => (Value::Object(m), Value::Null),
    };
    if !spec.is_object() {
        return Err(AnswerError::SpecNotObject);
    }
    let why = match why {
        Value::Object(w) => w
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    };
    Ok((spec, why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_out_of_range_are_refused_with_the_range() {
        let o = BriefOptions {
            max_repairs: 11,
            ..BriefOptions::default()
        };
        assert!(o.check().unwrap_err().to_string().contains("0 to 10, got 11"));
        let o = BriefOptions {
            temperature: f32::NAN,
            ..BriefOptions::default()
        };
        assert!(o.check().is_err());
    }

    #[test]
    fn the_answer_schema_keeps_the_spec_refs_resolvable() {
        let spec = json!({"$schema": "x", "type": "object", "properties": {"a": {"$ref": "#/definitions/A"}}, "definitions": {"A": {"type": "string"}}});
        let s = answer_schema(&spec);
        assert_eq!(s["definitions"]["A"]["type"], "string");
        assert_eq!(s["properties"]["spec"]["properties"]["a"]["$ref"], "#/definitions/A");
        assert!(s["properties"]["spec"].get("$schema").is_none());
    }

    #[test]
    fn each_kind_gets_its_own_structured_output_field() {
        let s = json!({"type": "object"});
        assert_eq!(
            structured_output("openai", &s)["response_format"]["type"],
            "json_schema"
        );
        assert_eq!(structured_output("ollama", &s)["format"], s);
        assert_eq!(
            structured_output("gemini", &s)["generationConfig"]["responseJsonSchema"],
            s
        );
        assert!(structured_output("procedural", &s).is_empty());
    }

    #[test]
    fn a_bare_spec_is_read_without_reasons_and_prose_is_refused() {
        let (spec, why) = read_answer("{\"name\": \"x\", \"steps\": []}").unwrap();
        assert_eq!(spec["name"], "x");
        assert!(why.is_empty());
        assert!(read_answer("Sure! Here is your spec")
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
    }
}
