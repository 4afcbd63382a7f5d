//! Model selection against an oracle (issue 14): a routing simulation, not a
//! timed test.
//!
//! ```text
//! cargo bench --bench routing                 # both scenarios, 5 seeds (about 4 minutes)
//! CREATIVE_BENCH_SEEDS=2 cargo bench --bench routing -- drift
//! cargo bench --bench routing -- stationary router   # one scenario, one configuration
//! ```
//!
//! Arguments filter: a scenario name (`stationary`, `drift`) and configuration
//! names (`oracle`, `router`, `cheapest`, `round`); none runs everything.
//!
//! `CREATIVE_BENCH_WINDOW` overrides the router's window (observations);
//! `CREATIVE_BENCH_FIRST_SEED` starts the seeds elsewhere than 1;
//! `CREATIVE_BENCH_VERBOSE=1` prints each run's figures to stderr.
//!
//! Three loopback servers of our own speak the OpenAI images API (real HTTP, the
//! real `openai` provider); each has a price, a latency, a token-bucket rate
//! limit answered `429` with `Retry-After`/`retry-after-ms`, a share of `500`s
//! and a share of blank (flat grey) images that the `sharpness` gate rejects.
//! The member cheapest per call is not the cheapest per accepted asset. In the
//! `drift` scenario the best member's blank rate jumps from 5% to 75% halfway
//! through (after half the jobs' worth of images was served).
//!
//! Every configuration runs the same campaign through the engine (a generate
//! step with the gate, regenerating on rejection, 16 jobs at once):
//! - `router`: `cost_per_accepted` (Thompson sampling, wait-vs-spill);
//! - `cheapest`: the `cheapest` strategy (always the lowest list price);
//! - `round robin`: a bench-side rotation that moves on at any failure;
//! - `oracle`: the best fixed member alone (stationary) or the piecewise best,
//!   told the moment of the collapse (drift).
//!
//! Cost is what the servers billed (images served times price); regret is the
//! cost per accepted asset over the oracle's expected one (price / share not
//! blank, piecewise under drift) minus one; makespan is compared with the
//! oracle run's. Targets: regret within 5% (stationary), 10% (drift); makespan
//! within 10% of the oracle's; no job lost. Two more columns take luck out:
//! the regret against the oracle on the run's own split (exploring early
//! brings a collapse set by images served forward), and the pseudo-regret
//! (the run's choices priced at the members' expected acceptance): the
//! servers' blank draws move even the oracle's own run by -5%..+8%.
//!
//! Measured with `cargo test --bench routing -- ...` (a debug build) on 2 cores
//! shared with other builds; `window` left at its default. Median regret
//! (min..max), before (8a49933: a prior believing acceptance grows with price,
//! window 100, no change test) and after (this version):
//!
//! | | stationary, seeds 1-5 | drift, seeds 1-5 | stationary, seeds 6-15 | drift, seeds 6-15 |
//! |---|---|---|---|---|
//! | router before | +6.4% (+1.8..+9.4) | +19.4% (+6.9..+28.4) | - | - |
//! | router after | +3.1% (+0.3..+4.6) | +7.5% (-1.3..+15.6) | +3.7% (+0.9..+6.4) | +8.9% (-0.1..+12.8) |
//! | router after, pseudo-regret | +2.3% (+0.9..+4.8) | +5.1% (+4.4..+8.2) | +2.2% (+1.1..+5.9) | +6.6% (+3.9..+8.0) |
//! | oracle's own run | -0.9% (-1.2..+0.4) | +2.1% (-4.8..+8.1) | +0.7% (-0.9..+4.2) | +2.8% (-5.4..+6.7) |
//! | always cheapest | +14.1% (+6.9..+24.7) | +12.2% (+2.6..+20.4) | - | - |
//! | round robin | +43.7% (+36.7..+48.6) | +62.0% (+54.8..+67.6) | - | - |
//!
//! Seeds 1-3 were the ones the changes were tried on; 6-15 were run once, at
//! the end. Router makespan 38% (stationary) and 22% (drift) shorter than the
//! oracle run's on seeds 1-5 (it spills and explores onto free capacity); 0
//! jobs lost anywhere. Images per member, seeds 1-5, stationary: 389 cheap /
//! 1353 mid / 3 dear (before: about a third cheap and 37 dear in 3 seeds);
//! under drift 97 mid images after the collapse in 5 runs, the change test
//! finding it in each. Targets: met on the median in both scenarios; a run's
//! maximum can pass them (+6.4% stationary, +12.8% and +15.6% under drift),
//! mostly from the servers' draws: the pseudo-regret stays within +5.9% and
//! +8.2%. Why the old policy paid more: the price prior sent a third of the
//! first calls to the dearest member; the window of 100 faded what the router
//! had learned, so it kept re-trying `cheap` (15% dearer per accepted asset)
//! on a third of its calls; a collapse took a few dozen attempts to show; and
//! a one-off 500 sent the call to the next member in rank, the dear one.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use creative::engine::registry::{BuildCtx, Registry};
use creative::engine::resilience::RetryPolicy;
use creative::engine::{
    CallCtx, Capabilities, Dag, Executor, GenerateStep, Generation, Job, OnGateFail, Provider, ProviderError, Request,
    Task,
};
use creative::providers::router::{Router, Strategy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const JOBS: usize = 300;
const CONCURRENCY: usize = 16;
const SIDE: u32 = 32;

#[derive(Clone, Copy)]
struct MemberSpec {
    name: &'static str,
    price: f64,
    latency_ms: u64,
    rps: f64,
    burst: f64,
    rate_500: f64,
    blank: f64,
    /// The blank share after the collapse, in the drift scenario.
    blank_after: f64,
}

const MEMBERS: [MemberSpec; 3] = [
    // Cheapest per call, but almost half its images are blank: $0.0364 per accepted.
    MemberSpec {
        name: "cheap",
        price: 0.020,
        latency_ms: 60,
        rps: 50.0,
        burst: 8.0,
        rate_500: 0.05,
        blank: 0.45,
        blank_after: 0.45,
    },
    // The best per accepted asset ($0.0316) until, under drift, it collapses.
    MemberSpec {
        name: "mid",
        price: 0.030,
        latency_ms: 90,
        rps: 50.0,
        burst: 8.0,
        rate_500: 0.03,
        blank: 0.05,
        blank_after: 0.75,
    },
    // Reliable, fast and dear: $0.0606 per accepted.
    MemberSpec {
        name: "dear",
        price: 0.060,
        latency_ms: 40,
        rps: 60.0,
        burst: 8.0,
        rate_500: 0.01,
        blank: 0.01,
        blank_after: 0.01,
    },
];

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct ServerState {
    spec: MemberSpec,
    rng: Mutex<fastrand::Rng>,
    bucket: Mutex<Bucket>,
    served: AtomicU64,
    /// Usable images served before the collapse (all of them without one).
    good_before: AtomicU64,
    /// Images served after the collapse.
    served_after: AtomicU64,
    answered_429: AtomicU64,
    answered_500: AtomicU64,
    collapsed: Arc<AtomicBool>,
    /// Images served by every server, for the moment of the collapse.
    total_served: Arc<AtomicU64>,
    collapse_after: u64,
    good_b64: Arc<str>,
    blank_b64: Arc<str>,
}

impl ServerState {
    /// A token-bucket rate limit: `None` when a token was taken, else how long
    /// until one is free.
    fn take_token(&self) -> Option<Duration> {
        let mut b = self.bucket.lock().unwrap();
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.spec.rps).min(self.spec.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - b.tokens) / self.spec.rps))
        }
    }
}

async fn serve(listener: TcpListener, st: Arc<ServerState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, st.clone()));
    }
}

async fn connection(mut stream: TcpStream, st: Arc<ServerState>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // Read one request: head, then Content-Length bytes of body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let is_generation = head.starts_with("post ") && head.contains("/images/generations");
        buf.drain(..head_end + len);
        let (status, extra, body) = if !is_generation {
            (200, String::new(), "{\"data\": []}".to_string())
        } else {
            answer(&st).await
        };
        let reason = match status {
            200 => "OK",
            429 => "Too Many Requests",
            _ => "Internal Server Error",
        };
        let msg = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{body}",
            body.len()
        );
        if stream.write_all(msg.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn answer(st: &ServerState) -> (u16, String, String) {
    if let Some(wait) = st.take_token() {
        st.answered_429.fetch_add(1, Ordering::Relaxed);
        let ms = wait.as_millis().max(1);
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let body = "{\"error\": {\"message\": \"rate limited\", \"type\": \"rate_limit\"}}".to_string();
        return (429, format!("retry-after: {secs}\r\nretry-after-ms: {ms}\r\n"), body);
    }
    let (jitter, fail, blank) = {
        let mut rng = st.rng.lock().unwrap();
        let blank_share = if st.collapsed.load(Ordering::Relaxed) {
            st.spec.blank_after
        } else {
            st.spec.blank
        };
        (
            0.8 + 0.4 * rng.f64(),
            rng.f64() < st.spec.rate_500,
            rng.f64() < blank_share,
        )
    };
    tokio::time::sleep(Duration::from_secs_f64(st.spec.latency_ms as f64 / 1e3 * jitter)).await;
    if fail {
        st.answered_500.fetch_add(1, Ordering::Relaxed);
        return (500, String::new(), "{\"error\": {\"message\": \"oops\"}}".into());
    }
    st.served.fetch_add(1, Ordering::Relaxed);
    if st.collapsed.load(Ordering::Relaxed) {
        st.served_after.fetch_add(1, Ordering::Relaxed);
    } else if !blank {
        st.good_before.fetch_add(1, Ordering::Relaxed);
    }
    if st.total_served.fetch_add(1, Ordering::Relaxed) + 1 >= st.collapse_after {
        st.collapsed.store(true, Ordering::Relaxed);
    }
    let b64 = if blank { &st.blank_b64 } else { &st.good_b64 };
    (
        200,
        String::new(),
        format!("{{\"created\": 0, \"data\": [{{\"b64_json\": \"{b64}\"}}]}}"),
    )
}

fn png_b64(blank: bool) -> Arc<str> {
    use base64::Engine as _;
    use creative::ops::image::{DynamicImage, ImageFormat, Rgb, RgbImage};
    let img = if blank {
        RgbImage::from_pixel(SIDE, SIDE, Rgb([128, 128, 128]))
    } else {
        RgbImage::from_fn(SIDE, SIDE, |x, y| {
            Rgb([(x * 8) as u8, (y * 8) as u8, (((x ^ y) * 37) & 255) as u8])
        })
    };
    let mut out = std::io::Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut out, ImageFormat::Png)
        .expect("encode png");
    base64::engine::general_purpose::STANDARD
        .encode(out.into_inner())
        .into()
}

/// Round robin: the next member in turn; on any failure, the one after.
struct RoundRobin {
    members: Vec<Arc<dyn Provider>>,
    next: AtomicUsize,
}

#[async_trait]
impl Provider for RoundRobin {
    fn id(&self) -> &str {
        "rr"
    }
    fn capabilities(&self) -> Capabilities {
        self.members[0].capabilities()
    }
    fn estimate_cost(&self, r: &Request) -> f64 {
        self.members.iter().map(|m| m.estimate_cost(r)).fold(0.0, f64::max)
    }
    fn is_composite(&self) -> bool {
        true
    }
    async fn generate(&self, req: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        let mut last = None;
        for _ in 0..self.members.len() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.members.len();
            match self.members[i].generate(req, ctx).await {
                Ok(g) => return Ok(g),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one member"))
    }
}

/// The piecewise oracle: `before` until the collapse, `after` from then on.
struct Switch {
    before: Arc<dyn Provider>,
    after: Arc<dyn Provider>,
    collapsed: Arc<AtomicBool>,
}

#[async_trait]
impl Provider for Switch {
    fn id(&self) -> &str {
        "oracle"
    }
    fn capabilities(&self) -> Capabilities {
        self.before.capabilities()
    }
    fn estimate_cost(&self, r: &Request) -> f64 {
        self.before.estimate_cost(r).max(self.after.estimate_cost(r))
    }
    fn is_composite(&self) -> bool {
        true
    }
    async fn generate(&self, req: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        if self.collapsed.load(Ordering::Relaxed) {
            self.after.generate(req, ctx).await
        } else {
            self.before.generate(req, ctx).await
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Config {
    Router,
    Cheapest,
    RoundRobin,
    Oracle,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Router => "router (cost_per_accepted)",
            Config::Cheapest => "always cheapest",
            Config::RoundRobin => "round robin",
            Config::Oracle => "oracle",
        }
    }
}

struct Outcome {
    cost: f64,
    accepted: u64,
    lost: u64,
    makespan: Duration,
    decisions: Option<creative::providers::router::Decisions>,
    shares: Vec<u64>,
    /// Images each member served after the collapse.
    after: Vec<u64>,
    /// Accepted assets made before the collapse.
    accepted_before: u64,
    r429: u64,
}

async fn run_once(config: Config, drift: bool, seed: u64) -> Outcome {
    let collapsed = Arc::new(AtomicBool::new(false));
    let total_served = Arc::new(AtomicU64::new(0));
    let (good, blank) = (png_b64(false), png_b64(true));
    let mut reg = Registry::new();
    creative::providers::register(&mut reg);
    creative::ops::register(&mut reg);
    let ctx = BuildCtx::default();
    let mut states = Vec::new();
    let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
    for (k, spec) in MEMBERS.iter().enumerate() {
        let st = Arc::new(ServerState {
            spec: *spec,
            rng: Mutex::new(fastrand::Rng::with_seed(seed * 31 + k as u64)),
            bucket: Mutex::new(Bucket {
                tokens: spec.burst,
                at: Instant::now(),
            }),
            served: AtomicU64::new(0),
            good_before: AtomicU64::new(0),
            served_after: AtomicU64::new(0),
            answered_429: AtomicU64::new(0),
            answered_500: AtomicU64::new(0),
            collapsed: collapsed.clone(),
            total_served: total_served.clone(),
            collapse_after: if drift { (JOBS as u64) / 2 } else { u64::MAX },
            good_b64: good.clone(),
            blank_b64: blank.clone(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(listener, st.clone()));
        states.push(st);
        let model = format!("model-{}", spec.name);
        let settings = serde_json::json!({
            "base_url": format!("http://{addr}/v1"),
            "model": model,
            "prices": { model.clone(): { "image": { "*": spec.price } } },
        });
        let p = reg.provider_factory("openai").expect("openai kind")(spec.name, &settings, &ctx)
            .unwrap_or_else(|e| panic!("openai provider: {e}"));
        providers.push(p);
    }
    let router_of = |strategy: Strategy| {
        let mut b = Router::builder("pool").strategy(strategy).seed(seed).gated(true);
        if let Some(w) = std::env::var("CREATIVE_BENCH_WINDOW").ok().and_then(|w| w.parse().ok()) {
            b = b.window(w);
        }
        for p in &providers {
            b = b.member(p.clone());
        }
        Arc::new(b.build().expect("router"))
    };
    let mut router = None;
    let top: Arc<dyn Provider> = match config {
        Config::Router => {
            let r = router_of(Strategy::CostPerAccepted);
            router = Some(r.clone());
            r
        }
        Config::Cheapest => {
            let r = router_of(Strategy::Cheapest);
            router = Some(r.clone());
            r
        }
        Config::RoundRobin => Arc::new(RoundRobin {
            members: providers.clone(),
            next: AtomicUsize::new(0),
        }),
        Config::Oracle if drift => Arc::new(Switch {
            before: providers[1].clone(),
            after: providers[0].clone(),
            collapsed: collapsed.clone(),
        }),
        Config::Oracle => providers[1].clone(),
    };
    let gate = reg.gate_factory("sharpness").expect("sharpness gate")(&serde_json::json!({"min_variance": 10.0}), &ctx)
        .expect("gate");
    let retry = RetryPolicy {
        max_attempts: 10,
        max_rate_limited: 1000,
        ..RetryPolicy::default()
    };
    let mut eb = Executor::builder().concurrency(CONCURRENCY).retry(retry);
    // The plain members, for the oracle's and the round robin's direct calls.
    for p in &providers {
        if !Arc::ptr_eq(p, &top) {
            eb = eb.provider(p.clone());
        }
    }
    let exec = eb.provider(top.clone()).build().unwrap();
    let step = GenerateStep::new(Task::Image, [top.id().to_string()], "tile {{ n }}")
        .expect("step")
        .gate(gate)
        .on_gate_fail(OnGateFail::Regenerate { max: 40 });
    let dag = Arc::new(Dag::builder("routing").step("gen", step, &[]).build().expect("dag"));
    let jobs: Vec<Job> = (0..JOBS).map(|i| Job::new([("n", i.to_string())])).collect();
    let started = Instant::now();
    let out = exec.run(dag, jobs).await.expect("run");
    let makespan = started.elapsed();
    let cost = states
        .iter()
        .map(|s| s.served.load(Ordering::Relaxed) as f64 * s.spec.price)
        .sum();
    Outcome {
        cost,
        accepted: out.counts.succeeded,
        lost: JOBS as u64 - out.counts.succeeded,
        makespan,
        decisions: router.as_ref().map(|r| r.decisions()),
        shares: states.iter().map(|s| s.served.load(Ordering::Relaxed)).collect(),
        after: states.iter().map(|s| s.served_after.load(Ordering::Relaxed)).collect(),
        accepted_before: states.iter().map(|s| s.good_before.load(Ordering::Relaxed)).sum(),
        r429: states.iter().map(|s| s.answered_429.load(Ordering::Relaxed)).sum(),
    }
}

/// The oracle's expected cost per accepted asset: the best member's price over
/// its share of usable images; under drift, the piecewise best, weighted by the
/// accepted assets made before and after the collapse.
fn oracle_cost_per_accepted(drift: bool) -> f64 {
    let cpa = |m: &MemberSpec, blank: f64| m.price / (1.0 - blank);
    let before = MEMBERS.iter().map(|m| cpa(m, m.blank)).fold(f64::INFINITY, f64::min);
    if !drift {
        return before;
    }
    let after = MEMBERS
        .iter()
        .map(|m| cpa(m, m.blank_after))
        .fold(f64::INFINITY, f64::min);
    // The collapse comes after JOBS/2 images served; before it the best member
    // makes (1 - blank) accepted per image.
    let best = &MEMBERS[1];
    let accepted_before = (JOBS as f64 / 2.0) * (1.0 - best.blank);
    let accepted_after = JOBS as f64 - accepted_before;
    (before * accepted_before + after * accepted_after) / JOBS as f64
}

/// The piecewise oracle on this run's own split: the best member's expected
/// cost per accepted asset before the collapse for the accepted assets this run
/// made before it, the best after for the rest. A configuration that explores
/// early brings the collapse (set by images served) forward in accepted assets;
/// this figure leaves that out and compares the phases alone.
fn oracle_on_split(accepted_before: u64) -> f64 {
    let cpa = |m: &MemberSpec, blank: f64| m.price / (1.0 - blank);
    let before = MEMBERS.iter().map(|m| cpa(m, m.blank)).fold(f64::INFINITY, f64::min);
    let after = MEMBERS
        .iter()
        .map(|m| cpa(m, m.blank_after))
        .fold(f64::INFINITY, f64::min);
    let b = (accepted_before as f64).min(JOBS as f64);
    (before * b + after * (JOBS as f64 - b)) / JOBS as f64
}

/// The run's pseudo-regret: its choices priced at the members' expected
/// acceptance (each image counts `1 - blank` accepted assets, at the blank
/// share of its phase) against the oracle on the run's split, so the luck of
/// the servers' blank draws, which moves even the oracle's own run by several
/// points, is left out and what is left is the policy's.
fn pseudo_regret(o: &Outcome, drift: bool) -> f64 {
    let mut cost = 0.0;
    let (mut before, mut after) = (0.0, 0.0);
    for (k, m) in MEMBERS.iter().enumerate() {
        let (b, a) = ((o.shares[k] - o.after[k]) as f64, o.after[k] as f64);
        cost += (b + a) * m.price;
        before += b * (1.0 - m.blank);
        after += a * (1.0 - if drift { m.blank_after } else { m.blank });
    }
    let expected = (before + after).max(1.0);
    // The oracle's cost for that many accepted assets split the same way.
    let cpa = |blank: fn(&MemberSpec) -> f64| {
        MEMBERS
            .iter()
            .map(|m| m.price / (1.0 - blank(m)))
            .fold(f64::INFINITY, f64::min)
    };
    let oracle = if drift {
        cpa(|m| m.blank) * before + cpa(|m| m.blank_after) * after
    } else {
        cpa(|m| m.blank) * expected
    };
    cost / oracle - 1.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let seeds: u64 = std::env::var("CREATIVE_BENCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    // Seeds other than the ones a change was tried on, to check it was not
    // fitted to them.
    let first_seed: u64 = std::env::var("CREATIVE_BENCH_FIRST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for drift in [false, true] {
        let scenario = if drift { "drift" } else { "stationary" };
        let scenarios: Vec<&String> = filter
            .iter()
            .filter(|f| ["stationary", "drift"].iter().any(|s| s.contains(f.as_str())))
            .collect();
        if !scenarios.is_empty() && !scenarios.iter().any(|f| scenario.contains(f.as_str())) {
            continue;
        }
        let oracle = oracle_cost_per_accepted(drift);
        println!("\n## {scenario}: {JOBS} jobs, concurrency {CONCURRENCY}, {seeds} seeds from {first_seed}; oracle expects ${oracle:.4} per accepted\n");
        println!("| configuration | $/accepted (median) | regret min / median / max | regret on the run's split (median) | pseudo-regret min / median / max | makespan (median) | vs oracle run | lost | images cheap/mid/dear (after the collapse) | 429s | spills / waits / explorations / changes |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        let mut oracle_makespans = Vec::new();
        let mut rows = Vec::new();
        let all = [Config::Oracle, Config::Router, Config::Cheapest, Config::RoundRobin];
        let picked: Vec<Config> = all
            .into_iter()
            .filter(|c| filter.iter().any(|f| c.name().starts_with(f.as_str())))
            .collect();
        for config in if picked.is_empty() { all.to_vec() } else { picked } {
            let mut cpas = Vec::new();
            let mut spans = Vec::new();
            let mut lost = 0;
            let mut shares = [0u64; 3];
            let mut after = [0u64; 3];
            let mut split_regrets = Vec::new();
            let mut pseudo = Vec::new();
            let mut r429 = 0;
            let mut dec = [0u64; 4];
            for seed in first_seed..first_seed + seeds {
                let o = rt.block_on(run_once(config, drift, seed));
                let cpa = o.cost / o.accepted.max(1) as f64;
                cpas.push(cpa);
                let split = if drift {
                    oracle_on_split(o.accepted_before)
                } else {
                    oracle
                };
                split_regrets.push(cpa / split - 1.0);
                pseudo.push(pseudo_regret(&o, drift));
                if std::env::var_os("CREATIVE_BENCH_VERBOSE").is_some() {
                    eprintln!(
                        "  {} seed {seed}: regret {:+.1}% (pseudo {:+.1}%), images {:?} (after the collapse {:?}), accepted before it {}, {:?}",
                        config.name(),
                        100.0 * (cpa / oracle - 1.0),
                        100.0 * pseudo_regret(&o, drift),
                        o.shares,
                        o.after,
                        o.accepted_before,
                        o.decisions.map(|d| (d.spills, d.waits, d.explorations, d.changes)),
                    );
                }
                spans.push(o.makespan.as_secs_f64());
                lost += o.lost;
                for (k, s) in o.shares.iter().enumerate() {
                    shares[k] += s;
                    after[k] += o.after[k];
                }
                r429 += o.r429;
                if let Some(d) = o.decisions {
                    dec[0] += d.spills;
                    dec[1] += d.waits;
                    dec[2] += d.explorations;
                    dec[3] += d.changes;
                }
            }
            if config == Config::Oracle {
                oracle_makespans = spans.clone();
            }
            let regrets: Vec<f64> = cpas.iter().map(|c| c / oracle - 1.0).collect();
            let span = median(spans.clone());
            // Without an oracle run (filtered out) there is nothing to compare with.
            let oracle_span = if oracle_makespans.is_empty() {
                f64::NAN
            } else {
                median(oracle_makespans.clone())
            };
            let row = format!(
                "| {} | ${:.4} | {:+.1}% / {:+.1}% / {:+.1}% | {:+.1}% | {:+.1}% / {:+.1}% / {:+.1}% | {:.2} s | {:+.1}% | {} | {}/{}/{} ({}/{}/{}) | {} | {} |",
                config.name(),
                median(cpas.clone()),
                100.0 * regrets.iter().copied().fold(f64::INFINITY, f64::min),
                100.0 * median(regrets.clone()),
                100.0 * regrets.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                100.0 * median(split_regrets),
                100.0 * pseudo.iter().copied().fold(f64::INFINITY, f64::min),
                100.0 * median(pseudo.clone()),
                100.0 * pseudo.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                span,
                100.0 * (span / oracle_span - 1.0),
                lost,
                shares[0],
                shares[1],
                shares[2],
                after[0],
                after[1],
                after[2],
                r429,
                if matches!(config, Config::Router | Config::Cheapest) {
                    format!("{} / {} / {} / {}", dec[0], dec[1], dec[2], dec[3])
                } else {
                    "-".into()
                },
            );
            println!("{row}");
            rows.push(row);
        }
    }
}
