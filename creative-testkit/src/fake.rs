//! A scriptable fake provider, driven from the test like tower-test's mock
//! handle: every call the engine makes arrives at the test's [`Handle`] as a
//! [`Call`], which the test inspects and answers (or leaves hanging, to watch
//! the engine cancel it). Answers pushed ahead of time with
//! [`Handle::push`] are given at once, in order, for tests that only script.
//!
//! A fake can also answer by itself, for tests that drive many calls: a
//! responder ([`FakeProvider::respond`]) computes each answer from the request
//! and the call's number, a latency (fixed, per call, or changed mid-run)
//! delays it on tokio's clock (so paused time makes hours cost nothing), and
//! failures are scripted by class ([`FakeProvider::fail_with`],
//! [`FakeProvider::fail_next`], [`FakeProvider::script`]). Every call is
//! recorded: [`FakeProvider::calls`], [`FakeProvider::requests`],
//! [`FakeProvider::max_in_flight`], and the gate verdicts the engine reports
//! back ([`FakeProvider::verdicts`]).
//!
//! ```
//! use std::time::Duration;
//! use creative_core::{Dag, ErrorKind, Executor, GenerateStep, Job, Status, Task};
//! use creative_testkit::fake::{Answer, FakeProvider};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let p = FakeProvider::new("fake", &[Task::Text])
//!     .latency(Duration::from_millis(1))
//!     .respond(|req, n| Answer::text(format!("{} #{n}", req.prompt)));
//! let exec = Executor::builder().provider(p.clone()).build().unwrap();
//! let dag = std::sync::Arc::new(
//!     Dag::builder("t")
//!         .step("gen", GenerateStep::new(Task::Text, ["fake"], "hi").unwrap(), &[])
//!         .build()
//!         .unwrap(),
//! );
//! let out = exec.run(dag.clone(), [Job::new([("n", 1)])]).await.unwrap();
//! assert_eq!(out.jobs[0].outputs("gen")[0].text(), Some("hi #1"));
//! p.fail_with(Some(ErrorKind::Auth));
//! let out = exec.run(dag, [Job::new([("n", 2)])]).await.unwrap();
//! assert_eq!(out.status, Status::Failed);
//! assert_eq!(p.calls(), 2);
//! # }
//! ```
//!
//! ```
//! use creative_core::{Artifact, Dag, Executor, GenerateStep, Job, Status, Task};
//! use creative_testkit::fake::{self, Answer};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (provider, mut handle) = fake::provider("fake", &[Task::Text]);
//! let exec = Executor::builder().provider(provider).build().unwrap();
//! let dag = Dag::builder("t")
//!     .step("gen", GenerateStep::new(Task::Text, ["fake"], "hello {{ who }}").unwrap(), &[])
//!     .build()
//!     .unwrap();
//! let run = exec.start(std::sync::Arc::new(dag), [Job::new([("who", "you")])], Default::default()).unwrap();
//! let call = handle.next_call().await.expect("the engine calls the provider");
//! assert_eq!(call.request().prompt, "hello you");
//! call.answer(Answer::text("hi"));
//! let out = run.wait().await;
//! assert_eq!(out.status, Status::Succeeded);
//! assert_eq!(handle.calls(), 1);
//! # }
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use creative_core::{
    Artifact, CallCtx, Capabilities, ErrorKind, Generation, Provider, ProviderError, Request, Task, Usage,
};
use tokio::sync::{mpsc, oneshot};

/// What the fake answers one call with.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A generation.
    Ok(Generation),
    /// A failure.
    Err(ProviderError),
}

impl Answer {
    /// One `text/plain` artifact.
    pub fn text(s: impl Into<String>) -> Self {
        Answer::artifacts(vec![Artifact::text_plain(s.into())])
    }

    /// These artifacts, free of charge (unless the fake has a
    /// [`cost`](FakeProvider::cost)).
    pub fn artifacts(artifacts: Vec<Artifact>) -> Self {
        Answer::Ok(Generation {
            artifacts,
            usage: Usage::default(),
            raw: None,
        })
    }

    /// A failure.
    pub fn error(e: ProviderError) -> Self {
        Answer::Err(e)
    }

    fn into_result(self) -> Result<Generation, ProviderError> {
        match self {
            Answer::Ok(g) => Ok(g),
            Answer::Err(e) => Err(e),
        }
    }
}

impl From<Result<Generation, ProviderError>> for Answer {
    fn from(r: Result<Generation, ProviderError>) -> Self {
        match r {
            Ok(g) => Answer::Ok(g),
            Err(e) => Answer::Err(e),
        }
    }
}

/// One call the engine made, waiting for the test's answer.
#[derive(Debug)]
pub struct Call {
    request: Request,
    reply: oneshot::Sender<Answer>,
}

impl Call {
    /// The request as the provider received it.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Answer the call. If the engine gave up on it (a cancel, a timeout), the
    /// answer goes nowhere, as a real provider's would.
    pub fn answer(self, a: Answer) {
        let _ = self.reply.send(a);
    }

    /// Wait until the engine stops waiting for this call (cancel, timeout):
    /// how a test sees a cancellation reach the provider without sleeping.
    pub async fn abandoned(mut self) {
        self.reply.closed().await;
    }
}

type Respond = dyn Fn(&Request, u32) -> Answer + Send + Sync;
type Script = dyn Fn(&Request, u32) -> Result<(), ProviderError> + Send + Sync;
type Delay = dyn Fn(&Request, u32) -> Duration + Send + Sync;

/// How the fake behaves; the test may change it between calls.
struct Behaviour {
    capabilities: Capabilities,
    cost: f64,
    priced: bool,
    fingerprint: String,
    composite: bool,
    unavailable: Option<ProviderError>,
    latency: Duration,
    delay: Option<Arc<Delay>>,
    fail: Option<ErrorKind>,
    retry_after: Option<Duration>,
    fail_next: u32,
    script: Option<Arc<Script>>,
    respond: Option<Arc<Respond>>,
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    scripted: Mutex<VecDeque<Answer>>,
    calls: AtomicU32,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    requests: Mutex<Vec<Request>>,
    verdicts: Mutex<Vec<bool>>,
}

/// A poisoned lock only means another test thread panicked; its data is still
/// what the test set.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fake provider: register it on an executor (it is `Clone`, all clones
/// share one behaviour, one record and one handle).
///
/// The builder methods (`latency`, `respond`, ...) take and give back the
/// fake, for setting it up in one expression; the `set_*`, `fail_*` methods
/// change it through a shared reference, mid-run.
#[derive(Clone)]
pub struct FakeProvider {
    id: String,
    shared: Arc<Shared>,
    calls: mpsc::UnboundedSender<Call>,
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProvider")
            .field("id", &self.id)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

/// The test's end: calls arrive here.
pub struct Handle {
    shared: Arc<Shared>,
    calls: mpsc::UnboundedReceiver<Call>,
}

/// A fake provider named `id` that can do `tasks`, and the handle driving it.
pub fn provider(id: &str, tasks: &[Task]) -> (FakeProvider, Handle) {
    let shared = Arc::new(Shared {
        behaviour: Mutex::new(Behaviour {
            capabilities: Capabilities {
                tasks: tasks.to_vec(),
                ..Default::default()
            },
            cost: 0.0,
            priced: true,
            fingerprint: String::new(),
            composite: false,
            unavailable: None,
            latency: Duration::ZERO,
            delay: None,
            fail: None,
            retry_after: None,
            fail_next: 0,
            script: None,
            respond: None,
        }),
        scripted: Mutex::new(VecDeque::new()),
        calls: AtomicU32::new(0),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        requests: Mutex::new(Vec::new()),
        verdicts: Mutex::new(Vec::new()),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let p = FakeProvider {
        id: id.to_string(),
        shared: shared.clone(),
        calls: tx,
    };
    (p, Handle { shared, calls: rx })
}

impl Handle {
    /// Answer the next call not yet answered with `a`, at once, without
    /// waiting for the test (answers queue in order).
    pub fn push(&self, a: Answer) {
        lock(&self.shared.scripted).push_back(a);
    }

    /// The next call that no pushed answer covered; `None` once every clone
    /// of the provider is gone.
    pub async fn next_call(&mut self) -> Option<Call> {
        self.calls.recv().await
    }

    /// Calls made so far, answered or not.
    pub fn calls(&self) -> u32 {
        self.shared.calls.load(Ordering::SeqCst)
    }
}

impl FakeProvider {
    /// A fake that answers by itself: give it a [`respond`](Self::respond)er
    /// (or pushed answers). A call nothing answers fails as transient, since
    /// there is no handle to hand it to.
    pub fn new(id: &str, tasks: &[Task]) -> Self {
        provider(id, tasks).0
    }

    fn behaviour(&self) -> MutexGuard<'_, Behaviour> {
        lock(&self.shared.behaviour)
    }

    /// Say these capabilities (the tasks given at construction included).
    #[must_use]
    pub fn capabilities(self, c: Capabilities) -> Self {
        self.behaviour().capabilities = c;
        self
    }

    /// Say whether it sends the seed (default no).
    #[must_use]
    pub fn seed(self, sends: bool) -> Self {
        self.behaviour().capabilities.seed = sends;
        self
    }

    /// Estimate `usd` a call, and bill it on every successful answer that does
    /// not bill anything itself.
    #[must_use]
    pub fn cost(self, usd: f64) -> Self {
        self.behaviour().cost = usd;
        self
    }

    /// Whether the fake says it knows its price (default yes).
    #[must_use]
    pub fn priced(self, priced: bool) -> Self {
        self.behaviour().priced = priced;
        self
    }

    /// Answer every call after `d` (tokio's clock). A cancel arriving during
    /// the wait ends the call as cancelled, as a real backend's would.
    #[must_use]
    pub fn latency(self, d: Duration) -> Self {
        self.set_latency(d);
        self
    }

    /// Wait per call: `f(request, n)` for call number `n` (from 1); replaces
    /// [`latency`](Self::latency).
    #[must_use]
    pub fn delay(self, f: impl Fn(&Request, u32) -> Duration + Send + Sync + 'static) -> Self {
        self.behaviour().delay = Some(Arc::new(f));
        self
    }

    /// Answer call number `n` (from 1) with `f(request, n)`, after any delay
    /// and scripted failure; answers pushed on the handle come first.
    #[must_use]
    pub fn respond(self, f: impl Fn(&Request, u32) -> Answer + Send + Sync + 'static) -> Self {
        self.behaviour().respond = Some(Arc::new(f));
        self
    }

    /// Before answering call number `n`, run `f(request, n)`: an error fails
    /// the call with it.
    #[must_use]
    pub fn script(self, f: impl Fn(&Request, u32) -> Result<(), ProviderError> + Send + Sync + 'static) -> Self {
        self.set_script(f);
        self
    }

    /// Replace the [`script`](Self::script) from the next call on.
    pub fn set_script(&self, f: impl Fn(&Request, u32) -> Result<(), ProviderError> + Send + Sync + 'static) {
        self.behaviour().script = Some(Arc::new(f));
    }

    /// Say it is made of members with their own health (a router).
    #[must_use]
    pub fn composite(self, composite: bool) -> Self {
        self.behaviour().composite = composite;
        self
    }

    /// Report this settings fingerprint.
    #[must_use]
    pub fn fingerprint(self, fp: impl Into<String>) -> Self {
        self.set_fingerprint(fp);
        self
    }

    /// Change the latency from the next call on.
    pub fn set_latency(&self, d: Duration) {
        let mut b = self.behaviour();
        b.latency = d;
        b.delay = None;
    }

    /// Change the settings fingerprint.
    pub fn set_fingerprint(&self, fp: impl Into<String>) {
        self.behaviour().fingerprint = fp.into();
    }

    /// Fail every call from now on with an error of this class (`None`:
    /// answer again). A rate limit carries the Retry-After set with
    /// [`set_retry_after`](Self::set_retry_after).
    pub fn fail_with(&self, kind: Option<ErrorKind>) {
        self.behaviour().fail = kind;
    }

    /// The Retry-After a [`RateLimited`](ErrorKind::RateLimited) failure carries.
    pub fn set_retry_after(&self, d: Option<Duration>) {
        self.behaviour().retry_after = d;
    }

    /// Fail the next `n` calls with a transient server error, then answer as
    /// before.
    pub fn fail_next(&self, n: u32) {
        self.behaviour().fail_next = n;
    }

    /// Say the provider is unavailable with this error (`None`: available).
    pub fn set_unavailable(&self, e: Option<ProviderError>) {
        self.behaviour().unavailable = e;
    }

    /// Calls made so far, answered or not.
    pub fn calls(&self) -> u32 {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// The most calls that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    /// The gate verdicts the engine reported back, in order (`true`: accepted).
    pub fn verdicts(&self) -> Vec<bool> {
        lock(&self.shared.verdicts).clone()
    }

    /// The failure an injected class or a one-off makes, if any is due.
    fn injected_failure(&self) -> Option<ProviderError> {
        let mut b = self.behaviour();
        if b.fail_next > 0 {
            b.fail_next -= 1;
            return Some(ProviderError::new(
                ErrorKind::Transient,
                self.id.clone(),
                "injected 500",
            ));
        }
        match b.fail? {
            ErrorKind::RateLimited => Some(ProviderError::rate_limited(self.id.clone(), "slow down", b.retry_after)),
            k => Some(ProviderError::new(k, self.id.clone(), "injected")),
        }
    }

    async fn answer(&self, request: &Request, n: u32) -> Result<Generation, ProviderError> {
        let (script, respond) = {
            let b = self.behaviour();
            (b.script.clone(), b.respond.clone())
        };
        if let Some(script) = script {
            script(request, n)?;
        }
        if let Some(e) = self.injected_failure() {
            return Err(e);
        }
        if let Some(a) = lock(&self.shared.scripted).pop_front() {
            return a.into_result();
        }
        if let Some(respond) = respond {
            return respond(request, n).into_result();
        }
        let (reply, answer) = oneshot::channel();
        let call = Call {
            request: request.clone(),
            reply,
        };
        if self.calls.send(call).is_err() {
            return Err(ProviderError::transient(&self.id, "the test's handle is gone"));
        }
        match answer.await {
            Ok(a) => a.into_result(),
            Err(_) => Err(ProviderError::transient(
                &self.id,
                "the test dropped the call unanswered",
            )),
        }
    }
}

/// Counts a call out of flight however it ends (answered, failed, dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn id(&self) -> &str {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        self.behaviour().capabilities.clone()
    }

    fn estimate_cost(&self, _request: &Request) -> f64 {
        self.behaviour().cost
    }

    fn has_price(&self, _request: &Request) -> bool {
        self.behaviour().priced
    }

    fn fingerprint(&self) -> String {
        self.behaviour().fingerprint.clone()
    }

    fn is_composite(&self) -> bool {
        self.behaviour().composite
    }

    fn unavailable(&self) -> Option<ProviderError> {
        self.behaviour().unavailable.clone()
    }

    fn record_verdict(&self, _artifact: &Artifact, accepted: bool) {
        lock(&self.shared.verdicts).push(accepted);
    }

    async fn generate(&self, request: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        let n = self.shared.calls.fetch_add(1, Ordering::SeqCst) + 1;
        lock(&self.shared.requests).push(request.clone());
        let now = self.shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let _in_flight = InFlight(&self.shared.in_flight);
        let (wait, cost) = {
            let b = self.behaviour();
            let wait = match &b.delay {
                Some(f) => f(request, n),
                None => b.latency,
            };
            (wait, b.cost)
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Err(ProviderError::cancelled(self.id.clone())),
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let mut g = self.answer(request, n).await?;
        if g.usage.cost_usd == 0.0 {
            g.usage.cost_usd = cost;
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use creative_core::{Dag, Executor, GenerateStep, Job, RunOptions, Status};
    use std::time::Duration;

    fn dag() -> Arc<Dag> {
        let step = GenerateStep::new(Task::Text, ["fake"], "ad for {{ n }}").unwrap();
        Arc::new(Dag::builder("t").step("gen", step, &[]).build().unwrap())
    }

    #[tokio::test]
    async fn pushed_answers_are_given_in_order_without_the_test() {
        let (p, handle) = provider("fake", &[Task::Text]);
        handle.push(Answer::error(ProviderError::invalid("fake", "no")));
        handle.push(Answer::text("yes"));
        let exec = Executor::builder().provider(p).concurrency(1).build().unwrap();
        let out = exec
            .run(dag(), [Job::new([("n", 1)]), Job::new([("n", 2)])])
            .await
            .unwrap();
        assert_eq!(out.jobs[0].status, Status::Failed);
        assert_eq!(out.jobs[1].outputs("gen")[0].text(), Some("yes"));
        assert_eq!(handle.calls(), 2);
    }

    #[tokio::test]
    async fn a_cancelled_run_abandons_the_call_the_test_holds() {
        let (p, mut handle) = provider("fake", &[Task::Text]);
        let exec = Executor::builder().provider(p).build().unwrap();
        let run = exec
            .start(dag(), [Job::new([("n", 1)])], RunOptions::default())
            .unwrap();
        let call = handle.next_call().await.expect("a call");
        assert_eq!(call.request().prompt, "ad for 1");
        run.cancel();
        tokio::time::timeout(Duration::from_secs(10), call.abandoned())
            .await
            .expect("the engine lets go of the call");
        assert_eq!(run.wait().await.status, Status::Cancelled);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_by_class_one_offs_and_latency_are_what_the_test_set() {
        let p = FakeProvider::new("fake", &[Task::Text])
            .latency(Duration::from_secs(30))
            .respond(|req, n| Answer::text(format!("{} #{n}", req.prompt)));
        let exec = Executor::builder()
            .provider(p.clone())
            .retry(creative_core::resilience::RetryPolicy::none())
            .concurrency(4)
            .build()
            .unwrap();
        let start = tokio::time::Instant::now();
        let jobs = |from: i32| (from..from + 4).map(|n| Job::new([("n", n)])).collect::<Vec<_>>();
        let out = exec.run(dag(), jobs(0)).await.unwrap();
        assert_eq!(out.status, Status::Succeeded);
        assert!(start.elapsed() >= Duration::from_secs(30), "{:?}", start.elapsed());
        assert_eq!(p.max_in_flight(), 4);

        p.set_latency(Duration::ZERO);
        p.fail_next(1);
        p.fail_with(Some(ErrorKind::Auth));
        let out = exec.run(dag(), jobs(4)).await.unwrap();
        let errors: Vec<_> = out
            .jobs
            .iter()
            .map(|j| j.error().and_then(|e| e.provider_error()).map(ProviderError::kind))
            .collect();
        assert_eq!(errors.iter().filter(|k| **k == Some(ErrorKind::Transient)).count(), 1);
        assert_eq!(errors.iter().filter(|k| **k == Some(ErrorKind::Auth)).count(), 3);

        p.fail_with(None);
        let out = exec.run(dag(), [Job::new([("n", 9)])]).await.unwrap();
        assert_eq!(out.jobs[0].outputs("gen")[0].text(), Some("ad for 9 #9"));
        assert_eq!(p.calls(), 9);
        assert_eq!(p.requests().len(), 9);
        assert_eq!(p.requests()[8].prompt, "ad for 9");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_ends_a_call_waiting_out_its_latency() {
        let p = FakeProvider::new("fake", &[Task::Text])
            .latency(Duration::from_secs(3600))
            .respond(|_, _| Answer::text("late"));
        let exec = Executor::builder().provider(p.clone()).build().unwrap();
        let run = exec
            .start(dag(), [Job::new([("n", 1)])], RunOptions::default())
            .unwrap();
        crate::wait::wait_for("the call to start", Duration::from_secs(10), || p.calls() == 1)
            .await
            .unwrap();
        run.cancel();
        let start = tokio::time::Instant::now();
        assert_eq!(run.wait().await.status, Status::Cancelled);
        assert!(start.elapsed() < Duration::from_secs(3600));
    }
}
