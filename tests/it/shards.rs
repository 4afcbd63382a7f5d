//! A campaign split into shards by job key, each run on its own (as on separate
//! machines), then merged, gives the same manifest as one unsharded run.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use crate::common;
use common::manifest::{assert_run_fields_plausible, assert_same_but_run_fields};
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

const SPEC: &str = r#"
name = "shard-test"
concurrency = 4

[providers.art]
kind = "procedural"
cost_per_image = 0.01

[matrix]
product = ["mug", "lamp", "chair"]
locale = ["en", "fr", "de"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{ product }} ({{ locale }})"
size = "64x64"
gates = [{ kind = "format", media = ["image/png"] }]

[[steps]]
name = "thumb"
kind = "resize"
inputs = ["hero"]
width = 32
output = { format = "jpeg", quality = 80 }

[output]
file_name = "{{ locale }}/{{ product }}-{{ step }}.{{ ext }}"
"#;

fn creative(dir: &Path, args: &[&str]) -> String {
    let o = Command::new(BIN).current_dir(dir).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "creative {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assets(out: &Path) -> usize {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    m["assets"].as_array().unwrap().len()
}

#[test]
fn shards_run_apart_and_merge_to_the_unsharded_manifest() {
    let dir = temp_dir("shards");
    std::fs::write(dir.join("spec.toml"), SPEC).unwrap();
    let from = SystemTime::now();
    creative(&dir, &["run", "spec.toml", "--quiet", "--out", "whole"]);
    let whole_to = SystemTime::now();
    creative(
        &dir,
        &["run", "spec.toml", "--quiet", "--out", "part1", "--shard", "1/2"],
    );
    creative(
        &dir,
        &["run", "spec.toml", "--quiet", "--out", "part2", "--shard", "2/2"],
    );
    // Each shard did only its own jobs, and together they did all of them.
    let (a1, a2) = (assets(&dir.join("part1")), assets(&dir.join("part2")));
    assert!(a1 > 0 && a2 > 0, "both shards have work: {a1} and {a2}");
    assert_eq!(a1 + a2, assets(&dir.join("whole")));

    let out = creative(&dir, &["merge", "spec.toml", "part1", "part2", "--out", "merged"]);
    assert!(out.contains("9 of 9 jobs complete"), "{out}");
    let to = SystemTime::now();
    let whole = std::fs::read_to_string(dir.join("whole/manifest.json")).unwrap();
    let merged = std::fs::read_to_string(dir.join("merged/manifest.json")).unwrap();
    let fresh = assert_run_fields_plausible(&whole, from, whole_to).fresh;
    assert!(fresh > 0, "whole records fresh generations");
    let fresh = assert_run_fields_plausible(&merged, whole_to, to).fresh;
    assert!(fresh > 0, "merged records fresh generations");
    assert_same_but_run_fields(&whole, &merged, "unsharded vs merged shards");
    // The merge keeps what the shards recorded of each asset (latency,
    // attempt, finish time), entry for entry.
    let parts: Vec<serde_json::Value> = ["part1", "part2"]
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(dir.join(p).join("manifest.json")).unwrap()).unwrap())
        .collect();
    let merged: serde_json::Value = serde_json::from_str(&merged).unwrap();
    for a in merged["assets"].as_array().unwrap() {
        let same = |b: &&serde_json::Value| b["job"] == a["job"] && b["step"] == a["step"] && b["index"] == a["index"];
        let shard = parts
            .iter()
            .find_map(|m| m["assets"].as_array().unwrap().iter().find(same));
        assert_eq!(shard, Some(a), "the merged entry is its shard's");
    }
    for f in [
        "fr/lamp-thumb.jpg",
        "de/chair-thumb.jpg",
        "report.json",
        "contact_sheet.html",
    ] {
        assert!(dir.join("merged").join(f).is_file(), "{f}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_shards_and_empty_merges_are_refused_with_a_reason() {
    let dir = temp_dir("shards-bad");
    std::fs::write(dir.join("spec.toml"), SPEC).unwrap();
    for bad in ["0/2", "3/2", "x"] {
        let o = Command::new(BIN)
            .current_dir(&dir)
            .args(["run", "spec.toml", "--shard", bad])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("write K/N"), "{bad}");
    }
    std::fs::create_dir_all(dir.join("nothing")).unwrap();
    let o = Command::new(BIN)
        .current_dir(&dir)
        .args(["merge", "spec.toml", "nothing", "--out", "merged"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("holds no campaign run"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
