//! `creative advise OUT [--spec FILE]`: findings from a run's report, manifest
//! and review decisions, and the spec edits they propose as a diff.

use std::process::ExitCode;

use creative::agent::advise::{diff, findings, spend_by_step};
use creative::campaign::spec::Spec;
use serde_json::Value;

use super::args::AdviseArgs;
use super::run::DID_NOT_START;

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(DID_NOT_START)
}

fn read_json(path: &std::path::Path) -> Result<Value, String> {
    let b = std::fs::read(path)
        .map_err(|e| format!("{}: {e} (advise on a folder a run delivered into)", path.display()))?;
    serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))
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
    let mut text = String::new();
    if found.is_empty() {
        text.push_str("no findings: pass and rejection rates, gates and regenerations look sound\n");
    }
    for (i, f) in found.iter().enumerate() {
        text.push_str(&format!("{}. {}\n", i + 1, f.message));
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
