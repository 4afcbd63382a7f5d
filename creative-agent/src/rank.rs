//! The advice of [`crate::advise`] ranked and explained by a language model.
//!
//! The rule-based findings stay the source of truth: the model neither adds,
//! removes nor edits a finding, and the diff is built from the rules' edits
//! whatever it says. It is given the findings (each with an id, `F1`, `F2`...)
//! and a summary of the report, and answers, constrained by a JSON Schema where
//! the provider supports structured output (as [`crate::brief`] does), with
//! every finding id once, most important first, each with a short rationale.
//! An answer that is not that (not JSON, an unknown or repeated id, a finding
//! left out, an empty rationale) goes back to the model with what was wrong, a
//! bounded number of times; after that, or when the call itself fails, the
//! findings keep the rules' order and the outcome says why in a note.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use creative_core::provider::{CallCtx, Provider};
use creative_core::request::{Request, Task};
use creative_core::step::parse_json_text;

use crate::advise::Finding;
use crate::brief::structured_output_named;

/// Most repair rounds a caller may ask for: a model that has not ranked a
/// handful of findings in five tries will not.
pub const MAX_RANK_REPAIRS: u32 = 5;

/// Longest rationale kept, in characters: it is one sentence beside a finding.
pub const MAX_RATIONALE_CHARS: usize = 400;

/// Most findings sent to the model; more are kept in the rules' order after
/// the ranked ones (a run's advice is a page, not a report).
pub const MAX_RANKED_FINDINGS: usize = 100;

/// Largest report summary sent, in bytes (longer lists in it are cut).
pub const MAX_SUMMARY_BYTES: usize = 16 * 1024;

/// How the findings are ranked.
#[derive(Debug, Clone, PartialEq)]
pub struct RankOptions {
    /// Repair rounds after the first answer (0 to [`MAX_RANK_REPAIRS`]). Default 2.
    pub max_repairs: u32,
    /// Sampling temperature (0 to 2). Default 0.2.
    pub temperature: f32,
    /// Most output tokens per answer (256 to 65,536), when set.
    pub max_tokens: Option<u32>,
}

impl Default for RankOptions {
    fn default() -> Self {
        RankOptions {
            max_repairs: 2,
            temperature: 0.2,
            max_tokens: None,
        }
    }
}

/// Why the findings could not be ranked at all (bad options); a model that
/// fails or answers badly is not an error: the rules' order is kept.
#[derive(Debug, thiserror::Error)]
pub enum RankError {
    /// An option is out of range.
    #[error("advise: {0}")]
    Settings(String),
}

impl RankError {
    /// The class of the failure, for policy: always `Invalid`.
    pub fn kind(&self) -> creative_core::error::ErrorKind {
        creative_core::error::ErrorKind::Invalid
    }
}

impl RankOptions {
    /// Check every number against its range.
    pub fn check(&self) -> Result<(), RankError> {
        if self.max_repairs > MAX_RANK_REPAIRS {
            return Err(RankError::Settings(format!(
                "max_repairs must be 0 to {MAX_RANK_REPAIRS}, got {}",
                self.max_repairs
            )));
        }
        if !(self.temperature.is_finite() && (0.0..=2.0).contains(&self.temperature)) {
            return Err(RankError::Settings(format!(
                "temperature must be 0 to 2, got {}",
                self.temperature
            )));
        }
        if let Some(t) = self.max_tokens {
            if !(256..=65_536).contains(&t) {
                return Err(RankError::Settings(format!("max_tokens must be 256 to 65536, got {t}")));
            }
        }
        Ok(())
    }
}

/// One finding in the ranked order.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Its id (`F1` is the rules' first finding).
    pub id: String,
    /// Its position in the rules' list.
    pub index: usize,
    /// Why the model put it here; `None` in the rules' order.
    pub rationale: Option<String>,
}

/// The findings in the order to act on them.
#[derive(Debug, Clone)]
pub struct Ranking {
    /// Every finding once.
    pub order: Vec<Ranked>,
    /// Whether the order is the model's (else the rules').
    pub by_model: bool,
    /// Why the rules' order was kept, when it was.
    pub note: Option<String>,
    /// Answers asked for.
    pub rounds: u32,
    /// What was wrong with each refused answer, in order.
    pub refused: Vec<String>,
    /// Money the calls cost, in US dollars.
    pub cost_usd: f64,
}

/// The id of the finding at `index` in the rules' list.
pub fn finding_id(index: usize) -> String {
    format!("F{}", index + 1)
}

/// The findings in the rules' order, with `note` saying why.
pub fn rule_order(findings: &[Finding], note: Option<String>) -> Ranking {
    Ranking {
        order: (0..findings.len())
            .map(|i| Ranked {
                id: finding_id(i),
                index: i,
                rationale: None,
            })
            .collect(),
        by_model: false,
        note,
        rounds: 0,
        refused: Vec::new(),
        cost_usd: 0.0,
    }
}

/// The schema of the answer.
pub fn answer_schema(ids: &[String]) -> Value {
    json!({
        "type": "object",
        "required": ["ranking"],
        "additionalProperties": false,
        "properties": {"ranking": {
            "type": "array",
            "description": "Every finding id once, the one to act on first at the top.",
            "items": {
                "type": "object",
                "required": ["id", "rationale"],
                "additionalProperties": false,
                "properties": {
                    "id": {"type": "string", "enum": ids},
                    "rationale": {"type": "string", "description": "One short sentence: why it ranks here, citing the report."}
                }
            }
        }}
    })
}

/// A report cut to what ranking needs: status, jobs, totals, providers,
/// gates, failure groups and the review's counts, with long lists cut so it
/// stays under [`MAX_SUMMARY_BYTES`].
pub fn report_summary(report: &Value, approved: usize, rejected: usize) -> Value {
    let mut keep = 50usize;
    loop {
        let cut = |k: &str| match &report[k] {
            Value::Array(a) => Value::Array(a.iter().take(keep).cloned().collect()),
            v => v.clone(),
        };
        let s = json!({
            "campaign": report["campaign"], "status": report["status"], "jobs": report["jobs"],
            "totals": report["totals"], "providers": cut("providers"), "gates": cut("gates"),
            "failure_groups": cut("failure_groups"),
            "review": {"approved": approved, "rejected": rejected},
        });
        if keep == 0 || s.to_string().len() <= MAX_SUMMARY_BYTES {
            return s;
        }
        keep /= 2;
    }
}

const SYSTEM: &str = "You rank the findings of `creative advise` on a finished creative campaign run, so a person acts on the most important first. \
The findings are facts computed by rules from the run's report and a reviewer's decisions; do not invent, merge or drop findings. \
Rank by what the fix saves or improves: money wasted on refused or rejected assets first, then quality, then housekeeping. \
Answer with one JSON object and nothing else: {\"ranking\": [{\"id\": \"F2\", \"rationale\": \"<one short sentence citing the report>\"}, ...]} listing every finding id exactly once.";

/// Ask `provider` (of kind `provider_kind`) to rank `findings` given the
/// report `summary` (see [`report_summary`]); the rules' order, with a note,
/// whenever the model fails or never answers as asked.
pub async fn rank_findings(
    provider: &dyn Provider,
    provider_kind: &str,
    findings: &[Finding],
    summary: &Value,
    opts: &RankOptions,
) -> Result<Ranking, RankError> {
    opts.check()?;
    if findings.is_empty() {
        return Ok(rule_order(findings, None));
    }
    let sent = findings.len().min(MAX_RANKED_FINDINGS);
    let ids: Vec<String> = (0..sent).map(finding_id).collect();
    let schema = answer_schema(&ids);
    let raw = structured_output_named(provider_kind, "advice_ranking", &schema);
    let system = format!("{SYSTEM}\n\nJSON Schema of the answer:\n{schema}");
    let mut listed = String::new();
    for (i, f) in findings.iter().take(sent).enumerate() {
        listed.push_str(&format!("{}: {}\n", finding_id(i), f.message));
    }
    let (mut refused, mut cost) = (Vec::new(), 0.0);
    let mut previous: Option<(String, String)> = None;
    for round in 1..=opts.max_repairs + 1 {
        let mut prompt = format!("Findings:\n{listed}\nReport summary:\n{summary}");
        if let Some((answer, error)) = &previous {
            prompt.push_str(&format!(
                "\n\nYour previous answer:\n```json\n{answer}\n```\nIt was refused: {error}\nAnswer again with the whole corrected JSON object."
            ));
        }
        let mut req = Request::new(Task::Text, prompt);
        req.params.system = Some(system.clone());
        req.params.temperature = Some(opts.temperature);
        req.params.max_tokens = opts.max_tokens;
        req.raw = raw.clone();
        let g = match provider.generate(&req, &CallCtx::detached()).await {
            Ok(g) => g,
            Err(e) => {
                let mut r = rule_order(
                    findings,
                    Some(format!(
                        "the model call failed ({}: {}); findings are in the rules' order",
                        e.kind(),
                        e.message()
                    )),
                );
                (r.rounds, r.refused, r.cost_usd) = (round, refused, cost);
                return Ok(r);
            }
        };
        cost += g.usage.cost_usd;
        let text = g
            .artifacts
            .iter()
            .find_map(|a| a.text())
            .unwrap_or_default()
            .to_string();
        match read_ranking(&text, &ids) {
            Ok(mut order) => {
                // Findings past what was sent keep the rules' order, after.
                order.extend((sent..findings.len()).map(|i| Ranked {
                    id: finding_id(i),
                    index: i,
                    rationale: None,
                }));
                return Ok(Ranking {
                    order,
                    by_model: true,
                    note: None,
                    rounds: round,
                    refused,
                    cost_usd: cost,
                });
            }
            Err(e) => {
                let e = e.to_string();
                refused.push(e.clone());
                let shown: String = text.chars().take(4000).collect();
                previous = Some((shown, e));
            }
        }
    }
    let last = refused.last().cloned().unwrap_or_default();
    let mut r = rule_order(
        findings,
        Some(format!(
            "the model's ranking was refused {} time(s) (last: {last}); findings are in the rules' order",
            refused.len()
        )),
    );
    (r.rounds, r.refused, r.cost_usd) = (opts.max_repairs + 1, refused, cost);
    Ok(r)
}

/// Why an answer's ranking was refused, naming the entry (`ranking[i]`) and
/// the id; the message goes back to the model for repair.
#[derive(Debug, thiserror::Error)]
enum RankingRefused {
    /// Not JSON at all.
    #[error("the answer is not JSON (it begins: {begins:?})")]
    NotJson {
        /// Its first 200 characters.
        begins: String,
    },
    /// JSON without a `ranking` list.
    #[error("the answer has no `ranking` array")]
    NoRanking,
    /// An entry without a string `id`.
    #[error("ranking[{at}].id is missing or not a string")]
    NoId {
        /// The entry's index.
        at: usize,
    },
    /// An id that was not sent.
    #[error("ranking[{at}].id `{id}` is not a finding id; the ids are {ids}")]
    UnknownId {
        /// The entry's index.
        at: usize,
        /// The id given.
        id: String,
        /// The ids sent, comma-separated.
        ids: String,
    },
    /// An id listed a second time.
    #[error("ranking[{at}].id `{id}` is listed twice")]
    Twice {
        /// The second entry's index.
        at: usize,
        /// The id.
        id: String,
    },
    /// An entry with an empty rationale.
    #[error("ranking[{at}] (`{id}`) has no rationale")]
    NoRationale {
        /// The entry's index.
        at: usize,
        /// Its id.
        id: String,
    },
    /// Ids sent but not ranked.
    #[error("the ranking leaves out {ids}; list every finding id once")]
    Missing {
        /// The ids left out, comma-separated.
        ids: String,
    },
}

/// The order an answer gives, checked against the ids sent: every one once,
/// none other, each with a rationale (cut to [`MAX_RATIONALE_CHARS`]).
fn read_ranking(text: &str, ids: &[String]) -> Result<Vec<Ranked>, RankingRefused> {
    let v = parse_json_text(text).ok_or_else(|| RankingRefused::NotJson {
        begins: text.chars().take(200).collect(),
    })?;
    let list = match &v {
        Value::Object(m) => m.get("ranking").and_then(Value::as_array),
        _ => None,
    }
    .ok_or(RankingRefused::NoRanking)?;
    let mut seen = BTreeSet::new();
    let mut order = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let id = item["id"].as_str().ok_or(RankingRefused::NoId { at: i })?;
        let index = ids
            .iter()
            .position(|x| x == id)
            .ok_or_else(|| RankingRefused::UnknownId {
                at: i,
                id: id.to_string(),
                ids: ids.join(", "),
            })?;
        if !seen.insert(index) {
            return Err(RankingRefused::Twice {
                at: i,
                id: id.to_string(),
            });
        }
        let rationale = item["rationale"].as_str().map(str::trim).unwrap_or_default();
        if rationale.is_empty() {
            return Err(RankingRefused::NoRationale {
                at: i,
                id: id.to_string(),
            });
        }
        let rationale = match rationale.char_indices().nth(MAX_RATIONALE_CHARS) {
            Some((at, _)) => format!("{}…", &rationale[..at]),
            None => rationale.to_string(),
        };
        order.push(Ranked {
            id: id.to_string(),
            index,
            rationale: Some(rationale),
        });
    }
    let missing: Vec<&str> = (0..ids.len())
        .filter(|i| !seen.contains(i))
        .map(|i| ids[i].as_str())
        .collect();
    if !missing.is_empty() {
        return Err(RankingRefused::Missing {
            ids: missing.join(", "),
        });
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(finding_id).collect()
    }

    #[test]
    fn a_complete_ranking_is_read_in_the_model_s_order() {
        let r = read_ranking(
            r#"{"ranking": [{"id": "F2", "rationale": "costs most"}, {"id": "F1", "rationale": "cheap fix"}]}"#,
            &ids(2),
        )
        .unwrap();
        assert_eq!(r.iter().map(|r| r.index).collect::<Vec<_>>(), vec![1, 0]);
        assert_eq!(r[0].rationale.as_deref(), Some("costs most"));
    }

    #[test]
    fn unknown_repeated_missing_ids_and_empty_rationales_are_refused_saying_which() {
        let e = read_ranking(r#"{"ranking": [{"id": "F9", "rationale": "x"}]}"#, &ids(2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`F9` is not a finding id; the ids are F1, F2"), "{e}");
        let e = read_ranking(
            r#"{"ranking": [{"id": "F1", "rationale": "x"}, {"id": "F1", "rationale": "y"}]}"#,
            &ids(2),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("listed twice"), "{e}");
        let e = read_ranking(r#"{"ranking": [{"id": "F1", "rationale": "x"}]}"#, &ids(2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("leaves out F2"), "{e}");
        let e = read_ranking(r#"{"ranking": [{"id": "F1", "rationale": " "}]}"#, &ids(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no rationale"), "{e}");
        assert!(read_ranking("F1 then F2", &ids(2))
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
        assert!(read_ranking("[1]", &ids(2))
            .unwrap_err()
            .to_string()
            .contains("no `ranking`"));
    }

    #[test]
    fn options_out_of_range_are_refused_with_the_range() {
        let o = RankOptions {
            max_repairs: 6,
            ..RankOptions::default()
        };
        assert!(o.check().unwrap_err().to_string().contains("0 to 5, got 6"));
    }

    #[test]
    fn a_large_report_summary_is_cut_to_its_bound() {
        let gates: Vec<Value> = (0..5000)
            .map(|i| json!({"gate": format!("g{i}"), "checks": 1}))
            .collect();
        let s = report_summary(&json!({"status": "failed", "gates": gates}), 1, 2);
        assert!(s.to_string().len() <= MAX_SUMMARY_BYTES);
        assert_eq!(s["review"]["rejected"], 2);
        assert!(!s["gates"].as_array().unwrap().is_empty());
    }
}
