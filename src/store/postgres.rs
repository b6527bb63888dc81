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

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder, Row, Transaction};

use super::codec::{
    self, Decision, FinishPlan, LEASE_EXPIRED, RawAttempt, RawEnrolment, RawJob, RawWriteback,
};
use super::migrations;
use super::pg_types::{PgTime, PgUuid};
use super::*;

/// Connections per replica: claims, admits and reads are short statements.
const POOL_SIZE: u32 = 10;

/// How long a call waits for a free connection before failing (transiently).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The advisory lock that orders `seq` assignment with commits ("apit-seq").
const SEQ_LOCK: i64 = 0x6170_6974_2d73_6571;

/// The columns of a job, for [`job_from_row`].
macro_rules! job_columns {
    () => {
        "id, seq, tenant, kind, event, keys, status, attempts, created_at, updated_at, \
         next_attempt_at, retry_since, lease_until, last_error, outcome"
    };
}

/// Whether job `j` may be claimed at `$1` (the trait's rule): due or its lease
/// expired, and no active job with a smaller seq shares one of its keys.
macro_rules! runnable {
    () => {
        "j.status IN ('queued', 'running') \
         AND ((j.status = 'queued' AND j.next_attempt_at <= $1) \
           OR (j.status = 'running' AND j.lease_until < $1)) \
         AND NOT EXISTS (SELECT 1 FROM job_keys mine \
           JOIN job_keys earlier ON earlier.tenant = mine.tenant \
             AND earlier.key = mine.key AND earlier.seq < mine.seq \
           WHERE mine.job_id = j.id)"
    };
}

/// The columns of a write-back, for [`writeback_from_row`].
macro_rules! writeback_columns {
    () => {
        "id, seq, job_id, tenant, entity, apit_id, payload, status, attempts, created_at, \
         retry_since, next_attempt_at, last_error"
    };
}

/// The PostgreSQL back-end of [`Store`].
pub struct PgStore {
    pool: PgPool,
}

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
        Ok(PgStore { pool })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
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

fn job_from_row(row: &PgRow) -> StoreResult<Job> {
    RawJob {
        id: row.try_get::<PgUuid, _>("id")?.0,
        seq: row.try_get("seq")?,
        tenant: row.try_get("tenant")?,
        kind: row.try_get("kind")?,
        event: json(row, "event")?,
        keys: json(row, "keys")?,
        status: row.try_get("status")?,
        attempts: i64::from(row.try_get::<i32, _>("attempts")?),
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

fn writeback_from_row(row: &PgRow) -> StoreResult<Writeback> {
    RawWriteback {
        id: row.try_get::<PgUuid, _>("id")?.0,
        job_id: row.try_get::<Option<PgUuid>, _>("job_id")?.map(|id| id.0),
        tenant: row.try_get("tenant")?,
        entity: row.try_get("entity")?,
        apit_id: row.try_get("apit_id")?,
        payload: json(row, "payload")?,
        status: row.try_get("status")?,
        attempts: i64::from(row.try_get::<i32, _>("attempts")?),
        created_at: time(row, "created_at")?,
        retry_since: time(row, "retry_since")?,
        next_attempt_at: time_opt(row, "next_attempt_at")?,
        last_error: row.try_get("last_error")?,
    }
    .into_writeback()
}

/// Serialises transactions that touch the same thing (an idempotency key, an
/// entity, a write-back target) across all replicas, until commit.
async fn lock(tx: &mut Transaction<'static, Postgres>, parts: &[&str]) -> StoreResult<()> {
    // The unit separator cannot be confused with a character of a name.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(parts.join("\u{1f}"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Takes the seq lock; call right before `nextval('job_seq')` and commit soon after.
async fn lock_seq(tx: &mut Transaction<'static, Postgres>) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SEQ_LOCK)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Re-queues a failed or dead job (locked by the caller) inside `tx`: status
/// queued, due now, a new retry window, the next seq (so it goes behind newer
/// jobs of its keys), its keys active again, and it becomes the newest job of
/// its entity. Attempts and their history are kept.
async fn requeue(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<Job> {
    lock_seq(tx).await?;
    let row = sqlx::query(concat!(
        "UPDATE jobs SET status = 'queued', seq = nextval('job_seq'), \
         next_attempt_at = $1, retry_since = $1, lease_until = NULL, updated_at = $1 \
         WHERE id = $2 RETURNING ",
        job_columns!()
    ))
    .bind(PgTime(now))
    .bind(PgUuid(id))
    .fetch_one(&mut **tx)
    .await?;
    let job = job_from_row(&row)?;
    activate_keys(tx, id).await?;
    sqlx::query(
        "INSERT INTO entity_heads (tenant, entity, job_id, body_hash) \
         SELECT tenant, entity, id, body_hash FROM jobs WHERE id = $1 \
         ON CONFLICT (tenant, entity) DO UPDATE \
         SET job_id = excluded.job_id, body_hash = excluded.body_hash",
    )
    .bind(PgUuid(id))
    .execute(&mut **tx)
    .await?;
    Ok(job)
}

/// Copies a job's ordering keys (deduplicated) and seq into `job_keys`.
async fn activate_keys(tx: &mut Transaction<'static, Postgres>, id: Uuid) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO job_keys (job_id, tenant, key, seq) \
         SELECT DISTINCT j.id, j.tenant, k.key, j.seq \
         FROM jobs j CROSS JOIN LATERAL jsonb_array_elements_text(j.keys) AS k(key) \
         WHERE j.id = $1 ON CONFLICT DO NOTHING",
    )
    .bind(PgUuid(id))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn admit(&self, job: NewJob, force: bool, now: DateTime<Utc>) -> StoreResult<Admission> {
        let mut tx = self.pool.begin().await?;
        // Key before entity, always: a fixed order cannot deadlock.
        if let Some(key) = &job.idempotency_key {
            lock(&mut tx, &["idempotency", &job.tenant, key]).await?;
        }
        lock(&mut tx, &["entity", &job.tenant, &job.entity]).await?;

        // FOR UPDATE: a job we may re-queue must not change under us (retry, finish).
        let found = match &job.idempotency_key {
            Some(key) => {
                sqlx::query(concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM jobs WHERE id = \
                 (SELECT job_id FROM idempotency WHERE tenant = $1 AND key = $2) FOR UPDATE"
                ))
                .bind(&job.tenant)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM jobs WHERE id = (SELECT job_id FROM entity_heads \
                 WHERE tenant = $1 AND entity = $2 AND body_hash = $3) FOR UPDATE"
                ))
                .bind(&job.tenant)
                .bind(&job.entity)
                .bind(&job.body_hash)
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        let found = found.as_ref().map(job_from_row).transpose()?;

        match codec::decide(found, force) {
            Decision::Existing(existing) => {
                tx.rollback().await?;
                Ok(Admission::Existing(existing))
            }
            Decision::Requeue(failed) => {
                let job = requeue(&mut tx, failed.id, now).await?;
                tx.commit().await?;
                Ok(Admission::Requeued(job))
            }
            Decision::Create => {
                lock_seq(&mut tx).await?;
                let row = sqlx::query(concat!(
                    "INSERT INTO jobs (id, seq, tenant, kind, event, keys, status, attempts, \
                     created_at, updated_at, next_attempt_at, retry_since, \
                     idempotency_key, entity, body_hash) \
                     VALUES ($1, nextval('job_seq'), $2, $3, $4, $5, 'queued', 0, \
                     $6, $6, $6, $6, $7, $8, $9) RETURNING ",
                    job_columns!()
                ))
                .bind(PgUuid(job.id))
                .bind(&job.tenant)
                .bind(&job.kind)
                .bind(Json(&job.event))
                .bind(Json(&job.keys))
                .bind(PgTime(now))
                .bind(&job.idempotency_key)
                .bind(&job.entity)
                .bind(&job.body_hash)
                .fetch_one(&mut *tx)
                .await?;
                let created = job_from_row(&row)?;
                activate_keys(&mut tx, job.id).await?;
                if let Some(key) = &job.idempotency_key {
                    // With `force` the key moves to the new job.
                    sqlx::query(
                        "INSERT INTO idempotency (tenant, key, job_id, created_at) \
                         VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (tenant, key) DO UPDATE SET job_id = excluded.job_id",
                    )
                    .bind(&job.tenant)
                    .bind(key)
                    .bind(PgUuid(job.id))
                    .bind(PgTime(now))
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO entity_heads (tenant, entity, job_id, body_hash) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tenant, entity) DO UPDATE \
                     SET job_id = excluded.job_id, body_hash = excluded.body_hash",
                )
                .bind(&job.tenant)
                .bind(&job.entity)
                .bind(PgUuid(job.id))
                .bind(&job.body_hash)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Admission::Created(created))
            }
        }
    }

    async fn job(&self, id: Uuid) -> StoreResult<Option<Job>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = $1"
        ))
        .bind(PgUuid(id))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        let mut q = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE TRUE"
        ));
        if let Some(tenant) = &filter.tenant {
            q.push(" AND tenant = ").push_bind(tenant.clone());
        }
        if let Some(status) = filter.status {
            q.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(kind) = &filter.kind {
            q.push(" AND kind = ").push_bind(kind.clone());
        }
        if let Some(reference) = &filter.reference {
            let Some(needle) = codec::reference_needle(reference) else {
                return Ok(Vec::new());
            };
            // "ends with :<ref>", without LIKE (an ID may contain % or _).
            q.push(" AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(jobs.keys) AS k(key) WHERE right(k.key, length(")
                .push_bind(needle.clone())
                .push(")) = ")
                .push_bind(needle)
                .push(")");
        }
        if let Some(before) = filter.before {
            q.push(" AND id < ").push_bind(PgUuid(before));
        }
        q.push(" ORDER BY id DESC");
        // A limit of 0 means no limit.
        if filter.limit > 0 {
            q.push(" LIMIT ").push_bind(i64::from(filter.limit));
        }
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn attempts(&self, job_id: Uuid) -> StoreResult<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT number, started_at, finished_at, calls, error, result \
             FROM attempts WHERE job_id = $1 ORDER BY number",
        )
        .bind(PgUuid(job_id))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                RawAttempt {
                    number: i64::from(row.try_get::<i32, _>("number")?),
                    started_at: time(row, "started_at")?,
                    finished_at: time_opt(row, "finished_at")?,
                    calls: json(row, "calls")?,
                    error: row.try_get("error")?,
                    result: row.try_get("result")?,
                }
                .into_attempt()
            })
            .collect()
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Two statements in one transaction. The first picks candidates and
        // locks them (SKIP LOCKED: claimers pass each other, nobody waits). The
        // second re-checks the key rule in a fresh snapshot before taking them:
        // PostgreSQL re-checks a row that changed after the first snapshot
        // (e.g. finished and re-queued with a new seq meanwhile) only against
        // that old snapshot of job_keys; the locked rows cannot change now.
        let mut tx = self.pool.begin().await?;
        let candidates: Vec<PgUuid> = sqlx::query_scalar(concat!(
            "SELECT j.id FROM jobs j WHERE ",
            runnable!(),
            " ORDER BY j.seq LIMIT $2 FOR UPDATE OF j SKIP LOCKED"
        ))
        .bind(PgTime(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        if candidates.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "WITH claimed AS ( \
               UPDATE jobs j SET status = 'running', attempts = j.attempts + 1, \
               lease_until = $2, updated_at = $1 \
               WHERE j.id = ANY($3) AND ",
            runnable!(),
            " RETURNING j.* \
             ), closed AS ( \
               UPDATE attempts SET finished_at = $1, error = $4 \
               FROM claimed WHERE attempts.job_id = claimed.id AND attempts.finished_at IS NULL \
             ), opened AS ( \
               INSERT INTO attempts (job_id, number, started_at) \
               SELECT id, attempts, $1 FROM claimed \
             ) \
             SELECT ",
            job_columns!(),
            " FROM claimed ORDER BY seq"
        ))
        .bind(PgTime(now))
        .bind(PgTime(codec::lease_end(now, lease)))
        .bind(candidates)
        .bind(LEASE_EXPIRED)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn extend_lease(
        &self,
        id: Uuid,
        attempt: u32,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = $1 \
             WHERE id = $2 AND status = 'running' AND attempts = $3",
        )
        .bind(PgTime(until))
        .bind(PgUuid(id))
        .bind(attempt_param(attempt))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish(
        &self,
        id: Uuid,
        attempt: u32,
        now: DateTime<Utc>,
        finish: Finish,
    ) -> StoreResult<bool> {
        let FinishPlan {
            status,
            is_final,
            next_attempt_at,
        } = codec::finish_plan(&finish, now)?;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = $1, last_error = $2, outcome = $3, next_attempt_at = $4, \
             lease_until = NULL, updated_at = $5 \
             WHERE id = $6 AND status = 'running' AND attempts = $7",
        )
        .bind(status)
        .bind(&finish.error)
        .bind(finish.outcome.as_ref().map(Json))
        .bind(next_attempt_at.map(PgTime))
        .bind(PgTime(now))
        .bind(PgUuid(id))
        .bind(attempt_param(attempt))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE attempts SET finished_at = $1, calls = $2, error = $3, result = $4 \
             WHERE job_id = $5 AND number = $6",
        )
        .bind(PgTime(now))
        .bind(Json(codec::calls_json(&finish.calls)))
        .bind(&finish.error)
        .bind(status)
        .bind(PgUuid(id))
        .bind(attempt_param(attempt))
        .execute(&mut *tx)
        .await?;
        if is_final {
            sqlx::query("DELETE FROM job_keys WHERE job_id = $1")
                .bind(PgUuid(id))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn retry(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<RetryResult> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = $1 FOR UPDATE"
        ))
        .bind(PgUuid(id))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(job) = row.as_ref().map(job_from_row).transpose()? else {
            tx.rollback().await?;
            return Ok(RetryResult::NotFound);
        };
        if !matches!(job.status, JobStatus::Failed | JobStatus::Dead) {
            tx.rollback().await?;
            return Ok(RetryResult::NotRetryable(job));
        }
        let job = requeue(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(RetryResult::Requeued(job))
    }

    async fn link(&self, tenant: &str, kind: LinkKind, apit_id: &str) -> StoreResult<Option<Link>> {
        let row = sqlx::query(
            "SELECT moodle_id, last_sent FROM links \
             WHERE tenant = $1 AND kind = $2 AND apit_id = $3",
        )
        .bind(tenant)
        .bind(kind.as_str())
        .bind(apit_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Link {
                moodle_id: row.try_get("moodle_id")?,
                last_sent: json_opt(&row, "last_sent")?,
            })
        })
        .transpose()
    }

    async fn put_link(
        &self,
        tenant: &str,
        kind: LinkKind,
        apit_id: &str,
        link: &Link,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO links (tenant, kind, apit_id, moodle_id, last_sent, updated_at) \
             VALUES ($1, $2, $3, $4, $5, now()) \
             ON CONFLICT (tenant, kind, apit_id) DO UPDATE SET moodle_id = excluded.moodle_id, \
             last_sent = excluded.last_sent, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(kind.as_str())
        .bind(apit_id)
        .bind(link.moodle_id)
        .bind(link.last_sent.as_ref().map(Json))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn put_enrolment(&self, record: &EnrolmentRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO enrolments (tenant, booking_id, moodle_course_id, moodle_user_id, \
             state, last_score, updated_at) VALUES ($1, $2, $3, $4, $5, $6, now()) \
             ON CONFLICT (tenant, booking_id) DO UPDATE SET \
             last_score = CASE WHEN enrolments.moodle_course_id = excluded.moodle_course_id \
               AND enrolments.moodle_user_id = excluded.moodle_user_id \
               THEN enrolments.last_score ELSE excluded.last_score END, \
             moodle_course_id = excluded.moodle_course_id, \
             moodle_user_id = excluded.moodle_user_id, \
             state = excluded.state, updated_at = excluded.updated_at",
        )
        .bind(&record.tenant)
        .bind(&record.booking_id)
        .bind(record.moodle_course_id)
        .bind(record.moodle_user_id)
        .bind(codec::enrolment_state_str(record.state))
        .bind(record.last_score.as_ref().map(Json))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn enrolments(
        &self,
        tenant: &str,
        active_only: bool,
    ) -> StoreResult<Vec<EnrolmentRecord>> {
        let rows = sqlx::query(
            "SELECT tenant, booking_id, moodle_course_id, moodle_user_id, state, last_score \
             FROM enrolments WHERE tenant = $1 AND (NOT $2 OR state = 'active') \
             ORDER BY booking_id",
        )
        .bind(tenant)
        .bind(active_only)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                RawEnrolment {
                    tenant: row.try_get("tenant")?,
                    booking_id: row.try_get("booking_id")?,
                    moodle_course_id: row.try_get("moodle_course_id")?,
                    moodle_user_id: row.try_get("moodle_user_id")?,
                    state: row.try_get("state")?,
                    last_score: json_opt(row, "last_score")?,
                }
                .into_record()
            })
            .collect()
    }

    async fn set_last_score(
        &self,
        tenant: &str,
        booking_id: &str,
        score: &Value,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE enrolments SET last_score = $1, updated_at = now() \
             WHERE tenant = $2 AND booking_id = $3",
        )
        .bind(Json(score))
        .bind(tenant)
        .bind(booking_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn enqueue_writeback(&self, wb: NewWriteback, now: DateTime<Utc>) -> StoreResult<bool> {
        let hash = codec::payload_hash(&wb.payload);
        let mut tx = self.pool.begin().await?;
        // Enqueues for one target run one at a time, so "newest" is well defined.
        lock(&mut tx, &["writeback", &wb.tenant, &wb.entity, &wb.apit_id]).await?;
        let newest: Option<(String, String)> = sqlx::query_as(
            "SELECT payload_hash, status FROM writebacks \
             WHERE tenant = $1 AND entity = $2 AND apit_id = $3 ORDER BY seq DESC LIMIT 1",
        )
        .bind(&wb.tenant)
        .bind(&wb.entity)
        .bind(&wb.apit_id)
        .fetch_optional(&mut *tx)
        .await?;
        // A dead write-back is not a reason to skip: a re-run job must be able
        // to deliver what never arrived.
        if newest.is_some_and(|(h, status)| h == hash && status != "dead") {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE writebacks SET status = 'superseded', lease_until = NULL, updated_at = $1 \
             WHERE tenant = $2 AND entity = $3 AND apit_id = $4 AND status = 'pending'",
        )
        .bind(PgTime(now))
        .bind(&wb.tenant)
        .bind(&wb.entity)
        .bind(&wb.apit_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO writebacks (id, job_id, tenant, entity, apit_id, payload, \
             payload_hash, status, attempts, created_at, updated_at, retry_since, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8, $8, $8)",
        )
        .bind(PgUuid(Uuid::now_v7()))
        .bind(wb.job_id.map(PgUuid))
        .bind(&wb.tenant)
        .bind(&wb.entity)
        .bind(&wb.apit_id)
        .bind(Json(&wb.payload))
        .bind(&hash)
        .bind(PgTime(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn claim_writebacks(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<Writeback>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "WITH candidates AS ( \
               SELECT id FROM writebacks WHERE status = 'pending' \
               AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1) \
               ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED \
             ), claimed AS ( \
               UPDATE writebacks SET attempts = writebacks.attempts + 1, \
               lease_until = $2, updated_at = $1 \
               FROM candidates WHERE writebacks.id = candidates.id \
               RETURNING writebacks.* \
             ) \
             SELECT ",
            writeback_columns!(),
            " FROM claimed ORDER BY seq"
        ))
        .bind(PgTime(now))
        .bind(PgTime(codec::lease_end(now, lease)))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(writeback_from_row).collect()
    }

    async fn finish_writeback(
        &self,
        id: Uuid,
        attempt: u32,
        now: DateTime<Utc>,
        finish: WritebackFinish,
    ) -> StoreResult<bool> {
        let next = match finish.status {
            WritebackStatus::Pending => Some(PgTime(finish.next_attempt_at.unwrap_or(now))),
            _ => None,
        };
        let done = sqlx::query(
            "UPDATE writebacks SET status = $1, next_attempt_at = $2, last_error = $3, \
             lease_until = NULL, updated_at = $4 \
             WHERE id = $5 AND status = 'pending' AND attempts = $6",
        )
        .bind(codec::writeback_status_str(finish.status))
        .bind(next)
        .bind(&finish.error)
        .bind(PgTime(now))
        .bind(PgUuid(id))
        .bind(attempt_param(attempt))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn writebacks_for_job(&self, job_id: Uuid) -> StoreResult<Vec<Writeback>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            writeback_columns!(),
            " FROM writebacks WHERE job_id = $1 ORDER BY seq"
        ))
        .bind(PgUuid(job_id))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(writeback_from_row).collect()
    }

    async fn queue_stats(&self) -> StoreResult<Vec<QueueStat>> {
        let rows = sqlx::query(
            "SELECT tenant, status, count(*) AS n, min(created_at) AS oldest \
             FROM jobs GROUP BY tenant, status ORDER BY tenant, status",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let n: i64 = row.try_get("n")?;
                Ok(QueueStat {
                    tenant: row.try_get("tenant")?,
                    status: codec::job_status(row.try_get("status")?)?,
                    count: u64::try_from(n).unwrap_or(0),
                    oldest: time_opt(row, "oldest")?,
                })
            })
            .collect()
    }
}

/// An attempt number as the `integer` column's type. Numbers beyond `i32` never
/// occur; saturating makes such a caller's claim simply "lost".
fn attempt_param(attempt: u32) -> i32 {
    i32::try_from(attempt).unwrap_or(i32::MAX)
}
