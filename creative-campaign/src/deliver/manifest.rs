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
    if done.is_empty() {
        return (entry, Vec::new());
    }
    let outputs: BTreeMap<&str, &[ArtifactRecord]> = done.iter().map(|(s, r)| (s.as_str(), &r.outputs[..])).collect();
    let finished = |step: &str| done.get(step).and_then(|r| r.finished_at.clone());
    (entry, delivered_assets(job, deliver, &outputs, &finished))
}

/// The delivered assets of one job from its steps' outputs (by step), in
/// delivery step order, each with its provenance and its sources: the
/// entries `manifest.json` lists, and sinks are handed as each job ends.
/// `finished` gives when a step's record was committed, where that is known.
pub(crate) fn delivered_assets(
    job: &Job,
    deliver: &[String],
    outputs: &BTreeMap<&str, &[ArtifactRecord]>,
    finished: &dyn Fn(&str) -> Option<String>,
) -> Vec<AssetEntry> {
    let mut assets = Vec::new();
    let all: HashMap<&ArtifactId, &ArtifactRecord> =
        outputs.values().flat_map(|r| r.iter().map(|a| (&a.id, a))).collect();
    for step in deliver {
        let Some(recs) = outputs.get(step.as_str()) else {
            continue;
        };
        let finished_at = finished(step);
        for (index, a) in recs.iter().enumerate() {
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
                finished_at: finished_at.clone(),
                provenance: a.provenance.clone(),
                sources: sources(a, &all),
            });
        }
    }
    assets
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FileJournal;
    use creative_core::artifact::Artifact;
    use creative_core::provenance::Provenance;
    use creative_core::store::Journal;

    fn generation(text: &str, latency_ms: f64, attempt: u32, cached: bool) -> Artifact {
        Artifact::text_plain(text).with_provenance(Provenance {
            step: "hero".into(),
            provider: Some("art".into()),
            model: Some("m-1".into()),
            latency_ms,
            attempt,
            cached,
            ..Provenance::default()
        })
    }

    #[tokio::test]
    async fn entries_carry_the_latency_attempt_and_finish_time_the_journal_recorded_even_after_reopening() {
        let dir = std::env::temp_dir().join(format!("creative-manifest-recorded-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let job = Job::new([("product", "mug")]);
        let before = crate::store::utc_now();
        {
            let j = FileJournal::open(&dir, true).unwrap();
            j.record(&job, "hero", "in", &[generation("fresh", 812.5, 2, false)])
                .await
                .unwrap();
            let served = generation("served", 0.0, 0, true);
            j.record(&job, "alt", "in", &[served]).await.unwrap();
        }
        let after = crate::store::utc_now();
        // Read back as a resume would: a new journal over the same folder.
        let index = FileJournal::index(&dir.join(FileJournal::FILE)).unwrap();
        let records: Vec<JournalRecord> = index.iter().map(Result::unwrap).collect();
        let steps = ["hero".to_string(), "alt".to_string()];
        let m = manifest_from_records("c", "h", [&job], &steps, &steps, &records);
        assert_eq!(m.library_version, env!("CARGO_PKG_VERSION"));
        let (hero, alt) = (&m.assets[0], &m.assets[1]);
        assert_eq!(
            (
                hero.provenance.latency_ms,
                hero.provenance.attempt,
                hero.provenance.cached
            ),
            (812.5, 2, false)
        );
        assert_eq!(hero.provenance.model.as_deref(), Some("m-1"));
        assert_eq!((alt.provenance.attempt, alt.provenance.cached), (0, true));
        for a in [hero, alt] {
            let at = a.finished_at.clone().expect("a recorded step's finish time");
            assert!(humantime::parse_rfc3339(&at).is_ok(), "{at}");
            // Same width, so text order is time order.
            assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_journal_line_written_before_steps_were_stamped_gives_an_entry_without_a_finish_time() {
        let job = Job::new([("product", "mug")]);
        let stamped = JournalRecord {
            job: job.key().to_string(),
            vars: (**job.vars()).clone(),
            step: "hero".into(),
            outputs: vec![ArtifactRecord::of(&Artifact::text_plain("old"))],
            fingerprint: String::new(),
            finished_at: Some(crate::store::utc_now()),
        };
        // The line an older version wrote: the same record, with no time.
        let mut line = serde_json::to_value(&stamped).unwrap();
        assert!(line.as_object_mut().unwrap().remove("finished_at").is_some());
        let rec: JournalRecord = serde_json::from_value(line).unwrap();
        assert_eq!(rec.finished_at, None);
        let steps = ["hero".to_string()];
        let m = manifest_from_records("c", "h", [&job], &steps, &steps, &[rec]);
        assert_eq!(m.assets.len(), 1);
        assert_eq!(m.assets[0].finished_at, None);
        let json = serde_json::to_string(&m.assets[0]).unwrap();
        assert!(!json.contains("finished_at"), "{json}");
    }
}
