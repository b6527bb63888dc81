//! `POST /v1/tenants/{tenant}/grades/sync`: run a grades pass now, as a job.

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::AppState;
use super::extract::{Caller, ValidPath, ValidQuery, params};
use super::problem::{Problem, within};
use super::wait;
use crate::intake;
use crate::sync::grades::{self, Trigger};

/// The query of a grades-pass request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradesQuery {
    #[serde(default, deserialize_with = "params::wait")]
    wait: Duration,
}

/// The handler: `202 {job_id, status, links}`, or the pass's outcome with `?wait=N`.
///
/// A pass that is already queued or running is answered as it is rather than
/// doubled; after a finished pass a new one runs.
pub async fn sync(
    State(state): State<AppState>,
    // The token first: an unauthenticated caller learns nothing about tenants.
    caller: Caller,
    ValidPath(tenant): ValidPath<String>,
    ValidQuery(query): ValidQuery<GradesQuery>,
) -> Result<Response, Problem> {
    // A tenant the caller does not see is unknown.
    if state.tenants.get(&tenant).is_none() || !caller.sees(&tenant) {
        return Err(Problem::not_found(format!("unknown tenant {tenant}")));
    }
    let job = grades::job(&tenant, Trigger::Request);
    let admission = within(
        state.edge.store_timeout,
        intake::admit(&*state.store, &state.wake, job, true),
    )
    .await?;
    tracing::info!(tenant = %tenant, job_id = %admission.job().id, by = caller.name(), "grades pass requested by an operator");
    wait::answer(&state, admission.into_job(), query.wait).await
}
