//! The farm template (`examples/farm/campaign.openjd.yaml`) run by a real Open
//! Job Description runtime, the `openjd` CLI (PyPI `openjd-cli`, which the
//! project's CI installs): shard tasks then a merge task give the manifest of an
//! unsharded run, and a shard task retried on a worker pays for nothing twice.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use crate::common;
use common::manifest::{assert_run_fields_plausible, assert_same_but_run_fields};
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

fn template() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/farm/campaign.openjd.yaml")
}

fn spec(call_log: &Path) -> String {
    format!(
        r#"
name = "farm-test"
concurrency = 4

[providers.art]
kind = "procedural"
cost_per_image = 0.01
call_log = "{log}"

[matrix]
product = ["mug", "lamp", "chair", "bag"]
locale = ["en", "fr"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}} ({{{{ locale }}}})"
size = "64x64"

[[steps]]
name = "thumb"
kind = "resize"
inputs = ["hero"]
width = 32

[output]
steps = ["hero", "thumb"]
file_name = "{{{{ locale }}}}/{{{{ product }}}}-{{{{ step }}}}.{{{{ ext }}}}"
"#,
        log = call_log.display()
    )
}

/// `python3 -m openjd ARGS`; a missing CLI fails with how to install it.
fn openjd(args: &[&str]) -> Output {
    let o = Command::new("python3")
        .args(["-m", "openjd"])
        .args(args)
        .output()
        .expect("python3 runs (the farm test needs python3 and openjd-cli)");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !stderr.contains("No module named openjd"),
        "the Open Job Description CLI is not installed: python3 -m pip install openjd-cli (the project's CI does)"
    );
    assert!(
        o.status.success(),
        "openjd {args:?} failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&o.stdout)
    );
    o
}

fn call_count(log: &Path) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().lines().count()
}

#[test]
fn the_openjd_template_runs_shards_then_merges_to_the_unsharded_manifest() {
    let dir = temp_dir("farm");
    let log = dir.join("calls.log");
    let spec_path = dir.join("spec.toml");
    std::fs::write(&spec_path, spec(&log)).unwrap();
    let t = template();
    let t = t.to_str().unwrap();

    let o = openjd(&["check", t]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("passes validation"));

    // The reference: one run on one machine.
    let from = SystemTime::now();
    let whole = dir.join("whole");
    let o = Command::new(BIN)
        .args([
            "run",
            spec_path.to_str().unwrap(),
            "--out",
            whole.to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let whole_to = SystemTime::now();
    let reference_calls = call_count(&log);
    assert_eq!(reference_calls, 8);

    // The farm: three shard tasks, then the merge, in OpenJD sessions.
    let farm = dir.join("farm");
    let params = [
        format!("Spec={}", spec_path.display()),
        format!("OutDir={}", farm.display()),
        "Shards=3".to_string(),
        format!("Creative={BIN}"),
    ];
    let mut args = vec!["run", t, "--step", "Merge", "--run-dependencies"];
    for p in &params {
        args.extend(["-p", p.as_str()]);
    }
    let o = openjd(&args);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("merged 3 shard folders: 8 of 8 jobs complete"), "{out}");
    assert_eq!(
        call_count(&log) - reference_calls,
        8,
        "each generation once across the shards"
    );
    for k in 1..=3 {
        assert!(farm.join(format!("shard-{k}/manifest.json")).is_file());
    }
    let (merged, unsharded) = (
        std::fs::read_to_string(farm.join("all/manifest.json")).unwrap(),
        std::fs::read_to_string(whole.join("manifest.json")).unwrap(),
    );
    let fresh = assert_run_fields_plausible(&unsharded, from, whole_to).fresh;
    assert!(fresh > 0, "unsharded records fresh generations");
    let fresh = assert_run_fields_plausible(&merged, whole_to, SystemTime::now()).fresh;
    assert!(fresh > 0, "merged records fresh generations");
    assert_same_but_run_fields(&merged, &unsharded, "the merged manifest is the unsharded one");
    assert!(farm.join("all/report.json").is_file() && farm.join("all/contact_sheet.html").is_file());

    // A scheduler retrying shard 2 on another worker: it resumes, calls nothing.
    let before = call_count(&log);
    let mut args = vec!["run", t, "--step", "Shard", "--task-param", "Index=2"];
    for p in &params {
        args.extend(["-p", p.as_str()]);
    }
    openjd(&args);
    assert_eq!(call_count(&log), before, "a retried shard pays for nothing twice");
    let _ = std::fs::remove_dir_all(&dir);
}
