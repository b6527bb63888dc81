//! The job queue on both back-ends. Admission, re-queueing, finishing, leases,
//! reads and queue figures are here; each back-end only wraps admission in its
//! transaction (SQLite: a group commit) and claims its own way.
//!
//! Ordering with blockers: a job's `blockers` counts its keys that an earlier
//! active job still holds (counted at admission, under the key's lock). When a
//! job becomes final it takes one blocker off the next active job of each of
//! its keys. A claim reads only `blockers = 0`. The per-key lock (PostgreSQL
//! advisory locks; SQLite's single writer) makes "count at admission" and
//! "release at finish" of one key happen one after the other, and the `seq`
//! of jobs sharing a key is taken under that lock, so it is their order.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::{Dialect, JOB_COLUMNS, QueueOps, SqlStore, for_every_dialect};
use crate::store::codec::{self, Decision, FinishPlan};
use crate::store::{
    ACTIVITY_LOOKBACK, Admission, Attempt, Finish, HourActivity, Job, JobFilter, JobQueue,
    JobStatus, NewJob, QueueStat, RetryResult, StoreResult,
};

for_every_dialect! { helpers for Dialect {
    /// One admission inside the caller's write transaction (SPEC §2 idempotency).
    pub(in crate::store) async fn admit_in(
        conn: &mut <D::Db as sqlx::Database>::Connection,
        job: NewJob,
        force: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<Admission> {
        // Key before entity, always: a fixed order cannot deadlock.
        if let Some(key) = &job.idempotency_key {
            D::lock(&mut *conn, &["idempotency", &job.tenant, key]).await?;
        }
        D::lock(&mut *conn, &["entity", &job.tenant, &job.entity]).await?;
        // FOR UPDATE: a job we may re-queue must not change under us (retry, finish).
        let found = match &job.idempotency_key {
            Some(key) => {
                let sql = format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE id = \
                     (SELECT job_id FROM idempotency WHERE tenant = $1 AND key = $2){}",
                    D::FOR_UPDATE
                );
                sqlx::query(&sql)
                    .bind(job.tenant.clone())
                    .bind(key.clone())
                    .fetch_optional(&mut *conn)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE id = (SELECT job_id FROM entity_heads \
                     WHERE tenant = $1 AND entity = $2 AND body_hash = $3){}",
                    D::FOR_UPDATE
                );
                sqlx::query(&sql)
                    .bind(job.tenant.clone())
                    .bind(job.entity.clone())
                    .bind(job.body_hash.clone())
                    .fetch_optional(&mut *conn)
                    .await?
            }
        };
        let found = found.as_ref().map(D::job).transpose()?;
        match codec::decide(found, force) {
            Decision::Existing(existing) => Ok(Admission::Existing(existing)),
            Decision::Requeue(failed) => Ok(Admission::Requeued(
                Self::requeue_in(conn, failed.id, now).await?,
            )),
            Decision::Create => Ok(Admission::Created(Self::create_in(conn, job, now).await?)),
        }
    }

    /// Stores a new job: queued, due now, the next seq, its blockers counted
    /// and its keys held; the newest job of its entity (and its key's job).
    async fn create_in(
        conn: &mut <D::Db as sqlx::Database>::Connection,
        job: NewJob,
        now: DateTime<Utc>,
    ) -> StoreResult<Job> {
        Self::lock_keys(conn, &job.tenant, &job.keys).await?;
        let keys = serde_json::Value::from(job.keys.clone());
        let sql = format!(
            "INSERT INTO jobs (id, seq, tenant, kind, event, keys, status, attempts, blockers, \
             created_at, updated_at, next_attempt_at, retry_since, \
             idempotency_key, entity, body_hash) \
             VALUES ($1, {seq}, $2, $3, $4, $5, 'queued', 0, \
               (SELECT COUNT(DISTINCT k.value) FROM {mine} WHERE EXISTS \
                 (SELECT 1 FROM job_keys held WHERE held.tenant = $2 AND held.key = k.value)), \
             $6, $6, $6, $6, $7, $8, $9) RETURNING {JOB_COLUMNS}",
            seq = D::NEXT_JOB_SEQ,
            mine = D::json_strings("$5", "k"),
        );
        let row = sqlx::query(&sql)
            .bind(D::id(job.id))
            .bind(job.tenant.clone())
            .bind(job.kind.as_str())
            .bind(D::json(&job.event))
            .bind(D::json(&keys))
            .bind(D::time(now))
            .bind(job.idempotency_key.clone())
            .bind(job.entity.clone())
            .bind(job.body_hash.clone())
            .fetch_one(&mut *conn)
            .await?;
        let created = D::job(&row)?;
        Self::hold_keys(conn, job.id).await?;
        if let Some(key) = &job.idempotency_key {
            // With `force` the key moves to the new job.
            sqlx::query(
                "INSERT INTO idempotency (tenant, key, job_id, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant, key) DO UPDATE SET job_id = excluded.job_id",
            )
            .bind(job.tenant.clone())
            .bind(key.clone())
            .bind(D::id(job.id))
            .bind(D::time(now))
            .execute(&mut *conn)
            .await?;
        }
        Self::become_entity_head(conn, job.id).await?;
        Ok(created)
    }

    /// Re-queues failed or dead job `id` (its row held by the caller): queued,
    /// due now, a new retry window, the next seq (behind newer jobs of its
    /// keys), its blockers counted again and its keys held, the newest job of
    /// its entity. Attempts and their history are kept.
    async fn requeue_in(
        conn: &mut <D::Db as sqlx::Database>::Connection,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Job> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let job = sqlx::query(&sql)
            .bind(D::id(id))
            .fetch_one(&mut *conn)
            .await?;
        let job = D::job(&job)?;
        Self::lock_keys(conn, &job.tenant, &job.keys).await?;
        let sql = format!(
            "UPDATE jobs SET status = 'queued', seq = {seq}, \
             blockers = (SELECT COUNT(DISTINCT k.value) FROM {mine} WHERE EXISTS \
               (SELECT 1 FROM job_keys held WHERE held.tenant = jobs.tenant AND held.key = k.value)), \
             next_attempt_at = $1, retry_since = $1, lease_until = NULL, updated_at = $1 \
             WHERE id = $2 RETURNING {JOB_COLUMNS}",
            seq = D::NEXT_JOB_SEQ,
            mine = D::json_strings("jobs.keys", "k"),
        );
        let row = sqlx::query(&sql)
            .bind(D::time(now))
            .bind(D::id(id))
            .fetch_one(&mut *conn)
            .await?;
        let job = D::job(&row)?;
        Self::hold_keys(conn, id).await?;
        Self::become_entity_head(conn, id).await?;
        Ok(job)
    }

    /// Takes the lock of each of `keys` (sorted: a fixed order cannot deadlock);
    /// nothing to do where the back-end serialises every write anyway.
    async fn lock_keys(
        conn: &mut <D::Db as sqlx::Database>::Connection,
        tenant: &str,
        keys: &[String],
    ) -> StoreResult<()> {
        if !D::KEY_LOCKS {
            return Ok(());
        }
        let mut keys: Vec<&String> = keys.iter().collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            D::lock(&mut *conn, &["key", tenant, key]).await?;
        }
        Ok(())
    }

    /// Copies a job's keys (deduplicated) and seq into `job_keys`: held.
    async fn hold_keys(conn: &mut <D::Db as sqlx::Database>::Connection, id: Uuid) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO job_keys (job_id, tenant, key, seq) \
             SELECT DISTINCT j.id, j.tenant, k.value, j.seq FROM jobs j, {keys} \
             WHERE j.id = $1 ON CONFLICT DO NOTHING",
            keys = D::json_strings("j.keys", "k"),
        );
        sqlx::query(&sql).bind(D::id(id)).execute(&mut *conn).await?;
        Ok(())
    }

    /// Makes a job the newest of its entity (SPEC §2's body-hash rule).
    async fn become_entity_head(conn: &mut <D::Db as sqlx::Database>::Connection, id: Uuid) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO entity_heads (tenant, entity, job_id, body_hash) \
             SELECT tenant, entity, id, body_hash FROM jobs WHERE id = $1 \
             ON CONFLICT (tenant, entity) DO UPDATE \
             SET job_id = excluded.job_id, body_hash = excluded.body_hash",
        )
        .bind(D::id(id))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Ends attempt `attempt` of running job `id` inside the caller's write
    /// transaction (see [`crate::store::JobQueue::finish`]); false, and
    /// nothing changed, when the claim was lost.
    pub(in crate::store) async fn finish_in(
        conn: &mut <D::Db as sqlx::Database>::Connection,
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
        let tenant: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET status = $1, last_error = $2, outcome = $3, next_attempt_at = $4, \
             lease_until = NULL, updated_at = $5 \
             WHERE id = $6 AND status = 'running' AND attempts = $7 RETURNING tenant",
        )
            .bind(status)
            .bind(finish.error.clone())
            .bind(finish.outcome.as_ref().map(D::json))
            .bind(next_attempt_at.map(D::time))
            .bind(D::time(now))
            .bind(D::id(id))
            .bind(D::count(attempt))
            .fetch_optional(&mut *conn)
            .await?;
        let Some(tenant) = tenant else {
            return Ok(false);
        };
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
        .execute(&mut *conn)
        .await?;
        if is_final {
            Self::release_keys(conn, &tenant, id).await?;
        }
        Ok(true)
    }

    /// Lets go of a final job's keys: the next active job of each key loses
    /// one blocker (a job next on two of its keys loses two), then the keys go.
    async fn release_keys(
        conn: &mut <D::Db as sqlx::Database>::Connection,
        tenant: &str,
        id: Uuid,
    ) -> StoreResult<()> {
        if D::KEY_LOCKS {
            let keys: Vec<String> =
                sqlx::query_scalar("SELECT key FROM job_keys WHERE job_id = $1")
                    .bind(D::id(id))
                    .fetch_all(&mut *conn)
                    .await?;
            Self::lock_keys(conn, tenant, &keys).await?;
        }
        sqlx::query(
            "WITH next AS ( \
               SELECT (SELECT later.job_id FROM job_keys later \
                       WHERE later.tenant = mine.tenant AND later.key = mine.key \
                         AND later.seq > mine.seq ORDER BY later.seq LIMIT 1) AS job_id \
               FROM job_keys mine WHERE mine.job_id = $1) \
             UPDATE jobs SET blockers = blockers - \
               (SELECT COUNT(*) FROM next WHERE next.job_id = jobs.id) \
             WHERE id IN (SELECT job_id FROM next)",
        )
        .bind(D::id(id))
        .execute(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM job_keys WHERE job_id = $1")
            .bind(D::id(id))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}}

for_every_dialect! { JobQueue for QueueOps {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn admit(&self, job: NewJob, force: bool, now: DateTime<Utc>) -> StoreResult<Admission> {
        D::admit(self, job, force, now).await
    }

    async fn claim(
        &self,
        tenant: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        D::claim(self, tenant, now, lease, limit).await
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
        let job = Self::requeue_in(&mut *tx, id, now).await?;
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
            // "ends with :<ref>", without LIKE (an ID may contain % or _).
            let p = param();
            sql += &format!(
                " AND EXISTS (SELECT 1 FROM {keys} WHERE length(k.value) >= length(${p}) \
                 AND substr(k.value, length(k.value) - length(${p}) + 1) = ${p})",
                keys = D::json_strings("jobs.keys", "k"),
            );
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
        D::finish(self, id, attempt, now, finish).await
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
        // A call shared by n jobs appears in each of their attempts: count its share.
        let mut shares = vec![0.0_f64; out.len()];
        for attempt in rows.iter().map(D::attempt) {
            let attempt = attempt?;
            let hour = (attempt.started_at - from).num_hours();
            if let Some(slot) = usize::try_from(hour).ok().and_then(|h| shares.get_mut(h)) {
                *slot += attempt
                    .calls
                    .iter()
                    .map(|c| 1.0 / f64::from(c.batch.unwrap_or(1).max(1)))
                    .sum::<f64>();
            }
        }
        for (slot, share) in out.iter_mut().zip(shares) {
            slot.calls = share.round() as u64;
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
}}

/// The smallest UUIDv7 of instant `t`: every job admitted at or after `t` has
/// an id at least this (ids are UUIDv7 made at admission; their first 48 bits
/// are the Unix milliseconds).
fn id_floor(t: DateTime<Utc>) -> Uuid {
    let ms = u64::try_from(t.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}
