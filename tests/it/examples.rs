//! The Rust examples run to the end and say what they show. `cargo test` builds
//! them (into `target/<profile>/examples`) before running this file.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> String {
    // This test binary is target/<profile>/deps/examples-<hash>.
    let exe = std::env::current_exe().expect("current exe");
    let dir: PathBuf = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>")
        .join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "{} was not built", path.display());
    let o = Command::new(&path).output().expect("the example starts");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

#[test]
fn the_pipeline_example_survives_a_flaky_provider() {
    let out = example("pipeline");
    assert!(out.contains("job 8/8 Succeeded"), "{out}");
    // The stand-in's failures are drawn from a fixed seed, so some call always fails.
    assert!(out.contains("  retry    "), "the flaky provider was retried:\n{out}");
    // A job the backup served is honest work but not as configured: the run
    // says degraded when that happened, succeeded otherwise.
    let last = out.lines().last().unwrap_or_default();
    if out.contains("  fallback ") {
        assert!(last.starts_with("Degraded:"), "{out}");
    } else {
        assert!(last.starts_with("Succeeded:"), "{out}");
    }
    // Three renditions per job.
    let heroes: Vec<&str> = out.lines().filter(|l| l.contains(" hero by ")).collect();
    assert_eq!(heroes.len(), 8, "{out}");
    let renditions = |l: &str| {
        l.split(", renditions ")
            .nth(1)
            .and_then(|r| r.split(", tagline").next())
            .map_or(0, |r| r.split(", ").filter(|s| s.ends_with(" B")).count())
    };
    assert!(heroes.iter().all(|l| renditions(l) == 3), "{out}");
}

#[test]
fn the_extend_example_shows_policy_gates_and_the_budget() {
    let out = example("extend");
    assert!(
        out.contains("Failed Mug vs competitor: provider call failed: house-copy: content_policy"),
        "{out}"
    );
    assert!(
        out.contains("Offre soumise à conditions."),
        "the host step used the job's locale:\n{out}"
    );
    assert!(
        out.contains("regeneration round 1"),
        "the brand gate sent one back:\n{out}"
    );
    assert!(out.contains("BudgetExhausted Shelf: budget exhausted"), "{out}");
    assert!(
        out.lines().last().unwrap_or_default().starts_with("BudgetExhausted:"),
        "{out}"
    );
}
