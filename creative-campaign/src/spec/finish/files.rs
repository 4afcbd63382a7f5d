//! The files the end of a run writes and reads as it streams: JSON-lines files
//! written aside and renamed when whole, the manifest's part files, the batched
//! hand-off between its threads, and the readers of the event log and the
//! assets list.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::deliver::AssetEntry;
use crate::store::StoreError;

/// A JSON-lines file written aside and renamed into place when whole, so a
/// reader holding the last run's file (a host reading its artifacts) keeps
/// reading that run's.
pub(super) struct Lines {
    path: PathBuf,
    tmp: PathBuf,
    /// `None` once finished.
    out: Option<BufWriter<File>>,
}

impl Lines {
    pub(super) fn create(path: PathBuf) -> Result<Lines, StoreError> {
        let tmp = crate::store::temp_path(&path);
        let f = File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
        Ok(Lines {
            path,
            tmp,
            out: Some(BufWriter::with_capacity(1 << 16, f)),
        })
    }

    pub(super) fn push<T: serde::Serialize>(&mut self, v: &T) -> Result<(), StoreError> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io_err("write", &self.tmp, "finished"))?;
        serde_json::to_writer(&mut *out, v).map_err(|e| io_err("write", &self.tmp, e))?;
        out.write_all(b"\n").map_err(|e| io_err("write", &self.tmp, e))
    }

    pub(super) fn finish(mut self) -> Result<(), StoreError> {
        let mut out = self.out.take().ok_or_else(|| io_err("write", &self.tmp, "finished"))?;
        out.flush().map_err(|e| io_err("write", &self.tmp, e))?;
        drop(out);
        fs::rename(&self.tmp, &self.path).map_err(|e| io_err("rename", &self.path, e))
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        // A pass that failed or was abandoned leaves the last run's file as it was.
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

pub(super) fn io_err(what: &str, p: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("{what} {}: {e}", p.display()))
}

/// Entries of one array of `manifest.json`, written as the whole document
/// would pretty-print them (two levels in: four spaces).
pub(super) struct Part {
    path: PathBuf,
    out: BufWriter<File>,
    count: u64,
}

impl Part {
    pub(super) fn create(path: PathBuf) -> Result<Part, StoreError> {
        let f = File::create(&path).map_err(|e| io_err("create", &path, e))?;
        Ok(Part {
            out: BufWriter::with_capacity(1 << 16, f),
            path,
            count: 0,
        })
    }

    pub(super) fn push<T: serde::Serialize>(&mut self, v: &T) -> Result<(), StoreError> {
        let sep: &[u8] = if self.count == 0 { b"\n    " } else { b",\n    " };
        self.out.write_all(sep).map_err(|e| io_err("write", &self.path, e))?;
        // Pretty-printed straight into the file, every line indented as it goes.
        let mut ser = serde_json::Serializer::pretty(Indented(&mut self.out));
        v.serialize(&mut ser).map_err(|e| io_err("write", &self.path, e))?;
        self.count += 1;
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<(PathBuf, u64), StoreError> {
        self.out.flush().map_err(|e| io_err("write", &self.path, e))?;
        Ok((self.path, self.count))
    }
}

/// Writes through, indenting every line after the first by four spaces: a
/// pretty-printed value nested two levels into the manifest. JSON strings escape
/// their newlines, so every newline written is layout.
struct Indented<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Indented<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.0.write_all(&rest[..=i])?;
            self.0.write_all(b"    ")?;
            rest = &rest[i + 1..];
        }
        self.0.write_all(rest)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Items a reader thread of the end of the run hands on at once.
const READ_BATCH: usize = 32;

/// A bounded channel from a reader thread that hands its items on
/// [`READ_BATCH`] at a time, about `in_flight` of them queued at most: one
/// hand-off (a futex wake on each side) per item was a tenth of the final
/// pass's CPU on 10,000 small jobs. The receiving end yields the items one by
/// one, in order.
pub(super) fn batches<T>(in_flight: usize) -> (Batches<T>, impl Iterator<Item = T>) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<T>>((in_flight / READ_BATCH).max(1));
    let tx = Batches {
        tx,
        batch: Vec::with_capacity(READ_BATCH),
    };
    (tx, rx.into_iter().flatten())
}

/// The sending end of [`batches`]; dropping it sends what is left.
pub(super) struct Batches<T> {
    tx: std::sync::mpsc::SyncSender<Vec<T>>,
    batch: Vec<T>,
}

impl<T> Batches<T> {
    /// Queue `item`; `false` once the receiver is gone.
    pub(super) fn push(&mut self, item: T) -> bool {
        self.batch.push(item);
        self.batch.len() < READ_BATCH
            || self
                .tx
                .send(std::mem::replace(&mut self.batch, Vec::with_capacity(READ_BATCH)))
                .is_ok()
    }
}

impl<T> Drop for Batches<T> {
    fn drop(&mut self) {
        if !self.batch.is_empty() {
            let _ = self.tx.send(std::mem::take(&mut self.batch));
        }
    }
}

/// Every line of an event log, one at a time (unreadable lines are skipped: a
/// torn last line after a kill).
pub(crate) fn read_events(path: &Path, mut f: impl FnMut(creative_core::events::Event)) -> Result<(), StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read", path, e)),
    };
    for line in BufReader::with_capacity(1 << 16, file).split(b'\n') {
        let line = line.map_err(|e| io_err("read", path, e))?;
        if let Ok(e) = serde_json::from_slice(&line) {
            f(e);
        }
    }
    Ok(())
}

/// The assets of the last finalize, one at a time, until `f` says stop.
pub(crate) fn read_assets(path: &Path, mut f: impl FnMut(AssetEntry) -> bool) -> Result<(), StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read", path, e)),
    };
    for (n, line) in BufReader::with_capacity(1 << 16, file).split(b'\n').enumerate() {
        let line = line.map_err(|e| io_err("read", path, e))?;
        let a: AssetEntry =
            serde_json::from_slice(&line).map_err(|e| StoreError(format!("{} line {}: {e}", path.display(), n + 1)))?;
        if !f(a) {
            break;
        }
    }
    Ok(())
}
