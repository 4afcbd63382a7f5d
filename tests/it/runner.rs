//! The runner binary on the shipped example specs.

use std::path::Path;
use std::process::Command;

use crate::common;
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

fn spec(name: &str) -> String {
    format!("{}/examples/specs/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_example_spec_checks() {
    for s in ["product_campaign.toml", "social_post.toml", "comfyui_campaign.toml"] {
        let o = Command::new(BIN).args(["check", &spec(s)]).output().unwrap();
        assert!(o.status.success(), "{s}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn the_product_campaign_dry_run_lists_24_jobs_and_a_cost_and_writes_nothing() {
    let dir = temp_dir("dry");
    let o = Command::new(BIN)
        .current_dir(&dir)
        .args(["run", &spec("product_campaign.toml"), "--dry-run"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("24 jobs x 5 steps"), "{text}");
    assert!(text.contains("estimated cost $0.9792"), "{text}");
    assert!(!dir.join("out").exists(), "a dry run writes nothing");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_product_campaign_runs_offline_into_out_and_resumes() {
    let dir = temp_dir("product");
    let o = Command::new(BIN)
        .current_dir(&dir)
        .args(["run", &spec("product_campaign.toml"), "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("succeeded: jobs 24 (24 ok, 0 failed)"), "{stdout}");
    assert!(stdout.contains("assets 48"), "{stdout}");
    let out = dir.join("out");
    for f in [
        "manifest.json",
        "report.json",
        "contact_sheet.html",
        "story/fr/oak_chair-ad.jpg",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let o = Command::new(BIN)
        .current_dir(&dir)
        .args(["run", &spec("product_campaign.toml"), "--quiet", "--resume"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("120 steps kept"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_spec_exits_2_with_the_error() {
    let dir = temp_dir("bad");
    let p = dir.join("bad.toml");
    std::fs::write(&p, "name = \"x\"\nsteps = \"no\"\n").unwrap();
    let o = Command::new(BIN).args(["run", p.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml:2: steps: invalid type"), "{err}");
    let o = Command::new(BIN).args(["run"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_server_that_is_not_running_fails_the_run_before_it_starts() {
    let dir = temp_dir("preflight");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/specs/comfyui_campaign.toml"))
            .unwrap()
            .replace("http://127.0.0.1:8188", &format!("http://127.0.0.1:{port}"));
    assert!(
        spec.contains(&port.to_string()),
        "the example spec names ComfyUI's address"
    );
    let wf = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/specs/comfyui_workflow.json");
    std::fs::copy(wf, dir.join("comfyui_workflow.json")).unwrap();
    let p = dir.join("comfyui_campaign.toml");
    std::fs::write(&p, spec).unwrap();
    let out = dir.join("out");
    let started = std::time::Instant::now();
    let o = Command::new(BIN)
        .args(["run", p.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("provider `comfy` cannot be reached"), "{err}");
    assert!(err.contains("--no-preflight"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "failed fast");
    assert!(!out.exists(), "nothing was written");

    // `--no-preflight` starts anyway: the run tries and says so. With a 3 s
    // deadline and a 30 s circuit cool-down, the engine sees that no provider
    // reopens in time and stops at once, every job `budget_exhausted`.
    let spec = std::fs::read_to_string(&p)
        .unwrap()
        .replace("max_minutes = 120", "max_minutes = 0.05");
    std::fs::write(&p, spec).unwrap();
    let o = Command::new(BIN)
        .args([
            "run",
            p.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-preflight",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "the run ran and its deadline stopped it");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("note: look: retrying comfy"), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["status"], "budget_exhausted", "{report}");
    assert_eq!(report["jobs"]["budget_exhausted"], 6, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A loopback HTTP server that answers every request `401 Unauthorized` with
/// OpenAI's error body, until the test ends.
fn unauthorized_server() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    // Request line and headers.
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let reply = r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#;
                    let head = format!(
                        "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        reply.len()
                    );
                    if stream
                        .write_all(head.as_bytes())
                        .and_then(|_| stream.write_all(reply.as_bytes()))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}/v1")
}

#[test]
fn a_run_served_by_the_fallback_after_a_401_is_degraded_not_succeeded() {
    let dir = temp_dir("degraded");
    let spec = format!(
        r#"
name = "degraded"
concurrency = 2

[providers.openai]
kind = "openai"
base_url = "{base}"
api_key_env = "CREATIVE_TEST_DEGRADED_KEY"

[providers.standin]
kind = "procedural"

[matrix]
product = ["mug", "lamp", "chair"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["openai", "standin"]
prompt = "a {{{{ product }}}}"
size = "32x32"
"#,
        base = unauthorized_server()
    );
    let p = dir.join("spec.toml");
    std::fs::write(&p, spec).unwrap();
    let out = dir.join("out");
    let o = Command::new(BIN)
        .args([
            "run",
            p.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
            "--no-preflight",
        ])
        .env("CREATIVE_TEST_DEGRADED_KEY", "sk-wrong")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(3), "exit 3: degraded\n{stdout}\n{stderr}");
    assert!(stdout.contains("degraded: jobs 3"), "{stdout}");
    assert!(
        stderr.contains("provider `openai` failed 3 call(s) that `standin` then served (auth"),
        "{stderr}"
    );
    assert!(!stderr.contains("sk-wrong"), "the key never reaches the output");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["status"], "degraded", "{report}");
    assert_eq!(report["degraded"][0]["provider"], "openai", "{report}");
    assert_eq!(report["degraded"][0]["class"], "auth", "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_warns_when_a_hosted_providers_key_is_not_set() {
    let dir = temp_dir("check-key");
    let p = dir.join("spec.toml");
    std::fs::write(
        &p,
        r#"
name = "keys"
[providers.hosted]
kind = "openai"
[providers.local]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
[[steps]]
name = "hero"
kind = "generate"
providers = ["hosted", "local"]
prompt = "a mug"
"#,
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["check", p.to_str().unwrap()])
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "a missing key is a warning, not an error: {stderr}");
    assert!(
        stderr.contains("warning: provider `hosted`: no API key: `OPENAI_API_KEY` is not set"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("provider `local`"),
        "a compatible server may need no key: {stderr}"
    );
    let with_key = Command::new(BIN)
        .args(["check", p.to_str().unwrap()])
        .env("OPENAI_API_KEY", "sk-test")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&with_key.stderr).contains("warning"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn unpriced_spec(budget: &str, prices: &str) -> String {
    format!(
        r#"
name = "unpriced"
{budget}
[providers.tuned]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "my-finetune"
{prices}
[matrix]
product = ["mug", "lamp"]
[[steps]]
name = "hero"
kind = "generate"
providers = ["tuned"]
prompt = "a {{{{ product }}}}"
"#
    )
}

#[test]
fn a_model_without_a_price_is_refused_under_a_money_budget_and_flagged_in_a_dry_run() {
    let dir = temp_dir("unpriced");
    let p = dir.join("spec.toml");
    let check = |spec: String, args: &[&str]| {
        std::fs::write(&p, spec).unwrap();
        Command::new(BIN).args(args).arg(&p).output().unwrap()
    };
    let o = check(unpriced_spec("[budget]\nmax_cost_usd = 1.0", ""), &["check"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("steps[0].providers[0]"), "{stderr}");
    assert!(stderr.contains("provider `tuned` has no price"), "{stderr}");

    let priced = "prices = { \"my-finetune\" = { image = { \"*\" = 0.05 } } }";
    let o = check(unpriced_spec("[budget]\nmax_cost_usd = 1.0", priced), &["check"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let o = check(unpriced_spec("", ""), &["run", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("2 generations have no known price (provider `tuned`)"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
