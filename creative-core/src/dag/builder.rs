//! A validated DAG of steps, and its builder. The per-job walk over it (the
//! [`Pipeline`](crate::pipeline::Pipeline) implementation) is the executor's: `exec/walk.rs`.

use std::sync::Arc;

use crate::artifact::MediaKind;
use crate::dag::Graph;
use crate::error::PipelineError;
use crate::step::Step;

pub(crate) struct Node {
    pub(crate) name: Arc<str>,
    pub(crate) step: Arc<dyn Step>,
    /// Ancestors (not inputs) whose outputs the step reads by name.
    pub(crate) context: Vec<usize>,
    /// The step calls no provider (its permits come from the local pool).
    pub(crate) local: bool,
}

/// A validated DAG of steps. Build one with [`Dag::builder`]; run it as a
/// [`Pipeline`](crate::pipeline::Pipeline).
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
    pub(crate) name: String,
    pub(crate) nodes: Vec<Node>,
    pub(crate) graph: Graph,
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
/// (naming its steps), a media mismatch between steps whose media are known, a
/// step reading ([`Step::reads`]) one that is not its ancestor.
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
        let mut contexts = Vec::with_capacity(self.nodes.len());
        for (i, (name, step, _)) in self.nodes.iter().enumerate() {
            let mut context = Vec::new();
            for read in step.reads() {
                let j = graph.index_of(&read).filter(|&j| ancestor(&graph, j, i));
                match j {
                    Some(j) if graph.inputs(i).contains(&j) => {}
                    Some(j) => context.push(j),
                    None => {
                        return Err(PipelineError::NotUpstream {
                            step: name.clone(),
                            reads: read,
                        })
                    }
                }
            }
            contexts.push(context);
        }
        let nodes = self
            .nodes
            .into_iter()
            .zip(contexts)
            .map(|((name, step, _), context)| Node {
                name: Arc::from(name),
                local: step.providers().is_empty(),
                step,
                context,
            })
            .collect();
        Ok(Dag {
            name: self.name,
            nodes,
            graph,
        })
    }
}

/// Whether `a` is upstream of `n`: reached walking `n`'s inputs back.
fn ancestor(g: &Graph, a: usize, n: usize) -> bool {
    let mut seen = vec![false; g.len()];
    let mut stack: Vec<usize> = g.inputs(n).to_vec();
    while let Some(x) = stack.pop() {
        if x == a {
            return true;
        }
        if !std::mem::replace(&mut seen[x], true) {
            stack.extend_from_slice(g.inputs(x));
        }
    }
    false
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
