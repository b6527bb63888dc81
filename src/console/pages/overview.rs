//! The overview: per tenant the caller sees, the queue (queued, running,
//! failed, dead, oldest queued), the last 24 hours as charts, and the last
//! preflight. It reloads itself every `console.refresh`.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use maud::{Markup, html};

use crate::check::{CheckReport, Status as CheckStatus};
use crate::console::chart;
use crate::console::layout::{Frame, Nav, check_status, job_status, span, time_ago};
use crate::console::session::Session;
use crate::http::AppState;
use crate::http::Problem;
use crate::store::{HourActivity, JobStatus};

/// The statuses the overview counts.
const COUNTED: [JobStatus; 4] = [
    JobStatus::Queued,
    JobStatus::Running,
    JobStatus::Failed,
    JobStatus::Dead,
];

/// Job counts and oldest creation time, per tenant and status.
type Counts = HashMap<(String, JobStatus), (u64, Option<DateTime<Utc>>)>;

/// `GET <path>/`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    RawQuery(query): RawQuery,
) -> Response {
    match render(&state, &session, query.as_deref() == Some("refresh=off")).await {
        Ok(markup) => markup.into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn render(state: &AppState, session: &Session, paused: bool) -> Result<Markup, Problem> {
    let now = Utc::now();
    let tenants: Vec<String> = state
        .tenants
        .iter()
        .map(|t| t.name.clone())
        .filter(|t| session.caller.sees(t))
        .collect();
    let mut counts = Counts::new();
    for stat in state.store.queue_stats().await? {
        counts.insert((stat.tenant, stat.status), (stat.count, stat.oldest));
    }
    let from = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now) - TimeDelta::hours(23);
    let mut sections = Vec::new();
    for tenant in &tenants {
        let activity = state.store.activity(tenant, from, 24).await?;
        sections.push(tenant_section(state, tenant, &counts, &activity, now));
    }
    let mut frame = Frame::new(&state.console, session, Nav::Overview);
    let refresh = state.console.config.refresh;
    if !paused && !refresh.is_zero() {
        frame.refresh = Some(refresh);
    }
    let base = frame.base().to_owned();
    Ok(frame.page(
        "Overview",
        html! {
            p class="muted refresh" {
                "As of " (now.format("%H:%M:%S UTC")) ". "
                @if frame.refresh.is_some() {
                    "This page reloads itself every " (span(refresh.as_secs() as i64)) ". "
                    a href={ (base) "/?refresh=off" } { "Stop reloading" }
                } @else {
                    a href={ (base) "/" } { "Reload" }
                    @if !refresh.is_zero() { " (and reload by itself)" }
                }
            }
            @if tenants.is_empty() {
                p { "No tenant is configured for you." }
            }
            @for section in &sections { (section) }
        },
    ))
}

fn tenant_section(
    state: &AppState,
    tenant: &str,
    counts: &Counts,
    activity: &[HourActivity],
    now: DateTime<Utc>,
) -> Markup {
    let base = &state.console.config.path;
    let count = |s: JobStatus| counts.get(&(tenant.to_owned(), s)).map_or(0, |c| c.0);
    let oldest = counts
        .get(&(tenant.to_owned(), JobStatus::Queued))
        .and_then(|c| c.1);
    let heading = format!("tenant-{tenant}");
    let last = state.console.last_check(tenant);
    html! {
        section class="tenant" aria-labelledby=(heading) {
            h2 id=(heading) { "Tenant " (tenant) }
            ul class="counts" aria-label={ "Jobs of " (tenant) } {
                @for s in COUNTED {
                    li class={ "count count-" (s.as_str()) } {
                        a href={ (base) "/jobs?tenant=" (tenant) "&status=" (s.as_str()) } {
                            span class="n" { (count(s)) }
                            " " (job_status(s))
                        }
                    }
                }
                li class="count" {
                    span class="n" {
                        @match oldest {
                            Some(t) => (span((now - t).num_seconds().max(0))),
                            None => "none",
                        }
                    }
                    " oldest queued"
                }
            }
            h3 { "Last 24 hours" }
            (chart::activity(tenant, activity))
            h3 { "Preflight" }
            @match &last {
                Some((at, report)) => (preflight(report, *at, now)),
                None => p { "Not checked since the service started." },
            }
            p class="actions" {
                a href={ (base) "/tenants/" (tenant) "/check" } class="button" { "Run the check" }
                " "
                a href={ (base) "/jobs?tenant=" (tenant) } class="button secondary" { "Jobs" }
                " "
                a href={ (base) "/tenants/" (tenant) "/bulk-retry" } class="button secondary" { "Retry failed and dead jobs…" }
            }
        }
    }
}

/// A preflight report as ✓/✗ rows with the fix under each failure.
pub fn preflight(report: &CheckReport, at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    let failed = report
        .rows
        .iter()
        .filter(|r| r.status == CheckStatus::Fail)
        .count();
    html! {
        p {
            @if report.ok {
                strong { "✓ Every check passed" }
            } @else {
                strong { "✗ " (failed) " of " (report.rows.len()) " checks failed" }
            }
            " — " (report.moodle_url) ", run " (time_ago(at, now)) "."
        }
        div class="scroll" {
            table class="checks" {
                caption class="visually-hidden" { "Preflight checks of " (report.tenant) }
                thead { tr { th scope="col" { "Result" } th scope="col" { "Check" } th scope="col" { "Found" } } }
                tbody {
                    @for row in &report.rows {
                        tr {
                            td { (check_status(row.status)) }
                            th scope="row" { (row.name) }
                            td {
                                (row.detail)
                                @if let Some(fix) = &row.fix {
                                    p class="fix" { strong { "Fix: " } (fix) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
