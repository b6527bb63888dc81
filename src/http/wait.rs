//! `?wait=N`, shared by every endpoint that admits a job: wait for the job's
//! outcome, then answer `200` with it, or `202` while it is not final. The
//! parameter itself is read by `extract::params::wait`.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::jobs::{Accepted, JobView};
use super::problem::Problem;
use crate::store::{Job, JobStatus};

/// How often a waiting request looks at its job (works across replicas).
const POLL: Duration = Duration::from_millis(20);

/// Waits up to `wait` for the job to become final, then answers: `200` with its
/// outcome when final, else `202`.
pub(super) async fn answer(
    state: &AppState,
    job: Job,
    wait: Duration,
) -> Result<Response, Problem> {
    let job = if wait.is_zero() {
        job
    } else {
        wait_for(state, job, wait).await?
    };
    Ok(if job.status.is_final() {
        (StatusCode::OK, Json(JobView::of(&job))).into_response()
    } else {
        Accepted::of(&job).into_response()
    })
}

/// Polls the job until it is final, or `wait` has passed, or it waits for a retry
/// due after the deadline (a configuration error is retried minutes later: holding
/// the request open would only delay the answer that says so).
async fn wait_for(state: &AppState, mut job: Job, wait: Duration) -> Result<Job, Problem> {
    let deadline = tokio::time::Instant::now() + wait;
    let retry_after_deadline = |job: &Job| {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let left = chrono::Duration::from_std(left).unwrap_or_default();
        job.status == JobStatus::Queued
            && job.attempts > 0
            && job
                .next_attempt_at
                .is_some_and(|at| at > chrono::Utc::now() + left)
    };
    while !job.status.is_final()
        && !retry_after_deadline(&job)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(POLL).await;
        if let Some(fresh) = state.store.job(job.id).await? {
            job = fresh;
        }
    }
    Ok(job)
}
