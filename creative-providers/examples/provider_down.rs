//! How long failure takes: the figures behind "failure that is detected and
//! bounded". Runs in paused tokio time, so minutes of breaker cool-downs cost
//! milliseconds and the figures are the engine's own clock, not this machine's.
//!
//! - `500 everywhere`: one provider that answers every call with a transient
//!   error (what an OpenAI-compatible server answering HTTP 500 gives), 4 jobs at
//!   concurrency 2, default retry and breaker: time until the run ends.
//! - `dead router member`: a router over three members, two live (20 % transient
//!   failures, 50 ms each) and one dead, against the same run with three live
//!   members.
//!
//! `cargo run -p creative-providers --example provider_down [jobs]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use creative_core::{
    Artifact, CallCtx, Capabilities, Dag, Executor, GenerateStep, Generation, Job, Pipeline, Provider, ProviderError,
    Request, RunOptions, Task, Usage,
};
use creative_providers::router::Router;

struct Member {
    id: String,
    latency: Duration,
    /// Percent of calls that fail; 100 for a dead member.
    fail_pct: u64,
    calls: AtomicU64,
}

impl Member {
    fn new(id: &str, latency_ms: u64, fail_pct: u64) -> Arc<Self> {
        Arc::new(Member {
            id: id.into(),
            latency: Duration::from_millis(latency_ms),
            fail_pct,
            calls: AtomicU64::new(0),
        })
    }
}

#[async_trait]
impl Provider for Member {
    fn id(&self) -> &str {
        &self.id
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tasks: vec![Task::Text],
            seed: true,
            ..Default::default()
        }
    }
    async fn generate(&self, req: &Request, _: &CallCtx) -> Result<Generation, ProviderError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        // A fixed pseudo-random pattern, so runs compare like with like.
        let roll = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) % 100;
        if roll < self.fail_pct {
            return Err(ProviderError::transient(&self.id, "internal server error").with_status(500));
        }
        Ok(Generation {
            artifacts: vec![Artifact::text_plain(format!("{}|{}", self.id, req.prompt))],
            usage: Usage::default(),
            raw: None,
        })
    }
}

fn pipeline(provider: &str) -> Arc<dyn Pipeline> {
    let step = GenerateStep::new(Task::Text, [provider], "ad for {{ product }}").expect("valid step");
    Arc::new(Dag::builder("t").step("gen", step, &[]).build().expect("valid dag"))
}

fn jobs(n: usize) -> Vec<Job> {
    (0..n).map(|i| Job::new([("product", format!("p{i}"))])).collect()
}

async fn run(exec: &Executor, provider: &str, n: usize) -> (Duration, u64, usize, u64) {
    let t0 = tokio::time::Instant::now();
    let h = exec
        .start(pipeline(provider), jobs(n), RunOptions::default())
        .expect("known provider");
    let out = h.wait().await;
    let failed = out
        .jobs
        .iter()
        .filter(|j| j.status != creative_core::Status::Succeeded)
        .count();
    (t0.elapsed(), out.stats.attempts, failed, out.stats.retries)
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2000);

    let dead = Member::new("openai", 5, 100);
    let exec = Executor::builder()
        .provider(dead.clone())
        .concurrency(2)
        .build()
        .unwrap();
    let (t, attempts, failed, _) = run(&exec, "openai", 4).await;
    println!(
        "500 everywhere, 4 jobs, concurrency 2: {:.1} s to fail ({failed} failed, {attempts} calls)",
        t.as_secs_f64()
    );

    for dead_member in [false, true] {
        let a = Member::new("a", 50, if dead_member { 100 } else { 20 });
        let b = Member::new("b", 50, 20);
        let c = Member::new("c", 50, 20);
        let router = Router::builder("r")
            .member(a.clone())
            .member(b.clone())
            .member(c.clone())
            .strategy(creative_providers::router::Strategy::Fastest)
            .seed(7)
            .build()
            .expect("valid router");
        let exec = Executor::builder()
            .provider(Arc::new(router))
            .concurrency(16)
            .build()
            .unwrap();
        let (t, attempts, failed, retries) = run(&exec, "r", n).await;
        let member_calls =
            a.calls.load(Ordering::SeqCst) + b.calls.load(Ordering::SeqCst) + c.calls.load(Ordering::SeqCst);
        println!(
            "router over 3 ({}), {n} jobs, concurrency 16: {:.1} s, {failed} failed, {attempts} engine calls, {retries} engine retries, {member_calls} member calls ({:.2} per job)",
            if dead_member { "one dead" } else { "all live" },
            t.as_secs_f64(),
            member_calls as f64 / n as f64
        );
    }
}
