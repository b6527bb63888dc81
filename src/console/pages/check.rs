//! A tenant's Check page: runs the preflight (the same checks and ✓/✗ rows as
//! `apit-moodle-sync check`, with the fixes) and keeps the result for the overview.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::html;

use super::missing;
use super::overview::preflight;
use crate::check;
use crate::console::layout::{Frame, Nav};
use crate::console::session::Session;
use crate::http::AppState;

/// `GET <path>/tenants/{tenant}/check`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
) -> Response {
    let Some(t) = state
        .tenants
        .get(&tenant)
        .filter(|t| session.caller.sees(&t.name))
    else {
        return missing(&state, Some(&session), "There is no such tenant.");
    };
    let moodle = t.moodle.session();
    let report = check::check_tenant(&t.name, &t.config, &moodle).await;
    tracing::info!(tenant = %t.name, ok = report.ok, by = session.caller.name(), "preflight check run from the console");
    state.console.remember_check(&report);
    let frame = Frame::new(&state.console, &session, Nav::Overview);
    let base = frame.base().to_owned();
    let now = Utc::now();
    frame
        .page(
            &format!("Check: {tenant}"),
            html! {
                p {
                    "The same checks as " code { "apit-moodle-sync check --tenant " (tenant) } ": the Moodle site, "
                    "the token, the web-service functions, the category and role, what the token can see of "
                    "users, and the write-back target."
                }
                (preflight(&report, now, now))
                p class="actions" {
                    a href={ (base) "/tenants/" (tenant) "/check" } class="button" { "Run it again" }
                    " "
                    a href={ (base) "/" } class="button secondary" { "Back to the overview" }
                }
            },
        )
        .into_response()
}
