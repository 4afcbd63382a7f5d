//! `creative_brief`: a language model turns a brief into a campaign spec, as
//! `creative brief` does, through a provider configured the way a spec
//! configures one and checked by the same loader a run uses.

use std::ffi::c_char;
use std::path::PathBuf;

use creative_agent::brief::{spec_from_brief, BriefError, BriefOptions};
use creative_campaign::spec::{BuildCtx, Format, ProviderSpec, Registry, Spec, SpecDoc};
use creative_core::ErrorKind;
use schemars::generate::SchemaSettings;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::engine::creative_engine;
use crate::panic::{guard, opt_text_arg, text_arg, Out};
use crate::status::{creative_status, FfiError};
use crate::strings::owned_c_string;

/// Options of `creative_brief`, read from JSON. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BriefOptionsJson {
    /// Repair rounds after the first answer.
    max_repairs: Option<u32>,
    /// Sampling temperature.
    temperature: Option<f32>,
    /// Most output tokens per answer.
    max_tokens: Option<u32>,
    /// The brief's name in the spec's header comment and the prompt.
    source: Option<String>,
    /// Folder the spec's relative paths (and the provider's) resolve against.
    base_dir: Option<PathBuf>,
}

impl BriefOptionsJson {
    fn parse(text: Option<&str>) -> Result<BriefOptionsJson, FfiError> {
        let text = text.map(str::trim).unwrap_or("");
        if text.is_empty() {
            return Ok(BriefOptionsJson::default());
        }
        serde_json::from_str(text).map_err(|e| {
            FfiError::new(
                creative_status::Parse,
                format!("brief options (JSON) line {} column {}: {e}", e.line(), e.column()),
            )
        })
    }

    fn brief_options(&self) -> Result<BriefOptions, FfiError> {
        let d = BriefOptions::default();
        let o = BriefOptions {
            max_repairs: self.max_repairs.unwrap_or(d.max_repairs),
            temperature: self.temperature.unwrap_or(d.temperature),
            max_tokens: self.max_tokens.or(d.max_tokens),
        };
        o.check()
            .map_err(|e| FfiError::invalid(format!("brief options: {e}")))?;
        Ok(o)
    }
}

/// The JSON Schema of a spec, with the provider and sink kinds this engine
/// knows (its host kinds included), for the model's structured output.
fn spec_schema(reg: &Registry) -> Value {
    let mut schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<SpecDoc>()
        .to_value();
    let mut kinds = |def: &str, mut names: Vec<String>| {
        names.sort();
        if let Some(kind) = schema.pointer_mut(&format!("/definitions/{def}/properties/kind")) {
            kind["enum"] = json!(names);
        }
    };
    kinds("ProviderSpec", reg.provider_kinds().map(str::to_string).collect());
    kinds("SinkSpec", reg.sink_kinds().map(str::to_string).collect());
    schema
}

fn brief_error(e: BriefError) -> FfiError {
    let status = match &e {
        BriefError::Settings(_) => creative_status::InvalidArgument,
        BriefError::Unusable { .. } => creative_status::InvalidSpec,
        BriefError::Provider(_) => match e.kind() {
            ErrorKind::Timeout => creative_status::Timeout,
            ErrorKind::Cancelled => creative_status::Cancelled,
            ErrorKind::Budget => creative_status::BudgetExceeded,
            _ => creative_status::ProviderError,
        },
    };
    FfiError::new(status, e.to_string())
}

/// Turn a brief into a campaign spec with a language model, as `creative brief`
/// does: the model answers with a spec (constrained by the spec's JSON Schema
/// where the provider supports structured output), each answer is checked by
/// the loader `creative_run_start` uses (against this engine's kinds, the
/// host's included), and the loader's errors go back to the model for up to
/// `max_repairs` repairs. The result is commented TOML a person reads and edits.
///
/// `brief_text`: the brief (products, audience, channels and sizes, locales,
/// tone, budget...), 1 byte to 256 KiB of UTF-8.
///
/// `provider_json`: the text provider, as a spec's `[providers.<id>]` table in
/// JSON, such as `{"kind": "openai", "base_url": "...", "api_key_env":
/// "OPENAI_API_KEY", "text_model": "gpt-4o-mini"}` (any provider kind of this
/// engine that writes text: `openai`, `ollama`, `gemini`, or a host provider).
/// Its id in messages is `brief`. Prefer `api_key_env` (the environment
/// variable holding the key) to a key written into this text.
///
/// `options_json` may be NULL, or a JSON object with any of: `max_repairs` (0 to
/// 10, default 3), `temperature` (0 to 2, default 0.2), `max_tokens` (256 to
/// 65536), `source` (the brief's name in the spec's header comment, default
/// `"brief"`), `base_dir` (folder the spec's relative paths resolve against
/// when it is checked; default the engine's `base_dir`, else the current
/// directory). Unknown fields are an error.
///
/// Blocks until the spec is written or the model's answers ran out (each
/// repair is one more call to the provider).
///
/// Statuses: `CREATIVE_STATUS_PARSE` for options or provider text that does not
/// parse, `CREATIVE_STATUS_INVALID_ARGUMENT` for an empty or oversized brief or
/// an option out of range, `CREATIVE_STATUS_INVALID_SPEC` for a provider table
/// that does not build or when no answer validated within the repairs (the
/// message quotes the loader's last word), `CREATIVE_STATUS_PROVIDER_ERROR` (or
/// `_TIMEOUT`) when the model call failed.
///
/// Ownership: on success `*out_toml` receives the spec's TOML, and (when
/// `out_info_json` is not NULL) `*out_info_json` a JSON object with `rounds`
/// (answers asked for), `refused` (the loader's message for each refused
/// answer), `cost_usd` and `why` (the model's reason per field path): both
/// freed by the caller with `creative_string_free`. On failure both are set to
/// NULL (when not NULL).
///
/// Thread safety: any thread, several at once; not from inside a host callback
/// or event callback of this engine (it waits on the engine's runtime).
#[no_mangle]
pub unsafe extern "C" fn creative_brief(
    engine: *const creative_engine,
    brief_text: *const c_char,
    provider_json: *const c_char,
    options_json: *const c_char,
    out_toml: *mut *mut c_char,
    out_info_json: *mut *mut c_char,
) -> creative_status {
    guard("creative_brief", || {
        // SAFETY: `out_toml` is NULL or writable (the doc: "`*out_toml`
        // receives").
        let mut out = unsafe { Out::new(out_toml, "out_toml") }?;
        out.write(std::ptr::null_mut());
        // SAFETY: `out_info_json` is NULL (not wanted, as the doc says) or
        // writable.
        let mut info_out = unsafe { Out::optional(out_info_json) };
        if let Some(o) = info_out.as_mut() {
            o.write(std::ptr::null_mut());
        }
        // SAFETY: `engine` is NULL (`as_ref` gives None) or an engine from
        // creative_engine_new not yet freed (the `creative_engine` doc), used
        // only during this call.
        let engine = unsafe { engine.as_ref() }.ok_or_else(|| FfiError::null("engine"))?;
        // SAFETY: NULL or NUL-terminated text (the header's conventions), read
        // only during this call.
        let brief = unsafe { text_arg(brief_text, "brief_text") }?;
        // SAFETY: as above.
        let provider_text = unsafe { text_arg(provider_json, "provider_json") }?;
        // SAFETY: NULL ("may be NULL", above) or NUL-terminated text, read only
        // during this call.
        let options = unsafe { opt_text_arg(options_json, "options_json") }?;
        let opts = BriefOptionsJson::parse(options)?;
        let brief_opts = opts.brief_options()?;
        let source = opts.source.clone().unwrap_or_else(|| "brief".to_string());
        if source.trim().is_empty() || source.len() > 1024 {
            return Err(FfiError::invalid(
                "brief options: `source` must be 1 to 1024 bytes of text",
            ));
        }
        let base_dir = match opts.base_dir.clone().or_else(|| engine.inner.config.base_dir.clone()) {
            Some(d) => d,
            None => std::env::current_dir()
                .map_err(|e| FfiError::new(creative_status::Io, format!("cannot read the current directory: {e}")))?,
        };

        let ps: ProviderSpec = serde_json::from_str(provider_text).map_err(|e| {
            FfiError::new(
                creative_status::Parse,
                format!(
                    "`provider_json` line {} column {}: {e} (a spec's [providers.<id>] table as JSON, with `kind`)",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        let reg = engine.inner.registry();
        let factory = reg.provider_factory(&ps.kind).ok_or_else(|| {
            let mut kinds: Vec<&str> = reg.provider_kinds().collect();
            kinds.sort_unstable();
            FfiError::new(
                creative_status::InvalidSpec,
                format!(
                    "`provider_json`: unknown provider kind `{}`; this engine knows: {}",
                    ps.kind,
                    kinds.join(", ")
                ),
            )
        })?;
        let ctx = BuildCtx {
            base_dir: base_dir.clone(),
            ..BuildCtx::default()
        };
        let provider = factory("brief", &Value::Object(ps.settings.clone()), &ctx)
            .map_err(|e| FfiError::new(creative_status::InvalidSpec, format!("`provider_json`: {e}")))?;

        let schema = spec_schema(&reg);
        // The refusal's text is what the model reads back to repair its spec.
        let validate = |toml: &str| -> Result<(), creative_campaign::spec::SpecError> {
            Spec::parse(toml, Format::Toml, &source)?
                .build(&reg, &base_dir)
                .map(drop)
        };
        let done = engine
            .inner
            .handle()
            .block_on(spec_from_brief(
                provider.as_ref(),
                &ps.kind,
                &schema,
                brief,
                &source,
                &validate,
                &brief_opts,
            ))
            .map_err(brief_error)?;
        if let Some(o) = info_out.as_mut() {
            let info = json!({
                "rounds": done.rounds,
                "refused": done.refused,
                "cost_usd": done.cost_usd,
                "why": done.why,
            });
            o.write(owned_c_string(info.to_string()));
        }
        out.write(owned_c_string(done.toml));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brief_options_are_checked_against_their_ranges() {
        let o = BriefOptionsJson::parse(Some(r#"{"max_repairs": 11}"#)).unwrap();
        let e = o.brief_options().unwrap_err();
        assert_eq!(e.status, creative_status::InvalidArgument);
        assert!(e.message.contains("0 to 10, got 11"), "{}", e.message);
        let e = BriefOptionsJson::parse(Some(r#"{"repairs": 1}"#)).unwrap_err();
        assert_eq!(e.status, creative_status::Parse);
        assert!(e.message.contains("repairs"), "{}", e.message);
        let o = BriefOptionsJson::parse(None).unwrap().brief_options().unwrap();
        assert_eq!(o, BriefOptions::default());
    }

    #[test]
    fn the_schema_lists_the_engines_provider_kinds() {
        let mut reg = Registry::new();
        creative_providers::register(&mut reg);
        let s = spec_schema(&reg);
        let kinds = s["definitions"]["ProviderSpec"]["properties"]["kind"]["enum"]
            .as_array()
            .expect("an enum of kinds");
        assert!(kinds.iter().any(|k| k == "procedural"), "{kinds:?}");
    }
}
