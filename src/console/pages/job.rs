//! One job: its status and error with the fix, every attempt as a timeline
//! (when, the Moodle calls with outcome and latency, the error), the
//! write-backs with their delivery status, the event as received, and the
//! actions: Retry (failed or dead), Run now (queued, waiting in back-off).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::jobs::references;
use super::{Refused, form, missing, refusal, require_csrf};
use crate::console::fix;
use crate::console::layout::{
    Frame, Nav, csrf, dash, job_status, notice, span, time_ago, writeback_status,
};
use crate::console::session::{Session, see_other};
use crate::http::{AppState, Problem};
use crate::ops::{self, Retried, RunNow};
use crate::store::{Attempt, Job, JobStatus, Writeback};

/// How often the page reloads while the job runs or is about to.
const ACTIVE_REFRESH: Duration = Duration::from_secs(2);

/// `GET <path>/jobs/{id}`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return missing(&state, Some(&session), "There is no such job.");
    };
    match render(&state, &session, id, query.as_deref()).await {
        Ok(Some(markup)) => markup.into_response(),
        Ok(None) => missing(&state, Some(&session), "There is no such job."),
        Err(problem) => problem.into_response(),
    }
}

async fn render(
    state: &AppState,
    session: &Session,
    id: Uuid,
    query: Option<&str>,
) -> Result<Option<Markup>, Problem> {
    let Some(job) = ops::job(&*state.store, &session.caller, id).await? else {
        return Ok(None);
    };
    let attempts = state.store.attempts(id).await?;
    let writebacks = state.store.writebacks_for_job(id).await?;
    let now = Utc::now();
    let mut frame = Frame::new(&state.console, session, Nav::Jobs);
    frame.refresh = refresh(&job, now, state.console.config.refresh);
    let base = frame.base().to_owned();
    let outcome = job.outcome.clone().unwrap_or_default();
    let skip_reason = outcome.get("skip_reason").and_then(|v| v.as_str());
    let steps = outcome
        .get("steps")
        .and_then(|v| v.as_array())
        .filter(|s| !s.is_empty());
    let waiting = job.status == JobStatus::Queued && job.next_attempt_at.is_some_and(|t| t > now);
    let title = format!("{} job", job.kind);
    Ok(Some(frame.page(
        &title,
        html! {
            @match query {
                Some("done=retried") => (notice("The job is queued again.")),
                Some("done=run-now") => (notice("The job is due now; a worker picks it up next.")),
                _ => {}
            }
            dl class="facts" {
                dt { "Status" } dd { (job_status(job.status)) }
                dt { "Tenant" } dd { (job.tenant) }
                dt { "References" } dd { (references(&job.event)) }
                dt { "Job id" } dd class="mono" { (job.id) }
                dt { "Received" } dd { (time_ago(job.created_at, now)) }
                dt { "Attempts" } dd { (job.attempts) }
                @if let (JobStatus::Queued, Some(at)) = (job.status, job.next_attempt_at) {
                    dt { "Next attempt" } dd { (time_ago(at, now)) }
                }
                @if let Some(reason) = skip_reason {
                    dt { "Skipped because" } dd { (reason) }
                }
            }
            @if let Some(error) = &job.last_error {
                (error_box(&job, error))
            }
            @if matches!(job.status, JobStatus::Failed | JobStatus::Dead) || waiting {
                div class="actions" {
                    @if matches!(job.status, JobStatus::Failed | JobStatus::Dead) {
                        form method="post" action={ (base) "/jobs/" (job.id) "/retry" } class="inline" {
                            (csrf(session))
                            button type="submit" { "Retry" }
                        }
                        span class="hint" { " Fix the cause first; the job then runs again from the start." }
                    }
                    @if waiting {
                        form method="post" action={ (base) "/jobs/" (job.id) "/run-now" } class="inline" {
                            (csrf(session))
                            button type="submit" { "Run now" }
                        }
                        span class="hint" { " Instead of waiting for the back-off." }
                    }
                }
            }
            @if let Some(steps) = steps {
                h2 { "What it did" }
                ul class="steps" {
                    @for step in steps { li { (step.as_str().unwrap_or_default()) } }
                }
            }
            h2 { "Attempts" }
            @if attempts.is_empty() {
                p { "Not run yet." }
            } @else {
                ol class="timeline" {
                    @for a in &attempts { (attempt(a, now)) }
                }
            }
            h2 { "Write-backs" }
            @if writebacks.is_empty() {
                p { "None: this job wrote nothing back to accessplanit." }
            } @else {
                (writeback_table(&writebacks))
            }
            h2 { "Event as received" }
            pre class="event" tabindex="0" aria-label="The event as received, as JSON" {
                (serde_json::to_string_pretty(&job.event).unwrap_or_default())
            }
        },
    )))
}

/// The page reloads while the job is running or due soon; while it waits
/// longer, as often as the overview; never once it is final.
fn refresh(job: &Job, now: DateTime<Utc>, idle: Duration) -> Option<Duration> {
    match job.status {
        JobStatus::Running => Some(ACTIVE_REFRESH),
        JobStatus::Queued => {
            let soon = job
                .next_attempt_at
                .is_none_or(|t| t <= now + chrono::TimeDelta::seconds(10));
            if soon {
                Some(ACTIVE_REFRESH)
            } else {
                Some(idle).filter(|d| !d.is_zero())
            }
        }
        _ => None,
    }
}

fn error_box(job: &Job, error: &str) -> Markup {
    let (what, fix) = fix::split(error);
    let heading = match job.status {
        JobStatus::Failed => "Failed: retrying cannot fix this",
        JobStatus::Dead => "Dead: it kept failing past retry.max_age",
        JobStatus::Queued => "The last attempt failed; it will be retried",
        _ => "Last error",
    };
    html! {
        section class="error-box" aria-labelledby="error-heading" {
            h2 id="error-heading" { (heading) }
            p class="what" { (what) }
            @if let Some(fix) = fix {
                p class="fix" { strong { "Fix: " } (fix) }
            }
        }
    }
}

fn attempt(a: &Attempt, now: DateTime<Utc>) -> Markup {
    let took = a
        .finished_at
        .map(|f| (f - a.started_at).num_milliseconds().max(0));
    html! {
        li {
            h3 {
                "Attempt " (a.number) " · "
                @match a.result {
                    Some(r) => (job_status(r)),
                    None => "not finished",
                }
            }
            p class="muted" {
                "Started " (time_ago(a.started_at, now))
                @if let Some(ms) = took { ", took " (ms_text(ms)) }
            }
            @if a.calls.is_empty() {
                p { "No Moodle call." }
            } @else {
                div class="scroll" {
                    table class="calls" {
                        caption class="visually-hidden" { "Moodle calls of attempt " (a.number) }
                        thead { tr { th scope="col" { "Moodle function" } th scope="col" { "Outcome" } th scope="col" { "Latency" } } }
                        tbody {
                            @for c in &a.calls {
                                tr {
                                    td class="mono" { (c.function) }
                                    td {
                                        @if c.outcome == "ok" {
                                            span class="status status-succeeded" { span aria-hidden="true" { "✓" } " ok" }
                                        } @else {
                                            span class="status status-failed" { span aria-hidden="true" { "✗" } " " (c.outcome) }
                                        }
                                    }
                                    td { (ms_text(c.ms as i64)) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(e) = &a.error {
                p class="attempt-error" { strong { "Error: " } (e) }
            }
        }
    }
}

fn ms_text(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        span(ms / 1000)
    }
}

fn writeback_table(writebacks: &[Writeback]) -> Markup {
    html! {
        div class="scroll" {
            table class="writebacks" {
                caption class="visually-hidden" { "Write-backs of this job" }
                thead { tr {
                    th scope="col" { "What" } th scope="col" { "accessplanit ID" } th scope="col" { "Moodle ID" }
                    th scope="col" { "Delivery" } th scope="col" { "Attempts" } th scope="col" { "Last error" }
                } }
                tbody {
                    @for w in writebacks {
                        tr {
                            td { (w.entity.as_str()) }
                            td { (w.apit_id) }
                            td { @match w.payload.get("moodle_id") { Some(v) => (v), None => (dash()) } }
                            td { (writeback_status(w.status)) }
                            td { (w.attempts) }
                            td { @match &w.last_error { Some(e) => (e), None => (dash()) } }
                        }
                    }
                }
            }
        }
    }
}

/// The form of the job actions.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
}

/// `POST <path>/jobs/{id}/retry`.
pub async fn retry(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (id, _) = match action(&state, &session, &id, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match ops::retry(&*state.store, &state.wake, &session.caller, id).await {
        Ok(Retried::Requeued(_)) => see_other(&format!(
            "{}/jobs/{id}?done=retried",
            state.console.config.path
        )),
        Ok(Retried::NotRetryable(job)) => refusal(
            &state,
            Some(&session),
            StatusCode::CONFLICT,
            &format!(
                "The job is {}: only failed or dead jobs can be retried.",
                job.status.as_str()
            ),
        ),
        Ok(Retried::NotFound) => missing(&state, Some(&session), "There is no such job."),
        Err(e) => Problem::from(e).into_response(),
    }
}

/// `POST <path>/jobs/{id}/run-now`.
pub async fn run_now(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (id, _) = match action(&state, &session, &id, &body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match ops::run_now(&*state.store, &state.wake, &session.caller, id).await {
        Ok(RunNow::Due(_)) => see_other(&format!(
            "{}/jobs/{id}?done=run-now",
            state.console.config.path
        )),
        Ok(RunNow::NotQueued(job)) => refusal(
            &state,
            Some(&session),
            StatusCode::CONFLICT,
            &format!(
                "The job is {}: only a queued job can be run now.",
                job.status.as_str()
            ),
        ),
        Ok(RunNow::NotFound) => missing(&state, Some(&session), "There is no such job."),
        Err(e) => Problem::from(e).into_response(),
    }
}

/// The checks every job action makes first: a readable form with this
/// session's CSRF token, and a job id.
fn action(
    state: &AppState,
    session: &Session,
    id: &str,
    body: &[u8],
) -> Result<(Uuid, ActionForm), Refused> {
    let input: ActionForm = form(state, Some(session), body)?;
    require_csrf(state, session, input.csrf.as_deref())?;
    let id = Uuid::parse_str(id)
        .map_err(|_| Box::new(missing(state, Some(session), "There is no such job.")))?;
    Ok((id, input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(ms_text(35), "35 ms");
        assert_eq!(ms_text(2_500), "2 s");
        assert_eq!(span(3 * 3600 + 60), "3 h 1 min");
    }
}
