//! The per-job walk of a [`Dag`]: ready steps run concurrently, a failed
//! step skips its dependents, a stopping run (cancel, budget) skips the rest
//! while steps that call no provider may still finish paid-for work.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{FuturesUnordered, StreamExt};

use crate::artifact::Artifact;
use crate::dag::{Dag, NodeState};
use crate::error::StepError;
use crate::exec::job::{JobCtx, JobResult, StepResult, StepState};
use crate::pipeline::Pipeline;
use crate::step::StepInputs;

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
                    let group = |i: usize| {
                        (
                            g.name(i).clone(),
                            outputs[i].clone().unwrap_or_else(|| Arc::from(Vec::new())),
                        )
                    };
                    let node = &self.nodes[n];
                    // Ancestors the step's templates read by name: finished
                    // before it (they are upstream), and their outputs are
                    // held for the job in `outputs` (shared, not copied).
                    let inputs = StepInputs::new(g.inputs(n).iter().map(|&i| group(i)).collect())
                        .with_context(node.context.iter().map(|&i| group(i)).collect());
                    running
                        .push(async move { (n, ctx.run_step_as(&node.name, &*node.step, node.local, inputs).await) });
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
