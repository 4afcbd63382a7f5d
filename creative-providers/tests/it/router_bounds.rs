//! Issue 12's router points: a router keeps a breaker and a down detector per
//! member, the engine keeps none of its own on the router, and once a member
//! has failed a call the router does not wait for the others' open circuits.
//!
//! Members are in-process fakes; tokio time is paused, so a 60 s wait the router
//! should not make shows as 60 s of virtual time.

use std::sync::Arc;
use std::time::Duration;

use creative_core::resilience::{Backoff, BreakerConfig, BreakerState, DownConfig, RetryPolicy};
use creative_core::{
    CallCtx, Capabilities, Dag, ErrorKind, EventKind, Executor, GenerateStep, Job, Provider, ProviderError, Request,
    RunOptions, Status, Task,
};
use creative_providers::router::Router;
use creative_testkit::fake::{Answer, FakeProvider};
use futures::StreamExt as _;

/// A member: the kit's fake answering "from {id}" after 10 ms, or failing
/// with a server error while `failing`.
fn member(id: &str, failing: bool) -> Arc<FakeProvider> {
    let me = id.to_string();
    let m = FakeProvider::new(id, &[Task::Text])
        .capabilities(Capabilities {
            tasks: vec![Task::Text],
            max_count: 1,
            ..Capabilities::default()
        })
        .latency(Duration::from_millis(10))
        .respond(move |_, _| Answer::text(format!("from {me}")));
    if failing {
        m.fail_with(Some(ErrorKind::Transient));
    }
    Arc::new(m)
}

fn req() -> Request {
    Request::new(Task::Text, "a lighthouse")
}

fn breaker(cool_down_s: u64) -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 1,
        cool_down: Duration::from_secs(cool_down_s),
    }
}

#[tokio::test(start_paused = true)]
async fn a_router_returns_the_failure_at_once_when_its_remaining_members_are_open() {
    let a = member("a", true);
    let b = member("b", true);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .exploration(0.0)
        .breaker(breaker(60))
        .build()
        .unwrap();
    // Both fail once, `b` 30 s after `a` (a slow failure): both circuits open
    // for 60 s, `b`'s until 30 s after `a`'s.
    b.set_latency(Duration::from_millis(30_000));
    let _ = r.generate(&req(), &CallCtx::detached()).await;
    assert!(r.stats().iter().all(|m| m.breaker == BreakerState::Open));
    tokio::time::advance(Duration::from_secs(31)).await;
    b.fail_with(None);
    // `a`'s probe goes through and fails; `b` stays open for 30 s more: no waiting for it.
    let t0 = tokio::time::Instant::now();
    let e = r.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    let waited = t0.elapsed();
    assert!(waited < Duration::from_secs(1), "waited {waited:?} on b's circuit");
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(e.to_string().contains("a"), "{e}");
    assert_eq!(a.calls(), 2);
    assert_eq!(b.calls(), 1, "b's circuit was not waited for");
}

#[tokio::test(start_paused = true)]
async fn before_any_member_failed_the_call_an_open_circuit_is_still_waited_for() {
    let a = member("a", true);
    let r = Router::builder("r")
        .member(a.clone())
        .breaker(breaker(20))
        .build()
        .unwrap();
    let _ = r.generate(&req(), &CallCtx::detached()).await;
    a.fail_with(None);
    let t0 = tokio::time::Instant::now();
    r.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(19), "{:?}", t0.elapsed());
}

fn down_fast() -> DownConfig {
    DownConfig {
        after: Duration::from_secs(5),
        min_failures: 2,
    }
}

#[tokio::test(start_paused = true)]
async fn a_down_member_is_not_waited_for_and_every_member_down_makes_the_router_unavailable() {
    let a = member("a", true);
    let b = member("b", true);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .exploration(0.0)
        .breaker(breaker(30))
        .down_after(down_fast())
        .build()
        .unwrap();
    assert!(r.unavailable().is_none(), "nothing seen yet");
    // Two failed calls each, 30 s apart (each after a reopening): both are down.
    let _ = r.generate(&req(), &CallCtx::detached()).await;
    tokio::time::advance(Duration::from_secs(30)).await;
    let _ = r.generate(&req(), &CallCtx::detached()).await;
    assert_eq!((a.calls(), b.calls()), (2, 2));
    assert!(r.stats().iter().all(|m| m.down && m.breaker == BreakerState::Open));
    let e = r.unavailable().expect("every member is down and open");
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    let msg = e.to_string();
    assert!(msg.contains("`a` is down") && msg.contains("`b` is down"), "{msg}");

    // A call now fails at once naming both, instead of waiting max_wait (60 s).
    let t0 = tokio::time::Instant::now();
    let e = r.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_millis(1), "{:?}", t0.elapsed());
    assert!(e.to_string().contains("every member of router `r` is down"), "{e}");
    assert_eq!((a.calls(), b.calls()), (2, 2), "no member was called");

    // When a circuit half-opens, the probe goes through and a recovered member is back.
    a.fail_with(None);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(r.unavailable().is_none(), "a probe is due");
    r.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert!(!r.stats()[0].down, "a success ends the streak");
}

#[tokio::test(start_paused = true)]
async fn the_engine_keeps_one_breaker_per_member_not_one_for_the_router() {
    let dead = member("dead", true);
    let live = member("live", false);
    // The live member fails one call in five: each makes the router fail a call.
    live.set_script(|_, n| match n % 5 {
        0 => Err(ProviderError::transient("live", "500 injected").with_status(500)),
        _ => Ok(()),
    });
    let router = Arc::new(
        Router::builder("r")
            .member(dead.clone())
            .member(live.clone())
            .exploration(0.0)
            .breaker(BreakerConfig {
                failure_threshold: 3,
                cool_down: Duration::from_secs(30),
            })
            .build()
            .unwrap(),
    );
    assert!(router.is_composite());
    // An engine breaker that a single failure would trip: it must not sit on the router.
    let exec = Executor::builder()
        .provider(router.clone())
        .concurrency(4)
        .retry(RetryPolicy {
            max_attempts: 10,
            max_rate_limited: 3,
            backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(50)).unwrap(),
            max_retry_after: Duration::from_secs(1),
        })
        .breaker(breaker(30))
        .build()
        .unwrap();
    let step = GenerateStep::new(Task::Text, ["r"], "tile {{ n }}").unwrap();
    let dag = Arc::new(Dag::builder("d").step("gen", step, &[]).build().unwrap());
    let jobs: Vec<Job> = (0..200).map(|i| Job::new([("n", i.to_string())])).collect();
    let t0 = tokio::time::Instant::now();
    let mut run = exec
        .start(
            dag,
            jobs,
            RunOptions {
                ..RunOptions::default()
            },
        )
        .unwrap();
    let events = run.events().unwrap();
    let out = run.wait().await;
    let events: Vec<EventKind> = events.map(|e| e.kind).collect().await;
    let failed: Vec<String> = out
        .jobs
        .iter()
        .filter(|j| j.status != Status::Succeeded)
        .map(|j| format!("{j:?}"))
        .take(2)
        .collect();
    assert_eq!(out.status, Status::Succeeded, "{failed:?}");
    assert_eq!(out.jobs.iter().filter(|j| j.status == Status::Succeeded).count(), 200);
    assert!(
        !events.iter().any(|e| matches!(e, EventKind::Waiting { .. })),
        "no job waited on a circuit"
    );
    // 200 jobs of 10 ms at 4 at a time: well under a breaker's cool-down.
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(
        (3..=4).contains(&dead.calls()),
        "the dead member's own breaker opened after 3 failures (plus one in flight): {} calls",
        dead.calls()
    );
    assert!(live.calls() >= 240, "the failed calls were retried: {}", live.calls());
    let s = router.stats();
    assert_eq!(s[0].breaker, BreakerState::Open, "the dead member's breaker is open");
    assert_ne!(s[1].breaker, BreakerState::Open, "the live member's is not");
}

#[tokio::test(start_paused = true)]
async fn a_step_over_a_router_whose_members_are_all_down_fails_at_once_naming_them() {
    let a = member("a", true);
    let b = member("b", true);
    let router = Arc::new(
        Router::builder("r")
            .member(a.clone())
            .member(b.clone())
            .exploration(0.0)
            .breaker(breaker(600))
            .down_after(DownConfig {
                after: Duration::ZERO,
                min_failures: 1,
            })
            .build()
            .unwrap(),
    );
    let exec = Executor::builder()
        .provider(router.clone())
        .concurrency(1)
        .build()
        .unwrap();
    let step = GenerateStep::new(Task::Text, ["r"], "tile {{ n }}").unwrap();
    let dag = Arc::new(Dag::builder("d").step("gen", step, &[]).build().unwrap());
    let jobs: Vec<Job> = (0..10).map(|i| Job::new([("n", i.to_string())])).collect();
    let t0 = tokio::time::Instant::now();
    let out = exec.run(dag, jobs).await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(out.jobs.iter().all(|j| j.status == Status::Failed));
    assert_eq!(a.calls() + b.calls(), 2, "each member was called once, then known down");
    let err = format!("{:?}", out.jobs.last().unwrap());
    assert!(err.contains("is down"), "{err}");
}
