//! `creative advise` (issue 18) on a real run: a gate no output can pass
//! makes every regeneration round wasted; the advice names the gate and
//! proposes, as a diff of the spec, to flag failures instead. With a provider,
//! a model (a loopback server speaking the OpenAI chat completions API) ranks
//! the findings with a rationale each; answers naming unknown findings go
//! back for repair, and a model that never answers as asked leaves the rules'
//! order with a note. The diff is the rules' either way.

use std::path::{Path, PathBuf};
use std::process::Command;

use creative_testkit::{Config, LoopbackServer};
use serde_json::json;

use crate::common;
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

const SPEC: &str = r#"name = "advise"

[providers.art]
kind = "procedural"

[matrix]
product = ["mug", "lamp"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{ product }}"
size = "32x32"
gates = [{ kind = "sharpness", name = "razor", min_variance = 1e12 }]
on_gate_fail = { action = "regenerate", max = 2 }
"#;

#[test]
fn a_gate_nothing_passes_gets_advice_and_a_diff_that_flags_instead_of_regenerating() {
    let dir = temp_dir("advise");
    std::fs::write(dir.join("campaign.toml"), SPEC).unwrap();
    let o = Command::new(BIN)
        .current_dir(&dir)
        .args(["run", "campaign.toml", "--out", "out", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "every job fails its gate");
    let o = Command::new(BIN)
        .current_dir(&dir)
        .args(["advise", "out", "--spec", "campaign.toml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("gate `razor` failed all 6 checks"), "{text}");
    assert!(
        text.contains("step `hero`: regeneration rounds never produced a passing output"),
        "{text}"
    );
    assert!(
        text.contains("-on_gate_fail = { action = \"regenerate\", max = 2 }\n+on_gate_fail = \"flag\"\n"),
        "{text}"
    );
    // The diff applies, and the spec it makes still checks.
    let diff = &text[text.find("--- campaign.toml").unwrap()..];
    std::fs::write(dir.join("advice.diff"), diff).unwrap();
    if let Ok(p) = Command::new("patch")
        .current_dir(&dir)
        .args(["-p0", "-i", "advice.diff"])
        .output()
    {
        assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stdout));
        let c = Command::new(BIN)
            .current_dir(&dir)
            .args(["check", "campaign.toml"])
            .output()
            .unwrap();
        assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
        assert!(std::fs::read_to_string(dir.join("campaign.toml"))
            .unwrap()
            .contains("on_gate_fail = \"flag\""));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run of SPEC in a fresh folder (every job fails its gate).
fn ran(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::write(dir.join("campaign.toml"), SPEC).unwrap();
    let o = Command::new(BIN)
        .current_dir(&dir)
        .args(["run", "campaign.toml", "--out", "out", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "every job fails its gate");
    dir
}

fn advise(dir: &Path, extra: &[&str]) -> (String, String) {
    let o = Command::new(BIN)
        .current_dir(dir)
        .args(["advise", "out", "--spec", "campaign.toml"])
        .args(extra)
        .env("CREATIVE_ADVISE_TEST_KEY", "sk-loopback")
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "{out}\n{err}");
    (out, err)
}

fn providers_file(dir: &Path, server: &LoopbackServer) {
    std::fs::write(
        dir.join("providers.toml"),
        format!(
            "[providers.ranker]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"CREATIVE_ADVISE_TEST_KEY\"\ntext_model = \"gpt-4o-mini\"\n",
            server.base_url()
        ),
    )
    .unwrap();
}

fn diff_of(text: &str) -> &str {
    &text[text.find("--- campaign.toml").expect("a diff")..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_ranks_the_findings_with_a_rationale_each_after_a_repair_and_the_diff_stays_the_rules() {
    let server = LoopbackServer::start(0, Config::default()).await.unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    server.respond_to_chat(move |_| match c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
        // First a finding that does not exist, then a proper ranking.
        0 => json!({"ranking": [{"id": "F7", "rationale": "made up"}, {"id": "F1", "rationale": "x"}]}).to_string(),
        _ => json!({"ranking": [
            {"id": "F2", "rationale": "every job paid for three rounds that could not pass"},
            {"id": "F1", "rationale": "the threshold is the cause, but flagging stops the spend first"},
        ]})
        .to_string(),
    });
    let dir = ran("advise-ranked");
    providers_file(&dir, &server);
    let d = dir.clone();
    let (offline, _) = tokio::task::spawn_blocking(move || advise(&d, &[])).await.unwrap();
    let d = dir.clone();
    let (text, err) =
        tokio::task::spawn_blocking(move || advise(&d, &["--provider", "ranker", "--providers", "providers.toml"]))
            .await
            .unwrap();
    assert!(text.contains("findings, ranked by `ranker`"), "{text}");
    let second = text.find("2. [F1] gate `razor` failed all 6 checks").expect(&text);
    let first = text
        .find("1. [F2] step `hero`: regeneration rounds never produced a passing output")
        .expect(&text);
    assert!(first < second, "{text}");
    assert!(
        text.contains("   why here: every job paid for three rounds that could not pass\n"),
        "{text}"
    );
    assert!(
        err.contains("ranking 1 refused: ranking[0].id `F7` is not a finding id; the ids are F1, F2"),
        "{err}"
    );
    assert_eq!(
        diff_of(&text),
        diff_of(&offline),
        "the model changes the order, never the diff"
    );
    // Without a provider the rules' order and no rationale.
    assert!(offline.contains("1. [F1] gate `razor`"), "{offline}");
    assert!(!offline.contains("why here"), "{offline}");

    let requests = server.chat_requests();
    assert_eq!(requests.len(), 2);
    let rf = &requests[0]["response_format"];
    assert_eq!(rf["type"], "json_schema");
    assert_eq!(rf["json_schema"]["name"], "advice_ranking");
    assert_eq!(
        rf["json_schema"]["schema"]["properties"]["ranking"]["items"]["properties"]["id"]["enum"],
        json!(["F1", "F2"])
    );
    let user = |i: usize| requests[i]["messages"][1]["content"].as_str().unwrap().to_string();
    assert!(user(0).contains("F1: gate `razor` failed all 6 checks"), "{}", user(0));
    assert!(
        user(0).contains("\"status\":\"failed\""),
        "the report summary: {}",
        user(0)
    );
    assert!(!user(0).contains("It was refused"));
    assert!(
        user(1).contains("It was refused: ranking[0].id `F7` is not a finding id"),
        "{}",
        user(1)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_never_ranks_as_asked_leaves_the_rules_order_with_a_note_saying_so() {
    let server = LoopbackServer::start(0, Config::default()).await.unwrap();
    server.respond_to_chat(|_| "The razor gate matters most, then the rest.".into());
    let dir = ran("advise-unranked");
    providers_file(&dir, &server);
    let d = dir.clone();
    let (text, err) = tokio::task::spawn_blocking(move || {
        advise(
            &d,
            &[
                "--provider",
                "ranker",
                "--providers",
                "providers.toml",
                "--max-repairs",
                "1",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(server.chat_requests().len(), 2, "one answer and one repair");
    assert!(
        text.contains("note: the model's ranking was refused 2 time(s) (last: the answer is not JSON"),
        "{text}"
    );
    assert!(text.contains("findings are in the rules' order"), "{text}");
    assert!(text.contains("1. [F1] gate `razor`"), "{text}");
    assert!(text.contains("2. [F2] step `hero`"), "{text}");
    assert!(!text.contains("why here"), "{text}");
    assert!(text.contains("+on_gate_fail = \"flag\""), "{text}");
    assert!(err.contains("ranking 2 refused"), "{err}");

    // A model that cannot be reached: the same advice, and a note saying why.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        dir.join("providers.toml"),
        format!("[providers.ranker]\nkind = \"openai\"\nbase_url = \"http://{closed}/v1\"\napi_key_env = \"CREATIVE_ADVISE_TEST_KEY\"\ntimeout_s = 5.0\n"),
    )
    .unwrap();
    let d = dir.clone();
    let (text, _) =
        tokio::task::spawn_blocking(move || advise(&d, &["--provider", "ranker", "--providers", "providers.toml"]))
            .await
            .unwrap();
    assert!(text.contains("note: the model call failed ("), "{text}");
    assert!(text.contains("1. [F1] gate `razor`"), "{text}");
    assert!(!text.contains("sk-loopback"), "no secret in the note: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}
