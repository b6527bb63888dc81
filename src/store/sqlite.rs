//! SQLite store: the embedded default (one process owns the database file).
//!
//! Concurrency: every write goes through a pool of ONE connection, and every
//! multi-statement write is a `BEGIN IMMEDIATE` transaction, so writes in this
//! process queue behind each other instead of failing with `SQLITE_BUSY`, and a
//! read-then-write transaction never has to upgrade its lock (the upgrade is
//! what fails without waiting). Reads use a separate pool and, in WAL mode,
//! never wait for the writer. `busy_timeout` covers another process (e.g. the
//! `jobs retry` CLI) holding the write lock for a moment.
//!
//! Durability: WAL with `synchronous = NORMAL` by default: a committed
//! transaction survives a crash of the process (`kill -9`), but the last
//! transactions before a power loss or OS crash may be lost. Add
//! `?synchronous=full` to the URL to make every commit survive power loss too
//! (one fsync per commit).

use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Acquire, QueryBuilder, Row, Sqlite, Transaction};

use super::codec::{
    self, Decision, FinishPlan, LEASE_EXPIRED, RawAttempt, RawEnrolment, RawJob, RawWriteback,
    from_ms, from_ms_opt, json, json_opt, to_ms,
};
use super::migrations;
use super::*;
use tokio::sync::{mpsc, oneshot};

/// Readers in parallel with the single writer (WAL lets them run concurrently).
const READERS: u32 = 4;
/// Admissions waiting for the next group commit (back-pressure beyond this).
const ADMIT_QUEUE: usize = 1024;
/// At most this many admissions share one transaction.
const ADMIT_BATCH: usize = 128;

/// One admission waiting for its group commit.
struct AdmitRequest {
    job: NewJob,
    force: bool,
    now: DateTime<Utc>,
    reply: oneshot::Sender<StoreResult<Admission>>,
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
            let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
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

/// How long a statement waits for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The columns of a job, in the order [`job_from_row`] reads them.
macro_rules! job_columns {
    () => {
        "id, seq, tenant, kind, event, keys, status, attempts, created_at, updated_at, \
         next_attempt_at, retry_since, lease_until, last_error, outcome"
    };
}

/// The columns of a write-back, for [`writeback_from_row`].
macro_rules! writeback_columns {
    () => {
        "id, seq, job_id, tenant, entity, apit_id, payload, status, attempts, created_at, \
         retry_since, next_attempt_at, last_error"
    };
}

/// The SQLite back-end of [`Store`].
pub struct SqliteStore {
    /// Exactly one connection: all writes, in order.
    writer: SqlitePool,
    /// Admissions, committed in groups by [`commit_admits`].
    admits: mpsc::Sender<AdmitRequest>,
    /// Reads only (`query_only` is set on these connections).
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`,
    /// optionally `?synchronous=full`) and applies migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let (url, synchronous) = split_synchronous(url)?;
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);

        // The writer connection lives as long as the store: reopening it would
        // only cost time, and an in-memory database would vanish with it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        migrations::migrator(migrations::SQLITE)
            .await?
            .run(&writer)
            .await?;
        // Refresh the planner's statistics where they are stale (cheap; what
        // SQLite recommends when opening a long-lived connection).
        sqlx::query("PRAGMA optimize = 0x10002")
            .execute(&writer)
            .await?;

        // An in-memory database exists once per connection: read through the writer.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READERS)
                .connect_with(options.pragma("query_only", "ON"))
                .await?
        };
        let (admits, queue) = mpsc::channel(ADMIT_QUEUE);
        tokio::spawn(commit_admits(writer.clone(), queue));
        Ok(SqliteStore {
            writer,
            admits,
            reader,
        })
    }

    /// Closes both pools (checkpointing the WAL), e.g. before reopening the file.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// A write transaction that holds the write lock from its first statement.
    async fn write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Takes the store's own `synchronous` parameter out of the URL (sqlx rejects
/// unknown parameters) and returns the rest with the chosen mode.
fn split_synchronous(url: &str) -> StoreResult<(String, SqliteSynchronous)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), SqliteSynchronous::Normal));
    };
    let mut synchronous = SqliteSynchronous::Normal;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("synchronous", value)) => {
                // `off` is refused: it can corrupt the file on an OS crash.
                synchronous = match SqliteSynchronous::from_str(value) {
                    Ok(SqliteSynchronous::Off) | Err(_) => {
                        return Err(sqlx::Error::Configuration(
                            format!(
                                "unsupported value {value:?} for `synchronous` \
                                 (normal, full or extra)"
                            )
                            .into(),
                        )
                        .into());
                    }
                    Ok(mode) => mode,
                };
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, synchronous))
}

fn job_from_row(row: &SqliteRow) -> StoreResult<Job> {
    RawJob {
        id: codec::uuid(row.try_get("id")?)?,
        seq: row.try_get("seq")?,
        tenant: row.try_get("tenant")?,
        kind: row.try_get("kind")?,
        event: json(row.try_get("event")?)?,
        keys: json(row.try_get("keys")?)?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        created_at: from_ms(row.try_get("created_at")?)?,
        updated_at: from_ms(row.try_get("updated_at")?)?,
        next_attempt_at: from_ms_opt(row.try_get("next_attempt_at")?)?,
        retry_since: from_ms(row.try_get("retry_since")?)?,
        lease_until: from_ms_opt(row.try_get("lease_until")?)?,
        last_error: row.try_get("last_error")?,
        outcome: json_opt(row.try_get("outcome")?)?,
    }
    .into_job()
}

fn writeback_from_row(row: &SqliteRow) -> StoreResult<Writeback> {
    let job_id: Option<String> = row.try_get("job_id")?;
    RawWriteback {
        id: codec::uuid(row.try_get("id")?)?,
        job_id: job_id.as_deref().map(codec::uuid).transpose()?,
        tenant: row.try_get("tenant")?,
        entity: row.try_get("entity")?,
        apit_id: row.try_get("apit_id")?,
        payload: json(row.try_get("payload")?)?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        created_at: from_ms(row.try_get("created_at")?)?,
        retry_since: from_ms(row.try_get("retry_since")?)?,
        next_attempt_at: from_ms_opt(row.try_get("next_attempt_at")?)?,
        last_error: row.try_get("last_error")?,
    }
    .into_writeback()
}

/// A JSON value as stored TEXT.
fn text(v: &Value) -> String {
    v.to_string()
}

/// Re-queues a failed or dead job inside `tx`: status queued, due now, a new
/// retry window, the next seq (so it goes behind newer jobs of its keys), its
/// keys active again, and it becomes the newest job of its entity. Attempts
/// and their history are kept.
async fn requeue(tx: &mut SqliteConnection, id: Uuid, now: DateTime<Utc>) -> StoreResult<Job> {
    let id = id.to_string();
    let row = sqlx::query(concat!(
        "UPDATE jobs SET status = 'queued', seq = (SELECT MAX(seq) + 1 FROM jobs), \
         next_attempt_at = ?1, retry_since = ?1, lease_until = NULL, updated_at = ?1 \
         WHERE id = ?2 RETURNING ",
        job_columns!()
    ))
    .bind(to_ms(now))
    .bind(&id)
    .fetch_one(&mut *tx)
    .await?;
    let job = job_from_row(&row)?;
    activate_keys(tx, &id).await?;
    sqlx::query(
        "INSERT INTO entity_heads (tenant, entity, job_id, body_hash) \
         SELECT tenant, entity, id, body_hash FROM jobs WHERE id = ?1 \
         ON CONFLICT (tenant, entity) DO UPDATE \
         SET job_id = excluded.job_id, body_hash = excluded.body_hash",
    )
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    Ok(job)
}

/// Copies a job's ordering keys (deduplicated) and seq into `job_keys`.
async fn activate_keys(tx: &mut SqliteConnection, id: &str) -> StoreResult<()> {
    sqlx::query(
        "INSERT OR IGNORE INTO job_keys (job_id, tenant, key, seq) \
         SELECT j.id, j.tenant, k.value, j.seq FROM jobs j, json_each(j.keys) k WHERE j.id = ?1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    Ok(())
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
            sqlx::query(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE id = \
             (SELECT job_id FROM idempotency WHERE tenant = ?1 AND key = ?2)"
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
             WHERE tenant = ?1 AND entity = ?2 AND body_hash = ?3)"
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
        Decision::Existing(existing) => Ok(Admission::Existing(existing)),
        Decision::Requeue(failed) => Ok(Admission::Requeued(requeue(tx, failed.id, now).await?)),
        Decision::Create => {
            // One multi-statement round trip (sqlx runs them in order with the
            // shared ?N arguments): the job, its active keys, its idempotency
            // key (when given), its entity head, then the stored row.
            let row = sqlx::query(concat!(
                "INSERT INTO jobs (id, seq, tenant, kind, event, keys, status, attempts, \
                 created_at, updated_at, next_attempt_at, retry_since, \
                 idempotency_key, entity, body_hash) \
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?2, ?3, ?4, ?5, \
                 'queued', 0, ?6, ?6, ?6, ?6, ?7, ?8, ?9); \
                 INSERT OR IGNORE INTO job_keys (job_id, tenant, key, seq) \
                 SELECT j.id, j.tenant, k.value, j.seq FROM jobs j, json_each(j.keys) k \
                 WHERE j.id = ?1; \
                 INSERT INTO idempotency (tenant, key, job_id, created_at) \
                 SELECT ?2, ?7, ?1, ?6 WHERE ?7 IS NOT NULL \
                 ON CONFLICT (tenant, key) DO UPDATE SET job_id = excluded.job_id; \
                 INSERT INTO entity_heads (tenant, entity, job_id, body_hash) \
                 VALUES (?2, ?8, ?1, ?9) \
                 ON CONFLICT (tenant, entity) DO UPDATE \
                 SET job_id = excluded.job_id, body_hash = excluded.body_hash; \
                 SELECT ",
                job_columns!(),
                " FROM jobs WHERE id = ?1"
            ))
            .bind(job.id.to_string())
            .bind(&job.tenant)
            .bind(&job.kind)
            .bind(text(&job.event))
            .bind(text(&Value::from(job.keys.clone())))
            .bind(to_ms(now))
            .bind(&job.idempotency_key)
            .bind(&job.entity)
            .bind(&job.body_hash)
            .fetch_one(&mut *tx)
            .await?;
            Ok(Admission::Created(job_from_row(&row)?))
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn admit(&self, job: NewJob, force: bool, now: DateTime<Utc>) -> StoreResult<Admission> {
        let (reply, answer) = oneshot::channel();
        self.admits
            .send(AdmitRequest {
                job,
                force,
                now,
                reply,
            })
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?
    }

    async fn job(&self, id: Uuid) -> StoreResult<Option<Job>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = ?1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        let mut q = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE 1 = 1"
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
            q.push(" AND EXISTS (SELECT 1 FROM json_each(jobs.keys) k WHERE length(k.value) >= length(")
                .push_bind(needle.clone())
                .push(") AND substr(k.value, length(k.value) - length(")
                .push_bind(needle.clone())
                .push(") + 1) = ")
                .push_bind(needle)
                .push(")");
        }
        if let Some(before) = filter.before {
            q.push(" AND id < ").push_bind(before.to_string());
        }
        // A limit of 0 means no limit (SQLite: a negative LIMIT).
        let limit = if filter.limit == 0 {
            -1
        } else {
            i64::from(filter.limit)
        };
        q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        let rows = q.build().fetch_all(&self.reader).await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn attempts(&self, job_id: Uuid) -> StoreResult<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT number, started_at, finished_at, calls, error, result \
             FROM attempts WHERE job_id = ?1 ORDER BY number",
        )
        .bind(job_id.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                RawAttempt {
                    number: row.try_get("number")?,
                    started_at: from_ms(row.try_get("started_at")?)?,
                    finished_at: from_ms_opt(row.try_get("finished_at")?)?,
                    calls: json(row.try_get("calls")?)?,
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
        let now_ms = to_ms(now);
        // One writer at a time makes the claim exclusive; the subquery picks the
        // runnable jobs, the UPDATE takes them. INDEXED BY pins the plan that
        // walks only active jobs in seq order and stops at the limit, whatever
        // the table statistics say (an error, not a slow scan, if it broke).
        let mut tx = self.write().await?;
        let rows = sqlx::query(concat!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, \
             lease_until = ?2, updated_at = ?1 \
             WHERE id IN (SELECT j.id FROM jobs j INDEXED BY jobs_claim \
               WHERE j.status IN ('queued', 'running') \
               AND ((j.status = 'queued' AND j.next_attempt_at <= ?1) \
                 OR (j.status = 'running' AND j.lease_until < ?1)) \
               AND NOT EXISTS (SELECT 1 FROM job_keys mine \
                 JOIN job_keys earlier ON earlier.tenant = mine.tenant \
                   AND earlier.key = mine.key AND earlier.seq < mine.seq \
                 WHERE mine.job_id = j.id) \
               ORDER BY j.seq LIMIT ?3) \
             RETURNING ",
            job_columns!()
        ))
        .bind(now_ms)
        .bind(to_ms(codec::lease_end(now, lease)))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        for job in &jobs {
            let id = job.id.to_string();
            sqlx::query(
                "UPDATE attempts SET finished_at = ?1, error = ?2 \
                 WHERE job_id = ?3 AND finished_at IS NULL",
            )
            .bind(now_ms)
            .bind(LEASE_EXPIRED)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO attempts (job_id, number, started_at) VALUES (?1, ?2, ?3)")
                .bind(&id)
                .bind(i64::from(job.attempts))
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        // RETURNING gives no order.
        jobs.sort_by_key(|j| j.seq);
        Ok(jobs)
    }

    async fn extend_lease(
        &self,
        id: Uuid,
        attempt: u32,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = ?1 \
             WHERE id = ?2 AND status = 'running' AND attempts = ?3",
        )
        .bind(to_ms(until))
        .bind(id.to_string())
        .bind(i64::from(attempt))
        .execute(&self.writer)
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
        let id = id.to_string();
        let now_ms = to_ms(now);
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = ?1, last_error = ?2, outcome = ?3, next_attempt_at = ?4, \
             lease_until = NULL, updated_at = ?5 \
             WHERE id = ?6 AND status = 'running' AND attempts = ?7",
        )
        .bind(status)
        .bind(&finish.error)
        .bind(finish.outcome.as_ref().map(text))
        .bind(next_attempt_at.map(to_ms))
        .bind(now_ms)
        .bind(&id)
        .bind(i64::from(attempt))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE attempts SET finished_at = ?1, calls = ?2, error = ?3, result = ?4 \
             WHERE job_id = ?5 AND number = ?6",
        )
        .bind(now_ms)
        .bind(text(&codec::calls_json(&finish.calls)))
        .bind(&finish.error)
        .bind(status)
        .bind(&id)
        .bind(i64::from(attempt))
        .execute(&mut *tx)
        .await?;
        if is_final {
            sqlx::query("DELETE FROM job_keys WHERE job_id = ?1")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn retry(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<RetryResult> {
        let mut tx = self.write().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = ?1"
        ))
        .bind(id.to_string())
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
             WHERE tenant = ?1 AND kind = ?2 AND apit_id = ?3",
        )
        .bind(tenant)
        .bind(kind.as_str())
        .bind(apit_id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(Link {
                moodle_id: row.try_get("moodle_id")?,
                last_sent: json_opt(row.try_get("last_sent")?)?,
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
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (tenant, kind, apit_id) DO UPDATE SET moodle_id = excluded.moodle_id, \
             last_sent = excluded.last_sent, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(kind.as_str())
        .bind(apit_id)
        .bind(link.moodle_id)
        .bind(link.last_sent.as_ref().map(text))
        .bind(to_ms(Utc::now()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn put_enrolment(&self, record: &EnrolmentRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO enrolments (tenant, booking_id, moodle_course_id, moodle_user_id, \
             state, last_score, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
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
        .bind(record.last_score.as_ref().map(text))
        .bind(to_ms(Utc::now()))
        .execute(&self.writer)
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
             FROM enrolments WHERE tenant = ?1 AND (?2 = 0 OR state = 'active') \
             ORDER BY booking_id",
        )
        .bind(tenant)
        .bind(active_only)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                RawEnrolment {
                    tenant: row.try_get("tenant")?,
                    booking_id: row.try_get("booking_id")?,
                    moodle_course_id: row.try_get("moodle_course_id")?,
                    moodle_user_id: row.try_get("moodle_user_id")?,
                    state: row.try_get("state")?,
                    last_score: json_opt(row.try_get("last_score")?)?,
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
            "UPDATE enrolments SET last_score = ?1, updated_at = ?2 \
             WHERE tenant = ?3 AND booking_id = ?4",
        )
        .bind(text(score))
        .bind(to_ms(Utc::now()))
        .bind(tenant)
        .bind(booking_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn enqueue_writeback(&self, wb: NewWriteback, now: DateTime<Utc>) -> StoreResult<bool> {
        let hash = codec::payload_hash(&wb.payload);
        let now_ms = to_ms(now);
        let mut tx = self.write().await?;
        let newest: Option<(String, String)> = sqlx::query_as(
            "SELECT payload_hash, status FROM writebacks \
             WHERE tenant = ?1 AND entity = ?2 AND apit_id = ?3 ORDER BY seq DESC LIMIT 1",
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
            "UPDATE writebacks SET status = 'superseded', lease_until = NULL, updated_at = ?1 \
             WHERE tenant = ?2 AND entity = ?3 AND apit_id = ?4 AND status = 'pending'",
        )
        .bind(now_ms)
        .bind(&wb.tenant)
        .bind(&wb.entity)
        .bind(&wb.apit_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO writebacks (id, seq, job_id, tenant, entity, apit_id, payload, \
             payload_hash, status, attempts, created_at, updated_at, retry_since, next_attempt_at) \
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM writebacks), ?2, ?3, ?4, ?5, ?6, \
             ?7, 'pending', 0, ?8, ?8, ?8, ?8)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(wb.job_id.map(|id| id.to_string()))
        .bind(&wb.tenant)
        .bind(&wb.entity)
        .bind(&wb.apit_id)
        .bind(text(&wb.payload))
        .bind(&hash)
        .bind(now_ms)
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
        // One statement on the single writer connection: exclusive by construction.
        let rows = sqlx::query(concat!(
            "UPDATE writebacks SET attempts = attempts + 1, lease_until = ?2, updated_at = ?1 \
             WHERE id IN (SELECT id FROM writebacks WHERE status = 'pending' \
               AND next_attempt_at <= ?1 AND (lease_until IS NULL OR lease_until < ?1) \
               ORDER BY seq LIMIT ?3) \
             RETURNING ",
            writeback_columns!()
        ))
        .bind(to_ms(now))
        .bind(to_ms(codec::lease_end(now, lease)))
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        let mut claimed = rows
            .iter()
            .map(|row| Ok((row.try_get::<i64, _>("seq")?, writeback_from_row(row)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        claimed.sort_by_key(|(seq, _)| *seq);
        Ok(claimed.into_iter().map(|(_, wb)| wb).collect())
    }

    async fn finish_writeback(
        &self,
        id: Uuid,
        attempt: u32,
        now: DateTime<Utc>,
        finish: WritebackFinish,
    ) -> StoreResult<bool> {
        let next = match finish.status {
            WritebackStatus::Pending => Some(to_ms(finish.next_attempt_at.unwrap_or(now))),
            _ => None,
        };
        let done = sqlx::query(
            "UPDATE writebacks SET status = ?1, next_attempt_at = ?2, last_error = ?3, \
             lease_until = NULL, updated_at = ?4 \
             WHERE id = ?5 AND status = 'pending' AND attempts = ?6",
        )
        .bind(codec::writeback_status_str(finish.status))
        .bind(next)
        .bind(&finish.error)
        .bind(to_ms(now))
        .bind(id.to_string())
        .bind(i64::from(attempt))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn writebacks_for_job(&self, job_id: Uuid) -> StoreResult<Vec<Writeback>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            writeback_columns!(),
            " FROM writebacks WHERE job_id = ?1 ORDER BY seq"
        ))
        .bind(job_id.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(writeback_from_row).collect()
    }

    async fn queue_stats(&self) -> StoreResult<Vec<QueueStat>> {
        let rows = sqlx::query(
            "SELECT tenant, status, COUNT(*) AS n, MIN(created_at) AS oldest \
             FROM jobs GROUP BY tenant, status ORDER BY tenant, status",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let n: i64 = row.try_get("n")?;
                Ok(QueueStat {
                    tenant: row.try_get("tenant")?,
                    status: codec::job_status(row.try_get("status")?)?,
                    count: u64::try_from(n).unwrap_or(0),
                    oldest: from_ms_opt(row.try_get("oldest")?)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronous_is_taken_out_of_the_url() {
        let (url, s) = split_synchronous("sqlite://x.db").unwrap();
        assert_eq!(url, "sqlite://x.db");
        assert!(matches!(s, SqliteSynchronous::Normal));

        let (url, s) = split_synchronous("sqlite://x.db?synchronous=full&mode=rwc").unwrap();
        assert_eq!(url, "sqlite://x.db?mode=rwc");
        assert!(matches!(s, SqliteSynchronous::Full));

        assert!(split_synchronous("sqlite://x.db?synchronous=sometimes").is_err());
        assert!(split_synchronous("sqlite://x.db?synchronous=off").is_err());
    }
}
