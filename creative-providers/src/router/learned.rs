//! What a router learned, kept between runs in a small JSON file.
//!
//! One entry per member, keyed by provider id, model and gate set: the same
//! provider judged by other gates is another entry, since its acceptance rate is
//! a property of the pair. Entries hold evidence (discounted counts), not rates,
//! so files written by several runs or shards merge by addition; the total is
//! capped at the router's window so that old runs fade as new ones come.
//!
//! Writes go to a temporary file renamed over the old one, so a crash never
//! leaves half a file. Two processes merging into the same file at the same
//! instant may lose one merge (a few dozen observations), which costs a little
//! learning, never a run.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One member's evidence, as exported by [`Router::learned`](super::Router::learned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Learned {
    /// The member's provider id.
    pub provider: String,
    /// The member's default model for the router's first task, when it has models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The gate set its outputs were judged by ([`RouterBuilder::gate_set`](super::RouterBuilder::gate_set)).
    #[serde(default)]
    pub gate_set: String,
    /// Evidence of accepted attempts (discounted count).
    pub accepted: f64,
    /// Evidence of rejected or failed attempts (discounted count).
    pub rejected: f64,
    /// Attempts behind `cost_usd` (discounted count).
    pub attempts: f64,
    /// What those attempts were billed, in US dollars.
    pub cost_usd: f64,
    /// Moving average of latency, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_s: Option<f64>,
}

impl Learned {
    fn same_key(&self, other: &Learned) -> bool {
        self.provider == other.provider && self.model == other.model && self.gate_set == other.gate_set
    }

    /// Whether every number is finite and not negative (a hand-edited file may
    /// hold anything).
    fn is_sane(&self) -> bool {
        [self.accepted, self.rejected, self.attempts, self.cost_usd]
            .iter()
            .chain(self.latency_s.iter())
            .all(|x| x.is_finite() && *x >= 0.0)
    }

    /// Scale the evidence down so `accepted + rejected` is at most `cap`,
    /// keeping its rates.
    pub(crate) fn capped(mut self, cap: f64) -> Learned {
        let total = self.accepted + self.rejected;
        if total > cap && total > 0.0 {
            let f = cap / total;
            self.accepted *= f;
            self.rejected *= f;
            self.attempts *= f;
            self.cost_usd *= f;
        }
        self
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    members: Vec<Learned>,
}

const VERSION: u32 = 1;

/// The statistics file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StatsFileError {
    /// Reading or writing failed.
    #[error("learned router statistics `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The file is not what a router writes.
    #[error("learned router statistics `{path}` is not valid: {reason} (delete it to start learning afresh)")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where and what, as the parser says it.
        reason: String,
    },
}

/// Read the file; a missing file is an empty one.
pub(crate) fn load(path: &Path) -> Result<Vec<Learned>, StatsFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StatsFileError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let invalid = |reason: String| StatsFileError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let file: File = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if file.version != VERSION {
        return Err(invalid(format!(
            "version {} (this build reads {VERSION})",
            file.version
        )));
    }
    if let Some((n, bad)) = file.members.iter().enumerate().find(|(_, m)| !m.is_sane()) {
        return Err(invalid(format!(
            "members[{n}] (`{}`) holds a negative or non-finite number",
            bad.provider
        )));
    }
    Ok(file.members)
}

/// Add `fresh` evidence to what the file holds (another run or shard may have
/// written it since it was loaded), cap each entry at `cap`, and write it back.
pub(crate) fn merge_into(path: &Path, fresh: &[Learned], cap: f64) -> Result<(), StatsFileError> {
    let mut members = load(path)?;
    for f in fresh {
        match members.iter_mut().find(|m| m.same_key(f)) {
            Some(m) => {
                m.accepted += f.accepted;
                m.rejected += f.rejected;
                m.attempts += f.attempts;
                m.cost_usd += f.cost_usd;
                if f.latency_s.is_some() {
                    m.latency_s = f.latency_s;
                }
            }
            None => members.push(f.clone()),
        }
    }
    let members: Vec<Learned> = members.into_iter().map(|m| m.capped(cap)).collect();
    let json = serde_json::to_vec_pretty(&File {
        version: VERSION,
        members,
    })
    .map_err(|e| StatsFileError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let io_err = |source| StatsFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, json).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(provider: &str, accepted: f64, rejected: f64) -> Learned {
        Learned {
            provider: provider.into(),
            model: Some("m".into()),
            gate_set: "g".into(),
            accepted,
            rejected,
            attempts: accepted + rejected,
            cost_usd: 0.01 * (accepted + rejected),
            latency_s: Some(0.2),
        }
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("creative-learned-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("routing").join("r.json")
    }

    #[test]
    fn merges_from_two_writers_add_up_and_are_capped_at_the_window() {
        let path = temp_path("merge");
        assert!(load(&path).unwrap().is_empty(), "a missing file is empty");
        merge_into(&path, &[entry("a", 10.0, 5.0)], 100.0).unwrap();
        merge_into(&path, &[entry("a", 20.0, 5.0), entry("b", 1.0, 1.0)], 100.0).unwrap();
        let got = load(&path).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].accepted, got[0].rejected), (30.0, 10.0));
        merge_into(&path, &[entry("a", 160.0, 0.0)], 100.0).unwrap();
        let a = &load(&path).unwrap()[0];
        assert!((a.accepted + a.rejected - 100.0).abs() < 1e-9, "{a:?}");
        assert!((a.accepted / (a.accepted + a.rejected) - 190.0 / 200.0).abs() < 1e-9);
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it_and_is_not_overwritten() {
        let path = temp_path("bad");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"version\": 1, \"members\": [ {\"provider\": 3 ").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("r.json") && e.contains("line 1"), "{e}");
        assert!(merge_into(&path, &[entry("a", 1.0, 0.0)], 100.0).is_err());
        assert!(std::fs::read_to_string(&path).unwrap().contains("\"provider\": 3"));
        std::fs::write(
            &path,
            serde_json::to_string(&File {
                version: 1,
                members: vec![entry("a", -1.0, 0.0)],
            })
            .unwrap(),
        )
        .unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("members[0]") && e.contains("`a`"), "{e}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }
}
