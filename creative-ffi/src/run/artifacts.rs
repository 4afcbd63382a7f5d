//! A finished run's artifacts, read back from its output folder on demand
//! and kept while the run is held, so the bytes a host borrows stay put.

use std::collections::HashMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use creative_core::Artifact;

use crate::status::{creative_status, FfiError};

/// One artifact as a host reads it: its job, step, delivered path and media
/// type beside the artifact itself.
pub(crate) struct ArtifactEntry {
    pub(crate) job: String,
    pub(crate) vars: serde_json::Value,
    pub(crate) step: String,
    /// The delivered file, absolute.
    pub(crate) path: Option<String>,
    pub(crate) artifact: Artifact,
    pub(crate) media: CString,
}

/// A finished run's artifacts (every finished step's outputs): where each
/// one's entry sits in the output folder's artifact list (8 bytes an
/// artifact), and the entries a host has
/// asked for, loaded with their payloads and kept until the run is freed (the
/// bytes are lent). The list file stays open, so a later run into the same
/// folder (which replaces it) does not change what this run reads.
#[derive(Default)]
pub(crate) struct Artifacts {
    source: Option<AssetSource>,
    offsets: Vec<u64>,
    loaded: Mutex<HashMap<usize, Arc<ArtifactEntry>>>,
}

struct AssetSource {
    file: Mutex<std::fs::File>,
    blobs: creative_campaign::store::BlobStore,
    out_dir: PathBuf,
}

impl Artifacts {
    /// The assets a campaign delivered into `out_dir`.
    pub(crate) fn open(out_dir: &std::path::Path) -> Result<Artifacts, FfiError> {
        use std::io::BufRead;
        let state = out_dir.join(creative_campaign::spec::STATE_DIR);
        let path = state.join(creative_campaign::spec::ARTIFACTS_FILE);
        let io = |e: std::io::Error| FfiError::new(creative_status::Io, format!("read {}: {e}", path.display()));
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Artifacts::default()),
            Err(e) => return Err(io(e)),
        };
        let mut offsets = Vec::new();
        let mut at = 0u64;
        let mut reader = std::io::BufReader::new(file.try_clone().map_err(io)?);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(io)?;
            if n == 0 {
                break;
            }
            if line.ends_with(b"\n") {
                offsets.push(at);
            }
            at += n as u64;
        }
        Ok(Artifacts {
            source: Some(AssetSource {
                file: Mutex::new(file),
                blobs: creative_campaign::store::BlobStore::new(state.join("objects")),
                out_dir: out_dir.to_path_buf(),
            }),
            offsets,
            loaded: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Asset `index`, read (once) from the output folder.
    pub(crate) fn get(&self, index: usize) -> Result<Arc<ArtifactEntry>, FfiError> {
        use std::io::{BufRead, Seek};
        let (Some(src), Some(&at)) = (&self.source, self.offsets.get(index)) else {
            return Err(FfiError::invalid(format!(
                "artifact index {index} is out of range: the run has {} artifact(s)",
                self.len()
            )));
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = loaded.get(&index) {
            return Ok(e.clone());
        }
        let io = |e: String| FfiError::new(creative_status::Io, format!("artifact {index}: {e}"));
        let mut line = Vec::new();
        {
            let mut f = src.file.lock().unwrap_or_else(|p| p.into_inner());
            f.seek(std::io::SeekFrom::Start(at)).map_err(|e| io(e.to_string()))?;
            std::io::BufReader::new(&mut *f)
                .read_until(b'\n', &mut line)
                .map_err(|e| io(e.to_string()))?;
        }
        let line: creative_campaign::spec::ArtifactLine =
            serde_json::from_slice(&line).map_err(|e| io(e.to_string()))?;
        let a = line.artifact;
        let data = src
            .blobs
            .get(&a.id, &a.media)
            .map_err(|e| io(e.to_string()))?
            .ok_or_else(|| io(format!("payload {} is missing from the output folder", a.id)))?;
        let entry = Arc::new(ArtifactEntry {
            job: line.job,
            vars: serde_json::to_value(&line.vars).unwrap_or_default(),
            step: line.step,
            path: line.path.as_ref().map(|p| src.out_dir.join(p).display().to_string()),
            // Media types come from MIME strings; a NUL in one is replaced.
            media: CString::new(a.media.as_str().replace('\0', "?")).unwrap_or_default(),
            artifact: a.into_artifact(data),
        });
        loaded.insert(index, entry.clone());
        Ok(entry)
    }
}
