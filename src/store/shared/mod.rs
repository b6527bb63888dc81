//! One store type, [`SqlStore`], for both back-ends: the three role traits are
//! implemented here once, over a [`Dialect`].
//!
//! SQL here is dialect-neutral: `$n` placeholders (sqlx's SQLite driver reads
//! `$n` as the n-th argument, as PostgreSQL does) and no back-end functions.
//! What differs is how values are bound and rows decoded (SQLite: text ids,
//! millisecond integers, JSON text; PostgreSQL: uuid, timestamptz, jsonb) and
//! the few operations that truly differ — admission, claiming, re-queueing —
//! which each back-end's [`Dialect`] implements in its own folder.

mod deliveries;
mod links;
mod outbox;
mod queue;
mod retention;

pub use retention::RetentionOps;

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Database, Encode, Pool, Transaction, Type};
use uuid::Uuid;

use super::{
    Admission, Attempt, EnrolmentRecord, Finish, Job, Link, NewJob, QueueStat, StoreResult,
    Writeback, WritebackStatus,
};

/// The columns of a job, in the order the dialects' `job` decoders expect.
pub(super) const JOB_COLUMNS: &str = "id, seq, tenant, kind, event, keys, status, attempts, \
     created_at, updated_at, next_attempt_at, retry_since, lease_until, last_error, outcome";

/// The columns of a write-back, for the dialects' `writeback` decoders.
pub(super) const WRITEBACK_COLUMNS: &str = "id, seq, job_id, tenant, entity, apit_id, payload, \
     status, attempts, created_at, retry_since, next_attempt_at, last_error";

/// One back-end: how it binds values and decodes rows for the shared queries,
/// and the operations it does its own way.
pub trait Dialect: Send + Sync + Sized + 'static {
    /// The sqlx database.
    type Db: Database;
    /// What else the back-end keeps beside its pools (SQLite: the group-commit queue).
    type State: Send + Sync + 'static;
    /// A bound UUID.
    type Id: for<'q> Encode<'q, Self::Db> + Type<Self::Db> + Send + 'static;
    /// A bound time.
    type Time: for<'q> Encode<'q, Self::Db> + Type<Self::Db> + Send + 'static;
    /// A bound JSON value.
    type Json: for<'q> Encode<'q, Self::Db> + Type<Self::Db> + Send + 'static;
    /// A bound attempt counter.
    type Count: for<'q> Encode<'q, Self::Db> + Type<Self::Db> + Send + 'static;

    /// The next write-back `seq` in an INSERT's VALUES list.
    const NEXT_WRITEBACK_SEQ: &'static str;
    /// The next job `seq` (queue position) in an INSERT or UPDATE.
    const NEXT_JOB_SEQ: &'static str;
    /// `" FOR UPDATE"` where reading a row to change it must lock it.
    const FOR_UPDATE: &'static str;
    /// Whether transactions touching one ordering key must take its lock
    /// (false where the back-end runs every write one after the other).
    const KEY_LOCKS: bool;

    fn id(id: Uuid) -> Self::Id;
    fn time(t: DateTime<Utc>) -> Self::Time;
    fn json(v: &Value) -> Self::Json;
    fn count(n: u32) -> Self::Count;

    fn job(row: &<Self::Db as Database>::Row) -> StoreResult<Job>;
    fn attempt(row: &<Self::Db as Database>::Row) -> StoreResult<Attempt>;
    fn writeback(row: &<Self::Db as Database>::Row) -> StoreResult<Writeback>;
    fn enrolment(row: &<Self::Db as Database>::Row) -> StoreResult<EnrolmentRecord>;
    fn link(row: &<Self::Db as Database>::Row) -> StoreResult<Link>;
    fn queue_stat(row: &<Self::Db as Database>::Row) -> StoreResult<QueueStat>;
    /// `payload_hash` and `status` of a write-back row.
    fn hash_and_status(row: &<Self::Db as Database>::Row)
    -> StoreResult<(String, WritebackStatus)>;

    /// Rows an UPDATE or DELETE changed.
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// The elements of the JSON array of strings `expr`, as a FROM item named
    /// `alias` with one text column, `value` (SQLite `json_each`, PostgreSQL
    /// `jsonb_array_elements_text`); `expr` may name a column of an earlier item.
    fn json_strings(expr: &str, alias: &str) -> String;

    /// A write transaction (SQLite: one that holds the write lock from the start).
    fn begin_write(
        pool: &Pool<Self::Db>,
    ) -> impl Future<Output = StoreResult<Transaction<'static, Self::Db>>> + Send;

    /// Serialises transactions touching the same thing across replicas until
    /// commit (PostgreSQL advisory lock; SQLite's single writer already does).
    fn lock<'t>(
        conn: &'t mut <Self::Db as Database>::Connection,
        parts: &'t [&'t str],
    ) -> impl Future<Output = StoreResult<()>> + Send + 't;
}

/// The job-queue operations a back-end does its own way (in its `queue.rs`).
pub trait QueueOps: Dialect {
    /// See [`super::JobQueue::admit`]: in one transaction, through
    /// [`SqlStore::admit_in`].
    fn admit(
        store: &SqlStore<Self>,
        job: NewJob,
        force: bool,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Admission>> + Send;

    /// See [`super::JobQueue::finish`]: in one transaction, through
    /// [`SqlStore::finish_in`].
    fn finish(
        store: &SqlStore<Self>,
        id: Uuid,
        attempt: u32,
        now: DateTime<Utc>,
        finish: Finish,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// See [`super::JobQueue::claim`] (never called with a limit of 0): the
    /// tenant's due unblocked jobs and its expired leases ([`CLAIMABLE`]).
    fn claim(
        store: &SqlStore<Self>,
        tenant: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Job>>> + Send;
}

/// The ids of tenant `$2`'s claimable jobs at `$1`, at most `$3`: queued
/// jobs that are due and have no blockers, then running jobs whose lease has
/// expired (their worker died). Each part reads its own partial index, so the
/// cost is what is claimable, never the blocked or waiting rest of the queue.
pub const CLAIMABLE: &str = "SELECT id FROM ( \
       SELECT id, next_attempt_at AS due, seq FROM jobs \
       WHERE tenant = $2 AND status = 'queued' AND blockers = 0 AND next_attempt_at <= $1 \
       UNION ALL \
       SELECT id, lease_until AS due, seq FROM jobs \
       WHERE tenant = $2 AND status = 'running' AND lease_until < $1 \
     ) claimable ORDER BY due, seq LIMIT $3";

/// The outbox operation a back-end does its own way (in its `outbox.rs`).
pub trait OutboxOps: Dialect {
    /// See [`super::Outbox::claim_writebacks`] (never called with a limit of 0).
    fn claim_writebacks(
        store: &SqlStore<Self>,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Writeback>>> + Send;
}

/// A store on one back-end. Reads may go to a reader pool, writes go to the
/// writer (SQLite: its single connection; PostgreSQL: the same pool).
pub struct SqlStore<D: Dialect> {
    pub(in crate::store) reader: Pool<D::Db>,
    pub(in crate::store) writer: Pool<D::Db>,
    pub(in crate::store) state: D::State,
}

/// `impl Role for SqlStore<D>` (or, with `helpers`, an inherent impl) for every
/// dialect, with the bounds every shared query needs written once: the pools and transactions execute, the
/// plain values (`&str`, `String`, `i64`, `bool`) bind on both back-ends, and
/// a count reads back.
macro_rules! for_every_dialect {
    (helpers for $bound:ident { $($body:tt)* }) => {
        for_every_dialect!(@impl [] [] $bound { $($body)* });
    };
    ($role:ident for $bound:ident { $($body:tt)* }) => {
        for_every_dialect!(@impl [#[async_trait::async_trait]] [$role for] $bound { $($body)* });
    };
    (@impl [$($attr:tt)*] [$($role:tt)*] $bound:ident { $($body:tt)* }) => {
        $($attr)*
        impl<D: $bound> $($role)* SqlStore<D>
        where
            for<'c> &'c mut <D::Db as sqlx::Database>::Connection:
                sqlx::Executor<'c, Database = D::Db>,
            for<'q> <D::Db as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, D::Db>,
            for<'q> &'q str: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
            for<'q> String: sqlx::Encode<'q, D::Db>,
            String: sqlx::Type<D::Db>,
            for<'q> i64: sqlx::Encode<'q, D::Db>,
            i64: sqlx::Type<D::Db>,
            for<'q> bool: sqlx::Encode<'q, D::Db>,
            bool: sqlx::Type<D::Db>,
            for<'q> Option<String>: sqlx::Encode<'q, D::Db>,
            for<'q> Option<D::Id>: sqlx::Encode<'q, D::Db>,
            for<'q> Option<D::Time>: sqlx::Encode<'q, D::Db>,
            for<'q> Option<D::Json>: sqlx::Encode<'q, D::Db>,
            for<'r> i64: sqlx::Decode<'r, D::Db>,
            for<'r> String: sqlx::Decode<'r, D::Db>,
            usize: sqlx::ColumnIndex<<D::Db as sqlx::Database>::Row>,
        {
            $($body)*
        }
    };
}
use for_every_dialect;
