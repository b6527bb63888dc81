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

mod outbox;
mod queue;
mod retention;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::codec::{
    self, RawAttempt, RawEnrolment, RawJob, RawWriteback, from_ms, from_ms_opt, json, json_opt,
    to_ms,
};
use super::shared::{Dialect, SqlStore};
use super::{
    Attempt, EnrolmentRecord, Job, Link, QueueStat, StoreResult, Writeback, WritebackStatus,
    migrations,
};

/// Readers in parallel with the single writer (WAL lets them run concurrently).
const READERS: u32 = 4;

/// Migration runs before giving up (see `connect`).
const MIGRATE_TRIES: u64 = 3;

/// How long a statement waits for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite back-end. `writer`: exactly one connection, all writes in
/// order; `reader`: reads only.
pub type SqliteStore = SqlStore<SqliteDialect>;

/// What SQLite keeps beside its pools.
pub struct SqliteState {
    /// Admissions, committed in groups (see `queue.rs`).
    admits: mpsc::Sender<queue::AdmitRequest>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`,
    /// optionally `?synchronous=full`) and applies migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let (url, synchronous) = split_synchronous(url)?;
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            // Before the first table exists, so new files can give pages back
            // (store/sqlite/retention.rs); a no-op on older files.
            .auto_vacuum(SqliteAutoVacuum::Incremental)
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
        // sqlx takes no lock while migrating SQLite, so two processes opening a
        // new file at once both try the first migration; the one that loses
        // fails ("table … already exists", or busy) once the other committed.
        // Running again then finds every migration applied (each is atomic).
        let migrator = migrations::migrator(migrations::SQLITE).await?;
        let mut tries = 0;
        while let Err(e) = migrator.run(&writer).await {
            tries += 1;
            if tries == MIGRATE_TRIES {
                return Err(e.into());
            }
            tracing::debug!(error = %e, "migration raced with another process; running it again");
            tokio::time::sleep(Duration::from_millis(50 * tries)).await;
        }
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
        let admits = queue::start_group_commit(writer.clone());
        Ok(SqlStore {
            reader,
            writer,
            state: SqliteState { admits },
        })
    }

    /// Closes both pools (checkpointing the WAL), e.g. before reopening the file.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
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

/// SQLite's encodings: ids as hyphenated text, times as unix milliseconds, JSON as text.
pub struct SqliteDialect;

impl Dialect for SqliteDialect {
    type Db = Sqlite;
    type State = SqliteState;
    type Id = String;
    type Time = i64;
    type Json = String;
    type Count = i64;

    const NEXT_WRITEBACK_SEQ: &'static str = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM writebacks)";

    fn id(id: Uuid) -> String {
        id.to_string()
    }

    fn time(t: DateTime<Utc>) -> i64 {
        to_ms(t)
    }

    fn json(v: &Value) -> String {
        v.to_string()
    }

    fn count(n: u32) -> i64 {
        i64::from(n)
    }

    fn job(row: &SqliteRow) -> StoreResult<Job> {
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

    fn attempt(row: &SqliteRow) -> StoreResult<Attempt> {
        RawAttempt {
            number: row.try_get("number")?,
            started_at: from_ms(row.try_get("started_at")?)?,
            finished_at: from_ms_opt(row.try_get("finished_at")?)?,
            calls: json(row.try_get("calls")?)?,
            error: row.try_get("error")?,
            result: row.try_get("result")?,
        }
        .into_attempt()
    }

    fn writeback(row: &SqliteRow) -> StoreResult<Writeback> {
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

    fn enrolment(row: &SqliteRow) -> StoreResult<EnrolmentRecord> {
        RawEnrolment {
            tenant: row.try_get("tenant")?,
            booking_id: row.try_get("booking_id")?,
            moodle_course_id: row.try_get("moodle_course_id")?,
            moodle_user_id: row.try_get("moodle_user_id")?,
            state: row.try_get("state")?,
            last_score: json_opt(row.try_get("last_score")?)?,
        }
        .into_record()
    }

    fn link(row: &SqliteRow) -> StoreResult<Link> {
        Ok(Link {
            moodle_id: row.try_get("moodle_id")?,
            last_sent: json_opt(row.try_get("last_sent")?)?,
        })
    }

    fn queue_stat(row: &SqliteRow) -> StoreResult<QueueStat> {
        codec::queue_stat(
            row.try_get("tenant")?,
            row.try_get("status")?,
            row.try_get("n")?,
            from_ms_opt(row.try_get("oldest")?)?,
        )
    }

    fn hash_and_status(row: &SqliteRow) -> StoreResult<(String, WritebackStatus)> {
        Ok((
            row.try_get("payload_hash")?,
            codec::writeback_status(row.try_get("status")?)?,
        ))
    }

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn reference_condition(p: usize) -> String {
        // "ends with :<ref>", without LIKE (an ID may contain % or _).
        format!(
            "EXISTS (SELECT 1 FROM json_each(jobs.keys) k WHERE length(k.value) >= length(${p}) \
             AND substr(k.value, length(k.value) - length(${p}) + 1) = ${p})"
        )
    }

    async fn begin_write(pool: &SqlitePool) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn lock(_: &mut Transaction<'static, Sqlite>, _: &[&str]) -> StoreResult<()> {
        // The single writer connection already serialises every write.
        Ok(())
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
