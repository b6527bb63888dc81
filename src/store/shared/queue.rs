//! Job-queue queries that are the same on both back-ends: reads, leases,
//! finishing an attempt, queue figures.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Dialect, JOB_COLUMNS, Shared, shared_queries};
use crate::store::codec::{self, FinishPlan};
use crate::store::{Attempt, Finish, Job, JobFilter, QueueStat, StoreResult};

shared_queries! {
    /// See [`crate::store::JobQueue::job`].
    pub async fn job(&self, id: Uuid) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(D::id(id))
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(D::job).transpose()
    }

    /// See [`crate::store::JobQueue::jobs`].
    pub async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        let needle = match &filter.reference {
            Some(reference) => match codec::reference_needle(reference) {
                Some(needle) => Some(needle),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        // The conditions in order, each with the next `$n`; binds follow the same order.
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE 1 = 1");
        let mut n = 0;
        let mut param = || {
            n += 1;
            n
        };
        if filter.tenant.is_some() {
            sql += &format!(" AND tenant = ${}", param());
        }
        if filter.status.is_some() {
            sql += &format!(" AND status = ${}", param());
        }
        if filter.kind.is_some() {
            sql += &format!(" AND kind = ${}", param());
        }
        if needle.is_some() {
            sql += &format!(" AND {}", D::reference_condition(param()));
        }
        if filter.before.is_some() {
            sql += &format!(" AND id < ${}", param());
        }
        sql += " ORDER BY id DESC";
        // A limit of 0 means no limit.
        if filter.limit > 0 {
            sql += &format!(" LIMIT ${}", param());
        }
        let mut query = sqlx::query(&sql);
        if let Some(tenant) = &filter.tenant {
            query = query.bind(tenant.clone());
        }
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        if let Some(kind) = filter.kind {
            query = query.bind(kind.as_str());
        }
        if let Some(needle) = needle {
            query = query.bind(needle);
        }
        if let Some(before) = filter.before {
            query = query.bind(D::id(before));
        }
        if filter.limit > 0 {
            query = query.bind(i64::from(filter.limit));
        }
        let rows = query.fetch_all(&self.reader).await?;
        rows.iter().map(D::job).collect()
    }

    /// See [`crate::store::JobQueue::attempts`].
    pub async fn attempts(&self, job_id: Uuid) -> StoreResult<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT number, started_at, finished_at, calls, error, result \
             FROM attempts WHERE job_id = $1 ORDER BY number",
        )
        .bind(D::id(job_id))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(D::attempt).collect()
    }

    /// See [`crate::store::JobQueue::extend_lease`].
    pub async fn extend_lease(&self, id: Uuid, attempt: u32, until: DateTime<Utc>) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = $1 \
             WHERE id = $2 AND status = 'running' AND attempts = $3",
        )
        .bind(D::time(until))
        .bind(D::id(id))
        .bind(D::count(attempt))
        .execute(&self.writer)
        .await?;
        Ok(D::rows_affected(&done) == 1)
    }

    /// See [`crate::store::JobQueue::finish`].
    pub async fn finish(
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
        let mut tx = D::begin_write(&self.writer).await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = $1, last_error = $2, outcome = $3, next_attempt_at = $4, \
             lease_until = NULL, updated_at = $5 \
             WHERE id = $6 AND status = 'running' AND attempts = $7",
        )
        .bind(status)
        .bind(finish.error.clone())
        .bind(finish.outcome.as_ref().map(D::json))
        .bind(next_attempt_at.map(D::time))
        .bind(D::time(now))
        .bind(D::id(id))
        .bind(D::count(attempt))
        .execute(&mut *tx)
        .await?;
        if D::rows_affected(&done) != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE attempts SET finished_at = $1, calls = $2, error = $3, result = $4 \
             WHERE job_id = $5 AND number = $6",
        )
        .bind(D::time(now))
        .bind(D::json(&codec::calls_json(&finish.calls)))
        .bind(finish.error)
        .bind(status)
        .bind(D::id(id))
        .bind(D::count(attempt))
        .execute(&mut *tx)
        .await?;
        if is_final {
            sqlx::query("DELETE FROM job_keys WHERE job_id = $1")
                .bind(D::id(id))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// See [`crate::store::JobQueue::queue_stats`].
    pub async fn queue_stats(&self) -> StoreResult<Vec<QueueStat>> {
        let rows = sqlx::query(
            "SELECT tenant, status, COUNT(*) AS n, MIN(created_at) AS oldest \
             FROM jobs GROUP BY tenant, status ORDER BY tenant, status",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(D::queue_stat).collect()
    }
}
