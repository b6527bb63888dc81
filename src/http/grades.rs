//! `POST /v1/tenants/{tenant}/grades/sync`: run a grades pass now, as a job.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::Utc;

use super::AppState;
use super::auth::require_admin;
use super::problem::Problem;
use super::wait;
use crate::store::Admission;
use crate::sync::grades::{self, Trigger};

/// The handler: `202 {job_id, status, links}`, or the pass's outcome with `?wait=N`.
///
/// A pass that is already queued or running is answered as it is rather than
/// doubled; after a finished pass a new one runs.
pub async fn sync(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    // The admin token first: an unauthenticated caller learns nothing about tenants.
    require_admin(&headers, state.admin_token.as_ref())?;
    if state.tenants.get(&tenant).is_none() {
        return Err(Problem::not_found(format!("unknown tenant {tenant}")));
    }
    let mut wait = Duration::ZERO;
    for (key, value) in &query {
        match key.as_str() {
            "wait" => wait = wait::parse(value)?,
            other => {
                return Err(Problem::bad_query(format!(
                    "unknown query parameter {other}"
                )));
            }
        }
    }
    let admission = state
        .store
        .admit(grades::job(&tenant, Trigger::Request), true, Utc::now())
        .await?;
    let job = match admission {
        Admission::Created(job) | Admission::Requeued(job) => {
            state.wake.notify_one();
            tracing::info!(%tenant, job_id = %job.id, "grades pass requested");
            job
        }
        Admission::Existing(job) => {
            tracing::info!(%tenant, job_id = %job.id, status = job.status.as_str(), "grades pass already under way");
            job
        }
    };
    wait::answer(&state, job, wait).await
}
