//! A campaign killed with SIGKILL at several random moments, resumed after each
//! kill, ends with the same manifest and files as an uninterrupted run, under the
//! journal's group commit: no step recorded before a kill is generated again, and
//! only the calls in flight at a kill are made twice.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::common;
use common::manifest::{assert_run_fields_plausible, assert_same_but_run_fields};
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");
const CONCURRENCY: usize = 4;
const KILLS: usize = 5;

fn spec(call_log: &Path) -> String {
    format!(
        r#"
name = "kills-test"
concurrency = {CONCURRENCY}

[providers.art]
kind = "procedural"
latency_ms = 40
latency_jitter_ms = 20
cost_per_image = 0.01
call_log = "{log}"

[matrix]
product = ["mug", "lamp", "chair", "bag", "desk", "vase", "sofa", "rug"]
channel = ["square", "story", "banner", "feed"]
locale = ["en", "fr"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}} for {{{{ channel }}}} ({{{{ locale }}}})"
size = "32x32"

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

type Call = (String, String);

/// Calls in a procedural call log (one line per call, written as it starts), as
/// (task, prompt).
fn calls(log: &Path) -> Vec<Call> {
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

/// (task, prompt) of every step the journal records, one per line.
fn journaled(journal: &Path) -> Vec<Call> {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|r| {
            let params = &r["outputs"][0]["provenance"]["params"];
            (
                params["task"].as_str().unwrap_or_default().to_string(),
                params["prompt"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn start(spec: &Path, out: &Path, resume: bool) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", spec.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
    if resume {
        cmd.arg("--resume");
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runner starts")
}

fn finish(child: Child, what: &str) {
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every file under `dir` (relative path -> bytes), state folder aside.
fn files(dir: &Path) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_name() == ".creative" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn five_kills_at_random_moments_resume_to_the_same_manifest_paying_only_calls_in_flight() {
    let dir = temp_dir("kills");
    let steps_total = 8 * 4 * 2 * 2;
    let seed = fastrand::u64(..);
    eprintln!("kill moments drawn with seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);

    let log = dir.join("calls.log");
    let spec_path = dir.join("campaign.toml");
    std::fs::write(&spec_path, spec(&log)).unwrap();
    let out_a = dir.join("out-a");
    let a_from = SystemTime::now();
    finish(start(&spec_path, &out_a, false), "the reference run");
    let a_to = SystemTime::now();
    let reference_calls = calls(&log).len();
    assert_eq!(reference_calls, steps_total, "one call per generation");

    let out_b = dir.join("out-b");
    let journal = out_b.join(".creative").join("journal.jsonl");
    // Per kill: what the journal held after it, and the calls in flight at it
    // (made since the run started, not recorded).
    let mut recorded_at_kill: Vec<(usize, HashSet<Call>)> = Vec::new();
    let mut in_flight: Vec<HashSet<Call>> = Vec::new();
    let b_from = SystemTime::now();
    for k in 0..KILLS {
        let calls_at_start = calls(&log).len();
        let done_at_start = journaled(&journal).len();
        let mut child = start(&spec_path, &out_b, k > 0);
        // A random moment: some progress first (each segment must move the run
        // on), then a random delay, which lands anywhere in a commit.
        let target = done_at_start + rng.usize(2..=12);
        let started = Instant::now();
        while journaled(&journal).len() < target {
            assert!(started.elapsed() < Duration::from_secs(60), "run {k} made no progress");
            assert!(child.try_wait().unwrap().is_none(), "run {k} ended before its kill");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..40)));
        assert!(child.try_wait().unwrap().is_none(), "run {k} ended before its kill");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(!out_b.join("manifest.json").exists(), "a killed run writes no manifest");

        let all = calls(&log);
        let recorded: HashSet<Call> = journaled(&journal).into_iter().collect();
        assert!(recorded.len() < steps_total, "kill {k} came after the end");
        let flying: HashSet<Call> = all[calls_at_start..]
            .iter()
            .filter(|c| !recorded.contains(*c))
            .cloned()
            .collect();
        assert!(
            flying.len() <= CONCURRENCY,
            "kill {k}: {} calls in flight with concurrency {CONCURRENCY}",
            flying.len()
        );
        recorded_at_kill.push((all.len(), recorded));
        in_flight.push(flying);
    }
    let last_from = SystemTime::now();
    finish(start(&spec_path, &out_b, true), "the last resume");
    let b_to = SystemTime::now();

    // Same manifest but for what each run recorded of itself (each asset's
    // latency, attempt and finish time, as its step ran, in whichever of the
    // six processes that was), and the same files, each whole.
    let ma = std::fs::read_to_string(out_a.join("manifest.json")).unwrap();
    let mb = std::fs::read_to_string(out_b.join("manifest.json")).unwrap();
    let fresh = assert_run_fields_plausible(&ma, a_from, a_to).fresh;
    assert!(fresh > 0, "ma records fresh generations");
    let fresh = assert_run_fields_plausible(&mb, b_from, b_to).fresh;
    assert!(fresh > 0, "mb records fresh generations");
    assert_same_but_run_fields(&ma, &mb, "uninterrupted vs killed and resumed");
    // The steps the killed runs finished keep the times they finished at: the
    // last resume read them back rather than restamping them.
    let earlier = serde_json::from_str::<serde_json::Value>(&mb).unwrap()["assets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| humantime::parse_rfc3339(a["finished_at"].as_str().unwrap()).unwrap() < last_from)
        .count();
    assert!(earlier > 0, "no asset kept a killed run's finish time");
    let (fa, fb) = (files(&out_a), files(&out_b));
    let stray: Vec<&String> = fb.keys().filter(|p| p.ends_with(".tmp")).collect();
    assert!(stray.is_empty(), "half-written files left: {stray:?}");
    let manifest: serde_json::Value = serde_json::from_str(&mb).unwrap();
    let assets = manifest["assets"].as_array().unwrap();
    assert_eq!(assets.len(), steps_total);
    for a in assets {
        let rel = a["path"].as_str().unwrap();
        let got = fb.get(rel).unwrap_or_else(|| panic!("{rel} is missing"));
        assert_eq!(got.len() as u64, a["bytes"].as_u64().unwrap(), "{rel} is whole");
        assert_eq!(
            Some(got),
            fa.get(rel),
            "{rel} holds what the uninterrupted run delivered"
        );
    }

    // No step recorded before a kill was generated after it.
    let all_calls = calls(&log);
    for (k, (calls_then, recorded)) in recorded_at_kill.iter().enumerate() {
        for c in &all_calls[*calls_then..] {
            assert!(
                !recorded.contains(c),
                "{c:?} was recorded before kill {k} but generated again"
            );
        }
    }
    // Each step was paid once, plus once per kill that caught it in flight.
    let mut count: HashMap<&Call, usize> = HashMap::new();
    for c in &all_calls[reference_calls..] {
        *count.entry(c).or_default() += 1;
    }
    assert_eq!(count.len(), steps_total, "every step was generated");
    for (c, n) in &count {
        let caught = in_flight.iter().filter(|f| f.contains(*c)).count();
        assert!(
            *n <= 1 + caught,
            "{c:?} was generated {n} times, in flight at {caught} kills"
        );
    }
    let extra = all_calls.len() - reference_calls - steps_total;
    assert!(
        extra <= KILLS * CONCURRENCY,
        "{extra} extra calls over {KILLS} kills at concurrency {CONCURRENCY}"
    );

    // The journal records each step once.
    let records = journaled(&journal);
    let unique: HashSet<&Call> = records.iter().collect();
    assert_eq!(records.len(), steps_total, "no step is recorded twice");
    assert_eq!(unique.len(), steps_total);
    let _ = std::fs::remove_dir_all(&dir);
}
