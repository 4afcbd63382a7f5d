//! What the sinks acknowledged: the delivery ledger of a run.
//!
//! Sinks are handed each asset as its job ends, and again by the pass at the
//! end of the run (which is authoritative). The ledger, a JSON-lines file in
//! the state folder, records every asset a sink acknowledged, so neither that
//! pass nor a resumed run hands it the same asset again: a resume sends
//! exactly what was not acknowledged. An acknowledgement lost in a crash
//! (lines are appended, not synced) only means one event is sent again, under
//! the same event id, which the receiver drops: at least once on the wire,
//! exactly once for a receiver that keys on the id.
//!
//! The first line names the run. A fresh run gets a new id (so two runs of one
//! spec never share event ids); its resumes keep it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::store::StoreError;
use creative_core::artifact::Artifact;
use creative_core::cancel::CancellationToken;
use creative_core::deliver::{AssetEntry, Delivery, ManifestSummary, Report, Sink};

/// The ledger's file, inside the state folder.
pub const DELIVERIES_FILE: &str = "deliveries.jsonl";

#[derive(Serialize, Deserialize)]
struct RunLine {
    run: String,
}

#[derive(Serialize, Deserialize)]
struct AckLine {
    sink: String,
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// The acknowledgements of one run's sinks, kept on disk.
#[derive(Debug)]
pub struct DeliveryLedger {
    run: String,
    path: PathBuf,
    /// (sink, asset key) -> the URL the sink gave, if any.
    acked: Mutex<HashMap<(String, String), Option<String>>>,
    file: Mutex<File>,
}

fn io_err(what: &str, p: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("{what} {}: {e}", p.display()))
}

/// A new run id: 128 random bits, hex.
fn new_run_id() -> String {
    let mut h = blake3::Hasher::new();
    h.update(&fastrand::u128(..).to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(&now.as_nanos().to_le_bytes());
    h.finalize().to_hex()[..32].to_string()
}

impl DeliveryLedger {
    /// Open the ledger in `state_dir`: a fresh one with a new run id when
    /// `fresh` (or when none is there), else the one there, with its
    /// acknowledgements. A line a crash left half-written is ignored.
    pub fn open(state_dir: &Path, fresh: bool) -> Result<Self, StoreError> {
        let path = state_dir.join(DELIVERIES_FILE);
        let mut run = None;
        let mut acked = HashMap::new();
        let mut torn = false;
        if !fresh {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let mut lines = text.lines();
                    run = lines
                        .next()
                        .and_then(|l| serde_json::from_str::<RunLine>(l).ok())
                        .map(|r| r.run);
                    for line in lines {
                        if let Ok(a) = serde_json::from_str::<AckLine>(line) {
                            acked.insert((a.sink, a.key), a.url);
                        }
                    }
                    torn = !text.is_empty() && !text.ends_with('\n');
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Unreadable (not UTF-8): start the ledger again, as a fresh run.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {}
                Err(e) => return Err(io_err("read", &path, e)),
            }
        }
        let file = match &run {
            Some(_) => {
                let mut f = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| io_err("open", &path, e))?;
                // End a line a crash left half-written, so the next one is whole.
                if torn {
                    f.write_all(b"\n").map_err(|e| io_err("write", &path, e))?;
                }
                f
            }
            None => {
                acked.clear();
                let id = new_run_id();
                let mut f = File::create(&path).map_err(|e| io_err("create", &path, e))?;
                let mut line =
                    serde_json::to_vec(&RunLine { run: id.clone() }).map_err(|e| io_err("encode", &path, e))?;
                line.push(b'\n');
                f.write_all(&line).map_err(|e| io_err("write", &path, e))?;
                run = Some(id);
                f
            }
        };
        Ok(DeliveryLedger {
            run: run.unwrap_or_default(),
            path,
            acked: Mutex::new(acked),
            file: Mutex::new(file),
        })
    }

    /// The run's id.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// The event id of `key` in this run: the same on every retry and resume,
    /// different in another run.
    pub fn event_id(&self, key: &str) -> String {
        let mut h = blake3::Hasher::new();
        h.update(self.run.as_bytes());
        h.update(&[0]);
        h.update(key.as_bytes());
        format!("msg_{}", &h.finalize().to_hex()[..32])
    }

    /// Whether `sink` acknowledged `key`, and the URL it gave.
    pub fn acked(&self, sink: &str, key: &str) -> Option<Option<String>> {
        self.acked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(sink.to_string(), key.to_string()))
            .cloned()
    }

    /// Record that `sink` acknowledged `key`.
    pub fn ack(&self, sink: &str, key: &str, url: Option<String>) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(&AckLine {
            sink: sink.to_string(),
            key: key.to_string(),
            url: url.clone(),
        })
        .map_err(|e| io_err("encode", &self.path, e))?;
        line.push(b'\n');
        // One write of a whole line to a file opened for appending: lines of
        // concurrent acknowledgements never interleave.
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(&line)
            .map_err(|e| io_err("write", &self.path, e))?;
        self.acked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((sink.to_string(), key.to_string()), url);
        Ok(())
    }
}

/// The key of an asset in the ledger: which output of which step of which job,
/// and which bytes (a step that ran again with other output is a new event).
pub fn asset_key(asset: &AssetEntry) -> String {
    format!("{}/{}/{}/{}", asset.job, asset.step, asset.index, asset.id)
}

/// The sinks with the names the ledger knows them by: their own, with `#2`,
/// `#3`... on a name already taken.
#[derive(Clone)]
pub(crate) struct Sinks {
    sinks: Arc<[(String, Arc<dyn Sink>)]>,
}

impl Sinks {
    pub(crate) fn new(sinks: &[Arc<dyn Sink>]) -> Self {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let named = sinks
            .iter()
            .map(|s| {
                let n = seen.entry(s.name().to_string()).or_default();
                *n += 1;
                let name = if *n == 1 {
                    s.name().to_string()
                } else {
                    format!("{}#{n}", s.name())
                };
                (name, s.clone())
            })
            .collect();
        Sinks { sinks: named }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Whether a sink has yet to acknowledge `asset` (else its bytes need not
    /// be read again).
    pub(crate) fn pending(&self, ledger: &DeliveryLedger, asset: &AssetEntry) -> bool {
        let key = asset_key(asset);
        self.sinks.iter().any(|(name, _)| ledger.acked(name, &key).is_none())
    }

    /// Hand `asset` to every sink that has not acknowledged it, in order, each
    /// told where the earlier ones put it; returns the sinks' errors.
    pub(crate) async fn deliver(
        &self,
        ledger: &DeliveryLedger,
        asset: &AssetEntry,
        artifact: &Artifact,
    ) -> Vec<String> {
        let key = asset_key(asset);
        let mut delivery = Delivery {
            run: ledger.run().to_string(),
            event: ledger.event_id(&key),
            urls: Vec::new(),
        };
        let mut errors = Vec::new();
        for (name, sink) in self.sinks.iter() {
            let url = match ledger.acked(name, &key) {
                Some(url) => url,
                None => match sink.deliver_event(&delivery, asset, artifact).await {
                    Ok(receipt) => {
                        if let Err(e) = ledger.ack(name, &key, receipt.url.clone()) {
                            errors.push(format!("sink `{name}`: {e}"));
                        }
                        receipt.url
                    }
                    Err(e) => {
                        errors.push(e.to_string());
                        None
                    }
                },
            };
            if let Some(url) = url {
                delivery.urls.push((name.clone(), url));
            }
        }
        errors
    }

    /// The end of the run for every sink that has not acknowledged this end
    /// (the same assets, jobs and `errors` counted), adding its errors to
    /// `errors`; whether every sink
    /// was asked (`false`: `cancel` stopped the pass).
    pub(crate) async fn finish(
        &self,
        ledger: &DeliveryLedger,
        summary: &ManifestSummary,
        report: &Report,
        cancel: Option<&CancellationToken>,
        errors: &mut Vec<String>,
    ) -> bool {
        // A resume that delivers what failed before, or finishes more jobs, is
        // a new end (a new event); one that changes nothing is the same end.
        let key = format!(
            "finished/{}/{}/{}/{}",
            summary.assets,
            summary.jobs_complete,
            summary.jobs,
            errors.len()
        );
        let delivery = Delivery {
            run: ledger.run().to_string(),
            event: ledger.event_id(&key),
            urls: Vec::new(),
        };
        for (name, sink) in self.sinks.iter() {
            if ledger.acked(name, &key).is_some() {
                continue;
            }
            let finished = sink.finish_event(&delivery, summary, report);
            let result = match cancel {
                Some(t) if t.is_cancelled() => return false,
                Some(t) => tokio::select! {
                    r = finished => r,
                    () = t.cancelled() => return false,
                },
                None => finished.await,
            };
            match result {
                Ok(()) => {
                    if let Err(e) = ledger.ack(name, &key, None) {
                        errors.push(format!("sink `{name}`: {e}"));
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("creative-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_resume_keeps_the_run_id_and_acknowledgements_and_a_fresh_run_drops_both() {
        let d = dir("resume");
        let first = DeliveryLedger::open(&d, true).unwrap();
        first.ack("hook", "j/s/0/abc", Some("https://x/a.png".into())).unwrap();
        let (run, event) = (first.run().to_string(), first.event_id("j/s/0/abc"));
        drop(first);
        // A half-written last line (a crash mid-append) is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.join(DELIVERIES_FILE))
            .unwrap()
            .write_all(b"{\"sink\":\"hook\",\"ke")
            .unwrap();
        let resumed = DeliveryLedger::open(&d, false).unwrap();
        assert_eq!(resumed.run(), run);
        assert_eq!(resumed.event_id("j/s/0/abc"), event);
        assert_eq!(resumed.acked("hook", "j/s/0/abc"), Some(Some("https://x/a.png".into())));
        assert_eq!(resumed.acked("other", "j/s/0/abc"), None);
        resumed.ack("hook", "j/s/1/def", None).unwrap();
        drop(resumed);
        let again = DeliveryLedger::open(&d, false).unwrap();
        assert_eq!(
            again.acked("hook", "j/s/1/def"),
            Some(None),
            "the ack after a torn line is whole"
        );
        drop(again);
        let fresh = DeliveryLedger::open(&d, true).unwrap();
        assert_ne!(fresh.run(), run);
        assert_ne!(fresh.event_id("j/s/0/abc"), event);
        assert_eq!(fresh.acked("hook", "j/s/0/abc"), None);
        let _ = std::fs::remove_dir_all(&d);
    }
}
