//! The engine refuses out-of-range numbers from Rust with the field named,
//! stays bounded at the largest it allows, and refuses provider answers far
//! larger than asked.

use std::sync::Arc;
use std::time::Duration;

use creative_core::limits::{max_artifacts_for, MAX_ARTIFACTS_PER_CALL, MAX_CONCURRENCY};
use creative_core::resilience::{Backoff, Budget};
use creative_core::{Artifact, Dag, Executor, GenerateStep, Job, Params, Pipeline, ProviderLimits, Status, Task};
use creative_testkit::fake::{Answer, FakeProvider};

/// The kit's fake answering every call with `n` text artifacts.
fn flood_of(n: usize) -> Arc<FakeProvider> {
    Arc::new(FakeProvider::new("flood", &[Task::Text]).respond(move |req, _| {
        Answer::artifacts(
            (0..n)
                .map(|i| Artifact::text_plain(format!("{} #{i}", req.prompt)))
                .collect(),
        )
    }))
}

fn pipeline(count: Option<u32>) -> Arc<dyn Pipeline> {
    let step = GenerateStep::new(Task::Text, ["flood"], "ad for {{ product }}")
        .unwrap()
        .params(&Params {
            count,
            ..Default::default()
        });
    Arc::new(Dag::builder("t").step("gen", step, &[]).build().unwrap())
}

fn jobs(n: usize) -> Vec<Job> {
    (0..n).map(|i| Job::new([("product", format!("p{i}"))])).collect()
}

fn flood() -> Arc<FakeProvider> {
    flood_of(1)
}

fn limits(f: impl FnOnce(&mut ProviderLimits)) -> ProviderLimits {
    let mut l = ProviderLimits::default();
    f(&mut l);
    l
}

#[test]
fn a_concurrency_of_usize_max_is_refused_naming_the_field_instead_of_panicking() {
    let e = Executor::builder()
        .concurrency(usize::MAX)
        .build()
        .err()
        .expect("refused");
    assert_eq!(e.field(), "concurrency");
    assert!(e.reason().contains(&MAX_CONCURRENCY.to_string()), "{e}");
    let per_provider = limits(|l| l.concurrency = Some(usize::MAX));
    let e = Executor::builder()
        .provider_with_limits(flood(), per_provider)
        .build()
        .err()
        .expect("refused");
    assert_eq!(e.field(), "providers.flood.concurrency");
}

#[tokio::test]
async fn the_largest_allowed_concurrency_runs() {
    let p = flood();
    let exec = Executor::builder()
        .provider_with_limits(p.clone(), limits(|l| l.concurrency = Some(MAX_CONCURRENCY)))
        .concurrency(MAX_CONCURRENCY)
        .build()
        .unwrap();
    let out = exec.run(pipeline(None), jobs(5)).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
    assert_eq!(p.calls(), 5);
}

#[test]
fn zero_limits_are_refused_instead_of_meaning_one_or_unlimited() {
    let cases: [(ProviderLimits, &str); 4] = [
        (limits(|l| l.concurrency = Some(0)), "providers.flood.concurrency"),
        (
            limits(|l| l.requests_per_minute = Some(0)),
            "providers.flood.requests_per_minute",
        ),
        (limits(|l| l.burst = Some(0)), "providers.flood.burst"),
        (limits(|l| l.timeout = Some(Duration::ZERO)), "providers.flood.timeout"),
    ];
    for (l, field) in cases {
        let e = Executor::builder().provider_with_limits(flood(), l).build().err();
        assert_eq!(e.as_ref().map(|e| e.field()), Some(field), "{e:?}");
    }
    let e = Executor::builder().concurrency(0).build().err().expect("refused");
    assert_eq!(e.to_string(), "concurrency: 0 is out of range: allowed 1 to 10000");
}

#[test]
fn two_providers_with_one_id_are_refused_instead_of_the_first_vanishing() {
    let e = Executor::builder()
        .provider(flood())
        .provider(flood())
        .build()
        .err()
        .expect("refused");
    assert_eq!(e.field(), "providers.flood");
    assert!(e.reason().contains("registered twice"), "{e}");
}

#[tokio::test]
async fn an_answer_of_100000_outputs_is_refused_as_invalid() {
    let p = flood_of(100_000);
    let exec = Executor::builder().provider(p.clone()).build().unwrap();
    let out = exec.run(pipeline(Some(2)), jobs(1)).await.unwrap();
    assert_eq!(out.status, Status::Failed);
    let err = out.jobs[0].error().expect("the job failed").to_string();
    assert!(
        err.contains("provider returned 100000 outputs for a call that asked 2"),
        "{err}"
    );
    assert!(
        err.contains(&format!("at most {} are accepted", max_artifacts_for(Some(2)))),
        "{err}"
    );
}

#[tokio::test]
async fn an_answer_within_the_allowance_is_accepted() {
    // Some providers always answer a fixed batch: a few more than asked is fine.
    let p = flood_of(max_artifacts_for(Some(1)));
    let exec = Executor::builder().provider(p).build().unwrap();
    let out = exec.run(pipeline(Some(1)), jobs(1)).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
    assert!(max_artifacts_for(Some(1)) <= MAX_ARTIFACTS_PER_CALL);
}

#[test]
fn a_deadline_beyond_the_clock_is_no_deadline_instead_of_a_panic() {
    let b = Budget::new().deadline_in(Duration::MAX);
    assert!(b.deadline().is_none());
    let b = Budget::new().deadline_in(Duration::from_secs(60));
    assert!(b.deadline().is_some());
}

#[test]
fn a_backoff_of_duration_max_saturates_instead_of_wrapping() {
    let b = Backoff::new(Duration::MAX, Duration::MAX).unwrap().without_jitter();
    assert_eq!(b.delay(1), Duration::from_nanos(u64::MAX));
    assert_eq!(b.delay(40), Duration::from_nanos(u64::MAX));
}
