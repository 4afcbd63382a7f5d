//! `creative brief` (issue 18): a loopback server speaking the OpenAI chat
//! completions API answers a brief first with a spec the loader refuses, then,
//! shown the loader's error, with one it accepts; the written TOML is commented
//! and builds.

use std::process::Command;

use creative_testkit::{Config, LoopbackServer};
use serde_json::{json, Value};

use crate::common;
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

const BRIEF: &str = "# Spring mugs\nProducts: travel mug, desk lamp. Markets: en, fr. Square 1080 for Instagram. Budget $5. Tone: calm.\n";

fn spec(provider: &str) -> Value {
    json!({
        "name": "spring-mugs",
        "providers": {"art": {"kind": "procedural"}},
        "matrix": {"product": ["travel mug", "desk lamp"], "locale": ["en", "fr"]},
        "steps": [{"name": "hero", "kind": "generate", "providers": [provider], "prompt": "a calm photo of a {{ product }} ({{ locale }})", "size": "64x64"}],
    })
}

fn answer(provider: &str) -> String {
    json!({
        "spec": spec(provider),
        "why": {"matrix.locale": "the brief names two markets, en and fr", "steps[0].prompt": "calm, as the brief's tone asks"},
    })
    .to_string()
}

fn providers_file(dir: &std::path::Path, server: &LoopbackServer) -> std::path::PathBuf {
    let p = dir.join("providers.toml");
    std::fs::write(
        &p,
        format!(
            "[providers.writer]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"CREATIVE_BRIEF_TEST_KEY\"\ntext_model = \"gpt-4o-mini\"\n",
            server.base_url()
        ),
    )
    .unwrap();
    p
}

fn brief_cmd(dir: &std::path::Path, providers: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let brief = dir.join("brief.md");
    std::fs::write(&brief, BRIEF).unwrap();
    Command::new(BIN)
        .current_dir(dir)
        .args(["brief", brief.to_str().unwrap(), "--provider", "writer", "--providers"])
        .arg(providers)
        .args(["-o", "campaign.toml"])
        .args(extra)
        .env("CREATIVE_BRIEF_TEST_KEY", "sk-loopback")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_spec_goes_back_with_the_loader_error_and_the_repaired_one_is_written_commented() {
    let server = LoopbackServer::start(0, Config::default()).await.unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    server.respond_to_chat(move |_| {
        // First a step naming a provider the spec does not declare, then the fix.
        match c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => answer("painter"),
            _ => format!("```json\n{}\n```", answer("art")),
        }
    });
    let dir = temp_dir("brief-repair");
    let providers = providers_file(&dir, &server);
    let o = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || brief_cmd(&dir, &providers, &[])
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("after 2 answer(s)"), "{stdout}");
    assert!(stderr.contains("answer 1 refused"), "{stderr}");
    assert!(stderr.contains("unknown provider `painter`"), "{stderr}");

    let requests = server.chat_requests();
    assert_eq!(requests.len(), 2);
    // Structured output: the answer's schema holds the spec's.
    let rf = &requests[0]["response_format"];
    assert_eq!(rf["type"], "json_schema");
    assert_eq!(rf["json_schema"]["schema"]["required"], json!(["spec", "why"]));
    assert!(rf["json_schema"]["schema"]["definitions"]["StepSpec"].is_object());
    let user = |i: usize| requests[i]["messages"][1]["content"].as_str().unwrap().to_string();
    assert!(user(0).contains("Products: travel mug, desk lamp"));
    assert!(!user(0).contains("refused"));
    assert!(user(1).contains("The spec loader refused it"), "{}", user(1));
    assert!(
        user(1).contains("steps[0].providers[0]: unknown provider `painter`"),
        "{}",
        user(1)
    );

    let written = std::fs::read_to_string(dir.join("campaign.toml")).unwrap();
    assert!(
        written.contains("# the brief names two markets, en and fr\nlocale = [\"en\", \"fr\"]"),
        "{written}"
    );
    assert!(
        written.contains("# calm, as the brief's tone asks\nprompt = "),
        "{written}"
    );
    // It is a spec the runner takes: check, then a dry run.
    let check = Command::new(BIN)
        .current_dir(&dir)
        .args(["check", "campaign.toml"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let dry = Command::new(BIN)
        .current_dir(&dir)
        .args(["run", "campaign.toml", "--dry-run"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("4 jobs"),
        "{}",
        String::from_utf8_lossy(&dry.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_never_validate_stop_after_the_repairs_allowed_and_write_nothing() {
    let server = LoopbackServer::start(0, Config::default()).await.unwrap();
    server.respond_to_chat(|_| "Here is a lovely campaign for your mugs!".into());
    let dir = temp_dir("brief-unusable");
    let providers = providers_file(&dir, &server);
    let o = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || brief_cmd(&dir, &providers, &["--max-repairs", "1"])
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no valid spec after 2 answer(s)"), "{stderr}");
    assert!(stderr.contains("not JSON"), "{stderr}");
    assert_eq!(server.chat_requests().len(), 2);
    assert!(!dir.join("campaign.toml").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_repair_count_out_of_range_is_refused_by_the_command_line() {
    let o = Command::new(BIN)
        .args(["brief", "b.md", "--provider", "x", "--max-repairs", "11"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("11"));
}

#[test]
fn the_example_brief_s_spec_checks_and_its_dry_run_fits_the_brief_s_budget() {
    let spec = format!("{}/examples/briefs/spring_mugs.toml", env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(BIN).args(["check", &spec]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = temp_dir("brief-example");
    let o = Command::new(BIN)
        .current_dir(&dir)
        .args(["run", &spec, "--dry-run", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A line per job, then the plan's totals.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let plan: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(plan["job_count"], 8, "2 products x 2 locales x 2 placements");
    let cost = plan["estimated_cost_usd"].as_f64().unwrap();
    assert!(cost > 0.0 && cost <= 5.0, "within the brief's $5: {cost}");
    let _ = std::fs::remove_dir_all(&dir);
}
