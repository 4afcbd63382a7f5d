//! The `comfyui` backend driving a pool of servers (`base_urls`): loopback
//! servers speaking ComfyUI's HTTP API (and its websocket), one of them killed
//! while it holds a prompt.
#![cfg(feature = "comfyui")]

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use creative_core::{CallCtx, ConfigError, ErrorKind, Provider, Request, Task};
use serde_json::{json, Value};
use support::{build, comfyui_workflow as workflow, MockServer, Recorded, Reply};

const PID: &str = "p-1";

fn pool(servers: &[&MockServer]) -> Arc<dyn Provider> {
    let urls: Vec<String> = servers.iter().map(|m| m.url()).collect();
    build(
        "comfyui",
        json!({"base_urls": urls, "workflow": workflow(), "poll_interval_ms": 5, "poll_max_ms": 20}),
    )
    .unwrap()
}

fn history(pid: &str) -> Value {
    json!({ pid: {
        "prompt": [0, pid, workflow(), {"client_id": "c"}, ["9"]],
        "outputs": {"9": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}},
        "status": {"status_str": "success", "completed": true, "messages": [
            ["execution_start", {"prompt_id": pid, "timestamp": 1000}],
            ["execution_success", {"prompt_id": pid, "timestamp": 3000}]
        ]}
    }})
}

/// A server that takes prompts and keeps them running until `finish`.
fn busy(mock: &MockServer) {
    mock.route(
        "POST",
        "/prompt",
        Reply::json(200, json!({"prompt_id": PID, "number": 1, "node_errors": {}})),
    );
    mock.route("GET", &format!("/history/{PID}"), Reply::json(200, json!({})));
    mock.route(
        "GET",
        "/queue",
        Reply::json(
            200,
            json!({"queue_running": [[1, PID, {}, {}, ["9"]]], "queue_pending": []}),
        ),
    );
    mock.route("GET", "/system_stats", Reply::json(200, json!({"system": {}})));
}

/// Let a busy server's prompt finish.
fn finish(mock: &MockServer) {
    mock.reset();
    mock.route(
        "POST",
        "/prompt",
        Reply::json(200, json!({"prompt_id": PID, "number": 1, "node_errors": {}})),
    );
    mock.route("GET", &format!("/history/{PID}"), Reply::json(200, history(PID)));
    mock.route(
        "GET",
        "/view",
        Reply::bytes(200, "image/png", b"\x89PNG\r\n\x1a\nimg".to_vec()),
    );
    mock.route("POST", "/history", Reply::bytes(200, "text/plain", ""));
    mock.route("GET", "/system_stats", Reply::json(200, json!({"system": {}})));
}

/// Wait (up to 5 s) until `mock` has seen `n` requests to `method path`.
async fn seen_n(mock: &MockServer, method: &str, path: &str, n: usize) -> Vec<Recorded> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let hits: Vec<Recorded> = mock
                .requests()
                .into_iter()
                .filter(|q| q.method == method && q.path() == path)
                .collect();
            if hits.len() >= n {
                return hits;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("fewer than {n} {method} {path}"))
}

fn req() -> Request {
    Request::new(Task::Image, "a red fox in snow")
}

#[tokio::test]
async fn each_prompt_goes_to_the_server_with_the_shortest_queue() {
    let servers = [
        MockServer::start().await,
        MockServer::start().await,
        MockServer::start().await,
    ];
    for m in &servers {
        busy(m);
    }
    let p = pool(&[&servers[0], &servers[1], &servers[2]]);
    // Three calls at once: each finds the others' prompts in flight.
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.generate(&req(), &CallCtx::detached()).await })
        })
        .collect();
    for m in &servers {
        assert_eq!(seen_n(m, "POST", "/prompt", 1).await.len(), 1);
    }
    for m in &servers {
        finish(m);
    }
    let mut names = Vec::new();
    for c in calls {
        let g = c.await.unwrap().unwrap();
        names.push(
            g.artifacts[0].meta().extra["comfyui_server"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    names.sort();
    let mut want: Vec<String> = servers.iter().map(|m| m.url()).collect();
    want.sort();
    assert_eq!(names, want, "one prompt per server");
}

#[tokio::test]
async fn a_server_killed_mid_prompt_has_its_prompt_queued_on_another() {
    let dying = MockServer::start().await;
    let healthy = MockServer::start().await;
    busy(&dying);
    busy(&healthy);
    finish(&healthy);
    let p = pool(&[&dying, &healthy]);
    let call = {
        let p = p.clone();
        tokio::spawn(async move { p.generate(&req(), &CallCtx::detached()).await })
    };
    // Both idle: the first server takes the prompt; then it dies.
    seen_n(&dying, "POST", "/prompt", 1).await;
    dying.kill();
    let g = call.await.unwrap().unwrap();
    assert_eq!(g.artifacts.len(), 1);
    assert_eq!(g.artifacts[0].meta().extra["comfyui_server"], healthy.url());
    assert_eq!(healthy.requests().iter().filter(|r| r.path() == "/prompt").count(), 1);

    // The next call does not try the dead server while it is marked down.
    let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts[0].meta().extra["comfyui_server"], healthy.url());
    assert_eq!(healthy.requests().iter().filter(|r| r.path() == "/prompt").count(), 2);
}

#[tokio::test]
async fn when_every_server_dies_the_call_fails_naming_the_pool() {
    let a = MockServer::start().await;
    let b = MockServer::start().await;
    busy(&a);
    busy(&b);
    let p = pool(&[&a, &b]);
    let call = {
        let p = p.clone();
        tokio::spawn(async move { p.generate(&req(), &CallCtx::detached()).await })
    };
    seen_n(&a, "POST", "/prompt", 1).await;
    a.kill();
    seen_n(&b, "POST", "/prompt", 1).await;
    b.kill();
    let e = call.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(
        e.message()
            .starts_with("every ComfyUI server of the pool stopped answering; the last, "),
        "{e}"
    );
}

#[tokio::test]
async fn a_pool_passes_preflight_when_one_server_answers() {
    let up = MockServer::start().await;
    up.route("GET", "/system_stats", Reply::json(200, json!({"system": {}})));
    let down = MockServer::start().await;
    down.kill();
    let p = pool(&[&down, &up]);
    p.preflight(&CallCtx::detached()).await.unwrap();
    let dead = pool(&[&down]);
    assert!(dead.preflight(&CallCtx::detached()).await.is_err());
}

/// The build error for `settings`.
fn refused(settings: Value) -> ConfigError {
    match build("comfyui", settings) {
        Ok(_) => panic!("built"),
        Err(e) => e,
    }
}

#[test]
fn pool_settings_are_checked() {
    let e =
        refused(json!({"base_url": "http://127.0.0.1:1", "base_urls": ["http://127.0.0.1:2"], "workflow": workflow()}));
    assert!(e.reason().contains("not both"), "{e}");
    let e = refused(json!({"base_urls": [], "workflow": workflow()}));
    assert_eq!(
        (e.field(), e.reason().starts_with("is empty")),
        ("base_urls", true),
        "{e}"
    );
    let e = refused(json!({"base_urls": ["ftp://x"], "workflow": workflow()}));
    assert_eq!(e.field(), "base_urls[0]", "{e}");
    let e = refused(json!({"base_urls": ["http://127.0.0.1:2"], "server_down_s": 0, "workflow": workflow()}));
    assert_eq!(e.field(), "server_down_s", "{e}");
    assert!(e.reason().contains("must be between 1 and 3600"), "{e}");
}

#[test]
fn the_pools_fingerprint_does_not_change_with_its_servers() {
    let a = build(
        "comfyui",
        json!({"base_urls": ["http://10.0.0.1:8188"], "workflow": workflow()}),
    )
    .unwrap();
    let b = build(
        "comfyui",
        json!({"base_urls": ["http://10.0.0.2:8188", "http://10.0.0.3:8188"], "workflow": workflow()}),
    )
    .unwrap();
    assert_eq!(a.fingerprint(), b.fingerprint());
}

/// Serve the `nth` prompt (1-based) a websocket-enabled `mock` receives: report
/// `queue` as the server's queue length on the call's socket, then finish it.
async fn serve_on_socket(mock: &MockServer, nth: usize, queue: u64) {
    let posts = seen_n(mock, "POST", "/prompt", nth).await;
    let client = posts[nth - 1].json()["client_id"].as_str().unwrap().to_string();
    let status =
        json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": queue}}, "sid": client}});
    assert!(mock.ws_send(&client, &status));
    assert!(mock.ws_send(
        &client,
        &json!({"type": "executing", "data": {"node": null, "prompt_id": PID}})
    ));
}

#[tokio::test]
async fn a_queue_the_server_reports_on_its_websocket_steers_the_next_prompt_away() {
    let servers = [MockServer::start().await, MockServer::start().await];
    for m in &servers {
        finish(m);
        m.enable_websocket();
    }
    let p = pool(&[&servers[0], &servers[1]]);
    let run = |p: Arc<dyn Provider>| tokio::spawn(async move { p.generate(&req(), &CallCtx::detached()).await });
    let name = |g: creative_core::Generation| {
        g.artifacts[0].meta().extra["comfyui_server"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The first call: both idle, the first server. Other clients have queued 5
    // prompts there meanwhile, its socket says.
    let c = run(p.clone());
    serve_on_socket(&servers[0], 1, 5).await;
    assert_eq!(name(c.await.unwrap().unwrap()), servers[0].url());
    // The second: the other server (fewer calls, and a shorter queue).
    let c = run(p.clone());
    serve_on_socket(&servers[1], 1, 0).await;
    assert_eq!(name(c.await.unwrap().unwrap()), servers[1].url());
    // The third: as many calls on each; the first server's reported queue
    // sends it to the second again.
    let c = run(p.clone());
    serve_on_socket(&servers[1], 2, 0).await;
    assert_eq!(name(c.await.unwrap().unwrap()), servers[1].url());
}

#[tokio::test]
async fn without_a_websocket_the_queue_polled_from_get_queue_steers_the_next_prompt_away() {
    let servers = [MockServer::start().await, MockServer::start().await];
    for m in &servers {
        finish(m);
    }
    // The first server: our prompt pending behind four of other clients' once,
    // then done.
    let others: Vec<Value> = (0..4)
        .map(|i| json!([i, format!("other-{i}"), {}, {}, ["9"]]))
        .collect();
    let mut pending = others.clone();
    pending.push(json!([9, PID, {}, {}, ["9"]]));
    servers[0].route_once("GET", &format!("/history/{PID}"), Reply::json(200, json!({})));
    servers[0].route(
        "GET",
        "/queue",
        Reply::json(
            200,
            json!({"queue_running": [others[0]], "queue_pending": pending[1..]}),
        ),
    );
    let p = pool(&[&servers[0], &servers[1]]);
    let name = |g: creative_core::Generation| {
        g.artifacts[0].meta().extra["comfyui_server"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert_eq!(name(g), servers[0].url());
    let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert_eq!(name(g), servers[1].url(), "fewer calls and a shorter queue");
    // As many calls on each: the five the first server's /queue showed send the
    // third to the second server again.
    let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert_eq!(name(g), servers[1].url());
}

// ---------------------------------------------------------------------------------
// Against loopback ComfyUI servers (creative-testkit): a queue that runs one
// prompt at a time, the websocket's status and completion messages.
// ---------------------------------------------------------------------------------

use creative_core::{CallObserver, MemberCall};
use creative_providers::comfyui::ComfyUi;
use creative_testkit::comfyui::{ComfyConfig, FakeComfyUi};
use std::sync::Mutex;

/// Collects a composite's member calls, as the engine's observer turns them
/// into `MemberAttemptFinished` events (the report's per-member rows).
#[derive(Default)]
struct Members(Mutex<Vec<MemberCall>>);

impl CallObserver for Members {
    fn member_call(&self, call: MemberCall) {
        self.0.lock().unwrap().push(call);
    }
}

async fn fakes(n: usize, per_prompt_ms: u64) -> Vec<FakeComfyUi> {
    let mut out = Vec::new();
    for _ in 0..n {
        let config = ComfyConfig {
            per_prompt: Duration::from_millis(per_prompt_ms),
            ..ComfyConfig::default()
        };
        out.push(FakeComfyUi::start(config).await.unwrap());
    }
    out
}

fn pool_of(servers: &[FakeComfyUi], extra: Value) -> Arc<ComfyUi> {
    let urls: Vec<String> = servers.iter().map(FakeComfyUi::url).collect();
    let settings = support::with(
        json!({"base_urls": urls, "workflow": workflow(), "poll_interval_ms": 5, "poll_max_ms": 20}),
        extra,
    );
    Arc::new(ComfyUi::from_settings("farm", &settings, &Default::default()).unwrap())
}

/// Wait (up to 10 s) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

fn server_of(a: &creative_core::Artifact) -> String {
    a.meta().extra["comfyui_server"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_three_finishes_every_job_when_one_server_is_killed_mid_run() {
    let servers = fakes(3, 30).await;
    let p = pool_of(&servers, json!({}));
    let members = Arc::new(Members::default());
    let ctx = CallCtx {
        observer: Some(members.clone()),
        ..CallCtx::detached()
    };
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let (p, ctx) = (p.clone(), ctx.clone());
            tokio::spawn(async move { p.generate(&req(), &ctx).await })
        })
        .collect();
    // Every prompt placed before any finished: eight queued on each server.
    until("24 prompts are queued", || {
        servers.iter().map(|s| s.stats().queued).sum::<u64>() == 24
    })
    .await;
    for s in &servers {
        assert_eq!(s.stats().queued, 8, "the shortest queue spreads them evenly");
    }
    until("the first server has finished one and runs the next", || {
        servers[0].stats().executed >= 1 && servers[0].is_running()
    })
    .await;
    servers[0].kill();
    let dead = servers[0].url();
    let done_on_dead = servers[0].stats().executed;

    let mut outputs = 0;
    for c in calls {
        let g = c.await.unwrap().expect("every job finishes on a live server");
        assert_eq!(g.artifacts.len(), 1);
        outputs += 1;
    }
    assert_eq!(outputs, 24);
    let stats = p.server_stats();
    let dead_stats = stats.iter().find(|s| s.base_url == dead).unwrap();
    // Its running prompt and every pending one were lost with it; each was placed again.
    assert!(dead_stats.failures >= 1, "{stats:?}");
    assert_eq!(dead_stats.failures, dead_stats.requeued, "{stats:?}");
    assert_eq!(dead_stats.outputs + dead_stats.failures, 8, "{stats:?}");
    assert!(dead_stats.outputs <= done_on_dead, "{stats:?}");
    let live_outputs: u64 = stats.iter().filter(|s| s.base_url != dead).map(|s| s.outputs).sum();
    assert_eq!(live_outputs + dead_stats.outputs, 24, "{stats:?}");
    for (s, fake) in stats.iter().zip(&servers).skip(1) {
        assert_eq!(
            s.outputs,
            fake.stats().executed,
            "one output per prompt the server ran: {stats:?}"
        );
        assert!(s.outputs >= 8, "the requeued prompts went to live servers: {stats:?}");
    }

    // One member call per server attempt: the report's per-server rows.
    let calls = members.0.lock().unwrap();
    assert_eq!(calls.len() as u64, 24 + dead_stats.failures);
    for s in &stats {
        let mine: Vec<_> = calls.iter().filter(|c| c.member == s.base_url).collect();
        assert_eq!(mine.iter().filter(|c| c.error.is_none()).count() as u64, s.outputs);
        assert_eq!(mine.iter().filter(|c| c.error.is_some()).count() as u64, s.failures);
    }
}

#[tokio::test]
async fn a_job_s_candidates_go_out_as_one_prompt_with_their_batch_size() {
    let servers = fakes(2, 0).await;
    let p = pool_of(&servers, json!({}));
    let mut r = req();
    r.params.count = Some(4);
    let g = p.generate(&r, &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts.len(), 4);
    let prompts: Vec<Value> = servers.iter().flat_map(FakeComfyUi::prompts).collect();
    assert_eq!(prompts.len(), 1, "one prompt for the four candidates");
    assert_eq!(prompts[0]["5"]["inputs"]["batch_size"], 4);
    let first = server_of(&g.artifacts[0]);
    assert!(g.artifacts.iter().all(|a| server_of(a) == first));
}

#[tokio::test]
async fn candidates_past_max_batch_are_split_over_the_pool_each_with_its_own_seed() {
    let servers = fakes(3, 20).await;
    let p = pool_of(&servers, json!({"max_batch": 2}));
    let mut r = req();
    r.params.count = Some(6);
    r.params.seed = Some(100);
    let g = p.generate(&r, &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts.len(), 6);
    let mut seeds = Vec::new();
    for s in &servers {
        let prompts = s.prompts();
        assert_eq!(prompts.len(), 1, "one batch per server, run at once");
        assert_eq!(prompts[0]["5"]["inputs"]["batch_size"], 2);
        seeds.push(prompts[0]["3"]["inputs"]["seed"].as_u64().unwrap());
    }
    seeds.sort_unstable();
    assert_eq!(seeds, [100, 102, 104]);
    assert_eq!(g.usage.units, Some(6.0));
}

#[tokio::test]
async fn without_a_batch_size_each_candidate_is_a_prompt_seeded_past_the_workflow_s() {
    let servers = fakes(2, 0).await;
    let mut wf = workflow();
    wf["5"]["inputs"].as_object_mut().unwrap().remove("batch_size");
    let p = pool_of(&servers, json!({"workflow": wf}));
    let mut r = req();
    r.params.count = Some(3);
    let g = p.generate(&r, &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts.len(), 3);
    let mut seeds: Vec<u64> = servers
        .iter()
        .flat_map(FakeComfyUi::prompts)
        .map(|w| w["3"]["inputs"]["seed"].as_u64().unwrap())
        .collect();
    seeds.sort_unstable();
    // The workflow's seed is 1: the first prompt keeps it, the others follow it.
    assert_eq!(seeds, [1, 2, 3]);
    assert_eq!(p.capabilities().max_count, creative_core::limits::MAX_COUNT_PER_CALL);
}

#[tokio::test]
async fn a_pool_whose_servers_are_all_dead_is_unavailable_naming_them() {
    let servers = fakes(2, 0).await;
    let p = pool_of(&servers, json!({}));
    assert!(p.is_composite());
    assert!(p.unavailable().is_none());
    for s in &servers {
        s.kill();
    }
    let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    let e = p.unavailable().expect("every server is marked down");
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    for s in &servers {
        assert!(e.message().contains(&s.url()), "{e}");
    }
    assert!(e.message().contains("tried again 30 s after"), "{e}");
}

#[tokio::test]
async fn one_server_is_not_a_composite_and_reports_no_members() {
    let servers = fakes(1, 0).await;
    let p = pool_of(&servers, json!({}));
    assert!(!p.is_composite());
    let members = Arc::new(Members::default());
    let ctx = CallCtx {
        observer: Some(members.clone()),
        ..CallCtx::detached()
    };
    p.generate(&req(), &ctx).await.unwrap();
    assert!(members.0.lock().unwrap().is_empty());
}

/// Run `n` jobs through the engine on `provider`, with events.
async fn engine_run(
    provider: Arc<ComfyUi>,
    n: usize,
    during: impl FnOnce() + Send + 'static,
) -> (creative_core::RunOutcome, Vec<creative_core::events::EventKind>) {
    use creative_core::{Dag, Executor, GenerateStep, Job, RunOptions};
    use futures::StreamExt;
    let exec = Executor::builder().provider(provider).concurrency(12).build().unwrap();
    let step = GenerateStep::new(Task::Image, ["farm"], "tile {{ n }}").unwrap();
    let dag = Arc::new(Dag::builder("d").step("gen", step, &[]).build().unwrap());
    let jobs: Vec<Job> = (0..n).map(|i| Job::new([("n", i.to_string())])).collect();
    let mut run = exec.start(dag, jobs, RunOptions::default()).unwrap();
    let events = run.events().unwrap();
    during();
    let out = run.wait().await;
    (out, events.map(|e| e.kind).collect::<Vec<_>>().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_run_on_a_pool_has_a_member_row_per_server_and_node_progress() {
    use creative_core::events::EventKind;
    let servers = Arc::new(fakes(3, 20).await);
    let p = pool_of(&servers, json!({}));
    let s = servers.clone();
    let (out, events) = engine_run(p.clone(), 24, move || {
        // Kill the first server once it has run a prompt and holds more.
        tokio::spawn(async move {
            until("the first server ran one", || {
                s[0].stats().executed >= 1 && s[0].is_running()
            })
            .await;
            s[0].kill();
        });
    })
    .await;
    assert_eq!(out.status, creative_core::Status::Succeeded, "{:?}", out.jobs);
    let stats = p.server_stats();
    let mut rows: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for e in &events {
        if let EventKind::MemberAttemptFinished {
            router,
            member,
            error_kind,
            ..
        } = e
        {
            assert_eq!(router, "farm");
            let r = rows.entry(member.clone()).or_default();
            if error_kind.is_some() {
                r.1 += 1;
            } else {
                r.0 += 1;
            }
        }
    }
    // The report's rows under `farm`: one per server, as its statistics say.
    for s in &stats {
        assert_eq!(
            rows.get(&s.base_url).copied().unwrap_or_default(),
            (s.outputs, s.failures),
            "{rows:?}"
        );
    }
    assert_eq!(rows.values().map(|r| r.0).sum::<u64>(), 24);
    assert!(stats[0].failures >= 1, "the killed server failed prompts: {stats:?}");
    let progress = events
        .iter()
        .filter(
            |e| matches!(e, EventKind::Progress { provider, stage, .. } if provider == "farm" && stage.contains("KSampler")),
        )
        .count();
    assert!(progress >= 24, "a sampler progress event per prompt: {progress}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_s_node_progress_reaches_the_engine_too() {
    use creative_core::events::EventKind;
    let servers = fakes(1, 0).await;
    let urls: Vec<String> = servers.iter().map(FakeComfyUi::url).collect();
    let settings = json!({"base_url": urls[0], "workflow": workflow()});
    let p = Arc::new(ComfyUi::from_settings("farm", &settings, &Default::default()).unwrap());
    let (out, events) = engine_run(p, 2, || {}).await;
    assert_eq!(out.status, creative_core::Status::Succeeded);
    let progress = events
        .iter()
        .filter(|e| matches!(e, EventKind::Progress { provider, stage, .. } if provider == "farm" && stage.contains("KSampler")))
        .count();
    assert_eq!(progress, 2, "{events:?}");
    assert!(!events
        .iter()
        .any(|e| matches!(e, EventKind::MemberAttemptFinished { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_a_pool_whose_servers_are_all_down_ends_with_a_clear_error_instead_of_waiting() {
    // The issue's `--no-preflight` case, for a pool: nothing answers, nothing
    // is in flight; the run must end, each job naming why.
    let servers = fakes(2, 0).await;
    for s in &servers {
        s.kill();
    }
    let p = pool_of(&servers, json!({}));
    let (out, _) = tokio::time::timeout(Duration::from_secs(60), engine_run(p, 20, || {}))
        .await
        .expect("the run ended");
    assert_eq!(out.status, creative_core::Status::Failed);
    assert_eq!(out.jobs.len(), 20);
    for j in &out.jobs {
        assert_eq!(j.status, creative_core::Status::Failed);
        let e = format!("{:?}", j.error());
        assert!(e.contains("every ComfyUI server of the pool stopped answering"), "{e}");
    }
}
