//! Helpers shared by the root integration tests.

use std::path::PathBuf;

pub mod manifest;

/// A fresh folder under the system's temp dir, unique to this process and moment;
/// tests remove it when they pass and leave it for inspection when they fail.
pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!("creative-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
