//! Advice on a finished run: rule-based findings from its report, manifest and
//! review decisions, with the spec edits they propose as a unified diff the
//! person reviews and applies (`patch -p0`, or by hand).
//!
//! The rules:
//! - a model whose gate pass rate, or whose reviewers' rejection rate, is poor
//!   for a step: moved to the end of the step's provider chain (or named, when
//!   the chain has one provider);
//! - a gate that never fails or always fails;
//! - regeneration rounds that never succeed: the step's policy becomes `flag`,
//!   so a failing output goes to review instead of paying for more rounds;
//! - spend per accepted asset, by step.

use std::collections::BTreeMap;

use serde_json::Value;

use creative_campaign::review::{latest, Decision, Verdict};

/// Fewest judgements (gate checks or review decisions) a rate is read from:
/// below it one bad image is a trend.
pub const MIN_SAMPLES: u64 = 5;

/// A pass rate below this (or a rejection rate above 1 minus it) is poor: the
/// model fails more often than it succeeds.
pub const POOR_RATE: f64 = 0.5;

/// One finding, and the spec edit it proposes.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The step it is about, if one.
    pub step: Option<String>,
    /// What was seen and what to do.
    pub message: String,
    /// The edit, if the rule proposes one.
    pub edit: Option<Edit>,
}

/// An edit to a step's entry in the spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Set `key = value` (a TOML value) in the step's `[[steps]]` entry.
    Set {
        /// The step.
        step: String,
        /// The key.
        key: String,
        /// The new value, as TOML.
        value: String,
    },
}

/// Spend and acceptance of one step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepSpend {
    /// The step.
    pub step: String,
    /// Money its delivered assets cost.
    pub cost_usd: f64,
    /// Delivered assets.
    pub assets: u64,
    /// Assets not rejected by a reviewer.
    pub accepted: u64,
    /// `cost_usd / accepted`.
    pub per_accepted_usd: Option<f64>,
}

/// Per (step, provider, model): gate checks, passes, decided, rejected.
#[derive(Default)]
struct Tally {
    checks: u64,
    passes: u64,
    decided: u64,
    rejected: u64,
}

/// The findings for a run: `manifest` and `report` as the run wrote them,
/// `decisions` from the review, `steps` the spec's steps as JSON
/// (`SpecDoc::steps`).
pub fn findings(manifest: &Value, report: &Value, decisions: &[Decision], steps: &[Value]) -> Vec<Finding> {
    let held = latest(decisions);
    let mut out = Vec::new();
    let mut tallies: BTreeMap<(String, String, String), Tally> = BTreeMap::new();
    let mut regenerated_ok: BTreeMap<String, u64> = BTreeMap::new();
    for a in manifest["assets"].as_array().into_iter().flatten() {
        let p = &a["provenance"];
        let step = a["step"].as_str().unwrap_or_default().to_string();
        let key = (
            step.clone(),
            p["provider"].as_str().unwrap_or_default().to_string(),
            p["model"].as_str().unwrap_or("default").to_string(),
        );
        if key.1.is_empty() {
            continue;
        }
        let t = tallies.entry(key).or_default();
        for g in p["gates"].as_array().into_iter().flatten() {
            t.checks += 1;
            t.passes += u64::from(g["passed"].as_bool().unwrap_or(false));
        }
        if let Some(d) = a["id"].as_str().and_then(|id| held.get(id)) {
            t.decided += 1;
            t.rejected += u64::from(d.verdict == Verdict::Rejected);
        }
        if p["regeneration"].as_u64().unwrap_or(0) > 0 {
            *regenerated_ok.entry(step).or_default() += 1;
        }
    }
    let step_spec = |name: &str| steps.iter().find(|s| s["name"] == name);
    for ((step, provider, model), t) in &tallies {
        let gate_rate = (t.checks >= MIN_SAMPLES).then(|| t.passes as f64 / t.checks as f64);
        let reject_rate = (t.decided >= MIN_SAMPLES).then(|| t.rejected as f64 / t.decided as f64);
        let poor_gates = gate_rate.is_some_and(|r| r < POOR_RATE);
        let poor_review = reject_rate.is_some_and(|r| r > 1.0 - POOR_RATE);
        if !(poor_gates || poor_review) {
            continue;
        }
        let why = match (poor_gates, poor_review) {
            (true, _) => format!(
                "passes {:.0}% of gate checks ({} of {})",
                gate_rate.unwrap_or(0.0) * 100.0,
                t.passes,
                t.checks
            ),
            _ => format!(
                "has {:.0}% of its reviewed assets rejected ({} of {})",
                reject_rate.unwrap_or(0.0) * 100.0,
                t.rejected,
                t.decided
            ),
        };
        let chain: Vec<String> = step_spec(step)
            .and_then(|s| s["providers"].as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let edit = (chain.len() > 1 && chain.first() == Some(provider)).then(|| {
            let mut reordered: Vec<String> = chain.iter().filter(|p| *p != provider).cloned().collect();
            reordered.push(provider.clone());
            Edit::Set {
                step: step.clone(),
                key: "providers".into(),
                value: serde_json::to_string(&reordered).unwrap_or_default().replace(',', ", "),
            }
        });
        let advice = if edit.is_some() {
            "try the next provider first"
        } else {
            "try another model or provider for it"
        };
        out.push(Finding {
            step: Some(step.clone()),
            message: format!("step `{step}`: `{provider}` (model {model}) {why}; {advice}"),
            edit,
        });
    }
    for g in report["gates"].as_array().into_iter().flatten() {
        let (checks, passes) = (g["checks"].as_u64().unwrap_or(0), g["passes"].as_u64().unwrap_or(0));
        let name = g["gate"].as_str().unwrap_or_default();
        if checks < MIN_SAMPLES {
            continue;
        }
        if passes == checks {
            out.push(Finding {
                step: None,
                message: format!(
                    "gate `{name}` passed all {checks} checks: tighten its thresholds, or remove it to save its time"
                ),
                edit: None,
            });
        } else if passes == 0 {
            out.push(Finding {
                step: None,
                message: format!("gate `{name}` failed all {checks} checks: its thresholds are out of reach of these models; loosen them"),
                edit: None,
            });
        }
    }
    for f in report["failures"].as_array().into_iter().flatten() {
        let step = f["step"].as_str().unwrap_or_default();
        if f["class"] != "gate_failed"
            || out.iter().any(|x| {
                x.step.as_deref() == Some(step)
                    && matches!(&x.edit, Some(Edit::Set { key, .. }) if key == "on_gate_fail")
            })
        {
            continue;
        }
        let regenerates = step_spec(step)
            .map(|s| &s["on_gate_fail"])
            .is_some_and(|p| p.is_null() || p == "regenerate" || p["action"] == "regenerate");
        let is_generate = step_spec(step).is_some_and(|s| s["kind"] == "generate");
        if is_generate && regenerates && regenerated_ok.get(step).copied().unwrap_or(0) == 0 {
            out.push(Finding {
                step: Some(step.to_string()),
                message: format!(
                    "step `{step}`: regeneration rounds never produced a passing output (no delivered asset needed one, and jobs still failed its gates): flag failures for review instead of paying for rounds"
                ),
                edit: Some(Edit::Set {
                    step: step.to_string(),
                    key: "on_gate_fail".into(),
                    value: "\"flag\"".into(),
                }),
            });
        }
    }
    out
}

/// Spend per accepted asset, by step, from the manifest and the decisions.
pub fn spend_by_step(manifest: &Value, decisions: &[Decision]) -> Vec<StepSpend> {
    let held = latest(decisions);
    let mut by: BTreeMap<String, StepSpend> = BTreeMap::new();
    for a in manifest["assets"].as_array().into_iter().flatten() {
        let step = a["step"].as_str().unwrap_or_default().to_string();
        let s = by.entry(step.clone()).or_insert_with(|| StepSpend {
            step,
            ..StepSpend::default()
        });
        s.cost_usd += a["provenance"]["cost_usd"].as_f64().unwrap_or(0.0);
        s.assets += 1;
        let rejected = a["id"]
            .as_str()
            .and_then(|id| held.get(id))
            .is_some_and(|d| d.verdict == Verdict::Rejected);
        s.accepted += u64::from(!rejected);
    }
    by.into_values()
        .map(|mut s| {
            s.per_accepted_usd = (s.accepted > 0).then(|| s.cost_usd / s.accepted as f64);
            s
        })
        .collect()
}

/// The edits as a unified diff of `spec_text` (labelled `path`); empty when
/// no edit applies. A key the step does not have yet is added after its `name`.
pub fn diff(spec_text: &str, path: &str, edits: &[Edit]) -> String {
    let old: Vec<&str> = spec_text.lines().collect();
    let mut new: Vec<String> = old.iter().map(|s| s.to_string()).collect();
    for Edit::Set { step, key, value } in edits {
        let Some((start, end)) = step_block(&new, step) else {
            continue;
        };
        let line = format!("{key} = {value}");
        match (start..end).find(|&i| {
            new[i].trim_start().starts_with(&format!("{key} ")) || new[i].trim_start().starts_with(&format!("{key}="))
        }) {
            Some(i) => new[i] = line,
            None => {
                let at = (start..end)
                    .find(|&i| new[i].trim_start().starts_with("name"))
                    .map_or(start + 1, |i| i + 1);
                new.insert(at, line);
            }
        }
    }
    unified(&old, &new, path)
}

/// The lines of `[[steps]]` entry `name`: from its header to the next header.
fn step_block(lines: &[String], name: &str) -> Option<(usize, usize)> {
    let headers: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim_start().starts_with('['))
        .collect();
    for (n, &h) in headers.iter().enumerate() {
        if lines[h].trim() != "[[steps]]" {
            continue;
        }
        let end = headers.get(n + 1).copied().unwrap_or(lines.len());
        let named = (h + 1..end).any(|i| {
            let l = lines[i].trim();
            l.strip_prefix("name")
                .map(|r| r.trim_start())
                .and_then(|r| r.strip_prefix('='))
                .map(|r| r.trim())
                == Some(&format!("\"{name}\""))
        });
        if named {
            return Some((h, end));
        }
    }
    None
}

/// A unified diff with three lines of context, for edits that replace or
/// insert lines (so a line-by-line walk with one look-ahead aligns them).
fn unified(old: &[&str], new: &[String], path: &str) -> String {
    // Align: equal lines are kept; a differing new line followed by the old
    // one is an insertion; else a replacement.
    let mut ops: Vec<(char, String)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) if *o == n => {
                ops.push((' ', n.clone()));
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if new.get(j + 1).map(String::as_str) == Some(*o) => {
                ops.push(('+', n.clone()));
                j += 1;
            }
            (Some(o), Some(n)) => {
                ops.push(('-', o.to_string()));
                ops.push(('+', n.clone()));
                i += 1;
                j += 1;
            }
            (Some(o), None) => {
                ops.push(('-', o.to_string()));
                i += 1;
            }
            (None, Some(n)) => {
                ops.push(('+', n.clone()));
                j += 1;
            }
            (None, None) => break,
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    if changed.is_empty() {
        return String::new();
    }
    let mut out = format!("--- {path}\n+++ {path}\n");
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(3);
        let mut end = (changed[k] + 4).min(ops.len());
        while k + 1 < changed.len() && changed[k + 1] < end + 3 {
            k += 1;
            end = (changed[k] + 4).min(ops.len());
        }
        let old_start = ops[..start].iter().filter(|o| o.0 != '+').count() + 1;
        let new_start = ops[..start].iter().filter(|o| o.0 != '-').count() + 1;
        let old_len = ops[start..end].iter().filter(|o| o.0 != '+').count();
        let new_len = ops[start..end].iter().filter(|o| o.0 != '-').count();
        out.push_str(&format!("@@ -{old_start},{old_len} +{new_start},{new_len} @@\n"));
        for (c, l) in &ops[start..end] {
            out.push(*c);
            out.push_str(l);
            out.push('\n');
        }
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn asset(id: &str, step: &str, provider: &str, passed: bool, regen: u64, cost: f64) -> Value {
        json!({"id": id, "step": step, "provenance": {"provider": provider, "model": "m1", "regeneration": regen,
            "cost_usd": cost, "gates": [{"gate": "sharp", "passed": passed, "score": 0.5}]}})
    }

    const SPEC: &str = "name = \"x\"\n\n[[steps]]\nname = \"hero\"\nkind = \"generate\"\nproviders = [\"cheap\", \"good\"]\nprompt = \"a mug\"\n\n[[steps]]\nname = \"copy\"\nkind = \"generate\"\nproviders = [\"good\"]\n";

    fn steps() -> Vec<Value> {
        vec![
            json!({"name": "hero", "kind": "generate", "providers": ["cheap", "good"]}),
            json!({"name": "copy", "kind": "generate", "providers": ["good"]}),
        ]
    }

    #[test]
    fn a_model_that_mostly_fails_its_gates_moves_behind_the_next_provider_in_the_diff() {
        let assets: Vec<Value> = (0..6)
            .map(|i| asset(&format!("a{i}"), "hero", "cheap", i == 0, 0, 0.04))
            .collect();
        let f = findings(&json!({"assets": assets}), &json!({}), &[], &steps());
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].message
                .contains("`cheap` (model m1) passes 17% of gate checks (1 of 6)"),
            "{}",
            f[0].message
        );
        let edits: Vec<Edit> = f.iter().filter_map(|f| f.edit.clone()).collect();
        let d = diff(SPEC, "campaign.toml", &edits);
        assert!(
            d.contains("-providers = [\"cheap\", \"good\"]\n+providers = [\"good\", \"cheap\"]\n"),
            "{d}"
        );
        assert!(d.starts_with("--- campaign.toml\n+++ campaign.toml\n@@ -3,"), "{d}");
    }

    #[test]
    fn reviewers_rejecting_most_of_a_models_assets_is_a_finding_even_when_gates_pass() {
        let assets: Vec<Value> = (0..5)
            .map(|i| asset(&format!("a{i}"), "copy", "good", true, 0, 0.01))
            .collect();
        let decisions: Vec<Decision> = (0..5)
            .map(|i| Decision {
                asset: format!("a{i}"),
                job: "j".into(),
                step: "copy".into(),
                verdict: if i < 4 { Verdict::Rejected } else { Verdict::Approved },
                note: None,
                at: i,
            })
            .collect();
        let f = findings(&json!({"assets": assets}), &json!({}), &decisions, &steps());
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message
                .contains("80% of its reviewed assets rejected (4 of 5); try another model"),
            "{}",
            f[0].message
        );
        assert_eq!(f[0].edit, None, "one provider: nothing to reorder");
        let spend = spend_by_step(&json!({"assets": assets}), &decisions);
        assert_eq!(spend[0].accepted, 1);
        assert!((spend[0].per_accepted_usd.unwrap() - 0.05).abs() < 1e-9);
    }

    #[test]
    fn gates_that_never_or_always_fail_and_regeneration_that_never_helps_are_found() {
        let report = json!({
            "gates": [{"gate": "format", "checks": 9, "passes": 9}, {"gate": "palette", "checks": 6, "passes": 0}, {"gate": "few", "checks": 2, "passes": 2}],
            "failures": [{"step": "hero", "class": "gate_failed"}, {"step": "hero", "class": "gate_failed"}],
        });
        let f = findings(&json!({"assets": []}), &report, &[], &steps());
        let msgs: Vec<&str> = f.iter().map(|f| f.message.as_str()).collect();
        assert!(msgs[0].contains("gate `format` passed all 9 checks"), "{msgs:?}");
        assert!(msgs[1].contains("gate `palette` failed all 6 checks"), "{msgs:?}");
        assert_eq!(
            f.len(),
            3,
            "the gate with 2 checks says nothing; hero's regeneration is found once: {msgs:?}"
        );
        let edits: Vec<Edit> = f.iter().filter_map(|f| f.edit.clone()).collect();
        let d = diff(SPEC, "c.toml", &edits);
        assert!(
            d.contains(" name = \"hero\"\n+on_gate_fail = \"flag\"\n kind = \"generate\""),
            "{d}"
        );
    }
}
