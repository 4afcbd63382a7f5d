//! `creative gc` removes the payloads nothing needs and keeps the rest: a run
//! resumed after it pays for nothing again; it never runs while a run holds the
//! folder; and a run with `output.cache_max_mb` keeps its cache under the cap
//! without losing a payload its journal needs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "it/common/mod.rs"]
mod common;
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

fn spec(call_log: &Path, latency_ms: u64, size: u32, output: &str) -> String {
    format!(
        r#"
name = "gc-test"
concurrency = 4

[providers.art]
kind = "procedural"
latency_ms = {latency_ms}
call_log = "{log}"

[matrix]
product = ["mug", "lamp", "chair", "bag"]
channel = ["square", "story", "banner"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}} for {{{{ channel }}}}"
size = "{size}x{size}"

[[steps]]
name = "caption"
kind = "generate"
task = "text"
providers = ["art"]
prompt = "caption: {{{{ product }}}} {{{{ channel }}}}"

[output]
file_name = "{{{{ step }}}}/{{{{ product }}}}-{{{{ channel }}}}.{{{{ ext }}}}"
{output}
"#,
        log = call_log.display()
    )
}

const STEPS: usize = 4 * 3 * 2;

fn calls(log: &Path) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().lines().count()
}

fn creative(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("runner starts")
}

fn ok(o: &std::process::Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The payload ids named by every line of a JSON-lines file under `key`
/// (`outputs` for the journal), and by every cache entry.
fn named(state: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for l in std::fs::read_to_string(state.join("journal.jsonl")).unwrap().lines() {
        let r: serde_json::Value = serde_json::from_str(l).unwrap();
        for o in r["outputs"].as_array().unwrap() {
            ids.push(o["id"].as_str().unwrap().to_string());
        }
    }
    for text in cache_entries(state) {
        let entry: serde_json::Value = serde_json::from_slice(&text).unwrap();
        for a in entry["artifacts"].as_array().unwrap() {
            ids.push(a["id"].as_str().unwrap().to_string());
        }
    }
    ids
}

/// The encoded cache entries in the state folder's cache index.
fn cache_entries(state: &Path) -> Vec<Vec<u8>> {
    let path = state.join("cache.sqlite");
    if !path.exists() {
        return Vec::new();
    }
    let db = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut q = db.prepare("SELECT body FROM entries").unwrap();
    let rows = q.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

fn blob(state: &Path, id: &str) -> PathBuf {
    state.join("objects").join(&id[..2]).join(id)
}

/// Every delivered file under the output folder's step folders, with its bytes.
fn delivered(out: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for step in ["hero", "caption"] {
        for e in std::fs::read_dir(out.join(step)).unwrap() {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            files.insert(p, bytes);
        }
    }
    files
}

#[test]
fn gc_removes_an_orphaned_payload_keeps_every_payload_the_journal_and_cache_name_and_a_resumed_run_pays_nothing_again()
{
    let dir = temp_dir("gc");
    let log = dir.join("calls.log");
    let spec_path = dir.join("campaign.toml");
    std::fs::write(&spec_path, spec(&log, 0, 64, "")).unwrap();
    let (spec_s, out) = (spec_path.to_str().unwrap(), dir.join("out"));
    let out_s = out.to_str().unwrap();
    ok(&creative(&["run", spec_s, "--out", out_s, "--quiet"]), "first run");
    // A fresh run over it moves the journal aside (and pays nothing: cache).
    ok(&creative(&["run", spec_s, "--out", out_s, "--quiet"]), "fresh run");
    assert_eq!(calls(&log), STEPS);
    let state = out.join(".creative");
    assert!(state.join("journal.jsonl.prev").exists());
    // A payload nothing names (an evicted entry's, a replaced step's) and a
    // temporary a killed writer left.
    let orphan = "ab".repeat(32);
    std::fs::create_dir_all(blob(&state, &orphan).parent().unwrap()).unwrap();
    std::fs::write(blob(&state, &orphan), vec![7u8; 4096]).unwrap();
    let temp = state.join("objects").join("ab").join(format!(".{orphan}.99.1.tmp"));
    std::fs::write(&temp, b"half").unwrap();
    let files = delivered(&out);
    let live = named(&state);
    assert!(live.len() >= 2 * STEPS);

    let dry = ok(&creative(&["gc", spec_s, "--out", out_s, "--dry-run"]), "gc --dry-run");
    assert!(
        dry.starts_with("would remove 1 payloads (4.0 KiB), 1 temporaries"),
        "{dry}"
    );
    assert!(dry.contains("journal.jsonl.prev"), "{dry}");
    assert!(
        blob(&state, &orphan).exists() && temp.exists(),
        "a dry run removes nothing"
    );

    let json = ok(&creative(&["gc", spec_s, "--out", out_s, "--json"]), "gc");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["payloads_removed"], 1, "{json}");
    assert_eq!(report["payload_bytes_removed"], 4096, "{json}");
    assert_eq!(report["temps_removed"], 1, "{json}");
    assert!(!blob(&state, &orphan).exists() && !temp.exists());
    assert!(!state.join("journal.jsonl.prev").exists());
    for id in &live {
        assert!(blob(&state, id).exists(), "payload {id} is named and kept");
    }
    assert_eq!(delivered(&out), files, "delivered files are untouched");

    // Nothing is paid again: not by a resume (the journal), not by a fresh run
    // (the cache).
    ok(
        &creative(&["run", spec_s, "--out", out_s, "--quiet", "--resume"]),
        "resume",
    );
    assert_eq!(calls(&log), STEPS, "the resume paid for nothing");
    ok(
        &creative(&["run", spec_s, "--out", out_s, "--quiet"]),
        "fresh run after gc",
    );
    assert_eq!(calls(&log), STEPS, "the fresh run was served by the cache");
    let again = ok(&creative(&["gc", spec_s, "--out", out_s]), "second gc");
    assert!(again.starts_with("removed 0 payloads"), "{again}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gc_refuses_while_a_run_holds_the_output_folder() {
    let dir = temp_dir("gc-busy");
    let log = dir.join("calls.log");
    let spec_path = dir.join("campaign.toml");
    std::fs::write(&spec_path, spec(&log, 2000, 64, "")).unwrap();
    let (spec_s, out) = (spec_path.to_str().unwrap(), dir.join("out"));
    let out_s = out.to_str().unwrap();
    let mut child = Command::new(BIN)
        .args(["run", spec_s, "--out", out_s, "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the run holds the folder: its pid is in the lock file.
    let lock = out.join(".creative").join("lock");
    let pid = child.id().to_string();
    let started = Instant::now();
    while std::fs::read_to_string(&lock).unwrap_or_default().trim() != pid {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never took the folder"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended before gc could try");
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = creative(&["gc", spec_s, "--out", out_s]);
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(still_running, "the run ended while gc tried: the test proves nothing");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("in use by a run") && err.contains(&pid), "{err}");
    // Once the run is gone, gc runs.
    ok(&creative(&["gc", spec_s, "--out", out_s]), "gc after the run");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_with_cache_max_mb_keeps_its_cache_near_the_cap_and_every_payload_its_journal_needs() {
    let dir = temp_dir("gc-cap");
    let log = dir.join("calls.log");
    let spec_path = dir.join("campaign.toml");
    std::fs::write(&spec_path, spec(&log, 0, 512, "cache_max_mb = 1")).unwrap();
    let (spec_s, out) = (spec_path.to_str().unwrap(), dir.join("out"));
    let out_s = out.to_str().unwrap();
    ok(&creative(&["run", spec_s, "--out", out_s, "--quiet"]), "capped run");
    let state = out.join(".creative");
    // The cache's size as the cap counts it: entries plus the payloads named.
    let mut cached = 0u64;
    let mut entries = 0;
    let mut largest = 0;
    for text in cache_entries(&state) {
        let entry: serde_json::Value = serde_json::from_slice(&text).unwrap();
        let size = text.len() as u64
            + entry["artifacts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["bytes"].as_u64().unwrap())
                .sum::<u64>();
        largest = largest.max(size);
        cached += size;
        entries += 1;
    }
    let cap = 1 << 20;
    assert!(entries < STEPS, "{entries} entries: nothing was evicted");
    assert!(
        cached <= cap + largest,
        "{cached} bytes cached, cap {cap} + one entry {largest}"
    );
    // The journal lost nothing: every payload it names is there, and a resume
    // pays for nothing.
    for id in named(&state) {
        assert!(blob(&state, &id).exists(), "payload {id} is kept");
    }
    ok(
        &creative(&["run", spec_s, "--out", out_s, "--quiet", "--resume"]),
        "resume",
    );
    assert_eq!(calls(&log), STEPS, "the resume paid for nothing");
    let _ = std::fs::remove_dir_all(&dir);
}
