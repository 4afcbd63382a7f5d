//! A reviewer's decisions on delivered assets: approve, or reject with a note.
//!
//! Decisions are appended to `OUT/.creative/review.jsonl`, one JSON object a
//! line; the latest decision on an asset is the one that holds. A resumed run
//! ([`crate::spec::CampaignOptions::resume`]) regenerates each rejected asset's
//! generate step for its job with a new derived seed and the reviewer's notes
//! appended to the prompt ([`Revisions`]), and leaves approved ones untouched;
//! [`annotate_manifest`] records each decision in `manifest.json`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::STATE_DIR;

/// The decisions file, in the output folder's state folder.
pub const REVIEW_FILE: &str = "review.jsonl";

/// Longest note kept, in characters: a note is a sentence or two for the model
/// that regenerates the asset, and it lands in every later prompt.
pub const MAX_NOTE_CHARS: usize = 2000;

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Keep the asset as it is.
    Approved,
    /// Regenerate it on the next `--resume`.
    Rejected,
}

/// One decision on one asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The asset's artifact id (as the manifest names it).
    pub asset: String,
    /// Its job's key.
    pub job: String,
    /// The step that made it.
    pub step: String,
    /// Approve or reject.
    pub verdict: Verdict,
    /// Why, for the model that regenerates it (rejections) or the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub at: u64,
}

/// Why decisions could not be read or stored.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Reading or writing a file failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A line of the decisions file or the manifest is not what it should be.
    #[error("{path}:{line}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 for the whole file).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A decision is not acceptable (an empty id, a note too long).
    #[error("review: {0}")]
    Invalid(String),
}

fn io(path: &Path, e: impl std::fmt::Display) -> ReviewError {
    ReviewError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The decisions file of an output folder.
pub fn review_path(out_dir: &Path) -> PathBuf {
    out_dir.join(STATE_DIR).join(REVIEW_FILE)
}

/// Check a decision before it is stored.
pub fn check(d: &Decision) -> Result<(), ReviewError> {
    let hex = |s: &str| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !hex(&d.asset) || !hex(&d.job) {
        return Err(ReviewError::Invalid(format!(
            "asset `{}` of job `{}`: ids are letters and digits",
            d.asset, d.job
        )));
    }
    if d.step.is_empty() || d.step.len() > 128 {
        return Err(ReviewError::Invalid(format!(
            "asset {}: step name `{}`",
            d.asset, d.step
        )));
    }
    if let Some(n) = &d.note {
        let chars = n.chars().count();
        if chars > MAX_NOTE_CHARS {
            return Err(ReviewError::Invalid(format!(
                "asset {}: the note has {chars} characters; at most {MAX_NOTE_CHARS}",
                d.asset
            )));
        }
    }
    Ok(())
}

/// Append decisions (checked first: none is written if one is bad), synced
/// to disk before returning.
pub fn append(out_dir: &Path, decisions: &[Decision]) -> Result<(), ReviewError> {
    for d in decisions {
        check(d)?;
    }
    let path = review_path(out_dir);
    let mut buf = Vec::new();
    for d in decisions {
        serde_json::to_writer(&mut buf, d).map_err(|e| io(&path, e))?;
        buf.push(b'\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| io(&path, e))?;
    f.write_all(&buf).map_err(|e| io(&path, e))?;
    f.sync_data().map_err(|e| io(&path, e))
}

/// Every decision, in the order made. A torn last line (a crash mid-append)
/// is ignored; a bad line elsewhere is an error naming it.
pub fn read(out_dir: &Path) -> Result<Vec<Decision>, ReviewError> {
    let path = review_path(out_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path, e)),
    };
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Decision>(line) {
            Ok(d) => out.push(d),
            Err(_) if i + 1 == lines.len() && !complete => {}
            Err(e) => {
                return Err(ReviewError::Corrupt {
                    path,
                    line: i + 1,
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(out)
}

/// The decision that holds for each asset (the latest), by asset id.
pub fn latest(decisions: &[Decision]) -> BTreeMap<String, Decision> {
    let mut m = BTreeMap::new();
    for d in decisions {
        m.insert(d.asset.clone(), d.clone());
    }
    m
}

/// What a resume changes for one job's step after rejections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// How many of the step's assets for the job were rejected: the seed of
    /// the regeneration is derived from it, so each round gets a new one.
    pub round: u32,
    /// The reviewers' notes, oldest first, appended to the prompt.
    pub notes: Vec<String>,
}

impl Revision {
    /// A fingerprint for the journal: a revised step does not count as done.
    pub fn fingerprint(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(&self.round.to_le_bytes());
        for n in &self.notes {
            h.update(n.as_bytes());
            h.update(&[0]);
        }
        h.finalize().to_hex().to_string()
    }

    /// The text appended to the prompt.
    pub fn prompt_suffix(&self) -> String {
        if self.notes.is_empty() {
            String::new()
        } else {
            format!(". Reviewer: {}", self.notes.join("; "))
        }
    }
}

/// The revisions rejections ask for, by (job key, step).
#[derive(Debug, Clone, Default)]
pub struct Revisions {
    by_step: HashMap<(String, String), Revision>,
}

impl Revisions {
    /// From the decisions that hold: each rejected asset adds a round to its
    /// (job, step), and its note, if any.
    pub fn from_decisions(decisions: &[Decision]) -> Self {
        let mut by_step: HashMap<(String, String), Revision> = HashMap::new();
        let mut held: Vec<Decision> = latest(decisions).into_values().collect();
        held.sort_by_key(|d| d.at);
        for d in held.into_iter().filter(|d| d.verdict == Verdict::Rejected) {
            let r = by_step.entry((d.job.clone(), d.step.clone())).or_insert(Revision {
                round: 0,
                notes: Vec::new(),
            });
            r.round += 1;
            if let Some(n) = d.note.as_ref().map(|n| n.trim()).filter(|n| !n.is_empty()) {
                if !r.notes.iter().any(|x| x == n) {
                    r.notes.push(n.to_string());
                }
            }
        }
        Revisions { by_step }
    }

    /// The revision of `step` for job `job`, if any.
    pub fn get(&self, job: &str, step: &str) -> Option<&Revision> {
        self.by_step.get(&(job.to_string(), step.to_string()))
    }

    /// Move each revision of a step that does not generate onto the steps that
    /// do: `upstream(step)` names the generate steps it descends from.
    pub fn onto_generators(
        mut self,
        is_generator: impl Fn(&str) -> bool,
        upstream: impl Fn(&str) -> Vec<String>,
    ) -> Self {
        let moved: Vec<((String, String), Revision)> = self
            .by_step
            .iter()
            .filter(|((_, s), _)| !is_generator(s))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for ((job, step), rev) in moved {
            self.by_step.remove(&(job.clone(), step.clone()));
            for g in upstream(&step) {
                let r = self.by_step.entry((job.clone(), g)).or_insert(Revision {
                    round: 0,
                    notes: Vec::new(),
                });
                r.round += rev.round;
                for n in &rev.notes {
                    if !r.notes.contains(n) {
                        r.notes.push(n.clone());
                    }
                }
            }
        }
        self
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_step.is_empty()
    }

    /// The journal's view: a fingerprint per (job, step).
    pub fn fingerprints(&self) -> HashMap<(String, String), String> {
        self.by_step.iter().map(|(k, v)| (k.clone(), v.fingerprint())).collect()
    }
}

/// Record the decisions that hold in `manifest.json`: each decided asset gets
/// `review: {verdict, note, at}`, and the manifest a `review` summary
/// (approved, rejected, undecided). Returns how many assets have a decision.
pub fn annotate_manifest(out_dir: &Path) -> Result<usize, ReviewError> {
    let path = out_dir.join("manifest.json");
    let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
    let mut m: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| ReviewError::Corrupt {
        path: path.clone(),
        line: 0,
        message: e.to_string(),
    })?;
    let held = latest(&read(out_dir)?);
    let (mut approved, mut rejected, mut undecided) = (0u64, 0u64, 0u64);
    if let Some(assets) = m.get_mut("assets").and_then(|a| a.as_array_mut()) {
        for a in assets {
            let id = a.get("id").and_then(|v| v.as_str()).unwrap_or_default().to_string();
            let Some(obj) = a.as_object_mut() else { continue };
            match held.get(&id) {
                Some(d) => {
                    match d.verdict {
                        Verdict::Approved => approved += 1,
                        Verdict::Rejected => rejected += 1,
                    }
                    obj.insert(
                        "review".into(),
                        serde_json::json!({"verdict": d.verdict, "note": d.note, "at": d.at}),
                    );
                }
                None => {
                    undecided += 1;
                    obj.remove("review");
                }
            }
        }
    }
    if let Some(obj) = m.as_object_mut() {
        obj.insert(
            "review".into(),
            serde_json::json!({"approved": approved, "rejected": rejected, "undecided": undecided}),
        );
    }
    let text = serde_json::to_vec_pretty(&m).map_err(|e| io(&path, e))?;
    crate::store::write_atomic(&path, &text, true).map_err(|e| io(&path, e))?;
    Ok((approved + rejected) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(asset: &str, step: &str, verdict: Verdict, note: Option<&str>, at: u64) -> Decision {
        Decision {
            asset: asset.into(),
            job: "j1".into(),
            step: step.into(),
            verdict,
            note: note.map(str::to_string),
            at,
        }
    }

    #[test]
    fn the_latest_decision_on_an_asset_holds_and_each_rejection_adds_a_round() {
        let all = vec![
            d("a1", "hero", Verdict::Rejected, Some("too dark"), 1),
            d("a2", "hero", Verdict::Rejected, Some("mug is cut off"), 2),
            d("a3", "hero", Verdict::Rejected, None, 3),
            d("a3", "hero", Verdict::Approved, None, 4),
        ];
        let r = Revisions::from_decisions(&all);
        let rev = r.get("j1", "hero").unwrap();
        assert_eq!(rev.round, 2);
        assert_eq!(rev.notes, vec!["too dark".to_string(), "mug is cut off".to_string()]);
        assert_eq!(rev.prompt_suffix(), ". Reviewer: too dark; mug is cut off");
    }

    #[test]
    fn a_rejected_rendition_revises_the_generate_step_it_comes_from() {
        let r = Revisions::from_decisions(&[d("a1", "square", Verdict::Rejected, Some("crop"), 1)])
            .onto_generators(|s| s == "hero", |_| vec!["hero".into()]);
        assert!(r.get("j1", "square").is_none());
        assert_eq!(r.get("j1", "hero").unwrap().notes, vec!["crop".to_string()]);
    }

    #[test]
    fn bad_ids_and_long_notes_are_refused_before_anything_is_written() {
        let dir = std::env::temp_dir().join(format!("creative-review-unit-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(STATE_DIR)).unwrap();
        let long = "x".repeat(MAX_NOTE_CHARS + 1);
        let e = append(
            &dir,
            &[
                d("a1", "hero", Verdict::Approved, None, 1),
                d("a2", "hero", Verdict::Rejected, Some(&long), 2),
            ],
        )
        .unwrap_err();
        assert!(e.to_string().contains("at most 2000"), "{e}");
        assert!(read(&dir).unwrap().is_empty());
        let e = append(&dir, &[d("../x", "hero", Verdict::Approved, None, 1)]).unwrap_err();
        assert!(matches!(e, ReviewError::Invalid(_)));
        append(&dir, &[d("a1", "hero", Verdict::Approved, None, 1)]).unwrap();
        // A torn last line is ignored.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(review_path(&dir))
            .unwrap();
        f.write_all(b"{\"asset\":\"a2\",").unwrap();
        assert_eq!(read(&dir).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
