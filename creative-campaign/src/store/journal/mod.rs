//! The run journal on disk: an append-only JSON-lines file, made durable by
//! group commit.
//!
//! # The promise
//!
//! A step counts as done only once [`Journal::record`] has returned, and by then
//! its line and every payload it names are on disk: a SIGKILL or a power cut
//! after that loses nothing. A kill before that loses at most the step, which
//! runs again on resume.
//!
//! # Group commit
//!
//! Paying that promise per step (fsync the payload, fsync its folder, append,
//! fdatasync the journal) made a campaign of 10,000 small generations spend most
//! of its time in the kernel. So, as databases do, the journal commits in batches:
//!
//! 1. `record` writes the step's payloads into the [`BlobStore`] (temporary name
//!    and rename, so whole or absent) without syncing them, hands its line and
//!    the payloads' paths to the committer, and waits.
//! 2. One committer thread takes every line queued while it was busy, makes the
//!    batch's payloads durable (an fsync per payload and per folder they were
//!    renamed into, see [`SyncMethod`]), then appends all the lines in one write
//!    and fdatasyncs the journal once.
//! 3. It wakes every waiter of the batch with the outcome; an error reaches them
//!    all, and the journal is cut back to its last committed length so a half
//!    written batch never precedes later lines.
//!
//! Payloads are durable before the lines naming them, so a journal never points
//! at a payload a power cut lost. While one batch syncs, the next accumulates:
//! the busier the run, the bigger the batches and the fewer syncs per step, with
//! no timer and no added latency when the run is idle. Dropping the journal
//! closes the queue; the committer commits what is queued and ends, and the
//! drop waits for it.
//!
//! # Memory
//!
//! Nothing but positions stays in memory: a [`JournalIndex`] maps a 16-byte hash
//! of (job, step) to the offset and length of the latest line for it, and a
//! record is read back from the file when it is needed. A resumed campaign of a
//! million steps holds tens of megabytes, not its provenance.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::blobs::{sync_dir, BlobStore};
use crate::store::gc::PayloadPins;
use crate::store::{Journal, Recorded, StoreError};
use creative_core::artifact::{Artifact, ArtifactId, MediaType, Meta};
use creative_core::job::{Job, Vars};
use creative_core::provenance::Provenance;
use tokio::sync::oneshot;

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
    /// BLAKE3 over the step's definition and its inputs when it ran: a lookup
    /// with another fingerprint finds the step changed, not done.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
    /// When the step finished (UTC, RFC 3339, milliseconds): stamped as the
    /// record is written, so a resume that reads the record back keeps the
    /// time the step really ran. `None` in journals written before it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// The hash of a (job, step) pair that indexes the journal.
type Key = [u8; 16];

fn key_of(job: &str, step: &str) -> Key {
    let mut h = blake3::Hasher::new();
    h.update(job.as_bytes());
    h.update(&[0]);
    h.update(step.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&h.finalize().as_bytes()[..16]);
    key
}

/// Where one line lives in the journal file (without its newline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    offset: u64,
    len: u32,
}

/// The latest line of each (job, step), in order of first appearance.
#[derive(Debug, Default)]
struct Positions {
    slots: HashMap<Key, u32>,
    spans: Vec<Span>,
}

impl Positions {
    fn insert(&mut self, key: Key, span: Span) -> Result<(), StoreError> {
        match self.slots.entry(key) {
            Entry::Occupied(e) => self.spans[*e.get() as usize] = span,
            Entry::Vacant(v) => {
                let slot = u32::try_from(self.spans.len())
                    .map_err(|_| StoreError("a journal holds at most 2^32 steps".into()))?;
                v.insert(slot);
                self.spans.push(span);
            }
        }
        Ok(())
    }

    fn get(&self, key: &Key) -> Option<Span> {
        self.slots.get(key).map(|&slot| self.spans[slot as usize])
    }
}

/// Just the fields of a line that index it.
#[derive(Deserialize)]
struct LineKey<'a> {
    #[serde(borrow)]
    job: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    step: std::borrow::Cow<'a, str>,
}

/// A compact index of a journal file: where the latest record of each
/// (job, step) is, about 40 bytes per step, with the file kept open to read a
/// record back on demand.
///
/// Made by [`FileJournal::index`] in one streaming pass. It reflects the file as
/// it was read: lines appended later are not in it.
#[derive(Debug)]
pub struct JournalIndex {
    path: PathBuf,
    file: Option<File>,
    positions: Positions,
}

impl JournalIndex {
    /// How many distinct (job, step) pairs the journal records.
    pub fn len(&self) -> usize {
        self.positions.spans.len()
    }

    /// Whether the journal records nothing.
    pub fn is_empty(&self) -> bool {
        self.positions.spans.is_empty()
    }

    /// Whether the journal records `step` of `job`.
    pub fn contains(&self, job: &str, step: &str) -> bool {
        self.positions.slots.contains_key(&key_of(job, step))
    }

    /// The latest record of `step` of `job`, read back from the file.
    pub fn get(&self, job: &str, step: &str) -> Result<Option<JournalRecord>, StoreError> {
        let (Some(file), Some(span)) = (&self.file, self.positions.get(&key_of(job, step))) else {
            return Ok(None);
        };
        read_record_of(file, &self.path, span, job, step)
    }

    /// Call `f` with the payload id of every output of the latest record of
    /// each (job, step), and of every candidate its gates refused, reading one
    /// line at a time (what store housekeeping keeps).
    pub fn for_each_output_id(&self, mut f: impl FnMut(&str)) -> Result<(), StoreError> {
        let Some(file) = &self.file else { return Ok(()) };
        let mut buf = Vec::new();
        for &span in &self.positions.spans {
            read_output_ids(file, &self.path, span, &mut buf, &mut f)?;
        }
        Ok(())
    }

    /// The latest record of each (job, step), in the order the pairs first
    /// appear in the file; each is read back as the iterator reaches it.
    pub fn iter(&self) -> impl Iterator<Item = Result<JournalRecord, StoreError>> + '_ {
        self.positions.spans.iter().filter_map(move |&span| {
            let file = self.file.as_ref()?;
            Some(read_record(file, &self.path, span))
        })
    }
}

/// The records a running [`FileJournal`] has committed, read back by position
/// while it goes on committing more: what the end of a run reads each job from
/// as soon as the job ends (see `spec::finish`).
#[derive(Debug, Clone)]
pub(crate) struct LiveRecords {
    path: PathBuf,
    file: Arc<File>,
    positions: Arc<Mutex<Positions>>,
    recent: Arc<Recent>,
}

impl LiveRecords {
    /// The latest committed record of `step` of `job`: the one kept as it was
    /// committed, once (each is read by one pass), else read back from the file.
    pub(crate) fn get(&self, job: &str, step: &str) -> Result<Option<JournalRecord>, StoreError> {
        let key = key_of(job, step);
        if let Some(r) = self.recent.take(&key).filter(|r| r.job == job && r.step == step) {
            return Ok(Some(r));
        }
        let span = self.positions.lock().unwrap_or_else(|p| p.into_inner()).get(&key);
        let Some(span) = span else { return Ok(None) };
        read_record_of(&self.file, &self.path, span, job, step)
    }
}

/// Just the payload ids of a journal line: each output's, and those of the
/// candidates its gates refused (kept so a reviewer can still see them).
#[derive(Deserialize)]
struct OutputIds {
    #[serde(default)]
    outputs: Vec<OutputId>,
}

#[derive(Deserialize)]
struct OutputId {
    id: String,
    #[serde(default)]
    provenance: RejectedIds,
}

#[derive(Deserialize, Default)]
struct RejectedIds {
    #[serde(default)]
    rejected: Vec<RejectedId>,
}

#[derive(Deserialize)]
struct RejectedId {
    artifact: String,
}

/// Read the line at `span` and call `f` with the id of each of its outputs.
fn read_output_ids(
    file: &File,
    path: &Path,
    span: Span,
    buf: &mut Vec<u8>,
    f: &mut dyn FnMut(&str),
) -> Result<(), StoreError> {
    buf.resize(span.len as usize, 0);
    read_exact_at(file, buf, span.offset)
        .map_err(|e| StoreError(format!("read {} at byte {}: {e}", path.display(), span.offset)))?;
    let ids: OutputIds = serde_json::from_slice(buf)
        .map_err(|e| StoreError(format!("{} at byte {}: {e}", path.display(), span.offset)))?;
    for o in &ids.outputs {
        f(&o.id);
        o.provenance.rejected.iter().for_each(|r| f(&r.artifact));
    }
    Ok(())
}

/// The record of `step` of `job` at `span`, if it is theirs: a different pair
/// under the same 128-bit hash would be a first, but it is still not this step.
fn read_record_of(
    file: &File,
    path: &Path,
    span: Span,
    job: &str,
    step: &str,
) -> Result<Option<JournalRecord>, StoreError> {
    let r = read_record(file, path, span)?;
    Ok((r.job == job && r.step == step).then_some(r))
}

/// Read the line at `span` and decode it.
fn read_record(file: &File, path: &Path, span: Span) -> Result<JournalRecord, StoreError> {
    let mut buf = vec![0u8; span.len as usize];
    read_exact_at(file, &mut buf, span.offset)
        .map_err(|e| StoreError(format!("read {} at byte {}: {e}", path.display(), span.offset)))?;
    serde_json::from_slice(&buf).map_err(|e| StoreError(format!("{} at byte {}: {e}", path.display(), span.offset)))
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn read_exact_at(_file: &File, _buf: &mut [u8], _offset: u64) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

mod commit;
pub use commit::SyncMethod;
use commit::{Committer, Pending};

/// A journal in a folder: `journal.jsonl` plus the payloads in `objects/`.
///
/// `record` returns once the step's line and payloads are durable, which the
/// committer does for many steps at once (see the module doc). A line torn by a
/// kill is cut off when the journal is opened again, so that step simply runs
/// again.
///
/// Records can be read back with [`FileJournal::index`] (streaming, what the
/// manifest and the report are made from) or [`FileJournal::read_records`], which
/// is also how the journals of shards merge.
pub struct FileJournal {
    path: PathBuf,
    blobs: BlobStore,
    /// A read handle on the journal, for lookups.
    reader: Arc<File>,
    positions: Arc<Mutex<Positions>>,
    queue: Option<mpsc::Sender<Pending>>,
    committer: Option<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
    /// A fingerprint of each step's definition, by step name.
    definitions: Arc<BTreeMap<String, String>>,
    /// A fingerprint of the review revision of some (job key, step) pairs: a
    /// rejected asset's step is not done until it is run again with it.
    revisions: Arc<std::collections::HashMap<(String, String), String>>,
    /// Payloads the cache's eviction must keep: every output recorded.
    pins: Option<Arc<PayloadPins>>,
    /// Records just committed, kept for a [`LiveRecords`] reader (once there
    /// is one) so it need not read them back from the file.
    recent: Arc<Recent>,
}

/// Records a [`LiveRecords`] reader has not taken yet, by (job, step): what
/// the pass following a run reads each job from, without a read and a parse
/// per step. At most [`Recent::MAX`]; past it a record is read from the file.
#[derive(Debug, Default)]
struct Recent {
    /// Whether a reader exists (else nothing is kept).
    on: std::sync::atomic::AtomicBool,
    records: Mutex<HashMap<Key, JournalRecord>>,
}

impl Recent {
    const MAX: usize = 4096;

    /// Keep `rec`, committed under `key`: always when it replaces one kept
    /// (a kept record is the latest or none is), else only below the bound.
    fn keep(&self, key: Key, rec: JournalRecord) {
        if !self.on.load(AtomicOrdering::Relaxed) {
            return;
        }
        let mut m = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() < Self::MAX || m.contains_key(&key) {
            m.insert(key, rec);
        }
    }

    fn take(&self, key: &Key) -> Option<JournalRecord> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).remove(key)
    }
}

impl std::fmt::Debug for FileJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileJournal")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for FileJournal {
    fn drop(&mut self) {
        // Closing the queue ends the committer once it has committed what is
        // queued; waiting for it means nothing recorded is left unwritten.
        drop(self.queue.take());
        if let Some(h) = self.committer.take() {
            let _ = h.join();
        }
    }
}

impl FileJournal {
    /// The journal file's name inside its folder.
    pub const FILE: &'static str = "journal.jsonl";

    /// Open the journal in `dir`, syncing payloads per file
    /// ([`SyncMethod::Files`]).
    ///
    /// With `resume`, the steps it records count as done and are not run again.
    /// Without, an existing journal is moved aside to `journal.jsonl.prev` and a
    /// fresh one is started (payloads are kept: they are content addressed).
    pub fn open(dir: impl AsRef<Path>, resume: bool) -> Result<Self, StoreError> {
        Self::open_with(dir, resume, SyncMethod::Files)
    }

    /// [`open`](Self::open), choosing how batches of payloads are made durable.
    pub fn open_with(dir: impl AsRef<Path>, resume: bool, sync: SyncMethod) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| StoreError(format!("create {}: {e}", dir.display())))?;
        let path = dir.join(Self::FILE);
        let positions = if resume {
            Self::index(&path)?.positions
        } else {
            if path.exists() {
                let prev = dir.join(format!("{}.prev", Self::FILE));
                fs::rename(&path, &prev).map_err(|e| StoreError(format!("move {} aside: {e}", path.display())))?;
            }
            Positions::default()
        };
        let open_err = |e: std::io::Error| StoreError(format!("open {}: {e}", path.display()));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(open_err)?;
        let end = file.metadata().map_err(open_err)?.len();
        let reader = File::open(&path).map_err(open_err)?;
        sync_dir(&path).map_err(|e| StoreError(format!("sync {}: {e}", dir.display())))?;
        let positions = Arc::new(Mutex::new(positions));
        let (tx, rx) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let committer = Committer {
            path: path.clone(),
            file,
            end,
            positions: positions.clone(),
            sync,
            known_dirs: HashSet::new(),
            commits: commits.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("creative-journal".into())
            .spawn(move || committer.run(rx))
            .map_err(|e| StoreError(format!("start the journal committer: {e}")))?;
        Ok(FileJournal {
            path,
            blobs: BlobStore::new(dir.join("objects")),
            reader: Arc::new(reader),
            positions,
            queue: Some(tx),
            committer: Some(handle),
            commits,
            definitions: Arc::default(),
            revisions: Arc::default(),
            pins: None,
            recent: Arc::default(),
        })
    }

    /// Fold a fingerprint of each step's definition (by step name) into what is
    /// recorded, so that a resume after an edit of a step re-runs it (and,
    /// through their changed inputs, the steps downstream). The campaign layer
    /// passes the spec's.
    pub fn with_definitions(mut self, definitions: BTreeMap<String, String>) -> Self {
        self.definitions = Arc::new(definitions);
        self
    }

    /// Fold a reviewer's revisions (a fingerprint by job key and step, from
    /// [`crate::review::Revisions::fingerprints`]) into what is recorded for
    /// those steps, so a resume re-runs each step whose asset was rejected (and,
    /// through their changed inputs, the steps downstream), and only those.
    pub fn with_revisions(mut self, revisions: std::collections::HashMap<(String, String), String>) -> Self {
        self.revisions = Arc::new(revisions);
        self
    }

    /// Pin, in `pins`, every payload this journal names (those of the records
    /// already in it, read back one at a time, and every output recorded from
    /// now on, pinned before it is stored), so that a size-capped
    /// [`DiskCache`](crate::store::DiskCache) sharing its payload folder never
    /// evicts a payload a resume needs.
    pub fn with_pins(mut self, pins: Arc<PayloadPins>) -> Result<Self, StoreError> {
        let spans: Vec<Span> = self.positions.lock().unwrap_or_else(|p| p.into_inner()).spans.clone();
        let mut buf = Vec::new();
        for span in spans {
            read_output_ids(&self.reader, &self.path, span, &mut buf, &mut |id| {
                pins.pin(&ArtifactId::from_hex(id))
            })?;
        }
        self.pins = Some(pins);
        Ok(self)
    }

    /// The fingerprint recorded for `step` run on inputs `inputs`.
    fn fingerprint(&self, job: &str, step: &str, inputs: &str) -> String {
        let mut h = blake3::Hasher::new();
        h.update(self.definitions.get(step).map_or("", String::as_str).as_bytes());
        h.update(&[0]);
        h.update(inputs.as_bytes());
        if !self.revisions.is_empty() {
            if let Some(r) = self.revisions.get(&(job.to_string(), step.to_string())) {
                h.update(&[1]);
                h.update(r.as_bytes());
            }
        }
        h.finalize().to_hex().to_string()
    }

    /// How many batches this journal has committed since it was opened: each
    /// costs one fdatasync of the journal (plus the payloads' syncs), however
    /// many steps it holds.
    pub fn commits(&self) -> u64 {
        self.commits.load(AtomicOrdering::Relaxed)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A reader of the records committed so far and of every one committed
    /// later (a record is in it once `record` has returned).
    pub(crate) fn live_records(&self) -> LiveRecords {
        self.recent.on.store(true, AtomicOrdering::Relaxed);
        LiveRecords {
            path: self.path.clone(),
            file: self.reader.clone(),
            positions: self.positions.clone(),
            recent: self.recent.clone(),
        }
    }

    /// The payload store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Index a journal file in one streaming pass (an empty index if it does not
    /// exist): the position of the latest complete record of each (job, step).
    ///
    /// A last line torn by a kill is cut off the file, so that later appends start
    /// on a fresh line. A line that is not a record is an error naming its line.
    pub fn index(path: &Path) -> Result<JournalIndex, StoreError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(JournalIndex {
                    path: path.to_path_buf(),
                    file: None,
                    positions: Positions::default(),
                })
            }
            Err(e) => return Err(StoreError(format!("open {}: {e}", path.display()))),
        };
        let read_err = |e: std::io::Error| StoreError(format!("read {}: {e}", path.display()));
        let mut reader = BufReader::with_capacity(1 << 16, &file);
        let mut positions = Positions::default();
        let mut line = Vec::new();
        let mut offset = 0u64;
        let mut n = 0usize;
        loop {
            line.clear();
            let got = reader.read_until(b'\n', &mut line).map_err(read_err)?;
            if got == 0 {
                break;
            }
            if line.last() != Some(&b'\n') {
                tracing::warn!(path = %path.display(), "cutting off a torn last journal line");
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| StoreError(format!("open {}: {e}", path.display())))?;
                f.set_len(offset)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| StoreError(format!("truncate {}: {e}", path.display())))?;
                break;
            }
            n += 1;
            let body = &line[..got - 1];
            if !body.iter().all(u8::is_ascii_whitespace) {
                let k: LineKey<'_> = serde_json::from_slice(body)
                    .map_err(|e| StoreError(format!("{} line {n}: {e}", path.display())))?;
                let len = u32::try_from(body.len())
                    .map_err(|_| StoreError(format!("{} line {n}: a record over 4 GiB", path.display())))?;
                positions.insert(key_of(&k.job, &k.step), Span { offset, len })?;
            }
            offset += got as u64;
        }
        drop(reader);
        Ok(JournalIndex {
            path: path.to_path_buf(),
            file: Some(file),
            positions,
        })
    }

    /// Read every complete record of a journal file (none if it does not exist),
    /// through [`index`](Self::index): a torn last line is cut off, and a later
    /// record for the same job and step replaces an earlier one, in the place
    /// of the first.
    pub fn read_records(path: &Path) -> Result<Vec<JournalRecord>, StoreError> {
        Self::index(path)?.iter().collect()
    }
}

#[async_trait]
impl Journal for FileJournal {
    async fn lookup(&self, job: &Job, step: &str, inputs: &str) -> Result<Recorded, StoreError> {
        let span = {
            let positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
            match positions.get(&key_of(job.key(), step)) {
                Some(s) => s,
                None => return Ok(Recorded::Missing),
            }
        };
        let fingerprint = self.fingerprint(job.key(), step, inputs);
        let (reader, path, blobs) = (self.reader.clone(), self.path.clone(), self.blobs.clone());
        let (job, step) = (job.key().to_string(), step.to_string());
        tokio::task::spawn_blocking(move || {
            let r = read_record(&reader, &path, span)?;
            if r.job != job || r.step != step {
                return Ok(Recorded::Missing);
            }
            if r.fingerprint != fingerprint {
                return Ok(Recorded::Changed);
            }
            let mut out = Vec::with_capacity(r.outputs.len());
            for a in r.outputs {
                match blobs.get(&a.id, &a.media)? {
                    Some(data) => out.push(a.into_artifact(data)),
                    // A payload lost since: run the step again rather than fail.
                    None => return Ok(Recorded::Missing),
                }
            }
            Ok(Recorded::Done(out))
        })
        .await
        .map_err(|e| StoreError(format!("journal read task failed: {e}")))?
    }

    async fn record(&self, job: &Job, step: &str, inputs: &str, outputs: &[Artifact]) -> Result<(), StoreError> {
        let rec = JournalRecord {
            job: job.key().to_string(),
            vars: (**job.vars()).clone(),
            step: step.to_string(),
            outputs: outputs.iter().map(ArtifactRecord::of).collect(),
            fingerprint: self.fingerprint(job.key(), step, inputs),
            finished_at: Some(crate::store::utc_now()),
        };
        let mut line = serde_json::to_vec(&rec).map_err(|e| StoreError(format!("encode journal record: {e}")))?;
        line.push(b'\n');
        if let Some(pins) = &self.pins {
            // Before the payloads are stored: a cache eviction that has not
            // seen the pin yet deletes before the store below rewrites them.
            outputs.iter().for_each(|a| pins.pin(a.id()));
        }
        let payloads = if outputs.iter().all(|a| self.blobs.holds_lately(a.id())) {
            // Written a moment ago by the cache sharing this store (the usual
            // case): no file work to hand to a blocking thread.
            outputs.iter().map(|a| self.blobs.path_of(a.id())).collect()
        } else {
            let outputs: Vec<Artifact> = outputs.to_vec();
            let blobs = self.blobs.clone();
            tokio::task::spawn_blocking(move || {
                outputs
                    .iter()
                    .map(|a| blobs.put(a.id(), a.data(), false).map(|()| blobs.path_of(a.id())))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|e| StoreError(format!("journal write task failed: {e}")))??
        };
        let (done, committed) = oneshot::channel();
        let stopped = || StoreError(format!("the committer of {} has stopped", self.path.display()));
        let key = key_of(&rec.job, &rec.step);
        self.queue
            .as_ref()
            .ok_or_else(stopped)?
            .send(Pending {
                key,
                line,
                payloads,
                done,
            })
            .map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())??;
        self.recent.keep(key, rec);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
