//! Behaviour of the engine across modules: executor, resilience, gates,
//! cancellation, events, DAG scheduling.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use creative_core::resilience::{Backoff, BreakerConfig, Budget, DownConfig, RetryPolicy};
use creative_core::{
    Artifact, Dag, ErrorKind, EventKind, Executor, GateCtx, GateError, GenerateStep, Generation, Job, MediaKind,
    OnGateFail, Pipeline, PipelineError, ProviderError, ProviderLimits, QualityGate, RunOptions, SeedPolicy, Status,
    Step, StepCtx, StepError, StepErrorKind, StepInputs, StepState, Task, Verdict,
};
use creative_testkit::fake::{Answer, FakeProvider};
use creative_testkit::wait::wait_for;
use futures::StreamExt;

/// The kit's fake answering with a text artifact naming itself, the prompt and
/// the seed, for 0.01 USD a call.
fn fake(id: &str) -> FakeProvider {
    let me = id.to_string();
    FakeProvider::new(id, &[Task::Text, Task::Image])
        .seed(true)
        .cost(0.01)
        .respond(move |req, _| Answer::text(format!("{}|{}|{}", me, req.prompt, req.params.seed.unwrap_or(0))))
}

fn gen(chain: &[&str]) -> GenerateStep {
    GenerateStep::new(Task::Text, chain.iter().copied(), "ad for {{ product }}").unwrap()
}

fn jobs(n: usize) -> Vec<Job> {
    (0..n).map(|i| Job::new([("product", format!("p{i}"))])).collect()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        max_rate_limited: 5,
        backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(100)).unwrap(),
        max_retry_after: Duration::from_secs(60),
    }
}

fn single(step: impl Step + 'static) -> Arc<dyn Pipeline> {
    Arc::new(Dag::builder("t").step("gen", step, &[]).build().unwrap())
}

// ---------------------------------------------------------------- executor

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_every_job_within_global_and_per_provider_limits() {
    let a = Arc::new(fake("a").latency(Duration::from_millis(5)));
    let b = Arc::new(fake("b").latency(Duration::from_millis(5)));
    let exec = Executor::builder()
        .provider(a.clone())
        .provider_with_limits(
            b.clone(),
            ProviderLimits {
                concurrency: Some(2),
                ..Default::default()
            },
        )
        .concurrency(6)
        .build()
        .unwrap();
    let dag = Dag::builder("two")
        .step("x", gen(&["a"]), &[])
        .step("y", gen(&["b"]), &[])
        .build()
        .unwrap();
    let out = exec.run(Arc::new(dag), jobs(40)).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
    assert_eq!(out.jobs.len(), 40);
    assert!(out.jobs.iter().enumerate().all(|(i, j)| j.index == i as u64));
    assert_eq!(a.calls(), 40);
    assert_eq!(b.calls(), 40);
    let max_b = b.max_in_flight();
    let max_a = a.max_in_flight();
    assert!(max_b <= 2, "per-provider limit: {max_b}");
    assert!(max_a <= 6, "global limit: {max_a}");
    assert!(max_a >= 3, "the global limit allows parallel calls: {max_a}");
}

/// A local step that waits for a permit the provider hands out when called.
struct WaitForCall(Arc<tokio::sync::Semaphore>);

#[async_trait]
impl Step for WaitForCall {
    fn kind(&self) -> &str {
        "wait-for-call"
    }
    async fn run(&self, inputs: &StepInputs, _: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        self.0
            .acquire()
            .await
            .map_err(|e| StepError::io(e.to_string()))?
            .forget();
        Ok(inputs.all().cloned().collect())
    }
}

#[tokio::test(start_paused = true)]
async fn local_steps_holding_every_permit_never_hold_back_a_provider_call() {
    // `first` readies two local steps and a second call; the local steps take
    // both permits of a concurrency of 2 and finish only once `second` has been
    // called. Sharing one pool of permits, the run would wait forever.
    let released = Arc::new(tokio::sync::Semaphore::new(0));
    let r = released.clone();
    let p = Arc::new(fake("p").script(move |req, _| {
        if req.prompt.starts_with("second") {
            r.add_permits(2);
        }
        Ok(())
    }));
    let exec = Executor::builder().provider(p.clone()).concurrency(2).build().unwrap();
    let call = |prompt: &str| GenerateStep::new(Task::Text, ["p"], prompt).unwrap();
    let dag = Dag::builder("fan-out")
        .step("first", call("first {{ product }}"), &[])
        .step("hold1", WaitForCall(released.clone()), &["first"])
        .step("hold2", WaitForCall(released.clone()), &["first"])
        .step("second", call("second {{ product }}"), &["first"])
        .build()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(600), exec.run(Arc::new(dag), jobs(1)))
        .await
        .expect("the second call waited behind the local steps")
        .unwrap();
    assert_eq!(out.status, Status::Succeeded);
    assert_eq!(p.calls(), 2);
}

#[tokio::test]
async fn one_failing_job_never_stops_the_others() {
    let p = Arc::new(fake("p").script(|req, _| {
        if req.prompt.ends_with("p3") {
            Err(ProviderError::invalid("p", "this product is not allowed"))
        } else {
            Ok(())
        }
    }));
    let exec = Executor::builder()
        .provider(p.clone())
        .retry(fast_retry())
        .build()
        .unwrap();
    let out = exec.run(single(gen(&["p"])), jobs(8)).await.unwrap();
    assert_eq!(out.status, Status::Partial, "seven jobs succeeded, one failed");
    let failed: Vec<_> = out.jobs.iter().filter(|j| j.status == Status::Failed).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].job.var_str("product").as_deref(), Some("p3"));
    assert!(failed[0].error().unwrap().to_string().contains("not allowed"));
    assert_eq!(out.jobs.iter().filter(|j| j.status == Status::Succeeded).count(), 7);
    assert_eq!(p.calls(), 8, "invalid input is not retried");
}

#[tokio::test]
async fn unknown_provider_is_refused_before_running() {
    let exec = Executor::builder().provider(Arc::new(fake("a"))).build().unwrap();
    let err = exec.run(single(gen(&["nope"])), jobs(1)).await.unwrap_err();
    assert!(err.to_string().contains("unknown provider `nope`"), "{err}");
}

#[tokio::test]
async fn a_panicking_step_fails_its_job_only() {
    struct Boom;
    #[async_trait]
    impl Step for Boom {
        fn kind(&self) -> &str {
            "boom"
        }
        async fn run(&self, _: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
            if ctx.job.var_str("product").as_deref() == Some("p1") {
                panic!("kaboom");
            }
            Ok(vec![Artifact::text_plain("ok")])
        }
    }
    let exec = Executor::builder().build().unwrap();
    let out = exec.run(single(Boom), jobs(3)).await.unwrap();
    assert_eq!(out.jobs[1].status, Status::Failed);
    assert!(out.jobs[1].error().unwrap().to_string().contains("kaboom"));
    assert_eq!(out.jobs[0].status, Status::Succeeded);
    assert_eq!(out.jobs[2].status, Status::Succeeded);
}

// ---------------------------------------------------------------- resilience

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_backoff() {
    let p = Arc::new(fake("p").script(|_, n| {
        if n < 3 {
            Err(ProviderError::transient("p", "503").with_status(503))
        } else {
            Ok(())
        }
    }));
    let exec = Executor::builder()
        .provider(p.clone())
        .retry(fast_retry())
        .build()
        .unwrap();
    let out = exec.run(single(gen(&["p"])), jobs(1)).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
    assert_eq!(p.calls(), 3);
    assert_eq!(out.stats.retries, 2);
    let art = &out.jobs[0].outputs("gen")[0];
    assert_eq!(art.provenance().attempt, 3);
    assert_eq!(art.provenance().provider.as_deref(), Some("p"));
}

#[tokio::test(start_paused = true)]
async fn rate_limits_wait_for_retry_after() {
    let p = Arc::new(fake("p").script(|_, n| {
        if n == 1 {
            Err(ProviderError::rate_limited("p", "slow down", Some(Duration::from_secs(5))).with_status(429))
        } else {
            Ok(())
        }
    }));
    let exec = Executor::builder()
        .provider(p.clone())
        .retry(fast_retry())
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let out = exec.run(single(gen(&["p"])), jobs(1)).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(5), "waited only {waited:?}");
    assert!(waited < Duration::from_secs(6), "waited {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn auth_and_invalid_are_not_retried_but_fall_back() {
    let a = Arc::new(fake("a").script(|_, _| Err(ProviderError::new(ErrorKind::Auth, "a", "bad key"))));
    let b = Arc::new(fake("b"));
    let exec = Executor::builder()
        .provider(a.clone())
        .provider(b.clone())
        .retry(fast_retry())
        .build()
        .unwrap();
    let mut run = exec
        .start(single(gen(&["a", "b"])), jobs(1), RunOptions { ..Default::default() })
        .unwrap();
    let events: Vec<_> = run.events().unwrap().collect().await;
    let out = run.wait().await;
    assert_eq!(
        out.status,
        Status::Degraded,
        "the work was done, but not by the provider asked first"
    );
    assert_eq!(out.degraded.len(), 1);
    assert_eq!(
        (out.degraded[0].provider.as_str(), out.degraded[0].class.as_str()),
        ("a", "auth")
    );
    assert_eq!(out.degraded[0].served_by, ["b"]);
    assert_eq!(a.calls(), 1, "auth is never retried");
    assert_eq!(b.calls(), 1);
    assert_eq!(
        out.jobs[0].outputs("gen")[0].provenance().provider.as_deref(),
        Some("b")
    );
    assert!(events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Fallback { from, to, .. } if from == "a" && to == "b")));
}

#[tokio::test(start_paused = true)]
async fn slow_calls_time_out_and_are_retried() {
    // First call hangs for an hour; the timeout cuts it; the retry is fast.
    let hang = FakeProvider::new("hang", &[])
        .delay(|_, n| {
            if n == 1 {
                Duration::from_secs(3600)
            } else {
                Duration::ZERO
            }
        })
        .respond(|_, _| Answer::text("late but fine"));
    let exec = Executor::builder()
        .provider(hang)
        .call_timeout(Some(Duration::from_secs(2)))
        .retry(fast_retry())
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let out = exec.run(single(gen(&["hang"])), jobs(1)).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
    assert_eq!(out.stats.failed_attempts, 1);
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn circuit_breaker_opens_then_half_opens_after_cool_down() {
    let healthy = Arc::new(AtomicU32::new(0));
    let h = healthy.clone();
    let flaky = Arc::new(fake("flaky").script(move |_, _| {
        if h.load(Ordering::SeqCst) == 1 {
            Ok(())
        } else {
            Err(ProviderError::transient("flaky", "down"))
        }
    }));
    let backup = Arc::new(fake("backup"));
    let exec = Executor::builder()
        .provider(flaky.clone())
        .provider(backup.clone())
        .concurrency(1)
        .retry(RetryPolicy::none())
        .breaker(BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_secs(30),
        })
        .build()
        .unwrap();
    let dag = single(gen(&["flaky", "backup"]));
    let out = exec.run(dag.clone(), jobs(10)).await.unwrap();
    assert_eq!(
        out.status,
        Status::Degraded,
        "the backup did the work of a failing primary"
    );
    assert_eq!(
        out.degraded[0].calls, 10,
        "3 calls failed, then 7 found its circuit open"
    );
    assert_eq!(flaky.calls(), 3, "the breaker opened after 3 consecutive failures");
    assert_eq!(backup.calls(), 10);

    // After the cool-down one probe goes through; it succeeds and closes the circuit.
    healthy.store(1, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(31)).await;
    let out = exec.run(dag, jobs(5)).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
    assert_eq!(flaky.calls(), 3 + 5);
    assert_eq!(backup.calls(), 10);
}

#[tokio::test(start_paused = true)]
async fn all_providers_open_means_waiting_not_failing() {
    let healthy = Arc::new(AtomicU32::new(0));
    let h = healthy.clone();
    let only = Arc::new(fake("only").script(move |_, _| {
        if h.load(Ordering::SeqCst) == 1 {
            Ok(())
        } else {
            Err(ProviderError::transient("only", "down"))
        }
    }));
    let exec = Executor::builder()
        .provider(only.clone())
        .concurrency(1)
        .retry(RetryPolicy::none())
        .breaker(BreakerConfig {
            failure_threshold: 1,
            cool_down: Duration::from_secs(10),
        })
        .build()
        .unwrap();
    let mut run = exec
        .start(single(gen(&["only"])), jobs(3), RunOptions { ..Default::default() })
        .unwrap();
    let mut events = run.events().unwrap();
    // The first job fails (one failure opens the circuit). The second waits.
    let waiting = loop {
        let e = events.next().await.unwrap();
        if let EventKind::Waiting { delay_ms, .. } = e.kind {
            break delay_ms;
        }
    };
    assert!(waiting > 0 && waiting <= 10_000);
    healthy.store(1, Ordering::SeqCst);
    let out = run.wait().await;
    assert_eq!(out.jobs[0].status, Status::Failed);
    assert_eq!(out.jobs[1].status, Status::Succeeded);
    assert_eq!(out.jobs[2].status, Status::Succeeded);
}

// ---------------------------------------------------------------- bounded failure

/// The step error of every job of `out`, as displayed.
fn job_errors(out: &creative_core::RunOutcome) -> Vec<String> {
    out.jobs
        .iter()
        .map(|j| {
            j.steps
                .iter()
                .filter_map(|s| s.error.as_ref().map(|e| e.to_string()))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .collect()
}

fn answers_500(id: &'static str) -> Arc<FakeProvider> {
    Arc::new(fake(id).script(move |_, _| Err(ProviderError::transient(id, "internal server error").with_status(500))))
}

async fn run_with_events(
    exec: &Executor,
    dag: Arc<dyn Pipeline>,
    n: usize,
) -> (creative_core::RunOutcome, Vec<EventKind>, Duration) {
    let t0 = tokio::time::Instant::now();
    let mut run = exec.start(dag, jobs(n), RunOptions { ..Default::default() }).unwrap();
    let events = run.events().unwrap();
    let out = run.wait().await;
    let kinds = events.map(|e| e.kind).collect::<Vec<_>>().await;
    (out, kinds, t0.elapsed())
}

#[tokio::test(start_paused = true)]
async fn a_provider_answering_500_to_everything_fails_within_its_down_window_naming_it() {
    // The case with the engine's defaults: 4 jobs at concurrency 2 took
    // 990 s to fail, each breaker wait restarting the attempt count.
    let p = answers_500("openai");
    let exec = Executor::builder().provider(p.clone()).concurrency(2).build().unwrap();
    let (out, events, elapsed) = run_with_events(&exec, single(gen(&["openai"])), 4).await;
    assert_eq!(out.status, Status::Failed);
    assert!(out.jobs.iter().all(|j| j.status == Status::Failed));
    let down = DownConfig::default().after;
    assert!(
        elapsed <= down + Duration::from_secs(31),
        "failed after {elapsed:?}: at most one cool-down past the down window"
    );
    assert!(
        p.calls() <= 4 * 3,
        "{} calls: no job got a fresh set of attempts",
        p.calls()
    );
    let errors = job_errors(&out);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`openai` is down") && e.contains("transient")),
        "{errors:?}"
    );
    assert!(errors.iter().all(|e| e.contains("openai")), "{errors:?}");
    let downs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::ProviderDown {
                provider,
                last_error_kind,
                failures,
                ..
            } => Some((provider.clone(), last_error_kind.clone(), *failures)),
            _ => None,
        })
        .collect();
    assert_eq!(downs.len(), 1, "declared down once: {downs:?}");
    assert_eq!(downs[0].0, "openai");
    assert_eq!(downs[0].1, "transient");
    assert!(downs[0].2 >= DownConfig::default().min_failures);
}

#[tokio::test(start_paused = true)]
async fn attempts_on_a_provider_do_not_restart_after_a_wait_on_its_circuit() {
    let p = answers_500("p");
    let exec = Executor::builder()
        .provider(p.clone())
        .concurrency(1)
        .retry(fast_retry())
        .breaker(BreakerConfig {
            failure_threshold: 2,
            cool_down: Duration::from_secs(10),
        })
        .down_after(DownConfig {
            after: Duration::from_secs(3600),
            min_failures: 100,
        })
        .build()
        .unwrap();
    let (out, events, _) = run_with_events(&exec, single(gen(&["p"])), 1).await;
    assert_eq!(out.jobs[0].status, Status::Failed);
    let waits = events.iter().filter(|e| matches!(e, EventKind::Waiting { .. })).count();
    assert_eq!(waits, 1, "two failures opened the circuit; the step waited once for it");
    assert_eq!(p.calls(), fast_retry().max_attempts, "the wait gave no extra attempts");
}

#[tokio::test(start_paused = true)]
async fn waits_on_open_circuits_stop_at_the_steps_allowance() {
    let p = answers_500("only");
    let exec = Executor::builder()
        .provider(p.clone())
        .concurrency(1)
        .retry(RetryPolicy::none())
        .breaker(BreakerConfig {
            failure_threshold: 1,
            cool_down: Duration::from_secs(100),
        })
        .max_open_wait(Duration::from_secs(30))
        .build()
        .unwrap();
    let (out, events, elapsed) = run_with_events(&exec, single(gen(&["only"])), 2).await;
    assert_eq!(p.calls(), 1, "the open circuit was not waited for");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert!(!events.iter().any(|e| matches!(e, EventKind::Waiting { .. })));
    let errors = job_errors(&out);
    assert!(
        errors[1].contains("`only`") && errors[1].contains("30 s of waiting"),
        "{errors:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_down_provider_is_fallen_back_from_at_once_and_probed_again() {
    let healthy = Arc::new(AtomicU32::new(0));
    let h = healthy.clone();
    let flaky = Arc::new(fake("flaky").script(move |_, _| {
        if h.load(Ordering::SeqCst) == 1 {
            Ok(())
        } else {
            Err(ProviderError::transient("flaky", "down"))
        }
    }));
    let backup = Arc::new(fake("backup").latency(Duration::from_secs(1)));
    let exec = Executor::builder()
        .provider(flaky.clone())
        .provider(backup.clone())
        .concurrency(1)
        .retry(fast_retry())
        .breaker(BreakerConfig {
            failure_threshold: 2,
            cool_down: Duration::from_secs(5),
        })
        .down_after(DownConfig {
            after: Duration::from_secs(10),
            min_failures: 3,
        })
        .build()
        .unwrap();
    let dag = single(gen(&["flaky", "backup"]));
    let (out, events, _) = run_with_events(&exec, dag.clone(), 40).await;
    assert_eq!(out.status, Status::Degraded, "the backup served while flaky was down");
    assert!(events
        .iter()
        .any(|e| matches!(e, EventKind::ProviderDown { provider, .. } if provider == "flaky")));
    // Each job spends at most one attempt on `flaky` (its circuit is open or it is
    // probed once per cool-down); 40 s of jobs and 5 s cool-downs: about 8 probes.
    assert!(
        flaky.calls() <= 2 + 10,
        "{} calls to a provider that was down",
        flaky.calls()
    );

    healthy.store(1, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(6)).await;
    let (out, _, _) = run_with_events(&exec, dag, 5).await;
    assert_eq!(out.status, Status::Succeeded);
    let by: Vec<String> = out
        .jobs
        .iter()
        .map(|j| {
            j.artifacts()
                .next()
                .unwrap()
                .1
                .text()
                .unwrap_or("")
                .split('|')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        by.iter().all(|p| p == "flaky"),
        "a successful probe brought it back: {by:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_with_nothing_reachable_fails_every_job_naming_the_providers() {
    let a = answers_500("a");
    let b = answers_500("b");
    let exec = Executor::builder()
        .provider(a)
        .provider(b)
        .concurrency(2)
        .build()
        .unwrap();
    let (out, _, elapsed) = run_with_events(&exec, single(gen(&["a", "b"])), 6).await;
    assert!(out.jobs.iter().all(|j| j.status == Status::Failed));
    assert!(elapsed <= Duration::from_secs(120), "{elapsed:?}");
    let errors = job_errors(&out);
    for e in &errors {
        assert!(
            e.contains("every provider of the step failed") && e.contains("a:") && e.contains("b:"),
            "{e}"
        );
    }
    assert!(errors.last().unwrap().contains("is down"), "{errors:?}");
}

/// A provider that says it is made of members with their own health, and
/// whose every call fails; `down`: it says every member is down.
fn composite(down: bool) -> Arc<FakeProvider> {
    let r = FakeProvider::new("router", &[Task::Text])
        .composite(true)
        .script(|_, _| Err(ProviderError::transient("router", "member b: 500")));
    if down {
        r.set_unavailable(Some(ProviderError::new(
            ErrorKind::Unavailable,
            "router",
            "every member is down",
        )));
    }
    Arc::new(r)
}

#[tokio::test(start_paused = true)]
async fn the_engine_keeps_no_breaker_of_its_own_on_a_composite_provider() {
    let r = composite(false);
    let exec = Executor::builder()
        .provider(r.clone())
        .concurrency(1)
        .retry(RetryPolicy::none())
        .breaker(BreakerConfig {
            failure_threshold: 1,
            cool_down: Duration::from_secs(30),
        })
        .build()
        .unwrap();
    let (out, events, elapsed) = run_with_events(&exec, single(gen(&["router"])), 20).await;
    assert_eq!(r.calls(), 20, "every job reached the router");
    assert!(!events.iter().any(|e| matches!(e, EventKind::Waiting { .. })));
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert!(out.jobs.iter().all(|j| j.status == Status::Failed));

    let down = composite(true);
    let exec = Executor::builder().provider(down.clone()).build().unwrap();
    let (out, _, _) = run_with_events(&exec, single(gen(&["router"])), 3).await;
    assert_eq!(down.calls(), 0, "a composite that is unavailable is not called");
    assert!(job_errors(&out).iter().all(|e| e.contains("every member is down")));
}

#[tokio::test]
async fn money_budget_stops_new_work_cleanly() {
    let p = Arc::new(fake("p"));
    let exec = Executor::builder().provider(p.clone()).concurrency(1).build().unwrap();
    let budget = Arc::new(Budget::new().max_cost_usd(0.035));
    let out = exec
        .start(
            single(gen(&["p"])),
            jobs(10),
            RunOptions {
                budget: Some(budget.clone()),
                ..Default::default()
            },
        )
        .unwrap()
        .wait()
        .await;
    assert_eq!(out.status, Status::BudgetExhausted);
    assert_eq!(p.calls(), 3, "three calls of $0.01 fit in $0.035");
    assert!(budget.spent_usd() <= 0.035);
    assert_eq!(out.jobs.len(), 10, "every job gets a result");
    let ok = out.jobs.iter().filter(|j| j.status == Status::Succeeded).count();
    assert_eq!(ok, 3);
    assert!(out.jobs[3..].iter().all(|j| j.status == Status::BudgetExhausted));
}

#[tokio::test]
async fn attempt_budget_counts_retries() {
    let p = Arc::new(fake("p").script(|_, _| Err(ProviderError::transient("p", "503"))));
    let exec = Executor::builder()
        .provider(p.clone())
        .concurrency(1)
        .retry(fast_retry())
        .build()
        .unwrap();
    let out = exec
        .start(
            single(gen(&["p"])),
            jobs(5),
            RunOptions {
                budget: Some(Arc::new(Budget::new().max_attempts(4))),
                ..Default::default()
            },
        )
        .unwrap()
        .wait()
        .await;
    assert_eq!(p.calls(), 4);
    assert_eq!(out.status, Status::BudgetExhausted);
}

#[tokio::test(start_paused = true)]
async fn deadline_budget_stops_starting_jobs() {
    let p = Arc::new(fake("p").latency(Duration::from_secs(1)));
    let exec = Executor::builder().provider(p.clone()).concurrency(1).build().unwrap();
    let out = exec
        .start(
            single(gen(&["p"])),
            jobs(10),
            RunOptions {
                budget: Some(Arc::new(Budget::new().deadline_in(Duration::from_millis(2500)))),
                ..Default::default()
            },
        )
        .unwrap()
        .wait()
        .await;
    assert_eq!(out.status, Status::BudgetExhausted);
    let ok = out.jobs.iter().filter(|j| j.status == Status::Succeeded).count();
    assert!((2..=3).contains(&ok), "{ok} jobs finished before the deadline");
    assert_eq!(out.jobs.len(), 10);
}

// ---------------------------------------------------------------- gates

/// Passes text containing the marker, fails the rest.
struct Contains(&'static str);

#[async_trait]
impl QualityGate for Contains {
    fn name(&self) -> &str {
        "contains"
    }
    fn accepts(&self) -> Option<&[MediaKind]> {
        Some(&[MediaKind::Text])
    }
    async fn check(&self, a: &Artifact, _: &GateCtx) -> Result<Verdict, GateError> {
        let t = a.text().ok_or_else(|| GateError::new("contains", "not text"))?;
        Ok(if t.contains(self.0) {
            Verdict::pass(1.0)
        } else {
            Verdict::fail(0.0, format!("missing `{}`", self.0))
        })
    }
}

/// A gate that fails the first `k` artifacts it sees and passes the rest.
struct FailFirst {
    k: u32,
    seen: AtomicU32,
    seeds: Mutex<Vec<String>>,
}

#[async_trait]
impl QualityGate for FailFirst {
    fn name(&self) -> &str {
        "fail_first"
    }
    async fn check(&self, a: &Artifact, _: &GateCtx) -> Result<Verdict, GateError> {
        self.seeds
            .lock()
            .unwrap()
            .push(a.text().unwrap_or_default().to_string());
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        Ok(if n < self.k {
            Verdict::fail(0.2, "too dull")
        } else {
            Verdict::pass(0.9)
        })
    }
}

fn fail_first(k: u32) -> Arc<FailFirst> {
    Arc::new(FailFirst {
        k,
        seen: AtomicU32::new(0),
        seeds: Mutex::new(Vec::new()),
    })
}

#[tokio::test]
async fn gate_failure_regenerates_with_new_derived_seeds() {
    let p = Arc::new(fake("p"));
    let gate = fail_first(2);
    let exec = Executor::builder().provider(p.clone()).build().unwrap();
    let step = gen(&["p"])
        .gate(gate.clone())
        .on_gate_fail(OnGateFail::Regenerate { max: 3 });
    let out = exec.run(single(step), jobs(1)).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
    assert_eq!(p.calls(), 3);
    let seeds: Vec<String> = gate
        .seeds
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.rsplit('|').next().unwrap().to_string())
        .collect();
    assert_eq!(seeds.len(), 3);
    assert_ne!(seeds[0], seeds[1]);
    assert_ne!(seeds[1], seeds[2]);
    let a = &out.jobs[0].outputs("gen")[0];
    assert_eq!(a.provenance().regeneration, 2);
    assert_eq!(a.provenance().gates.len(), 1);
    assert!(a.provenance().gates[0].verdict.passed);
    assert_eq!(out.stats.regenerations, 2);
    assert_eq!(out.stats.gate_failures, 2);

    // The same job regenerates through the same seeds: runs are reproducible.
    let gate2 = fail_first(2);
    let step = gen(&["p"])
        .gate(gate2.clone())
        .on_gate_fail(OnGateFail::Regenerate { max: 3 });
    exec.run(single(step), jobs(1)).await.unwrap();
    assert_eq!(*gate.seeds.lock().unwrap(), *gate2.seeds.lock().unwrap());
}

#[tokio::test]
async fn refused_candidates_are_kept_by_reference_in_the_accepted_artifact_s_provenance() {
    let p = Arc::new(fake("p"));
    let exec = Executor::builder().provider(p.clone()).build().unwrap();
    let step = gen(&["p"])
        .gate(fail_first(2))
        .on_gate_fail(OnGateFail::Regenerate { max: 3 });
    let out = exec.run(single(step), jobs(1)).await.unwrap();
    let a = &out.jobs[0].outputs("gen")[0];
    let refused = &a.provenance().rejected;
    assert_eq!(refused.len(), 2);
    assert_eq!(refused.iter().map(|r| r.round).collect::<Vec<_>>(), vec![0, 1]);
    for r in refused {
        assert_ne!(&r.artifact, a.id());
        assert_eq!(r.gates[0].gate, "fail_first");
        assert!(!r.gates[0].verdict.passed);
        assert_eq!(r.gates[0].verdict.reasons, vec!["too dull".to_string()]);
        assert_eq!(r.provider.as_deref(), Some("p"));
        assert_eq!(r.v, creative_core::provenance::REJECTED_RECORD_VERSION);
    }
    assert_ne!(refused[0].artifact, refused[1].artifact);
}

#[tokio::test]
async fn a_long_regeneration_loop_keeps_only_the_latest_refused_candidates() {
    let p = Arc::new(fake("p"));
    let exec = Executor::builder().provider(p.clone()).build().unwrap();
    let step = gen(&["p"])
        .gate(fail_first(40))
        .on_gate_fail(OnGateFail::Regenerate { max: 40 });
    let out = exec.run(single(step), jobs(1)).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
    let refused = &out.jobs[0].outputs("gen")[0].provenance().rejected;
    let cap = creative_core::provenance::MAX_REJECTED_KEPT;
    assert_eq!(refused.len(), cap);
    assert_eq!(refused[0].round, 40 - cap as u32, "the oldest are dropped");
    assert_eq!(refused[cap - 1].round, 39);
}

#[tokio::test]
async fn gate_verdicts_are_reported_back_to_the_provider() {
    let p = Arc::new(fake("p"));
    let exec = Executor::builder().provider(p.clone()).build().unwrap();
    let step = gen(&["p"])
        .gate(fail_first(2))
        .on_gate_fail(OnGateFail::Regenerate { max: 3 });
    exec.run(single(step), jobs(1)).await.unwrap();
    assert_eq!(p.verdicts(), vec![false, false, true]);
}

#[tokio::test]
async fn regeneration_gives_up_after_max_rounds() {
    let p = Arc::new(fake("p"));
    let exec = Executor::builder().provider(p.clone()).build().unwrap();
    let step = gen(&["p"])
        .gate(Arc::new(Contains("never")))
        .on_gate_fail(OnGateFail::Regenerate { max: 2 });
    let out = exec.run(single(step), jobs(1)).await.unwrap();
    assert_eq!(out.status, Status::Failed);
    assert_eq!(p.calls(), 3);
    let e = out.jobs[0].error().unwrap();
    assert_eq!(e.kind(), StepErrorKind::GateFailed, "unexpected {e}");
    assert_eq!(e.gate(), Some("contains"));
    assert!(e.message().contains("missing `never`"));
}

#[tokio::test]
async fn gate_failure_can_fall_back_flag_or_fail() {
    let a = Arc::new(fake("a"));
    let b = Arc::new(fake("b"));
    let exec = Executor::builder()
        .provider(a.clone())
        .provider(b.clone())
        .build()
        .unwrap();

    // Fallback: a's output lacks "b|", b's has it.
    let step = gen(&["a", "b"])
        .gate(Arc::new(Contains("b|")))
        .on_gate_fail(OnGateFail::Fallback);
    let out = exec.run(single(step), jobs(1)).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
    assert_eq!(
        out.jobs[0].outputs("gen")[0].provenance().provider.as_deref(),
        Some("b")
    );

    // Flag: kept, flagged, verdict recorded.
    let step = gen(&["a"])
        .gate(Arc::new(Contains("zzz")))
        .on_gate_fail(OnGateFail::Flag);
    let out = exec.run(single(step), jobs(1)).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
    let art = &out.jobs[0].outputs("gen")[0];
    assert!(art.provenance().flagged);
    assert!(!art.provenance().gates[0].verdict.passed);
    assert_eq!(out.stats.flagged, 1);

    // Fail.
    let step = gen(&["a"])
        .gate(Arc::new(Contains("zzz")))
        .on_gate_fail(OnGateFail::Fail);
    let out = exec.run(single(step), jobs(1)).await.unwrap();
    assert_eq!(out.status, Status::Failed);
    assert!(out.jobs[0].error().map(StepError::kind) == Some(StepErrorKind::GateFailed));
}

#[tokio::test]
async fn a_gate_that_cannot_judge_fails_the_artifact() {
    let exec = Executor::builder().provider(Arc::new(fake("p"))).build().unwrap();
    struct Broken;
    #[async_trait]
    impl QualityGate for Broken {
        fn name(&self) -> &str {
            "judge"
        }
        async fn check(&self, _: &Artifact, _: &GateCtx) -> Result<Verdict, GateError> {
            Err(GateError::new("judge", "malformed verdict"))
        }
    }
    let step = gen(&["p"]).gate(Arc::new(Broken)).on_gate_fail(OnGateFail::Fail);
    let out = exec.run(single(step), jobs(1)).await.unwrap();
    assert_eq!(out.status, Status::Failed);
    assert!(out.jobs[0].error().unwrap().to_string().contains("malformed verdict"));
}

// ---------------------------------------------------------------- cancellation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_returns_within_100ms_and_keeps_finished_work() {
    // Jobs p0 and p1 are fast; the rest sleep 10 s inside the provider.
    let sleepy = FakeProvider::new("sleepy", &[])
        .delay(|r, _| {
            if r.prompt.ends_with("p0") || r.prompt.ends_with("p1") {
                Duration::ZERO
            } else {
                Duration::from_secs(10)
            }
        })
        .respond(|r, _| Answer::text(r.prompt.clone()));
    let exec = Executor::builder().provider(sleepy).concurrency(8).build().unwrap();
    let dag = Dag::builder("c")
        .step("gen", gen(&["sleepy"]), &[])
        .step("after", gen(&["sleepy"]), &["gen"])
        .build()
        .unwrap();
    let run = exec.start(Arc::new(dag), jobs(6), RunOptions::default()).unwrap();
    // Only p0 and p1 can finish: the others wait ten seconds in the provider.
    wait_for("jobs p0 and p1 to finish", Duration::from_secs(10), || {
        run.progress().jobs_done >= 2
    })
    .await
    .unwrap();
    let t = std::time::Instant::now();
    run.cancel();
    let out = run.wait().await;
    let took = t.elapsed();
    assert!(took < Duration::from_millis(100), "cancel took {took:?}");
    assert_eq!(out.status, Status::Cancelled);
    for j in &out.jobs[..2] {
        assert_eq!(j.status, Status::Succeeded, "{:?}", j.job);
        assert_eq!(j.outputs("after").len(), 1, "finished artifacts are kept");
    }
    for j in &out.jobs[2..] {
        assert_eq!(j.status, Status::Cancelled);
        assert_eq!(j.steps[0].state, StepState::Cancelled);
    }
}

// ---------------------------------------------------------------- events

#[tokio::test]
async fn events_stream_tells_the_whole_story_in_order() {
    let p = Arc::new(fake("p"));
    let exec = Executor::builder().provider(p).build().unwrap();
    let dag = Dag::builder("ev")
        .step("gen", gen(&["p"]).gate(Arc::new(Contains("p|"))), &[])
        .step("copy", gen(&["p"]), &["gen"])
        .build()
        .unwrap();
    let mut run = exec
        .start(
            Arc::new(dag),
            jobs(3),
            RunOptions {
                jobs_hint: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
    let events: Vec<_> = run.events().unwrap().collect().await;
    let out = run.wait().await;
    assert_eq!(out.status, Status::Succeeded);
    assert!(matches!(
        events.first().unwrap().kind,
        EventKind::RunStarted {
            steps: 2,
            jobs_hint: Some(3),
            ..
        }
    ));
    match &events.last().unwrap().kind {
        EventKind::RunFinished { status, progress, .. } => {
            assert_eq!(*status, Status::Succeeded);
            assert_eq!(progress.jobs_done, 3);
            assert_eq!(progress.steps_done, 6);
        }
        e => panic!("last event {e:?}"),
    }
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (0..events.len() as u64).collect::<Vec<_>>(),
        "numbered in delivery order"
    );
    // Per job: started < step started < attempt < verdict < step finished < job finished.
    for j in &out.jobs {
        let key = j.job.key();
        let pos = |f: &dyn Fn(&EventKind) -> bool| events.iter().position(|e| f(&e.kind)).unwrap();
        let started = pos(&|k| matches!(k, EventKind::JobStarted { job, .. } if job == key));
        let step = pos(&|k| matches!(k, EventKind::StepStarted { job, step } if job == key && step == "gen"));
        let attempt = pos(&|k| matches!(k, EventKind::Attempt { job, step, .. } if job == key && step == "gen"));
        let verdict = pos(&|k| matches!(k, EventKind::GateVerdict { job, passed: true, .. } if job == key));
        let fin =
            pos(&|k| matches!(k, EventKind::StepFinished { job, step, ok: true, .. } if job == key && step == "gen"));
        let copy = pos(&|k| matches!(k, EventKind::StepStarted { job, step } if job == key && step == "copy"));
        let done = pos(&|k| matches!(k, EventKind::JobFinished { job, .. } if job == key));
        assert!(started < step && step < attempt && attempt < verdict && verdict < fin && fin < copy && copy < done);
    }
    let json = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(json["type"], "run_started");
}

#[tokio::test]
async fn progress_counts_against_the_announced_total_until_the_source_runs_dry() {
    let p = Arc::new(fake("p"));
    let exec = Executor::builder().provider(p).concurrency(1).build().unwrap();
    let dag = Dag::builder("progress").step("gen", gen(&["p"]), &[]).build().unwrap();
    // A lazy source of 5 jobs that announces 7: progress says "of 7" while jobs are
    // still being pulled, and the exact 5 once the source is exhausted.
    let mut run = exec
        .start(
            Arc::new(dag),
            jobs(5),
            RunOptions {
                jobs_hint: Some(7),
                ..Default::default()
            },
        )
        .unwrap();
    let events: Vec<_> = run.events().unwrap().collect().await;
    let out = run.wait().await;
    let finished: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::JobFinished { progress, .. } => Some((progress.jobs_done, progress.jobs_total)),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), 5);
    assert_eq!(finished[0], (1, 7), "the first job counts against the announced total");
    assert_eq!(*finished.last().unwrap(), (5, 5), "{finished:?}");
    assert_eq!(out.progress.jobs_total, 5);
}

// ---------------------------------------------------------------- DAG

#[tokio::test]
async fn builder_reports_media_mismatch_and_missing_inputs() {
    struct WantsImage;
    #[async_trait]
    impl Step for WantsImage {
        fn kind(&self) -> &str {
            "resize"
        }
        fn accepts(&self) -> Option<&[MediaKind]> {
            Some(&[MediaKind::Image])
        }
        fn min_inputs(&self) -> usize {
            1
        }
        async fn run(&self, _: &StepInputs, _: &StepCtx) -> Result<Vec<Artifact>, StepError> {
            Ok(vec![])
        }
    }
    let e = Dag::builder("m")
        .step("text", gen(&["p"]), &[])
        .step("small", WantsImage, &["text"])
        .build()
        .unwrap_err();
    assert_eq!(
        e,
        PipelineError::MediaMismatch {
            step: "small".into(),
            input: "text".into(),
            accepts: "image".into(),
            produces: "text".into()
        }
    );
    let e = Dag::builder("m").step("small", WantsImage, &[]).build().unwrap_err();
    assert_eq!(e.to_string(), "step `small` needs 1 input(s) but has 0");
}

/// (job key, step, the steps of that job finished when it started)
type StartLog = Arc<Mutex<Vec<(String, String, Vec<String>)>>>;

/// Records, for each node, when it started and which nodes had finished by then.
struct Probe {
    log: StartLog,
    done: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

#[async_trait]
impl Step for Probe {
    fn kind(&self) -> &str {
        "probe"
    }
    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let key = ctx.job.key().to_string();
        let finished = self.done.lock().unwrap().get(&key).cloned().unwrap_or_default();
        self.log
            .lock()
            .unwrap()
            .push((key.clone(), ctx.step.to_string(), finished));
        // Yield so that siblings interleave.
        tokio::task::yield_now().await;
        let n = inputs.len();
        self.done
            .lock()
            .unwrap()
            .entry(key)
            .or_default()
            .push(ctx.step.to_string());
        Ok(vec![Artifact::text_plain(format!("{}:{n}", ctx.step))])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_dags_run_every_node_once_after_all_its_inputs() {
    let mut rng = fastrand::Rng::with_seed(20261124);
    for case in 0..60 {
        let n = rng.usize(1..24);
        let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, e) in edges.iter_mut().enumerate() {
            for j in 0..i {
                if rng.f32() < 0.25 {
                    e.push(j);
                }
            }
        }
        // Shuffle declaration order so the builder cannot rely on it.
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let log = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(Mutex::new(HashMap::new()));
        let mut b = Dag::builder(format!("case{case}"));
        for &i in &order {
            let ins: Vec<&str> = edges[i].iter().map(|&j| names[j].as_str()).collect();
            b = b.step(
                names[i].clone(),
                Probe {
                    log: log.clone(),
                    done: done.clone(),
                },
                &ins,
            );
        }
        let dag = b.build().unwrap();
        let exec = Executor::builder().concurrency(1 + rng.usize(0..6)).build().unwrap();
        let out = exec.run(Arc::new(dag), jobs(3)).await.unwrap();
        assert_eq!(out.status, Status::Succeeded, "case {case}");
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 3 * n, "case {case}: every node once per job");
        for j in &out.jobs {
            let key = j.job.key();
            let mut seen = std::collections::HashSet::new();
            for (k, step, finished) in log.iter().filter(|(k, _, _)| k == key) {
                assert!(seen.insert(step.clone()), "case {case}: {step} ran twice in {k}");
                let i: usize = step[1..].parse().unwrap();
                for &inp in &edges[i] {
                    assert!(
                        finished.contains(&names[inp]),
                        "case {case}: {step} started before its input {}",
                        names[inp]
                    );
                }
            }
            for (i, name) in names.iter().enumerate() {
                let out = &j.outputs(name)[0];
                assert_eq!(
                    out.text().unwrap(),
                    format!("{name}:{}", edges[i].len()),
                    "fan-in delivers every input"
                );
            }
        }
    }
}

// ---------------------------------------------------------------- cache

#[derive(Default)]
struct MemCache(Mutex<HashMap<String, Generation>>);

#[async_trait]
impl creative_core::GenerationCache for MemCache {
    async fn get(&self, key: &str) -> Result<Option<Generation>, creative_core::StoreError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    async fn put(&self, key: &str, g: &Generation) -> Result<(), creative_core::StoreError> {
        self.0.lock().unwrap().insert(key.to_string(), g.clone());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_generations_are_paid_for_once() {
    let p = Arc::new(fake("p").latency(Duration::from_millis(50)));
    let exec = Executor::builder().provider(p.clone()).concurrency(8).build().unwrap();
    // Six jobs that differ only in a variable the prompt does not use, with a
    // fixed seed: the same request six times at once.
    let jobs: Vec<Job> = (0..6)
        .map(|i| {
            Job::new([
                ("product", serde_json::json!("mug")),
                ("seed", 7.into()),
                ("n", i.into()),
            ])
        })
        .collect();
    let run_with = |cache: Arc<MemCache>, force: bool| {
        exec.start(
            single(gen(&["p"])),
            jobs.clone(),
            RunOptions {
                cache: Some(cache),
                force,
                ..Default::default()
            },
        )
        .unwrap()
        .wait()
    };
    let cache = Arc::new(MemCache::default());
    let out = run_with(cache.clone(), false).await;
    assert_eq!(out.status, Status::Succeeded);
    assert_eq!(p.calls(), 1, "one call served all six jobs");
    assert_eq!(out.stats.cache_hits, 5);
    assert!((out.stats.saved_usd - 0.05).abs() < 1e-9);
    let ids: std::collections::HashSet<_> = out.jobs.iter().map(|j| j.outputs("gen")[0].id().clone()).collect();
    assert_eq!(ids.len(), 1);
    // `force` bypasses both the cache and the de-duplication.
    let out = run_with(cache, true).await;
    assert_eq!(out.stats.cache_hits, 0);
    assert_eq!(p.calls(), 7);
}

// ---------------------------------------------------------------- seeds

fn seed_of(out: &creative_core::RunOutcome, job: usize) -> Option<u64> {
    out.jobs[job].outputs("gen")[0].provenance().seed
}

#[tokio::test]
async fn seed_policies_fix_derive_or_draw_the_seed_and_record_it() {
    let exec = Executor::builder().provider(fake("p")).build().unwrap();
    let run = |step: GenerateStep| {
        let exec = exec.clone();
        async move { exec.run(single(step), jobs(2)).await.unwrap() }
    };
    let fixed = run(gen(&["p"]).seed_policy(SeedPolicy::Fixed(42))).await;
    assert_eq!((seed_of(&fixed, 0), seed_of(&fixed, 1)), (Some(42), Some(42)));

    let derived = run(gen(&["p"])).await;
    let again = run(gen(&["p"]).seed_policy(SeedPolicy::Derived)).await;
    assert!(seed_of(&derived, 0).is_some());
    assert_eq!(
        seed_of(&derived, 0),
        seed_of(&again, 0),
        "derived seeds are reproducible"
    );
    assert_ne!(seed_of(&derived, 0), seed_of(&derived, 1), "and differ per job");

    let mut drawn = Vec::new();
    for _ in 0..4 {
        let out = run(gen(&["p"]).seed_policy(SeedPolicy::Random)).await;
        drawn.push(seed_of(&out, 0).expect("a random seed is recorded"));
    }
    drawn.dedup();
    assert!(drawn.len() > 1, "four random draws were all {drawn:?}");
}

// ------------------------------------------------------------ prompt chaining

#[tokio::test]
async fn a_step_reads_an_ancestor_that_is_not_its_input_by_name() {
    let p = Arc::new(fake("p"));
    let exec = Executor::builder().provider(p.clone()).build().unwrap();
    let text = |prompt: &str| GenerateStep::new(Task::Text, ["p"], prompt).unwrap();
    let dag = Dag::builder("chain")
        .step("copy", text("copy for {{ product }}"), &[])
        .step("middle", text("middle"), &["copy"])
        .step("last", text("last reads {{ steps.copy.text }}"), &["middle"])
        .build()
        .unwrap();
    let out = exec.run(Arc::new(dag), jobs(2)).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
    for j in &out.jobs {
        let copy = j.outputs("copy")[0].text().unwrap().to_string();
        let last = &j.outputs("last")[0];
        assert_eq!(
            last.provenance().params["prompt"],
            format!("last reads {copy}"),
            "the grandparent's text, per job"
        );
        // The ancestor fed the prompt only: the last step's parents are its input's.
        assert_eq!(last.provenance().parents, vec![j.outputs("middle")[0].id().clone()]);
    }
}

#[test]
fn a_step_reading_a_step_that_is_not_upstream_is_refused_when_the_dag_is_built() {
    let text = |prompt: &str| GenerateStep::new(Task::Text, ["p"], prompt).unwrap();
    let e = Dag::builder("chain")
        .step("copy", text("copy"), &[])
        .step("side", text("side"), &["copy"])
        .step("hero", text("{{ steps.side.text }}"), &["copy"])
        .build()
        .unwrap_err();
    assert_eq!(
        e,
        PipelineError::NotUpstream {
            step: "hero".into(),
            reads: "side".into()
        }
    );
    assert!(e
        .to_string()
        .contains("make `side` an input of `hero` or of one of its ancestors"));
}
