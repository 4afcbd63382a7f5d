//! How a run's outcome reads to a host: its `creative_run_state`, the status
//! `creative_run_wait` returns, and the summary in the last-error message.

use creative_core::{RunOutcome, Status, StepError, StepErrorKind, StepState};

use super::creative_run_state;
use crate::status::creative_status;

pub(super) fn status_of(outcome: &RunOutcome) -> (creative_run_state, creative_status, String) {
    let s = outcome.summary();
    let counts = format!(
        "{} of {} job(s) succeeded, {} failed, {} artifact(s)",
        s.succeeded, s.jobs, s.failed, s.artifacts
    );
    match outcome.status {
        Status::Succeeded => (creative_run_state::Succeeded, creative_status::Ok, counts),
        Status::Cancelled => (
            creative_run_state::Cancelled,
            creative_status::Cancelled,
            format!("run cancelled: {counts}"),
        ),
        Status::BudgetExhausted => (
            creative_run_state::BudgetExhausted,
            creative_status::BudgetExceeded,
            format!("run stopped, a budget ran out: {counts}"),
        ),
        Status::Degraded => {
            let who: Vec<String> = outcome
                .degraded
                .iter()
                .map(|d| {
                    format!(
                        "`{}` failed {} call(s) ({}: {}), served by {}",
                        d.provider,
                        d.calls,
                        d.class,
                        d.sample,
                        d.served_by.join(", ")
                    )
                })
                .collect();
            (
                creative_run_state::Degraded,
                creative_status::Ok,
                format!("run degraded: {counts}; {}", who.join("; ")),
            )
        }
        _ => {
            let state = if outcome.status == Status::Partial {
                creative_run_state::Partial
            } else {
                creative_run_state::Failed
            };
            let first = outcome.jobs.iter().find_map(|j| {
                j.steps
                    .iter()
                    .find(|st| st.state == StepState::Failed)
                    .map(|st| (j.job.key().to_string(), st.step.to_string(), st.error.clone()))
            });
            let (status, detail) = match first {
                Some((job, step, err)) => {
                    let status = match err.as_ref().map(StepError::kind) {
                        Some(StepErrorKind::Provider) => creative_status::ProviderError,
                        Some(StepErrorKind::GateFailed | StepErrorKind::Gate) => creative_status::GateFailed,
                        Some(StepErrorKind::Budget) => creative_status::BudgetExceeded,
                        Some(StepErrorKind::Io) => creative_status::Io,
                        Some(StepErrorKind::Cancelled) => creative_status::Cancelled,
                        _ => creative_status::StepFailed,
                    };
                    let why = err.map(|e| e.to_string()).unwrap_or_else(|| "no error recorded".into());
                    (status, format!("; first failure: job {job}, step `{step}`: {why}"))
                }
                None => (creative_status::StepFailed, String::new()),
            };
            (
                state,
                status,
                format!("run {}: {counts}{detail}", outcome.status.as_str()),
            )
        }
    }
}
