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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Executor, Row, Sqlite, Transaction};
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
    /// Admissions and finished attempts, committed in groups (see `queue.rs`).
    writes: mpsc::Sender<queue::WriteRequest>,
    /// The page cap of [`SqliteStore::set_max_page_count`] (0: none), applied
    /// again to a writer connection that had to be replaced.
    max_pages: Arc<AtomicU64>,
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
            .foreign_keys(true)
            // Checkpoints (and their fsyncs) are the checkpointer's, not the writer's.
            .pragma("wal_autocheckpoint", "0");

        // The writer connection lives as long as the store: reopening it would
        // only cost time, and an in-memory database would vanish with it. It is
        // replaced only when it broke (see `repair_writer`).
        let max_pages = Arc::new(AtomicU64::new(0));
        let cap = max_pages.clone();
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .after_connect(move |conn, _| {
                let pages = cap.load(Ordering::SeqCst);
                Box::pin(async move {
                    if pages > 0 {
                        conn.execute(format!("PRAGMA max_page_count = {pages}").as_str())
                            .await?;
                    }
                    Ok(())
                })
            })
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
                .connect_with(options.clone().pragma("query_only", "ON"))
                .await?
        };
        let writes = queue::start_group_commit(writer.clone());
        if !in_memory {
            let checkpointer = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await?;
            tokio::spawn(checkpoint(checkpointer));
        }
        Ok(SqlStore {
            reader,
            writer,
            state: SqliteState { writes, max_pages },
        })
    }

    /// Caps the database at `pages` pages (`PRAGMA max_page_count` on the
    /// writer, never below the current size) and returns the cap now in force.
    /// Writes that need more pages then fail as on a full disk (`SQLITE_FULL`):
    /// the tests simulate a full disk this way; it also works as a size cap.
    pub async fn set_max_page_count(&self, pages: u64) -> StoreResult<u64> {
        // A number, formatted here: nothing to inject. PRAGMAs take no binds.
        let row = sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
            .fetch_one(&self.writer)
            .await?;
        let cap = u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or_default();
        self.state.max_pages.store(cap, Ordering::SeqCst);
        Ok(cap)
    }

    /// Closes both pools (checkpointing the WAL), e.g. before reopening the file.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// How often the write-ahead log is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Copies the write-ahead log into the database file, on a connection of its
/// own, every [`CHECKPOINT_EVERY`]. SQLite would otherwise checkpoint inside
/// the commit that crosses 1,000 pages, with its fsyncs, on the one writer
/// connection every write waits for. PASSIVE: it never blocks the writer or a
/// reader; what it cannot copy now it copies next time. Ends with the store.
async fn checkpoint(pool: SqlitePool) {
    let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::debug!(error = %e, "WAL checkpoint failed; trying again");
        }
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
    const NEXT_JOB_SEQ: &'static str = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs)";
    // The write transaction already holds the database's only write lock.
    const FOR_UPDATE: &'static str = "";
    // The single writer connection runs every write one after the other.
    const KEY_LOCKS: bool = false;

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

    fn json_strings(expr: &str, alias: &str) -> String {
        format!("json_each({expr}) AS {alias}")
    }

    async fn begin_write(pool: &SqlitePool) -> StoreResult<Transaction<'static, Sqlite>> {
        match pool.begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => Ok(tx),
            Err(e) if repair_writer(pool).await? => {
                tracing::warn!(error = %e, "the SQLite writer connection was replaced");
                Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn lock(_: &mut SqliteConnection, _: &[&str]) -> StoreResult<()> {
        // The single writer connection already serialises every write.
        Ok(())
    }
}

/// sqlx counts the transactions it opened; when SQLite rolls one back by
/// itself (it may on `SQLITE_FULL` or an I/O error), sqlx's own ROLLBACK then
/// fails, its count stays up, and the connection refuses every later BEGIN —
/// for good, on the only writer. Such a connection is closed, so the pool
/// opens a fresh one; true when that happened. An in-memory database would
/// vanish with its connection, so it is kept (and the error stands).
async fn repair_writer(pool: &SqlitePool) -> StoreResult<bool> {
    let mut conn = pool.acquire().await?;
    // Runs after any rollback still queued by a dropped transaction.
    conn.ping().await?;
    let in_memory = pool.connect_options().get_filename() == std::path::Path::new(":memory:");
    if !conn.is_in_transaction() || in_memory {
        return Ok(false);
    }
    let _ = conn.detach().close().await;
    Ok(true)
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
