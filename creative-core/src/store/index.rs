//! Where each finished step's record sits in a journal file, so records are
//! read back one at a time instead of all at once.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::store::{JournalRecord, StoreError};

/// The position of the latest complete record of each (job, step) of a journal
/// file: 24 bytes a step, however large its provenance.
pub struct JournalIndex {
    path: PathBuf,
    file: Option<Mutex<File>>,
    /// (offset, len) by key, and keys in order of first appearance.
    at: HashMap<[u8; 16], (u64, u32)>,
    order: Vec<[u8; 16]>,
}

impl std::fmt::Debug for JournalIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalIndex")
            .field("path", &self.path)
            .field("records", &self.at.len())
            .finish()
    }
}

fn key(job: &str, step: &str) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(job.as_bytes());
    h.update(&[0]);
    h.update(step.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&h.finalize().as_bytes()[..16]);
    k
}

#[derive(serde::Deserialize)]
struct Head {
    job: String,
    step: String,
}

impl JournalIndex {
    /// Index a journal file in one streaming pass (an absent file has no
    /// record). A last line torn by a kill is cut off the file, as
    /// [`FileJournal::read_records`](crate::store::FileJournal::read_records) does.
    pub fn build(path: &Path) -> Result<JournalIndex, StoreError> {
        let io = |what: &str, e: std::io::Error| StoreError(format!("{what} {}: {e}", path.display()));
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(JournalIndex {
                    path: path.to_path_buf(),
                    file: None,
                    at: HashMap::new(),
                    order: Vec::new(),
                })
            }
            Err(e) => return Err(io("open", e)),
        };
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let (mut at, mut order) = (HashMap::new(), Vec::new());
        let mut line = Vec::new();
        let (mut offset, mut n) = (0u64, 0usize);
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(|e| io("read", e))?;
            if read == 0 {
                break;
            }
            n += 1;
            if line.last() != Some(&b'\n') {
                tracing::warn!(path = %path.display(), "cutting off a torn last journal line");
                let f = OpenOptions::new().write(true).open(path).map_err(|e| io("open", e))?;
                f.set_len(offset)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| io("truncate", e))?;
                break;
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                let head: Head = serde_json::from_slice(&line)
                    .map_err(|e| StoreError(format!("{} line {n}: {e}", path.display())))?;
                let k = key(&head.job, &head.step);
                let len = u32::try_from(read)
                    .map_err(|_| StoreError(format!("{} line {n}: a record over 4 GB", path.display())))?;
                if at.insert(k, (offset, len)).is_none() {
                    order.push(k);
                }
            }
            offset += read as u64;
        }
        let file = File::open(path).map_err(|e| io("open", e))?;
        Ok(JournalIndex {
            path: path.to_path_buf(),
            file: Some(Mutex::new(file)),
            at,
            order,
        })
    }

    /// Steps recorded.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether no step is recorded.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// Whether a step of a job is recorded.
    pub fn contains(&self, job: &str, step: &str) -> bool {
        self.at.contains_key(&key(job, step))
    }

    fn read_at(&self, (offset, len): (u64, u32)) -> Result<JournalRecord, StoreError> {
        let io = |e: std::io::Error| StoreError(format!("read {}: {e}", self.path.display()));
        let Some(file) = &self.file else {
            return Err(StoreError(format!("{} is gone", self.path.display())));
        };
        let mut buf = vec![0u8; len as usize];
        {
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            f.seek(SeekFrom::Start(offset)).map_err(io)?;
            f.read_exact(&mut buf).map_err(io)?;
        }
        serde_json::from_slice(&buf).map_err(|e| StoreError(format!("{} at byte {offset}: {e}", self.path.display())))
    }

    /// The latest record of a step of a job.
    pub fn get(&self, job: &str, step: &str) -> Result<Option<JournalRecord>, StoreError> {
        let Some(&pos) = self.at.get(&key(job, step)) else {
            return Ok(None);
        };
        let r = self.read_at(pos)?;
        // 128-bit keys do not collide in practice; a record that is not the one
        // asked for is treated as absent rather than misattributed.
        Ok((r.job == job && r.step == step).then_some(r))
    }

    /// The latest record of every step, in order of first appearance.
    pub fn iter(&self) -> impl Iterator<Item = Result<JournalRecord, StoreError>> + '_ {
        self.order.iter().map(|k| self.read_at(self.at[k]))
    }
}
