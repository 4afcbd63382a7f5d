//! The `Pipeline` trait and its main implementation, the DAG.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{FuturesUnordered, StreamExt};

use crate::artifact::{Artifact, MediaKind};
use crate::dag::{Graph, NodeState};
use crate::error::{PipelineError, StepError};
use crate::exec::job::{JobCtx, JobResult, StepResult, StepState};
use crate::step::{Step, StepInputs};

/// A pipeline: what to run for one job.
///
/// The executor runs many jobs of one pipeline. [`Dag`] is the main
/// implementation; a host may write its own (a fixed script, a pipeline that
/// decides its next step from what came back) and still get the engine's
/// concurrency, journal, events and cancellation by running each step through
/// [`JobCtx::run_step`].
#[async_trait]
pub trait Pipeline: Send + Sync {
    /// The pipeline's name, for events and reports.
    fn name(&self) -> &str;

    /// The names of its steps, in a stable order.
    fn step_names(&self) -> Vec<Arc<str>>;

    /// The provider ids its steps will call, so a run can check them first.
    fn providers(&self) -> Vec<String>;

    /// Run one job to the end. Never fails as a whole: the result says which steps
    /// finished, failed, or were skipped.
    async fn run_job(&self, ctx: &JobCtx) -> JobResult;
}

struct Node {
    name: Arc<str>,
    step: Arc<dyn Step>,
}

/// A validated DAG of steps. Build one with [`Dag::builder`].
///
/// ```
/// use std::sync::Arc;
/// use creative_core::{Dag, Step, StepCtx, StepInputs, StepError, Artifact, Pipeline};
/// struct Hello;
/// #[async_trait::async_trait]
/// impl Step for Hello {
///     fn kind(&self) -> &str { "hello" }
///     async fn run(&self, _: &StepInputs, _: &StepCtx) -> Result<Vec<Artifact>, StepError> {
///         Ok(vec![Artifact::text_plain("hi")])
///     }
/// }
/// let dag = Dag::builder("demo")
///     .step("a", Hello, &[])
///     .step("b", Hello, &["a"])
///     .step("c", Hello, &["a"])
///     .step("d", Hello, &["b", "c"]) // fan-in
///     .build()
///     .unwrap();
/// assert_eq!(dag.step_names().len(), 4);
/// ```
pub struct Dag {
    name: String,
    nodes: Vec<Node>,
    graph: Graph,
}

impl std::fmt::Debug for Dag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dag")
            .field("name", &self.name)
            .field("steps", &self.nodes.iter().map(|n| &n.name).collect::<Vec<_>>())
            .finish()
    }
}

/// Builds a [`Dag`]. Adding steps never fails; [`DagBuilder::build`] reports the
/// first problem: a duplicate name, an unknown input, a missing input, a cycle
/// (naming its steps), a media mismatch between steps whose media are known.
pub struct DagBuilder {
    name: String,
    nodes: Vec<(String, Arc<dyn Step>, Vec<String>)>,
}

impl Dag {
    /// Start a builder.
    pub fn builder(name: impl Into<String>) -> DagBuilder {
        DagBuilder {
            name: name.into(),
            nodes: Vec::new(),
        }
    }

    /// The underlying graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// A step by name.
    pub fn step(&self, name: &str) -> Option<&Arc<dyn Step>> {
        self.nodes.iter().find(|n| &*n.name == name).map(|n| &n.step)
    }
}

impl DagBuilder {
    /// Add a step reading the outputs of `inputs` (in that order).
    pub fn step(self, name: impl Into<String>, step: impl Step + 'static, inputs: &[&str]) -> Self {
        self.step_arc(name, Arc::new(step), inputs)
    }

    /// Add a shared step.
    pub fn step_arc(mut self, name: impl Into<String>, step: Arc<dyn Step>, inputs: &[&str]) -> Self {
        self.nodes
            .push((name.into(), step, inputs.iter().map(|s| s.to_string()).collect()));
        self
    }

    /// Validate and build.
    pub fn build(self) -> Result<Dag, PipelineError> {
        let pairs: Vec<(&str, Vec<&str>)> = self
            .nodes
            .iter()
            .map(|(n, _, ins)| (n.as_str(), ins.iter().map(String::as_str).collect()))
            .collect();
        let graph = Graph::build(&pairs)?;
        for (i, (name, step, _)) in self.nodes.iter().enumerate() {
            let got = graph.inputs(i).len();
            if got < step.min_inputs() {
                return Err(PipelineError::MissingInput {
                    step: name.clone(),
                    expected: step.min_inputs(),
                    got,
                });
            }
            if let Some(accepts) = step.accepts() {
                for &j in graph.inputs(i) {
                    if let Some(produces) = self.nodes[j].1.produces() {
                        if !accepts.contains(&produces) {
                            return Err(PipelineError::MediaMismatch {
                                step: name.clone(),
                                input: self.nodes[j].0.clone(),
                                accepts: kinds(accepts),
                                produces: kinds(&[produces]),
                            });
                        }
                    }
                }
            }
        }
        let nodes = self
            .nodes
            .into_iter()
            .map(|(name, step, _)| Node {
                name: Arc::from(name),
                step,
            })
            .collect();
        Ok(Dag {
            name: self.name,
            nodes,
            graph,
        })
    }
}

fn kinds(k: &[MediaKind]) -> String {
    k.iter()
        .map(|k| {
            serde_json::to_value(k)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("|")
}

#[async_trait]
impl Pipeline for Dag {
    fn name(&self) -> &str {
        &self.name
    }

    fn step_names(&self) -> Vec<Arc<str>> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    fn providers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.nodes.iter().flat_map(|n| n.step.providers()).collect();
        v.sort();
        v.dedup();
        v
    }

    async fn run_job(&self, ctx: &JobCtx) -> JobResult {
        let g = &self.graph;
        let mut queue = g.ready_queue();
        let mut outputs: Vec<Option<Arc<[Artifact]>>> = vec![None; g.len()];
        let mut results: Vec<Option<StepResult>> = (0..g.len()).map(|_| None).collect();
        let mut running = FuturesUnordered::new();
        loop {
            let stopping = ctx.stopping();
            // When the budget stops the run, steps that call no provider still
            // run, so a generation already paid for is resized, captioned and
            // delivered instead of thrown away.
            let free_only = stopping && ctx.free_steps_may_run();
            if !stopping || free_only {
                while let Some(n) = queue.pop() {
                    if free_only && !self.nodes[n].step.providers().is_empty() {
                        results[n] = Some(StepResult::not_run(g.name(n).clone(), ctx.stop_state()));
                        for s in queue.fail(g, n) {
                            results[s] = Some(StepResult::not_run(g.name(s).clone(), ctx.stop_state()));
                        }
                        continue;
                    }
                    let inputs = StepInputs::new(
                        g.inputs(n)
                            .iter()
                            .map(|&i| {
                                (
                                    g.name(i).clone(),
                                    outputs[i].clone().unwrap_or_else(|| Arc::from(Vec::new())),
                                )
                            })
                            .collect(),
                    );
                    let node = &self.nodes[n];
                    running.push(async move { (n, ctx.run_step(&node.name, &*node.step, inputs).await) });
                }
            } else {
                for n in queue.skip_rest() {
                    results[n] = Some(StepResult::not_run(g.name(n).clone(), ctx.stop_state()));
                }
            }
            let Some((n, r)) = running.next().await else { break };
            match r {
                Ok(done) => {
                    outputs[n] = Some(done.outputs.clone());
                    results[n] = Some(done);
                    queue.finish(g, n);
                }
                Err(failed) => {
                    let state = failed.state;
                    results[n] = Some(failed);
                    for s in queue.fail(g, n) {
                        let skip = if state == StepState::Cancelled {
                            StepState::Cancelled
                        } else {
                            StepState::Skipped
                        };
                        results[s] = Some(StepResult::not_run(g.name(s).clone(), skip));
                    }
                }
            }
            if queue.is_finished() && running.is_empty() {
                break;
            }
        }
        debug_assert!((0..g.len()).all(|n| queue.state(n) != NodeState::Running));
        let steps = results
            .into_iter()
            .enumerate()
            .map(|(n, r)| r.unwrap_or_else(|| StepResult::not_run(g.name(n).clone(), ctx.stop_state())))
            .collect();
        ctx.finish(steps)
    }
}

/// Make a step error from a panic payload.
pub(crate) fn panic_message(p: Box<dyn std::any::Any + Send>) -> StepError {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into());
    StepError::internal(format!("step panicked: {msg}"))
}
