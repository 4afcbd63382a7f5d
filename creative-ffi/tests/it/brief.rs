//! `creative_brief` called from Rust exactly as C calls it, against the
//! loopback OpenAI chat completions server: a refused answer goes back with the
//! loader's error and the repaired one comes out as TOML a run takes; answers
//! that never validate end in a readable error.

use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::abi_text::{c, last_error, take};
use creative_ffi::*;
use creative_testkit::{Config, LoopbackServer};
use serde_json::{json, Value};

const BRIEF: &str = "# Spring mugs\nProducts: travel mug, desk lamp. Markets: en, fr. Square 1080 for Instagram. Budget $5. Tone: calm.\n";

fn answer(provider: &str) -> String {
    json!({
        "spec": {
            "name": "spring-mugs",
            "providers": {"art": {"kind": "procedural"}},
            "matrix": {"product": ["travel mug", "desk lamp"], "locale": ["en", "fr"]},
            "steps": [{"name": "hero", "kind": "generate", "providers": [provider],
                       "prompt": "a calm photo of a {{ product }} ({{ locale }})", "size": "64x64"}],
        },
        "why": {"matrix.locale": "the brief names two markets, en and fr"},
    })
    .to_string()
}

/// An engine, freed on drop.
struct Engine(*mut creative_engine);

impl Engine {
    fn new() -> Engine {
        let mut e = null_mut();
        assert_eq!(unsafe { creative_engine_new(null(), &mut e) }, creative_status::Ok);
        Engine(e)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        unsafe { creative_engine_free(self.0) };
    }
}

// SAFETY (for the test): an engine may be used from any thread.
unsafe impl Send for Engine {}

/// Call `creative_brief` on a blocking thread (the loopback server runs on this
/// test's runtime); returns the status, the TOML, the info and the error.
async fn brief(server: &LoopbackServer, options: &str) -> (creative_status, Option<String>, Option<String>, String) {
    let provider = json!({
        "kind": "openai",
        "base_url": server.base_url(),
        "api_key_env": "CREATIVE_FFI_BRIEF_TEST_KEY",
        "text_model": "gpt-4o-mini",
    })
    .to_string();
    let options = options.to_string();
    std::env::set_var("CREATIVE_FFI_BRIEF_TEST_KEY", "sk-loopback");
    tokio::task::spawn_blocking(move || {
        let engine = Engine::new();
        let (mut toml, mut info) = (null_mut(), null_mut());
        let (b, p, o) = (c(BRIEF), c(&provider), c(&options));
        let status = unsafe { creative_brief(engine.0, b.as_ptr(), p.as_ptr(), o.as_ptr(), &mut toml, &mut info) };
        let err = last_error();
        let toml = (!toml.is_null()).then(|| take(toml));
        let info = (!info.is_null()).then(|| take(info));
        (status, toml, info, err)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_answer_goes_back_with_the_loader_error_and_the_repaired_spec_comes_out_as_toml() {
    let server = LoopbackServer::start(0, Config::default()).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    server.respond_to_chat(move |_| match n.fetch_add(1, Ordering::SeqCst) {
        0 => answer("painter"),
        _ => format!("```json\n{}\n```", answer("art")),
    });
    let (status, toml, info, err) = brief(&server, r#"{"max_repairs": 2, "source": "mugs.md"}"#).await;
    assert_eq!(status, creative_status::Ok, "{err}");
    let toml = toml.unwrap();
    assert!(
        toml.contains("# the brief names two markets, en and fr\nlocale = [\"en\", \"fr\"]"),
        "{toml}"
    );
    assert!(toml.contains("mugs.md"), "the header names the source: {toml}");
    let info: Value = serde_json::from_str(&info.unwrap()).unwrap();
    assert_eq!(info["rounds"], 2);
    assert!(
        info["refused"][0]
            .as_str()
            .unwrap()
            .contains("unknown provider `painter`"),
        "{info}"
    );

    let requests = server.chat_requests();
    assert_eq!(requests.len(), 2);
    // Structured output, with the spec's schema inside the answer's.
    let rf = &requests[0]["response_format"];
    assert_eq!(rf["type"], "json_schema");
    assert_eq!(rf["json_schema"]["schema"]["required"], json!(["spec", "why"]));
    let user1 = requests[1]["messages"][1]["content"].as_str().unwrap();
    assert!(user1.contains("The spec loader refused it"), "{user1}");
    assert!(user1.contains("unknown provider `painter`"), "{user1}");

    // The TOML is a spec a run takes: a dry run of it plans 4 jobs.
    let engine = Engine::new();
    let mut run = null_mut();
    let (spec, opts) = (c(&toml), c(r#"{"dry_run": true}"#));
    let started = unsafe { creative_run_start(engine.0, spec.as_ptr(), opts.as_ptr(), None, null_mut(), &mut run) };
    assert_eq!(started, creative_status::Ok, "{}", last_error());
    assert_eq!(
        unsafe { creative_run_wait(run, CREATIVE_WAIT_FOREVER) },
        creative_status::Ok
    );
    let mut report = null_mut();
    assert_eq!(
        unsafe { creative_run_report_json(run, &mut report) },
        creative_status::Ok
    );
    let report: Value = serde_json::from_str(&take(report)).unwrap();
    assert_eq!(report["plan"]["job_count"], 4, "{report}");
    unsafe { creative_run_free(run) };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_never_validate_end_in_a_readable_error_and_no_string() {
    let server = LoopbackServer::start(0, Config::default()).await.unwrap();
    server.respond_to_chat(|_| "Here is a lovely campaign for your mugs!".into());
    let (status, toml, info, err) = brief(&server, r#"{"max_repairs": 1}"#).await;
    assert_eq!(status, creative_status::InvalidSpec, "{err}");
    assert!(toml.is_none() && info.is_none());
    assert!(err.contains("no valid spec after 2 answer(s)"), "{err}");
    assert!(err.contains("not JSON"), "{err}");
    assert_eq!(server.chat_requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_statuses_naming_what_is_wrong() {
    let server = LoopbackServer::start(0, Config::default()).await.unwrap();
    let (status, _, _, err) = brief(&server, r#"{"max_repairs": 11}"#).await;
    assert_eq!(status, creative_status::InvalidArgument);
    assert!(err.contains("max_repairs") && err.contains("0 to 10"), "{err}");
    let (status, _, _, err) = brief(&server, r#"{"repairs": 1}"#).await;
    assert_eq!(status, creative_status::Parse);
    assert!(err.contains("repairs"), "{err}");
    assert!(server.chat_requests().is_empty(), "no model call for bad options");

    tokio::task::spawn_blocking(|| {
        let engine = Engine::new();
        let mut toml = null_mut();
        let (b, p) = (c(BRIEF), c(r#"{"kind": "no_such_kind"}"#));
        let s = unsafe { creative_brief(engine.0, b.as_ptr(), p.as_ptr(), null(), &mut toml, null_mut()) };
        assert_eq!(s, creative_status::InvalidSpec);
        assert!(
            last_error().contains("unknown provider kind `no_such_kind`"),
            "{}",
            last_error()
        );
        assert!(toml.is_null());
        let s = unsafe { creative_brief(engine.0, null(), p.as_ptr(), null(), &mut toml, null_mut()) };
        assert_eq!(s, creative_status::NullPointer);
        assert!(last_error().contains("brief_text"), "{}", last_error());
        let p = c("{kind");
        let s = unsafe { creative_brief(engine.0, b.as_ptr(), p.as_ptr(), null(), &mut toml, null_mut()) };
        assert_eq!(s, creative_status::Parse);
        assert!(last_error().contains("provider_json"), "{}", last_error());
    })
    .await
    .unwrap();
}
