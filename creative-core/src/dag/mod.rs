//! The DAG: the pure graph (build, validate, a ready-queue) and [`Dag`], a
//! validated graph of steps with its [`DagBuilder`]. No async, no I/O: the
//! executor walks a `Dag` (`exec/walk.rs`).
//!
//! Modelled on cargo's `DependencyQueue`: the executor asks which nodes are ready,
//! marks nodes finished or failed, and the queue answers with the nodes that became
//! ready. Among ready nodes, the one with the longest chain of work behind it goes
//! first, so the critical path starts early.

use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use crate::error::PipelineError;

mod builder;

pub use builder::{Dag, DagBuilder};

/// A validated directed acyclic graph of named nodes.
#[derive(Debug, Clone)]
pub struct Graph {
    names: Vec<Arc<str>>,
    inputs: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    order: Vec<usize>,
    /// Longest path (in nodes) from each node to a sink, itself included.
    depth: Vec<u32>,
}

impl Graph {
    /// Build from `(name, input names)` pairs, checking names, wiring and cycles.
    ///
    /// ```
    /// use creative_core::dag::Graph;
    /// let g = Graph::build(&[("gen", vec![]), ("small", vec!["gen"]), ("big", vec!["gen"])]).unwrap();
    /// assert_eq!(g.len(), 3);
    /// let err = Graph::build(&[("a", vec!["b"]), ("b", vec!["a"])]).unwrap_err();
    /// assert_eq!(err.to_string(), "cycle between steps: a -> b -> a");
    /// ```
    pub fn build<S: AsRef<str>>(nodes: &[(S, Vec<S>)]) -> Result<Graph, PipelineError> {
        if nodes.is_empty() {
            return Err(PipelineError::Empty);
        }
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(nodes.len());
        for (i, (name, _)) in nodes.iter().enumerate() {
            let name = name.as_ref();
            if !valid_name(name) {
                return Err(PipelineError::InvalidName(name.to_string()));
            }
            if index.insert(name, i).is_some() {
                return Err(PipelineError::DuplicateStep(name.to_string()));
            }
        }
        let mut inputs = Vec::with_capacity(nodes.len());
        let mut dependents = vec![Vec::new(); nodes.len()];
        for (i, (name, ins)) in nodes.iter().enumerate() {
            let mut v = Vec::with_capacity(ins.len());
            for input in ins {
                let j = *index.get(input.as_ref()).ok_or_else(|| PipelineError::UnknownInput {
                    step: name.as_ref().to_string(),
                    input: input.as_ref().to_string(),
                })?;
                if !v.contains(&j) {
                    v.push(j);
                    dependents[j].push(i);
                }
            }
            inputs.push(v);
        }
        let names: Vec<Arc<str>> = nodes.iter().map(|(n, _)| Arc::from(n.as_ref())).collect();
        let order = topo_order(&inputs, &dependents).map_err(|left| {
            PipelineError::Cycle(
                find_cycle(&inputs, &left)
                    .into_iter()
                    .map(|i| names[i].to_string())
                    .collect(),
            )
        })?;
        let mut depth = vec![1u32; names.len()];
        for &n in order.iter().rev() {
            for &d in &dependents[n] {
                depth[n] = depth[n].max(depth[d] + 1);
            }
        }
        Ok(Graph {
            names,
            inputs,
            dependents,
            order,
            depth,
        })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the graph is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// A node's name.
    pub fn name(&self, node: usize) -> &Arc<str> {
        &self.names[node]
    }

    /// Index of a node by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| &**n == name)
    }

    /// A node's inputs, in declaration order.
    pub fn inputs(&self, node: usize) -> &[usize] {
        &self.inputs[node]
    }

    /// The nodes that read a node's output.
    pub fn dependents(&self, node: usize) -> &[usize] {
        &self.dependents[node]
    }

    /// A topological order.
    pub fn topo_order(&self) -> &[usize] {
        &self.order
    }

    /// A fresh ready-queue over this graph.
    pub fn ready_queue(&self) -> ReadyQueue {
        ReadyQueue::new(self)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Kahn's algorithm; on a cycle returns the nodes left unsorted.
fn topo_order(inputs: &[Vec<usize>], dependents: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let mut pending: Vec<usize> = inputs.iter().map(Vec::len).collect();
    let mut stack: Vec<usize> = (0..inputs.len()).rev().filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(inputs.len());
    while let Some(n) = stack.pop() {
        order.push(n);
        for &d in dependents[n].iter().rev() {
            pending[d] -= 1;
            if pending[d] == 0 {
                stack.push(d);
            }
        }
    }
    if order.len() == inputs.len() {
        Ok(order)
    } else {
        Err((0..inputs.len()).filter(|&i| pending[i] > 0).collect())
    }
}

/// Find one cycle among the nodes Kahn's algorithm could not sort, returned as a
/// closed walk (first node repeated at the end) in the direction data flows.
fn find_cycle(inputs: &[Vec<usize>], left: &[usize]) -> Vec<usize> {
    let in_left: Vec<bool> = (0..inputs.len()).map(|i| left.contains(&i)).collect();
    // Every unsorted node has an unsorted input; walk inputs until a node repeats.
    let start = *left.iter().min().expect("a cycle leaves nodes");
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut walk = Vec::new();
    let mut n = start;
    while let std::collections::hash_map::Entry::Vacant(e) = seen.entry(n) {
        e.insert(walk.len());
        walk.push(n);
        n = *inputs[n]
            .iter()
            .find(|&&i| in_left[i])
            .expect("unsorted node has an unsorted input");
    }
    let mut cycle: Vec<usize> = walk[seen[&n]..].to_vec();
    // We walked against the data flow; name the cycle in flow order, from its
    // smallest index so the message is stable.
    cycle.reverse();
    let min_pos = cycle
        .iter()
        .enumerate()
        .min_by_key(|(_, &v)| v)
        .map(|(p, _)| p)
        .unwrap_or(0);
    cycle.rotate_left(min_pos);
    cycle.push(cycle[0]);
    cycle
}

/// The ready-queue of one job over a [`Graph`].
#[derive(Debug, Clone)]
pub struct ReadyQueue {
    pending: Vec<u32>,
    ready: BinaryHeap<(u32, std::cmp::Reverse<usize>)>,
    done: Vec<NodeState>,
    remaining: usize,
}

/// Where a node stands in a [`ReadyQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Waiting for inputs or for its turn.
    Waiting,
    /// Handed out, not yet finished.
    Running,
    /// Finished successfully.
    Done,
    /// Failed.
    Failed,
    /// Will never run because an input failed.
    Skipped,
}

impl ReadyQueue {
    fn new(g: &Graph) -> Self {
        let pending: Vec<u32> = g.inputs.iter().map(|v| v.len() as u32).collect();
        let ready = (0..g.len())
            .filter(|&i| pending[i] == 0)
            .map(|i| (g.depth[i], std::cmp::Reverse(i)))
            .collect();
        ReadyQueue {
            pending,
            ready,
            done: vec![NodeState::Waiting; g.len()],
            remaining: g.len(),
        }
    }

    /// Take the next ready node, if any.
    pub fn pop(&mut self) -> Option<usize> {
        let (_, std::cmp::Reverse(n)) = self.ready.pop()?;
        self.done[n] = NodeState::Running;
        Some(n)
    }

    /// Mark a node finished; its dependents whose inputs are now all done become ready.
    pub fn finish(&mut self, g: &Graph, node: usize) {
        self.done[node] = NodeState::Done;
        self.remaining -= 1;
        for &d in &g.dependents[node] {
            self.pending[d] -= 1;
            if self.pending[d] == 0 && self.done[d] == NodeState::Waiting {
                self.ready.push((g.depth[d], std::cmp::Reverse(d)));
            }
        }
    }

    /// Mark a node failed; every node downstream of it is skipped. Returns the
    /// skipped nodes.
    pub fn fail(&mut self, g: &Graph, node: usize) -> Vec<usize> {
        self.done[node] = NodeState::Failed;
        self.remaining -= 1;
        let mut skipped = Vec::new();
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            for &d in &g.dependents[n] {
                if self.done[d] == NodeState::Waiting {
                    self.done[d] = NodeState::Skipped;
                    self.remaining -= 1;
                    skipped.push(d);
                    stack.push(d);
                }
            }
        }
        // A skipped node can be in the ready heap only if it had no pending inputs,
        // which a dependent of a failed node never has; nothing to remove.
        skipped
    }

    /// Skip every node not yet started (cancellation, budget). Returns them.
    pub fn skip_rest(&mut self) -> Vec<usize> {
        self.ready.clear();
        let mut out = Vec::new();
        for (i, s) in self.done.iter_mut().enumerate() {
            if *s == NodeState::Waiting {
                *s = NodeState::Skipped;
                self.remaining -= 1;
                out.push(i);
            }
        }
        out
    }

    /// Whether every node has finished, failed or been skipped.
    pub fn is_finished(&self) -> bool {
        self.remaining == 0
    }

    /// A node's state.
    pub fn state(&self, node: usize) -> NodeState {
        self.done[node]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(nodes: &[(&str, Vec<&str>)]) -> Result<Graph, PipelineError> {
        Graph::build(nodes)
    }

    #[test]
    fn rejects_duplicates_unknowns_and_empty() {
        assert_eq!(
            g(&[("a", vec![]), ("a", vec![])]).unwrap_err(),
            PipelineError::DuplicateStep("a".into())
        );
        assert_eq!(
            g(&[("a", vec!["zz"])]).unwrap_err(),
            PipelineError::UnknownInput {
                step: "a".into(),
                input: "zz".into()
            }
        );
        assert_eq!(Graph::build::<&str>(&[]).unwrap_err(), PipelineError::Empty);
        assert!(matches!(
            g(&[("a b", vec![])]).unwrap_err(),
            PipelineError::InvalidName(_)
        ));
    }

    #[test]
    fn names_the_nodes_of_a_cycle_in_order() {
        let e = g(&[
            ("src", vec![]),
            ("a", vec!["src", "c"]),
            ("b", vec!["a"]),
            ("c", vec!["b"]),
            ("d", vec!["c"]),
        ])
        .unwrap_err();
        assert_eq!(
            e,
            PipelineError::Cycle(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        let self_loop = g(&[("x", vec!["x"])]).unwrap_err();
        assert_eq!(self_loop.to_string(), "cycle between steps: x -> x");
    }

    #[test]
    fn ready_queue_follows_dependencies_and_prefers_the_critical_path() {
        // gen -> a -> b -> c ; gen -> side
        let graph = g(&[
            ("gen", vec![]),
            ("side", vec!["gen"]),
            ("a", vec!["gen"]),
            ("b", vec!["a"]),
            ("c", vec!["b"]),
        ])
        .unwrap();
        let mut q = graph.ready_queue();
        assert_eq!(q.pop(), Some(0));
        assert_eq!(q.pop(), None);
        q.finish(&graph, 0);
        assert_eq!(q.pop(), Some(2), "the long chain goes first");
        assert_eq!(q.pop(), Some(1));
    }

    #[test]
    fn failure_skips_everything_downstream_only() {
        let graph = g(&[("gen", vec![]), ("x", vec!["gen"]), ("y", vec!["x"]), ("other", vec![])]).unwrap();
        let mut q = graph.ready_queue();
        let first = q.pop().unwrap();
        let second = q.pop().unwrap();
        assert_eq!(
            [first, second]
                .iter()
                .copied()
                .collect::<std::collections::HashSet<_>>(),
            [0, 3].into()
        );
        q.finish(&graph, 3);
        let skipped = q.fail(&graph, 0);
        assert_eq!(skipped.len(), 2);
        assert!(q.is_finished());
        assert_eq!(q.state(3), NodeState::Done);
        assert_eq!(q.state(2), NodeState::Skipped);
    }
}
