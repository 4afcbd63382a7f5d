//! The router under injected failures, latencies, rate limits and gate outcomes:
//! traffic moves away from a failing or slow member and back once it recovers.
//!
//! Members are in-process fakes whose behaviour a test changes mid-run; tokio time
//! is paused, so latencies of seconds cost nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use creative_core::registry::{BuildCtx, Registry};
use creative_core::resilience::ProviderLimits;
use creative_core::resilience::{BreakerConfig, BreakerState};
use creative_core::{
    Artifact, CallCtx, CallObserver, CancellationToken, Capabilities, ErrorKind, MemberCall, Provider, Request,
    RouteReason, Task,
};
use creative_providers::router::{Router, RouterError, StatsFileError, Strategy, ROUTED_PROVIDER};
use creative_testkit::fake::{Answer, FakeProvider};

/// A member: the kit's fake answering "from {id}" for `price` after
/// `latency_ms`, able to do images.
fn fake(id: &str, latency_ms: u64, price: f64) -> Arc<FakeProvider> {
    fake_doing(id, latency_ms, price, &[Task::Image])
}

/// A member as [`fake`], able to do `tasks`.
fn fake_doing(id: &str, latency_ms: u64, price: f64, tasks: &[Task]) -> Arc<FakeProvider> {
    let me = id.to_string();
    Arc::new(
        FakeProvider::new(id, tasks)
            .capabilities(Capabilities {
                tasks: tasks.to_vec(),
                seed: true,
                negative_prompt: false,
                max_count: 1,
            })
            .latency(Duration::from_millis(latency_ms))
            .cost(price)
            .respond(move |_, _| Answer::text(format!("from {me}"))),
    )
}

fn req() -> Request {
    Request::new(Task::Image, "a lighthouse")
}

/// Run `n` sequential calls; return how many each member answered.
async fn run(router: &Router, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        if let Ok(g) = router.generate(&req(), &CallCtx::detached()).await {
            let who = g.artifacts[0].meta().extra[ROUTED_PROVIDER]
                .as_str()
                .unwrap()
                .to_string();
            *counts.entry(who).or_insert(0) += 1;
        }
        // Calls arrive spread over time, like a campaign's.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    counts
}

fn share(c: &BTreeMap<String, usize>, id: &str) -> f64 {
    let total: usize = c.values().sum();
    *c.get(id).unwrap_or(&0) as f64 / total.max(1) as f64
}

#[tokio::test(start_paused = true)]
async fn fallback_goes_down_the_list_on_failure_and_keeps_the_order_otherwise() {
    let a = fake("a", 10, 0.01);
    let b = fake("b", 10, 0.01);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .exploration(0.0)
        .build()
        .unwrap();
    let c = run(&r, 5).await;
    assert_eq!(c.get("a"), Some(&5));
    a.fail_with(Some(ErrorKind::Transient));
    let c = run(&r, 3).await;
    assert_eq!(c.get("b"), Some(&3), "{c:?}");
    // Each of those calls tried `a` first, then fell back.
    assert_eq!(a.calls(), 8);
}

#[tokio::test(start_paused = true)]
async fn every_member_failing_returns_the_last_failure() {
    let a = fake("a", 1, 0.0);
    let b = fake("b", 1, 0.0);
    a.fail_with(Some(ErrorKind::Transient));
    b.fail_with(Some(ErrorKind::Invalid));
    let r = Router::builder("r")
        .member(a)
        .member(b)
        .exploration(0.0)
        .build()
        .unwrap();
    let e = r.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(e.provider(), "b");
}

#[tokio::test(start_paused = true)]
async fn cancellation_is_not_fallen_back_on() {
    let a = fake("a", 10_000, 0.0);
    let b = fake("b", 1, 0.0);
    let r = Arc::new(
        Router::builder("r")
            .member(a)
            .member(b.clone())
            .exploration(0.0)
            .build()
            .unwrap(),
    );
    let cancel = CancellationToken::new();
    let ctx = CallCtx {
        cancel: cancel.clone(),
        attempt: 1,
        deadline: None,
        observer: None,
    };
    let task = tokio::spawn({
        let r = r.clone();
        async move { r.generate(&req(), &ctx).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    cancel.cancel();
    let e = task.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert_eq!(b.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn traffic_leaves_a_failing_member_and_returns_when_it_recovers() {
    // `a` is faster, so `fastest` prefers it while it works.
    let a = fake("a", 100, 0.01);
    let b = fake("b", 400, 0.01);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .strategy(Strategy::Fastest)
        .exploration(0.1)
        .breaker(BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_secs(5),
        })
        .seed(7)
        .build()
        .unwrap();

    let healthy = run(&r, 100).await;
    assert!(share(&healthy, "a") > 0.85, "healthy phase: {healthy:?}");

    a.fail_with(Some(ErrorKind::Transient));
    let failing = run(&r, 100).await;
    // Every call still succeeds (fallback to `b`), and `a` is barely tried: its
    // breaker opens after 3 failures and only exploration probes it after cool-downs.
    assert_eq!(failing.values().sum::<usize>(), 100, "{failing:?}");
    assert_eq!(share(&failing, "b"), 1.0, "{failing:?}");
    let a_calls_while_failing = a.calls();
    assert!(
        a_calls_while_failing < 100 + 20,
        "a was hammered: {}",
        a_calls_while_failing
    );
    assert_eq!(r.stats()[0].breaker, BreakerState::Open, "{:?}", r.stats());

    a.fail_with(None);
    let recovered = run(&r, 200).await;
    assert!(
        share(&recovered, "a") > 0.6,
        "traffic should come back to the recovered member: {recovered:?} stats {:?}",
        r.stats()
    );
    let last = run(&r, 50).await;
    assert!(share(&last, "a") > 0.85, "{last:?}");
}

#[tokio::test(start_paused = true)]
async fn traffic_leaves_a_slow_member_and_returns_when_it_is_fast_again() {
    let a = fake("a", 100, 0.01);
    let b = fake("b", 300, 0.01);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .strategy(Strategy::Fastest)
        .window(50.0)
        .seed(11)
        .build()
        .unwrap();
    let before = run(&r, 60).await;
    assert!(share(&before, "a") > 0.95, "{before:?}");

    a.set_latency(Duration::from_millis(3_000));
    // A few calls measure the slowdown; afterwards `b` takes the traffic.
    run(&r, 10).await;
    let slow = run(&r, 100).await;
    // `fastest` does not explore: `a` is only measured again once its sample is
    // older than the window (50 observations), about twice in 100 calls.
    assert!(share(&slow, "b") >= 0.95, "{slow:?} {:?}", r.stats());
    assert!(share(&slow, "a") > 0.0, "a stale sample is measured again: {slow:?}");

    a.set_latency(Duration::from_millis(50));
    let fast_again = run(&r, 200).await;
    let tail = run(&r, 60).await;
    assert!(share(&fast_again, "a") > 0.7, "{fast_again:?} {:?}", r.stats());
    assert!(share(&tail, "a") > 0.95, "{tail:?}");
    assert_eq!(r.decisions().explorations, 0, "fastest is deterministic");
}

#[tokio::test(start_paused = true)]
async fn most_reliable_prefers_the_member_that_fails_least() {
    let a = fake("a", 10, 0.01);
    let b = fake("b", 10, 0.01);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .strategy(Strategy::MostReliable)
        .exploration(0.1)
        .breaker(BreakerConfig {
            failure_threshold: 1000,
            cool_down: Duration::from_secs(1),
        })
        .seed(3)
        .build()
        .unwrap();
    a.fail_with(Some(ErrorKind::Timeout));
    run(&r, 30).await;
    let calls_a = a.calls();
    let c = run(&r, 100).await;
    assert_eq!(share(&c, "b"), 1.0);
    assert!(a.calls() - calls_a < 25, "a tried {} times", a.calls() - calls_a);
    assert!(r.stats()[0].success_rate < r.stats()[1].success_rate);
    a.fail_with(None);
    b.fail_with(Some(ErrorKind::Transient));
    run(&r, 60).await;
    let c = run(&r, 50).await;
    assert!(share(&c, "a") == 1.0, "{c:?}");
    assert!(r.stats()[0].success_rate > r.stats()[1].success_rate, "{:?}", r.stats());
}

#[tokio::test(start_paused = true)]
async fn cheapest_takes_the_lowest_estimate() {
    let a = fake("a", 10, 0.04);
    let b = fake("b", 10, 0.01);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .strategy(Strategy::Cheapest)
        .exploration(0.0)
        .build()
        .unwrap();
    assert_eq!(r.ranking(&req()), vec!["b", "a"]);
    let c = run(&r, 10).await;
    assert_eq!(c.get("b"), Some(&10));
    assert_eq!(
        r.estimate_cost(&req()),
        0.04,
        "a budget reserves the dearest member's price"
    );
}

/// Run 100 calls, judging each output: `b`'s always pass, `a`'s pass one time in
/// five unless `a_good`. Returns how many each member answered.
async fn judged(r: &Router, a_good: bool) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..100 {
        let g = r.generate(&req(), &CallCtx::detached()).await.unwrap();
        let art = &g.artifacts[0];
        let who = art.meta().extra[ROUTED_PROVIDER].as_str().unwrap().to_string();
        let passed = who == "b" || a_good || i % 5 == 0;
        assert!(r.record_verdict(art, passed));
        *counts.entry(who).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(start_paused = true)]
async fn cost_per_accepted_follows_reported_gate_outcomes() {
    // `a` is cheaper, but most of its outputs fail the gate; `b` costs 50% more and
    // passes. Expected cost per accepted asset favours `b` until `a` improves.
    let a = fake("a", 10, 0.02);
    let b = fake("b", 10, 0.03);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .strategy(Strategy::CostPerAccepted)
        .exploration(0.1)
        .seed(5)
        .build()
        .unwrap();
    let bad = judged(&r, false).await;
    assert!(share(&bad, "b") > 0.7, "{bad:?} {:?}", r.stats());
    let _ = judged(&r, true).await;
    let good = judged(&r, true).await;
    assert!(share(&good, "a") > 0.8, "{good:?} {:?}", r.stats());
    assert!(!r.record_gate("nobody", true));
    assert!(r.stats()[0].gate_verdicts > 0);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_member_spills_calls_over_to_the_next() {
    let a = fake("a", 1, 0.0);
    let b = fake("b", 1, 0.0);
    let r = Router::builder("r")
        .member_with_limits(
            a.clone(),
            ProviderLimits {
                requests_per_minute: Some(60),
                burst: Some(1),
                ..ProviderLimits::default()
            },
        )
        .member(b.clone())
        .exploration(0.0)
        .build()
        .unwrap();
    // Ten calls within one second: `a` may take one per second.
    for _ in 0..10 {
        r.generate(&req(), &CallCtx::detached()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.calls(), 1);
    assert_eq!(b.calls(), 9);
}

#[tokio::test(start_paused = true)]
async fn a_429_answer_moves_traffic_away_for_the_retry_after_period() {
    let a = fake("a", 1, 0.0);
    let b = fake("b", 1, 0.0);
    a.fail_with(Some(ErrorKind::RateLimited));
    a.set_retry_after(Some(Duration::from_secs(10)));
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .exploration(0.0)
        .build()
        .unwrap();
    r.generate(&req(), &CallCtx::detached()).await.unwrap();
    a.fail_with(None);
    for _ in 0..5 {
        r.generate(&req(), &CallCtx::detached()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(a.calls(), 1, "a asked for 10 s of quiet");
    tokio::time::sleep(Duration::from_secs(6)).await;
    r.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert_eq!(a.calls(), 2);
    assert_eq!(
        r.stats()[0].breaker,
        BreakerState::Closed,
        "a 429 is not a health failure"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrency_limits_spill_over_and_are_never_exceeded() {
    let a = fake("a", 1_000, 0.0);
    let b = fake("b", 1_000, 0.0);
    let r = Arc::new(
        Router::builder("r")
            .member_with_limits(
                a.clone(),
                ProviderLimits {
                    concurrency: Some(2),
                    ..ProviderLimits::default()
                },
            )
            .member_with_limits(
                b.clone(),
                ProviderLimits {
                    concurrency: Some(1),
                    ..ProviderLimits::default()
                },
            )
            .exploration(0.0)
            .build()
            .unwrap(),
    );
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.generate(&req(), &CallCtx::detached()).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(a.max_in_flight(), 2);
    assert_eq!(b.max_in_flight(), 1);
    assert_eq!(a.calls() + b.calls(), 6);
    assert!(b.calls() >= 1, "the third concurrent call spilled over to b");
}

#[tokio::test(start_paused = true)]
async fn with_every_breaker_open_the_router_waits_for_the_first_reopening() {
    let a = fake("a", 1, 0.0);
    a.fail_with(Some(ErrorKind::Transient));
    let r = Router::builder("r")
        .member(a.clone())
        .exploration(0.0)
        .breaker(BreakerConfig {
            failure_threshold: 1,
            cool_down: Duration::from_secs(20),
        })
        .build()
        .unwrap();
    assert_eq!(
        r.generate(&req(), &CallCtx::detached()).await.unwrap_err().kind(),
        ErrorKind::Transient
    );
    a.fail_with(None);
    let t0 = tokio::time::Instant::now();
    r.generate(&req(), &CallCtx::detached()).await.unwrap();
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_secs(19), "{waited:?}");
    assert!(waited < Duration::from_secs(21), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn waiting_is_bounded_by_max_wait_with_a_retryable_error() {
    let a = fake("a", 1, 0.0);
    a.fail_with(Some(ErrorKind::Transient));
    let r = Router::builder("r")
        .member(a)
        .max_wait(Duration::from_secs(5))
        .breaker(BreakerConfig {
            failure_threshold: 1,
            cool_down: Duration::from_secs(60),
        })
        .build()
        .unwrap();
    let _ = r.generate(&req(), &CallCtx::detached()).await;
    let e = r.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.retry_after().map(|d| d.as_secs()), Some(60));
}

#[tokio::test(start_paused = true)]
async fn members_that_cannot_do_the_task_are_not_asked() {
    let a = fake_doing("a", 1, 0.0, &[Task::Text]);
    let b = fake("b", 1, 0.0);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b)
        .exploration(1.0)
        .build()
        .unwrap();
    for _ in 0..10 {
        r.generate(&req(), &CallCtx::detached()).await.unwrap();
    }
    assert_eq!(a.calls(), 0);
    let e = r
        .generate(&Request::new(Task::Video, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    let caps = r.capabilities();
    assert!(caps.supports(Task::Text) && caps.supports(Task::Image));
}

#[test]
fn builder_rejects_bad_settings_with_a_reason() {
    let a = fake("a", 1, 0.0);
    let e = Router::builder("r").build().unwrap_err();
    assert!(e.to_string().contains("no providers"), "{e}");
    let e = Router::builder("r")
        .member(a.clone())
        .member(a.clone())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    let e = Router::builder("r")
        .member(a.clone())
        .exploration(1.5)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("exploration"), "{e}");
    let e = Router::builder("r").member(a).decay(1.0).build().unwrap_err();
    assert!(e.to_string().contains("decay"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn the_router_kind_builds_from_spec_settings() {
    let mut reg = Registry::new();
    creative_providers::register(&mut reg);
    let factory = reg.provider_factory("router").expect("router kind registered").clone();
    let mut ctx = BuildCtx::default();
    let a = fake("a", 1, 0.05);
    let b = fake("b", 1, 0.01);
    ctx.providers.insert("a".into(), a.clone());
    ctx.providers.insert("b".into(), b.clone());
    let settings = serde_json::json!({
        "providers": ["a", "b"],
        "strategy": "cheapest",
        "exploration": 0.0,
        "limits": { "b": { "rpm": 600, "concurrency": 2 } },
        "breaker": { "failure_threshold": 2, "cool_down_s": 3 }
    });
    let p = factory("images", &settings, &ctx).unwrap();
    assert_eq!(p.id(), "images");
    p.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert_eq!((a.calls(), b.calls()), (0, 1));

    let bad = |s: serde_json::Value| factory("images", &s, &ctx).err().unwrap();
    let e = bad(serde_json::json!({"providers": ["a", "zz"]}));
    assert!(
        e.field() == "providers[1]" && e.reason().contains("`zz` is not defined"),
        "{e}"
    );
    let e = bad(serde_json::json!({"providers": ["a"], "strategy": "random"}));
    assert!(
        e.field() == "strategy" && e.reason().contains("unknown router strategy"),
        "{e}"
    );
    assert_eq!(
        bad(serde_json::json!({"providers": ["a"], "limits": {"b": {"rpm": 1}}})).field(),
        "limits.b"
    );
    assert_eq!(
        bad(serde_json::json!({"providers": ["a"], "limits": {"a": {"rps": 1}}})).field(),
        "limits.a.rps"
    );
    let e = bad(serde_json::json!({"providers": ["a"], "colour": 1}));
    assert!(
        e.field() == "colour" && e.reason().contains("unknown router setting `colour`"),
        "{e}"
    );
    let e = bad(serde_json::json!({"providers": "a"}));
    assert!(e.field() == "providers" && e.reason().contains("must be a list"), "{e}");
}

/// Passes outputs of member `b` only.
struct OnlyB;

#[async_trait]
impl creative_core::QualityGate for OnlyB {
    fn name(&self) -> &str {
        "only_b"
    }
    async fn check(
        &self,
        a: &Artifact,
        _: &creative_core::GateCtx,
    ) -> Result<creative_core::Verdict, creative_core::GateError> {
        Ok(if a.text() == Some("from b") {
            creative_core::Verdict::pass(1.0)
        } else {
            creative_core::Verdict::fail(0.0, "not b")
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_engine_reports_gate_verdicts_to_the_router() {
    use creative_core::{Dag, Executor, GenerateStep, Job, OnGateFail};
    let a = fake("a", 1, 0.01);
    let b = fake("b", 1, 0.01);
    let router = Arc::new(
        Router::builder("r")
            .member(a.clone())
            .member(b.clone())
            .strategy(Strategy::CostPerAccepted)
            .exploration(0.0)
            // Seeded: unseeded, about one run in ten drew `a` a third time.
            .seed(1)
            .build()
            .unwrap(),
    );
    // One job at a time, so each verdict is in before the next call is routed.
    let exec = Executor::builder()
        .provider(router.clone())
        .concurrency(1)
        .build()
        .unwrap();
    let step = GenerateStep::new(Task::Image, ["r"], "tile {{ n }}")
        .unwrap()
        .gate(Arc::new(OnlyB))
        .on_gate_fail(OnGateFail::Regenerate { max: 3 });
    let dag = Arc::new(Dag::builder("d").step("gen", step, &[]).build().unwrap());
    let jobs: Vec<Job> = (0..20).map(|i| Job::new([("n", i.to_string())])).collect();
    let out = exec.run(dag, jobs).await.unwrap();
    assert_eq!(out.status, creative_core::Status::Succeeded);
    let stats = r_stats(&router);
    assert!(stats.0 > 0 && stats.1 > 0, "both members judged: {stats:?}");
    // After `a`'s first rejections, `b` takes the work: few calls go to `a`.
    assert!(a.calls() <= 2, "a was called {} times", a.calls());
    assert!(b.calls() >= 20);
}

fn r_stats(r: &Router) -> (u64, u64) {
    let s = r.stats();
    (s[0].gate_verdicts, s[1].gate_verdicts)
}

/// Run `n` calls judged by `accept(member, i)`; returns how many each member answered.
async fn judged_by(r: &Router, n: usize, accept: impl Fn(&str, usize) -> bool) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..n {
        let g = r.generate(&req(), &CallCtx::detached()).await.unwrap();
        let art = &g.artifacts[0];
        let who = art.meta().extra[ROUTED_PROVIDER].as_str().unwrap().to_string();
        assert!(r.record_verdict(art, accept(&who, i)));
        *counts.entry(who).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(start_paused = true)]
async fn cost_per_accepted_drops_a_collapsed_member_within_dozens_of_attempts_and_takes_it_back_on_recovery() {
    // `a` is the best value (0.02 at 95%) until its acceptance collapses to 10%;
    // `b` (0.03 at 95%) is then the best.
    let a = fake("a", 10, 0.02);
    let b = fake("b", 10, 0.03);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .strategy(Strategy::CostPerAccepted)
        .gated(true)
        .seed(17)
        .build()
        .unwrap();
    let good = |who: &str, i: usize| who == "b" || !i.is_multiple_of(20);
    let before = judged_by(&r, 200, good).await;
    assert!(share(&before, "a") > 0.8, "{before:?} {:?}", r.stats());

    let collapsed = |who: &str, i: usize| who == "b" || i.is_multiple_of(10);
    let first = judged_by(&r, 60, collapsed).await;
    let after = judged_by(&r, 100, collapsed).await;
    assert!(
        first["a"] <= 50,
        "a loses its lead within a few dozen attempts: {first:?}"
    );
    assert!(share(&after, "b") > 0.85, "{after:?} {:?}", r.stats());

    assert!(r.decisions().changes >= 1, "the change test found the collapse");

    let _ = judged_by(&r, 150, good).await;
    let recovered = judged_by(&r, 100, good).await;
    assert!(
        share(&recovered, "a") > 0.7,
        "a recovered member gets its traffic back: {recovered:?} {:?}",
        r.stats()
    );
    assert!(r.decisions().explorations > 0);
}

#[tokio::test(start_paused = true)]
async fn deterministic_strategies_never_explore_whatever_the_exploration_setting() {
    for strategy in [Strategy::Cheapest, Strategy::Fallback, Strategy::Fastest] {
        let a = fake("a", 10, 0.01);
        let b = fake("b", 20, 0.02);
        let r = Router::builder("r")
            .member(a.clone())
            .member(b.clone())
            .strategy(strategy)
            .exploration(0.5)
            .build()
            .unwrap();
        let c = run(&r, 50).await;
        // `fastest` measures the unmeasured `b` once; then `a` only.
        let want = if strategy == Strategy::Fastest { 49 } else { 50 };
        assert_eq!(c.get("a"), Some(&want), "{strategy}: {c:?}");
        assert_eq!(r.decisions().explorations, 0, "{strategy}");
        assert!(
            r.warnings().iter().any(|w| w.contains("`exploration` is ignored")),
            "{strategy}: {:?}",
            r.warnings()
        );
    }
}

/// Evidence that both members are accepted 95% of the time, so `a`'s lower
/// price makes it the cheaper per accepted asset.
fn both_accepted_95_percent(r: &Router) {
    let entries: Vec<_> = r
        .learned()
        .into_iter()
        .map(|mut e| {
            e.accepted = 95.0;
            e.rejected = 5.0;
            e
        })
        .collect();
    assert_eq!(r.learn(&entries), 2);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_best_member_is_waited_for_unless_the_deadline_makes_waiting_dearer() {
    // `a` is cheaper per accepted asset; it says "rate limited, retry after 2 s"
    // once. With no deadline the call waits for it rather than pay `b`'s price.
    let a = fake("a", 10, 0.01);
    let b = fake("b", 10, 0.03);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .strategy(Strategy::CostPerAccepted)
        .seed(1)
        .build()
        .unwrap();
    both_accepted_95_percent(&r);
    a.fail_with(Some(ErrorKind::RateLimited));
    a.set_retry_after(Some(Duration::from_secs(2)));
    let first = tokio::spawn({
        let a = a.clone();
        async move {
            // Let the 429 come back, then let `a` answer again.
            tokio::time::sleep(Duration::from_millis(50)).await;
            a.fail_with(None);
        }
    });
    let t0 = tokio::time::Instant::now();
    let g = r.generate(&req(), &CallCtx::detached()).await.unwrap();
    first.await.unwrap();
    assert_eq!(g.artifacts[0].meta().extra[ROUTED_PROVIDER], "a");
    assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(b.calls(), 0);
    assert_eq!(r.decisions().waits, 1);
    assert_eq!(r.decisions().spills, 0);

    // A deadline one second away: waiting 2 s would miss it, so the call spills.
    a.fail_with(Some(ErrorKind::RateLimited));
    let ctx = CallCtx {
        deadline: Some(std::time::Instant::now() + Duration::from_secs(1)),
        ..CallCtx::detached()
    };
    let g = r.generate(&req(), &ctx).await.unwrap();
    assert_eq!(g.artifacts[0].meta().extra[ROUTED_PROVIDER], "b");
    assert_eq!(r.decisions().spills, 1);
}

#[tokio::test(start_paused = true)]
async fn a_wait_cost_above_the_price_gap_makes_the_router_spill() {
    let a = fake("a", 10, 0.01);
    let b = fake("b", 10, 0.03);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .strategy(Strategy::CostPerAccepted)
        // Two seconds of waiting at $0.05/s = $0.10 > the $0.025 gap in cost per accepted.
        .wait_cost(0.05)
        .seed(1)
        .build()
        .unwrap();
    both_accepted_95_percent(&r);
    a.fail_with(Some(ErrorKind::RateLimited));
    a.set_retry_after(Some(Duration::from_secs(2)));
    let g = r.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts[0].meta().extra[ROUTED_PROVIDER], "b");
    assert_eq!((r.decisions().spills, r.decisions().waits), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn members_over_the_p95_latency_cap_rank_after_those_under_it() {
    let a = fake("a", 2_000, 0.01);
    let b = fake("b", 200, 0.03);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .strategy(Strategy::CostPerAccepted)
        .latency_cap(Duration::from_secs(1))
        .seed(2)
        .build()
        .unwrap();
    // Enough calls for both members to have a p95.
    let _ = run(&r, 60).await;
    assert_eq!(r.ranking(&req()), vec!["b", "a"], "{:?}", r.stats());
    let c = run(&r, 40).await;
    assert_eq!(share(&c, "b"), 1.0, "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn learned_statistics_persist_so_the_next_router_starts_from_them() {
    let dir = std::env::temp_dir().join(format!("creative-router-learned-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = dir.join("r.json");
    let a = fake("a", 10, 0.02);
    let b = fake("b", 10, 0.03);
    let build = || {
        Router::builder("r")
            .member(a.clone())
            .member(b.clone())
            .strategy(Strategy::CostPerAccepted)
            .gate_set("gates-1")
            .stats_file(&file)
            .seed(9)
            .build()
            .unwrap()
    };
    let first = build();
    // `a` is cheap but almost never accepted.
    let _ = judged_by(&first, 100, |who, i| who == "b" || i.is_multiple_of(10)).await;
    let learned = first.learned();
    drop(first);
    let second = build();
    assert_eq!(second.ranking(&req()), vec!["b", "a"], "{:?}", second.stats());
    let loaded = second.learned();
    assert!(loaded[0].rejected > 1.0, "{loaded:?} vs {learned:?}");
    assert_eq!(second.learn(&learned), 2);
    // Another gate set learns afresh.
    let other = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .strategy(Strategy::CostPerAccepted)
        .gate_set("gates-2")
        .stats_file(&file)
        .build()
        .unwrap();
    assert_eq!(other.learned()[0].rejected, 0.0);
    drop((second, other));
    std::fs::write(&file, "not json").unwrap();
    let e = Router::builder("r")
        .member(a.clone())
        .stats_file(&file)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("r.json"), "{e}");
    assert!(
        matches!(&e, RouterError::StatsFile(f) if matches!(**f, StatsFileError::Invalid { .. })),
        "{e:?}"
    );
    // A file that cannot be read keeps the io error as its source.
    let e = Router::builder("r")
        .member(a.clone())
        .stats_file(&dir)
        .build()
        .unwrap_err();
    assert!(
        matches!(&e, RouterError::StatsFile(f) if matches!(**f, StatsFileError::Io { .. })),
        "{e:?}"
    );
    let source = std::error::Error::source(&e).expect("the io error");
    assert!(source.downcast_ref::<std::io::Error>().is_some(), "{source:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn cost_per_accepted_tries_a_member_again_after_one_server_error_and_moves_on_after_two() {
    let a = fake("a", 10, 0.02);
    let b = fake("b", 10, 0.06);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .strategy(Strategy::CostPerAccepted)
        .seed(2)
        .build()
        .unwrap();
    both_accepted_95_percent(&r);
    // One 500 from `a`: `b` is three times the price per accepted asset, so
    // the call asks `a` again.
    a.fail_next(1);
    let c = run(&r, 1).await;
    assert_eq!(c.get("a"), Some(&1), "{c:?}");
    assert_eq!((a.calls(), b.calls()), (2, 0));
    // Two in a row: more than chance, the call moves on.
    a.fail_next(2);
    let c = run(&r, 1).await;
    assert_eq!(c.get("b"), Some(&1), "{c:?}");
    assert_eq!((a.calls(), b.calls()), (4, 1));

    // The deterministic strategies move on at the first failure, as before.
    let (a2, b2) = (fake("a", 10, 0.02), fake("b", 10, 0.06));
    let f = Router::builder("f")
        .member(a2.clone())
        .member(b2.clone())
        .strategy(Strategy::Cheapest)
        .build()
        .unwrap();
    a2.fail_next(1);
    let c = run(&f, 1).await;
    assert_eq!(c.get("b"), Some(&1), "{c:?}");
    assert_eq!((a2.calls(), b2.calls()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn before_any_verdict_cost_per_accepted_experiments_on_the_cheap_members_not_the_dearest() {
    let cheap = fake("cheap", 10, 0.01);
    let mid = fake("mid", 10, 0.02);
    let dear = fake("dear", 10, 0.06);
    let r = Router::builder("r")
        .member(dear.clone())
        .member(mid.clone())
        .member(cheap.clone())
        .strategy(Strategy::CostPerAccepted)
        .gated(true)
        .seed(4)
        .build()
        .unwrap();
    // Every output is accepted; what is learned is that nobody is worth six
    // times the cheapest price. Believing acceptance grew with price, the
    // router sent a third of its first calls to `dear`.
    let c = judged_by(&r, 40, |_, _| true).await;
    assert!(c.get("dear").copied().unwrap_or(0) <= 1, "{c:?}");
    assert!(share(&c, "cheap") > 0.6, "{c:?}");
    assert_eq!(r.ranking(&req())[0], "cheap");
}

/// Collects the member calls a router reports, with why it chose each member.
#[derive(Default)]
struct Seen(Mutex<Vec<(String, Option<RouteReason>, bool)>>);

impl CallObserver for Seen {
    fn member_call(&self, c: MemberCall) {
        self.0.lock().unwrap().push((c.member, c.reason, c.error.is_none()));
    }
}

impl Seen {
    fn take(&self) -> Vec<(String, Option<RouteReason>, bool)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[tokio::test(start_paused = true)]
async fn every_member_call_says_why_the_router_chose_that_member() {
    use RouteReason::*;
    let a = fake("a", 10, 0.01);
    let b = fake("b", 10, 0.03);
    let r = Router::builder("r")
        .member(a.clone())
        .member(b.clone())
        .strategy(Strategy::CostPerAccepted)
        .seed(1)
        .build()
        .unwrap();
    both_accepted_95_percent(&r);
    let seen = Arc::new(Seen::default());
    let ctx = CallCtx {
        observer: Some(seen.clone()),
        ..CallCtx::detached()
    };
    let who = |s: &str| s.to_string();

    r.generate(&req(), &ctx).await.unwrap();
    assert_eq!(seen.take(), [(who("a"), Some(Exploited), true)]);

    // Two server errors: `a` once more, then `b`.
    a.fail_next(2);
    r.generate(&req(), &ctx).await.unwrap();
    assert_eq!(
        seen.take(),
        [
            (who("a"), Some(Exploited), false),
            (who("a"), Some(Fallback), false),
            (who("b"), Some(Fallback), true),
        ]
    );

    // "Rate limited, retry after 2 s": the call waits for `a`.
    a.fail_with(Some(ErrorKind::RateLimited));
    a.set_retry_after(Some(Duration::from_secs(2)));
    let heal = tokio::spawn({
        let a = a.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            a.fail_with(None);
        }
    });
    r.generate(&req(), &ctx).await.unwrap();
    heal.await.unwrap();
    assert_eq!(
        seen.take(),
        [(who("a"), Some(Exploited), false), (who("a"), Some(Waited), true)]
    );

    // With a deadline sooner than the wait, the call spills to `b`.
    a.fail_with(Some(ErrorKind::RateLimited));
    let hurried = CallCtx {
        deadline: Some(std::time::Instant::now() + Duration::from_secs(1)),
        ..ctx.clone()
    };
    r.generate(&req(), &hurried).await.unwrap();
    assert_eq!(
        seen.take(),
        [(who("a"), Some(Exploited), false), (who("b"), Some(Spilled), true)]
    );

    // An exploration share of 1: the first call goes to the member that is not
    // the best by the estimates.
    let x = Router::builder("x")
        .member(fake("a", 10, 0.01))
        .member(fake("b", 10, 0.03))
        .strategy(Strategy::CostPerAccepted)
        .exploration(1.0)
        .seed(1)
        .build()
        .unwrap();
    both_accepted_95_percent(&x);
    x.generate(&req(), &ctx).await.unwrap();
    assert_eq!(seen.take(), [(who("b"), Some(Explored), true)]);
}

#[tokio::test(start_paused = true)]
async fn a_member_s_timeout_from_its_limits_ends_a_slow_call_and_the_next_member_answers() {
    let slow = fake("slow", 5_000, 0.01);
    let quick = fake("quick", 10, 0.02);
    let r = Router::builder("r")
        .member_with_limits(
            slow.clone(),
            ProviderLimits {
                timeout: Some(Duration::from_secs(1)),
                ..ProviderLimits::default()
            },
        )
        .member(quick.clone())
        .strategy(Strategy::Fallback)
        .build()
        .unwrap();
    let seen = Arc::new(Seen::default());
    let ctx = CallCtx {
        observer: Some(seen.clone()),
        ..CallCtx::detached()
    };
    let t0 = tokio::time::Instant::now();
    let g = r.generate(&req(), &ctx).await.unwrap();
    assert_eq!(g.artifacts[0].meta().extra[ROUTED_PROVIDER], "quick");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(
        seen.take(),
        [
            ("slow".to_string(), Some(RouteReason::Exploited), false),
            ("quick".to_string(), Some(RouteReason::Fallback), true),
        ]
    );
    assert_eq!(r.stats()[0].failures, 1);
}
