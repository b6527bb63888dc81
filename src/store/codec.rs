//! What both back-ends share: the admission decision, value encodings (times,
//! statuses, JSON), and the mapping from decoded columns to the API types.
//!
//! Each back-end decodes its own column types (SQLite: integers and text;
//! PostgreSQL: uuid, timestamptz, jsonb) into the `Raw*` structs here, and the
//! checks that turn stored values into API values live in one place.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    Attempt, EnrolmentRecord, EnrolmentState, Entity, Finish, Job, JobKind, JobStatus, QueueStat,
    StoreError, StoreResult, Writeback, WritebackStatus,
};
use crate::moodle::CallRecord;

/// The error recorded on an attempt whose worker died before finishing it.
pub(super) const LEASE_EXPIRED: &str = "the worker stopped before finishing (lease expired)";

/// Milliseconds since the Unix epoch: the precision the store keeps.
pub(super) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`to_ms`].
pub(super) fn from_ms(ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp out of range: {ms} ms")))
}

/// [`from_ms`] for a nullable column.
pub(super) fn from_ms_opt(ms: Option<i64>) -> StoreResult<Option<DateTime<Utc>>> {
    ms.map(from_ms).transpose()
}

/// `now + lease`, saturating at the year 9999: a huge lease means "never
/// expires", not an error, and stays inside what both databases can store.
pub(super) fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(lease)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .map_or(far_future(), |t| t.min(far_future()))
}

fn far_future() -> DateTime<Utc> {
    // 9999-12-31T23:59:59Z
    DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A stored job status.
pub(super) fn job_status(s: &str) -> StoreResult<JobStatus> {
    JobStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown job status {s:?}")))
}

/// A stored job kind.
pub(super) fn job_kind(s: &str) -> StoreResult<JobKind> {
    JobKind::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown job kind {s:?}")))
}

/// A stored write-back status.
pub(super) fn writeback_status(s: &str) -> StoreResult<WritebackStatus> {
    WritebackStatus::parse(s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown write-back status {s:?}")))
}

/// A stored write-back entity.
pub(super) fn entity(s: &str) -> StoreResult<Entity> {
    Entity::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown write-back entity {s:?}")))
}

/// A stored enrolment state.
pub(super) fn enrolment_state(s: &str) -> StoreResult<EnrolmentState> {
    EnrolmentState::parse(s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown enrolment state {s:?}")))
}

/// A queue figure from its decoded columns.
pub(super) fn queue_stat(
    tenant: String,
    status: String,
    count: i64,
    oldest: Option<DateTime<Utc>>,
) -> StoreResult<QueueStat> {
    Ok(QueueStat {
        tenant,
        status: job_status(&status)?,
        count: u64::try_from(count).unwrap_or(0),
        oldest,
    })
}

/// A stored counter (attempts, attempt numbers) as the API's `u32`.
pub(super) fn count(n: i64) -> StoreResult<u32> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("counter out of range: {n}")))
}

/// A UUID stored as text (SQLite).
pub(super) fn uuid(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("bad id {s:?}: {e}")))
}

/// JSON stored as text (SQLite).
pub(super) fn json(s: &str) -> StoreResult<Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad JSON: {e}")))
}

/// [`json`] for a nullable column.
pub(super) fn json_opt(s: Option<String>) -> StoreResult<Option<Value>> {
    s.as_deref().map(json).transpose()
}

/// The calls of an attempt as stored JSON.
pub(super) fn calls_json(calls: &[CallRecord]) -> Value {
    // Serialising plain structs of strings and integers cannot fail.
    serde_json::to_value(calls).unwrap_or_else(|_| Value::Array(Vec::new()))
}

/// SHA-256 (hex) of a JSON value in canonical form (object keys sorted, no
/// whitespace), so equal payloads hash equally however they were built.
pub(super) fn payload_hash(v: &Value) -> String {
    let mut s = String::new();
    write_canonical(v, &mut s);
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            // Sorting here rather than relying on serde_json's map type: a
            // dependency enabling `preserve_order` would otherwise change hashes.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// What [`super::JobQueue::admit`] does once it has found (or not) the job that
/// decides: one place for SPEC §2 so both back-ends agree.
pub(super) enum Decision {
    /// Return this job as it is.
    Existing(Job),
    /// Queue this failed or dead job again.
    Requeue(Job),
    /// Store a new job.
    Create,
}

/// Applies SPEC §2 to the deciding job (the one the idempotency key points at,
/// else the entity's newest job when it has the same body hash).
pub(super) fn decide(found: Option<Job>, force: bool) -> Decision {
    let Some(job) = found else {
        return Decision::Create;
    };
    match job.status {
        JobStatus::Queued | JobStatus::Running => Decision::Existing(job),
        JobStatus::Succeeded | JobStatus::Skipped if force => Decision::Create,
        JobStatus::Succeeded | JobStatus::Skipped => Decision::Existing(job),
        JobStatus::Failed | JobStatus::Dead => Decision::Requeue(job),
    }
}

/// The `reference` filter: the needle a key must end with, or `None` when no
/// key can match (the part after the last `:` never contains a `:`).
pub(super) fn reference_needle(reference: &str) -> Option<String> {
    (!reference.contains(':')).then(|| format!(":{reference}"))
}

/// A finish's effect on the job row, validated.
pub(super) struct FinishPlan {
    pub status: &'static str,
    pub is_final: bool,
    /// Only a re-queued job has a next attempt; a missing time means "now".
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Checks a [`Finish`] and works out what it writes.
pub(super) fn finish_plan(finish: &Finish, now: DateTime<Utc>) -> StoreResult<FinishPlan> {
    if finish.status == JobStatus::Running {
        // A caller bug, not a storage problem; refusing keeps the job's state sane.
        return Err(StoreError::Corrupt(
            "an attempt cannot finish with status running".into(),
        ));
    }
    let is_final = finish.status.is_final();
    Ok(FinishPlan {
        status: finish.status.as_str(),
        is_final,
        next_attempt_at: if is_final {
            None
        } else {
            Some(finish.next_attempt_at.unwrap_or(now))
        },
    })
}

/// A job row decoded into plain values.
pub(super) struct RawJob {
    pub id: Uuid,
    pub seq: i64,
    pub tenant: String,
    pub kind: String,
    pub event: Value,
    pub keys: Value,
    pub status: String,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub retry_since: DateTime<Utc>,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub outcome: Option<Value>,
}

impl RawJob {
    /// Checks the stored values and builds the API type.
    pub fn into_job(self) -> StoreResult<Job> {
        let keys: Vec<String> = serde_json::from_value(self.keys).map_err(|e| {
            StoreError::Corrupt(format!("bad ordering keys of job {}: {e}", self.id))
        })?;
        Ok(Job {
            id: self.id,
            seq: self.seq,
            tenant: self.tenant,
            kind: job_kind(&self.kind)?,
            event: self.event,
            keys,
            status: job_status(&self.status)?,
            attempts: count(self.attempts)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
            next_attempt_at: self.next_attempt_at,
            retry_since: self.retry_since,
            lease_until: self.lease_until,
            last_error: self.last_error,
            outcome: self.outcome,
        })
    }
}

/// An attempt row decoded into plain values.
pub(super) struct RawAttempt {
    pub number: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub calls: Value,
    pub error: Option<String>,
    pub result: Option<String>,
}

impl RawAttempt {
    /// Checks the stored values and builds the API type.
    pub fn into_attempt(self) -> StoreResult<Attempt> {
        let calls: Vec<CallRecord> = serde_json::from_value(self.calls).map_err(|e| {
            StoreError::Corrupt(format!("bad calls of attempt {}: {e}", self.number))
        })?;
        Ok(Attempt {
            number: count(self.number)?,
            started_at: self.started_at,
            finished_at: self.finished_at,
            calls,
            error: self.error,
            result: self.result.as_deref().map(job_status).transpose()?,
        })
    }
}

/// A write-back row decoded into plain values.
pub(super) struct RawWriteback {
    pub id: Uuid,
    pub job_id: Option<Uuid>,
    pub tenant: String,
    pub entity: String,
    pub apit_id: String,
    pub payload: Value,
    pub status: String,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub retry_since: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl RawWriteback {
    /// Checks the stored values and builds the API type.
    pub fn into_writeback(self) -> StoreResult<Writeback> {
        Ok(Writeback {
            id: self.id,
            job_id: self.job_id,
            tenant: self.tenant,
            entity: entity(&self.entity)?,
            apit_id: self.apit_id,
            payload: self.payload,
            status: writeback_status(&self.status)?,
            attempts: count(self.attempts)?,
            created_at: self.created_at,
            retry_since: self.retry_since,
            next_attempt_at: self.next_attempt_at,
            last_error: self.last_error,
        })
    }
}

/// An enrolment row decoded into plain values.
pub(super) struct RawEnrolment {
    pub tenant: String,
    pub booking_id: String,
    pub moodle_course_id: i64,
    pub moodle_user_id: i64,
    pub state: String,
    pub last_score: Option<Value>,
}

impl RawEnrolment {
    /// Checks the stored values and builds the API type.
    pub fn into_record(self) -> StoreResult<EnrolmentRecord> {
        Ok(EnrolmentRecord {
            tenant: self.tenant,
            booking_id: self.booking_id,
            moodle_course_id: self.moodle_course_id,
            moodle_user_id: self.moodle_user_id,
            state: enrolment_state(&self.state)?,
            last_score: self.last_score,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_hash_ignores_key_order_and_whitespace() {
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
        let b: Value = serde_json::from_str(r#"{ "a": {"x":"s", "y":[1,2]}, "b":1 }"#).unwrap();
        assert_eq!(payload_hash(&a), payload_hash(&b));
        assert_ne!(
            payload_hash(&a),
            payload_hash(&json!({"b": 2, "a": {"y": [1, 2], "x": "s"}}))
        );
    }

    #[test]
    fn times_round_trip_at_millisecond_precision() {
        let t = DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap();
        let back = from_ms(to_ms(t)).unwrap();
        assert_eq!(
            back,
            DateTime::from_timestamp(1_800_000_000, 123_000_000).unwrap()
        );
    }

    #[test]
    fn lease_end_saturates() {
        let now = Utc::now();
        assert_eq!(lease_end(now, Duration::MAX), far_future());
        assert_eq!(
            lease_end(now, Duration::from_secs(60)),
            now + TimeDelta::seconds(60)
        );
    }

    #[test]
    fn reference_with_a_colon_matches_nothing() {
        assert_eq!(reference_needle("C1001").as_deref(), Some(":C1001"));
        assert_eq!(reference_needle("course:C1001"), None);
    }

    #[test]
    fn status_names_round_trip() {
        for s in [
            WritebackStatus::Pending,
            WritebackStatus::Delivered,
            WritebackStatus::Superseded,
            WritebackStatus::Dead,
        ] {
            assert_eq!(writeback_status(s.as_str()).unwrap(), s);
        }
        for s in [
            EnrolmentState::Active,
            EnrolmentState::Suspended,
            EnrolmentState::Unenrolled,
        ] {
            assert_eq!(enrolment_state(s.as_str()).unwrap(), s);
        }
        for e in Entity::ALL {
            assert_eq!(entity(e.as_str()).unwrap(), e);
        }
        for k in JobKind::ALL {
            assert_eq!(job_kind(k.as_str()).unwrap(), k);
        }
    }
}
