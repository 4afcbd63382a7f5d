//! A scriptable fake provider, driven from the test like tower-test's mock
//! handle: every call the engine makes arrives at the test's [`Handle`] as a
//! [`Call`], which the test inspects and answers (or leaves hanging, to watch
//! the engine cancel it). Answers pushed ahead of time with
//! [`Handle::push`] are given at once, in order, for tests that only script.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use creative_core::{Artifact, CallCtx, Capabilities, Generation, Provider, ProviderError, Request, Task, Usage};
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

    /// These artifacts, free of charge.
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

struct Shared {
    scripted: Mutex<VecDeque<Answer>>,
    calls: AtomicU64,
}

/// The fake provider: register it on an executor (it is `Clone`, all clones
/// feed one handle).
#[derive(Clone)]
pub struct FakeProvider {
    id: String,
    tasks: Vec<Task>,
    shared: Arc<Shared>,
    calls: mpsc::UnboundedSender<Call>,
}

/// The test's end: calls arrive here.
pub struct Handle {
    shared: Arc<Shared>,
    calls: mpsc::UnboundedReceiver<Call>,
}

/// A fake provider named `id` that can do `tasks`, and the handle driving it.
pub fn provider(id: &str, tasks: &[Task]) -> (FakeProvider, Handle) {
    let shared = Arc::new(Shared {
        scripted: Mutex::new(VecDeque::new()),
        calls: AtomicU64::new(0),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let p = FakeProvider {
        id: id.to_string(),
        tasks: tasks.to_vec(),
        shared: shared.clone(),
        calls: tx,
    };
    (p, Handle { shared, calls: rx })
}

impl Handle {
    /// Answer the next call not yet answered with `a`, at once, without
    /// waiting for the test (answers queue in order).
    pub fn push(&self, a: Answer) {
        self.shared
            .scripted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(a);
    }

    /// The next call that no pushed answer covered; `None` once every clone
    /// of the provider is gone.
    pub async fn next_call(&mut self) -> Option<Call> {
        self.calls.recv().await
    }

    /// Calls made so far, answered or not.
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn id(&self) -> &str {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tasks: self.tasks.clone(),
            ..Default::default()
        }
    }

    async fn generate(&self, request: &Request, _ctx: &CallCtx) -> Result<Generation, ProviderError> {
        self.shared.calls.fetch_add(1, Ordering::SeqCst);
        let scripted = self
            .shared
            .scripted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        if let Some(a) = scripted {
            return a.into_result();
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
}
