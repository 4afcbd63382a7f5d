//! The committer: one thread that makes a batch of steps durable at once (the
//! payloads they name, then their journal lines, one fsync each), as databases
//! commit in groups.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Key, Positions, Span};
use crate::store::StoreError;

/// How the committer makes a batch's payloads durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMethod {
    /// fsync each payload of the batch and each folder a payload was renamed
    /// into. Touches nothing but the run's own files.
    Files,
    /// One `syncfs` of the file system holding the journal (Linux): cheaper for
    /// big batches, but it also flushes whatever else is waiting on that file
    /// system, other programs' writes included. Elsewhere it falls back to
    /// [`Files`](Self::Files).
    FileSystem,
}

/// A line waiting for the committer.
pub(super) struct Pending {
    pub(super) key: Key,
    pub(super) line: Vec<u8>,
    pub(super) payloads: Vec<PathBuf>,
    pub(super) done: oneshot::Sender<Result<(), StoreError>>,
}

/// The most lines one commit takes; more wait for the next one.
const MAX_BATCH: usize = 4096;

/// How long a commit waits for more steps when steps are arriving together.
const GATHER: Duration = Duration::from_millis(2);

/// The committer's state: the journal's append handle and what is committed.
pub(super) struct Committer {
    pub(super) path: PathBuf,
    pub(super) file: File,
    /// The journal's committed length.
    pub(super) end: u64,
    pub(super) positions: Arc<Mutex<Positions>>,
    pub(super) sync: SyncMethod,
    /// Folders whose own entry (in their parent) this committer made durable.
    pub(super) known_dirs: HashSet<PathBuf>,
    /// Batches committed.
    pub(super) commits: Arc<AtomicU64>,
}

impl Committer {
    pub(super) fn run(mut self, queue: mpsc::Receiver<Pending>) {
        let mut last_batch = 0;
        while let Ok(first) = queue.recv() {
            // Steps arriving together (the last batch had company) wait a
            // moment for more, as databases delay a commit when others are
            // active: each sync then covers several steps. A lone writer's
            // steps (batches of one) never wait.
            let until = (last_batch > 1).then(|| Instant::now() + GATHER);
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                let next = match until {
                    Some(t) => match t.checked_duration_since(Instant::now()) {
                        Some(left) => queue.recv_timeout(left).ok(),
                        None => queue.try_recv().ok(),
                    },
                    None => queue.try_recv().ok(),
                };
                match next {
                    Some(p) => batch.push(p),
                    None => break,
                }
            }
            last_batch = batch.len();
            let result = self.commit(&batch);
            for p in batch {
                // A waiter that gave up (its future was dropped) is not an error:
                // its step is committed all the same.
                let _ = p.done.send(result.clone());
            }
        }
    }

    fn commit(&mut self, batch: &[Pending]) -> Result<(), StoreError> {
        self.sync_payloads(batch)?;
        let mut buf = Vec::with_capacity(batch.iter().map(|p| p.line.len()).sum());
        let mut spans = Vec::with_capacity(batch.len());
        for p in batch {
            let len = p.line.len().saturating_sub(1);
            let len = u32::try_from(len).map_err(|_| StoreError("a journal record over 4 GiB".into()))?;
            spans.push(Span {
                offset: self.end + buf.len() as u64,
                len,
            });
            buf.extend_from_slice(&p.line);
        }
        if let Err(e) = self.file.write_all(&buf).and_then(|()| self.file.sync_data()) {
            // Cut what may have been half written, so the next batch starts on a
            // fresh line; the batch's steps simply run again.
            let _ = self.file.set_len(self.end);
            return Err(StoreError(format!("append to {}: {e}", self.path.display())));
        }
        self.end += buf.len() as u64;
        self.commits.fetch_add(1, AtomicOrdering::Relaxed);
        let mut positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        for (p, span) in batch.iter().zip(spans) {
            positions.insert(p.key, span)?;
        }
        Ok(())
    }

    fn sync_payloads(&mut self, batch: &[Pending]) -> Result<(), StoreError> {
        if batch.iter().all(|p| p.payloads.is_empty()) {
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        if self.sync == SyncMethod::FileSystem {
            return rustix::fs::syncfs(&self.file)
                .map_err(|e| StoreError(format!("syncfs under {}: {e}", self.path.display())));
        }
        let mut files: HashSet<&Path> = HashSet::new();
        let mut dirs: HashSet<&Path> = HashSet::new();
        for p in batch.iter().flat_map(|p| &p.payloads) {
            if files.insert(p.as_path()) {
                if let Some(d) = p.parent() {
                    dirs.insert(d);
                }
            }
        }
        let err = |p: &Path, e: std::io::Error| StoreError(format!("sync {}: {e}", p.display()));
        for f in files {
            File::open(f).and_then(|f| f.sync_data()).map_err(|e| err(f, e))?;
        }
        let mut new_dirs = Vec::new();
        for d in dirs {
            sync_folder(d).map_err(|e| err(d, e))?;
            if self.known_dirs.insert(d.to_path_buf()) {
                new_dirs.push(d);
            }
        }
        // A folder this committer has not seen may have been made by this run:
        // its entry in its parent must be durable too (a prefix folder in the
        // store, the store in the state folder). Once per folder and run.
        for _ in 0..2 {
            let parents: HashSet<&Path> = new_dirs.iter().filter_map(|d| d.parent()).collect();
            new_dirs.clear();
            for p in parents {
                sync_folder(p).map_err(|e| err(p, e))?;
                if self.known_dirs.insert(p.to_path_buf()) {
                    new_dirs.push(p);
                }
            }
        }
        Ok(())
    }
}

/// fsync a folder (on Unix; elsewhere folders cannot be opened for that).
fn sync_folder(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
