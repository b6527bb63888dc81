//! Retention on both back-ends: which rows may go, in dialect-neutral SQL.
//!
//! A pass walks each pruned job status through its `(status, id)` index, then
//! the write-backs by `seq`, one window at a time. The window is read from the
//! reader pool (on SQLite it never waits for the writer); only when it holds
//! something to delete does a write transaction start, and it re-checks every
//! condition itself (locking the rows on PostgreSQL, `SKIP LOCKED`, so two
//! replicas pruning at once pass each other), deletes, and commits.

use std::future::Future;

use sqlx::Database;
use uuid::Uuid;

use super::{Dialect, SqlStore, for_every_dialect};
use crate::store::retention::{
    Cutoffs, PRUNED_JOB_STATUSES, PruneCursor, PruneStep, Pruned, Retention, Space,
};
use crate::store::{JobStatus, StoreResult};

/// What retention needs from a back-end beyond the shared queries (in each
/// back-end's `retention.rs`).
pub trait RetentionOps: Dialect {
    /// Appended to the re-check that picks the jobs to delete: lock them
    /// without waiting (PostgreSQL); empty where the writer is already exclusive.
    const LOCK_SKIP_LOCKED: &'static str;

    /// `id` and `prunable` of a row of the job window.
    fn window_job(row: &<Self::Db as Database>::Row) -> StoreResult<(Uuid, bool)>;

    /// `id` of a job about to be deleted.
    fn doomed_job(row: &<Self::Db as Database>::Row) -> StoreResult<Uuid>;

    /// `id`, `seq` and `prunable` of a row of the write-back window.
    fn window_writeback(row: &<Self::Db as Database>::Row) -> StoreResult<(Uuid, i64, bool)>;

    /// See [`Retention::release_space`].
    fn release_space(
        store: &SqlStore<Self>,
        pages: u32,
    ) -> impl Future<Output = StoreResult<Space>> + Send;
}

/// Job `j` may go (given its status's cut-off `$c` and the idempotency cut-off
/// `$i`): finished long enough ago, not its entity's newest job, and no
/// idempotency key points at it unless that key's time has passed too.
fn job_prunable(c: usize, i: usize) -> String {
    format!(
        "j.updated_at < ${c} \
         AND NOT EXISTS (SELECT 1 FROM entity_heads h \
           WHERE h.tenant = j.tenant AND h.entity = j.entity AND h.job_id = j.id) \
         AND NOT EXISTS (SELECT 1 FROM idempotency k \
           WHERE k.tenant = j.tenant AND k.key = j.idempotency_key AND k.job_id = j.id \
           AND j.updated_at >= ${i})"
    )
}

/// Write-back `w` may go: delivered or superseded before `$d`, or dead before
/// `$f`, and a newer write-back for the same target exists.
fn writeback_prunable(w: &str, d: usize, f: usize) -> String {
    format!(
        "((({w}.status = 'delivered' OR {w}.status = 'superseded') AND {w}.updated_at < ${d}) \
           OR ({w}.status = 'dead' AND {w}.updated_at < ${f})) \
         AND EXISTS (SELECT 1 FROM writebacks n WHERE n.tenant = {w}.tenant \
           AND n.entity = {w}.entity AND n.apit_id = {w}.apit_id AND n.seq > {w}.seq)"
    )
}

/// `$from, $from+1, …` for `n` values.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|p| format!("${p}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The cut-off of a job status.
fn cutoff_of(status: JobStatus, cutoffs: &Cutoffs) -> chrono::DateTime<chrono::Utc> {
    match status {
        JobStatus::Failed | JobStatus::Dead => cutoffs.failed_before,
        _ => cutoffs.succeeded_before,
    }
}

for_every_dialect! { Retention for RetentionOps {
    async fn prune(&self, cutoffs: &Cutoffs, cursor: PruneCursor, batch: u32) -> StoreResult<PruneStep> {
        let batch = batch.max(1);
        let limit = i64::from(batch);
        if let Some(&status) = PRUNED_JOB_STATUSES.get(cursor.stage) {
            let cutoff = cutoff_of(status, cutoffs);
            // The window: the next `batch` jobs of this status, each with its verdict.
            let sql = format!(
                "SELECT j.id, CAST(CASE WHEN {} THEN 1 ELSE 0 END AS BIGINT) AS prunable \
                 FROM jobs j WHERE j.status = $1 AND j.id > $2 ORDER BY j.id LIMIT $5",
                job_prunable(3, 4)
            );
            let rows = sqlx::query(&sql)
                .bind(status.as_str())
                .bind(D::id(cursor.after_job.unwrap_or(Uuid::nil())))
                .bind(D::time(cutoff))
                .bind(D::time(cutoffs.idempotency_before))
                .bind(limit)
                .fetch_all(&self.reader)
                .await?;
            let window = rows.iter().map(D::window_job).collect::<StoreResult<Vec<_>>>()?;
            let next = match window.last() {
                Some(&(last, _)) if window.len() == batch as usize => PruneCursor {
                    after_job: Some(last),
                    ..cursor.clone()
                },
                // A short window ends this status.
                _ => PruneCursor { stage: cursor.stage + 1, after_job: None, ..cursor.clone() },
            };
            let candidates: Vec<Uuid> =
                window.iter().filter(|(_, ok)| *ok).map(|(id, _)| *id).collect();
            let pruned = if candidates.is_empty() {
                Pruned::default()
            } else {
                self.delete_jobs(status, cutoff, cutoffs.idempotency_before, &candidates).await?
            };
            return Ok(PruneStep { pruned, next: Some(next) });
        }
        if cursor.stage == PRUNED_JOB_STATUSES.len() {
            let sql = format!(
                "SELECT w.id, w.seq, CAST(CASE WHEN {} THEN 1 ELSE 0 END AS BIGINT) AS prunable \
                 FROM writebacks w WHERE w.seq > $1 ORDER BY w.seq LIMIT $4",
                writeback_prunable("w", 2, 3)
            );
            let rows = sqlx::query(&sql)
                .bind(cursor.after_seq)
                .bind(D::time(cutoffs.writebacks_before))
                .bind(D::time(cutoffs.failed_before))
                .bind(limit)
                .fetch_all(&self.reader)
                .await?;
            let window = rows.iter().map(D::window_writeback).collect::<StoreResult<Vec<_>>>()?;
            let next = match window.last() {
                Some(&(_, seq, _)) if window.len() == batch as usize => {
                    Some(PruneCursor { after_seq: seq, ..cursor.clone() })
                }
                _ => None,
            };
            let candidates: Vec<Uuid> =
                window.iter().filter(|(_, _, ok)| *ok).map(|(id, _, _)| *id).collect();
            let mut pruned = Pruned::default();
            if !candidates.is_empty() {
                let sql = format!(
                    "DELETE FROM writebacks WHERE id IN ({}) AND {}",
                    placeholders(3, candidates.len()),
                    writeback_prunable("writebacks", 1, 2)
                );
                let mut query = sqlx::query(&sql)
                    .bind(D::time(cutoffs.writebacks_before))
                    .bind(D::time(cutoffs.failed_before));
                for id in &candidates {
                    query = query.bind(D::id(*id));
                }
                let mut tx = D::begin_write(&self.writer).await?;
                let done = query.execute(&mut *tx).await?;
                tx.commit().await?;
                pruned.writebacks = D::rows_affected(&done);
            }
            return Ok(PruneStep { pruned, next });
        }
        Ok(PruneStep::default())
    }

    async fn release_space(&self, pages: u32) -> StoreResult<Space> {
        D::release_space(self, pages).await
    }
} }

impl<D: RetentionOps> SqlStore<D>
where
    for<'c> &'c mut <D::Db as sqlx::Database>::Connection: sqlx::Executor<'c, Database = D::Db>,
    for<'q> <D::Db as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, D::Db>,
    for<'q> &'q str: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
    for<'q> String: sqlx::Encode<'q, D::Db>,
    String: sqlx::Type<D::Db>,
{
    /// In one write transaction: re-checks (and on PostgreSQL locks) the
    /// candidates, then deletes their attempts, leftover keys, idempotency
    /// records and the jobs themselves.
    async fn delete_jobs(
        &self,
        status: JobStatus,
        cutoff: chrono::DateTime<chrono::Utc>,
        idempotency_before: chrono::DateTime<chrono::Utc>,
        candidates: &[Uuid],
    ) -> StoreResult<Pruned> {
        let mut tx = D::begin_write(&self.writer).await?;
        let sql = format!(
            "SELECT j.id FROM jobs j \
             WHERE j.id IN ({}) AND j.status = $1 AND {}{}",
            placeholders(4, candidates.len()),
            job_prunable(2, 3),
            D::LOCK_SKIP_LOCKED
        );
        let mut query = sqlx::query(&sql)
            .bind(status.as_str())
            .bind(D::time(cutoff))
            .bind(D::time(idempotency_before));
        for id in candidates {
            query = query.bind(D::id(*id));
        }
        let rows = query.fetch_all(&mut *tx).await?;
        let doomed = rows
            .iter()
            .map(D::doomed_job)
            .collect::<StoreResult<Vec<_>>>()?;
        if doomed.is_empty() {
            tx.rollback().await?;
            return Ok(Pruned::default());
        }
        let ids = placeholders(1, doomed.len());
        let mut pruned = Pruned::default();
        // Everything that points at the jobs, each by an index on job_id
        // (idempotency's is migration 0004's), then the jobs themselves.
        for (table, count) in [
            ("attempts", &mut pruned.attempts),
            ("job_keys", &mut pruned.job_keys),
            ("idempotency", &mut pruned.idempotency),
        ] {
            let sql = format!("DELETE FROM {table} WHERE job_id IN ({ids})");
            let mut query = sqlx::query(&sql);
            for id in &doomed {
                query = query.bind(D::id(*id));
            }
            *count = D::rows_affected(&query.execute(&mut *tx).await?);
        }
        let sql = format!("DELETE FROM jobs WHERE id IN ({ids})");
        let mut query = sqlx::query(&sql);
        for id in &doomed {
            query = query.bind(D::id(*id));
        }
        pruned.jobs = D::rows_affected(&query.execute(&mut *tx).await?);
        tx.commit().await?;
        Ok(pruned)
    }
}
