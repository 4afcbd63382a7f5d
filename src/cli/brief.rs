//! `creative brief`: a language model turns a brief into a spec a person edits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use creative::agent::brief::{spec_from_brief, BriefOptions};
use creative::campaign::spec::{Format, ProviderSpec, Spec};
use creative::engine::registry::BuildCtx;

use super::args::BriefArgs;
use super::error::{CliError, Refusal};
use super::run::{registry, DID_NOT_START};

/// The `[providers]` of a providers file (or of a spec: other sections are ignored).
#[derive(serde::Deserialize)]
struct ProvidersFile {
    #[serde(default)]
    providers: BTreeMap<String, ProviderSpec>,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(DID_NOT_START)
}

/// Read the providers file and build the one named `id`, with its kind.
pub(super) fn provider(
    file: &Path,
    id: &str,
) -> Result<(std::sync::Arc<dyn creative::engine::Provider>, String), CliError> {
    let text = std::fs::read_to_string(file).map_err(|error| CliError::Read {
        flag: "--providers ",
        path: file.to_path_buf(),
        error,
        hint: format!(" (a TOML file with a [providers.{id}] table, as in a spec)"),
    })?;
    let parsed: ProvidersFile = match Format::from_path(file) {
        Format::Json => serde_json::from_str(&text).map_err(|error| CliError::Json {
            path: file.to_path_buf(),
            error,
        })?,
        Format::Toml => toml::from_str(&text).map_err(|error| CliError::Toml {
            path: file.to_path_buf(),
            error,
        })?,
    };
    let Some(ps) = parsed.providers.get(id) else {
        let have: Vec<&str> = parsed.providers.keys().map(String::as_str).collect();
        return Err(CliError::NoSuchProvider {
            id: id.to_string(),
            file: file.to_path_buf(),
            declared: if have.is_empty() {
                "(none)".into()
            } else {
                have.join(", ")
            },
        });
    };
    let reg = registry();
    let factory = reg.provider_factory(&ps.kind).ok_or_else(|| CliError::UnknownKind {
        id: id.to_string(),
        kind: ps.kind.clone(),
    })?;
    let ctx = BuildCtx {
        base_dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        ..BuildCtx::default()
    };
    let p = factory(id, &serde_json::Value::Object(ps.settings.clone()), &ctx)
        .map_err(|e| CliError::ProviderSettings(e.at(&format!("providers.{id}"))))?;
    Ok((p, ps.kind.clone()))
}

/// `creative brief BRIEF --provider ID [--providers FILE] [-o FILE]`.
pub fn brief(a: BriefArgs) -> ExitCode {
    if a.output.exists() && !a.force {
        return fail(format!("{} exists; pass --force to overwrite it", a.output.display()));
    }
    let text = match std::fs::read_to_string(&a.brief) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", a.brief.display())),
    };
    let (provider, kind) = match provider(&a.providers, &a.provider) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let opts = BriefOptions {
        max_repairs: a.max_repairs,
        ..BriefOptions::default()
    };
    let schema = super::schema::spec_schema().schema;
    let out_name = a.output.display().to_string();
    let base: PathBuf = a.output.parent().map(Path::to_path_buf).unwrap_or_default();
    // The same loader as `creative check`: parse, build, then the static checks.
    let validate = |toml: &str| -> Result<(), Refusal> {
        let spec = Spec::parse(toml, Format::Toml, &out_name).map_err(Refusal::Spec)?;
        let campaign = spec.build(&registry(), &base).map_err(Refusal::Spec)?;
        let errors: Vec<String> = super::checks::check(&spec, &campaign, &registry())
            .into_iter()
            .filter(|f| f.level == super::checks::Level::Error)
            .map(|f| f.message)
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Refusal::Checks(errors))
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(CliError::Runtime(e)),
    };
    let source = a.brief.display().to_string();
    let done = rt.block_on(spec_from_brief(
        provider.as_ref(),
        &kind,
        &schema,
        &text,
        &source,
        &validate,
        &opts,
    ));
    match done {
        Ok(o) => {
            for (i, r) in o.refused.iter().enumerate() {
                eprintln!("answer {} refused, sent back for repair: {r}", i + 1);
            }
            if let Err(e) = std::fs::write(&a.output, &o.toml) {
                return fail(format!("{}: {e}", a.output.display()));
            }
            super::out::println(&format!(
                "wrote {} after {} answer(s) (${:.4}); next: creative run {} --dry-run",
                a.output.display(),
                o.rounds,
                o.cost_usd,
                a.output.display()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
