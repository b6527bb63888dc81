//! The job queue on both back-ends: reads, leases, finishing an attempt and
//! queue figures here; admission, claiming and re-queueing in each dialect.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::{JOB_COLUMNS, QueueOps, SqlStore, for_every_dialect};
use crate::store::codec::{self, FinishPlan};
use crate::store::{
    ACTIVITY_LOOKBACK, Admission, Attempt, Finish, HourActivity, Job, JobFilter, JobQueue,
    JobStatus, NewJob, QueueStat, RetryResult, StoreResult,
};

for_every_dialect! { JobQueue for QueueOps {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn admit(&self, job: NewJob, force: bool, now: DateTime<Utc>) -> StoreResult<Admission> {
        D::admit(self, job, force, now).await
    }

    async fn claim(&self, now: DateTime<Utc>, lease: Duration, limit: u32) -> StoreResult<Vec<Job>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        D::claim(self, now, lease, limit).await
    }

    async fn retry(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<RetryResult> {
        let mut tx = D::begin_write(&self.writer).await?;
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1{}", D::FOR_UPDATE);
        let row = sqlx::query(&sql)
            .bind(D::id(id))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(job) = row.as_ref().map(D::job).transpose()? else {
            tx.rollback().await?;
            return Ok(RetryResult::NotFound);
        };
        if !matches!(job.status, JobStatus::Failed | JobStatus::Dead) {
            tx.rollback().await?;
            return Ok(RetryResult::NotRetryable(job));
        }
        let job = D::requeue(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(RetryResult::Requeued(job))
    }

    async fn job(&self, id: Uuid) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(D::id(id))
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(D::job).transpose()
    }

    async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
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

    async fn attempts(&self, job_id: Uuid) -> StoreResult<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT number, started_at, finished_at, calls, error, result \
             FROM attempts WHERE job_id = $1 ORDER BY number",
        )
        .bind(D::id(job_id))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(D::attempt).collect()
    }

    async fn extend_lease(&self, id: Uuid, attempt: u32, until: DateTime<Utc>) -> StoreResult<bool> {
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

    async fn queue_stats(&self) -> StoreResult<Vec<QueueStat>> {
        let rows = sqlx::query(
            "SELECT tenant, status, COUNT(*) AS n, MIN(created_at) AS oldest \
             FROM jobs GROUP BY tenant, status ORDER BY tenant, status",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(D::queue_stat).collect()
    }

    async fn activity(
        &self,
        tenant: &str,
        from: DateTime<Utc>,
        hours: u32,
    ) -> StoreResult<Vec<HourActivity>> {
        use sqlx::Row as _;
        if hours == 0 {
            return Ok(Vec::new());
        }
        let starts: Vec<DateTime<Utc>> = (0..=hours)
            .map(|h| from + TimeDelta::hours(i64::from(h)))
            .collect();
        let end = starts[hours as usize];
        let floor = id_floor(from - ACTIVITY_LOOKBACK);
        // Events: one row, a sum per hour ($3 … $hours+3 are the hour bounds).
        let sums: Vec<String> = (0..hours as usize)
            .map(|h| {
                format!(
                    "COALESCE(SUM(CASE WHEN created_at >= ${} AND created_at < ${} \
                     THEN 1 ELSE 0 END), 0)",
                    h + 3,
                    h + 4
                )
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM jobs WHERE tenant = $1 AND id >= $2 AND kind <> 'grades-sync'",
            sums.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(tenant.to_owned()).bind(D::id(floor));
        for start in &starts {
            query = query.bind(D::time(*start));
        }
        let row = query.fetch_one(&self.reader).await?;
        let mut out: Vec<HourActivity> = Vec::with_capacity(hours as usize);
        for (h, start) in starts.iter().take(hours as usize).enumerate() {
            let events: i64 = row.try_get(h)?;
            out.push(HourActivity {
                start: *start,
                events: events.max(0) as u64,
                calls: 0,
            });
        }
        // Calls: the attempts started in the window, counted here.
        let rows = sqlx::query(
            "SELECT a.number, a.started_at, a.finished_at, a.calls, a.error, a.result \
             FROM attempts a JOIN jobs j ON j.id = a.job_id \
             WHERE j.tenant = $1 AND a.job_id >= $2 AND a.started_at >= $3 AND a.started_at < $4",
        )
        .bind(tenant.to_owned())
        .bind(D::id(floor))
        .bind(D::time(from))
        .bind(D::time(end))
        .fetch_all(&self.reader)
        .await?;
        for attempt in rows.iter().map(D::attempt) {
            let attempt = attempt?;
            let hour = (attempt.started_at - from).num_hours();
            if let Some(slot) = usize::try_from(hour).ok().and_then(|h| out.get_mut(h)) {
                slot.calls += attempt.calls.len() as u64;
            }
        }
        Ok(out)
    }

    async fn run_now(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET next_attempt_at = $1, updated_at = $1 \
             WHERE id = $2 AND status = 'queued'",
        )
        .bind(D::time(now))
        .bind(D::id(id))
        .execute(&self.writer)
        .await?;
        Ok(D::rows_affected(&done) == 1)
    }
} }

/// The smallest UUIDv7 of instant `t`: every job admitted at or after `t` has
/// an id at least this (ids are UUIDv7 made at admission; their first 48 bits
/// are the Unix milliseconds).
fn id_floor(t: DateTime<Utc>) -> Uuid {
    let ms = u64::try_from(t.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}
