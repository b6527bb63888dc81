//! PostgreSQL job queue: admission under advisory locks, claiming with
//! `FOR UPDATE SKIP LOCKED`, re-queueing. Reads and finishing are shared.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::types::{PgTime, PgUuid};
use super::{PgDialect, PgStore};
use crate::store::codec::{self, Decision, LEASE_EXPIRED};
use crate::store::shared::{Dialect, JOB_COLUMNS, QueueOps};
use crate::store::{Admission, Job, NewJob, StoreResult};

/// The advisory lock that orders `seq` assignment with commits ("apit-seq").
const SEQ_LOCK: i64 = 0x6170_6974_2d73_6571;

/// Whether job `j` may be claimed at `$1` (the trait's rule): due or its lease
/// expired, and no active job with a smaller seq shares one of its keys.
const RUNNABLE: &str = "j.status IN ('queued', 'running') \
     AND ((j.status = 'queued' AND j.next_attempt_at <= $1) \
       OR (j.status = 'running' AND j.lease_until < $1)) \
     AND NOT EXISTS (SELECT 1 FROM job_keys mine \
       JOIN job_keys earlier ON earlier.tenant = mine.tenant \
         AND earlier.key = mine.key AND earlier.seq < mine.seq \
       WHERE mine.job_id = j.id)";

/// Takes the seq lock; call right before `nextval('job_seq')` and commit soon after.
async fn lock_seq(tx: &mut Transaction<'static, Postgres>) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SEQ_LOCK)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// See [`QueueOps::requeue`]; the caller holds the job's row.
async fn requeue(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<Job> {
    lock_seq(tx).await?;
    let sql = format!(
        "UPDATE jobs SET status = 'queued', seq = nextval('job_seq'), \
         next_attempt_at = $1, retry_since = $1, lease_until = NULL, updated_at = $1 \
         WHERE id = $2 RETURNING {JOB_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(PgTime(now))
        .bind(PgUuid(id))
        .fetch_one(&mut **tx)
        .await?;
    let job = PgDialect::job(&row)?;
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

impl QueueOps for PgDialect {
    const FOR_UPDATE: &'static str = " FOR UPDATE";

    /// Admits under advisory locks on the key and the entity.
    async fn admit(
        store: &PgStore,
        job: NewJob,
        force: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<Admission> {
        let mut tx = store.pool().begin().await?;
        // Key before entity, always: a fixed order cannot deadlock.
        if let Some(key) = &job.idempotency_key {
            PgDialect::lock(&mut tx, &["idempotency", &job.tenant, key]).await?;
        }
        PgDialect::lock(&mut tx, &["entity", &job.tenant, &job.entity]).await?;

        // FOR UPDATE: a job we may re-queue must not change under us (retry, finish).
        let found = match &job.idempotency_key {
            Some(key) => {
                let sql = format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE id = \
                 (SELECT job_id FROM idempotency WHERE tenant = $1 AND key = $2) FOR UPDATE"
                );
                sqlx::query(&sql)
                    .bind(&job.tenant)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE id = (SELECT job_id FROM entity_heads \
                 WHERE tenant = $1 AND entity = $2 AND body_hash = $3) FOR UPDATE"
                );
                sqlx::query(&sql)
                    .bind(&job.tenant)
                    .bind(&job.entity)
                    .bind(&job.body_hash)
                    .fetch_optional(&mut *tx)
                    .await?
            }
        };
        let found = found.as_ref().map(PgDialect::job).transpose()?;

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
                let sql = format!(
                    "INSERT INTO jobs (id, seq, tenant, kind, event, keys, status, attempts, \
                 created_at, updated_at, next_attempt_at, retry_since, \
                 idempotency_key, entity, body_hash) \
                 VALUES ($1, nextval('job_seq'), $2, $3, $4, $5, 'queued', 0, \
                 $6, $6, $6, $6, $7, $8, $9) RETURNING {JOB_COLUMNS}"
                );
                let row = sqlx::query(&sql)
                    .bind(PgUuid(job.id))
                    .bind(&job.tenant)
                    .bind(job.kind.as_str())
                    .bind(Json(&job.event))
                    .bind(Json(&job.keys))
                    .bind(PgTime(now))
                    .bind(&job.idempotency_key)
                    .bind(&job.entity)
                    .bind(&job.body_hash)
                    .fetch_one(&mut *tx)
                    .await?;
                let created = PgDialect::job(&row)?;
                activate_keys(&mut tx, job.id).await?;
                // With `force` the key moves to the new job.
                sqlx::query(
                    "INSERT INTO idempotency (tenant, key, job_id, created_at) \
                 SELECT $1, $2, $3, $4 WHERE $2::text IS NOT NULL \
                 ON CONFLICT (tenant, key) DO UPDATE SET job_id = excluded.job_id",
                )
                .bind(&job.tenant)
                .bind(&job.idempotency_key)
                .bind(PgUuid(job.id))
                .bind(PgTime(now))
                .execute(&mut *tx)
                .await?;
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

    /// Claims with `FOR UPDATE SKIP LOCKED`, re-checking the key rule.
    async fn claim(
        store: &PgStore,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        // Two statements in one transaction. The first picks candidates and
        // locks them (SKIP LOCKED: claimers pass each other, nobody waits). The
        // second re-checks the key rule in a fresh snapshot before taking them:
        // PostgreSQL re-checks a row that changed after the first snapshot
        // (e.g. finished and re-queued with a new seq meanwhile) only against
        // that old snapshot of job_keys; the locked rows cannot change now.
        let mut tx = store.pool().begin().await?;
        let pick = format!(
            "SELECT j.id FROM jobs j WHERE {RUNNABLE} \
         ORDER BY j.seq LIMIT $2 FOR UPDATE OF j SKIP LOCKED"
        );
        let candidates: Vec<PgUuid> = sqlx::query_scalar(&pick)
            .bind(PgTime(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        if candidates.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let take = format!(
            "WITH claimed AS ( \
           UPDATE jobs j SET status = 'running', attempts = j.attempts + 1, \
           lease_until = $2, updated_at = $1 \
           WHERE j.id = ANY($3) AND {RUNNABLE} RETURNING j.* \
         ), closed AS ( \
           UPDATE attempts SET finished_at = $1, error = $4 \
           FROM claimed WHERE attempts.job_id = claimed.id AND attempts.finished_at IS NULL \
         ), opened AS ( \
           INSERT INTO attempts (job_id, number, started_at) \
           SELECT id, attempts, $1 FROM claimed \
         ) \
         SELECT {JOB_COLUMNS} FROM claimed ORDER BY seq"
        );
        let rows = sqlx::query(&take)
            .bind(PgTime(now))
            .bind(PgTime(codec::lease_end(now, lease)))
            .bind(candidates)
            .bind(LEASE_EXPIRED)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(PgDialect::job).collect()
    }

    async fn requeue(
        tx: &mut Transaction<'static, Postgres>,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Job> {
        requeue(tx, id, now).await
    }
}
