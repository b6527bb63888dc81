//! SQLite job queue: admission in group commits, and claiming, both on the
//! single writer connection. The rest is shared (`store/shared/queue.rs`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Acquire;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::{SqliteDialect, SqliteStore};
use crate::store::codec::{self, LEASE_EXPIRED, to_ms};
use crate::store::shared::{CLAIMABLE, Dialect, JOB_COLUMNS, QueueOps};
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
                let result = SqliteStore::admit_in(
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

impl QueueOps for SqliteDialect {
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

    /// One statement on the single writer connection, so a claim is exclusive.
    async fn claim(
        store: &SqliteStore,
        tenant: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        let now_ms = to_ms(now);
        let mut tx = SqliteDialect::begin_write(&store.writer).await?;
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, \
             lease_until = $4, updated_at = $1 \
             WHERE id IN ({CLAIMABLE}) RETURNING {JOB_COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(now_ms)
            .bind(tenant)
            .bind(i64::from(limit))
            .bind(to_ms(codec::lease_end(now, lease)))
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
}
