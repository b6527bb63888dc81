//! PostgreSQL job queue: admission in its own transaction, and claiming with
//! `FOR UPDATE SKIP LOCKED`. The rest is shared (`store/shared/queue.rs`).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::types::{PgTime, PgUuid};
use super::{PgDialect, PgStore};
use crate::store::codec::{self, LEASE_EXPIRED};
use crate::store::shared::{CLAIMABLE, Dialect, JOB_COLUMNS, QueueOps};
use crate::store::{Admission, Finish, Job, NewJob, StoreResult};
use uuid::Uuid;

impl QueueOps for PgDialect {
    /// Admits in one transaction, under advisory locks on the idempotency key,
    /// the entity and the job's ordering keys (see `SqlStore::admit_in`).
    async fn admit(
        store: &PgStore,
        job: NewJob,
        force: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<Admission> {
        let mut tx = store.pool().begin().await?;
        let admission = PgStore::admit_in(&mut tx, job, force, now).await?;
        tx.commit().await?;
        Ok(admission)
    }

    async fn finish(
        store: &PgStore,
        id: Uuid,
        attempt: u32,
        now: DateTime<Utc>,
        finish: Finish,
    ) -> StoreResult<bool> {
        let mut tx = store.pool().begin().await?;
        let done = PgStore::finish_in(&mut tx, id, attempt, now, finish).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Two statements in one transaction. The first picks candidates and locks
    /// them (SKIP LOCKED: claimers on several replicas pass each other, nobody
    /// waits); the second takes them if they are still claimable in a fresh
    /// snapshot (a blocker count only ever goes down while a job is queued).
    async fn claim(
        store: &PgStore,
        tenant: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        let mut tx = store.pool().begin().await?;
        let pick = format!(
            "SELECT j.id FROM jobs j WHERE j.id IN ({CLAIMABLE}) FOR UPDATE OF j SKIP LOCKED"
        );
        let candidates: Vec<PgUuid> = sqlx::query_scalar(&pick)
            .bind(PgTime(now))
            .bind(tenant)
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
               WHERE j.id = ANY($3) AND ( \
                 (j.status = 'queued' AND j.blockers = 0 AND j.next_attempt_at <= $1) \
                 OR (j.status = 'running' AND j.lease_until < $1)) \
               RETURNING j.* \
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
}
