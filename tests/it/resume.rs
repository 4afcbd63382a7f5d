//! A campaign killed with SIGKILL mid-run and resumed gives the same manifest as
//! an uninterrupted run, and no asset finished before the kill is generated again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::common;
use common::manifest::{assert_run_fields_plausible, assert_same_but_run_fields};
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");
const CONCURRENCY: usize = 2;

fn spec(call_log: &Path) -> String {
    format!(
        r#"
name = "resume-test"
concurrency = {CONCURRENCY}

[providers.art]
kind = "procedural"
latency_ms = 120
cost_per_image = 0.02
call_log = "{log}"

[matrix]
product = ["mug", "lamp", "chair", "bag"]
channel = ["square", "story", "banner"]
locale = ["en", "fr"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}} for {{{{ channel }}}} ({{{{ locale }}}})"
size = "64x64"

[[steps]]
name = "caption"
kind = "generate"
task = "text"
providers = ["art"]
prompt = "caption: {{{{ product }}}} {{{{ channel }}}} {{{{ locale }}}}"

[output]
file_name = "{{{{ step }}}}/{{{{ product }}}}-{{{{ channel }}}}-{{{{ locale }}}}.{{{{ ext }}}}"
"#,
        log = call_log.display()
    )
}

/// Calls in a procedural call log, as (task, prompt) per line.
fn calls(log: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            let task = parts.next()?.to_string();
            let _seed = parts.next()?;
            Some((task, parts.next()?.to_string()))
        })
        .collect()
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("runner starts")
}

/// (task, prompt) of every step recorded in a journal.
fn journaled(journal: &Path) -> Vec<(String, String, String, String)> {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|r| {
            let params = &r["outputs"][0]["provenance"]["params"];
            (
                r["job"].as_str().unwrap_or_default().to_string(),
                r["step"].as_str().unwrap_or_default().to_string(),
                params["task"].as_str().unwrap_or_default().to_string(),
                params["prompt"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_killed_run_resumes_to_the_same_manifest_without_paying_twice() {
    let dir = temp_dir("resume");
    let steps_total = 4 * 3 * 2 * 2;

    // The reference: one uninterrupted run. Both runs use the same spec (its
    // hash is in the manifest), so they share one call log, read by offset.
    let log = dir.join("calls.log");
    let spec_a = dir.join("campaign.toml");
    std::fs::write(&spec_a, spec(&log)).unwrap();
    let spec_b = spec_a.clone();
    let out_a = dir.join("out-a");
    let a_from = SystemTime::now();
    let o = run(&[
        "run",
        spec_a.to_str().unwrap(),
        "--out",
        out_a.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        o.status.success(),
        "reference run failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let a_to = SystemTime::now();
    let reference_calls = calls(&log).len();
    assert_eq!(reference_calls, steps_total, "one call per generation");

    // The same campaign, killed in the middle.
    let b_from = SystemTime::now();
    let out_b = dir.join("out-b");
    let journal = out_b.join(".creative").join("journal.jsonl");
    let mut child = Command::new(BIN)
        .args([
            "run",
            spec_b.to_str().unwrap(),
            "--out",
            out_b.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if journaled(&journal).len() >= 12 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the run made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done_before = journaled(&journal);
    let calls_before = calls(&log).len() - reference_calls;
    assert!(
        done_before.len() < steps_total,
        "the kill came after the end ({} steps done)",
        done_before.len()
    );
    assert!(!out_b.join("manifest.json").exists(), "a killed run writes no manifest");
    // Jobs that ended before the kill delivered their files as they ended.
    let mut early: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for step in ["hero", "caption"] {
        for e in std::fs::read_dir(out_b.join(step)).into_iter().flatten() {
            let path = e.unwrap().path();
            if !path.to_string_lossy().ends_with(".tmp") {
                let bytes = std::fs::read(&path).unwrap();
                early.push((path, bytes));
            }
        }
    }
    assert!(!early.is_empty(), "no file was delivered before the kill");

    // Resume.
    let resumed_from = SystemTime::now();
    let o = run(&[
        "run",
        spec_b.to_str().unwrap(),
        "--out",
        out_b.to_str().unwrap(),
        "--quiet",
        "--resume",
    ]);
    assert!(
        o.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let b_to = SystemTime::now();

    // Same manifest but for what each run recorded of itself.
    let ma = std::fs::read_to_string(out_a.join("manifest.json")).unwrap();
    let mb = std::fs::read_to_string(out_b.join("manifest.json")).unwrap();
    let fresh = assert_run_fields_plausible(&ma, a_from, a_to).fresh;
    assert!(fresh > 0, "ma records fresh generations");
    let fresh = assert_run_fields_plausible(&mb, b_from, b_to).fresh;
    assert!(fresh > 0, "mb records fresh generations");
    assert_same_but_run_fields(&ma, &mb, "uninterrupted vs killed and resumed");
    let m: serde_json::Value = serde_json::from_str(&mb).unwrap();
    let started = humantime::parse_rfc3339(m["started_at"].as_str().unwrap()).unwrap();
    assert!(started >= resumed_from, "the manifest's start is the resume's");
    // A step finished before the kill keeps the time it finished at (and its
    // latency and attempt): the resume read its record back.
    let before: HashSet<(&str, &str)> = done_before.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    let mut kept = 0;
    for a in m["assets"].as_array().unwrap() {
        if before.contains(&(a["job"].as_str().unwrap(), a["step"].as_str().unwrap())) {
            let at = humantime::parse_rfc3339(a["finished_at"].as_str().unwrap()).unwrap();
            assert!(
                at < resumed_from,
                "{} {} was restamped by the resume",
                a["job"],
                a["step"]
            );
            kept += 1;
        }
    }
    assert!(kept > 0, "no asset was finished before the kill");

    // No step finished before the kill was called again after it, and each of
    // them was called exactly once in all.
    let all_calls = calls(&log).split_off(reference_calls);
    let after: HashSet<&(String, String)> = all_calls[calls_before..].iter().collect();
    let mut count: HashMap<&(String, String), usize> = HashMap::new();
    for c in &all_calls {
        *count.entry(c).or_default() += 1;
    }
    for (job, step, task, prompt) in &done_before {
        let key = (task.clone(), prompt.clone());
        assert!(
            !after.contains(&key),
            "{job}/{step} finished before the kill but was generated again"
        );
        assert_eq!(count.get(&key), Some(&1), "{job}/{step} was called more than once");
    }
    // Calls in flight at the kill may be made again, nothing else.
    assert!(
        all_calls.len() <= steps_total + CONCURRENCY,
        "{} calls for {steps_total} generations",
        all_calls.len()
    );

    // The journal has each step once, and every delivered file is whole.
    let records = journaled(&journal);
    let unique: HashSet<(&String, &String)> = records.iter().map(|r| (&r.0, &r.1)).collect();
    assert_eq!(records.len(), steps_total, "no step is recorded twice");
    assert_eq!(unique.len(), steps_total);
    let manifest: serde_json::Value = serde_json::from_str(&mb).unwrap();
    let assets = manifest["assets"].as_array().unwrap();
    assert_eq!(assets.len(), steps_total);
    for a in assets {
        let path = out_b.join(a["path"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            bytes.len() as u64,
            a["bytes"].as_u64().unwrap(),
            "{} is whole",
            path.display()
        );
    }
    for (path, bytes) in &early {
        assert_eq!(
            &std::fs::read(path).unwrap(),
            bytes,
            "{} was delivered before the kill and kept",
            path.display()
        );
    }
    let mut stray = Vec::new();
    for step in ["hero", "caption"] {
        for e in std::fs::read_dir(out_b.join(step)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            if name.ends_with(".tmp") {
                stray.push(name);
            }
        }
    }
    assert!(stray.is_empty(), "half-written files left: {stray:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn budget_spec(call_log: &Path) -> String {
    format!(
        r#"
name = "budget-test"
concurrency = 1

[providers.art]
kind = "procedural"
cost_per_image = 0.05
call_log = "{log}"

[budget]
max_cost_usd = 0.20

[matrix]
product = ["mug", "lamp", "chair", "bag", "tote", "vase"]
locale = ["en", "fr"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}} ({{{{ locale }}}})"
size = "16x16"
"#,
        log = call_log.display()
    )
}

fn report_cost(out: &Path) -> f64 {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json written"))
            .expect("report.json is JSON");
    report["totals"]["cost_usd"].as_f64().expect("totals.cost_usd")
}

#[test]
fn a_money_budget_holds_across_resumed_sessions() {
    let dir = temp_dir("budget-sessions");
    let log = dir.join("calls.log");
    let spec_path = dir.join("spec.toml");
    std::fs::write(&spec_path, budget_spec(&log)).unwrap();
    let out = dir.join("out");
    let (spec_arg, out_arg) = (spec_path.to_str().unwrap(), out.to_str().unwrap());

    run(&["run", spec_arg, "--out", out_arg, "--quiet", "--no-preflight"]);
    assert_eq!(
        calls(&log).len(),
        4,
        "the first session spends the $0.20 on four $0.05 images"
    );
    for session in 2..=4 {
        let o = run(&[
            "run",
            spec_arg,
            "--out",
            out_arg,
            "--resume",
            "--quiet",
            "--no-preflight",
        ]);
        assert_eq!(
            calls(&log).len(),
            4,
            "session {session} paid again: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let cost = report_cost(&out);
    assert!(cost <= 0.20 + 1e-9, "four sessions spent ${cost:.2} of a $0.20 budget");
}

#[test]
fn each_shard_gets_its_share_of_the_money_budget() {
    let dir = temp_dir("budget-shards");
    let log = dir.join("calls.log");
    let spec_path = dir.join("spec.toml");
    std::fs::write(&spec_path, budget_spec(&log)).unwrap();
    let spec_arg = spec_path.to_str().unwrap();
    for k in 1..=2 {
        let out = dir.join(format!("part{k}"));
        let shard = format!("{k}/2");
        run(&[
            "run",
            spec_arg,
            "--out",
            out.to_str().unwrap(),
            "--shard",
            &shard,
            "--quiet",
            "--no-preflight",
        ]);
        let cost = report_cost(&out);
        assert!(
            cost <= 0.10 + 1e-9,
            "shard {shard} spent ${cost:.2}; its share of $0.20 is $0.10"
        );
    }
    assert_eq!(calls(&log).len(), 4, "two shards together stay within the spec's $0.20");
}

fn edit_spec(name: &str, color: &str, call_log: &Path) -> String {
    format!(
        r#"
name = "{name}"
concurrency = 2

[providers.art]
kind = "procedural"
call_log = "{log}"

[matrix]
product = ["mug", "lamp"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}} in {color}"
size = "32x32"

[[steps]]
name = "thumb"
kind = "resize"
inputs = ["hero"]
width = 16

[[steps]]
name = "caption"
kind = "generate"
task = "text"
providers = ["art"]
prompt = "a caption for the {{{{ product }}}}"
"#,
        log = call_log.display()
    )
}

#[test]
fn a_resume_after_a_prompt_edit_reruns_what_changed_and_keeps_the_rest() {
    let dir = temp_dir("resume-edit");
    let log = dir.join("calls.log");
    let spec_path = dir.join("spec.toml");
    let out = dir.join("out");
    let (spec_arg, out_arg) = (spec_path.to_str().unwrap(), out.to_str().unwrap());
    std::fs::write(&spec_path, edit_spec("edits", "red", &log)).unwrap();
    let first = run(&["run", spec_arg, "--out", out_arg, "--quiet", "--no-preflight"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(calls(&log).len(), 4, "two heroes and two captions");

    std::fs::write(&spec_path, edit_spec("edits", "blue", &log)).unwrap();
    let resumed = run(&[
        "run",
        spec_arg,
        "--out",
        out_arg,
        "--resume",
        "--quiet",
        "--no-preflight",
    ]);
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert!(
        stdout.contains("2 steps kept, 4 changed"),
        "the captions are kept; the heroes and their thumbnails run again: {stdout}"
    );
    let new_calls: Vec<_> = calls(&log).into_iter().skip(4).collect();
    assert_eq!(
        new_calls.len(),
        2,
        "only the edited heroes call the provider: {new_calls:?}"
    );
    assert!(
        new_calls.iter().all(|(_, prompt)| prompt.contains("blue")),
        "{new_calls:?}"
    );

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let heroes: Vec<&serde_json::Value> = manifest["assets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["step"] == "thumb")
        .collect();
    assert_eq!(heroes.len(), 2);
    for a in heroes {
        let prompt = a["sources"][0]["provenance"]["params"]["prompt"]
            .as_str()
            .unwrap_or_default();
        assert!(prompt.contains("blue"), "a thumbnail's source says what made it: {a}");
    }
}

#[test]
fn resuming_into_a_folder_of_another_campaign_is_refused() {
    let dir = temp_dir("resume-other");
    let log = dir.join("calls.log");
    let out = dir.join("out");
    let (a, b) = (dir.join("a.toml"), dir.join("b.toml"));
    std::fs::write(&a, edit_spec("campaign-a", "red", &log)).unwrap();
    std::fs::write(&b, edit_spec("campaign-b", "red", &log)).unwrap();
    let out_arg = out.to_str().unwrap();
    assert!(run(&[
        "run",
        a.to_str().unwrap(),
        "--out",
        out_arg,
        "--quiet",
        "--no-preflight"
    ])
    .status
    .success());
    let o = run(&[
        "run",
        b.to_str().unwrap(),
        "--out",
        out_arg,
        "--resume",
        "--quiet",
        "--no-preflight",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("holds campaign `campaign-a`, not `campaign-b`"),
        "{stderr}"
    );
    assert_eq!(calls(&log).len(), 4, "nothing of campaign-b ran");
}

#[test]
fn merging_a_part_of_another_spec_is_refused_naming_the_part() {
    let dir = temp_dir("merge-other");
    let log = dir.join("calls.log");
    let (a, b) = (dir.join("a.toml"), dir.join("b.toml"));
    std::fs::write(&a, edit_spec("merge", "red", &log)).unwrap();
    std::fs::write(&b, edit_spec("merge", "blue", &log)).unwrap();
    let (p1, p2) = (dir.join("part1"), dir.join("part2"));
    run(&[
        "run",
        a.to_str().unwrap(),
        "--out",
        p1.to_str().unwrap(),
        "--shard",
        "1/2",
        "--quiet",
        "--no-preflight",
    ]);
    run(&[
        "run",
        b.to_str().unwrap(),
        "--out",
        p2.to_str().unwrap(),
        "--shard",
        "2/2",
        "--quiet",
        "--no-preflight",
    ]);
    let all = dir.join("all");
    let o = run(&[
        "merge",
        a.to_str().unwrap(),
        p1.to_str().unwrap(),
        p2.to_str().unwrap(),
        "--out",
        all.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot merge {}", p2.display())) && stderr.contains("another version of the spec"),
        "{stderr}"
    );
    assert!(!all.join("manifest.json").exists(), "nothing was merged");
}

#[test]
fn a_budget_stop_still_finishes_and_delivers_the_free_steps_of_paid_generations() {
    let dir = temp_dir("budget-free-steps");
    let log = dir.join("calls.log");
    let spec_path = dir.join("spec.toml");
    let spec = budget_spec(&log).replace("max_cost_usd = 0.20", "max_cost_usd = 0.10")
        + r#"
[[steps]]
name = "thumb"
kind = "resize"
inputs = ["hero"]
width = 8

[output]
steps = ["thumb"]
file_name = "{{ product }}-{{ locale }}.{{ ext }}"
"#;
    std::fs::write(&spec_path, spec).unwrap();
    let out = dir.join("out");
    let o = run(&[
        "run",
        spec_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--no-preflight",
    ]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "stopped by the budget: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(calls(&log).len(), 2, "the $0.10 buys two $0.05 heroes");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let thumbs = manifest["assets"].as_array().unwrap().len();
    assert_eq!(thumbs, 2, "both paid heroes were resized and delivered: {manifest}");
}
