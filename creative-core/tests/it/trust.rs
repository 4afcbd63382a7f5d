//! Runs that never lie (issue 11): the cache key covers the provider's
//! settings, every answer is probed before it counts, and a seed is recorded
//! only where it was sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use creative_core::resilience::{Backoff, RetryPolicy};
use creative_core::{
    settings_fingerprint, Artifact, Dag, ErrorKind, Executor, GenerateStep, Generation, GenerationCache, Job,
    MediaType, Pipeline, RunOptions, Status, StepError, StoreError, Task, Usage,
};
use creative_testkit::fake::{Answer, FakeProvider};

/// A real PNG of `w` x `h` pixels.
fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().unwrap();
    wr.write_image_data(&vec![128u8; (w * h) as usize]).unwrap();
    wr.finish().unwrap();
    out
}

/// The kit's fake as an image provider whose answer the test chooses (its
/// settings fingerprint and seed capability too, on the fake).
fn painter(answer: impl Fn() -> Vec<u8> + Send + Sync + 'static) -> FakeProvider {
    FakeProvider::new("painter", &[Task::Image])
        .seed(true)
        .respond(move |req, _| {
            let mut a = Artifact::new(MediaType::Png, answer());
            // Like a backend that copies the requested size into the metadata.
            a.meta_mut().width = req.params.width;
            a.meta_mut().height = req.params.height;
            Answer::Ok(Generation {
                artifacts: vec![a],
                usage: Usage {
                    cost_usd: 0.04,
                    ..Default::default()
                },
                raw: None,
            })
        })
}

#[derive(Default)]
struct MemCache(Mutex<HashMap<String, Generation>>);

#[async_trait]
impl GenerationCache for MemCache {
    async fn get(&self, key: &str) -> Result<Option<Generation>, StoreError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    async fn put(&self, key: &str, g: &Generation) -> Result<(), StoreError> {
        self.0.lock().unwrap().insert(key.to_string(), g.clone());
        Ok(())
    }
}

fn pipeline() -> Arc<dyn Pipeline> {
    let step = GenerateStep::new(Task::Image, ["painter"], "a mug")
        .unwrap()
        .size(1024, 1024);
    Arc::new(Dag::builder("t").step("hero", step, &[]).build().unwrap())
}

fn retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        max_rate_limited: 5,
        backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(5)).unwrap(),
        max_retry_after: Duration::from_secs(1),
    }
}

async fn run(p: &Arc<FakeProvider>, cache: Option<Arc<MemCache>>, attempts: u32) -> creative_core::RunOutcome {
    let exec = Executor::builder()
        .provider(p.clone())
        .retry(retry(attempts))
        .build()
        .unwrap();
    let opts = RunOptions {
        cache: cache.map(|c| c as Arc<dyn GenerationCache>),
        ..Default::default()
    };
    exec.start(pipeline(), vec![Job::new([("n", 1)])], opts)
        .unwrap()
        .wait()
        .await
}

// ---------------------------------------------------------------- cache key

#[tokio::test]
async fn a_changed_provider_fingerprint_misses_the_cache_and_calls_again() {
    let p = Arc::new(painter(|| png(8, 8)));
    p.set_fingerprint(settings_fingerprint("painter", &serde_json::json!({"model": "a"})));
    let cache = Arc::new(MemCache::default());
    assert_eq!(run(&p, Some(cache.clone()), 1).await.status, Status::Succeeded);
    assert_eq!(run(&p, Some(cache.clone()), 1).await.stats.cache_hits, 1);
    assert_eq!(p.calls(), 1, "same settings: served from the cache");
    p.set_fingerprint(settings_fingerprint("painter", &serde_json::json!({"model": "b"})));
    let out = run(&p, Some(cache), 1).await;
    assert_eq!(out.stats.cache_hits, 0);
    assert_eq!(p.calls(), 2, "new settings: the provider is called again");
}

#[tokio::test]
async fn provenance_records_the_provider_fingerprint_and_omits_an_empty_one() {
    let p = Arc::new(painter(|| png(8, 8)));
    let out = run(&p, None, 1).await;
    let a = &out.jobs[0].outputs("hero")[0];
    assert_eq!(a.provenance().provider_fingerprint, None);
    let json = serde_json::to_value(a.provenance()).unwrap();
    assert!(json.get("provider_fingerprint").is_none());

    let fp = settings_fingerprint("painter", &serde_json::json!({"model": "a"}));
    p.set_fingerprint(fp.clone());
    let out = run(&p, None, 1).await;
    let a = &out.jobs[0].outputs("hero")[0];
    assert_eq!(a.provenance().provider_fingerprint.as_deref(), Some(fp.as_str()));
}

// ---------------------------------------------------------------- probes

#[tokio::test]
async fn four_bytes_that_are_no_png_fail_every_attempt_and_the_job() {
    // What a server answering b64_json "string" decodes to.
    let p = Arc::new(painter(|| b"\xb2\xda\xe2\x9e".to_vec()));
    let out = run(&p, None, 3).await;
    assert_eq!(out.status, Status::Failed);
    assert_eq!(p.calls(), 3, "an invalid answer is retried per the policy");
    assert_eq!(out.stats.failed_attempts, 3);
    assert!(out.jobs[0].outputs("hero").is_empty(), "nothing is delivered");
    match out.jobs[0].error().and_then(StepError::provider_error) {
        Some(e) => {
            assert_eq!(e.kind(), ErrorKind::Protocol);
            assert!(e.to_string().contains("not image/png"), "{e}");
        }
        other => panic!("expected an invalid-answer provider error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_invalid_answer_followed_by_a_valid_one_succeeds_on_retry() {
    let n = AtomicU32::new(0);
    let p = Arc::new(painter(move || {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            b"<html>502</html>".to_vec()
        } else {
            png(16, 16)
        }
    }));
    let out = run(&p, None, 3).await;
    assert_eq!(out.status, Status::Succeeded);
    assert_eq!(p.calls(), 2);
    assert_eq!(out.jobs[0].outputs("hero")[0].provenance().attempt, 2);
}

#[tokio::test]
async fn an_invalid_answer_is_never_cached() {
    let p = Arc::new(painter(|| b"stri".to_vec()));
    let cache = Arc::new(MemCache::default());
    run(&p, Some(cache.clone()), 1).await;
    assert!(cache.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_256_px_answer_to_a_1024_px_request_is_recorded_as_256x256() {
    let p = Arc::new(painter(|| png(256, 256)));
    let out = run(&p, None, 1).await;
    assert_eq!(out.status, Status::Succeeded);
    let a = &out.jobs[0].outputs("hero")[0];
    assert_eq!((a.meta().width, a.meta().height), (Some(256), Some(256)));
}

// ---------------------------------------------------------------- seeds

#[tokio::test]
async fn a_seed_is_recorded_only_for_a_provider_that_sends_one() {
    let silent = painter(|| png(8, 8)).seed(false);
    let out = run(&Arc::new(silent), None, 1).await;
    let a = &out.jobs[0].outputs("hero")[0];
    assert_eq!(a.provenance().seed, None, "a backend that takes no seed records none");
    assert!(
        a.provenance().params["params"].get("seed").is_none(),
        "nor in the recorded params: {}",
        a.provenance().params
    );

    let out = run(&Arc::new(painter(|| png(8, 8))), None, 1).await;
    let a = &out.jobs[0].outputs("hero")[0];
    assert!(
        a.provenance().seed.is_some(),
        "a backend that sends the seed records it"
    );
    assert_eq!(a.provenance().params["params"]["seed"], a.provenance().seed.unwrap());
}
