//! Answers are verified before they count: an OpenAI-compatible server whose
//! image is not an image fails the job, and an image's size is read from its
//! bytes, through an `Executor` as a run makes them.
#![cfg(all(feature = "openai", feature = "procedural"))]

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use creative_core::resilience::{Backoff, RetryPolicy};
use creative_core::{
    CallCtx, Dag, ErrorKind, Executor, GenerateStep, Job, Pipeline, Provider, Request, RunOptions, RunOutcome, Status,
    StepError, Task,
};
use creative_providers::procedural::Procedural;
use serde_json::json;
use support::{build, MockServer, Reply};

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

async fn real_png(side: u32) -> Vec<u8> {
    let mut r = Request::new(Task::Image, "x");
    r.params.width = Some(side);
    r.params.height = Some(side);
    r.params.seed = Some(1);
    let g = Procedural::new("png").generate(&r, &CallCtx::detached()).await.unwrap();
    g.artifacts[0].data().to_vec()
}

/// A server answering every image request with `b64_json` and a claimed size of 1024x1024.
async fn server(b64_json: &str) -> MockServer {
    let mock = MockServer::start().await;
    mock.route(
        "POST",
        "/v1/images/generations",
        Reply::json(
            200,
            json!({"size": "1024x1024", "output_format": "png", "data": [{"b64_json": b64_json}]}),
        ),
    );
    mock
}

async fn run(mock: &MockServer) -> RunOutcome {
    let p: Arc<dyn Provider> = build(
        "openai",
        json!({"base_url": format!("{}/v1", mock.url()), "api_key": "sk-test"}),
    )
    .unwrap();
    let step = GenerateStep::new(Task::Image, ["openai"], "a mug")
        .unwrap()
        .size(1024, 1024);
    let pipeline: Arc<dyn Pipeline> = Arc::new(Dag::builder("t").step("hero", step, &[]).build().unwrap());
    let exec = Executor::builder()
        .provider(p)
        .retry(RetryPolicy {
            max_attempts: 2,
            max_rate_limited: 2,
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(5)).unwrap(),
            max_retry_after: Duration::from_secs(1),
        })
        .build()
        .unwrap();
    exec.start(pipeline, vec![Job::new([("n", 1)])], RunOptions::default())
        .unwrap()
        .wait()
        .await
}

#[tokio::test]
async fn base64_string_answered_as_a_png_fails_the_job_instead_of_delivering_a_1024px_png() {
    // "string", the placeholder an API schema shows, is valid base64 for 4 bytes.
    let mock = server("string").await;
    let out = run(&mock).await;
    assert_eq!(out.status, Status::Failed);
    assert!(out.jobs[0].outputs("hero").is_empty());
    assert_eq!(
        mock.requests().len(),
        2,
        "the invalid answer was retried, then the job failed"
    );
    match out.jobs[0].error().and_then(StepError::provider_error) {
        Some(e) => {
            assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
            assert!(e.to_string().contains("not image/png"), "refused by the probe: {e}");
        }
        other => panic!("expected an invalid answer, got {other:?}"),
    }
}

#[tokio::test]
async fn a_256_px_answer_to_a_1024_px_request_is_recorded_as_256x256() {
    let mock = server(&b64(&real_png(256).await)).await;
    let out = run(&mock).await;
    assert_eq!(out.status, Status::Succeeded);
    let a = &out.jobs[0].outputs("hero")[0];
    assert_eq!((a.meta().width, a.meta().height), (Some(256), Some(256)));
    assert_eq!(a.provenance().seed, None, "the Images API was sent no seed");
}
