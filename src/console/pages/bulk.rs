//! Bulk retry: every failed or dead job of a tenant, optionally of one kind or
//! one error. The page lists what would be retried; only its confirm button
//! (a form with the CSRF token) retries.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::html;
use serde::Deserialize;

use super::jobs::{references, short};
use super::{form, missing, require_csrf};
use crate::console::layout::{Frame, Nav, csrf, job_status, one_line, time_ago};
use crate::console::session::{Session, see_other};
use crate::http::{AppState, Problem};
use crate::ops::{self, BULK_MAX, Selection};
use crate::store::JobKind;

/// Jobs listed on the confirmation.
const SHOWN: usize = 20;

/// The narrowing, from the page's query or the confirm form.
#[derive(Debug, Default, Deserialize)]
pub struct Narrow {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    error: String,
    csrf: Option<String>,
}

impl Narrow {
    fn selection(&self, tenant: &str) -> Option<Selection> {
        let kind = match self.kind.trim() {
            "" => None,
            k => Some(JobKind::parse(k)?),
        };
        Some(Selection {
            tenant: tenant.to_owned(),
            kind,
            error: Some(self.error.clone()).filter(|e| !e.is_empty()),
        })
    }
}

fn visible(state: &AppState, session: &Session, tenant: &str) -> bool {
    state.tenants.get(tenant).is_some() && session.caller.sees(tenant)
}

/// `GET <path>/tenants/{tenant}/bulk-retry?kind&error`: what would be retried, and the confirm button.
pub async fn review(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if !visible(&state, &session, &tenant) {
        return missing(&state, Some(&session), "There is no such tenant.");
    }
    let narrow: Narrow =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let selection = narrow.selection(&tenant).unwrap_or(Selection {
        tenant: tenant.clone(),
        ..Selection::default()
    });
    let (groups, jobs) = match tokio::try_join!(
        ops::error_groups(&*state.store, &session.caller, &tenant),
        ops::selected(&*state.store, &session.caller, &selection),
    ) {
        Ok(v) => v,
        Err(e) => return Problem::from(e).into_response(),
    };
    let frame = Frame::new(&state.console, &session, Nav::Jobs);
    let base = frame.base().to_owned();
    let now = Utc::now();
    let n = jobs.len();
    frame
        .page(
            &format!("Retry failed and dead jobs of {tenant}"),
            html! {
                form method="get" action={ (base) "/tenants/" (tenant) "/bulk-retry" } class="filters" {
                    p {
                        label for="kind" { "Kind" }
                        select id="kind" name="kind" {
                            option value="" { "any kind" }
                            @for k in JobKind::ALL {
                                option value=(k.as_str()) selected[selection.kind == Some(k)] { (k.as_str()) }
                            }
                        }
                    }
                    p {
                        label for="error" { "Error" }
                        select id="error" name="error" {
                            option value="" { "any error" }
                            @for (text, count) in &groups {
                                option value=(text) selected[selection.error.as_deref() == Some(text.as_str())] {
                                    (count) " × " (text.chars().take(120).collect::<String>())
                                }
                            }
                        }
                    }
                    p { button type="submit" class="secondary" { "Show matching jobs" } }
                }
                @if n == 0 {
                    p { "No failed or dead job matches: nothing to retry." }
                } @else {
                    section class="confirm" aria-labelledby="confirm-heading" {
                        h2 id="confirm-heading" {
                            (n) " job" @if n != 1 { "s" } " will be queued again"
                        }
                        p {
                            "Each runs again from the start. Fix the cause first (the job pages say how), "
                            "or they fail again."
                            @if n == BULK_MAX { " At most " (BULK_MAX) " are taken at once; retry again for the rest." }
                        }
                        form method="post" action={ (base) "/tenants/" (tenant) "/bulk-retry" } {
                            (csrf(&session))
                            input type="hidden" name="kind" value=(selection.kind.map(|k| k.as_str()).unwrap_or(""));
                            input type="hidden" name="error" value=(selection.error.clone().unwrap_or_default());
                            button type="submit" { "Yes, retry " (n) " job" @if n != 1 { "s" } }
                            " "
                            a href={ (base) "/" } { "Cancel" }
                        }
                        div class="scroll" {
                            table class="jobs" {
                                caption {
                                    @if n > SHOWN { "The newest " (SHOWN) " of them" } @else { "The jobs" }
                                }
                                thead { tr {
                                    th scope="col" { "Job" } th scope="col" { "Status" } th scope="col" { "References" }
                                    th scope="col" { "Received" } th scope="col" { "Error" }
                                } }
                                tbody {
                                    @for job in jobs.iter().take(SHOWN) {
                                        tr {
                                            td { a href={ (base) "/jobs/" (job.id) } { (job.kind) " " span class="muted mono" { (short(job.id)) } } }
                                            td { (job_status(job.status)) }
                                            td { (references(&job.event)) }
                                            td { (time_ago(job.created_at, now)) }
                                            td class="error" { (one_line(job.last_error.as_deref().unwrap_or_default(), 140)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        )
        .into_response()
}

/// `POST <path>/tenants/{tenant}/bulk-retry`: retries the selection, then shows the tenant's jobs.
pub async fn submit(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let narrow: Narrow = match form(&state, Some(&session), &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if let Err(r) = require_csrf(&state, &session, narrow.csrf.as_deref()) {
        return *r;
    }
    if !visible(&state, &session, &tenant) {
        return missing(&state, Some(&session), "There is no such tenant.");
    }
    let Some(selection) = narrow.selection(&tenant) else {
        return missing(&state, Some(&session), "There is no such kind of job.");
    };
    match ops::bulk_retry(&*state.store, &state.wake, &session.caller, &selection).await {
        Ok(n) => see_other(&format!(
            "{}/jobs?tenant={tenant}&requeued={n}",
            state.console.config.path
        )),
        Err(e) => Problem::from(e).into_response(),
    }
}
