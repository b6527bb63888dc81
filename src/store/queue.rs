//! The job queue: what [`JobQueue`] stores about jobs, and the operations on it.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::StoreResult;
use crate::events::EventKind;
use crate::moodle::CallRecord;

/// The life-cycle state of a job (SPEC §4; the names are a contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting to run: the first time, or again after a retryable error.
    Queued,
    /// Claimed by a worker whose lease has not expired.
    Running,
    /// Done.
    Succeeded,
    /// Nothing to do; the outcome says why.
    Skipped,
    /// An error retrying cannot fix; fix the data, then retry by hand.
    Failed,
    /// Retryable errors went on past `retry.max_age`.
    Dead,
}

impl JobStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Skipped,
        JobStatus::Failed,
        JobStatus::Dead,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Skipped => "skipped",
            JobStatus::Failed => "failed",
            JobStatus::Dead => "dead",
        }
    }

    /// Parses a stored or user-given name.
    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True for the statuses a job never leaves on its own.
    pub fn is_final(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

/// What a job does: one of the webhook events, or a grades pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// A webhook event of this kind.
    Event(EventKind),
    /// A scores-back pass over a tenant's enrolments.
    GradesSync,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 5] = [
        JobKind::Event(EventKind::CourseSaved),
        JobKind::Event(EventKind::CourseDateChanged),
        JobKind::Event(EventKind::BookingCreated),
        JobKind::Event(EventKind::BookingCancelled),
        JobKind::GradesSync,
    ];

    /// The stored and displayed name (an event's URL slug, or `grades-sync`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Event(kind) => kind.as_str(),
            JobKind::GradesSync => "grades-sync",
        }
    }

    /// Parses a stored or user-given name.
    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for JobKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A job to admit (one accepted event).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub tenant: String,
    pub kind: JobKind,
    /// The validated event as JSON (what the worker runs).
    pub event: Value,
    /// Ordering keys: jobs sharing a key run one at a time, in arrival order.
    pub keys: Vec<String>,
    /// `Idempotency-Key` header, else the body's `event_id`.
    pub idempotency_key: Option<String>,
    /// The entity for the newest-event rule: `<kind>:<course or booking id>`.
    pub entity: String,
    /// Hex SHA-256 of the canonical event.
    pub body_hash: String,
}

/// A stored job.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: Uuid,
    /// Queue position: arrival order, renewed when a finished job is re-queued.
    pub seq: i64,
    pub tenant: String,
    pub kind: JobKind,
    pub event: Value,
    pub keys: Vec<String>,
    pub status: JobStatus,
    /// Attempts started so far.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When a queued job may run next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Start of the current retry window (`retry.max_age` counts from here).
    pub retry_since: DateTime<Utc>,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// What the last finished attempt produced (Moodle IDs, calls, skip reason…).
    pub outcome: Option<Value>,
}

/// What [`JobQueue::admit`] did with a new event.
#[derive(Debug, Clone)]
pub enum Admission {
    /// A new job was stored.
    Created(Job),
    /// A re-send of a job that is queued, running, succeeded or skipped: returned as it is.
    Existing(Job),
    /// A re-send of a failed or dead job: it was queued again.
    Requeued(Job),
}

impl Admission {
    /// The job, whatever happened.
    pub fn job(&self) -> &Job {
        match self {
            Admission::Created(j) | Admission::Existing(j) | Admission::Requeued(j) => j,
        }
    }

    /// The job, whatever happened.
    pub fn into_job(self) -> Job {
        match self {
            Admission::Created(j) | Admission::Existing(j) | Admission::Requeued(j) => j,
        }
    }

    /// True when the job will run because of this admission (new or re-queued).
    pub fn queued_work(&self) -> bool {
        !matches!(self, Admission::Existing(_))
    }
}

/// Filters for listing jobs, newest first.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub tenant: Option<String>,
    pub status: Option<JobStatus>,
    pub kind: Option<JobKind>,
    /// Jobs whose ordering keys mention this accessplanit ID (exact match on the
    /// part after the last `:`).
    pub reference: Option<String>,
    /// Only jobs created before this one (the cursor of the previous page).
    pub before: Option<Uuid>,
    /// At most this many; 0 means no limit.
    pub limit: u32,
}

/// One attempt of a job (append-only history).
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// 1-based.
    pub number: u32,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Every Moodle call made, in order.
    pub calls: Vec<CallRecord>,
    pub error: Option<String>,
    /// The status the job took after this attempt.
    pub result: Option<JobStatus>,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct Finish {
    /// `Queued` to retry at `next_attempt_at`, or a final status.
    pub status: JobStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub outcome: Option<Value>,
    pub calls: Vec<CallRecord>,
}

/// What [`JobQueue::retry`] did.
#[derive(Debug, Clone)]
pub enum RetryResult {
    Requeued(Job),
    /// The job is not failed or dead; nothing changed.
    NotRetryable(Job),
    NotFound,
}

/// Queue figures for one tenant and status.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStat {
    pub tenant: String,
    pub status: JobStatus,
    pub count: u64,
    /// Creation time of the oldest job in this group.
    pub oldest: Option<DateTime<Utc>>,
}

/// The job queue: admission with idempotency, claiming in key order with leases,
/// attempts, retries. Used by the HTTP layer and the worker.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Answers when the database is reachable (readiness).
    async fn ping(&self) -> StoreResult<()>;

    /// Admits an event in ONE transaction, applying SPEC §2 idempotency:
    /// - with an `idempotency_key` seen before (same tenant): the job it points at
    ///   is returned as it is when queued/running/succeeded/skipped ([`Admission::Existing`]),
    ///   re-queued when failed/dead ([`Admission::Requeued`]); with `force` a
    ///   succeeded/skipped job is not returned: a new job is created and the key
    ///   points at it from then on;
    /// - without a key: the newest job of the same (tenant, entity) decides: same
    ///   `body_hash` → treated as above; otherwise a new job;
    /// - a created job becomes the newest for its entity, gets the next `seq`,
    ///   status `queued`, `next_attempt_at = now`, and its ordering keys.
    async fn admit(&self, job: NewJob, force: bool, now: DateTime<Utc>) -> StoreResult<Admission>;

    /// One job.
    async fn job(&self, id: Uuid) -> StoreResult<Option<Job>>;

    /// Jobs matching the filter, newest first (by id, which is time-ordered).
    async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>>;

    /// Every attempt of a job, oldest first.
    async fn attempts(&self, job_id: Uuid) -> StoreResult<Vec<Attempt>>;

    /// Claims up to `limit` of `tenant`'s runnable jobs, oldest due first, and
    /// returns them as running.
    ///
    /// Runnable: `queued` with `next_attempt_at <= now`, or `running` with
    /// `lease_until < now` (its worker died); and no job with a smaller `seq`
    /// that shares an ordering key is queued or running. Claiming sets
    /// `status = running`, `lease_until = now + lease`, `attempts += 1`, opens
    /// attempt number `attempts`, and closes an earlier attempt left open by a
    /// dead worker with an error saying so. Safe under concurrent claimers
    /// (several replicas): a job is handed to one claimer only. Costs what is
    /// claimable, not the size of the queue: blocked and waiting jobs are not read.
    async fn claim(
        &self,
        tenant: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<Job>>;

    /// Extends the lease of a running job; false when the claim was lost
    /// (the job is no longer running under this attempt number).
    async fn extend_lease(&self, id: Uuid, attempt: u32, until: DateTime<Utc>)
    -> StoreResult<bool>;

    /// Ends attempt `attempt` of a running job: closes its attempt row and sets
    /// the job's status, error, outcome and next attempt. A final status releases
    /// the job's ordering keys. False (and nothing changed) when the claim was lost.
    async fn finish(
        &self,
        id: Uuid,
        attempt: u32,
        now: DateTime<Utc>,
        finish: Finish,
    ) -> StoreResult<bool>;

    /// Re-queues a failed or dead job now (new `seq`, new retry window, keys back).
    async fn retry(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<RetryResult>;

    /// Job counts and oldest creation time per tenant and status (for metrics).
    async fn queue_stats(&self) -> StoreResult<Vec<QueueStat>>;

    /// Tenant activity per hour, for `hours` hours from `from`: events received
    /// (jobs created, grades passes left out) and Moodle calls made (attempts
    /// started in that hour). Bounded: jobs are found by id (UUIDv7, so time
    /// ordered) from [`ACTIVITY_LOOKBACK`] before `from` on, through the
    /// `(tenant, id)` index, and calls are read from those jobs' attempts; an
    /// attempt of a job admitted earlier than that is not counted.
    async fn activity(
        &self,
        tenant: &str,
        from: DateTime<Utc>,
        hours: u32,
    ) -> StoreResult<Vec<HourActivity>>;

    /// "Run now": makes queued job `id` due at `now` (`next_attempt_at = now`),
    /// e.g. one waiting in back-off. False, and nothing changed, when the job is
    /// not queued (or does not exist).
    async fn run_now(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool>;
}

/// How far before the window [`JobQueue::activity`] looks for jobs whose
/// attempts fall inside it.
pub const ACTIVITY_LOOKBACK: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// One hour of [`JobQueue::activity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourActivity {
    /// The hour's start.
    pub start: DateTime<Utc>,
    /// Events received (jobs created).
    pub events: u64,
    /// Moodle calls made by attempts started in the hour.
    pub calls: u64,
}
