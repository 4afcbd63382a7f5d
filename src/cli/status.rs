//! `creative status OUT`: what an output folder holds, read from its files
//! alone (no spec needed): campaign, spec hash, jobs done, assets, spend, the
//! last run's end and status, and the size of the hidden store beside what was
//! delivered (`creative gc` trims the store).

use std::path::Path;
use std::process::ExitCode;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::json;

use super::args::StatusArgs;
use super::out;

/// The manifest's counts: entries are counted, never held (IgnoredAny), so a
/// million-job manifest is read in constant memory per entry.
#[derive(Deserialize)]
struct ManifestCounts {
    campaign: String,
    spec_hash: String,
    jobs: Vec<JobDone>,
    assets: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct JobDone {
    complete: bool,
}

/// Bytes and files under `dir`, recursively (`skip` names a child not counted).
fn size_of(dir: &Path, skip: Option<&str>) -> (u64, u64) {
    let mut bytes = 0;
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            if d == dir && skip.is_some_and(|s| e.file_name() == s) {
                continue;
            }
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                bytes += m.len();
                files += 1;
            }
        }
    }
    (bytes, files)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// `creative status`.
pub fn status(a: StatusArgs) -> ExitCode {
    let dir = &a.out;
    if !dir.is_dir() {
        eprintln!("error: {} is not a folder", dir.display());
        return ExitCode::from(super::run::DID_NOT_START);
    }
    let manifest_path = dir.join("manifest.json");
    let manifest: Option<ManifestCounts> = match std::fs::File::open(&manifest_path) {
        Ok(f) => match serde_json::from_reader(std::io::BufReader::new(f)) {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("error: {}: {e}", manifest_path.display());
                return ExitCode::from(1);
            }
        },
        Err(_) => None,
    };
    let report: Option<serde_json::Value> = std::fs::read(dir.join("report.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let state = dir.join(creative::campaign::spec::STATE_DIR);
    let (store_bytes, store_files) = size_of(&state, None);
    let (delivered_bytes, delivered_files) = size_of(dir, Some(creative::campaign::spec::STATE_DIR));
    let last_run = std::fs::metadata(dir.join("report.json"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    if manifest.is_none() && report.is_none() && store_files == 0 {
        eprintln!(
            "error: {} holds no campaign output (no manifest.json, report.json or {})",
            dir.display(),
            creative::campaign::spec::STATE_DIR
        );
        return ExitCode::from(1);
    }
    let jobs = manifest.as_ref().map(|m| m.jobs.len() as u64);
    let done = manifest
        .as_ref()
        .map(|m| m.jobs.iter().filter(|j| j.complete).count() as u64);
    let status = report
        .as_ref()
        .and_then(|r| r.get("status"))
        .and_then(|s| s.as_str())
        .map(String::from);
    let cost = report
        .as_ref()
        .and_then(|r| r.pointer("/totals/cost_usd"))
        .and_then(|c| c.as_f64());
    let sessions = report.as_ref().and_then(|r| r.get("sessions")).and_then(|c| c.as_u64());
    if a.json {
        out::println(
            &serde_json::to_string_pretty(&json!({
                "folder": dir,
                "campaign": manifest.as_ref().map(|m| &m.campaign),
                "spec_hash": manifest.as_ref().map(|m| &m.spec_hash),
                "jobs": jobs,
                "jobs_complete": done,
                "assets": manifest.as_ref().map(|m| m.assets.len()),
                "last_status": status,
                "cost_usd": cost,
                "sessions": sessions,
                "last_run_unix_s": last_run,
                "delivered_bytes": delivered_bytes,
                "store_bytes": store_bytes,
            }))
            .unwrap_or_default(),
        );
        return ExitCode::SUCCESS;
    }
    let mut t = super::tables::table(&["", ""]);
    let dash = || "-".to_string();
    let mut row = |k: &str, v: String| {
        t.add_row(vec![k.to_string(), v]);
    };
    row("folder", dir.display().to_string());
    row(
        "campaign",
        manifest.as_ref().map(|m| m.campaign.clone()).unwrap_or_else(dash),
    );
    row(
        "spec hash",
        manifest
            .as_ref()
            .map(|m| m.spec_hash.chars().take(16).collect())
            .unwrap_or_else(dash),
    );
    row(
        "jobs",
        match (done, jobs) {
            (Some(d), Some(j)) => format!("{d} of {j} complete"),
            _ => dash(),
        },
    );
    row(
        "assets",
        manifest
            .as_ref()
            .map(|m| m.assets.len().to_string())
            .unwrap_or_else(dash),
    );
    row(
        "last run",
        match (&status, last_run) {
            (Some(s), Some(t)) => format!("{s}, ended {} (unix {t})", ago(t)),
            (Some(s), None) => s.clone(),
            _ => dash(),
        },
    );
    row(
        "spend",
        cost.map(|c| format!("${c:.4} over {} sessions", sessions.unwrap_or(1)))
            .unwrap_or_else(dash),
    );
    row(
        "delivered",
        format!("{} in {delivered_files} files", mib(delivered_bytes)),
    );
    row(
        "store",
        format!(
            "{} in {store_files} files ({}; `creative gc SPEC --out DIR` trims it)",
            mib(store_bytes),
            creative::campaign::spec::STATE_DIR
        ),
    );
    out::println(&t.to_string());
    ExitCode::SUCCESS
}

fn ago(unix_s: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(unix_s);
    format!(
        "{} ago",
        super::progress::duration_text(now.saturating_sub(unix_s) as f64)
    )
}
