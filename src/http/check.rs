//! `GET /v1/tenants/{tenant}/check`: the preflight of one tenant, for operators.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::extract::{Admin, ValidPath};
use super::problem::Problem;
use crate::check::{self, CheckReport};

/// Runs every check of the tenant and answers the report: `200` whether or not the
/// checks pass (the body's `ok` says), since the request itself succeeded.
pub async fn tenant(
    State(state): State<AppState>,
    _: Admin,
    ValidPath(tenant): ValidPath<String>,
) -> Result<Json<CheckReport>, Problem> {
    let tenant = state
        .tenants
        .get(&tenant)
        .ok_or_else(|| Problem::not_found(format!("unknown tenant {tenant}")))?;
    // The tenant's own client: the check shares its limit on calls in flight.
    let session = tenant.moodle.session();
    let report = check::check_tenant(&tenant.name, &tenant.config, &session).await;
    tracing::info!(tenant = %tenant.name, ok = report.ok, "preflight check run");
    Ok(Json(report))
}
