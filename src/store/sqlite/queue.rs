//! SQLite job queue: group-committed admission, claiming and re-queueing on the
//! single writer connection. Reads and finishing are shared (`store/shared`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::SqlitePool;
use sqlx::{Acquire, Sqlite, SqliteConnection, Transaction};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{SqliteDialect, SqliteStore};
use crate::store::codec::{self, Decision, LEASE_EXPIRED, to_ms};
use crate::store::shared::{Dialect, JOB_COLUMNS, QueueOps};
use crate::store::{Admission, Job, NewJob, StoreError, StoreResult};

/// Admissions waiting for the next group commit (back-pressure beyond this).
const ADMIT_QUEUE: usize = 1024;
/// At most this many admissions share one transaction.
const ADMIT_BATCH: usize = 128;

/// One admission waiting for its group commit.
pub(super) struct AdmitRequest {
    job: NewJob,
    force: bool,
    now: DateTime<Utc>,
    reply: oneshot::Sender<StoreResult<Admission>>,
}

/// Starts the task that commits admissions in groups; returns its queue.
pub(super) fn start_group_commit(writer: SqlitePool) -> mpsc::Sender<AdmitRequest> {
    let (admits, queue) = mpsc::channel(ADMIT_QUEUE);
    tokio::spawn(commit_admits(writer, queue));
    admits
}

/// Commits admissions in groups: every admission waiting when the writer is
/// free shares one transaction. Each commit writes the touched pages to the WAL
/// once, so a burst costs one commit, not one per event (the ingest benchmark
/// in the README measures the difference). Each admission runs in its own
/// savepoint, so one failing admission does not fail the others; nobody is
/// answered before the commit, so an answered event is durable.
async fn commit_admits(writer: SqlitePool, mut queue: mpsc::Receiver<AdmitRequest>) {
    let mut batch = Vec::with_capacity(ADMIT_BATCH);
    while queue.recv_many(&mut batch, ADMIT_BATCH).await > 0 {
        let mut results = Vec::with_capacity(batch.len());
        let outcome = async {
            let mut tx = SqliteDialect::begin_write(&writer).await?;
            for request in &batch {
                let mut savepoint = tx.begin().await?;
                let result = admit_in(
                    &mut savepoint,
                    request.job.clone(),
                    request.force,
                    request.now,
                )
                .await;
                if result.is_ok() {
                    savepoint.commit().await?;
                } else {
                    savepoint.rollback().await?;
                }
                results.push(result);
            }
            tx.commit().await?;
            StoreResult::Ok(())
        }
        .await;
        match outcome {
            Ok(()) => {
                for (request, result) in batch.drain(..).zip(results) {
                    let _ = request.reply.send(result);
                }
            }
            Err(e) => {
                // The transaction is gone: nobody's admission was stored.
                let text = e.to_string();
                for request in batch.drain(..) {
                    let _ = request
                        .reply
                        .send(Err(StoreError::Unavailable(text.clone())));
                }
            }
        }
    }
}

/// See [`QueueOps::requeue`].
async fn requeue(tx: &mut SqliteConnection, id: Uuid, now: DateTime<Utc>) -> StoreResult<Job> {
    let id = id.to_string();
    let sql = format!(
        "UPDATE jobs SET status = 'queued', seq = (SELECT MAX(seq) + 1 FROM jobs), \
         next_attempt_at = $1, retry_since = $1, lease_until = NULL, updated_at = $1 \
         WHERE id = $2 RETURNING {JOB_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(to_ms(now))
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
    let job = SqliteDialect::job(&row)?;
    sqlx::query(
        "INSERT OR IGNORE INTO job_keys (job_id, tenant, key, seq) \
         SELECT j.id, j.tenant, k.value, j.seq FROM jobs j, json_each(j.keys) k WHERE j.id = $1; \
         INSERT INTO entity_heads (tenant, entity, job_id, body_hash) \
         SELECT tenant, entity, id, body_hash FROM jobs WHERE id = $1 \
         ON CONFLICT (tenant, entity) DO UPDATE \
         SET job_id = excluded.job_id, body_hash = excluded.body_hash",
    )
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    Ok(job)
}

/// One admission inside the batch's write transaction (SPEC §2 idempotency).
async fn admit_in(
    tx: &mut SqliteConnection,
    job: NewJob,
    force: bool,
    now: DateTime<Utc>,
) -> StoreResult<Admission> {
    let found = match &job.idempotency_key {
        Some(key) => {
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE id = \
                 (SELECT job_id FROM idempotency WHERE tenant = $1 AND key = $2)"
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
                 WHERE tenant = $1 AND entity = $2 AND body_hash = $3)"
            );
            sqlx::query(&sql)
                .bind(&job.tenant)
                .bind(&job.entity)
                .bind(&job.body_hash)
                .fetch_optional(&mut *tx)
                .await?
        }
    };
    let found = found.as_ref().map(SqliteDialect::job).transpose()?;

    match codec::decide(found, force) {
        Decision::Existing(existing) => Ok(Admission::Existing(existing)),
        Decision::Requeue(failed) => Ok(Admission::Requeued(requeue(tx, failed.id, now).await?)),
        Decision::Create => {
            // One multi-statement round trip (sqlx runs them in order with the
            // shared $N arguments): the job, its active keys, its idempotency
            // key (when given), its entity head, then the stored row.
            let sql = format!(
                "INSERT INTO jobs (id, seq, tenant, kind, event, keys, status, attempts, \
                 created_at, updated_at, next_attempt_at, retry_since, \
                 idempotency_key, entity, body_hash) \
                 VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), $2, $3, $4, $5, \
                 'queued', 0, $6, $6, $6, $6, $7, $8, $9); \
                 INSERT OR IGNORE INTO job_keys (job_id, tenant, key, seq) \
                 SELECT j.id, j.tenant, k.value, j.seq FROM jobs j, json_each(j.keys) k \
                 WHERE j.id = $1; \
                 INSERT INTO idempotency (tenant, key, job_id, created_at) \
                 SELECT $2, $7, $1, $6 WHERE $7 IS NOT NULL \
                 ON CONFLICT (tenant, key) DO UPDATE SET job_id = excluded.job_id; \
                 INSERT INTO entity_heads (tenant, entity, job_id, body_hash) \
                 VALUES ($2, $8, $1, $9) \
                 ON CONFLICT (tenant, entity) DO UPDATE \
                 SET job_id = excluded.job_id, body_hash = excluded.body_hash; \
                 SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
            );
            let row = sqlx::query(&sql)
                .bind(job.id.to_string())
                .bind(&job.tenant)
                .bind(job.kind.as_str())
                .bind(job.event.to_string())
                .bind(Value::from(job.keys.clone()).to_string())
                .bind(to_ms(now))
                .bind(&job.idempotency_key)
                .bind(&job.entity)
                .bind(&job.body_hash)
                .fetch_one(&mut *tx)
                .await?;
            Ok(Admission::Created(SqliteDialect::job(&row)?))
        }
    }
}

impl QueueOps for SqliteDialect {
    // The write transaction already holds the database's only write lock.
    const FOR_UPDATE: &'static str = "";

    /// Admits through the group commit (see [`commit_admits`]).
    async fn admit(
        store: &SqliteStore,
        job: NewJob,
        force: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<Admission> {
        let closed = || StoreError::Unavailable("the store is closed".into());
        let (reply, answer) = oneshot::channel();
        store
            .state
            .admits
            .send(AdmitRequest {
                job,
                force,
                now,
                reply,
            })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Claims on the single writer connection, which makes it exclusive.
    async fn claim(
        store: &SqliteStore,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        let now_ms = to_ms(now);
        // One writer at a time makes the claim exclusive; the subquery picks the
        // runnable jobs, the UPDATE takes them. INDEXED BY pins the plan that
        // walks only active jobs in seq order and stops at the limit, whatever
        // the table statistics say (an error, not a slow scan, if it broke).
        let mut tx = SqliteDialect::begin_write(&store.writer).await?;
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, \
         lease_until = $2, updated_at = $1 \
         WHERE id IN (SELECT j.id FROM jobs j INDEXED BY jobs_claim \
           WHERE j.status IN ('queued', 'running') \
           AND ((j.status = 'queued' AND j.next_attempt_at <= $1) \
             OR (j.status = 'running' AND j.lease_until < $1)) \
           AND NOT EXISTS (SELECT 1 FROM job_keys mine \
             JOIN job_keys earlier ON earlier.tenant = mine.tenant \
               AND earlier.key = mine.key AND earlier.seq < mine.seq \
             WHERE mine.job_id = j.id) \
           ORDER BY j.seq LIMIT $3) \
         RETURNING {JOB_COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(now_ms)
            .bind(to_ms(codec::lease_end(now, lease)))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut jobs = rows
            .iter()
            .map(SqliteDialect::job)
            .collect::<StoreResult<Vec<_>>>()?;
        for job in &jobs {
            sqlx::query(
                "UPDATE attempts SET finished_at = $1, error = $2 \
             WHERE job_id = $3 AND finished_at IS NULL; \
             INSERT INTO attempts (job_id, number, started_at) VALUES ($3, $4, $1)",
            )
            .bind(now_ms)
            .bind(LEASE_EXPIRED)
            .bind(job.id.to_string())
            .bind(i64::from(job.attempts))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        // RETURNING gives no order.
        jobs.sort_by_key(|j| j.seq);
        Ok(jobs)
    }

    async fn requeue(
        tx: &mut Transaction<'static, Sqlite>,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Job> {
        requeue(tx, id, now).await
    }
}
