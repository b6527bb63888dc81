//! SQLite job queue: admissions and finished attempts in group commits, and
//! claiming, all on the single writer connection. The rest is shared
//! (`store/shared/queue.rs`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Acquire;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::{SqliteDialect, SqliteStore};
use crate::store::codec::{self, LEASE_EXPIRED, to_ms};
use crate::store::shared::{CLAIMABLE, Dialect, JOB_COLUMNS, QueueOps};
use crate::store::{Admission, Finish, Job, NewJob, StoreError, StoreResult};
use uuid::Uuid;

/// Writes waiting for the next group commit (back-pressure beyond this).
const WRITE_QUEUE: usize = 1024;
/// At most this many writes share one transaction.
const WRITE_BATCH: usize = 128;

/// A write waiting for its group commit, with where to send its result.
pub(super) enum WriteRequest {
    Admit {
        job: NewJob,
        force: bool,
        now: DateTime<Utc>,
        reply: oneshot::Sender<StoreResult<Admission>>,
    },
    Finish {
        id: Uuid,
        attempt: u32,
        now: DateTime<Utc>,
        finish: Finish,
        reply: oneshot::Sender<StoreResult<bool>>,
    },
}

/// A write's result, held until its transaction commits.
enum Written {
    Admit(
        oneshot::Sender<StoreResult<Admission>>,
        Box<StoreResult<Admission>>,
    ),
    Finish(oneshot::Sender<StoreResult<bool>>, bool),
}

impl Written {
    /// Tells the caller its write was not stored after all.
    fn fail(self, text: &str) {
        let error = || StoreError::Unavailable(text.to_string());
        let _ = match self {
            Written::Admit(reply, _) => reply.send(Err(error())).map_err(drop),
            Written::Finish(reply, _) => reply.send(Err(error())).map_err(drop),
        };
    }

    fn deliver(self) {
        // A caller that stopped waiting needs no answer.
        let _ = match self {
            Written::Admit(reply, result) => reply.send(*result).map_err(drop),
            Written::Finish(reply, done) => reply.send(Ok(done)).map_err(drop),
        };
    }
}

impl WriteRequest {
    /// Tells the caller its write was not stored.
    fn fail(self, text: &str) {
        let error = || StoreError::Unavailable(text.to_string());
        let _ = match self {
            WriteRequest::Admit { reply, .. } => reply.send(Err(error())).map_err(drop),
            WriteRequest::Finish { reply, .. } => reply.send(Err(error())).map_err(drop),
        };
    }
}

/// Starts the task that commits admissions and finished attempts in groups;
/// returns its queue.
pub(super) fn start_group_commit(writer: SqlitePool) -> mpsc::Sender<WriteRequest> {
    let (writes, queue) = mpsc::channel(WRITE_QUEUE);
    tokio::spawn(commit_writes(writer, queue));
    writes
}

/// Commits admissions and finished attempts in groups: every write waiting
/// when the writer is free shares one transaction. Each commit writes the
/// touched pages to the WAL once, so a burst costs one commit, not one per
/// event or per job (the ingest and burst benchmarks in the README measure
/// it). Each admission runs in its own savepoint, so a failing admission does
/// not fail the others; nobody is answered before the commit, so an answered
/// write is durable. A finish that fails fails its whole group (it can only be
/// the database failing): every caller hears so, and nothing of it is stored.
async fn commit_writes(writer: SqlitePool, mut queue: mpsc::Receiver<WriteRequest>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while queue.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        let mut written = Vec::with_capacity(batch.len());
        let outcome = async {
            let mut tx = SqliteDialect::begin_write(&writer).await?;
            for request in batch.drain(..) {
                match request {
                    WriteRequest::Admit {
                        job,
                        force,
                        now,
                        reply,
                    } => {
                        let mut savepoint = tx.begin().await?;
                        let result = SqliteStore::admit_in(&mut savepoint, job, force, now).await;
                        if result.is_ok() {
                            savepoint.commit().await?;
                        } else {
                            savepoint.rollback().await?;
                        }
                        written.push(Written::Admit(reply, Box::new(result)));
                    }
                    WriteRequest::Finish {
                        id,
                        attempt,
                        now,
                        finish,
                        reply,
                    } => {
                        // On error the reply is dropped: its caller hears the
                        // store went away (the group's error is logged below).
                        let done =
                            SqliteStore::finish_in(&mut tx, id, attempt, now, finish).await?;
                        written.push(Written::Finish(reply, done));
                    }
                }
            }
            tx.commit().await?;
            StoreResult::Ok(())
        }
        .await;
        match outcome {
            Ok(()) => written.into_iter().for_each(Written::deliver),
            Err(e) => {
                // The transaction is gone: nothing of this group was stored.
                let text = e.to_string();
                tracing::warn!(error = %text, "a group of SQLite writes failed; none was stored");
                written.into_iter().for_each(|w| w.fail(&text));
                batch.drain(..).for_each(|request| request.fail(&text));
            }
        }
    }
}

/// Sends `request` to the group commit and waits for its result.
async fn write<T>(
    store: &SqliteStore,
    request: WriteRequest,
    answer: oneshot::Receiver<StoreResult<T>>,
) -> StoreResult<T> {
    let closed = || StoreError::Unavailable("the store is closed".into());
    store
        .state
        .writes
        .send(request)
        .await
        .map_err(|_| closed())?;
    answer.await.map_err(|_| closed())?
}

impl QueueOps for SqliteDialect {
    /// Admits through the group commit (see [`commit_writes`]).
    async fn admit(
        store: &SqliteStore,
        job: NewJob,
        force: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<Admission> {
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest::Admit {
            job,
            force,
            now,
            reply,
        };
        write(store, request, answer).await
    }

    /// Finishes through the group commit (see [`commit_writes`]).
    async fn finish(
        store: &SqliteStore,
        id: Uuid,
        attempt: u32,
        now: DateTime<Utc>,
        finish: Finish,
    ) -> StoreResult<bool> {
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest::Finish {
            id,
            attempt,
            now,
            finish,
            reply,
        };
        write(store, request, answer).await
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
