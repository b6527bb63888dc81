//! The jobs list: filters (tenant, status, kind, reference), newest first,
//! paged, one line per job with its status and last error.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::console::layout::{Frame, Nav, dash, job_status, notice, one_line, time_ago};
use crate::console::session::Session;
use crate::http::AppState;
use crate::ops;
use crate::store::{Job, JobFilter, JobKind, JobStatus};

/// Jobs per page.
const PAGE: u32 = 50;

/// The filters, as the form sends them (blank means any).
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    kind: String,
    #[serde(default, rename = "ref")]
    reference: String,
    #[serde(default)]
    before: String,
    /// After a bulk retry: how many jobs it queued.
    #[serde(default)]
    requeued: String,
}

/// `GET <path>/jobs?tenant&status&kind&ref&before`.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    RawQuery(query): RawQuery,
) -> Response {
    let f: Filters =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let kind = text(&f.kind).map(|k| JobKind::parse(&k));
    let filter = JobFilter {
        tenant: text(&f.tenant),
        status: text(&f.status).and_then(|s| JobStatus::parse(&s)),
        kind: kind.flatten(),
        reference: text(&f.reference),
        before: Uuid::parse_str(f.before.trim()).ok(),
        limit: PAGE,
    };
    // A kind that does not exist matches nothing (as in the API).
    let jobs = if matches!(kind, Some(None)) {
        Ok(Vec::new())
    } else {
        ops::jobs(&*state.store, &session.caller, &filter).await
    };
    let jobs = match jobs {
        Ok(jobs) => jobs,
        Err(e) => return crate::http::Problem::from(e).into_response(),
    };
    let frame = Frame::new(&state.console, &session, Nav::Jobs);
    let base = frame.base().to_owned();
    let tenants: Vec<String> = state
        .tenants
        .iter()
        .map(|t| t.name.clone())
        .filter(|t| session.caller.sees(t))
        .collect();
    let older = (jobs.len() as u32 == PAGE)
        .then(|| jobs.last().map(|j| j.id))
        .flatten();
    let keep = |before: Option<Uuid>| {
        let mut q = vec![
            ("tenant", f.tenant.clone()),
            ("status", f.status.clone()),
            ("kind", f.kind.clone()),
            ("ref", f.reference.clone()),
        ];
        if let Some(b) = before {
            q.push(("before", b.to_string()));
        }
        q.retain(|(_, v)| !v.is_empty());
        format!(
            "{base}/jobs?{}",
            serde_urlencoded::to_string(q).unwrap_or_default()
        )
    };
    let now = Utc::now();
    frame
        .page(
            "Jobs",
            html! {
                @if let Ok(n) = f.requeued.parse::<usize>() {
                    (notice(&format!("{n} job{} queued again.", if n == 1 { "" } else { "s" })))
                }
                form method="get" action={ (base) "/jobs" } class="filters" {
                    (select("tenant", "Tenant", &f.tenant, tenants.iter().map(|t| (t.as_str(), t.as_str()))))
                    (select("status", "Status", &f.status, JobStatus::ALL.iter().map(|s| (s.as_str(), s.as_str()))))
                    (select("kind", "Kind", &f.kind, JobKind::ALL.iter().map(|k| (k.as_str(), k.as_str()))))
                    p {
                        label for="ref" { "Reference" }
                        input type="search" id="ref" name="ref" value=(f.reference)
                            placeholder="booking, course or user ID" aria-describedby="ref-hint";
                        span class="hint" id="ref-hint" { "An accessplanit ID, e.g. D555" }
                    }
                    p { button type="submit" { "Filter" } " " a href={ (base) "/jobs" } { "Clear" } }
                }
                @if jobs.is_empty() {
                    p { "No job matches." }
                } @else {
                    div class="scroll" {
                        table class="jobs" {
                            caption class="visually-hidden" { "Jobs, newest first" }
                            thead { tr {
                                th scope="col" { "Job" }
                                th scope="col" { "Status" }
                                th scope="col" { "Tenant" }
                                th scope="col" { "References" }
                                th scope="col" { "Received" }
                                th scope="col" { "Attempts" }
                                th scope="col" { "Last error" }
                            } }
                            tbody {
                                @for job in &jobs { (row(&base, job, now)) }
                            }
                        }
                    }
                }
                nav class="pager" aria-label="Pages" {
                    @if filter.before.is_some() { a href=(keep(None)) { "← Newest" } " " }
                    @if let Some(older) = older { a href=(keep(Some(older))) rel="next" { "Older jobs →" } }
                }
            },
        )
        .into_response()
}

fn row(base: &str, job: &Job, now: chrono::DateTime<Utc>) -> Markup {
    html! {
        tr {
            td { a href={ (base) "/jobs/" (job.id) } { (job.kind) } br; span class="muted mono" { (short(job.id)) } }
            td { (job_status(job.status)) }
            td { (job.tenant) }
            td { (references(&job.event)) }
            td { (time_ago(job.created_at, now)) }
            td { (job.attempts) }
            td class="error" {
                @match &job.last_error {
                    Some(e) => (one_line(e, 140)),
                    None => (dash()),
                }
            }
        }
    }
}

/// The accessplanit IDs an event names: `course C1 · booking D555 · user U9`.
pub fn references(event: &Value) -> Markup {
    let mut parts = Vec::new();
    for (what, pointer) in [
        ("booking", "/booking/id"),
        ("course", "/course/id"),
        ("user", "/user/id"),
    ] {
        if let Some(id) = event.pointer(pointer).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }) {
            parts.push(format!("{what} {id}"));
        }
    }
    if parts.is_empty() {
        return dash();
    }
    html! { (parts.join(" · ")) }
}

/// The end of a job id (its random part: enough to tell jobs apart on a page;
/// the start is the time, shared by jobs of the same moment).
pub fn short(id: Uuid) -> String {
    let s = id.to_string();
    format!("…{}", &s[s.len() - 8..])
}

/// A labelled `<select>` with "any" first.
fn select<'a>(
    name: &str,
    label: &str,
    current: &str,
    options: impl Iterator<Item = (&'a str, &'a str)>,
) -> Markup {
    html! {
        p {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                option value="" { "any" }
                @for (value, text) in options {
                    option value=(value) selected[value == current] { (text) }
                }
            }
        }
    }
}
