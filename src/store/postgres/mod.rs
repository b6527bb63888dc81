//! PostgreSQL store: the shared store of several replicas.
//!
//! Transactions run at PostgreSQL's default READ COMMITTED; correctness
//! between replicas comes from locks, not from the isolation level:
//! - `admit` takes transaction-scoped advisory locks on its idempotency key and
//!   on its entity before it looks anything up, so two identical events admitted
//!   at once (on any replicas) are decided one after the other: one job.
//! - Queue positions (`seq`) are taken from a sequence while holding a global
//!   advisory lock until commit (admit and re-queue only; claims never take it).
//!   So jobs become visible in `seq` order, and a claimer never sees a job whose
//!   earlier same-key neighbour is still uncommitted; without this, a job with a
//!   smaller `seq` committing late could run beside a later one already claimed.
//! - `claim` locks its candidates `FOR UPDATE SKIP LOCKED`, so concurrent
//!   claimers never get the same job and never wait for each other, then
//!   re-checks the key rule in a fresh snapshot before taking them.
//! - `finish` / `extend_lease` update only `running` rows of the caller's
//!   attempt number; a reclaimed job's old worker changes nothing.

mod outbox;
mod queue;
mod retention;
mod types;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::codec::{self, RawAttempt, RawEnrolment, RawJob, RawWriteback};
use super::shared::{Dialect, SqlStore};
use super::{
    Attempt, EnrolmentRecord, Job, Link, QueueStat, StoreResult, Writeback, WritebackStatus,
    migrations,
};
use types::{PgTime, PgUuid};

/// Connections per replica: claims, admits and reads are short statements.
const POOL_SIZE: u32 = 10;

/// How long a call waits for a free connection before failing (transiently).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL back-end: one pool for reads and writes.
pub type PgStore = SqlStore<PgDialect>;

impl PgStore {
    /// Connects to `url` (`postgres://…`) and applies migrations (sqlx holds a
    /// lock while migrating, so replicas starting together are safe).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        migrations::migrator(migrations::POSTGRES)
            .await?
            .run(&pool)
            .await?;
        Ok(SqlStore {
            reader: pool.clone(),
            writer: pool,
            state: (),
        })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.writer.close().await;
    }

    fn pool(&self) -> &PgPool {
        &self.writer
    }
}

fn time(row: &PgRow, column: &str) -> StoreResult<DateTime<Utc>> {
    Ok(row.try_get::<PgTime, _>(column)?.0)
}

fn time_opt(row: &PgRow, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
    Ok(row.try_get::<Option<PgTime>, _>(column)?.map(|t| t.0))
}

fn json(row: &PgRow, column: &str) -> StoreResult<Value> {
    Ok(row.try_get::<Json<Value>, _>(column)?.0)
}

fn json_opt(row: &PgRow, column: &str) -> StoreResult<Option<Value>> {
    Ok(row.try_get::<Option<Json<Value>>, _>(column)?.map(|j| j.0))
}

fn int(row: &PgRow, column: &str) -> StoreResult<i64> {
    Ok(i64::from(row.try_get::<i32, _>(column)?))
}

/// PostgreSQL's encodings: native uuid, timestamptz and jsonb.
pub struct PgDialect;

impl Dialect for PgDialect {
    type Db = Postgres;
    type State = ();
    type Id = PgUuid;
    type Time = PgTime;
    type Json = Json<Value>;
    type Count = i32;

    const NEXT_WRITEBACK_SEQ: &'static str = "DEFAULT";
    const NEXT_JOB_SEQ: &'static str = "nextval('job_seq')";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const KEY_LOCKS: bool = true;

    fn id(id: Uuid) -> PgUuid {
        PgUuid(id)
    }

    fn time(t: DateTime<Utc>) -> PgTime {
        PgTime(t)
    }

    fn json(v: &Value) -> Json<Value> {
        Json(v.clone())
    }

    /// Attempt numbers beyond `i32` never occur; saturating makes such a
    /// caller's claim simply "lost".
    fn count(n: u32) -> i32 {
        i32::try_from(n).unwrap_or(i32::MAX)
    }

    fn job(row: &PgRow) -> StoreResult<Job> {
        RawJob {
            id: row.try_get::<PgUuid, _>("id")?.0,
            seq: row.try_get("seq")?,
            tenant: row.try_get("tenant")?,
            kind: row.try_get("kind")?,
            event: json(row, "event")?,
            keys: json(row, "keys")?,
            status: row.try_get("status")?,
            attempts: int(row, "attempts")?,
            created_at: time(row, "created_at")?,
            updated_at: time(row, "updated_at")?,
            next_attempt_at: time_opt(row, "next_attempt_at")?,
            retry_since: time(row, "retry_since")?,
            lease_until: time_opt(row, "lease_until")?,
            last_error: row.try_get("last_error")?,
            outcome: json_opt(row, "outcome")?,
        }
        .into_job()
    }

    fn attempt(row: &PgRow) -> StoreResult<Attempt> {
        RawAttempt {
            number: int(row, "number")?,
            started_at: time(row, "started_at")?,
            finished_at: time_opt(row, "finished_at")?,
            calls: json(row, "calls")?,
            error: row.try_get("error")?,
            result: row.try_get("result")?,
        }
        .into_attempt()
    }

    fn writeback(row: &PgRow) -> StoreResult<Writeback> {
        RawWriteback {
            id: row.try_get::<PgUuid, _>("id")?.0,
            job_id: row.try_get::<Option<PgUuid>, _>("job_id")?.map(|id| id.0),
            tenant: row.try_get("tenant")?,
            entity: row.try_get("entity")?,
            apit_id: row.try_get("apit_id")?,
            payload: json(row, "payload")?,
            status: row.try_get("status")?,
            attempts: int(row, "attempts")?,
            created_at: time(row, "created_at")?,
            retry_since: time(row, "retry_since")?,
            next_attempt_at: time_opt(row, "next_attempt_at")?,
            last_error: row.try_get("last_error")?,
        }
        .into_writeback()
    }

    fn enrolment(row: &PgRow) -> StoreResult<EnrolmentRecord> {
        RawEnrolment {
            tenant: row.try_get("tenant")?,
            booking_id: row.try_get("booking_id")?,
            moodle_course_id: row.try_get("moodle_course_id")?,
            moodle_user_id: row.try_get("moodle_user_id")?,
            state: row.try_get("state")?,
            last_score: json_opt(row, "last_score")?,
        }
        .into_record()
    }

    fn link(row: &PgRow) -> StoreResult<Link> {
        Ok(Link {
            moodle_id: row.try_get("moodle_id")?,
            last_sent: json_opt(row, "last_sent")?,
        })
    }

    fn queue_stat(row: &PgRow) -> StoreResult<QueueStat> {
        codec::queue_stat(
            row.try_get("tenant")?,
            row.try_get("status")?,
            row.try_get("n")?,
            time_opt(row, "oldest")?,
        )
    }

    fn hash_and_status(row: &PgRow) -> StoreResult<(String, WritebackStatus)> {
        Ok((
            row.try_get("payload_hash")?,
            codec::writeback_status(row.try_get("status")?)?,
        ))
    }

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn json_strings(expr: &str, alias: &str) -> String {
        format!("jsonb_array_elements_text({expr}) AS {alias}(value)")
    }

    async fn begin_write(pool: &PgPool) -> StoreResult<Transaction<'static, Postgres>> {
        Ok(pool.begin().await?)
    }

    async fn lock(conn: &mut PgConnection, parts: &[&str]) -> StoreResult<()> {
        // The unit separator cannot be confused with a character of a name.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(parts.join("\u{1f}"))
            .execute(conn)
            .await?;
        Ok(())
    }
}
