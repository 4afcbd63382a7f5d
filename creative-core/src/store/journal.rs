//! The run journal on disk: an append-only JSON-lines file.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::artifact::{Artifact, ArtifactId, MediaType, Meta};
use crate::job::{Job, Vars};
use crate::provenance::Provenance;
use crate::store::blobs::{sync_dir, BlobStore};
use crate::store::{Journal, StoreError};

/// An artifact as stored in the journal and the cache: everything but the
/// payload, which lives in a [`BlobStore`] under `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// Content hash.
    pub id: ArtifactId,
    /// Media type.
    pub media: MediaType,
    /// Payload size in bytes.
    pub bytes: u64,
    /// Metadata.
    #[serde(default)]
    pub meta: Meta,
    /// Provenance.
    #[serde(default)]
    pub provenance: Provenance,
}

impl ArtifactRecord {
    /// The record of an artifact.
    pub fn of(a: &Artifact) -> Self {
        ArtifactRecord {
            id: a.id().clone(),
            media: a.media().clone(),
            bytes: a.data().len() as u64,
            meta: a.meta().clone(),
            provenance: a.provenance().clone(),
        }
    }

    /// The artifact, given its payload (already checked against `id`).
    pub fn into_artifact(self, data: Bytes) -> Artifact {
        Artifact::from_parts(self.id, self.media, data, self.meta, self.provenance)
    }
}

/// One line of the journal: a finished step of a job, with its outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalRecord {
    /// The job's key.
    pub job: String,
    /// The job's variables.
    pub vars: Vars,
    /// The step's name.
    pub step: String,
    /// The step's outputs, in order.
    pub outputs: Vec<ArtifactRecord>,
}

/// A journal in a folder: `journal.jsonl` plus the payloads in `objects/`.
///
/// `record` writes every payload (temporary name, fsync, rename, fsync of the
/// folder), then appends one line and fsyncs the file: a step counts as done
/// only once all of that is on disk. A line torn by a kill is cut off when the
/// journal is opened again, so that step simply runs again.
///
/// Records can be read back with [`FileJournal::read_records`], which is how the
/// manifest and the report are computed, and how the journals of shards merge.
pub struct FileJournal {
    path: PathBuf,
    blobs: BlobStore,
    file: Arc<Mutex<File>>,
    done: Mutex<HashMap<(String, String), Vec<ArtifactRecord>>>,
}

impl std::fmt::Debug for FileJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileJournal")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileJournal {
    /// The journal file's name inside its folder.
    pub const FILE: &'static str = "journal.jsonl";

    /// Open the journal in `dir`.
    ///
    /// With `resume`, the steps it records count as done and are not run again.
    /// Without, an existing journal is moved aside to `journal.jsonl.prev` and a
    /// fresh one is started (payloads are kept: they are content addressed).
    pub fn open(dir: impl AsRef<Path>, resume: bool) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| StoreError(format!("create {}: {e}", dir.display())))?;
        let path = dir.join(Self::FILE);
        let mut done = HashMap::new();
        if resume {
            for r in Self::read_records(&path)? {
                done.insert((r.job.clone(), r.step.clone()), r.outputs);
            }
        } else if path.exists() {
            let prev = dir.join(format!("{}.prev", Self::FILE));
            fs::rename(&path, &prev).map_err(|e| StoreError(format!("move {} aside: {e}", path.display())))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| StoreError(format!("open {}: {e}", path.display())))?;
        sync_dir(&path).map_err(|e| StoreError(format!("sync {}: {e}", dir.display())))?;
        Ok(FileJournal {
            path,
            blobs: BlobStore::new(dir.join("objects")),
            file: Arc::new(Mutex::new(file)),
            done: Mutex::new(done),
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The payload store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Read every complete record of a journal file (none if it does not exist).
    ///
    /// A last line torn by a kill is cut off the file, so that later appends start
    /// on a fresh line. A later record for the same job and step replaces an
    /// earlier one.
    pub fn read_records(path: &Path) -> Result<Vec<JournalRecord>, StoreError> {
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError(format!("read {}: {e}", path.display()))),
        };
        let complete = match text.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => 0,
        };
        if complete < text.len() {
            tracing::warn!(path = %path.display(), "cutting off a torn last journal line");
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| StoreError(format!("open {}: {e}", path.display())))?;
            f.set_len(complete as u64)
                .and_then(|_| f.sync_all())
                .map_err(|e| StoreError(format!("truncate {}: {e}", path.display())))?;
        }
        let mut out: Vec<JournalRecord> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        for (n, line) in text[..complete].split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let r: JournalRecord = serde_json::from_slice(line)
                .map_err(|e| StoreError(format!("{} line {}: {e}", path.display(), n + 1)))?;
            match index.get(&(r.job.clone(), r.step.clone())) {
                Some(&i) => out[i] = r,
                None => {
                    index.insert((r.job.clone(), r.step.clone()), out.len());
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    fn record_blocking(
        path: &Path,
        blobs: &BlobStore,
        file: &Mutex<File>,
        line: &[u8],
        outputs: &[Artifact],
    ) -> Result<(), StoreError> {
        for a in outputs {
            blobs.put(a.id(), a.data(), true)?;
        }
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        f.seek(SeekFrom::End(0))
            .and_then(|_| f.write_all(line))
            .and_then(|_| f.sync_data())
            .map_err(|e| StoreError(format!("append to {}: {e}", path.display())))
    }
}

#[async_trait]
impl Journal for FileJournal {
    async fn lookup(&self, job: &Job, step: &str) -> Result<Option<Vec<Artifact>>, StoreError> {
        let records = {
            let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
            match done.get(&(job.key().to_string(), step.to_string())) {
                Some(r) => r.clone(),
                None => return Ok(None),
            }
        };
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(records.len());
            for r in records {
                match blobs.get(&r.id, &r.media)? {
                    Some(data) => out.push(r.into_artifact(data)),
                    // A payload lost since: run the step again rather than fail.
                    None => return Ok(None),
                }
            }
            Ok(Some(out))
        })
        .await
        .map_err(|e| StoreError(format!("journal read task failed: {e}")))?
    }

    async fn record(&self, job: &Job, step: &str, outputs: &[Artifact]) -> Result<(), StoreError> {
        let rec = JournalRecord {
            job: job.key().to_string(),
            vars: (**job.vars()).clone(),
            step: step.to_string(),
            outputs: outputs.iter().map(ArtifactRecord::of).collect(),
        };
        let mut line = serde_json::to_vec(&rec).map_err(|e| StoreError(format!("encode journal record: {e}")))?;
        line.push(b'\n');
        let outputs: Vec<Artifact> = outputs.to_vec();
        let (path, blobs, file) = (self.path.clone(), self.blobs.clone(), self.file.clone());
        tokio::task::spawn_blocking(move || Self::record_blocking(&path, &blobs, &file, &line, &outputs))
            .await
            .map_err(|e| StoreError(format!("journal write task failed: {e}")))??;
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        done.insert((rec.job, rec.step), rec.outputs);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("creative-journal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn a_recorded_step_is_found_after_reopening_and_a_torn_line_is_cut() {
        let dir = tmp("reopen");
        let job = Job::new([("product", "mug")]);
        {
            let j = FileJournal::open(&dir, true).unwrap();
            assert!(j.lookup(&job, "hero").await.unwrap().is_none());
            j.record(&job, "hero", &[Artifact::text_plain("one")]).await.unwrap();
        }
        // A kill in the middle of the next append leaves a torn line.
        let path = dir.join(FileJournal::FILE);
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"job\":\"x")
            .unwrap();
        let j = FileJournal::open(&dir, true).unwrap();
        let got = j.lookup(&job, "hero").await.unwrap().unwrap();
        assert_eq!(got[0].text(), Some("one"));
        j.record(&job, "small", &[Artifact::text_plain("two")]).await.unwrap();
        let records = FileJournal::read_records(&path).unwrap();
        assert_eq!(records.len(), 2, "the torn line is gone and the new one is whole");
        assert_eq!(records[1].step, "small");
        // Without resume, the old journal is moved aside and nothing counts as done.
        let fresh = FileJournal::open(&dir, false).unwrap();
        assert!(fresh.lookup(&job, "hero").await.unwrap().is_none());
        assert!(dir.join("journal.jsonl.prev").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_missing_payload_means_the_step_runs_again() {
        let dir = tmp("payload");
        let job = Job::new([("i", 1)]);
        let j = FileJournal::open(&dir, true).unwrap();
        let a = Artifact::text_plain("payload");
        j.record(&job, "s", std::slice::from_ref(&a)).await.unwrap();
        fs::remove_file(j.blobs().path_of(a.id())).unwrap();
        let j = FileJournal::open(&dir, true).unwrap();
        assert!(j.lookup(&job, "s").await.unwrap().is_none());
        let _ = fs::remove_dir_all(&dir);
    }
}
