//! Admin reads and actions on jobs, and the job views every answer shares.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::AppState;
use super::extract::{Caller, ValidPath, ValidQuery, params};
use super::problem::Problem;
use crate::ops::{self, Retried};
use crate::store::{
    Attempt, Entity, Job, JobFilter, JobKind, JobStatus, Writeback, WritebackStatus,
};

/// Links from a job answer.
#[derive(Debug, Serialize)]
pub struct JobLinks {
    #[serde(rename = "self")]
    pub self_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
}

impl JobLinks {
    fn of(job: &Job) -> Self {
        let self_ = format!("/v1/jobs/{}", job.id);
        let retry = matches!(job.status, JobStatus::Failed | JobStatus::Dead)
            .then(|| format!("{self_}/retry"));
        JobLinks { self_, retry }
    }
}

/// `202 {job_id, status, links}`: accepted, not finished.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub job_id: Uuid,
    pub status: JobStatus,
    /// Only on a job waiting to be retried: why its last attempt failed…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// …and when it runs again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub links: JobLinks,
}

impl Accepted {
    /// The 202 answer for a job.
    pub fn of(job: &Job) -> Self {
        let retrying = job.status == JobStatus::Queued && job.last_error.is_some();
        Accepted {
            job_id: job.id,
            status: job.status,
            last_error: job.last_error.clone().filter(|_| retrying),
            next_attempt_at: job.next_attempt_at.filter(|_| retrying),
            links: JobLinks::of(job),
        }
    }
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let location = self.links.self_.clone();
        (
            StatusCode::ACCEPTED,
            [(axum::http::header::LOCATION, location)],
            Json(self),
        )
            .into_response()
    }
}

/// A write-back as shown on its job.
#[derive(Debug, Serialize)]
pub struct WritebackView {
    pub entity: Entity,
    pub accessplanit_id: String,
    pub moodle_id: Option<Value>,
    pub status: WritebackStatus,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl From<Writeback> for WritebackView {
    fn from(w: Writeback) -> Self {
        WritebackView {
            moodle_id: w.payload.get("moodle_id").cloned(),
            entity: w.entity,
            accessplanit_id: w.apit_id,
            status: w.status,
            attempts: w.attempts,
            last_error: w.last_error,
        }
    }
}

/// A job with its outcome: status, Moodle IDs, calls, steps, skip reason or error.
#[derive(Debug, Serialize)]
pub struct JobView {
    pub job_id: Uuid,
    pub tenant: String,
    pub kind: JobKind,
    pub status: JobStatus,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The final error of a failed or dead job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// Moodle IDs resolved: `course_id`, `user_id`, `role_id`.
    pub moodle: Value,
    /// The Moodle calls of the last attempt.
    pub calls: Value,
    pub steps: Value,
    /// Grades passes only: courses read, scores written, unchanged, errors….
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grades: Option<Value>,
    /// Detail only: the stored event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
    /// Detail only: every attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Attempt>>,
    /// Detail only: the write-backs this job queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writebacks: Option<Vec<WritebackView>>,
    pub links: JobLinks,
}

impl JobView {
    /// The summary view (lists, `?wait` answers).
    pub fn of(job: &Job) -> Self {
        let outcome = job.outcome.clone().unwrap_or(Value::Null);
        let field = |k: &str, default: Value| outcome.get(k).cloned().unwrap_or(default);
        let error = matches!(job.status, JobStatus::Failed | JobStatus::Dead)
            .then(|| job.last_error.clone())
            .flatten();
        JobView {
            job_id: job.id,
            tenant: job.tenant.clone(),
            kind: job.kind,
            status: job.status,
            attempts: job.attempts,
            created_at: job.created_at,
            updated_at: job.updated_at,
            next_attempt_at: (job.status == JobStatus::Queued)
                .then_some(job.next_attempt_at)
                .flatten(),
            last_error: job.last_error.clone(),
            error,
            skip_reason: outcome
                .get("skip_reason")
                .and_then(Value::as_str)
                .map(str::to_string),
            moodle: field("moodle", Value::Object(Default::default())),
            calls: field("calls", Value::Array(Vec::new())),
            steps: field("steps", Value::Array(Vec::new())),
            grades: outcome.get("grades").cloned(),
            event: None,
            history: None,
            writebacks: None,
            links: JobLinks::of(job),
        }
    }
}

/// `GET /v1/jobs/{id}`: a job of another tenant than the caller's is not found.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(id): ValidPath<String>,
) -> Result<Json<JobView>, Problem> {
    let id = parse_id(&id)?;
    let job = ops::job(&*state.store, &caller, id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no job {id}")))?;
    let mut view = JobView::of(&job);
    view.event = Some(job.event.clone());
    view.history = Some(state.store.attempts(id).await?);
    view.writebacks = Some(
        state
            .store
            .writebacks_for_job(id)
            .await?
            .into_iter()
            .map(WritebackView::from)
            .collect(),
    );
    Ok(Json(view))
}

/// A page of jobs.
#[derive(Debug, Serialize)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<Uuid>,
}

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// The query of `GET /v1/jobs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default, deserialize_with = "params::opt_text")]
    tenant: Option<String>,
    #[serde(default, deserialize_with = "status")]
    status: Option<JobStatus>,
    /// Matched exactly: a kind that does not exist matches no job.
    #[serde(default, deserialize_with = "params::opt_text")]
    kind: Option<String>,
    #[serde(default, rename = "ref", deserialize_with = "params::opt_text")]
    reference: Option<String>,
    #[serde(default, deserialize_with = "limit")]
    limit: Option<u32>,
    #[serde(default, deserialize_with = "cursor")]
    cursor: Option<Uuid>,
}

fn status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<JobStatus>, D::Error> {
    params::opt_parsed(d, JobStatus::parse, |v| {
        format!("status must be one of queued, running, succeeded, skipped, failed, dead (got {v})")
    })
}

fn limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    params::opt_parsed(
        d,
        |v| v.parse().ok().filter(|n| (1..=MAX_LIMIT).contains(n)),
        |_| format!("limit must be 1 to {MAX_LIMIT}"),
    )
}

fn cursor<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
    params::opt_parsed(
        d,
        // Only the hyphenated form `next_cursor` is written in (and the
        // document describes); parse_str would also take braced or bare hex.
        |v| Uuid::try_parse(v).ok().filter(|_| v.len() == 36),
        |_| "cursor is not a job id".to_string(),
    )
}

/// `GET /v1/jobs?tenant&status&kind&ref&limit&cursor`, among the caller's tenants.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ValidQuery(query): ValidQuery<ListQuery>,
) -> Result<Json<JobPage>, Problem> {
    let kind = match query.kind.as_deref().map(JobKind::parse) {
        Some(None) => {
            return Ok(Json(JobPage {
                jobs: Vec::new(),
                next_cursor: None,
            }));
        }
        Some(kind) => kind,
        None => None,
    };
    let filter = JobFilter {
        tenant: query.tenant,
        status: query.status,
        kind,
        reference: query.reference,
        before: query.cursor,
        limit: query.limit.unwrap_or(DEFAULT_LIMIT),
    };
    let jobs = ops::jobs(&*state.store, &caller, &filter).await?;
    let next_cursor = (jobs.len() as u32 == filter.limit)
        .then(|| jobs.last().map(|j| j.id))
        .flatten();
    Ok(Json(JobPage {
        jobs: jobs.iter().map(JobView::of).collect(),
        next_cursor,
    }))
}

/// `POST /v1/jobs/{id}/retry`: re-queue a failed or dead job now.
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    ValidPath(id): ValidPath<String>,
) -> Result<Accepted, Problem> {
    let id = parse_id(&id)?;
    match ops::retry(&*state.store, &state.wake, &caller, id).await? {
        Retried::Requeued(job) => Ok(Accepted::of(&job)),
        Retried::NotRetryable(job) => Err(Problem::conflict(format!(
            "job {id} is {}: only failed or dead jobs can be retried",
            job.status.as_str()
        ))),
        Retried::NotFound => Err(Problem::not_found(format!("no job {id}"))),
    }
}

fn parse_id(id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| Problem::not_found(format!("no job {id}")))
}
