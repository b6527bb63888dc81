//! `GET /v1/tenants/{tenant}/check`: the preflight of one tenant, for operators.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::extract::{Caller, ValidPath};
use super::problem::Problem;
use crate::check::{self, CheckReport};

/// Runs every check of the tenant and answers the report: `200` whether or not the
/// checks pass (the body's `ok` says), since the request itself succeeded. A
/// tenant the caller does not see is unknown.
pub async fn tenant(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(tenant): ValidPath<String>,
) -> Result<Json<CheckReport>, Problem> {
    let tenant = state
        .tenants
        .get(&tenant)
        .filter(|t| caller.sees(&t.name))
        .ok_or_else(|| Problem::not_found(format!("unknown tenant {tenant}")))?;
    // The tenant's own client: the check shares its limit on calls in flight.
    let session = tenant.moodle.session();
    let report = check::check_tenant(&tenant.name, &tenant.config, &session).await;
    tracing::info!(tenant = %tenant.name, ok = report.ok, by = caller.name(), "preflight check run");
    state.console.remember_check(&report);
    Ok(Json(report))
}
