//! The manifest: one entry per delivered asset, with its full provenance.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::artifact::{ArtifactId, MediaType, Meta};
use crate::job::{Job, Vars};
use crate::provenance::Provenance;
use crate::store::{ArtifactRecord, JournalRecord};

/// A delivered asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetEntry {
    /// The job's key.
    pub job: String,
    /// The job's variables.
    pub vars: Vars,
    /// The step that made it.
    pub step: String,
    /// Its position among the step's outputs.
    pub index: usize,
    /// Content hash (BLAKE3).
    pub id: ArtifactId,
    /// Media type.
    pub media: MediaType,
    /// Size in bytes.
    pub bytes: u64,
    /// Where the directory sink wrote it, relative to the output folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Metadata.
    #[serde(default)]
    pub meta: Meta,
    /// Provenance (timing and attempt numbers, which differ from run to run, are
    /// in the report instead).
    pub provenance: Provenance,
    /// The artifacts it was made from, within its job, each with its provenance:
    /// a rendition's generation, with its prompt, model, params and seed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceEntry>,
}

/// An artifact an asset was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceEntry {
    /// Content hash.
    pub id: ArtifactId,
    /// Media type.
    pub media: MediaType,
    /// Provenance.
    pub provenance: Provenance,
}

/// A job of the campaign and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEntry {
    /// The job's key.
    pub key: String,
    /// Its variables.
    pub vars: Vars,
    /// Whether every step finished.
    pub complete: bool,
    /// Steps finished.
    pub steps_done: Vec<String>,
}

/// What a campaign delivered. Written as `manifest.json`.
///
/// Deterministic: built from journal records in job and step order, with no
/// timestamps, so a resumed run gives the same manifest as an uninterrupted one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The campaign's name.
    pub campaign: String,
    /// BLAKE3 of the spec's canonical JSON.
    pub spec_hash: String,
    /// Every job.
    pub jobs: Vec<JobEntry>,
    /// Every delivered asset.
    pub assets: Vec<AssetEntry>,
}

fn stable(p: &Provenance) -> Provenance {
    let mut p = p.clone();
    p.latency_ms = 0.0;
    p.attempt = 0;
    p.cached = false;
    p
}

impl AssetEntry {
    /// Variables for file-name templates: the job's, plus `step`, `index`, `ext`,
    /// `id` (short hash) and `job` (key).
    pub fn name_vars(&self) -> Vars {
        let mut v = self.vars.clone();
        v.insert("step".into(), self.step.clone().into());
        v.insert("index".into(), self.index.into());
        v.insert("ext".into(), self.media.extension().into());
        v.insert("id".into(), self.id.short().into());
        v.insert("job".into(), self.job.clone().into());
        v
    }
}

/// A written manifest, counted: what a finished campaign returns instead of
/// holding every entry (read the entries with [`Manifest::read`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSummary {
    /// The campaign's name.
    pub campaign: String,
    /// BLAKE3 of the spec's canonical JSON.
    pub spec_hash: String,
    /// Jobs listed.
    pub jobs: u64,
    /// Jobs whose every step finished.
    pub jobs_complete: u64,
    /// Assets listed.
    pub assets: u64,
    /// Where `manifest.json` was written, when it was (read its entries with
    /// [`Manifest::read`]).
    #[serde(skip)]
    pub path: Option<std::path::PathBuf>,
}

impl ManifestSummary {
    /// Whether every job finished.
    pub fn complete(&self) -> bool {
        self.jobs_complete == self.jobs
    }
}

/// One job's manifest entries from its journal records (by step): its
/// [`JobEntry`] and its delivered assets, in step order.
pub fn job_entries(
    job: &Job,
    steps: &[String],
    deliver: &[String],
    done: &BTreeMap<String, JournalRecord>,
) -> (JobEntry, Vec<AssetEntry>) {
    let steps_done: Vec<String> = steps
        .iter()
        .filter(|s| done.contains_key(s.as_str()))
        .cloned()
        .collect();
    let entry = JobEntry {
        key: job.key().to_string(),
        vars: (**job.vars()).clone(),
        complete: steps_done.len() == steps.len(),
        steps_done,
    };
    let mut assets = Vec::new();
    if done.is_empty() {
        return (entry, assets);
    }
    let all: HashMap<&ArtifactId, &ArtifactRecord> = done
        .values()
        .flat_map(|r| r.outputs.iter().map(|a| (&a.id, a)))
        .collect();
    for step in deliver {
        let Some(rec) = done.get(step.as_str()) else { continue };
        for (index, a) in rec.outputs.iter().enumerate() {
            assets.push(AssetEntry {
                job: job.key().to_string(),
                vars: (**job.vars()).clone(),
                step: step.clone(),
                index,
                id: a.id.clone(),
                media: a.media.clone(),
                bytes: a.bytes,
                path: None,
                meta: a.meta.clone(),
                provenance: stable(&a.provenance),
                sources: sources(a, &all),
            });
        }
    }
    (entry, assets)
}

impl Manifest {
    /// Build from journal records (any order; shards' records may be
    /// concatenated), in memory. `jobs` and `steps` give the order; `deliver`
    /// the steps whose outputs are assets. A campaign streams the same entries
    /// into `manifest.json` instead (see [`job_entries`]).
    pub fn from_records<'a>(
        campaign: &str,
        spec_hash: &str,
        jobs: impl IntoIterator<Item = &'a Job>,
        steps: &[String],
        deliver: &[String],
        records: &[JournalRecord],
    ) -> Manifest {
        let mut by_job: HashMap<&str, BTreeMap<String, JournalRecord>> = HashMap::new();
        for r in records {
            by_job
                .entry(r.job.as_str())
                .or_default()
                .insert(r.step.clone(), r.clone());
        }
        let mut out = Manifest {
            campaign: campaign.to_string(),
            spec_hash: spec_hash.to_string(),
            ..Manifest::default()
        };
        let none = BTreeMap::new();
        for job in jobs {
            let (entry, assets) = job_entries(job, steps, deliver, by_job.get(job.key()).unwrap_or(&none));
            out.jobs.push(entry);
            out.assets.extend(assets);
        }
        out
    }

    /// Read a `manifest.json`.
    pub fn read(path: &std::path::Path) -> Result<Manifest, crate::store::StoreError> {
        let f =
            std::fs::File::open(path).map_err(|e| crate::store::StoreError(format!("open {}: {e}", path.display())))?;
        serde_json::from_reader(std::io::BufReader::new(f))
            .map_err(|e| crate::store::StoreError(format!("read {}: {e}", path.display())))
    }
}

/// The ancestors of `a` within its job, nearest first, each once.
fn sources(a: &ArtifactRecord, all: &HashMap<&ArtifactId, &ArtifactRecord>) -> Vec<SourceEntry> {
    let mut out: Vec<SourceEntry> = Vec::new();
    let mut queue: Vec<&ArtifactId> = a.provenance.parents.iter().collect();
    let mut i = 0;
    while i < queue.len() {
        let id = queue[i];
        i += 1;
        if out.iter().any(|s| &s.id == id) {
            continue;
        }
        if let Some(p) = all.get(id) {
            out.push(SourceEntry {
                id: p.id.clone(),
                media: p.media.clone(),
                provenance: stable(&p.provenance),
            });
            queue.extend(p.provenance.parents.iter());
        }
    }
    out
}
