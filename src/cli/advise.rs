//! `creative advise OUT [--spec FILE] [--provider ID]`: findings from a run's
//! report, manifest and review decisions, and the spec edits they propose as a
//! diff; with a provider, the findings ranked and explained by its model (the
//! findings and the diff stay the rules').

use std::process::ExitCode;

use creative::agent::advise::{diff, findings, spend_by_step, Finding};
use creative::agent::rank::{rank_findings, report_summary, rule_order, RankOptions, Ranking};
use creative::campaign::review::{latest, Decision, Verdict};
use creative::campaign::spec::Spec;
use serde_json::Value;

use super::args::AdviseArgs;
use super::error::CliError;
use super::run::DID_NOT_START;

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(DID_NOT_START)
}

fn read_json(path: &std::path::Path) -> Result<Value, CliError> {
    let b = std::fs::read(path).map_err(|error| CliError::Read {
        flag: "",
        path: path.to_path_buf(),
        error,
        hint: " (advise on a folder a run delivered into)".into(),
    })?;
    serde_json::from_slice(&b).map_err(|error| CliError::Json {
        path: path.to_path_buf(),
        error,
    })
}

/// Print the findings, the spend per accepted asset by step, and the diff.
pub fn advise(a: AdviseArgs) -> ExitCode {
    let (manifest, report) = match (
        read_json(&a.out.join("manifest.json")),
        read_json(&a.out.join("report.json")),
    ) {
        (Ok(m), Ok(r)) => (m, r),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let decisions = match creative::campaign::review::read(&a.out) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let (spec_text, steps) = match &a.spec {
        Some(p) => {
            let spec = match Spec::from_path(p) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let steps: Vec<Value> = spec
                .doc
                .steps
                .iter()
                .filter_map(|s| serde_json::to_value(s).ok())
                .collect();
            (Some(text), steps)
        }
        None => (None, Vec::new()),
    };
    let found = findings(&manifest, &report, &decisions, &steps);
    let ranking = match &a.provider {
        Some(id) => match ranked(&a, id, &found, &report, &decisions) {
            Ok(r) => r,
            Err(e) => return fail(e),
        },
        None => rule_order(&found, None),
    };
    let mut text = String::new();
    if found.is_empty() {
        text.push_str("no findings: pass and rejection rates, gates and regenerations look sound\n");
    } else if ranking.by_model {
        text.push_str(&format!(
            "findings, ranked by `{}` (${:.4}):\n",
            a.provider.as_deref().unwrap_or_default(),
            ranking.cost_usd
        ));
    }
    if let Some(note) = &ranking.note {
        text.push_str(&format!("note: {note}\n"));
    }
    for (n, r) in ranking.order.iter().enumerate() {
        text.push_str(&format!("{}. [{}] {}\n", n + 1, r.id, found[r.index].message));
        if let Some(why) = &r.rationale {
            text.push_str(&format!("   why here: {why}\n"));
        }
    }
    text.push_str("\nspend per accepted asset (not rejected in review), by step:\n");
    for s in spend_by_step(&manifest, &decisions) {
        text.push_str(&format!(
            "  {:<20} ${:.4} for {} asset(s), {} accepted: {}\n",
            s.step,
            s.cost_usd,
            s.assets,
            s.accepted,
            s.per_accepted_usd.map_or("-".into(), |c| format!("${c:.4} each"))
        ));
    }
    let edits: Vec<_> = found.iter().filter_map(|f| f.edit.clone()).collect();
    match (&spec_text, &a.spec) {
        (Some(t), Some(p)) if !edits.is_empty() => {
            let d = diff(t, &p.display().to_string(), &edits);
            text.push_str("\nproposed changes (apply with `patch -p0 < advice.diff`, or by hand):\n");
            text.push_str(&d);
        }
        (None, _) if !edits.is_empty() => {
            text.push_str("\n(pass --spec FILE to see the proposed changes as a diff of it)\n");
        }
        _ => {}
    }
    super::out::print(&text);
    ExitCode::SUCCESS
}

/// The findings ranked by the model of provider `id`; `Err` only when the
/// provider cannot be set up (a model that fails or answers badly leaves the
/// rules' order, with a note).
fn ranked(
    a: &AdviseArgs,
    id: &str,
    found: &[Finding],
    report: &Value,
    decisions: &[Decision],
) -> Result<Ranking, CliError> {
    let file = a
        .providers
        .clone()
        .or_else(|| a.spec.clone())
        .unwrap_or_else(|| "providers.toml".into());
    let (provider, kind) = super::brief::provider(&file, id)?;
    let held = latest(decisions);
    let rejected = held.values().filter(|d| d.verdict == Verdict::Rejected).count();
    let summary = report_summary(report, held.len() - rejected, rejected);
    let opts = RankOptions {
        max_repairs: a.max_repairs,
        ..RankOptions::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let r = rt.block_on(rank_findings(provider.as_ref(), &kind, found, &summary, &opts))?;
    for (i, why) in r.refused.iter().enumerate() {
        eprintln!("ranking {} refused: {why}", i + 1);
    }
    Ok(r)
}
