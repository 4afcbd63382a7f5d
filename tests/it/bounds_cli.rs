//! The runner stays bounded on hostile specs and options: it refuses them with
//! exit code 2 and a message, and never hangs, panics or writes where it should not.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common;
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

const SPEC: &str = r#"name = "t"
CONCURRENCY
[providers.art]
kind = "procedural"

[matrix]
product = ["mug", "lamp"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "PROMPT"
size = "16x16"
"#;

fn spec(concurrency: &str, prompt: &str) -> String {
    SPEC.replace("CONCURRENCY", concurrency).replace("PROMPT", prompt)
}

/// Run the binary in a fresh folder on `text` saved as `campaign.toml`;
/// returns the output, the folder, and how long it took.
fn creative(name: &str, text: &str, args: &[&str]) -> (Output, std::path::PathBuf, Duration) {
    let dir = temp_dir(name);
    std::fs::write(dir.join("campaign.toml"), text).unwrap();
    let started = Instant::now();
    let o = Command::new(BIN).current_dir(&dir).args(args).output().unwrap();
    (o, dir, started.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn run_with_an_empty_out_is_refused_and_writes_nothing() {
    let (o, dir, _) = creative(
        "out-empty",
        &spec("", "a {{ product }}"),
        &["run", "campaign.toml", "--out", ""],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--out: the output folder is an empty path"),
        "{}",
        stderr(&o)
    );
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("campaign.toml")]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn merge_into_the_root_is_refused() {
    let (o, dir, _) = creative(
        "out-root",
        &spec("", "a {{ product }}"),
        &["merge", "campaign.toml", "shard1", "--out", "/"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("is a file-system root"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_refuses_a_nested_range_loop_at_once_instead_of_hanging() {
    let prompt = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
    for args in [
        &["check", "campaign.toml"][..],
        &["run", "campaign.toml", "--dry-run"][..],
    ] {
        let (o, dir, took) = creative("fuel", &spec("", prompt), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("takes too long to render"), "{}", stderr(&o));
        assert!(took < Duration::from_secs(30), "{args:?} took {took:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn check_refuses_a_concurrency_of_i64_max_with_its_range_instead_of_panicking() {
    let (o, dir, _) = creative(
        "concurrency",
        &spec("concurrency = 9223372036854775807", "a {{ product }}"),
        &["check", "campaign.toml"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("concurrency: 9223372036854775807 is out of range: allowed 1 to 10000"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
