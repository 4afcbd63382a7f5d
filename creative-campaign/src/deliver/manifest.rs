//! The manifest: one entry per delivered asset, with its full provenance.

use std::collections::{BTreeMap, HashMap};

use crate::store::{ArtifactRecord, JournalRecord};
use creative_core::artifact::ArtifactId;
use creative_core::deliver::{AssetEntry, JobEntry, Manifest, SourceEntry};
use creative_core::job::Job;

/// One job's manifest entries from its journal records (by step): its
/// [`JobEntry`] and its delivered assets, in step order. Each asset and source
/// keeps the provenance recorded when its step ran (latency, attempt, cached)
/// and the time its step finished, so entries read back on a resume are the
/// ones the first run wrote.
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
                finished_at: rec.finished_at.clone(),
                provenance: a.provenance.clone(),
                sources: sources(a, &all),
            });
        }
    }
    (entry, assets)
}

/// Build a manifest from journal records (any order; shards' records may be
/// concatenated), in memory. `jobs` and `steps` give the order; `deliver`
/// the steps whose outputs are assets. A campaign streams the same entries
/// into `manifest.json` instead (see [`job_entries`]). The run's own times
/// ([`Manifest::started_at`], [`Manifest::finished_at`]) are left to the
/// caller, which knows them.
pub fn manifest_from_records<'a>(
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
        library_version: crate::VERSION.to_string(),
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
                provenance: p.provenance.clone(),
            });
            queue.extend(p.provenance.parents.iter());
        }
    }
    out
}
