//! Memory stays flat as a campaign grows: the `creative` binary runs 2,000 and then
//! 20,000 small jobs (the offline `procedural` provider, 8 px images, no latency,
//! each image delivered), and the bigger run's peak RSS, read from the kernel's
//! accounting of the child (`wait4`), must stay within a fixed bound of the
//! smaller run's. A bound, not a timing: it holds on a slow machine too.
//!
//! Issue 10 ("finished work leaves memory"): until jobs are streamed and results
//! leave memory, peak RSS grows with the job count and this test fails.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use creative_testkit::measure::{self, Limits, Measured};

#[path = "it/common/mod.rs"]
mod common;
use common::temp_dir;

/// What 18,000 more jobs may add to the peak: room for allocator noise and a
/// bigger manifest being written, not for results kept per job (at today's
/// ~100 KB per finished job, 18,000 jobs add well over a gigabyte).
const BOUND_BYTES: u64 = 40 << 20;

fn spec(n: usize) -> String {
    let a: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let b: Vec<String> = (0..n / 100).map(|i| i.to_string()).collect();
    format!(
        r#"name = "scale"
concurrency = 64

[providers.p]
kind = "procedural"

[matrix]
a = [{}]
b = [{}]

[[steps]]
name = "hero"
kind = "generate"
providers = ["p"]
prompt = "product {{{{ a }}}}-{{{{ b }}}}"
size = "8x8"

[output]
file_name = "{{{{ a }}}}/{{{{ b }}}}.{{{{ ext }}}}"
"#,
        a.join(", "),
        b.join(", ")
    )
}

fn run(dir: &Path, n: usize) -> Measured {
    let spec_path = dir.join(format!("scale-{n}.toml"));
    std::fs::write(&spec_path, spec(n)).unwrap();
    let out = dir.join(format!("out-{n}"));
    let m = measure::run(
        Command::new(env!("CARGO_BIN_EXE_creative"))
            .arg("run")
            .arg(&spec_path)
            .arg("--out")
            .arg(&out)
            .arg("--quiet")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
        // Generous limits so a slow machine still finishes, and a runaway cannot take the machine.
        Limits {
            timeout: Duration::from_secs(600),
            rss_cap: 4 << 30,
        },
    )
    .unwrap();
    assert!(m.success(), "{n} jobs: the run did not succeed: {m:?}");
    let delivered = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != ".creative")
        .map(|e| std::fs::read_dir(e.path()).map(|d| d.count()).unwrap_or(0))
        .sum::<usize>();
    assert_eq!(delivered, n, "{n} jobs: every job's image is delivered");
    m
}

#[test]
fn peak_memory_of_20000_jobs_stays_within_40_mb_of_2000_jobs() {
    let dir = temp_dir("scale");
    let small = run(&dir, 2_000);
    let big = run(&dir, 20_000);
    let (s, b) = (small.max_rss, big.max_rss);
    eprintln!(
        "peak RSS: 2,000 jobs {:.1} MB ({:.1} s), 20,000 jobs {:.1} MB ({:.1} s): {:+.0} B per extra job",
        s as f64 / 1e6,
        small.wall.as_secs_f64(),
        b as f64 / 1e6,
        big.wall.as_secs_f64(),
        (b as f64 - s as f64) / 18_000.0
    );
    assert!(
        b <= s + BOUND_BYTES,
        "peak RSS grew from {:.1} MB at 2,000 jobs to {:.1} MB at 20,000 (bound: +{} MB)",
        s as f64 / 1e6,
        b as f64 / 1e6,
        BOUND_BYTES >> 20
    );
    let _ = std::fs::remove_dir_all(&dir);
}
